//! The lines that explain a failed step, for a build's `errorMessage`: the package manager's
//! (or a turbo task's) own error lines, a few lines and bytes at most, colour codes removed,
//! and the project's files they name.

use std::path::Path;

use crate::logs::{LogEntry, Stream};

/// At most this many of the package manager's own lines are quoted in a failure message…
const EXCERPT_LINES: usize = 6;
/// …and at most this many bytes of them.
const EXCERPT_BYTES: usize = 800;

/// The lines of a failed step that say why: for a turbo run, the failed task's own lines (see
/// [`turbo_task_lines`]); else its first error line and what follows on that stream (npm, pnpm,
/// yarn and bun all start theirs with "error" or an `ERR_` code), else its last stderr lines,
/// else its last lines; a few lines and bytes at most, colour codes removed.
pub(super) fn error_excerpt(output: &[LogEntry]) -> Option<String> {
    let lines: Vec<(Stream, String)> = output
        .iter()
        // Leading spaces stay: they align a code frame's `^` under its line.
        .map(|e| (e.stream(), strip_ansi(e.line()).trim_end().to_owned()))
        .filter(|(_, line)| !line.trim().is_empty() && !is_bare_prefix(line.trim()))
        .collect();
    let chosen = turbo_task_lines(&lines).unwrap_or_else(|| step_lines(&lines));
    let mut excerpt = String::new();
    for line in chosen {
        if excerpt.len() + line.len() > EXCERPT_BYTES {
            if excerpt.is_empty() {
                let cut = (0..=EXCERPT_BYTES)
                    .rev()
                    .find(|i| line.is_char_boundary(*i))
                    .unwrap_or(0);
                excerpt.push_str(&line[..cut]);
                excerpt.push('…');
            }
            break;
        }
        if !excerpt.is_empty() {
            excerpt.push('\n');
        }
        excerpt.push_str(line);
    }
    (!excerpt.is_empty()).then_some(excerpt)
}

/// `: <the first error line>` of a failed helper, or nothing.
pub(super) fn first_error_line(output: &[LogEntry]) -> String {
    let excerpt = error_excerpt(output).unwrap_or_default();
    match excerpt.lines().next() {
        Some(line) if !line.is_empty() => format!(": {line}"),
        _ => String::new(),
    }
}

/// A step's first error line and what follows on that stream, else its last stderr lines, else
/// its last lines (see [`error_excerpt`]).
fn step_lines(lines: &[(Stream, String)]) -> Vec<&str> {
    match lines
        .iter()
        .position(|(_, line)| is_error_line(line.trim_start()))
    {
        // The error and what follows it on the same stream (the other pipe's lines may land
        // anywhere in between).
        Some(first) => lines[first..]
            .iter()
            .filter(|(stream, _)| *stream == lines[first].0)
            .take(EXCERPT_LINES)
            .map(|(_, l)| l.as_str())
            .collect(),
        None => {
            let stderr: Vec<&str> = lines
                .iter()
                .filter(|(s, _)| *s == Stream::Stderr)
                .map(|(_, l)| l.as_str())
                .collect();
            let pool: Vec<&str> = if stderr.is_empty() {
                lines.iter().map(|(_, l)| l.as_str()).collect()
            } else {
                stderr
            };
            pool[pool.len().saturating_sub(EXCERPT_LINES)..].to_vec()
        }
    }
}

/// What turbo prints, after the task's prefix (`@ws/app:build: ERROR: command finished with
/// error: …`), when a task's command fails.
const TURBO_TASK_FAILED: &str = "ERROR: command finished with error";

/// The lines of the task a turbo run names as failed, kept with their `<pkg>:<task>: ` prefix:
/// from the task's first error line (`@ws/app:build: Error: …`), else its last lines. turbo's
/// own error (`ERROR run failed: command exited (1)`, on stderr) says nothing of the cause,
/// which the task printed on turbo's stdout. `None` when no turbo task failed.
fn turbo_task_lines(lines: &[(Stream, String)]) -> Option<Vec<&str>> {
    let prefix = lines.iter().find_map(|(_, line)| {
        let at = line.find(&format!(": {TURBO_TASK_FAILED}"))?;
        Some(format!("{}: ", &line[..at]))
    })?;
    let own: Vec<&str> = lines
        .iter()
        .map(|(_, line)| line.as_str())
        .filter(|line| {
            line.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                !rest.trim().is_empty()
                    && !is_bare_prefix(rest.trim())
                    && !rest.starts_with(TURBO_TASK_FAILED)
            })
        })
        .collect();
    let first = own
        .iter()
        .position(|line| is_error_line(line[prefix.len()..].trim_start()))
        .unwrap_or(own.len().saturating_sub(EXCERPT_LINES));
    let task: Vec<&str> = own[first..].iter().take(EXCERPT_LINES).copied().collect();
    (!task.is_empty()).then_some(task)
}

