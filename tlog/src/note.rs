//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys (signature type 0x01).
//!
//! A note is UTF-8 text ending in a newline, a blank line, and signature lines
//! `— <key name> <base64(key ID || signature)>`. Keys travel as strings in the format of
//! golang.org/x/mod/sumdb/note: a verifier key `<name>+<hex key ID>+<base64(0x01 || public key)>`
//! and a signer key `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Error;

/// Signature type identifier byte of Ed25519 signatures (signed-note "Signature types").
pub const ALG_ED25519: u8 = 0x01;

/// The em dash (U+2014) and space that start a signature line (signed-note "Format").
const SIG_PREFIX: &str = "\u{2014} ";

/// At most this many signature lines are accepted in a note (signed-note "Format": verifiers
/// SHOULD limit them and MUST accept at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Whether `name` is a valid key name: non-empty, without Unicode spaces or `+`
/// (signed-note "Format").
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key ID: the first four bytes, big-endian, of SHA-256(name || 0x0A || type || public key)
/// (signed-note "Signatures"; `typed_key` is the type byte followed by the public key).
pub fn key_hash(name: &str, typed_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(typed_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Parses `<name>+<8 hex digits>+<base64 key>` (the shared tail of both key strings).
fn parse_key_parts(s: &str) -> Result<(&str, u32, Vec<u8>), Error> {
    let bad = Error::Malformed("key");
    let (name, rest) = s.split_once('+').ok_or(bad.clone())?;
    let (hash, key) = rest.split_once('+').ok_or(bad.clone())?;
    if !is_valid_key_name(name)
        || hash.len() != 8
        || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad);
    }
    let hash = u32::from_str_radix(hash, 16).map_err(|_| bad.clone())?;
    let key = B64.decode(key).map_err(|_| bad)?;
    Ok((name, hash, key))
}

/// A public key that verifies note signatures: an Ed25519 key with its name and key ID.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_hash: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses a verifier key string `<name>+<hex key ID>+<base64(0x01 || 32-byte key)>`; the
    /// key ID must be the one the name and key hash to.
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let (name, hash, key) = parse_key_parts(vkey)?;
        if key.len() != 33 || key[0] != ALG_ED25519 || key_hash(name, &key) != hash {
            return Err(Error::Malformed("verifier key"));
        }
        let bytes: [u8; 32] = key[1..].try_into().map_err(|_| Error::Malformed("verifier key"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::Malformed("verifier key (not a curve point)"))?;
        Ok(Self {
            name: name.to_owned(),
            key_hash: hash,
            key,
        })
    }

    /// A verifier key for an Ed25519 public key (RFC 8032 encoding) under `name`.
    pub fn new_ed25519(name: &str, public_key: &[u8; 32]) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::Malformed("key name"));
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| Error::Malformed("Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            key_hash: ed25519_key_hash(name, public_key),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `sig` is a valid Ed25519 signature of `msg` by this key (RFC 8032, strict:
    /// non-canonical encodings and small-order keys are refused).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// The verifier key string `<name>+<hex key ID>+<base64(0x01 || key)>` (what `tollgate log-key`
/// prints).
impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut typed = [0u8; 33];
        typed[0] = ALG_ED25519;
        typed[1..].copy_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_hash, B64.encode(typed))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

fn ed25519_key_hash(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut typed = [0u8; 33];
    typed[0] = ALG_ED25519;
    typed[1..].copy_from_slice(public_key);
    key_hash(name, &typed)
}

/// The future a [`NoteSigner`] returns: a 64-byte Ed25519 signature.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<[u8; 64], Error>> + Send + 'a>>;

