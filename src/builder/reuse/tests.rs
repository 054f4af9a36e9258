//! Scans, snapshots and restores of real trees in temporary directories.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::store::ManifestCaps;
use super::*;
use crate::test_support::{temp_dir, write};

const EXCLUDE: [&str; 1] = [".runner"];

/// A project tree: files, an executable, nested directories, a relative and an absolute
/// symlink, a read-only directory and a node_modules.
fn sample_tree(root: &Path) {
    write(&root.join("package.json"), r#"{"name":"app"}"#);
    write(&root.join("src/index.ts"), "export const x = 1;\n");
    write(&root.join("src/deep/er/still/file.txt"), "deep\n");
    write(&root.join("bin/run.sh"), "#!/bin/sh\necho hi\n");
    set_mode(&root.join("bin/run.sh"), 0o755);
    write(
        &root.join("node_modules/left-pad/index.js"),
        "module.exports = 1;\n",
    );
    write(&root.join("node_modules/left-pad/package.json"), "{}");
    fs::create_dir_all(root.join("node_modules/.bin")).expect("mkdir");
    symlink(
        "../left-pad/index.js",
        root.join("node_modules/.bin/left-pad"),
    )
    .expect("symlink");
    symlink("/usr/bin/env", root.join("env-link")).expect("symlink");
    write(&root.join("locked/readme"), "read only dir\n");
    write(&root.join("empty-file"), "");
    set_mode(&root.join("locked"), 0o555);
}

/// A test's directory, the sample tree in its `build-1` and an empty store in its `cache`.
fn sample_store(name: &str) -> (PathBuf, PathBuf, BuildCache) {
    let base = temp_dir("reuse", name);
    let root = base.join("build-1");
    sample_tree(&root);
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    (base, root, cache)
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn scan(root: &Path, memo: &DigestMemo) -> TreeScan {
    scan_tree(root, &EXCLUDE, memo).expect("scan")
}

fn key(kind: SnapshotKind) -> SnapshotKey<'static> {
    SnapshotKey {
        kind,
        project_id: "proj",
        fingerprint: "ab12000000000000000000000000000000000000000000000000000000000000",
    }
}

fn not_in_use(_: &str) -> bool {
    false
}

/// Why saving the whole of `root` as build-1's output snapshot is refused (it must be).
fn refused_save(cache: &BuildCache, root: &Path) -> String {
    cache
        .save(
            &key(SnapshotKind::Output),
            "build-1",
            &scan(root, cache.memo()),
            &Selection::Whole,
            not_in_use,
        )
        .expect_err("a refused save")
        .to_string()
}

/// Saves the whole tree at `root` as an output snapshot of `build_id`.
fn save_whole(cache: &BuildCache, root: &Path, build_id: &str) -> SnapshotInfo {
    let tree = scan(root, cache.memo());
    cache
        .save(
            &key(SnapshotKind::Output),
            build_id,
            &tree,
            &Selection::Whole,
            not_in_use,
        )
        .expect("save")
}

/// Makes read-only directories writable again so the test directory can be removed.
fn unlock(root: &Path) {
    if root.join("locked").exists() {
        set_mode(&root.join("locked"), 0o755);
    }
}

#[test]
fn the_digest_ignores_mtimes_but_not_content_or_mode() {
    let root = temp_dir("reuse", "digest");
    sample_tree(&root);
    let memo = DigestMemo::new();
    let first = scan(&root, &memo).digest();
    let past = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(root.join("src/index.ts"))
        .and_then(|file| file.set_modified(past))
        .expect("touch");
    assert_eq!(
        scan(&root, &memo).digest(),
        first,
        "an mtime changed the digest"
    );

    write(&root.join("src/index.ts"), "export const x = 2;\n");
    let content = scan(&root, &memo).digest();
    assert_ne!(content, first, "a one-byte change kept the digest");

    set_mode(&root.join("src/index.ts"), 0o755);
    assert_ne!(
        scan(&root, &memo).digest(),
        content,
        "a mode change kept the digest"
    );
    unlock(&root);
}

#[test]
fn a_rewrite_that_keeps_size_and_mtime_is_still_seen() {
    let root = temp_dir("reuse", "rewrite");
    write(&root.join("file"), "aaaa");
    let memo = DigestMemo::new();
    let before = scan(&root, &memo);
    let mtime = fs::metadata(root.join("file"))
        .and_then(|m| m.modified())
        .expect("mtime");
    std::thread::sleep(Duration::from_millis(20));
    write(&root.join("file"), "bbbb");
    fs::File::options()
        .write(true)
        .open(root.join("file"))
        .and_then(|file| file.set_modified(mtime))
        .expect("set mtime back");
    let after = scan(&root, &memo);
    assert_eq!(before.entries()[0].mtime_ns, after.entries()[0].mtime_ns);
    assert_ne!(before.digest(), after.digest(), "the memo hid a rewrite");
}

#[test]
fn scans_skip_excluded_names_and_list_special_files() {
    let root = temp_dir("reuse", "special");
    sample_tree(&root);
    nix::unistd::mkfifo(&root.join("src/pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let tree = scan_tree(&root, &["node_modules"], &DigestMemo::new()).expect("scan");
    let paths: Vec<&str> = tree.entries().iter().map(|e| e.path.as_str()).collect();
    assert!(
        !paths.iter().any(|p| p.starts_with("node_modules")),
        "{paths:?}"
    );
    assert!(paths.contains(&"src/deep/er/still/file.txt"));
    assert_eq!(tree.skipped().len(), 1);
    assert_eq!(tree.skipped()[0].path, "src/pipe");
    let link = tree
        .entries()
        .iter()
        .find(|e| e.path == "env-link")
        .expect("link");
    assert_eq!(link.kind, EntryKind::Symlink("/usr/bin/env".to_owned()));
    let run = tree
        .entries()
        .iter()
        .find(|e| e.path == "bin/run.sh")
        .expect("run.sh");
    assert_eq!(run.mode, 0o755);
    unlock(&root);
}

#[test]
fn a_tree_too_deep_is_refused() {
    let root = temp_dir("reuse", "deep");
    let mut deep = root.clone();
    for _ in 0..scan::MAX_DEPTH + 1 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).expect("mkdir");
    let error = scan_tree(&root, &[], &DigestMemo::new()).expect_err("a deep tree");
    assert!(error.to_string().contains("deeper than"), "{error}");
}

#[test]
fn changed_since_finds_what_an_install_added() {
    let root = temp_dir("reuse", "changed");
    sample_tree(&root);
    let memo = DigestMemo::new();
    let before = scan(&root, &memo);
    write(&root.join("node_modules/left-pad/extra.js"), "1");
    write(&root.join("node_modules/new-pkg/a/b.js"), "2");
    write(&root.join("package.json"), r#"{"name":"app2"}"#);
    let after = scan(&root, &memo);
    assert_eq!(
        after.changed_since(&before),
        [
            "node_modules/left-pad/extra.js",
            "node_modules/new-pkg",
            "package.json"
        ]
    );
    assert!(after.changed_since(&after).is_empty());
    unlock(&root);
}

#[test]
fn a_restore_recreates_the_tree_exactly() {
    let (base, root, cache) = sample_store("restore");
    let original = scan(&root, cache.memo());
    let info = save_whole(&cache, &root, "build-1");
    assert_eq!(info.file_bytes, original.file_bytes());

    let key = key(SnapshotKind::Output);
    let found = cache.lookup(&key).expect("a snapshot");
    assert_eq!(found.id, info.id);
    let into = base.join("build-2");
    let stats = cache.restore(&found, &into).expect("restore");
    assert_eq!(stats.bytes, original.file_bytes());
    let restored = scan(&into, &DigestMemo::new());
    assert_eq!(restored.digest(), original.digest());
    let mtimes = |tree: &TreeScan| -> Vec<(String, i64)> {
        tree.entries()
            .iter()
            .map(|e| (e.path.clone(), e.mtime_ns))
            .collect()
    };
    assert_eq!(mtimes(&restored), mtimes(&original), "mtimes differ");
    assert!(restored.changed_since(&original).is_empty());

    let again = BuildCache::open(&base.join("cache"), None).expect("reopen");
    assert_eq!(again.lookup(&key).map(|s| s.id), Some(info.id));
    let stats = again.stats();
    assert_eq!((stats.snapshots, stats.misses), (1, 0));
    assert_eq!(cache.stats().output_hits, 1);
    unlock(&root);
    unlock(&into);
}

#[test]
fn a_restore_replaces_what_a_server_wrote_and_follows_no_symlink() {
    let (base, root, cache) = sample_store("rewrite-back");
    let info = save_whole(&cache, &root, "build-1");
    let into = base.join("build-2");
    cache.restore(&info, &into).expect("restore");

    let outside = base.join("outside");
    write(&outside.join("victim"), "untouched");
    write(&into.join("node_modules/left-pad/index.js"), "hacked");
    fs::remove_dir_all(into.join("src/deep")).expect("rm");
    symlink(&outside, into.join("src/deep")).expect("symlink a dir");
    fs::remove_file(into.join("package.json")).expect("rm");
    symlink(outside.join("victim"), into.join("package.json")).expect("symlink a file");
    cache.restore(&info, &into).expect("restore again");

    assert_eq!(
        scan(&into, &DigestMemo::new()).digest(),
        scan(&root, cache.memo()).digest()
    );
    assert_eq!(
        fs::read_to_string(outside.join("victim")).expect("read"),
        "untouched"
    );
    assert_eq!(fs::read_dir(&outside).expect("list").count(), 1);
    unlock(&root);
    unlock(&into);
}

#[test]
fn writing_into_a_restored_file_never_changes_the_store() {
    let (base, root, cache) = sample_store("independent");
    let info = save_whole(&cache, &root, "build-1");
    let first = base.join("build-2");
    cache.restore(&info, &first).expect("restore");
    let restored = first.join("node_modules/left-pad/index.js");
    fs::OpenOptions::new()
        .write(true)
        .open(&restored)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"XX"))
        .expect("write in place");
    let second = base.join("build-3");
    cache.restore(&info, &second).expect("restore again");
    assert_eq!(
        fs::read_to_string(second.join("node_modules/left-pad/index.js")).expect("read"),
        "module.exports = 1;\n"
    );
    unlock(&root);
    unlock(&first);
    unlock(&second);
}

#[test]
fn snapshots_share_unchanged_files() {
    let base = temp_dir("reuse", "dedupe");
    let root = base.join("build-1");
    for index in 0..20 {
        write(
            &root.join(format!("node_modules/p{index}/index.js")),
            &"x".repeat(10_000 + index),
        );
    }
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    save_whole(&cache, &root, "build-1");
    let one = cache.stats();
    write(&root.join("node_modules/p3/index.js"), &"y".repeat(10_000));
    let second = save_whole(&cache, &root, "build-2");
    let two = cache.stats();
    assert_eq!((two.snapshots, two.objects), (2, one.objects + 1));
    let manifest = base
        .join("cache/snapshots")
        .join(format!("{}.json", second.id));
    let manifest_bytes = fs::metadata(manifest).expect("manifest").len();
    assert_eq!(
        two.bytes - one.bytes - manifest_bytes,
        10_000,
        "a second snapshot added more than its changed file and its manifest"
    );
}

#[test]
fn an_install_snapshot_keeps_only_what_was_added() {
    let base = temp_dir("reuse", "install");
    let root = base.join("build-1");
    write(&root.join("package.json"), "{}");
    write(&root.join("packages/a/src.ts"), "source");
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let before = scan(&root, cache.memo());
    write(&root.join("node_modules/dep/index.js"), "dep");
    write(&root.join("packages/a/node_modules/inner/i.js"), "inner");
    let after = scan(&root, cache.memo());
    let added = Selection::Paths(after.changed_since(&before));
    let key = key(SnapshotKind::Install);
    let info = cache
        .save(&key, "build-1", &after, &added, not_in_use)
        .expect("save");
    let into = base.join("build-2");
    write(&into.join("packages/a/src.ts"), "newer source");
    cache.restore(&info, &into).expect("restore");
    assert_eq!(
        fs::read_to_string(into.join("node_modules/dep/index.js")).expect("dep"),
        "dep"
    );
    assert_eq!(
        fs::read_to_string(into.join("packages/a/node_modules/inner/i.js")).expect("inner"),
        "inner"
    );
    assert_eq!(
        fs::read_to_string(into.join("packages/a/src.ts")).expect("src"),
        "newer source"
    );
    assert!(
        !into.join("package.json").exists(),
        "an unchanged file was restored"
    );
    let missing = Selection::Paths(vec!["nope".to_owned()]);
    assert!(
        cache
            .save(&key, "build-1", &after, &missing, not_in_use)
            .is_err()
    );
}

#[test]
fn the_bound_evicts_the_least_recently_used_but_not_one_in_use() {
    let base = temp_dir("reuse", "lru");
    let cache = BuildCache::open(&base.join("cache"), Some(25_000)).expect("open");
    let mut ids = Vec::new();
    for build in 1..=4 {
        let root = base.join(format!("build-{build}"));
        write(&root.join("big"), &build.to_string().repeat(10_000));
        let tree = scan(&root, cache.memo());
        let key = key(SnapshotKind::Output);
        let in_use = |build_id: &str| build_id == "build-1";
        let info = cache
            .save(
                &key,
                &format!("build-{build}"),
                &tree,
                &Selection::Whole,
                in_use,
            )
            .expect("save");
        ids.push(info.id);
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = cache.stats();
    assert!(stats.bytes <= 25_000, "{stats:?}");
    assert_eq!((stats.snapshots, stats.evictions), (2, 2));
    let kept: Vec<String> = ["build-1", "build-4"]
        .iter()
        .map(|build| {
            base.join("cache/snapshots")
                .join(format!("{}.json", ids[build_index(build)]))
        })
        .map(|path| path.display().to_string())
        .collect();
    for path in kept {
        assert!(Path::new(&path).exists(), "{path} was evicted");
    }
    assert_eq!(cache.remove_build("build-4"), 1);
    assert_eq!(cache.stats().snapshots, 1);
    assert_eq!(cache.stats().objects, 1);
}

fn build_index(build: &str) -> usize {
    build
        .trim_start_matches("build-")
        .parse::<usize>()
        .unwrap_or(1)
        - 1
}

#[test]
fn a_missing_or_short_object_fails_the_restore_and_drops_the_snapshot() {
    let base = temp_dir("reuse", "missing");
    let root = base.join("build-1");
    write(&root.join("a.txt"), "hello world");
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let info = save_whole(&cache, &root, "build-1");
    let object = find_objects(&base.join("cache/objects"))
        .pop()
        .expect("an object");
    set_mode(&object, 0o644);
    fs::write(&object, "hello").expect("shorten");
    let error = cache
        .restore(&info, &base.join("into"))
        .expect_err("a short object");
    assert!(error.to_string().contains("holds 5 bytes"), "{error}");
    assert!(cache.lookup(&key(SnapshotKind::Output)).is_none());
    assert_eq!(cache.stats().misses, 2);

    let info = save_whole(&cache, &root, "build-1");
    for object in find_objects(&base.join("cache/objects")) {
        fs::remove_file(object).expect("rm");
    }
    let error = cache
        .restore(&info, &base.join("into2"))
        .expect_err("a missing object");
    assert!(error.to_string().contains("unusable"), "{error}");
}

fn find_objects(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for fanout in fs::read_dir(dir).expect("list").flatten() {
        for object in fs::read_dir(fanout.path()).expect("list").flatten() {
            found.push(object.path());
        }
    }
    found
}

/// A manifest as an attacker would write it, with `entries` as given.
fn forged(id: &str, entries: serde_json::Value) -> String {
    json!({
        "format": 1, "id": id, "kind": "output", "projectId": "proj",
        "fingerprint": key(SnapshotKind::Output).fingerprint, "buildId": "b", "createdMs": 1,
        "entries": entries,
    })
    .to_string()
}

#[test]
fn forged_manifests_are_removed_unread() {
    let base = temp_dir("reuse", "forged");
    let dir = base.join("cache");
    let root = base.join("build-1");
    write(&root.join("a.txt"), "content");
    let digest = {
        let cache = BuildCache::open(&dir, None).expect("open");
        save_whole(&cache, &root, "build-1");
        let object = find_objects(&dir.join("objects")).pop().expect("an object");
        let parent = object.parent().and_then(|p| p.file_name()).expect("fanout");
        format!(
            "{}{}",
            parent.to_string_lossy(),
            object.file_name().expect("name").to_string_lossy()
        )
    };
    let file = |path: &str| json!([path, "f", 0o644, 0, 7, digest]);
    let cases = [
        ("1-aa", json!([file("../x")])),
        ("1-ab", json!([file("/etc/x")])),
        ("1-ac", json!([file("a//b")])),
        ("1-ad", json!([["x", "f", 0o644, 0, 7, "ABC"]])),
        (
            "1-ae",
            json!([["link", "l", 0o777, 0, "/tmp"], file("link/x")]),
        ),
        ("1-af", json!([["x", "p", 0o644, 0]])),
        ("1-b0", json!([file("b"), file("a")])),
        ("1-b1", json!([file("a"), file("a")])),
        ("1-b2", json!([["x", "f", 0o4755, 0, 7, digest]])),
        ("1-b3", json!([file("missing-parent/x")])),
        ("1-b4", json!([["x", "f", 0o644, 0, 1u64 << 50, digest]])),
        ("1-b5", json!([["x", "f", 0o644, 0, 7, digest, "extra"]])),
    ];
    let snapshots = dir.join("snapshots");
    for (id, entries) in &cases {
        fs::write(
            snapshots.join(format!("{id}.json")),
            forged(id, entries.clone()),
        )
        .expect("forge");
    }
    fs::write(snapshots.join("1-c0.json"), forged("1-c1", json!([]))).expect("id mismatch");
    fs::write(snapshots.join("not-an-id!.json"), "{}").expect("bad name");
    fs::File::create(snapshots.join("1-c2.json"))
        .and_then(|f| f.set_len(MAX_MANIFEST_BYTES + 1))
        .expect("huge");
    symlink(snapshots.join("1-aa.json"), snapshots.join("1-c3.json")).expect("symlink");
    fs::write(
        snapshots.join("1-c4.json"),
        forged("1-c4", json!([file("ok")])),
    )
    .expect("fine");

    let cache = BuildCache::open(&dir, None).expect("open");
    let left: Vec<String> = fs::read_dir(&snapshots)
        .expect("list")
        .flatten()
        .map(|item| item.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"1-c4.json".to_owned()));
    assert_eq!(cache.stats().snapshots, 2);
}

#[test]
fn a_manifest_forged_after_open_writes_nothing_outside() {
    let base = temp_dir("reuse", "forged-late");
    let dir = base.join("cache");
    let root = base.join("build-1");
    write(&root.join("a.txt"), "content");
    let cache = BuildCache::open(&dir, None).expect("open");
    let info = save_whole(&cache, &root, "build-1");
    let outside = base.join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    let digest = scan(&root, cache.memo()).entries()[0].kind.clone();
    let EntryKind::File(digest) = digest else {
        panic!("not a file");
    };
    let entries = json!([
        ["link", "l", 0o777, 0, outside.display().to_string()],
        ["link/x", "f", 0o644, 0, 7, digest.hex()]
    ]);
    let mut manifest: serde_json::Value =
        serde_json::from_str(&forged(&info.id, entries)).expect("json");
    manifest["buildId"] = json!("build-1");
    fs::write(
        dir.join("snapshots").join(format!("{}.json", info.id)),
        manifest.to_string(),
    )
    .expect("forge");
    let into = base.join("into");
    assert!(cache.restore(&info, &into).is_err());
    assert_eq!(fs::read_dir(&outside).expect("list").count(), 0);
}

#[test]
fn two_saves_at_once_both_land() {
    let (base, root, cache) = sample_store("concurrent");
    for index in 0..200 {
        write(
            &root.join(format!("node_modules/many/f{index}.js")),
            &index.to_string(),
        );
    }
    let tree = scan(&root, cache.memo());
    let infos: Vec<SnapshotInfo> = std::thread::scope(|scope| {
        let saves: Vec<_> = ["b1", "b2"]
            .iter()
            .map(|build| {
                let (cache, tree) = (&cache, &tree);
                scope.spawn(move || {
                    cache.save(
                        &key(SnapshotKind::Output),
                        build,
                        tree,
                        &Selection::Whole,
                        not_in_use,
                    )
                })
            })
            .collect();
        saves
            .into_iter()
            .map(|save| save.join().expect("no panic").expect("save"))
            .collect()
    });
    for (index, info) in infos.iter().enumerate() {
        let into = base.join(format!("into-{index}"));
        cache.restore(info, &into).expect("restore");
        assert_eq!(scan(&into, &DigestMemo::new()).digest(), tree.digest());
        unlock(&into);
    }
    unlock(&root);
}

/// The object file holding `text` in the store at `cache_dir`, made writable.
fn object_of(cache_dir: &Path, text: &str) -> PathBuf {
    let hex = ContentDigest::of(text.as_bytes()).hex();
    let object = cache_dir.join("objects").join(&hex[..2]).join(&hex[2..]);
    set_mode(&object, 0o644);
    object
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&fs::symlink_metadata(path).expect("stat"))
}

