//! `audit-digest`: the trail's clock (issue 15 items 2 and 3; `docs/transparency-log.md`).
//!
//! Each pass integrates what the sequencer handed out and no writer integrated yet (a writer
//! that failed after marking, or an idle log: at least one integration per pass), then signs
//! the digest of every period that closed since the last one and a backfill digest for objects
//! that arrived after their period's digest. In AWS it runs on an EventBridge schedule, and
//! answers the `Custom::LogVerifierKey` custom resource (the stack's output of the log's
//! public key); in embedded mode an in-process timer of the ingress runs the same pass.

use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tollgate_core::digest::{DigestError, Digester, RunReport};
use tollgate_core::translog::{Integrator, TlogError};

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The digests.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Integration.
    #[error(transparent)]
    Tlog(#[from] TlogError),
}

impl PassError {
    /// The `errorType` reported to Lambda.
    pub fn error_type(&self) -> &'static str {
        match self {
            PassError::Digest(DigestError::Raced(_)) => "DigestRaced",
            PassError::Digest(_) => "DigestFailed",
            PassError::Tlog(_) => "IntegrationFailed",
        }
    }
}

impl From<PassError> for lambda_runtime::Diagnostic {
    fn from(e: PassError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What a pass did (the Lambda's answer, and the timer's log line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// The integrated tree size after the pass.
    pub tree_size: u64,
    /// Period digests signed.
    pub periods: u64,
    /// Backfill digests signed.
    pub backfills: u64,
    /// Objects listed in them.
    pub objects: u64,
    /// Objects not listed yet (their events are not all sequenced).
    pub deferred: u64,
}

/// One pass at `now`: integrate, then digest. Integration runs first so each digest names a
/// checkpoint that covers every event sequenced before it.
pub async fn run_pass(
    integrator: &Integrator,
    digester: &Digester,
    now: OffsetDateTime,
) -> Result<PassReport, PassError> {
    let state = integrator.integrate().await?;
    let RunReport {
        periods,
        backfills,
        objects,
        deferred,
    } = digester.run(now).await?;
    Ok(PassReport {
        tree_size: state.size,
        periods,
        backfills,
        objects,
        deferred,
    })
}

/// How often the timer runs: a quarter of the period, at most a minute, at least a second. A
/// period's digest is due `grace` after it ends; a tick every minute makes it at most a minute
/// late.
pub fn tick_interval(period: Duration) -> Duration {
    (period / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The embedded mode's timer: a pass on every tick until the task is aborted (a digest is one
/// create-only put, so stopping between two leaves nothing half-written).
pub fn spawn_timer(integrator: Arc<Integrator>, digester: Arc<Digester>) -> tokio::task::JoinHandle<()> {
    let every = tick_interval(digester.settings().period);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match run_pass(&integrator, &digester, OffsetDateTime::now_utc()).await {
                Ok(r) if r.periods + r.backfills > 0 => tracing::info!(
                    tree_size = r.tree_size,
                    periods = r.periods,
                    backfills = r.backfills,
                    objects = r.objects,
                    deferred = r.deferred,
                    "digest pass"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "digest pass failed; the next tick retries"),
            }
        }
    })
}

/// The properties of `Custom::LogVerifierKey`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogKeyProperties {
    /// The KMS key (id, ARN or alias).
    #[serde(default)]
    pub key_id: Option<String>,
    /// The log's origin (the key's name).
    #[serde(default)]
    pub origin: Option<String>,
}

/// Whether a Lambda event is a CloudFormation custom resource request (it has a
/// `RequestType`); the schedule's events do not.
pub fn is_custom_resource(event: &serde_json::Value) -> bool {
    event.get("RequestType").and_then(serde_json::Value::as_str).is_some()
}

/// A `Custom::LogVerifierKey` request.
#[cfg(feature = "aws")]
pub type LogKeyEvent = tollgate_aws::custom_resource::CustomResourceEvent<LogKeyProperties>;

