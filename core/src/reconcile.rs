//! The reconciler: re-drives audit events still unaudited after a grace period.
//!
//! Asynchronous invokes can be dropped (Lambda's documentation says events may be lost, and
//! a process can die holding a batch), so the outbox in the request log is the source of
//! truth. Re-driven batches keep their batch id, so the writer's create-only keys make a
//! re-drive of an already written batch a no-op: no event lost, none doubled.

use crate::audit::{batch_payload, split_by_size};
use crate::model::{AuditWriteReport, ReconcileReport};
use crate::ports::{Invoker, LogError, RequestLog};
use crate::settings::SettingsReader;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest wait for one re-driven batch (the writer's own Lambda timeout is shorter).
const REDRIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Default of `TOLLGATE_AUDIT_FUNCTION`: the audit writer.
pub const DEFAULT_AUDIT_FUNCTION: &str = "audit-writer";
/// Default of `TOLLGATE_AUDIT_BATCH_MAX_BYTES`: under Lambda's 1 MB async payload limit.
pub const DEFAULT_AUDIT_BATCH_MAX_BYTES: u64 = 900_000;
/// Default of `TOLLGATE_AUDIT_BATCH_MAX_EVENTS`.
pub const DEFAULT_AUDIT_BATCH_MAX_EVENTS: u64 = 1000;
/// Default of `TOLLGATE_RECONCILE_GRACE_MS`: rows younger than this are left to the normal
/// audit pipeline.
pub const DEFAULT_RECONCILE_GRACE_MS: u64 = 120_000;
/// Default of `TOLLGATE_RECONCILE_SCAN_LIMIT`: rows a reconciler pass looks at.
pub const DEFAULT_RECONCILE_SCAN_LIMIT: u64 = 10_000;

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

impl ReconcileSettings {
    /// Reads the audit writer, batch limits and reconciler settings (shared by the ingress and
    /// the scheduled `audit-reconciler` function).
    pub fn read(r: &mut SettingsReader) -> Self {
        let audit_function = r.parse(
            "TOLLGATE_AUDIT_FUNCTION",
            DEFAULT_AUDIT_FUNCTION.to_string(),
            "function that writes audit batches",
        );
        let max_batch_bytes = r.range(
            "TOLLGATE_AUDIT_BATCH_MAX_BYTES",
            DEFAULT_AUDIT_BATCH_MAX_BYTES,
            4096,
            crate::audit::ASYNC_PAYLOAD_LIMIT as u64,
            "largest audit batch payload (Lambda async limit: 1 MB)",
        ) as usize;
        let max_batch_events = r.range(
            "TOLLGATE_AUDIT_BATCH_MAX_EVENTS",
            DEFAULT_AUDIT_BATCH_MAX_EVENTS,
            1,
            100_000,
            "most events per audit batch",
        ) as usize;
        let grace = Duration::from_millis(r.range(
            "TOLLGATE_RECONCILE_GRACE_MS",
            DEFAULT_RECONCILE_GRACE_MS,
            0,
            86_400_000,
            "rows unaudited for longer than this are re-driven",
        ));
        let scan_limit = r.range(
            "TOLLGATE_RECONCILE_SCAN_LIMIT",
            DEFAULT_RECONCILE_SCAN_LIMIT,
            1,
            1_000_000,
            "rows a reconciler pass looks at",
        ) as usize;
        Self {
            audit_function,
            grace,
            scan_limit,
            max_batch_bytes,
            max_batch_events,
        }
    }
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
