//! `audit-writer`: writes one batch of audit events as create-only gzip NDJSON, then marks
//! the rows audited.
//!
//! Exactly-once without coordination: part `n` of a batch has a key fixed by the batch id,
//! and puts are create-only. On a retry or a concurrent re-drive the put finds the key
//! taken; the writer reads that object, counts the events it already holds as written (and
//! marks them), and writes only the rest, to part `n + 1`. So every event ends up in exactly
//! one object, whatever mix of retries, re-drives and lost invocations happened.

use bytes::Bytes;
use std::collections::BTreeMap;
use tollgate_core::audit::{self, AuditFormatError};
use tollgate_core::model::{AuditBatch, AuditWriteReport, WrittenObject};
use tollgate_core::ports::{LogError, ObjectStore, PutOutcome, RequestLog, StoreError};

/// Parts tried per batch before giving up (each taken part means a concurrent writer made
/// progress, so this is never reached in practice).
pub const MAX_PARTS: u32 = 64;

/// Why a batch was not (fully) written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The batch is malformed.
    #[error("invalid batch: {0}")]
    Invalid(#[from] AuditFormatError),
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Too many parts were taken.
    #[error("batch {0}: every part up to {MAX_PARTS} is taken")]
    PartsExhausted(String),
}

/// Writes a batch; see the module docs for the protocol.
pub async fn write_batch(
    log: &dyn RequestLog,
    store: &dyn ObjectStore,
    batch: AuditBatch,
) -> Result<AuditWriteReport, WriteError> {
    audit::batch_time(&batch.batch_id)?;
    // Sorted by request id (and deduplicated), so the same events always encode to the same bytes.
    let mut remaining: BTreeMap<String, String> = BTreeMap::new();
    for e in &batch.events {
        let text = e.get().to_string();
        remaining.insert(audit::event_request_id(&text)?, text);
    }
    let mut report = AuditWriteReport {
        batch_id: batch.batch_id.clone(),
        objects: Vec::new(),
        rows_marked: 0,
    };
    for part in 0..MAX_PARTS {
        if remaining.is_empty() {
            return Ok(report);
        }
        let key = audit::object_key(&batch.batch_id, part)?;
        let body = Bytes::from(audit::encode(remaining.values().map(String::as_str)));
        match store.put_if_absent(&key, body).await? {
            PutOutcome::Created => {
                let ids: Vec<String> = remaining.keys().cloned().collect();
                report.rows_marked += log.mark_audited(&key, &ids).await?;
                report.objects.push(WrittenObject {
                    key,
                    events: ids.len(),
                    created: true,
                });
                return Ok(report);
            }
            PutOutcome::AlreadyExists => {
                let existing = store
                    .get(&key)
                    .await?
                    .ok_or_else(|| StoreError::Unavailable(format!("{key} exists but cannot be read yet")))?;
                let mut held = Vec::new();
                for line in audit::decode(&existing)? {
                    let id = audit::event_request_id(&line)?;
                    if remaining.remove(&id).is_some() {
                        held.push(id);
                    }
                }
                if !held.is_empty() {
                    report.rows_marked += log.mark_audited(&key, &held).await?;
                    report.objects.push(WrittenObject {
                        key,
                        events: held.len(),
                        created: false,
                    });
                }
            }
        }
    }
    if remaining.is_empty() {
        Ok(report)
    } else {
        Err(WriteError::PartsExhausted(batch.batch_id))
    }
}

impl WriteError {
    /// The `errorType` reported to Lambda (and so to the invoker).
    pub fn error_type(&self) -> &'static str {
        match self {
            WriteError::Invalid(_) => "InvalidBatch",
            WriteError::Store(_) => "ObjectStoreError",
            WriteError::Log(_) => "RequestLogError",
            WriteError::PartsExhausted(_) => "PartsExhausted",
        }
    }
}

impl From<WriteError> for lambda_runtime::Diagnostic {
    fn from(e: WriteError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}
