//! C2SP tlog-checkpoint bodies (<https://c2sp.org/tlog-checkpoint>): the note text of a signed
//! tree head.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::merkle::{Hash, HASH_SIZE};
use crate::note::{open_note, Verifiers};
use crate::Error;

/// A tree head: origin, tree size, root hash, and optional extension lines
/// (tlog-checkpoint "Note text").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/log42` (line 1; non-empty).
    pub origin: String,
    /// The number of leaves (line 2).
    pub size: u64,
    /// The RFC 6962 root hash at that size (line 3).
    pub root: Hash,
    /// Extension lines, opaque and non-empty (lines 4+; NOT RECOMMENDED by the spec).
    pub extensions: Vec<String>,
}

/// An ASCII decimal with no leading zeroes unless it is `0` (tlog-checkpoint line 2).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// A standard base64 (RFC 4648 section 4) SHA-256 hash, canonical encoding only.
pub(crate) fn parse_hash(s: &str) -> Option<Hash> {
    let bytes = B64.decode(s).ok()?;
    (bytes.len() == HASH_SIZE).then(|| {
        let mut h = [0u8; HASH_SIZE];
        h.copy_from_slice(&bytes);
        h
    })
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: one line each for origin, size and base64 root, then the extension lines,
    /// each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note text strictly: at least three non-empty lines each ending in a newline, a
    /// size without leading zeroes, a 32-byte base64 root, non-empty extension lines.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |what| Error::Malformed(what);
        let body = text.strip_suffix('\n').ok_or(bad("checkpoint (no final newline)"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(bad("checkpoint origin"))?;
        if origin.chars().any(|c| c.is_control()) {
            return Err(bad("checkpoint origin"));
        }
        let size = lines
            .next()
            .and_then(parse_decimal)
            .ok_or(bad("checkpoint tree size"))?;
        let root = lines.next().and_then(parse_hash).ok_or(bad("checkpoint root hash"))?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() || line.chars().any(|c| c.is_control()) {
                return Err(bad("checkpoint extension line"));
            }
            extensions.push(line.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Opens a signed checkpoint: the note must carry a verified signature by one of the
    /// verifiers, and at least one verified key must be named as the origin (the log's own
    /// key, tlog-checkpoint "Signatures": the key name SHOULD match the origin).
    pub fn open(signed: &[u8], verifiers: &Verifiers) -> Result<Self, Error> {
        let note = open_note(signed, verifiers)?;
        let checkpoint = Self::parse(&note.text)?;
        if !note.verified.iter().any(|s| s.name == checkpoint.origin) {
            return Err(Error::Unverified);
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::EMPTY_ROOT;

    #[test]
    fn round_trips_and_rejects_malformed_bodies() {
        let mut c = Checkpoint::new("example.com/log", 0, EMPTY_ROOT);
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        c.extensions.push("ext one".into());
        assert_eq!(Checkpoint::parse(&c.to_text()).unwrap(), c);
        let root = B64.encode(EMPTY_ROOT);
        for bad in [
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n1\n{}\n", &root[..40]),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            "o\n1\n".to_string(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