/// The names in `dir` that are restore temp files.
fn restore_temps(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|item| item.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".restore-"))
        .collect()
}

#[test]
fn a_short_object_fails_the_restore_before_anything_changes() {
    let base = temp_dir("reuse", "precheck");
    let root = base.join("build-1");
    write(&root.join("a.txt"), "restored a");
    write(&root.join("b.txt"), "restored b");
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let info = save_whole(&cache, &root, "build-1");
    let into = base.join("into");
    write(&into.join("a.txt"), "old a");
    let before = inode(&into.join("a.txt"));
    fs::write(object_of(&base.join("cache"), "restored b"), "short").expect("shorten");

    let error = cache.restore(&info, &into).expect_err("a short object");
    assert!(
        error
            .to_string()
            .contains("the object for b.txt holds 5 bytes"),
        "{error}"
    );
    assert_eq!(
        fs::read_to_string(into.join("a.txt")).expect("read"),
        "old a"
    );
    assert_eq!(inode(&into.join("a.txt")), before);
    assert!(!into.join("b.txt").exists());
}

#[test]
fn a_tampered_object_is_never_restored_and_leaves_no_part() {
    let base = temp_dir("reuse", "tampered");
    let root = base.join("build-1");
    write(&root.join("a.txt"), "hello world");
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let info = save_whole(&cache, &root, "build-1");
    let into = base.join("into");
    write(&into.join("a.txt"), "old");
    fs::write(object_of(&base.join("cache"), "hello world"), "HELLO WORLD").expect("tamper");

    let error = cache.restore(&info, &into).expect_err("a tampered object");
    assert!(
        error.to_string().contains("does not hold the content"),
        "{error}"
    );
    assert_eq!(fs::read_to_string(into.join("a.txt")).expect("read"), "old");
    assert_eq!(restore_temps(&into), Vec::<String>::new());
    assert!(cache.lookup(&key(SnapshotKind::Output)).is_none());
}

