//! `kms-local`: an AWS KMS stand-in that signs with Ed25519, on loopback.
//!
//! Nothing else here signs Ed25519 through the KMS API (moto's KMS signs with P-256 keys only),
//! so the transparency log's KMS signer (`tollgate_aws::kms`) is tested against this. It speaks
//! the KMS wire protocol, AWS JSON 1.1: `POST /` with `X-Amz-Target: TrentService.<Operation>`
//! and `Content-Type: application/x-amz-json-1.1`, blobs as base64 strings, errors as a 4xx/5xx
//! answer whose JSON body names the error in `__type` with a `message`; so the real
//! `aws-sdk-kms` client talks to it unchanged (pointed at it by `AWS_ENDPOINT_URL_KMS`).
//!
//! Operations: `CreateKey` (`ECC_NIST_EDWARDS25519` with `SIGN_VERIFY`, or the default
//! `SYMMETRIC_DEFAULT` with `ENCRYPT_DECRYPT`, which cannot sign: what a misconfigured key id
//! meets), `CreateAlias`, `DescribeKey`, `GetPublicKey`, `Sign` and `Verify`. A key is named by
//! its key id, key ARN, alias name (`alias/...`) or alias ARN, as the KMS API accepts.
//!
//! The shapes follow the KMS API reference as the AWS SDKs document it:
//! - `GetPublicKey` answers `PublicKey`, "a DER-encoded X.509 public key, also known as
//!   SubjectPublicKeyInfo (SPKI), as defined in RFC 5280", base64 on the HTTP API (AWS SDK for
//!   SAP ABAP, `/AWS1/CL_KMSGETPUBLICKEYRSP`), with `KeySpec`, `CustomerMasterKeySpec` (the same
//!   value), `KeyUsage` and `SigningAlgorithms` (AWS SDK for Ruby, `GetPublicKeyResponse`). For
//!   Ed25519 that SPKI is RFC 8410's.
//! - `Sign` takes messages "of up to 4096 bytes" (AWS CLI reference, `kms sign`); for
//!   `ECC_NIST_EDWARDS25519` keys "the ED25519_SHA_512 signing algorithm requires
//!   MessageType:RAW, while ED25519_PH_SHA_512 requires MessageType:DIGEST" (AWS SDK for Kotlin,
//!   `CreateKeyRequest.keySpec`). Its `Signature` here is the 64-byte RFC 8032 encoding (R || S):
//!   the stored KMS documents describe the encoding for RSA and ECDSA only.
//! - An algorithm the key does not support is `InvalidKeyUsageException` ("the encryption
//!   algorithm or signing algorithm specified for the operation is incompatible with the type of
//!   key material", the `Sign` errors as rusoto_kms lists them); an unknown key
//!   `NotFoundException`; a symmetric key's public key `UnsupportedOperationException`; a bad
//!   signature in `Verify` `KMSInvalidSignatureException`; a value outside the model's bounds
//!   `ValidationException`. `KMSInternalException` is the 500 the SDK retries.
//!
//! Not implemented: `ED25519_PH_SHA_512` (Ed25519ph) and every other key spec's signing, which
//! answer `UnsupportedOperationException` with a message saying so; key policies, grants,
//! key states other than enabled. Keys live in memory only.
//!
//! Fault switches ([`KmsLocal::fail`], [`KmsLocal::misbehave`]) make it answer errors or wrong
//! signatures, for the tests that a signer never signs a checkpoint with a bad answer.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The account the stand-in's ARNs name.
pub const ACCOUNT: &str = "000000000000";
/// The region the stand-in's ARNs name.
pub const REGION: &str = "us-east-1";
/// The largest `RAW` message `Sign` and `Verify` take (AWS CLI reference, `kms sign`).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The largest request body read (KMS requests here are small JSON documents).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Key spec of the Ed25519 keys (`CreateKey` `KeySpec`).
pub const ED25519_SPEC: &str = "ECC_NIST_EDWARDS25519";
/// Pure Ed25519 (RFC 8032) over a `RAW` message.
pub const ED25519_SHA_512: &str = "ED25519_SHA_512";
/// Ed25519ph (pre-hashed), which takes a `DIGEST`.
pub const ED25519_PH_SHA_512: &str = "ED25519_PH_SHA_512";