/// Something that signs note text with an Ed25519 key: a local key ([`Ed25519Signer`]) or a key
/// that never leaves a KMS.
///
/// With AWS KMS, the key is a `SIGN_VERIFY` key of key spec `ECC_NIST_EDWARDS25519`, and `sign`
/// calls `Sign` with `SigningAlgorithm = ED25519_SHA_512` and `MessageType = RAW`: pure Ed25519
/// (RFC 8032) over the note text itself, which is what signed-note "Ed25519 signatures" requires
/// and what any Ed25519 verifier checks. Not `ED25519_PH_SHA_512` (that is Ed25519ph, a pre-hash
/// variant whose signatures do not verify as note signatures), and not `MessageType = DIGEST`.
/// RAW messages are limited to 4,096 bytes, far above a checkpoint's size. Sources: the AWS SDK
/// for Python (v4) reference, KMS enum `SigningAlgorithmSpec`, lists `ED25519_SHA_512` and
/// `ED25519_PH_SHA_512` (docs.aws.amazon.com/sdk-for-python/v4/reference/clients/kms/enums/
/// SigningAlgorithmSpec/); the AWS SDK for Kotlin reference, `SignRequest.messageType`: "Use RAW
/// for unhashed messages ... KMS uses the standard signing algorithm" (sdk.amazonaws.com/kotlin/
/// api/latest/kms/aws.sdk.kotlin.services.kms.model/-sign-request/-builder/message-type.html). The
/// KMS developer guide page on Ed25519 key specs was not among the stored documents, nor was the
/// encoding of the `Signature` KMS returns for Ed25519: an adapter must require exactly 64 bytes
/// (RFC 8032) and check one signature against the `GetPublicKey` key (an RFC 8410 SPKI whose last
/// 32 bytes are the key) with [`VerifierKey::verify`] before it signs checkpoints.
pub trait NoteSigner: Send + Sync {
    /// The key name written in the signature line.
    fn name(&self) -> &str;

    /// The key ID (see [`key_hash`]).
    fn key_hash(&self) -> u32;

    /// The Ed25519 signature of `msg` (the note text).
    fn sign<'a>(&'a self, msg: &'a [u8]) -> SignFuture<'a>;

    /// The verifier key of this signer, where the signer knows its public key (the stack's
    /// `LogVerifierKey` output and `tollgate log-key` print it).
    fn vkey(&self) -> Option<VerifierKey> {
        None
    }
}

/// A local Ed25519 signing key with its name (a key file in embedded mode, or the per-task
/// receipt key).
pub struct Ed25519Signer {
    name: String,
    key_hash: u32,
    key: SigningKey,
}

impl Ed25519Signer {
    /// A signer from a 32-byte Ed25519 seed (RFC 8032 private key) under `name`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::Malformed("key name"));
        }
        let key = SigningKey::from_bytes(seed);
        let key_hash = ed25519_key_hash(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key_hash,
            key,
        })
    }

    /// A new random key under `name` (seed from the operating system's generator).
    pub fn generate(name: &str) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Sign(format!("no randomness: {e}")))?;
        Self::from_seed(name, &seed)
    }

    /// Parses a signer key string `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`.
    pub fn parse(skey: &str) -> Result<Self, Error> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(Error::Malformed("signer key"))?;
        let (name, hash, key) = parse_key_parts(rest)?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(Error::Malformed("signer key"));
        }
        let seed: [u8; 32] = key[1..].try_into().map_err(|_| Error::Malformed("signer key"))?;
        let signer = Self::from_seed(name, &seed)?;
        // The key ID is of the public key: it must match the one written.
        if signer.key_hash != hash {
            return Err(Error::Malformed("signer key (key ID does not match)"));
        }
        Ok(signer)
    }

    /// The signer key string `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>` (a secret:
    /// for a key file with mode 0600, never for a log).
    pub fn to_signer_key_string(&self) -> String {
        let mut typed = [0u8; 33];
        typed[0] = ALG_ED25519;
        typed[1..].copy_from_slice(&self.key.to_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_hash, B64.encode(typed))
    }

    /// The verifier key of this signer.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_hash: self.key_hash,
            key: self.key.verifying_key(),
        }
    }

    /// The Ed25519 signature of `msg`, at once.
    pub fn sign_now(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Signer({}+{:08x})", self.name, self.key_hash)
    }
}

