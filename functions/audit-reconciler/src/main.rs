//! The `audit-reconciler` Lambda: `lambda_runtime` with the schedule's event.
//!
//! In aws mode it invokes the audit writer through Lambda; in embedded mode (for
//! `cargo lambda invoke` on a developer's machine) the writer is linked in-process over the
//! same data directory as the ingress.

use lambda_runtime::{service_fn, LambdaEvent};
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_audit_reconciler::{run_pass, ScheduledEvent};
use tollgate_aws::backends::ModeSettings;
use tollgate_core::reconcile::ReconcileSettings;
use tollgate_core::settings::SettingsReader;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let mut reader = SettingsReader::from_process();
    let mode = ModeSettings::read(&mut reader);
    let settings = Arc::new(ReconcileSettings::read(&mut reader));
    reader.finish()?;
    let backends = tollgate_aws::backends::open(&mode).await?;
    let invoker = tollgate_aws::backends::invoker(&mode, || {
        let writer = tollgate_audit_writer::local_function(backends.log.clone(), backends.store.clone());
        HashMap::from([(settings.audit_function.clone(), writer)])
    })
    .await?;
    let log = backends.log;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ScheduledEvent>| {
        let (log, invoker, settings) = (log.clone(), invoker.clone(), settings.clone());
        async move { run_pass(&*log, &*invoker, &settings, event.payload).await }
    }))
    .await
}
