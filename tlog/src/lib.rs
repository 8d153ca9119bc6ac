//! The storage-free building blocks of tollgate's verifiable audit log (issue 15).
//!
//! Every format here is an open standard, so that tools other than tollgate can check what it
//! publishes: Merkle tree hashing, inclusion and consistency proofs of RFC 6962 section 2.1 with
//! the verification algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2 ([`merkle`]); the hash
//! tiles and entry bundles of C2SP tlog-tiles ([`tile`]); C2SP signed notes with Ed25519 keys
//! ([`note`]); C2SP tlog-checkpoint bodies ([`checkpoint`]); and C2SP tlog-proof, an inclusion
//! proof that carries its signed checkpoint and verifies offline ([`proof`]). Nothing here reads
//! or writes storage: proof generation asks a [`merkle::HashReader`] for stored hashes, which a
//! database, a memory vector or a [`tile::TileHashReader`] over an object store can serve.
//!
//! Hashes, proofs, tile paths, keys and signatures are checked against independent test vectors
//! (`tests/vectors/`, with their sources in `tests/vectors/SOURCE.md`): RFC 6962 vectors, real
//! Certificate Transparency and Go checksum database proofs and signed tree heads, and the test
//! data of golang.org/x/mod and transparency-dev.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tile;

pub use checkpoint::Checkpoint;
pub use merkle::{Hash, HashReader};
pub use note::{Ed25519Signer, NoteSigner, VerifierKey, Verifiers};
pub use proof::{verify_proof, TlogProof};
pub use tile::{Tile, TileHashReader, TileReader};

/// What went wrong in a tlog operation: malformed input, a proof or signature that does not
/// verify, or a hash source that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An index or tree size outside what the operation allows (e.g. a leaf index >= tree size).
    #[error("out of range: {0}")]
    Range(String),
    /// A proof that does not verify against the hashes it was checked with.
    #[error("proof does not verify: {0}")]
    Proof(&'static str),
    /// Text or bytes that do not follow the format they claim (a note, key, checkpoint, tile...).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A signature by a known key that does not verify (signed-note: reject the whole note).
    #[error("invalid signature for key {0}")]
    BadSignature(String),
    /// Two configured verifier keys with the same name and key ID (signed-note "Signatures").
    #[error("ambiguous key {0}")]
    AmbiguousKey(String),
    /// A note with no signature by any known key (signed-note: the note MUST be rejected).
    #[error("note has no verifiable signatures")]
    Unverified,
    /// Tile data that does not hash to the tree it was read for.
    #[error("inconsistent tile: {0}")]
    InconsistentTile(String),
    /// The hash source (database, object store...) failed.
    #[error("hash storage: {0}")]
    Storage(String),
    /// The signer (a local key, KMS...) failed.
    #[error("signing: {0}")]
    Sign(String),
}
