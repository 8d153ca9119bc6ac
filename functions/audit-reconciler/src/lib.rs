//! `audit-reconciler`: on a schedule, re-drives audit events still unaudited after a grace
//! period, through the audit writer (synchronously, so a failure is seen).
//!
//! Asynchronous invokes can be dropped (the Lambda documentation says an event may be lost,
//! and an ingress task can be stopped holding a batch), so the request log's outbox is the
//! source of truth. A re-drive reuses the batch id, and the writer's create-only keys make
//! it a no-op for events already written: nothing lost, nothing doubled.

use tollgate_core::model::ReconcileReport;
pub use tollgate_core::model::ScheduledEvent;
use tollgate_core::ports::{Invoker, LogError, RequestLog};
use tollgate_core::reconcile::{reconcile_once, ReconcileSettings};

/// The CloudWatch namespace of the reconciler's metrics (the template's alarms read it).
pub const METRIC_NAMESPACE: &str = "Tollgate";

/// Why a pass did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The request log could not be scanned.
    #[error("cannot scan the request log: {0}")]
    Log(#[from] LogError),
    /// Some batches could not be re-driven; they are retried on the next pass.
    #[error("{failed} of {batches} re-driven batches failed; retried on the next pass")]
    RedriveFailed {
        /// Batches that failed.
        failed: usize,
        /// Batches tried.
        batches: usize,
    },
}

impl From<PassError> for lambda_runtime::Diagnostic {
    fn from(e: PassError) -> Self {
        let error_type = match e {
            PassError::Log(_) => "RequestLogError",
            PassError::RedriveFailed { .. } => "RedriveFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// One scheduled pass. A pass with failed batches is reported as a function error (after
/// every batch was tried), so the function's `Errors` metric and alarm show a writer that
/// keeps failing.
pub async fn run_pass(
    log: &dyn RequestLog,
    invoker: &dyn Invoker,
    settings: &ReconcileSettings,
    event: ScheduledEvent,
) -> Result<ReconcileReport, PassError> {
    let report = reconcile_once(log, invoker, settings).await?;
    // As metrics (embedded metric format): rows set aside and intents finalized are alarmed on.
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "audit-reconciler".into());
    println!(
        "{}",
        tollgate_core::logging::emf_line(
            METRIC_NAMESPACE,
            &[("FunctionName", &function)],
            &[
                ("AuditRowsSetAside", "Count", report.set_aside as f64),
                ("IntentsFinalized", "Count", report.intents_finalized as f64),
                ("RedriveFailures", "Count", report.failed_batches as f64),
            ],
        )
    );
    tracing::info!(
        event_id = event.id.as_deref().unwrap_or("-"),
        source = %event.source,
        scheduled_at = event.time.as_deref().unwrap_or("-"),
        pending = report.pending,
        batches = report.batches,
        failed = report.failed_batches,
        intents_finalized = report.intents_finalized,
        set_aside = report.set_aside,
        "reconciler pass"
    );
    if report.failed_batches > 0 {
        return Err(PassError::RedriveFailed {
            failed: report.failed_batches,
            batches: report.batches,
        });
    }
    Ok(report)
}
