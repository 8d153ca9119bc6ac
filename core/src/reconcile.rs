//! The reconciler: re-drives audit events still unaudited after a grace period.
//!
//! Asynchronous invokes can be dropped (Lambda's documentation says events may be lost, and
//! a process can die holding a batch), so the outbox in the request log is the source of
//! truth. Re-driven batches keep their batch id, so the writer's create-only keys make a
//! re-drive of an already written batch a no-op: no event lost, none doubled.

use crate::audit::{batch_payload, split_by_size};
use crate::model::{AuditWriteReport, ReconcileReport};
use crate::ports::{Invoker, LogError, RequestLog};
use crate::settings::{Millis, SettingsReader, Whole};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest wait for one re-driven batch (the writer's own Lambda timeout is shorter).
const REDRIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// `TOLLGATE_AUDIT_FUNCTION`: the audit writer.
pub const DEFAULT_AUDIT_FUNCTION: &str = "audit-writer";
/// `TOLLGATE_AUDIT_BATCH_MAX_BYTES`: under Lambda's 1 MB async payload limit.
pub const AUDIT_BATCH_MAX_BYTES: Whole = Whole {
    env: "TOLLGATE_AUDIT_BATCH_MAX_BYTES",
    default: 900_000,
    min: 4096,
    max: crate::audit::ASYNC_PAYLOAD_LIMIT as u64,
    help: "largest audit batch payload (Lambda async limit: 1 MB)",
};

/// `TOLLGATE_AUDIT_BATCH_MAX_EVENTS`.
pub const AUDIT_BATCH_MAX_EVENTS: Whole = Whole {
    env: "TOLLGATE_AUDIT_BATCH_MAX_EVENTS",
    default: 1000,
    min: 1,
    max: 100_000,
    help: "most events per audit batch",
};

/// `TOLLGATE_RECONCILE_GRACE_MS`: rows younger than this are left to the normal
/// audit pipeline.
pub const RECONCILE_GRACE: Millis = Millis {
    env: "TOLLGATE_RECONCILE_GRACE_MS",
    default: Duration::from_secs(120),
    min: Duration::ZERO,
    max: Duration::from_secs(86400),
    help: "rows unaudited for longer than this are re-driven",
};

/// `TOLLGATE_RECONCILE_SCAN_LIMIT`: rows a reconciler pass looks at.
pub const RECONCILE_SCAN_LIMIT: Whole = Whole {
    env: "TOLLGATE_RECONCILE_SCAN_LIMIT",
    default: 10_000,
    min: 1,
    max: 1_000_000,
    help: "rows a reconciler pass looks at",
};

/// `TOLLGATE_RECONCILE_SET_ASIDE_AFTER`: failed re-drives after which a row is set
/// aside (counted and alarmed on, no longer tried).
pub const RECONCILE_SET_ASIDE_AFTER: Whole = Whole {
    env: "TOLLGATE_RECONCILE_SET_ASIDE_AFTER",
    default: 5,
    min: 1,
    max: 1000,
    help: "failed re-drives after which a row is set aside (and alarmed on)",
};

/// `TOLLGATE_INTENT_GRACE_MS`: a write-ahead intent older than this lost its ingress
/// and is finalized as `outcome_unknown`. It must exceed the longest a live ingress can take
/// from an intent to its record: the longest route timeout (at most 15 minutes) plus the
/// commit budget; the ingress refuses to start with a write-ahead route that does not fit.
pub const INTENT_GRACE: Millis = Millis {
    env: "TOLLGATE_INTENT_GRACE_MS",
    default: Duration::from_secs(1200),
    min: Duration::from_secs(1),
    max: Duration::from_secs(86400),
    help: "write-ahead intents older than this are finalized as outcome_unknown",
};

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
    /// Failed re-drives after which a row is set aside.
    pub set_aside_after: u32,
    /// Age past which a write-ahead intent is finalized as `outcome_unknown`.
    pub intent_grace: Duration,
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
        let max_batch_bytes = r.whole(&AUDIT_BATCH_MAX_BYTES) as usize;
        let max_batch_events = r.whole(&AUDIT_BATCH_MAX_EVENTS) as usize;
        let grace = r.millis(&RECONCILE_GRACE);
        let scan_limit = r.whole(&RECONCILE_SCAN_LIMIT) as usize;
        let set_aside_after = r.whole(&RECONCILE_SET_ASIDE_AFTER) as u32;
        let intent_grace = r.millis(&INTENT_GRACE);
        Self {
            audit_function,
            grace,
            scan_limit,
            max_batch_bytes,
            max_batch_events,
            set_aside_after,
            intent_grace,
        }
    }
}