impl NoteSigner for Ed25519Signer {
    fn vkey(&self) -> Option<VerifierKey> {
        Some(self.verifier_key())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn key_hash(&self) -> u32 {
        self.key_hash
    }

    fn sign<'a>(&'a self, msg: &'a [u8]) -> SignFuture<'a> {
        let sig = self.sign_now(msg);
        Box::pin(std::future::ready(Ok(sig)))
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The key name.
    pub name: String,
    /// The key ID (first four bytes of the decoded signature).
    pub key_hash: u32,
    /// The base64 text as written: key ID and signature.
    pub base64: String,
}

/// An opened note: its text, the signatures that verified, and those by unknown keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The note text, ending in a newline.
    pub text: String,
    /// Signatures by known keys, all verified.
    pub verified: Vec<Signature>,
    /// Signatures by keys not among the verifiers (ignored, signed-note "Signatures").
    pub unverified: Vec<Signature>,
}

/// The keys a reader trusts.
#[derive(Debug, Clone, Default)]
pub struct Verifiers {
    keys: Vec<VerifierKey>,
}

impl Verifiers {
    /// A set of trusted keys.
    pub fn new(keys: Vec<VerifierKey>) -> Self {
        Self { keys }
    }

    /// Parses verifier key strings.
    pub fn parse<S: AsRef<str>>(vkeys: &[S]) -> Result<Self, Error> {
        Ok(Self {
            keys: vkeys
                .iter()
                .map(|k| VerifierKey::parse(k.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The key with this name and ID: `None` when unknown, an error when two keys match.
    pub fn find(&self, name: &str, key_hash: u32) -> Result<Option<&VerifierKey>, Error> {
        let mut found = self.keys.iter().filter(|k| k.name == name && k.key_hash == key_hash);
        let first = found.next();
        if found.next().is_some() {
            return Err(Error::AmbiguousKey(format!("{name}+{key_hash:08x}")));
        }
        Ok(first)
    }
}

/// Whether `text` may be a note text: valid UTF-8 (a `&str`), no control characters but
/// newline, ending in a newline (signed-note "Format").
fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') || text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(Error::Malformed("note"));
    }
    Ok(())
}

/// Signs note text with each signer: the text, a blank line, one signature line per signer
/// (signed-note "Format"). The text must end in a newline and have no control characters.
pub async fn sign_note(text: &str, signers: &[&dyn NoteSigner]) -> Result<String, Error> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(Error::Sign("no signer".into()));
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 128);
    out.push_str(text);
    out.push('\n');
    for s in signers {
        if !is_valid_key_name(s.name()) {
            return Err(Error::Sign(format!("invalid signer name {:?}", s.name())));
        }
        let sig = s.sign(text.as_bytes()).await?;
        let mut raw = [0u8; 68];
        raw[..4].copy_from_slice(&s.key_hash().to_be_bytes());
        raw[4..].copy_from_slice(&sig);
        out.push_str(SIG_PREFIX);
        out.push_str(s.name());
        out.push(' ');
        out.push_str(&B64.encode(raw));
        out.push('\n');
    }
    Ok(out)
}

/// A signature line with its decoded signature bytes (after the key ID).
type SignatureLine = (Signature, Vec<u8>);

/// Splits a note into its text and signature lines, checking the syntax only.
fn parse_note(msg: &[u8]) -> Result<(String, Vec<SignatureLine>), Error> {
    let bad = Error::Malformed("note");
    let msg = std::str::from_utf8(msg).map_err(|_| bad.clone())?;
    if msg.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad);
    }
    // The text is separated from the signatures by the last blank line.
    let split = msg.rfind("\n\n").ok_or(bad.clone())?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(bad);
    }
    let mut out = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        if out.len() >= MAX_SIGNATURES {
            return Err(bad);
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(bad.clone())?;
        let (name, b64) = rest.split_once(' ').ok_or(bad.clone())?;
        if !is_valid_key_name(name) || b64.is_empty() {
            return Err(bad);
        }
        let raw = B64.decode(b64).map_err(|_| bad.clone())?;
        if raw.len() < 5 {
            return Err(bad);
        }
        let key_hash = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        out.push((
            Signature {
                name: name.to_owned(),
                key_hash,
                base64: b64.to_owned(),
            },
            raw[4..].to_vec(),
        ));
    }
    Ok((text.to_owned(), out))
}

