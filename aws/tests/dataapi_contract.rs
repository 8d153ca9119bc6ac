//! The `RequestLog` contract against the Data API adapter: aws-sdk-rdsdata over HTTP to
//! `dataapi-local`, over a private PostgreSQL started by the test.

use aws_sdk_rdsdata::config::{BehaviorVersion, Credentials, Region};
use std::time::Duration;
use tollgate_aws::dataapi::{DataApiRequestLog, DataApiSettings};
use tollgate_core::ports::RequestLog;
use tollgate_testkit::Postgres;

async fn log_over_dataapi(pg: &Postgres) -> DataApiRequestLog {
    log_and_endpoint(pg).await.0
}

async fn log_and_endpoint(pg: &Postgres) -> (DataApiRequestLog, String) {
    pg.psql("postgres", "CREATE DATABASE tollgate");
    let endpoint = dataapi_local::server::spawn_local(pg.port, Duration::from_secs(180))
        .await
        .unwrap();
    let conf = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&endpoint)
        .build();
    let log = DataApiRequestLog::new(
        aws_sdk_rdsdata::Client::from_conf(conf),
        DataApiSettings {
            cluster_arn: "arn:aws:rds:us-east-1:123456789012:cluster:tollgate".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate".into(),
            database: "tollgate".into(),
        },
    );
    (log, endpoint)
}

