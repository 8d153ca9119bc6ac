//! The `audit-writer` Lambda: `lambda_runtime` with an audit batch as its event.

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tollgate_core::model::AuditBatch;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let backends = Arc::new(tollgate_aws::backends::open_from_process().await?);
    if backends.log_signer.is_none() {
        // docs/transparency-log.md: the KMS signer is not built yet.
        tracing::info!(
            "tlog: events are sequenced; integration into tiles and checkpoints is off in aws mode (no KMS signer yet)"
        );
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<AuditBatch>| {
        let backends = backends.clone();
        async move { tollgate_audit_writer::write_batch(&*backends.log, &*backends.store, event.payload).await }
    }))
    .await
}
