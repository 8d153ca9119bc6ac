//! The reconciler: re-drives audit events still unaudited after a grace period.
//!
//! Asynchronous invokes can be dropped (Lambda's documentation says events may be lost, and
//! a process can die holding a batch), so the outbox in the request log is the source of
//! truth. Re-driven batches keep their batch id, so the writer's create-only keys make a
//! re-drive of an already written batch a no-op: no event lost, none doubled.

use crate::audit::{batch_payload, split_by_size};
use crate::model::{AuditWriteReport, ReconcileReport};
use crate::ports::{Invoker, LogError, RequestLog};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest wait for one re-driven batch (the writer's own Lambda timeout is shorter).
const REDRIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a reconciler pass needs to know.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// The audit writer function.
    pub audit_function: String,
    /// Rows younger than this are left to the normal pipeline.
    pub grace: Duration,
    /// Most rows looked at per pass.
    pub scan_limit: usize,
    /// Largest batch payload sent (under the async invoke limit).
    pub max_batch_bytes: usize,
    /// Most events per batch sent.
    pub max_batch_events: usize,
}

/// One pass: finds unaudited rows past the grace period and sends each batch's events to the
/// writer synchronously, so failures are seen and retried on the next pass.
pub async fn reconcile_once(
    log: &dyn RequestLog,
    invoker: &dyn Invoker,
    settings: &ReconcileSettings,
) -> Result<ReconcileReport, LogError> {
    let before = crate::clock::now() - settings.grace;
    let pending = log.pending_audits(before, settings.scan_limit).await?;
    let mut report = ReconcileReport {
        pending: pending.len(),
        ..Default::default()
    };
    let mut batches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in pending {
        if row.audit_payload.is_empty() {
            tracing::error!(request_id = %row.request_id, "unaudited row without an outbox payload");
            continue;
        }
        batches.entry(row.audit_batch).or_default().push(row.audit_payload);
    }
    for (batch_id, events) in batches {
        for part in split_by_size(events, settings.max_batch_bytes, settings.max_batch_events) {
            report.batches += 1;
            let payload = batch_payload(&batch_id, &part);
            let answer = tokio::time::timeout(REDRIVE_TIMEOUT, invoker.invoke(&settings.audit_function, payload))
                .await
                .unwrap_or_else(|_| Err(crate::InvokeError::Unavailable("re-drive timed out".into())));
            match answer {
                Ok(answer) => match serde_json::from_slice::<AuditWriteReport>(&answer) {
                    Ok(r) => tracing::info!(batch_id = %batch_id, events = part.len(), rows_marked = r.rows_marked,
                        "re-drove audit batch"),
                    Err(e) => {
                        report.failed_batches += 1;
                        tracing::warn!(batch_id = %batch_id, error = %e, "audit writer answered garbage");
                    }
                },
                Err(e) => {
                    report.failed_batches += 1;
                    tracing::warn!(batch_id = %batch_id, error = %e, "re-drive failed; will retry next pass");
                }
            }
        }
    }
    Ok(report)
}
