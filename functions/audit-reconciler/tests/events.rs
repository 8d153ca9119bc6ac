//! Every `events/audit-reconciler-*.json` (the EventBridge schedule's event) starts a pass
//! in-process over embedded storage: unaudited rows from two batches (one of them half
//! written already) end up audited, every event in exactly one object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tollgate_audit_reconciler::{run_pass, ScheduledEvent};
use tollgate_core::audit;
use tollgate_core::http_fn::{event_files, json_function};
use tollgate_core::local::{LocalFunction, LocalInvoker};
use tollgate_core::model::{NewRecord, ReconcileReport};
use tollgate_core::ports::{InvokeError, ObjectStore, RequestLog};
use tollgate_core::reconcile::ReconcileSettings;
use tollgate_embedded::dirstore::DirObjectStore;
use tollgate_embedded::sqlite::SqliteRequestLog;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings() -> ReconcileSettings {
    ReconcileSettings {
        audit_function: "audit-writer".into(),
        grace: Duration::ZERO,
        scan_limit: 1000,
        max_batch_bytes: 900_000,
        max_batch_events: 1000,
        set_aside_after: 3,
        intent_grace: Duration::from_secs(60),
    }
}

fn row(request_id: &str, batch: &str) -> NewRecord {
    tollgate_testkit::contract::sample_record(request_id, batch)
}

fn reconciler(
    log: Arc<SqliteRequestLog>,
    functions: HashMap<String, Arc<dyn LocalFunction>>,
) -> Arc<dyn LocalFunction> {
    let invoker = Arc::new(LocalInvoker::new(functions));
    json_function(move |event: ScheduledEvent| {
        let (log, invoker) = (log.clone(), invoker.clone());
        async move { run_pass(&*log, &*invoker, &settings(), event).await }
    })
}