#[test]
fn a_restore_replaces_a_directory_where_a_file_goes() {
    let base = temp_dir("reuse", "dir-to-file");
    let root = base.join("build-1");
    write(&root.join("a.txt"), "file now");
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let info = save_whole(&cache, &root, "build-1");
    let into = base.join("into");
    write(&into.join("a.txt/inner"), "was a directory");
    cache.restore(&info, &into).expect("restore");
    assert_eq!(
        fs::read_to_string(into.join("a.txt")).expect("read"),
        "file now"
    );
    assert_eq!(restore_temps(&into), Vec::<String>::new());
}

/// A tree of `files` files of 8 KB each, all different.
fn many_files(root: &Path, files: usize) {
    for index in 0..files {
        let text = format!("{index:08}").repeat(1024);
        write(&root.join(format!("d{}/f{index}", index % 16)), &text);
    }
}

#[test]
fn a_snapshot_removed_during_its_restore_goes_when_the_restore_ends() {
    let base = temp_dir("reuse", "doomed");
    let root = base.join("build-1");
    many_files(&root, 3000);
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let info = save_whole(&cache, &root, "build-1");
    let into = base.join("into");
    let restored = std::thread::scope(|scope| {
        let restoring = scope.spawn(|| cache.restore(&info, &into));
        while !into.exists() && !restoring.is_finished() {
            std::thread::yield_now();
        }
        assert_eq!(cache.remove_build("build-1"), 1);
        assert!(cache.lookup(&key(SnapshotKind::Output)).is_none());
        assert_eq!(cache.stats().snapshots, 0);
        restoring.join().expect("no panic")
    });
    assert_eq!(restored.expect("the restore succeeds").files, 3000);
    assert_eq!(
        scan(&into, &DigestMemo::new()).digest(),
        scan(&root, cache.memo()).digest()
    );
    assert_eq!(cache.stats().objects, 0);
    assert_eq!(find_objects(&base.join("cache/objects")).len(), 0);
    assert_eq!(
        fs::read_dir(base.join("cache/snapshots"))
            .expect("list")
            .count(),
        0
    );
}