/// An error KMS answers: HTTP status, `__type`, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsFault {
    /// HTTP status.
    pub status: u16,
    /// The error's name (`__type`).
    pub code: String,
    /// Its message.
    pub message: String,
}

impl KmsFault {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `KMSInternalException` (500): "The request was rejected because an internal exception
    /// occurred. The request can be retried."
    pub fn internal() -> Self {
        Self::new(500, "KMSInternalException", "kms-local: injected internal error")
    }

    /// `ThrottlingException` (400): the request rate exceeded the account's quota.
    pub fn throttling() -> Self {
        Self::new(
            400,
            "ThrottlingException",
            "kms-local: injected throttling: rate exceeded",
        )
    }

    /// `AccessDeniedException` (400): the caller may not use the key.
    pub fn access_denied() -> Self {
        Self::new(400, "AccessDeniedException", "kms-local: injected access denial")
    }

    fn not_found(key: &str) -> Self {
        Self::new(400, "NotFoundException", format!("Key '{key}' does not exist"))
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    fn invalid_key_usage(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidKeyUsageException", message)
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self::new(400, "UnsupportedOperationException", message)
    }
}

/// How `Sign` misbehaves, for the tests that a signer checks what KMS returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misbehave {
    /// Signs correctly.
    #[default]
    No,
    /// Flips a bit of every signature it returns.
    CorruptSignature,
    /// Signs with a key other than the one asked for (a mixed-up key).
    OtherKey,
    /// Returns 63 bytes (a truncated signature).
    ShortSignature,
}

struct Key {
    id: String,
    arn: String,
    spec: String,
    usage: String,
    description: String,
    created: f64,
    signing: Option<SigningKey>,
}

impl Key {
    fn signing_algorithms(&self) -> Vec<&'static str> {
        match self.signing {
            Some(_) => vec![ED25519_SHA_512, ED25519_PH_SHA_512],
            None => vec![],
        }
    }

    fn metadata(&self) -> Value {
        let mut m = json!({
            "AWSAccountId": ACCOUNT,
            "KeyId": self.id,
            "Arn": self.arn,
            "CreationDate": self.created,
            "Enabled": true,
            "Description": self.description,
            "KeyUsage": self.usage,
            "KeyState": "Enabled",
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": self.spec,
            "KeySpec": self.spec,
            "MultiRegion": false,
        });
        if self.signing.is_some() {
            m["SigningAlgorithms"] = json!(self.signing_algorithms());
        } else {
            m["EncryptionAlgorithms"] = json!(["SYMMETRIC_DEFAULT"]);
        }
        m
    }
}

#[derive(Default)]
struct Faults {
    /// The fault to answer with, and how many more calls get it.
    fail: Option<(KmsFault, u64)>,
    misbehave: Misbehave,
}

/// The stand-in's state: keys, aliases, fault switches and call counts.
#[derive(Default)]
pub struct KmsLocal {
    keys: Mutex<HashMap<String, Arc<Key>>>,
    aliases: Mutex<HashMap<String, String>>,
    faults: Mutex<Faults>,
    calls: Mutex<BTreeMap<String, u64>>,
    requests: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn required<'a>(body: &'a Value, name: &str) -> Result<&'a str, KmsFault> {
    str_field(body, name).ok_or_else(|| {
        KmsFault::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(name)
        ))
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn blob(body: &Value, name: &str) -> Result<Vec<u8>, KmsFault> {
    B64.decode(required(body, name)?)
        .map_err(|_| KmsFault::new(400, "SerializationException", format!("{name} is not base64")))
}

impl KmsLocal {
    /// An empty stand-in.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Answers the next `times` calls (any operation) with `fault`; `u64::MAX` until cleared.
    pub fn fail(&self, fault: KmsFault, times: u64) {
        lock(&self.faults).fail = Some((fault, times));
    }

    /// Makes `Sign` misbehave (or stop: [`Misbehave::No`]).
    pub fn misbehave(&self, how: Misbehave) {
        lock(&self.faults).misbehave = how;
    }

    /// Clears every fault switch.
    pub fn clear(&self) {
        *lock(&self.faults) = Faults::default();
    }

    /// Calls answered per operation (`Sign`, `GetPublicKey`, ...), faults included.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }

