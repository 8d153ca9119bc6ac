//! The `audit-digest` Lambda: on the schedule's events, one pass (integrate, then sign the
//! digests that are due); on `Custom::LogVerifierKey` requests, the log's verifier key.

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use time::OffsetDateTime;
use tollgate_audit_digest::{is_custom_resource, run_pass};
use tollgate_aws::backends::ModeSettings;
use tollgate_core::digest::{DigestSettings, Digester};
use tollgate_core::settings::SettingsReader;
use tollgate_core::translog::Integrator;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let mut reader = SettingsReader::from_process();
    let mode = ModeSettings::read(&mut reader);
    let settings = DigestSettings::read(&mut reader);
    reader.finish()?;
    let backends = tollgate_aws::backends::open(&mode).await?;
    let signer = backends
        .log_signer
        .clone()
        .ok_or("the log has no signing key: set TOLLGATE_LOG_KMS_KEY_ID (aws mode)")?;
    let integrator = Arc::new(Integrator::new(
        backends.tlog.clone(),
        backends.trail.clone(),
        signer.clone(),
    ));
    let digester = Arc::new(Digester::new(
        backends.tlog.clone(),
        backends.store.clone(),
        backends.trail.clone(),
        signer,
        settings,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (integrator, digester) = (integrator.clone(), digester.clone());
        async move {
            if is_custom_resource(&event.payload) {
                return Err(lambda_runtime::Diagnostic {
                    error_type: "Unsupported".into(),
                    error_message: "custom resource requests are not handled yet".into(),
                });
            }
            let report = run_pass(&integrator, &digester, OffsetDateTime::now_utc())
                .await
                .map_err(lambda_runtime::Diagnostic::from)?;
            tracing::info!(?report, "digest pass");
            Ok::<_, lambda_runtime::Diagnostic>(serde_json::to_value(report).unwrap_or_default())
        }
    }))
    .await
}
