//! C2SP tlog-proof (<https://c2sp.org/tlog-proof>): an inclusion proof with the signed
//! checkpoint it leads to, verifiable offline with nothing but the log's verifier key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::checkpoint::{parse_decimal, parse_hash, Checkpoint};
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::note::Verifiers;
use crate::Error;

/// The first line of a proof (tlog-proof "Format").
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A tlog-proof: optional extra data, the entry's index, its inclusion proof, and the signed
/// checkpoint verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data (the `extra` line); never trusted by the verifier.
    pub extra: Option<Vec<u8>>,
    /// The zero-based index of the entry in the log.
    pub index: u64,
    /// The RFC 6962 section 2.1.1 inclusion proof, leaf's sibling first.
    pub path: Vec<Hash>,
    /// The signed checkpoint (a signed note), exactly as the log issued it.
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof text: header, optional `extra`, `index`, one base64 hash per line, a blank
    /// line, the checkpoint (tlog-proof "Format").
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(64 + self.path.len() * 45 + self.checkpoint.len());
        s.push_str(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&B64.encode(extra));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a proof text strictly (tlog-proof "Format"); the checkpoint is kept verbatim,
    /// not yet verified.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |what| Error::Malformed(what);
        let rest = text
            .strip_prefix(HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(bad("tlog-proof header"))?;
        let (mut line, mut rest) = rest.split_once('\n').ok_or(bad("tlog-proof (truncated)"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|_| bad("tlog-proof extra data"))?);
            (line, rest) = rest.split_once('\n').ok_or(bad("tlog-proof (truncated)"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or(bad("tlog-proof index"))?;
        let mut path = Vec::new();
        loop {
            let (line, tail) = rest
                .split_once('\n')
                .ok_or(bad("tlog-proof (no blank line before the checkpoint)"))?;
            rest = tail;
            if line.is_empty() {
                break;
            }
            if path.len() >= 64 {
                return Err(bad("tlog-proof (more than 64 hashes)"));
            }
            path.push(parse_hash(line).ok_or(bad("tlog-proof hash"))?);
        }
        if rest.is_empty() {
            return Err(bad("tlog-proof (no checkpoint)"));
        }
        Ok(Self {
            extra,
            index,
            path,
            checkpoint: rest.to_owned(),
        })
    }
}

/// Verifies a tlog-proof for an entry with nothing else: parses the proof, opens the checkpoint
/// with the trusted keys (a verified signature by a key named as the origin is required), and
/// checks the inclusion proof of SHA-256(0x00 || `leaf_data`) at the index against the
/// checkpoint's root (RFC 9162 section 2.1.3.2). Returns (index, tree size).
pub fn verify_proof(text: &str, leaf_data: &[u8], verifiers: &Verifiers) -> Result<(u64, u64), Error> {
    let proof = TlogProof::parse(text)?;
    let checkpoint = Checkpoint::open(proof.checkpoint.as_bytes(), verifiers)?;
    verify_inclusion(
        &leaf_hash(leaf_data),
        proof.index,
        checkpoint.size,
        &proof.path,
        &checkpoint.root,
    )?;
    Ok((proof.index, checkpoint.size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{prove_inclusion, MemoryTree};
    use crate::note::{now_or_never, sign_note, Ed25519Signer};

    #[test]
    fn proofs_of_every_entry_verify_and_any_change_is_caught() {
        let signer = Ed25519Signer::from_seed("tollgate.test/log", &[9; 32]).unwrap();
        let verifiers = Verifiers::new(vec![signer.verifier_key()]);
        let mut tree = MemoryTree::new();
        for i in 0..13u32 {
            tree.append(format!("{{\"event\":{i}}}").as_bytes());
        }
        let size = tree.size();
        let cp = Checkpoint::new("tollgate.test/log", size, tree.root(size).unwrap());
        let signed = now_or_never(sign_note(&cp.to_text(), &[&signer])).unwrap().unwrap();
        for i in 0..size {
            let proof = TlogProof {
                extra: (i % 2 == 0).then(|| b"receipt".to_vec()),
                index: i,
                path: prove_inclusion(i, size, &tree).unwrap(),
                checkpoint: signed.clone(),
            };
            let text = proof.encode();
            assert_eq!(TlogProof::parse(&text).unwrap(), proof);
            let data = format!("{{\"event\":{i}}}");
            assert_eq!(verify_proof(&text, data.as_bytes(), &verifiers).unwrap(), (i, size));
            assert!(verify_proof(&text, b"{\"event\":99}", &verifiers).is_err());
            let other = TlogProof {
                index: (i + 1) % size,
                ..proof.clone()
            }
            .encode();
            assert!(verify_proof(&other, data.as_bytes(), &verifiers).is_err());
        }
        // A checkpoint signed by a key not named as the origin is not the log's.
        let stranger = Ed25519Signer::from_seed("someone.else", &[3; 32]).unwrap();
        let signed = now_or_never(sign_note(&cp.to_text(), &[&stranger])).unwrap().unwrap();
        let text = TlogProof {
            extra: None,
            index: 0,
            path: prove_inclusion(0, size, &tree).unwrap(),
            checkpoint: signed,
        }
        .encode();
        let v = Verifiers::new(vec![stranger.verifier_key()]);
        assert_eq!(verify_proof(&text, b"{\"event\":0}", &v), Err(Error::Unverified));
    }

    #[test]
    fn malformed_proofs_are_refused() {
        // The error cases of transparency-dev/merkle proof/tlog_proof_test.go TestVerifyTLogProofErrors.
        let long = B64.encode([0u8; 64]);
        for bad in [
            "wrong-header\nindex 0\n\ncheckpoint\n".to_string(),
            "c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n".to_string(),
            "c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n".to_string(),
            "c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n".to_string(),
            "c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n".to_string(),
            "c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n".to_string(),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{long}\n\ncheckpoint\n"),
            "c2sp.org/tlog-proof@v1\nindex 01\n\ncheckpoint\n".to_string(),
            "c2sp.org/tlog-proof@v1\nindex 0\n".to_string(),
            "c2sp.org/tlog-proof@v1\nindex 0\n\n".to_string(),
        ] {
            assert!(TlogProof::parse(&bad).is_err(), "{bad:?}");
            assert!(verify_proof(&bad, b"", &Verifiers::default()).is_err());
        }
    }
}