/// The paths inside `root` (the build copy) that `text` names, each once, relative to the
/// project `workdir` when inside it (`src/mastra/index.ts` for
/// `<buildDir>/<id>/src/mastra/index.ts:3:5`), else to `root` (a workspace's
/// `packages/lib/src/index.ts`).
pub(super) fn project_paths(text: &str, root: &Path, workdir: &Path) -> Vec<String> {
    let app = workdir
        .strip_prefix(root)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/"));
    let prefix = format!("{}/", root.to_string_lossy().trim_end_matches('/'));
    let mut found: Vec<String> = Vec::new();
    for (at, _) in text.match_indices(&prefix) {
        let rest = &text[at + prefix.len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "'\"`()[]<>,;:".contains(c))
            .unwrap_or(rest.len());
        let relative = rest[..end].trim_end_matches('.');
        let relative = app
            .as_deref()
            .and_then(|app| relative.strip_prefix(app))
            .unwrap_or(relative);
        if !relative.is_empty() && !found.iter().any(|f| f == relative) {
            found.push(relative.to_owned());
        }
    }
    found
}

fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.starts_with("error")
        || lower.starts_with("npm error")
        || lower.starts_with("npm err!")
        || line.contains("ERR_")
}

/// npm's empty continuation lines ("npm error" alone).
fn is_bare_prefix(line: &str) -> bool {
    matches!(line, "npm error" | "npm ERR!")
}