    /// Creates an Ed25519 signing key (as `CreateKey` with `KeySpec=ECC_NIST_EDWARDS25519`,
    /// `KeyUsage=SIGN_VERIFY`); returns its key ARN.
    pub fn create_ed25519_key(&self, description: &str) -> String {
        match self.create_key(&json!({"KeySpec": ED25519_SPEC, "KeyUsage": "SIGN_VERIFY", "Description": description}))
        {
            Ok(v) => v["KeyMetadata"]["Arn"].as_str().unwrap_or_default().to_string(),
            Err(e) => panic!("kms-local: creating a key: {e:?}"),
        }
    }

    /// Points `alias/...` at a key (as `CreateAlias`).
    pub fn create_alias(&self, alias: &str, key: &str) -> Result<(), KmsFault> {
        self.op_create_alias(&json!({"AliasName": alias, "TargetKeyId": key}))
            .map(|_| ())
    }

    /// Handles one request: `(status, body)`.
    pub fn handle(&self, target: Option<&str>, content_type: Option<&str>, body: &[u8]) -> (u16, Value) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.dispatch(target, content_type, body);
        match result {
            Ok(v) => (200, v),
            Err(f) => (f.status, json!({"__type": f.code, "message": f.message})),
        }
    }

    fn dispatch(&self, target: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Result<Value, KmsFault> {
        let op = target
            .and_then(|t| t.strip_prefix("TrentService."))
            .ok_or_else(|| KmsFault::new(400, "UnknownOperationException", "missing or foreign X-Amz-Target"))?;
        *lock(&self.calls).entry(op.to_string()).or_default() += 1;
        if !content_type.is_some_and(|c| c.starts_with("application/x-amz-json-1.1")) {
            return Err(KmsFault::new(
                400,
                "SerializationException",
                "Content-Type must be application/x-amz-json-1.1",
            ));
        }
        {
            let mut faults = lock(&self.faults);
            if let Some((fault, left)) = faults.fail.as_mut() {
                let fault = fault.clone();
                *left -= 1;
                if *left == 0 {
                    faults.fail = None;
                }
                return Err(fault);
            }
        }
        let body: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|_| KmsFault::new(400, "SerializationException", "the body is not JSON"))?
        };
        match op {
            "CreateKey" => self.create_key(&body),
            "CreateAlias" => self.op_create_alias(&body),
            "DescribeKey" => Ok(json!({"KeyMetadata": self.key(required(&body, "KeyId")?)?.metadata()})),
            "GetPublicKey" => self.get_public_key(&body),
            "Sign" => self.sign(&body),
            "Verify" => self.verify(&body),
            other => Err(KmsFault::new(
                400,
                "UnknownOperationException",
                format!("kms-local does not implement {other}"),
            )),
        }
    }

    /// The key a `KeyId` names: key id, key ARN, alias name or alias ARN.
    fn key(&self, key_id: &str) -> Result<Arc<Key>, KmsFault> {
        let arn_prefix = format!("arn:aws:kms:{REGION}:{ACCOUNT}:");
        let rest = key_id.strip_prefix(&arn_prefix).unwrap_or(key_id);
        let id = if rest.starts_with("alias/") {
            lock(&self.aliases)
                .get(rest)
                .cloned()
                .ok_or_else(|| KmsFault::not_found(key_id))?
        } else {
            rest.strip_prefix("key/").unwrap_or(rest).to_string()
        };
        lock(&self.keys)
            .get(&id)
            .cloned()
            .ok_or_else(|| KmsFault::not_found(key_id))
    }

    fn create_key(&self, body: &Value) -> Result<Value, KmsFault> {
        let spec = str_field(body, "KeySpec")
            .or_else(|| str_field(body, "CustomerMasterKeySpec"))
            .unwrap_or("SYMMETRIC_DEFAULT");
        let signing = match spec {
            ED25519_SPEC => {
                // Ed25519 keys are for signing and verification only (AWS SDK for Kotlin,
                // `CreateKeyRequest.keySpec`).
                match str_field(body, "KeyUsage") {
                    Some("SIGN_VERIFY") => {}
                    other => {
                        return Err(KmsFault::validation(format!(
                            "KeyUsage {} is not valid for KeySpec {ED25519_SPEC}: it must be SIGN_VERIFY",
                            other.unwrap_or("ENCRYPT_DECRYPT (the default)")
                        )))
                    }
                }
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| KmsFault::new(500, "KMSInternalException", e.to_string()))?;
                Some(SigningKey::from_bytes(&seed))
            }
            "SYMMETRIC_DEFAULT" => {
                if let Some(u) = str_field(body, "KeyUsage").filter(|u| *u != "ENCRYPT_DECRYPT") {
                    return Err(KmsFault::validation(format!(
                        "KeyUsage {u} is not valid for KeySpec SYMMETRIC_DEFAULT"
                    )));
                }
                None
            }
            other => {
                return Err(KmsFault::unsupported(format!(
                    "kms-local creates ECC_NIST_EDWARDS25519 and SYMMETRIC_DEFAULT keys only, not {other}"
                )))
            }
        };
        let id = uuid::Uuid::new_v4().to_string();
        let key = Key {
            arn: format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}"),
            id: id.clone(),
            spec: spec.to_string(),
            usage: if signing.is_some() {
                "SIGN_VERIFY"
            } else {
                "ENCRYPT_DECRYPT"
            }
            .to_string(),
            description: str_field(body, "Description").unwrap_or_default().to_string(),
            created: now_epoch(),
            signing,
        };
        let metadata = key.metadata();
        lock(&self.keys).insert(id, Arc::new(key));
        Ok(json!({ "KeyMetadata": metadata }))
    }

    fn op_create_alias(&self, body: &Value) -> Result<Value, KmsFault> {
        let alias = required(body, "AliasName")?;
        if !alias.starts_with("alias/") || alias.starts_with("alias/aws/") || alias.len() > 256 {
            return Err(KmsFault::validation(format!("invalid alias name {alias:?}")));
        }
        let key = self.key(required(body, "TargetKeyId")?)?;
        let mut aliases = lock(&self.aliases);
        if aliases.contains_key(alias) {
            return Err(KmsFault::new(
                400,
                "AlreadyExistsException",
                format!("{alias} already exists"),
            ));
        }
        aliases.insert(alias.to_string(), key.id.clone());
        Ok(json!({}))
    }

    fn get_public_key(&self, body: &Value) -> Result<Value, KmsFault> {
        let key = self.key(required(body, "KeyId")?)?;
        let Some(signing) = &key.signing else {
            return Err(KmsFault::unsupported(format!(
                "{} is not an asymmetric KMS key: it has no public key",
                key.arn
            )));
        };
        let der = signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| KmsFault::new(500, "KMSInternalException", e.to_string()))?;
        Ok(json!({
            "KeyId": key.arn,
            "PublicKey": B64.encode(der.as_bytes()),
            "CustomerMasterKeySpec": key.spec,
            "KeySpec": key.spec,
            "KeyUsage": key.usage,
            "SigningAlgorithms": key.signing_algorithms(),
        }))
    }

    /// The key, message and algorithm of a `Sign` or `Verify` request, checked as KMS does.
    fn signing_request(&self, body: &Value) -> Result<(Arc<Key>, Vec<u8>, String), KmsFault> {
        let key = self.key(required(body, "KeyId")?)?;
        let message = blob(body, "Message")?;
        if message.is_empty() || message.len() > MAX_MESSAGE_BYTES {
            return Err(KmsFault::validation(format!(
                "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and {MAX_MESSAGE_BYTES}, inclusive (got {})",
                message.len()
            )));
        }
        let algorithm = required(body, "SigningAlgorithm")?.to_string();
        let message_type = str_field(body, "MessageType").unwrap_or("RAW");
        if key.usage != "SIGN_VERIFY" {
            return Err(KmsFault::invalid_key_usage(format!(
                "{} key usage is {}, not SIGN_VERIFY",
                key.arn, key.usage
            )));
        }
        if !key.signing_algorithms().contains(&algorithm.as_str()) {
            return Err(KmsFault::invalid_key_usage(format!(
                "{algorithm} is not a signing algorithm of {} ({})",
                key.arn, key.spec
            )));
        }
        match (algorithm.as_str(), message_type) {
            (ED25519_SHA_512, "RAW") => Ok((key, message, algorithm)),
            (ED25519_SHA_512, other) => Err(KmsFault::validation(format!(
                "ED25519_SHA_512 requires MessageType RAW, not {other}"
            ))),
            _ => Err(KmsFault::unsupported(format!(
                "kms-local does not implement {algorithm}"
            ))),
        }
    }

    fn sign(&self, body: &Value) -> Result<Value, KmsFault> {
        let (key, message, algorithm) = self.signing_request(body)?;
        let signing = key
            .signing
            .as_ref()
            .ok_or_else(|| KmsFault::invalid_key_usage("no signing key"))?;
        let misbehave = lock(&self.faults).misbehave;
        let mut sig = match misbehave {
            Misbehave::OtherKey => SigningKey::from_bytes(&[0x42; 32]).sign(&message).to_bytes().to_vec(),
            _ => signing.sign(&message).to_bytes().to_vec(),
        };
        match misbehave {
            Misbehave::CorruptSignature => sig[10] ^= 0x01,
            Misbehave::ShortSignature => {
                sig.pop();
            }
            _ => {}
        }
        Ok(json!({"KeyId": key.arn, "Signature": B64.encode(sig), "SigningAlgorithm": algorithm}))
    }

    fn verify(&self, body: &Value) -> Result<Value, KmsFault> {
        let (key, message, algorithm) = self.signing_request(body)?;
        let signing = key
            .signing
            .as_ref()
            .ok_or_else(|| KmsFault::invalid_key_usage("no signing key"))?;
        let sig = blob(body, "Signature")?;
        let valid = ed25519_dalek::Signature::from_slice(&sig)
            .is_ok_and(|s| signing.verifying_key().verify(&message, &s).is_ok());
        if !valid {
            return Err(KmsFault::new(
                400,
                "KMSInvalidSignatureException",
                "the signature does not verify",
            ));
        }
        Ok(json!({"KeyId": key.arn, "SignatureValid": true, "SigningAlgorithm": algorithm}))
    }
}

