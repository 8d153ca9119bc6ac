//! Every `events/db-migrate-*.json` (CloudFormation's Create, Update and Delete) is handled
//! in-process, with its `ResponseURL` pointed at a local HTTP server that receives the PUT.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tollgate_core::http_fn::event_files;
use tollgate_db_migrate::{CustomResourceEvent, HttpsResponder};

type Received = Arc<Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;

async fn response_server() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/response", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let method = req.method().to_string();
                        let ct = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.lock()
                            .unwrap()
                            .push((method, ct, serde_json::from_slice(&body).unwrap()));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_custom_resource_event_is_answered_on_its_response_url() {
    let dir = std::env::temp_dir().join(format!("tollgate-dbmigrate-{}", std::process::id()));
    let log = tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).unwrap();
    let (url, received) = response_server().await;
    let responder = HttpsResponder::new().unwrap();
    let files = event_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events"),
        "db-migrate-",
    );
    assert_eq!(files.len(), 3);
    for (name, payload) in &files {
        let mut event: CustomResourceEvent = serde_json::from_slice(payload).unwrap();
        event.response_url = url.clone();
        let out = tollgate_db_migrate::handle(event, &log, &responder).await.unwrap();
        assert_eq!(out.status, "SUCCESS", "{name}: {out:?}");
        assert_eq!(out.physical_resource_id, "tollgate-request-log-schema");
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for (method, content_type, body) in got {
        assert_eq!(method, "PUT");
        assert_eq!(content_type, None, "pre-signed URLs are signed without a content type");
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["LogicalResourceId"], "DatabaseSchema");
        assert!(body["StackId"].as_str().unwrap().starts_with("arn:aws:cloudformation:"));
    }
    // An unknown request type fails the resource instead of hanging the stack.
    let mut bad: CustomResourceEvent = serde_json::from_slice(&files[0].1).unwrap();
    bad.request_type = "Explode".into();
    bad.response_url = url;
    let out = tollgate_db_migrate::handle(bad, &log, &responder).await.unwrap();
    assert_eq!(out.status, "FAILED");
    let _ = std::fs::remove_dir_all(dir);
}
