//! The `audit-writer` Lambda: `lambda_runtime` with an audit batch as its event.

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tollgate_core::model::AuditBatch;
use tollgate_core::translog::Integrator;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let backends = Arc::new(tollgate_aws::backends::open_from_process().await?);
    // After each batch it marked, the writer integrates the log (tiles and a checkpoint signed
    // by the KMS key), as the embedded writer does: docs/transparency-log.md.
    let integrator = backends
        .log_signer
        .clone()
        .map(|signer| Arc::new(Integrator::new(backends.tlog.clone(), backends.trail.clone(), signer)));
    if integrator.is_none() {
        tracing::info!(
            "tlog: events are sequenced; integration into tiles and checkpoints is off (TOLLGATE_LOG_KMS_KEY_ID is not set)"
        );
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<AuditBatch>| {
        let (backends, integrator) = (backends.clone(), integrator.clone());
        async move {
            let Some(integrator) = integrator else {
                return tollgate_audit_writer::write_batch(&*backends.log, &*backends.store, event.payload).await;
            };
            // The marking answers the integration's read (one Data API call a round, not two).
            let (report, pending) =
                tollgate_audit_writer::write_batch_pending(&*backends.log, &*backends.store, event.payload).await?;
            if report.rows_marked > 0 {
                tollgate_audit_writer::integrate_after(&integrator, pending).await;
            }
            Ok::<_, tollgate_audit_writer::WriteError>(report)
        }
    }))
    .await
}
