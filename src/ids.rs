//! Random identifiers: server ids and the tokens their processes carry, as UUID v4 (the form
//! `crypto.randomUUID()` writes, which MastraAdmin's storage and routes require).

/// 128 bits from the kernel's random source (`getrandom(2)`), or — when that fails, which a
/// kernel since 3.17 does not — from a keyed hash of the clock and a counter, still unique
/// within this host.
pub fn random_u128() -> u128 {
    let mut bytes = [0u8; 16];
    // SAFETY: the buffer is valid for its length; getrandom writes at most that many bytes.
    let filled =
        unsafe { nix::libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) } as usize;
    if filled == bytes.len() {
        return u128::from_ne_bytes(bytes);
    }
    fallback_u128()
}

fn fallback_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = std::collections::hash_map::RandomState::new();
    let half = || {
        let mut hasher = seed.build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    };
    (u128::from(half()) << 64) | u128::from(half())
}

/// A new random UUID v4: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, lowercase.
pub fn uuid_v4() -> String {
    format_uuid_v4(random_u128())
}

/// `bits` as a UUID v4: the version and variant bits set, the other 122 bits kept.
pub fn format_uuid_v4(bits: u128) -> String {
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 64) & 0xffff,
        (bits >> 48) & 0xffff,
        bits & 0xffff_ffff_ffff
    )
}

/// Whether `text` is a UUID in the canonical lowercase form [`uuid_v4`] writes.
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_version_4_variant_1_and_differ() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| uuid_v4()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(is_uuid(id), "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!("89ab".contains(&id[19..20]), "{id}");
        }
    }

    #[test]
    fn formatting_keeps_every_other_bit() {
        assert_eq!(format_uuid_v4(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(
            format_uuid_v4(u128::MAX),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert!(fallback_u128() != fallback_u128());
    }

    #[test]
    fn only_the_canonical_form_is_a_uuid() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        assert!(!is_uuid("dep-1-1a249225a74-3"));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e0"));
    }
}
