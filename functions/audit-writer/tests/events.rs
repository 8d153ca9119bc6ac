//! Every `events/audit-writer-*.json` is handled in-process over embedded storage.

use std::path::PathBuf;
use std::sync::Arc;
use tollgate_core::http_fn::event_files;
use tollgate_core::model::AuditWriteReport;
use tollgate_core::ports::InvokeError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_writer_event_is_handled() {
    let dir = std::env::temp_dir().join(format!("tollgate-writer-events-{}", std::process::id()));
    let log = Arc::new(tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).unwrap());
    let store = Arc::new(tollgate_embedded::dirstore::DirObjectStore::open(dir.join("objects")).unwrap());
    let function = tollgate_audit_writer::local_function(log, store);
    let files = event_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events"),
        "audit-writer-",
    );
    assert_eq!(files.len(), 2);
    for (name, payload) in files {
        let out = function.call(bytes::Bytes::from(payload)).await;
        match name.as_str() {
            "audit-writer-batch.json" => {
                let report: AuditWriteReport = serde_json::from_slice(&out.unwrap()).unwrap();
                assert_eq!(report.objects.len(), 1);
                assert_eq!(report.objects[0].events, 2);
                assert!(report.objects[0].key.starts_with("audit/v1/2024/10/"), "{report:?}");
            }
            "audit-writer-invalid-batch.json" => match out {
                Err(InvokeError::Function { error_type, .. }) => assert_eq!(error_type, "InvalidBatch"),
                other => panic!("{other:?}"),
            },
            other => panic!("no expectation for {other}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
