//! Every `events/audit-digest-*.json` is handled in-process over embedded storage: the
//! schedule's event runs a pass (the log integrated, the closed periods digested), and the
//! custom resource's answer names the verifier key of the key the function signs with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tollgate_audit_digest::{is_custom_resource, log_key_outcome, run_pass, LogKeyEvent};
use tollgate_core::digest::{DigestSettings, Digester};
use tollgate_core::http_fn::event_files;
use tollgate_core::ports::ObjectStore;
use tollgate_core::translog::Integrator;
use tollgate_embedded::dirstore::DirObjectStore;
use tollgate_embedded::sqlite::SqliteRequestLog;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_digest_event_is_handled() {
    let files = event_files(&events_dir(), "audit-digest-");
    assert!(files.len() >= 2, "{files:?}");
    let dir = std::env::temp_dir().join(format!("tollgate-digest-events-{}", uuid::Uuid::new_v4().simple()));
    let log = Arc::new(SqliteRequestLog::open(dir.join("r.db")).unwrap());
    let store = Arc::new(DirObjectStore::open(dir.join("objects")).unwrap());
    for (name, payload) in files {
        let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if is_custom_resource(&event) {
            let request: LogKeyEvent = serde_json::from_value(event).unwrap();
            let key = request.resource_properties.key_id.clone().unwrap();
            let origin = request.resource_properties.origin.clone().unwrap();
            let signer = tollgate_tlog::Ed25519Signer::generate(&origin).unwrap();
            let response = log_key_outcome(&request, Some(&key), Some(&signer));
            assert_eq!(response.status, "SUCCESS", "{name}: {}", response.reason);
            assert_eq!(
                response.data["VerifierKey"],
                serde_json::Value::String(signer.verifier_key().to_string()),
                "{name}"
            );
        } else {
            let signer = Arc::new(tollgate_tlog::Ed25519Signer::generate("tollgate.test/events").unwrap());
            let integrator = Integrator::new(log.clone(), store.clone(), signer.clone());
            let digester = Digester::new(
                log.clone(),
                store.clone(),
                store.clone(),
                signer,
                DigestSettings {
                    period: Duration::from_secs(3600),
                    grace: Duration::from_secs(120),
                    lookback: 48,
                },
            );
            let time = event["time"].as_str().unwrap();
            let now = OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
            let report = run_pass(&integrator, &digester, now).await.unwrap();
            assert_eq!(
                (report.periods, report.tree_size),
                (1, 0),
                "{name}: an empty log digests its last closed hour"
            );
            assert_eq!(store.list("digest/v1/").await.unwrap().len(), 1, "{name}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