#[test]
fn stats_answer_while_a_big_removal_runs() {
    let base = temp_dir("reuse", "removal");
    let root = base.join("build-1");
    many_files(&root, 3000);
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    save_whole(&cache, &root, "build-1");
    let calls = std::thread::scope(|scope| {
        let removing = scope.spawn(|| cache.remove_build("build-1"));
        let mut calls = 0;
        while !removing.is_finished() {
            cache.stats();
            calls += 1;
        }
        assert_eq!(removing.join().expect("no panic"), 1);
        calls
    });
    assert!(calls > 0);
    assert_eq!(cache.stats().objects, 0);
    assert_eq!(find_objects(&base.join("cache/objects")).len(), 0);
}

#[test]
fn a_save_beyond_the_manifest_caps_writes_nothing() {
    let (base, root, mut cache) = sample_store("caps");
    let entries = scan(&root, cache.memo()).entries().len();
    for (caps, says) in [
        (
            ManifestCaps {
                entries: entries - 1,
                bytes: MAX_MANIFEST_BYTES,
            },
            "more than a snapshot may hold",
        ),
        (
            ManifestCaps {
                entries: MAX_MANIFEST_ENTRIES,
                bytes: 200,
            },
            "its manifest would take",
        ),
    ] {
        cache.set_manifest_caps(caps);
        let error = refused_save(&cache, &root);
        assert!(error.contains(says), "{error}");
        assert_eq!(find_objects(&base.join("cache/objects")).len(), 0);
        assert_eq!(cache.stats(), CacheStats::default());
    }
    unlock(&root);
}

