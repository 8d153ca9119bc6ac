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
async fn integration_after_a_marking_costs_one_call_a_round() {
    use std::sync::Arc;
    use tollgate_core::translog::{Integrator, MAX_LEAVES_PER_ROUND};
    let pg = Postgres::start();
    let (log, endpoint) = log_and_endpoint(&pg).await;
    log.migrate().await.unwrap();
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    let id = |i: usize| format!("round-{i:05}");
    let rows: Vec<_> = (0..10_000)
        .map(|i| tollgate_testkit::contract::sample_record(&id(i), batch))
        .collect();
    log.insert_batch(&rows).await.unwrap();
    let object =
        |r: std::ops::Range<usize>| -> Vec<_> { r.map(|i| tollgate_testkit::contract::audited(&id(i), 2)).collect() };
    let dir = std::env::temp_dir().join(format!("tollgate-rounds-{}", uuid::Uuid::new_v4().simple()));
    let store = Arc::new(tollgate_embedded::dirstore::DirObjectStore::open(&dir).unwrap());
    let signer = Arc::new(tollgate_tlog::Ed25519Signer::from_seed("tollgate.test/rounds", &[4; 32]).unwrap());
    let log = Arc::new(log);
    let integrator = Integrator::new(log.clone(), store.clone(), signer.clone());

    // A writer's batch: the marking answers the read (one call, as marking alone), and the
    // round is the compare-and-set alone.
    let before = calls(&endpoint).await;
    let m = log
        .mark_audited_pending("obj-0", &object(0..250), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    assert_eq!(
        (m.marked, calls(&endpoint).await - before),
        (250, 1),
        "marking with the read: one call"
    );
    let before = calls(&endpoint).await;
    assert_eq!(integrator.integrate_from(m.pending.unwrap()).await.unwrap().size, 250);
    assert_eq!(
        calls(&endpoint).await - before,
        1,
        "a round after a marking: the compare-and-set"
    );

    // Two batches of this process marked before either integrates: the later answer's round
    // takes both, and the earlier one, already covered, costs nothing.
    let a = log
        .mark_audited_pending("obj-1", &object(250..500), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    let b = log
        .mark_audited_pending("obj-2", &object(500..750), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    let before = calls(&endpoint).await;
    assert_eq!(integrator.integrate_from(b.pending.unwrap()).await.unwrap().size, 750);
    assert_eq!(integrator.integrate_from(a.pending.unwrap()).await.unwrap().size, 750);
    assert_eq!(calls(&endpoint).await - before, 1, "one round for two batches");
    // Two batches integrated in marking order: the second goes on from the first's tree.
    let a = log
        .mark_audited_pending("obj-3", &object(750..800), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    let b = log
        .mark_audited_pending("obj-4", &object(800..900), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    let before = calls(&endpoint).await;
    assert_eq!(integrator.integrate_from(a.pending.unwrap()).await.unwrap().size, 800);
    assert_eq!(integrator.integrate_from(b.pending.unwrap()).await.unwrap().size, 900);
    assert_eq!(calls(&endpoint).await - before, 2, "a compare-and-set each, no read");

    // Another process integrated first: the compare-and-set loses, and one read finds it done.
    let m = log
        .mark_audited_pending("obj-5", &object(900..1000), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    let other = Integrator::new(log.clone(), store.clone(), signer.clone());
    assert_eq!(other.integrate().await.unwrap().size, 1000);
    let before = calls(&endpoint).await;
    assert_eq!(integrator.integrate_from(m.pending.unwrap()).await.unwrap().size, 1000);
    assert_eq!(
        calls(&endpoint).await - before,
        2,
        "the lost compare-and-set, then a read"
    );

    // More pending than a marking answers (8,192 leaves, for the 1 MiB response limit): the
    // integrator reads the rest itself.
    let before = calls(&endpoint).await;
    let m = log
        .mark_audited_pending("obj-6", &object(1000..10_000), MAX_LEAVES_PER_ROUND)
        .await
        .unwrap();
    assert_eq!((m.marked, calls(&endpoint).await - before), (9000, 1));
    let (state, leaves) = m.pending.unwrap();
    assert_eq!((state.size, state.next_index, leaves.len()), (1000, 10_000, 8192));
    let before = calls(&endpoint).await;
    let after = integrator.integrate_from((state, leaves)).await.unwrap();
    assert_eq!(after.size, 10_000);
    assert_eq!(
        calls(&endpoint).await - before,
        3,
        "a round from the answer, then a read and a round"
    );
    // The tree is the one a plain integration over the same leaves builds.
    let leaves = tollgate_core::TlogStore::tlog_leaves(&*log, 0, 10_000).await.unwrap();
    let mut tree = tollgate_tlog::merkle::MemoryTree::new();
    for l in &leaves {
        tree.append_hash(*l);
    }
    assert_eq!(after.root_hash, Some(tree.root(10_000).unwrap()));
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
    tollgate_testkit::contract::tlog_mark_pending(std::sync::Arc::new(log.clone())).await;
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