/// Serves `kms` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, kms: Arc<KmsLocal>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let kms = kms.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let kms = kms.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let (status, value) = if parts.method != http::Method::POST || parts.uri.path() != "/" {
                        (
                            404,
                            json!({"__type": "UnknownOperationException", "message": "KMS takes POST /"}),
                        )
                    } else {
                        match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
                            Ok(b) => kms.handle(
                                header("x-amz-target").as_deref(),
                                header("content-type").as_deref(),
                                &b.to_bytes(),
                            ),
                            Err(_) => (
                                413,
                                json!({"__type": "ValidationException", "message": "request too large"}),
                            ),
                        }
                    };
                    let resp = Response::builder()
                        .status(status)
                        .header("content-type", "application/x-amz-json-1.1")
                        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
                        .body(Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default())));
                    Ok::<_, Infallible>(resp.unwrap_or_default())
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// A running stand-in: its endpoint (for `AWS_ENDPOINT_URL_KMS`) and its state.
pub struct KmsServer {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The keys and switches.
    pub kms: Arc<KmsLocal>,
    task: tokio::task::JoinHandle<()>,
}

impl KmsServer {
    /// Starts a stand-in on a free loopback port, on the current tokio runtime. Panics when it
    /// cannot bind (a test that needs it must not pass without it).
    pub async fn start() -> Self {
        Self::bind(([127, 0, 0, 1], 0).into())
            .await
            .unwrap_or_else(|e| panic!("kms-local: cannot listen on loopback: {e}"))
    }

