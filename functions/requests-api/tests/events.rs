//! Every `events/requests-api-*.json` is handled in-process over an embedded request log.

use std::path::PathBuf;
use std::sync::Arc;
use tollgate_core::http_fn::{call_http, event_files};
use tollgate_core::ports::RequestLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_requests_api_event_is_answered() {
    let dir = std::env::temp_dir().join(format!("tollgate-reqapi-events-{}", std::process::id()));
    let log = Arc::new(tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).unwrap());
    let store = Arc::new(tollgate_embedded::dirstore::DirObjectStore::open(dir.join("objects")).unwrap());
    // The request the get event asks for.
    let id = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    let mut row = tollgate_testkit::contract::sample_record(id, id);
    row.record.method = "POST".into();
    row.record.client_ip = Some("203.0.113.7".into());
    row.client_chosen_id = true;
    log.insert_batch(&[row]).await.unwrap();
    let api = tollgate_requests_api::RequestsApi::new(log, store);
    let handler = |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    };
    let files = event_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events"),
        "requests-api-",
    );
    assert_eq!(files.len(), 3);
    for (name, payload) in files {
        let out = call_http(&handler, &payload).await.unwrap();
        let resp: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let body: serde_json::Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        match name.as_str() {
            "requests-api-list.json" => {
                assert_eq!(resp["statusCode"], 200, "{body}");
                assert_eq!(body["requests"].as_array().unwrap().len(), 1, "{body}");
            }
            "requests-api-get.json" => {
                assert_eq!(resp["statusCode"], 200, "{body}");
                assert_eq!(body["audit"]["state"], "pending");
            }
            "requests-api-bad-parameter.json" => {
                assert_eq!(resp["statusCode"], 400);
                assert_eq!(resp["headers"]["content-type"], "application/problem+json");
                tollgate_testkit::assert_problem(
                    &body,
                    400,
                    "invalid_parameter",
                    "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a72",
                );
                assert!(body["detail"].as_str().unwrap().contains("limit"));
            }
            other => panic!("no expectation for {other}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