/// Parses a note's syntax without verifying anything: every signature is in `unverified`.
/// The text MUST be ignored unless a trusted key's signature verifies (signed-note): this is
/// for tools that show which keys signed, not for trusting the content.
pub fn parse_unverified(msg: &[u8]) -> Result<Note, Error> {
    let (text, sigs) = parse_note(msg)?;
    Ok(Note {
        text,
        verified: Vec::new(),
        unverified: sigs.into_iter().map(|(s, _)| s).collect(),
    })
}

/// Opens a signed note: every signature by a known key must verify, signatures by unknown keys
/// are ignored, and at least one known key must have signed (signed-note "Signatures").
pub fn open_note(msg: &[u8], verifiers: &Verifiers) -> Result<Note, Error> {
    let (text, sigs) = parse_note(msg)?;
    let mut verified: Vec<Signature> = Vec::new();
    let mut unverified: Vec<Signature> = Vec::new();
    for (sig, raw) in sigs {
        if verified.contains(&sig) || unverified.contains(&sig) {
            continue;
        }
        match verifiers.find(&sig.name, sig.key_hash)? {
            None => unverified.push(sig),
            Some(key) => {
                if !key.verify(text.as_bytes(), &raw) {
                    return Err(Error::BadSignature(format!("{}+{:08x}", sig.name, sig.key_hash)));
                }
                verified.push(sig);
            }
        }
    }
    if verified.is_empty() {
        return Err(Error::Unverified);
    }
    Ok(Note {
        text,
        verified,
        unverified,
    })
}

/// Drives a future that is ready at once (a local signer's) to completion without a runtime.
pub fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_and_round_trip_as_strings() {
        let signer = Ed25519Signer::generate("example.com/log").unwrap();
        let again = Ed25519Signer::parse(&signer.to_signer_key_string()).unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
        let vkey = VerifierKey::parse(&signer.verifier_key().to_string()).unwrap();
        let note = now_or_never(sign_note("hello\n", &[&signer])).unwrap().unwrap();
        let opened = open_note(note.as_bytes(), &Verifiers::new(vec![vkey.clone()])).unwrap();
        assert_eq!(opened.text, "hello\n");
        assert_eq!(opened.verified.len(), 1);
        // A changed text fails; a foreign key is unverified.
        let tampered = note.replacen("hello", "hellO", 1);
        assert!(matches!(
            open_note(tampered.as_bytes(), &Verifiers::new(vec![vkey])),
            Err(Error::BadSignature(_))
        ));
        let other = Ed25519Signer::generate("example.com/log").unwrap().verifier_key();
        assert_eq!(
            open_note(note.as_bytes(), &Verifiers::new(vec![other])),
            Err(Error::Unverified)
        );
    }

    #[test]
    fn bad_names_and_texts_are_refused() {
        for name in ["", "a b", "a+b", "a\u{00a0}b", "tab\there"] {
            assert!(!is_valid_key_name(name), "{name:?}");
            assert!(Ed25519Signer::from_seed(name, &[1; 32]).is_err());
        }
        let signer = Ed25519Signer::from_seed("n", &[1; 32]).unwrap();
        for text in ["abc", "", "a\x01b\n", "a\rb\n"] {
            assert!(now_or_never(sign_note(text, &[&signer])).unwrap().is_err(), "{text:?}");
        }
    }
}