/// Data API calls served so far by dataapi-local (its stats endpoint), all operations.
async fn calls(endpoint: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /_dataapi-local/stats HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    let stats: serde_json::Value = serde_json::from_str(body).unwrap();
    stats.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequencing_adds_no_data_api_call_to_marking() {
    let pg = Postgres::start();
    let (log, endpoint) = log_and_endpoint(&pg).await;
    log.migrate().await.unwrap();
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    let rows: Vec<_> = (0..1000)
        .map(|i| tollgate_testkit::contract::sample_record(&format!("calls-{i:04}"), batch))
        .collect();
    log.insert_batch(&rows).await.unwrap();
    // 1,000 requests written as 4 objects of 250 events: one marking call per object, as before
    // the log existed (issue 15's target: <= 2 extra calls per 1,000 requests; this is 0).
    let before = calls(&endpoint).await;
    for o in 0..4 {
        let events: Vec<_> = (o * 250..(o + 1) * 250)
            .map(|i| tollgate_testkit::contract::audited(&format!("calls-{i:04}"), 1))
            .collect();
        assert_eq!(log.mark_audited(&format!("obj-{o}"), &events).await.unwrap(), 250);
    }
    let marking_calls = calls(&endpoint).await - before;
    assert_eq!(marking_calls, 4, "one call per object, sequencing included");
    let state = tollgate_core::ports::TlogStore::tlog_state(&log).await.unwrap();
    assert_eq!(state.next_index, 1000);
    let indexed = pg.psql(
        "tollgate",
        "SELECT count(DISTINCT log_index) FROM api_requests WHERE log_index BETWEEN 0 AND 999",
    );
    assert_eq!(indexed.trim(), "1000");

    // Integrating them costs two calls: the state with the pending leaves in one statement, and
    // the compare-and-set; with nothing pending, one.
    let dir = std::env::temp_dir().join(format!("tollgate-calls-{}", uuid::Uuid::new_v4().simple()));
    let store = std::sync::Arc::new(tollgate_embedded::dirstore::DirObjectStore::open(&dir).unwrap());
    let signer = std::sync::Arc::new(tollgate_tlog::Ed25519Signer::from_seed("tollgate.test/calls", &[3; 32]).unwrap());
    let integrator = tollgate_core::translog::Integrator::new(std::sync::Arc::new(log.clone()), store, signer);
    let before = calls(&endpoint).await;
    assert_eq!(integrator.integrate().await.unwrap().size, 1000);
    assert_eq!(
        calls(&endpoint).await - before,
        2,
        "an integration round: one read, one compare-and-set"
    );
    let before = calls(&endpoint).await;
    assert_eq!(integrator.integrate().await.unwrap().size, 1000);
    assert_eq!(calls(&endpoint).await - before, 1, "nothing pending: one read");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_api_request_log_meets_the_contract() {
    let pg = Postgres::start();
    let log = log_over_dataapi(&pg).await;
    assert_eq!(log.migrate().await.unwrap(), all_migrations());
    assert!(log.migrate().await.unwrap().is_empty(), "migrations apply once");
    tollgate_testkit::contract::request_log(&log).await;
    tollgate_testkit::contract::key_store(&log).await;
    tollgate_testkit::contract::tlog_sequencer(std::sync::Arc::new(log.clone())).await;
    tollgate_testkit::contract::tlog_rows(&log).await;
    assert_eq!(
        pg.psql(
            "tollgate",
            "SELECT count(*) FROM schema_migrations WHERE checksum IS NOT NULL"
        )
        .trim(),
        all_migrations().len().to_string()
    );
    // A migration whose text changed after it was applied is refused, by name.
    pg.psql(
        "tollgate",
        "UPDATE schema_migrations SET checksum = '0000' WHERE version = '0001_api_requests'",
    );
    let err = log.migrate().await.unwrap_err().to_string();
    assert!(err.contains("0001_api_requests") && err.contains("edited"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_group_commits_are_split_and_pending_scans_paged() {
    let pg = Postgres::start();
    let log = log_over_dataapi(&pg).await;
    log.migrate().await.unwrap();
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    // 1,200 rows with 4 KiB payloads: ~5 MiB of parameters, over the 4 MiB request limit.
    let rows: Vec<_> = (0..1200)
        .map(|i| tollgate_core::model::NewRecord {
            audit_payload: format!("{{\"request_id\":\"big-{i:05}\",\"pad\":\"{}\"}}", "p".repeat(4096)),
            ..tollgate_testkit::contract::sample_record(&format!("big-{i:05}"), batch)
        })
        .collect();
    let out = log.insert_batch(&rows).await.unwrap();
    assert_eq!(out.len(), 1200);
    let pending = log.pending_audits(tollgate_core::clock::now(), 5, 5000).await.unwrap();
    assert_eq!(pending.len(), 1200, "paged past the 1 MiB response limit");
    assert!(pending.iter().all(|p| p.audit_payload.len() > 4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ride_out_an_auto_paused_cluster_resuming() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE tollgate");
    // Aurora Serverless v2 with minimum capacity 0: the first calls meet
    // DatabaseResumingException until the cluster is back (here: 1.5 s).
    let api = dataapi_local::service::DataApi::new(dataapi_local::service::Config {
        host: "127.0.0.1".into(),
        port: pg.port,
        user: "postgres".into(),
        default_database: "postgres".into(),
        tx_idle_timeout: Duration::from_secs(180),
        resume_delay: Duration::from_millis(1500),
    });
    let addr = dataapi_local::server::spawn(([127, 0, 0, 1], 0).into(), api.clone())
        .await
        .unwrap();
    let conf = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let log = DataApiRequestLog::new(
        aws_sdk_rdsdata::Client::from_conf(conf),
        DataApiSettings {
            cluster_arn: "arn:aws:rds:us-east-1:123456789012:cluster:tollgate".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate".into(),
            database: "tollgate".into(),
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(log.migrate().await.unwrap(), all_migrations());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it cannot have succeeded before the resume"
    );
    let begins = api.counters.begin.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        begins > 1,
        "the resuming answers were retried ({begins} BeginTransaction calls)"
    );
}

/// Every PostgreSQL migration's version, in order: what a fresh database gets.
fn all_migrations() -> Vec<String> {
    tollgate_core::sql::POSTGRES_MIGRATIONS
        .iter()
        .map(|(v, _)| v.to_string())
        .collect()
}
