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
use tollgate_core::backends::Mode;
use tollgate_core::local::LocalInvoker;
use tollgate_core::ports::Invoker;
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
    let invoker: Arc<dyn Invoker> = match (&mode.storage.mode, &mode.aws) {
        (Mode::Aws, Some(aws)) => Arc::new(tollgate_aws::backends::lambda_invoker(aws).await),
        _ => {
            let writer = tollgate_audit_writer::local_function(backends.log.clone(), backends.store.clone());
            Arc::new(LocalInvoker::new(HashMap::from([(
                settings.audit_function.clone(),
                writer,
            )])))
        }
    };
    let log = backends.log;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ScheduledEvent>| {
        let (log, invoker, settings) = (log.clone(), invoker.clone(), settings.clone());
        async move { run_pass(&*log, &*invoker, &settings, event.payload).await }
    }))
    .await
}
