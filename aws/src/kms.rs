//! The transparency log's checkpoint signer in aws mode: an AWS KMS key of key spec
//! `ECC_NIST_EDWARDS25519` (issue 15; `docs/transparency-log.md`). The private key never leaves
//! KMS; tollgate holds only its public key, read once with `GetPublicKey`.
//!
//! What KMS does, and where it says so:
//! - `ECC_NIST_EDWARDS25519` keys are for signing and verification only, and "the
//!   ED25519_SHA_512 signing algorithm requires MessageType:RAW, while ED25519_PH_SHA_512
//!   requires MessageType:DIGEST. These message types cannot be used interchangeably" (AWS SDK for
//!   Kotlin reference, `CreateKeyRequest.keySpec`). With `RAW`, "KMS uses the standard signing
//!   algorithm" (the same reference, `SignRequest.messageType`): pure Ed25519 (RFC 8032) over the
//!   message itself, which is what a C2SP signed-note Ed25519 signature is. `ED25519_PH_SHA_512`
//!   is Ed25519ph, whose signatures do not verify as note signatures: never used here.
//! - `Sign` takes messages "of up to 4096 bytes" (AWS CLI reference, `kms sign`); a checkpoint
//!   body is about 100.
//! - `GetPublicKey` returns `PublicKey`, "a DER-encoded X.509 public key, also known as
//!   SubjectPublicKeyInfo (SPKI), as defined in RFC 5280" (AWS SDK for SAP ABAP reference,
//!   `GetPublicKeyResponse`; the SDK hands us the DER bytes, base64 is the wire's), with the
//!   key's `KeySpec`, `KeyUsage` and `SigningAlgorithms`. For Ed25519 the SPKI is RFC 8410's,
//!   decoded here by `ed25519-dalek`'s `pkcs8` decoder, not by hand.
//! - The stored KMS documents describe `Sign`'s `Signature` encoding for RSA and ECDSA only; for
//!   Ed25519 we require the 64-byte RFC 8032 encoding, and verify every signature against the
//!   public key before using it, so an answer of another shape, another key's signature or a
//!   corrupted one can never end up in a checkpoint.

use crate::sdk;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use ed25519_dalek::pkcs8::DecodePublicKey;
use tollgate_tlog::note::{SignFuture, VerifierKey};
use tollgate_tlog::NoteSigner;

/// Why the KMS key cannot sign the log's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// KMS could not be reached, or failed (after the SDK's standard retries).
    #[error("KMS {operation} failed: {detail}")]
    Unavailable {
        /// The KMS operation.
        operation: &'static str,
        /// The KMS error code and message, or what failed on the way.
        detail: String,
    },
    /// The key is not an Ed25519 signing key usable with `ED25519_SHA_512`.
    #[error("KMS key {key_id}: {reason}")]
    WrongKey {
        /// The key as configured.
        key_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The origin is not a valid note key name.
    #[error("the log origin {0:?} is not a valid key name (non-empty, no spaces, no '+')")]
    BadOrigin(String),
}

/// The name of an SDK error for a message: the service's error code and message, or the kind
/// of failure on the way (no raw response bodies, no endpoints).
fn describe<E: ProvideErrorMetadata + std::error::Error>(e: &SdkError<E>) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{} ({})",
                err.code().unwrap_or("unknown error"),
                err.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "timed out connecting".into(),
        SdkError::DispatchFailure(d) if d.is_io() => "connection failed".into(),
        SdkError::DispatchFailure(_) => "the request could not be sent".into(),
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ConstructionFailure(_) => "the request could not be built".into(),
        _ => "failed".into(),
    }
}

/// Checks what `GetPublicKey` answered: an Ed25519 (`ECC_NIST_EDWARDS25519`) `SIGN_VERIFY` key
/// offering `ED25519_SHA_512`; returns its 32-byte public key.
pub fn check_public_key(
    key_id: &str,
    out: &aws_sdk_kms::operation::get_public_key::GetPublicKeyOutput,
) -> Result<[u8; 32], KmsError> {
    let wrong = |reason: String| KmsError::WrongKey {
        key_id: key_id.to_string(),
        reason,
    };
    match out.key_spec() {
        Some(KeySpec::EccNistEdwards25519) => {}
        other => {
            return Err(wrong(format!(
                "key spec is {}, not ECC_NIST_EDWARDS25519 (Ed25519)",
                other.map_or("unknown", |s| s.as_str())
            )))
        }
    }
    match out.key_usage() {
        Some(KeyUsageType::SignVerify) => {}
        other => {
            return Err(wrong(format!(
                "key usage is {}, not SIGN_VERIFY",
                other.map_or("unknown", |u| u.as_str())
            )))
        }
    }
    if !out.signing_algorithms().contains(&SigningAlgorithmSpec::Ed25519Sha512) {
        return Err(wrong(
            "the key does not offer the ED25519_SHA_512 signing algorithm".into(),
        ));
    }
    let der = out
        .public_key()
        .ok_or_else(|| wrong("GetPublicKey returned no public key".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_public_key_der(der.as_ref())
        .map_err(|e| wrong(format!("the public key is not an Ed25519 SubjectPublicKeyInfo: {e}")))?;
    Ok(key.to_bytes())
}

/// A [`NoteSigner`] whose key lives in AWS KMS: `Sign` with `ED25519_SHA_512` over the `RAW`
/// note text, each answer verified against the key's public key before it is returned.
pub struct KmsNoteSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    verifier: VerifierKey,
}

impl std::fmt::Debug for KmsNoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KmsNoteSigner({} via {})", self.verifier, self.key_id)
    }
}