fn events() -> Vec<(String, Vec<u8>)> {
    let files = event_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events"),
        "audit-reconciler-",
    );
    assert!(!files.is_empty());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schedule_event_redrives_what_is_unaudited_exactly_once() {
    let dir = TempDir(std::env::temp_dir().join(format!("tollgate-reconciler-{}", uuid::Uuid::new_v4().simple())));
    let log = Arc::new(SqliteRequestLog::open(dir.0.join("r.db")).unwrap());
    let store = Arc::new(DirObjectStore::open(dir.0.join("objects")).unwrap());
    let (a, b) = (audit::new_batch_id(), audit::new_batch_id());
    let rows: Vec<NewRecord> = (0..6)
        .map(|i| row(&format!("r{i}"), if i < 4 { &a } else { &b }))
        .collect();
    log.insert_batch(&rows).await.unwrap();
    let writer = tollgate_audit_writer::local_function(log.clone(), store.clone());
    // Batch `a`'s first two events were written before the asynchronous invoke was lost.
    let first_two: Vec<&str> = rows[..2].iter().map(|r| r.audit_payload.as_str()).collect();
    writer.call(audit::batch_payload(&a, &first_two)).await.unwrap();

    let function = reconciler(log.clone(), HashMap::from([("audit-writer".to_string(), writer)]));
    for (name, payload) in events() {
        let out = function.call(bytes::Bytes::from(payload.clone())).await.unwrap();
        let report: ReconcileReport = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            report,
            ReconcileReport {
                pending: 4,
                batches: 2,
                ..Default::default()
            },
            "{name}"
        );
        // The next pass finds nothing left.
        let out = function.call(bytes::Bytes::from(payload)).await.unwrap();
        let report: ReconcileReport = serde_json::from_slice(&out).unwrap();
        assert_eq!(report, ReconcileReport::default(), "{name}");
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for key in store.list("audit/v1/").await.unwrap() {
        for line in audit::decode(&store.get(&key).await.unwrap().unwrap()).unwrap() {
            *seen.entry(audit::event_request_id(&line).unwrap()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    for r in &rows {
        let stored = log.get(&r.record.request_id).await.unwrap().unwrap();
        assert!(stored.audit_key.is_some(), "{} not audited", r.record.request_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_fails_is_a_function_error_and_the_rows_stay_pending() {
    let dir = TempDir(std::env::temp_dir().join(format!("tollgate-reconciler-{}", uuid::Uuid::new_v4().simple())));
    let log = Arc::new(SqliteRequestLog::open(dir.0.join("r.db")).unwrap());
    let batch = audit::new_batch_id();
    log.insert_batch(&[row("r0", &batch), row("r1", &batch)]).await.unwrap();
    // No audit writer deployed under that name: every re-drive fails.
    let function = reconciler(log.clone(), HashMap::new());
    let (_, payload) = events().remove(0);
    match function.call(bytes::Bytes::from(payload)).await {
        Err(InvokeError::Function { error_type, message }) => {
            assert_eq!(error_type, "RedriveFailed");
            assert!(message.contains("1 of 1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let pending = log.pending_audits(tollgate_core::clock::now(), 5, 10).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|p| p.redrive_attempts == 1), "{pending:?}");
}

/// An audit writer that refuses every batch holding the event of request `poison`.
fn writer_refusing_poison(log: Arc<SqliteRequestLog>, store: Arc<DirObjectStore>) -> Arc<dyn LocalFunction> {
    let writer = tollgate_audit_writer::local_function(log, store);
    Arc::new(move |payload: bytes::Bytes| {
        let writer = writer.clone();
        let poisoned = String::from_utf8_lossy(&payload).contains("\"request_id\":\"poison\"");
        Box::pin(async move {
            if poisoned {
                return Err(InvokeError::Function {
                    error_type: "InvalidBatch".into(),
                    message: "poison".into(),
                });
            }
            writer.call(payload).await
        }) as tollgate_core::ports::BoxFuture<'static, _>
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_keeps_failing_cannot_starve_newer_ones_and_is_set_aside() {
    let dir = TempDir(std::env::temp_dir().join(format!("tollgate-reconciler-{}", uuid::Uuid::new_v4().simple())));
    let log = Arc::new(SqliteRequestLog::open(dir.0.join("r.db")).unwrap());
    let store = Arc::new(DirObjectStore::open(dir.0.join("objects")).unwrap());
    let batch = audit::new_batch_id();
    // The poison row is the oldest, so it heads every scan of the old order.
    let mut rows = vec![row("poison", &batch)];
    rows.extend((0..20).map(|i| row(&format!("good-{i:02}"), &batch)));
    log.insert_batch(&rows).await.unwrap();
    let invoker = LocalInvoker::new(HashMap::from([(
        "audit-writer".to_string(),
        writer_refusing_poison(log.clone(), store.clone()),
    )]));
    let settings = ReconcileSettings {
        scan_limit: 5,
        ..settings()
    };
    let mut last = ReconcileReport::default();
    for _ in 0..12 {
        last = tollgate_core::reconcile::reconcile_once(&*log, &invoker, &settings)
            .await
            .unwrap();
    }
    for r in &rows[1..] {
        let stored = log.get(&r.record.request_id).await.unwrap().unwrap();
        assert!(stored.audit_key.is_some(), "{} starved", r.record.request_id);
    }
    assert!(log.get("poison").await.unwrap().unwrap().audit_key.is_none());
    assert_eq!(last.set_aside, 1, "{last:?}");
    assert_eq!(last.pending, 0, "a set-aside row is no longer tried: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_left_by_a_dead_ingress_is_finalized_and_audited_as_outcome_unknown() {
    let dir = TempDir(std::env::temp_dir().join(format!("tollgate-reconciler-{}", uuid::Uuid::new_v4().simple())));
    let log = Arc::new(SqliteRequestLog::open(dir.0.join("r.db")).unwrap());
    let store = Arc::new(DirObjectStore::open(dir.0.join("objects")).unwrap());
    let batch = audit::new_batch_id();
    let mut old = row("crashed", &batch);
    old.intent = true;
    old.record.status = 0;
    old.record.error_code = Some(tollgate_core::apierror::OUTCOME_UNKNOWN.into());
    old.record.received_at = tollgate_core::clock::now() - Duration::from_secs(120);
    let mut young = row("running", &batch);
    young.intent = true;
    log.insert_batch(&[old, young]).await.unwrap();
    let writer = tollgate_audit_writer::local_function(log.clone(), store.clone());
    let invoker = LocalInvoker::new(HashMap::from([("audit-writer".to_string(), writer)]));
    let report = tollgate_core::reconcile::reconcile_once(&*log, &invoker, &settings())
        .await
        .unwrap();
    assert_eq!(report.intents_finalized, 1, "{report:?}");
    assert_eq!(report.pending, 1, "only the finalized intent goes out: {report:?}");
    let crashed = log.get("crashed").await.unwrap().unwrap();
    assert!(!crashed.intent && crashed.audit_key.is_some(), "{crashed:?}");
    let running = log.get("running").await.unwrap().unwrap();
    assert!(
        running.intent && running.audit_key.is_none(),
        "a young intent waits for its answer"
    );
}