/// One pass. First, write-ahead intents past their grace are finalized as `outcome_unknown`
/// (their ingress died). Then unaudited rows past the grace period are sent to the writer
/// synchronously, so failures are seen: each failed row counts one more attempt, rows that
/// failed before go one event per batch (a bad event cannot hold back the rest of its
/// batch), rows with fewer failures go first, and rows past `set_aside_after` are set aside
/// and counted (the report's `set_aside`, alarmed on) rather than tried for ever.
pub async fn reconcile_once(
    log: &dyn RequestLog,
    invoker: &dyn Invoker,
    settings: &ReconcileSettings,
) -> Result<ReconcileReport, LogError> {
    let now = crate::clock::now();
    let finalized = log
        .finalize_intents(now - settings.intent_grace, settings.scan_limit)
        .await?;
    for id in &finalized {
        tracing::warn!(request_id = %id, "write-ahead intent without an answer: finalized as outcome_unknown");
    }
    let pending = log
        .pending_audits(now - settings.grace, settings.set_aside_after, settings.scan_limit)
        .await?;
    let mut report = ReconcileReport {
        pending: pending.len(),
        intents_finalized: finalized.len(),
        ..Default::default()
    };
    // (batch id, events, their request ids), each sent as one or more parts.
    let mut groups: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut singles: Vec<(String, String, String)> = Vec::new();
    for row in pending {
        if row.audit_payload.is_empty() {
            tracing::error!(request_id = %row.request_id, "unaudited row without an outbox payload");
            continue;
        }
        if row.redrive_attempts > 0 {
            singles.push((row.audit_batch, row.audit_payload, row.request_id));
        } else {
            let g = groups.entry(row.audit_batch).or_default();
            g.0.push(row.audit_payload);
            g.1.push(row.request_id);
        }
    }
    let mut parts: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for (batch_id, (events, ids)) in groups {
        let mut ids = ids.into_iter();
        for part in split_by_size(events, settings.max_batch_bytes, settings.max_batch_events) {
            let part_ids: Vec<String> = ids.by_ref().take(part.len()).collect();
            parts.push((batch_id.clone(), part, part_ids));
        }
    }
    parts.extend(singles.into_iter().map(|(b, e, id)| (b, vec![e], vec![id])));
    for (batch_id, events, ids) in parts {
        report.batches += 1;
        if let Err(why) = redrive(invoker, &settings.audit_function, &batch_id, &events).await {
            report.failed_batches += 1;
            tracing::warn!(batch_id = %batch_id, events = events.len(), error = %why, "re-drive failed; will retry next pass");
            if let Err(e) = log.note_redrive_failure(&ids).await {
                tracing::warn!(batch_id = %batch_id, error = %e, "could not count the failed re-drive");
            }
        }
    }
    report.set_aside = log.count_set_aside(settings.set_aside_after).await?;
    if report.set_aside > 0 {
        tracing::error!(rows = report.set_aside, after = settings.set_aside_after,
            "unaudited rows set aside after repeated re-drive failures; fix the cause, then reset their redrive_attempts");
    }
    Ok(report)
}

/// Sends one part of a batch to the writer and reads its report.
async fn redrive(invoker: &dyn Invoker, function: &str, batch_id: &str, events: &[String]) -> Result<(), String> {
    let payload = batch_payload(batch_id, events);
    let answer = tokio::time::timeout(REDRIVE_TIMEOUT, invoker.invoke(function, payload))
        .await
        .unwrap_or_else(|_| Err(crate::InvokeError::Unavailable("re-drive timed out".into())))
        .map_err(|e| e.to_string())?;
    let r = serde_json::from_slice::<AuditWriteReport>(&answer)
        .map_err(|e| format!("audit writer answered garbage: {e}"))?;
    tracing::info!(batch_id = %batch_id, events = events.len(), rows_marked = r.rows_marked, "re-drove audit batch");
    Ok(())
}