#[test]
fn a_snapshot_over_the_bound_or_a_sparse_file_is_refused() {
    let base = temp_dir("reuse", "refused");
    let root = base.join("build-1");
    write(&root.join("small"), "x");
    write(&root.join("big"), &"y".repeat(2000));
    let cache = BuildCache::open(&base.join("cache"), Some(1500)).expect("open");
    let error = refused_save(&cache, &root);
    assert!(
        error.contains("would exceed the build cache's bound"),
        "{error}"
    );
    assert_eq!(find_objects(&base.join("cache/objects")).len(), 0);

    fs::remove_file(root.join("big")).expect("rm");
    fs::File::create(root.join("sparse"))
        .and_then(|file| file.set_len(8 << 20))
        .expect("truncate");
    let cache = BuildCache::open(&base.join("cache"), None).expect("open");
    let error = refused_save(&cache, &root);
    assert!(
        error.contains("a sparse file (8388608 bytes, 0 on disk)"),
        "{error}"
    );
    assert_eq!(find_objects(&base.join("cache/objects")).len(), 0);
    assert_eq!(cache.stats(), CacheStats::default());
}

#[test]
fn only_one_store_opens_a_directory_exclusively() {
    let base = temp_dir("reuse", "exclusive");
    let dir = base.join("cache");
    let first = BuildCache::open_exclusive(&dir, None)
        .expect("open")
        .expect("the lock");
    assert!(
        BuildCache::open_exclusive(&dir, None)
            .expect("open")
            .is_none()
    );
    let mode = fs::metadata(dir.join("lock"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(first);
    assert!(
        BuildCache::open_exclusive(&dir, None)
            .expect("open")
            .is_some()
    );
}

/// Timings on a big real tree: `REUSE_BENCH_TREE=/path/to/node_modules cargo test … --ignored
/// measure_a_big_tree -- --nocapture` (default: /work/main/node_modules).
#[test]
#[ignore = "a measurement: reads hundreds of MB"]
fn measure_a_big_tree() {
    let tree_root = std::env::var_os("REUSE_BENCH_TREE")
        .map_or_else(|| PathBuf::from("/work/main/node_modules"), PathBuf::from);
    let work = std::env::var_os("REUSE_BENCH_DIR")
        .map_or_else(|| temp_dir("reuse", "measure"), PathBuf::from);
    let _ = fs::remove_dir_all(work.join("cache"));
    let _ = fs::remove_dir_all(work.join("into"));
    let cache = BuildCache::open(&work.join("cache"), None).expect("open");
    let timed = |label: &str, started: Instant, bytes: u64| {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let per_gb = ms / (bytes as f64 / 1e9).max(1e-9);
        println!("{label}: {ms:.0} ms ({per_gb:.0} ms/GB)");
    };

    let buffer = vec![7u8; 256 << 20];
    let started = Instant::now();
    ContentDigest::of(&buffer);
    timed("sha-256 of 256 MB in memory", started, buffer.len() as u64);
    drop(buffer);

    let started = Instant::now();
    scan_tree(&tree_root, &[], &DigestMemo::new()).expect("scan");
    println!(
        "scan (first, page cache may be cold): {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let tree = scan_tree(&tree_root, &[], cache.memo()).expect("scan");
    let bytes = tree.file_bytes();
    println!(
        "tree: {} entries, {} files, {:.1} MB",
        tree.entries().len(),
        tree.entries()
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File(_)))
            .count(),
        bytes as f64 / 1e6
    );
    timed("scan (cold memo)", started, bytes);
    let started = Instant::now();
    let again = scan_tree(&tree_root, &[], cache.memo()).expect("scan");
    timed("scan (warm memo)", started, bytes);
    let started = Instant::now();
    let digest = again.digest();
    timed(
        &format!("tree digest {}", &digest.hex()[..12]),
        started,
        bytes,
    );

    let key = key(SnapshotKind::Output);
    let started = Instant::now();
    let info = cache
        .save(&key, "b1", &tree, &Selection::Whole, not_in_use)
        .expect("save");
    timed("save (first)", started, bytes);
    let started = Instant::now();
    let rescan = scan_tree(&tree_root, &[], cache.memo()).expect("scan");
    cache
        .save(&key, "b2", &rescan, &Selection::Whole, not_in_use)
        .expect("save");
    timed("rescan + save (unchanged)", started, bytes);
    println!("store: {:?}", cache.stats());
    nix::unistd::sync();
    let started = Instant::now();
    let stats = cache.restore(&info, &work.join("into")).expect("restore");
    timed(&format!("restore ({} files)", stats.files), started, bytes);
    let started = Instant::now();
    cache.restore(&info, &work.join("into")).expect("restore");
    timed("restore again over the same files", started, bytes);
    let started = Instant::now();
    let reopened = BuildCache::open(&work.join("cache"), None).expect("reopen");
    timed("open (2 manifests)", started, bytes);
    assert_eq!(reopened.stats().snapshots, 2);
    let restored = scan_tree(&work.join("into"), &[], &DigestMemo::new()).expect("scan");
    assert_eq!(restored.digest(), digest);
}
