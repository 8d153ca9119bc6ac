//! `ObjectStore` on S3: create-only puts (`If-None-Match: *`), SHA-256 checksums,
//! server-side encryption (SSE-S3, or SSE-KMS with a key id).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ServerSideEncryption};
use aws_sdk_s3::Client;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tollgate_core::backoff::{self, retry};
use tollgate_core::ports::{BoxFuture, ObjectStore, PutOutcome, StoreError};

/// Where the audit objects go.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// Bucket.
    pub bucket: String,
    /// KMS key for SSE-KMS; SSE-S3 when `None`.
    pub kms_key_id: Option<String>,
}

/// The S3 object store.
#[derive(Clone)]
pub struct S3ObjectStore {
    client: Client,
    settings: S3Settings,
}

fn map_err<E: ProvideErrorMetadata + std::fmt::Debug>(e: &SdkError<E>) -> StoreError {
    match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("Unknown");
            if status >= 500 || status == 429 || code == "SlowDown" {
                StoreError::Unavailable(format!("{code} ({status})"))
            } else {
                StoreError::Failed(format!("{code} ({status})"))
            }
        }
        other => StoreError::Unavailable(format!("{other:?}")),
    }
}

/// A put that failed: a conflicting conditional write (retried), or anything else.
enum PutError {
    Conflict,
    Other(StoreError),
}

impl std::fmt::Display for PutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict => f.write_str("ConditionalRequestConflict (409)"),
            Self::Other(e) => e.fmt(f),
        }
    }
}

impl S3ObjectStore {
    /// A store over an S3 client.
    pub fn new(client: Client, settings: S3Settings) -> Self {
        Self { client, settings }
    }
}

impl ObjectStore for S3ObjectStore {
    fn put_if_absent<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let checksum = STANDARD.encode(Sha256::digest(&body));
            // 409 ConditionalRequestConflict: another conditional write to the key is in
            // flight; S3 asks for a retry (the one retry policy's S3_CONFLICT).
            let put = retry(
                &backoff::S3_CONFLICT,
                |e: &PutError| matches!(e, PutError::Conflict),
                || async {
                    let mut req = self
                        .client
                        .put_object()
                        .bucket(&self.settings.bucket)
                        .key(key)
                        .body(ByteStream::from(body.clone()))
                        .content_type("application/x-ndjson")
                        .if_none_match("*")
                        .checksum_algorithm(ChecksumAlgorithm::Sha256)
                        .checksum_sha256(&checksum);
                    req = match &self.settings.kms_key_id {
                        Some(k) => req
                            .server_side_encryption(ServerSideEncryption::AwsKms)
                            .ssekms_key_id(k),
                        None => req.server_side_encryption(ServerSideEncryption::Aes256),
                    };
                    match req.send().await {
                        Ok(_) => Ok(PutOutcome::Created),
                        Err(SdkError::ServiceError(ctx)) if ctx.raw().status().as_u16() == 412 => {
                            Ok(PutOutcome::AlreadyExists)
                        }
                        Err(SdkError::ServiceError(ctx)) if ctx.raw().status().as_u16() == 409 => {
                            Err(PutError::Conflict)
                        }
                        Err(e) => Err(PutError::Other(map_err(&e))),
                    }
                },
            )
            .await;
            match put {
                Ok(outcome) => Ok(outcome),
                Err(PutError::Conflict) => Err(StoreError::Unavailable(format!(
                    "{key}: conditional write conflicts persisted"
                ))),
                Err(PutError::Other(e)) => Err(e),
            }
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            match self
                .client
                .get_object()
                .bucket(&self.settings.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => {
                    let body = out
                        .body
                        .collect()
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    Ok(Some(body.into_bytes()))
                }
                Err(SdkError::ServiceError(ctx))
                    if ctx.err().is_no_such_key() || ctx.raw().status().as_u16() == 404 =>
                {
                    Ok(None)
                }
                Err(e) => Err(map_err(&e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.settings.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| map_err(&e))?;
                keys.extend(out.contents().iter().filter_map(|o| o.key().map(String::from)));
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }
}