/// Removes ANSI escape sequences (colours, cursor moves).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, up to the final byte (@ to ~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(lines: &[(Stream, &str)]) -> Vec<LogEntry> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (stream, line))| LogEntry::new(i as u64 + 1, 0, *stream, line))
            .collect()
    }

    #[test]
    fn the_first_error_line_and_what_follows_are_quoted() {
        use Stream::*;
        // What npm ci prints for a lockfile out of sync (shortened).
        let npm = entries(&[
            (Stderr, "npm error code EUSAGE"),
            (Stderr, "npm error"),
            (
                Stderr,
                "npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync.",
            ),
            (Stderr, "npm error"),
            (
                Stderr,
                "npm error Invalid: lock file's is-number@7.0.0 does not satisfy is-number@6.0.0",
            ),
        ]);
        let excerpt = error_excerpt(&npm).unwrap();
        assert!(excerpt.starts_with("npm error code EUSAGE\nnpm error `npm ci` can only"));
        assert!(excerpt.ends_with("does not satisfy is-number@6.0.0"));

        let yarn = entries(&[
            (Stdout, "yarn install v1.22.22"),
            (Stdout, "[1/4] Resolving packages..."),
            (
                Stderr,
                "\u{1b}[31merror\u{1b}[39m Your lockfile needs to be updated.",
            ),
        ]);
        assert_eq!(
            error_excerpt(&yarn).unwrap(),
            "error Your lockfile needs to be updated."
        );
    }

    #[test]
    fn without_error_lines_the_last_stderr_lines_are_quoted() {
        use Stream::*;
        let output = entries(&[
            (Stdout, "building"),
            (Stderr, "warning: x"),
            (Stderr, "it broke"),
            (Stdout, "done"),
        ]);
        assert_eq!(error_excerpt(&output).unwrap(), "warning: x\nit broke");
        let quiet = entries(&[(Stdout, "a"), (Stdout, "b")]);
        assert_eq!(error_excerpt(&quiet).unwrap(), "a\nb");
        assert_eq!(error_excerpt(&[]), None);
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "error ".to_owned() + &"é".repeat(1000);
        let output = entries(&[(Stream::Stderr, long.as_str()), (Stream::Stderr, "more")]);
        let excerpt = error_excerpt(&output).unwrap();
        assert!(excerpt.len() <= EXCERPT_BYTES + '…'.len_utf8());
        assert!(excerpt.ends_with('…'));
        let many: Vec<String> = (0..20).map(|i| format!("error {i}")).collect();
        let many: Vec<(Stream, &str)> = many.iter().map(|l| (Stream::Stderr, l.as_str())).collect();
        assert_eq!(
            error_excerpt(&entries(&many)).unwrap().lines().count(),
            EXCERPT_LINES
        );
    }

    #[test]
    fn code_frames_keep_their_indentation() {
        use Stream::*;
        let output = entries(&[
            (Stdout, "building"),
            (Stderr, "Error: Transform failed with 1 error:"),
            (Stderr, "  3 |   const x = ;"),
            (Stderr, "    |             ^"),
        ]);
        assert_eq!(
            error_excerpt(&output).unwrap(),
            "Error: Transform failed with 1 error:\n  3 |   const x = ;\n    |             ^"
        );
        let indented = entries(&[(Stderr, "   error TS2304: Cannot find name 'x'.")]);
        assert_eq!(
            error_excerpt(&indented).unwrap(),
            "   error TS2304: Cannot find name 'x'."
        );
    }

    #[test]
    fn a_failed_turbo_task_is_quoted_by_its_own_lines() {
        use Stream::*;
        // What turbo 2.5.8 prints when @ws/app's build fails (the task's output is on turbo's
        // stdout, turbo's own errors on its stderr).
        let output = entries(&[
            (Stdout, "• Packages in scope: @ws/app, @ws/lib"),
            (
                Stdout,
                "@ws/lib:build: cache miss, executing e0a38b2b71c2df5c",
            ),
            (Stdout, "@ws/lib:build: lib: wrote dist/index.js"),
            (
                Stdout,
                "@ws/app:build: cache miss, executing c7df962d540a3b1b",
            ),
            (Stdout, "@ws/app:build: "),
            (Stdout, "@ws/app:build: > @ws/app@1.0.0 build"),
            (Stdout, "@ws/app:build: [mastra] building"),
            (
                Stdout,
                "@ws/app:build: Error: \"ObservabilityStorage\" is not exported by \"node_modules/@mastra/core/dist/storage/index.js\"",
            ),
            (
                Stdout,
                "@ws/app:build:     at getRollupError (file:///x/rollup.js:1:1)",
            ),
            (
                Stdout,
                "@ws/app:build: npm error Lifecycle script `build` failed with error:",
            ),
            (Stdout, "@ws/app:build: npm error code 1"),
            (
                Stderr,
                "@ws/app:build: ERROR: command finished with error: command (/b/1/apps/mastra) /usr/bin/npm run build exited (1)",
            ),
            (Stdout, "@ws/app:build: npm error path /b/1/apps/mastra"),
            (Stdout, "@ws/app:build: npm error workspace @ws/app@1.0.0"),
            (Stdout, "@ws/app:build: npm error location /b/1/apps/mastra"),
            (
                Stderr,
                "@ws/app#build: command (/b/1/apps/mastra) /usr/bin/npm run build exited (1)",
            ),
            (Stdout, " Tasks:    1 successful, 2 total"),
            (Stdout, "Failed:    @ws/app#build"),
            (Stderr, " ERROR  run failed: command  exited (1)"),
        ]);
        assert_eq!(
            error_excerpt(&output).unwrap(),
            "@ws/app:build: Error: \"ObservabilityStorage\" is not exported by \"node_modules/@mastra/core/dist/storage/index.js\"\n\
             @ws/app:build:     at getRollupError (file:///x/rollup.js:1:1)\n\
             @ws/app:build: npm error Lifecycle script `build` failed with error:\n\
             @ws/app:build: npm error code 1\n\
             @ws/app:build: npm error path /b/1/apps/mastra\n\
             @ws/app:build: npm error workspace @ws/app@1.0.0"
        );
        // A task that printed no error line: its last lines.
        let quiet = entries(&[
            (Stdout, "app:build: step 1"),
            (Stdout, "app:build: it broke"),
            (Stdout, "lib:build: fine"),
            (
                Stderr,
                "app:build: ERROR: command finished with error: command (.) exited (2)",
            ),
            (Stderr, " ERROR  run failed: command  exited (2)"),
        ]);
        assert_eq!(
            error_excerpt(&quiet).unwrap(),
            "app:build: step 1\napp:build: it broke"
        );
    }

    #[test]
    fn paths_in_the_copy_are_named_relative_to_the_project() {
        let text = "/b/id1/src/mastra/index.ts:3:5: ERROR: Expected expression\n\
                    at (/b/id1/src/mastra/index.ts:3:5) and '/b/id1/lib/a.js'.\n/b/id10/x.ts";
        assert_eq!(
            project_paths(text, Path::new("/b/id1"), Path::new("/b/id1")),
            ["src/mastra/index.ts", "lib/a.js"]
        );
        let root = Path::new("/b/id1");
        assert!(project_paths("nothing here", root, root).is_empty());
        // In a workspace: the app's files relative to the app, the others to the root.
        let text = "/b/id1/apps/mastra/src/index.ts:1:1 and /b/id1/packages/lib/x.ts";
        assert_eq!(
            project_paths(text, root, &root.join("apps/mastra")),
            ["src/index.ts", "packages/lib/x.ts"]
        );
    }

    #[test]
    fn a_failed_helper_is_named_by_its_first_error_line() {
        let output = entries(&[
            (Stream::Stderr, "npm error code E404"),
            (Stream::Stderr, "npm error 404 Not Found"),
        ]);
        assert_eq!(first_error_line(&output), ": npm error code E404");
        assert_eq!(first_error_line(&[]), "");
    }

    #[test]
    fn colour_codes_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m plain"), "red plain");
    }
}