/// The custom resource's outcome: on Create and Update, `Data.VerifierKey` is the log's
/// verifier key in the note `vkey` format, read from this function's own signer (the KMS key of
/// `TOLLGATE_LOG_KMS_KEY_ID`), which must be the resource's `KeyId` and be named its `Origin`:
/// the output is the key the writer and this function really sign with, never a key someone
/// typed into the template. Delete has nothing to undo. The physical id is the verifier key, so
/// a new key or origin replaces the resource and the output changes with it.
#[cfg(feature = "aws")]
pub fn log_key_outcome(
    event: &LogKeyEvent,
    signer_key_id: Option<&str>,
    signer: Option<&dyn tollgate_tlog::NoteSigner>,
) -> tollgate_aws::custom_resource::CustomResourceResponse {
    let mut data = serde_json::Map::new();
    let props = &event.resource_properties;
    let result: Result<(String, String), String> = match event.request_type.as_str() {
        "Create" | "Update" => (|| {
            let (Some(key), Some(origin)) = (props.key_id.as_deref(), props.origin.as_deref()) else {
                return Err("KeyId and Origin are required".to_string());
            };
            let signer = signer.ok_or("this function has no log signing key (TOLLGATE_LOG_KMS_KEY_ID)")?;
            if signer_key_id != Some(key) {
                return Err(format!(
                    "KeyId {key} is not the key this function signs with ({})",
                    signer_key_id.unwrap_or("none")
                ));
            }
            if signer.name() != origin {
                return Err(format!("Origin {origin} is not the signer's name {}", signer.name()));
            }
            let vkey = signer
                .vkey()
                .ok_or("the signer does not know its public key")?
                .to_string();
            data.insert("VerifierKey".into(), serde_json::Value::String(vkey.clone()));
            Ok((vkey.clone(), format!("verifier key {vkey}")))
        })(),
        "Delete" => Ok((
            event.physical_resource_id.clone().unwrap_or_default(),
            "nothing to delete".into(),
        )),
        other => Err(format!("unknown RequestType {other}")),
    };
    let fallback = || event.physical_id_or("log-verifier-key");
    let (physical, result) = match result {
        Ok((p, r)) if !p.is_empty() => (p, Ok(r)),
        Ok((_, r)) => (fallback(), Ok(r)),
        Err(r) => (fallback(), Err(r)),
    };
    event.response(result, physical, data)
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;

    fn event(kind: &str, key: &str, origin: &str) -> LogKeyEvent {
        serde_json::from_value(serde_json::json!({
            "RequestType": kind,
            "ResponseURL": "http://127.0.0.1:1/response",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
            "RequestId": "r-1",
            "LogicalResourceId": "LogVerifierKey",
            "PhysicalResourceId": "old",
            "ResourceProperties": {"KeyId": key, "Origin": origin}
        }))
        .unwrap()
    }

    #[test]
    fn the_output_is_the_key_the_function_signs_with() {
        let signer = tollgate_tlog::Ed25519Signer::generate("tollgate.test/log").unwrap();
        let vkey = signer.verifier_key().to_string();
        let ok = log_key_outcome(&event("Create", "k1", "tollgate.test/log"), Some("k1"), Some(&signer));
        assert_eq!(ok.status, "SUCCESS", "{}", ok.reason);
        assert_eq!(ok.data["VerifierKey"], serde_json::Value::String(vkey.clone()));
        assert_eq!(ok.physical_resource_id, vkey);
        for (e, why) in [
            (event("Update", "k2", "tollgate.test/log"), "is not the key"),
            (event("Create", "k1", "tollgate.test/other"), "is not the signer's name"),
            (event("Wipe", "k1", "tollgate.test/log"), "unknown RequestType"),
        ] {
            let r = log_key_outcome(&e, Some("k1"), Some(&signer));
            assert_eq!(r.status, "FAILED");
            assert!(r.reason.contains(why), "{}", r.reason);
            assert_eq!(r.physical_resource_id, "old");
            assert!(r.data.is_empty());
        }
        let none = log_key_outcome(&event("Create", "k1", "tollgate.test/log"), None, None);
        assert_eq!(none.status, "FAILED");
        let gone = log_key_outcome(&event("Delete", "k1", "tollgate.test/log"), None, None);
        assert_eq!(
            (gone.status.as_str(), gone.physical_resource_id.as_str()),
            ("SUCCESS", "old")
        );
    }
}
