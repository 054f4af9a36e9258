//! Fingerprints: one SHA-256 over a build's named inputs.
//!
//! A [`Fingerprint`] hashes fields in the order they are given. Every field is written as a
//! tag byte, its name and its value, each length-prefixed, so no value can run into the next
//! one ("ab" + "c" never hashes like "a" + "bc") and a text never hashes like a map. The
//! purpose given to [`Fingerprint::new`] comes first, so fingerprints made for different uses
//! never meet.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest: of a file's content, of a scanned tree, or of a fingerprint's fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentDigest(pub [u8; 32]);

impl ContentDigest {
    /// The digest as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        let mut text = String::with_capacity(64);
        for byte in self.0 {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text
    }

    /// The digest written as exactly 64 lowercase hex digits, or `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (slot, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
            *slot = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(ContentDigest(digest))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentDigest(Sha256::digest(bytes).into())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The value of one lowercase hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentDigest({})", self.hex())
    }
}

/// Reads `reader` to its end through `buffer` and returns the SHA-256 of what it read and how
/// many bytes that was.
pub(crate) fn digest_reader(
    reader: &mut impl Read,
    buffer: &mut [u8],
) -> std::io::Result<(ContentDigest, u64)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let read = match reader.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((ContentDigest(hasher.finalize().into()), total))
}

/// A length-prefixed field writer over SHA-256, shared by fingerprints and tree digests.
pub(crate) struct FieldHasher(Sha256);

impl FieldHasher {
    /// A hasher whose first field is `domain`.
    pub(crate) fn new(domain: &str) -> Self {
        let mut hasher = FieldHasher(Sha256::new());
        hasher.bytes(domain.as_bytes());
        hasher
    }

    /// One byte, as is (tags and kinds).
    pub(crate) fn tag(&mut self, tag: u8) {
        self.0.update([tag]);
    }

    /// A number, as 8 little-endian bytes.
    pub(crate) fn number(&mut self, value: u64) {
        self.0.update(value.to_le_bytes());
    }

    /// Bytes preceded by their length.
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.number(value.len() as u64);
        self.0.update(value);
    }

    /// The digest of everything written.
    pub(crate) fn finish(self) -> ContentDigest {
        ContentDigest(self.0.finalize().into())
    }
}

/// A builder that hashes named fields into a hex SHA-256:
/// `Fingerprint::new("output-v1").text("pm", "npm").map("env", &env).finish()`.
pub struct Fingerprint(FieldHasher);

impl Fingerprint {
    /// A fingerprint for `purpose` (e.g. `output-v1`); change the purpose's version when the
    /// fields change meaning, so old snapshots stop matching.
    pub fn new(purpose: &str) -> Self {
        Fingerprint(FieldHasher::new(&format!(
            "mastra-runner-fingerprint:{purpose}"
        )))
    }

    /// Adds a text field.
    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.field(b'T', name);
        self.0.bytes(value.as_bytes());
        self
    }

    /// Adds a field that may be absent (absent never hashes like an empty text).
    pub fn optional(mut self, name: &str, value: Option<&str>) -> Self {
        self.field(b'O', name);
        match value {
            Some(value) => {
                self.0.tag(1);
                self.0.bytes(value.as_bytes());
            }
            None => self.0.tag(0),
        }
        self
    }

    /// Adds a field of raw bytes (a file's content, e.g. a lockfile).
    pub fn bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.field(b'B', name);
        self.0.bytes(value);
        self
    }

    /// Adds an ordered list of texts (e.g. a command's arguments).
    pub fn list<S: AsRef<str>>(mut self, name: &str, values: &[S]) -> Self {
        self.field(b'L', name);
        self.0.number(values.len() as u64);
        for value in values {
            self.0.bytes(value.as_ref().as_bytes());
        }
        self
    }

    /// Adds a map of texts (e.g. an environment), in key order.
    pub fn map(mut self, name: &str, values: &BTreeMap<String, String>) -> Self {
        self.field(b'M', name);
        self.0.number(values.len() as u64);
        for (key, value) in values {
            self.0.bytes(key.as_bytes());
            self.0.bytes(value.as_bytes());
        }
        self
    }

    /// Adds a digest: a scanned tree's ([`super::TreeScan::digest`]) or a file's.
    pub fn digest(mut self, name: &str, value: &ContentDigest) -> Self {
        self.field(b'D', name);
        self.0.bytes(&value.0);
        self
    }

    /// The fingerprint: 64 lowercase hex digits.
    pub fn finish(self) -> String {
        self.0.finish().hex()
    }

    /// The tag and name that start every field.
    fn field(&mut self, tag: u8, name: &str) {
        self.0.tag(tag);
        self.0.bytes(name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_run_into_each_other() {
        let joined = Fingerprint::new("t").text("a", "bc").text("d", "").finish();
        let split = Fingerprint::new("t").text("a", "b").text("cd", "").finish();
        assert_ne!(joined, split);
        let absent = Fingerprint::new("t").optional("x", None).finish();
        let empty = Fingerprint::new("t").optional("x", Some("")).finish();
        assert_ne!(absent, empty);
        assert_ne!(
            Fingerprint::new("one").finish(),
            Fingerprint::new("two").finish()
        );
    }

    #[test]
    fn a_fingerprint_is_stable_hex() {
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let make = || {
            Fingerprint::new("output-v1")
                .text("pm", "npm")
                .map("env", &env)
                .list("command", &["npm", "run", "build"])
                .finish()
        };
        assert_eq!(make(), make());
        assert!(ContentDigest::from_hex(&make()).is_some());
    }

    #[test]
    fn hex_round_trips_and_refuses_other_text() {
        let digest = ContentDigest::of(b"hello");
        assert_eq!(ContentDigest::from_hex(&digest.hex()), Some(digest));
        assert_eq!(ContentDigest::from_hex(&digest.hex().to_uppercase()), None);
        assert_eq!(ContentDigest::from_hex("abc"), None);
        assert_eq!(ContentDigest::from_hex(&"g".repeat(64)), None);
    }
}