    /// Starts a stand-in on `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let kms = KmsLocal::new();
        let task = tokio::spawn(serve(listener, kms.clone()));
        Ok(Self {
            endpoint: format!("http://{local}"),
            kms,
            task,
        })
    }
}

impl Drop for KmsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kms: &KmsLocal, op: &str, body: Value) -> (u16, Value) {
        kms.handle(
            Some(&format!("TrentService.{op}")),
            Some("application/x-amz-json-1.1"),
            &serde_json::to_vec(&body).unwrap(),
        )
    }

    #[test]
    fn signs_verifies_and_refuses_as_kms_does() {
        let kms = KmsLocal::new();
        let arn = kms.create_ed25519_key("test");
        kms.create_alias("alias/log", &arn).unwrap();
        let msg = B64.encode(b"tree\n");
        let (s, signed) = call(
            &kms,
            "Sign",
            json!({"KeyId": "alias/log", "Message": msg, "MessageType": "RAW", "SigningAlgorithm": ED25519_SHA_512}),
        );
        assert_eq!(s, 200, "{signed}");
        assert_eq!(B64.decode(signed["Signature"].as_str().unwrap()).unwrap().len(), 64);
        let (s, v) = call(
            &kms,
            "Verify",
            json!({"KeyId": arn, "Message": msg, "Signature": signed["Signature"], "SigningAlgorithm": ED25519_SHA_512}),
        );
        assert_eq!((s, v["SignatureValid"].as_bool()), (200, Some(true)));
        let (s, v) = call(
            &kms,
            "Verify",
            json!({"KeyId": arn, "Message": B64.encode(b"other\n"), "Signature": signed["Signature"], "SigningAlgorithm": ED25519_SHA_512}),
        );
        assert_eq!((s, v["__type"].as_str()), (400, Some("KMSInvalidSignatureException")));
        // A message over 4,096 bytes, a foreign algorithm, an unknown key, a DIGEST.
        let big = B64.encode(vec![b'a'; MAX_MESSAGE_BYTES + 1]);
        let cases = [
            (
                json!({"KeyId": arn, "Message": big, "SigningAlgorithm": ED25519_SHA_512}),
                "ValidationException",
            ),
            (
                json!({"KeyId": arn, "Message": msg, "SigningAlgorithm": "ECDSA_SHA_256"}),
                "InvalidKeyUsageException",
            ),
            (
                json!({"KeyId": "alias/nope", "Message": msg, "SigningAlgorithm": ED25519_SHA_512}),
                "NotFoundException",
            ),
            (
                json!({"KeyId": arn, "Message": msg, "MessageType": "DIGEST", "SigningAlgorithm": ED25519_SHA_512}),
                "ValidationException",
            ),
        ];
        for (body, code) in cases {
            let (s, v) = call(&kms, "Sign", body);
            assert_eq!((s, v["__type"].as_str()), (400, Some(code)), "{v}");
        }
        // Exactly 4,096 bytes is allowed.
        let max = B64.encode(vec![b'a'; MAX_MESSAGE_BYTES]);
        assert_eq!(
            call(
                &kms,
                "Sign",
                json!({"KeyId": arn, "Message": max, "SigningAlgorithm": ED25519_SHA_512})
            )
            .0,
            200
        );
    }

    #[test]
    fn a_symmetric_key_has_no_public_key_and_cannot_sign() {
        let kms = KmsLocal::new();
        let (s, created) = call(&kms, "CreateKey", json!({}));
        assert_eq!(s, 200);
        let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
        assert_eq!(created["KeyMetadata"]["KeySpec"], "SYMMETRIC_DEFAULT");
        let (s, v) = call(&kms, "GetPublicKey", json!({"KeyId": arn}));
        assert_eq!((s, v["__type"].as_str()), (400, Some("UnsupportedOperationException")));
        let (s, v) = call(
            &kms,
            "Sign",
            json!({"KeyId": arn, "Message": B64.encode(b"x"), "SigningAlgorithm": ED25519_SHA_512}),
        );
        assert_eq!((s, v["__type"].as_str()), (400, Some("InvalidKeyUsageException")));
        let (s, v) = call(&kms, "CreateKey", json!({"KeySpec": ED25519_SPEC}));
        assert_eq!(
            (s, v["__type"].as_str()),
            (400, Some("ValidationException")),
            "Ed25519 is SIGN_VERIFY only"
        );
    }

    #[test]
    fn faults_answer_the_next_calls_then_stop() {
        let kms = KmsLocal::new();
        let arn = kms.create_ed25519_key("test");
        kms.fail(KmsFault::internal(), 2);
        for _ in 0..2 {
            let (s, v) = call(&kms, "DescribeKey", json!({"KeyId": arn}));
            assert_eq!((s, v["__type"].as_str()), (500, Some("KMSInternalException")));
        }
        assert_eq!(call(&kms, "DescribeKey", json!({"KeyId": arn})).0, 200);
        assert_eq!(kms.calls()["DescribeKey"], 3);
    }
}
