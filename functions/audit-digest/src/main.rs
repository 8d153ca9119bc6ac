//! The `audit-digest` Lambda: on the schedule's events, one pass (integrate, then sign the
//! digests that are due); on `Custom::LogVerifierKey` requests, the log's verifier key.

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use time::OffsetDateTime;
use tollgate_audit_digest::{is_custom_resource, log_key_outcome, run_pass, LogKeyEvent};
use tollgate_aws::backends::ModeSettings;
use tollgate_aws::custom_resource::{deliver, HttpsResponder};
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
    let log_signer = backends.log_signer.clone();
    let signer = log_signer
        .clone()
        .ok_or("the log has no signing key: set TOLLGATE_LOG_KMS_KEY_ID (aws mode)")?;
    // The key the custom resource must name: the process's own (`TOLLGATE_LOG_KMS_KEY_ID`).
    // (Embedded mode, for `cargo lambda invoke`, has no AWS settings: the variable as set.)
    let key_id = Arc::new(
        mode.aws
            .as_ref()
            .and_then(|a| a.log_kms_key_id.clone())
            .or_else(|| std::env::var("TOLLGATE_LOG_KMS_KEY_ID").ok().filter(|k| !k.is_empty())),
    );
    let responder = Arc::new(HttpsResponder::new()?);
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
        let (key_id, signer, responder) = (key_id.clone(), log_signer.clone(), responder.clone());
        async move {
            if is_custom_resource(&event.payload) {
                let request: LogKeyEvent =
                    serde_json::from_value(event.payload).map_err(|e| lambda_runtime::Diagnostic {
                        error_type: "InvalidEvent".into(),
                        error_message: format!("not a custom resource request: {e}"),
                    })?;
                let response = log_key_outcome(&request, key_id.as_deref(), signer.as_deref());
                deliver(&request, &response, &*responder).await?;
                return Ok(serde_json::to_value(&response).unwrap_or_default());
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