impl KmsNoteSigner {
    /// Reads the key's public key once (`GetPublicKey`), checks that it is an Ed25519 signing
    /// key, and names it `origin` (the checkpoints' origin is their key's name). `key_id` is a
    /// key id, key ARN, alias name (`alias/...`) or alias ARN.
    pub async fn connect(client: aws_sdk_kms::Client, key_id: &str, origin: &str) -> Result<Self, KmsError> {
        if !tollgate_tlog::note::is_valid_key_name(origin) {
            return Err(KmsError::BadOrigin(origin.to_string()));
        }
        let out = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| KmsError::Unavailable {
                operation: "GetPublicKey",
                detail: describe(&e),
            })?;
        let public_key = check_public_key(key_id, &out)?;
        let verifier = VerifierKey::new_ed25519(origin, &public_key).map_err(|e| KmsError::WrongKey {
            key_id: key_id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            client,
            key_id: key_id.to_string(),
            verifier,
        })
    }

    /// The log's verifier key (`<origin>+<hex key id>+<base64(0x01 || public key)>`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    async fn sign_checked(&self, msg: &[u8]) -> Result<[u8; 64], tollgate_tlog::Error> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(msg))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::Ed25519Sha512)
            .send()
            .await
            .map_err(|e| tollgate_tlog::Error::Sign(format!("KMS Sign: {}", describe(&e))))?;
        let sig: [u8; 64] = out
            .signature()
            .map(|b| b.as_ref())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                tollgate_tlog::Error::Sign(format!(
                    "KMS Sign returned {} signature bytes, not an Ed25519 signature (64)",
                    out.signature().map_or(0, |b| b.as_ref().len())
                ))
            })?;
        // A wrong key (an alias moved to another key) or a corrupted answer must never produce
        // a checkpoint: one that does not verify would be refused by every reader.
        if !self.verifier.verify(msg, &sig) {
            return Err(tollgate_tlog::Error::Sign(format!(
                "KMS Sign returned a signature that does not verify with the public key of {} (another key, or a corrupted answer): not signing",
                self.key_id
            )));
        }
        Ok(sig)
    }
}

impl NoteSigner for KmsNoteSigner {
    fn vkey(&self) -> Option<VerifierKey> {
        Some(self.verifier.clone())
    }

    fn name(&self) -> &str {
        self.verifier.name()
    }

    fn key_hash(&self) -> u32 {
        self.verifier.key_hash()
    }

    fn sign<'a>(&'a self, msg: &'a [u8]) -> SignFuture<'a> {
        Box::pin(self.sign_checked(msg))
    }
}

/// The verifier key string of the KMS key `key_id` under `origin` (what `tollgate log-key`
/// prints in aws mode, and what a stack output publishes): `GetPublicKey` and the same checks
/// as [`KmsNoteSigner::connect`].
pub async fn verifier_key(client: aws_sdk_kms::Client, key_id: &str, origin: &str) -> Result<String, KmsError> {
    Ok(KmsNoteSigner::connect(client, key_id, origin)
        .await?
        .verifier_key()
        .to_string())
}

/// The KMS client from the environment's SDK configuration (`AWS_ENDPOINT_URL_KMS` points it at
/// a stand-in).
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_kms::Client {
    sdk::kms(sdk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::get_public_key::GetPublicKeyOutput;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    fn ed25519_spki() -> Vec<u8> {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    fn output(spec: KeySpec, usage: KeyUsageType, algs: Vec<SigningAlgorithmSpec>, der: Vec<u8>) -> GetPublicKeyOutput {
        GetPublicKeyOutput::builder()
            .key_spec(spec)
            .key_usage(usage)
            .set_signing_algorithms(Some(algs))
            .public_key(Blob::new(der))
            .build()
    }

    #[test]
    fn only_an_ed25519_signing_key_with_pure_ed25519_passes() {
        let good = output(
            KeySpec::EccNistEdwards25519,
            KeyUsageType::SignVerify,
            vec![
                SigningAlgorithmSpec::Ed25519Sha512,
                SigningAlgorithmSpec::Ed25519PhSha512,
            ],
            ed25519_spki(),
        );
        let pk = check_public_key("k", &good).unwrap();
        assert_eq!(
            pk,
            ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                .verifying_key()
                .to_bytes()
        );
        let cases = [
            (
                output(
                    KeySpec::EccNistP256,
                    KeyUsageType::SignVerify,
                    vec![SigningAlgorithmSpec::EcdsaSha256],
                    ed25519_spki(),
                ),
                "key spec is ECC_NIST_P256",
            ),
            (
                output(
                    KeySpec::EccNistEdwards25519,
                    KeyUsageType::EncryptDecrypt,
                    vec![SigningAlgorithmSpec::Ed25519Sha512],
                    ed25519_spki(),
                ),
                "key usage is ENCRYPT_DECRYPT",
            ),
            (
                output(
                    KeySpec::EccNistEdwards25519,
                    KeyUsageType::SignVerify,
                    vec![SigningAlgorithmSpec::Ed25519PhSha512],
                    ed25519_spki(),
                ),
                "ED25519_SHA_512",
            ),
            (
                output(
                    KeySpec::EccNistEdwards25519,
                    KeyUsageType::SignVerify,
                    vec![SigningAlgorithmSpec::Ed25519Sha512],
                    ed25519_spki()[..40].to_vec(),
                ),
                "not an Ed25519 SubjectPublicKeyInfo",
            ),
        ];
        for (out, want) in cases {
            let e = check_public_key("k", &out).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should say {want}");
        }
    }
}
