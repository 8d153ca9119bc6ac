//! How the adapters classify what AWS answers when it fails: the real SDK clients, built as
//! the product builds them (one attempt per call, `tollgate_aws::sdk`), talk to the real
//! stand-ins (dataapi-local over a private PostgreSQL; moto for S3) through the fault proxy,
//! which answers in the services' own error shapes. A transient failure must be
//! `Unavailable` (the caller retries), a refusal `Failed`, and neither may write anything.
//!
//! Not covered here: a Data API answer slower than the attempt timeout. The product's client
//! (`sdk::rds_data_from`) fixes that timeout at `RDS_DATA_ATTEMPT_TIMEOUT` (10 s), too long
//! for this suite, and a client with a shorter one would not be the product's.

mod common;

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tollgate_aws::dataapi::DataApiRequestLog;
use tollgate_aws::s3::{S3ObjectStore, S3Settings};
use tollgate_core::model::{InsertOutcome, NewRecord};
use tollgate_core::ports::{LogError, ObjectStore, PutOutcome, RequestLog, StoreError};
use tollgate_testkit::faults::{Action, Counts, FaultProxy};
use tollgate_testkit::{Postgres, S3Server};

/// The request log over dataapi-local behind a fault proxy, migrated.
struct DataApiStack {
    pg: Postgres,
    proxy: FaultProxy,
    log: DataApiRequestLog,
}

async fn data_api_stack() -> DataApiStack {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE tollgate");
    let endpoint = dataapi_local::server::spawn_local(pg.port, Duration::from_secs(180))
        .await
        .expect("dataapi-local");
    let proxy = FaultProxy::start(&endpoint);
    let log = common::data_api_log(&proxy.endpoint());
    log.migrate().await.expect("migrations through the proxy");
    DataApiStack { pg, proxy, log }
}

impl DataApiStack {
    fn rows(&self) -> u64 {
        self.pg
            .psql("tollgate", "SELECT count(*) FROM api_requests")
            .trim()
            .parse()
            .unwrap()
    }

    /// Counts since `before`.
    fn since(&self, before: Counts) -> Counts {
        let now = self.proxy.counts();
        Counts {
            seen: now.seen - before.seen,
            forwarded: now.forwarded - before.forwarded,
            faulted: now.faulted - before.faulted,
        }
    }

    /// Under `fault`, a one-row group commit fails with what `check` accepts, makes one
    /// attempt and writes nothing; cleared, the same rows go in.
    async fn commit_fails_then_succeeds(&self, fault: Action, id: &str, check: impl Fn(&LogError) -> bool) {
        let rows = vec![tollgate_testkit::contract::sample_record(id, BATCH)];
        let before_rows = self.rows();
        let before = self.proxy.counts();
        self.proxy.set(fault.clone());
        let err = self.log.insert_batch(&rows).await.expect_err("the fault is an error");
        assert!(check(&err), "{fault:?} gave {err:?}");
        assert_eq!(
            self.since(before),
            Counts {
                seen: 1,
                forwarded: 0,
                faulted: 1
            },
            "one attempt: the commit's retries belong to the recorder"
        );
        assert_eq!(self.rows(), before_rows, "nothing written under {fault:?}");
        self.proxy.clear();
        let out = self
            .log
            .insert_batch(&rows)
            .await
            .expect("the same commit once cleared");
        assert_eq!(out, vec![InsertOutcome::Inserted]);
        assert_eq!(self.rows(), before_rows + 1);
    }
}

const BATCH: &str = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";

fn unavailable(code: &'static str) -> impl Fn(&LogError) -> bool {
    move |e| matches!(e, LogError::Unavailable(m) if m.contains(code)) && e.is_transient()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_cluster_or_a_server_error_is_transient_and_writes_nothing() {
    let s = data_api_stack().await;
    // Aurora Serverless v2 waking from auto-pause. Classified by its code, whatever the status.
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(
            400,
            "DatabaseResumingException",
            "The Aurora DB instance db-1 is resuming after being auto-paused. Please wait a few seconds and try again.",
        ),
        "resuming",
        unavailable("DatabaseResumingException"),
    )
    .await;
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(503, "ServiceUnavailableError", "The service is unavailable"),
        "unavailable",
        unavailable("ServiceUnavailableError"),
    )
    .await;
    // A 5xx the adapter does not know by name is transient by its status.
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(502, "BadGatewayFromSomewhere", "upstream broke"),
        "bad-gateway",
        unavailable("BadGatewayFromSomewhere"),
    )
    .await;

    // Calls outside the group commit ride the same answers out under the Data API policy.
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    s.proxy.set_rule(move |r| {
        if r.path == "/Execute" && f.fetch_add(1, Ordering::SeqCst) < 2 {
            Action::aws_rest_json_error(400, "DatabaseResumingException", "resuming")
        } else {
            Action::Pass
        }
    });
    let before = s.proxy.counts();
    let got = s.log.get("resuming").await.expect("retried past two resuming answers");
    assert_eq!(got.map(|r| r.record.request_id).as_deref(), Some("resuming"));
    assert_eq!(
        s.since(before),
        Counts {
            seen: 3,
            forwarded: 1,
            faulted: 2
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_transient() {
    let s = data_api_stack().await;
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(429, "ThrottlingException", "Rate exceeded"),
        "throttled",
        unavailable("ThrottlingException"),
    )
    .await;
    // AWS's Common Errors give ThrottlingException HTTP 400: transient by its code alone.
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(400, "ThrottlingException", "Rate exceeded"),
        "throttled-400",
        unavailable("ThrottlingException"),
    )
    .await;
    // A 429 under a code the adapter does not know is transient by its status.
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(429, "SlowDownPlease", "Too many requests"),
        "throttled-unnamed",
        unavailable("SlowDownPlease"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_is_a_failure_and_is_not_retried() {
    let s = data_api_stack().await;
    s.commit_fails_then_succeeds(
        Action::aws_rest_json_error(400, "BadRequestException", "Request size exceeded the 4 MiB limit"),
        "bad-request",
        |e| matches!(e, LogError::Failed(m) if m.contains("BadRequestException")) && !e.is_transient(),
    )
    .await;
    // Nor do the retrying calls retry it: one attempt, then the failure.
    s.proxy
        .set(Action::aws_rest_json_error(400, "BadRequestException", "no"));
    let before = s.proxy.counts();
    let err = s.log.get("bad-request").await.expect_err("refused");
    assert!(matches!(err, LogError::Failed(_)), "{err:?}");
    assert_eq!(s.since(before).faulted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_or_a_down_endpoint_is_transient() {
    let s = data_api_stack().await;
    s.commit_fails_then_succeeds(Action::Reset, "reset", |e| matches!(e, LogError::Unavailable(_)))
        .await;
    // The endpoint refuses connections: the SDK never gets a request out.
    let rows: Vec<NewRecord> = vec![tollgate_testkit::contract::sample_record("refused", BATCH)];
    s.proxy.set(Action::Refuse);
    let err = s.log.insert_batch(&rows).await.expect_err("endpoint down");
    assert!(matches!(err, LogError::Unavailable(_)), "{err:?}");
    s.proxy.clear();
    assert_eq!(s.log.insert_batch(&rows).await.unwrap(), vec![InsertOutcome::Inserted]);
    assert_eq!(s.rows(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slow_down_is_unavailable_and_the_put_succeeds_once_cleared() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(&server.endpoint);
    // ingress/tests/common/aws.rs's S3 client settings, through the product's constructor
    // (path-style, one attempt per call).
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("local", "local", None, None, "test"),
        ))
        .endpoint_url(proxy.endpoint())
        .build();
    let client = tollgate_aws::sdk::s3(&sdk, true);
    client
        .create_bucket()
        .bucket("audit")
        .send()
        .await
        .expect("bucket through the proxy");
    let store = S3ObjectStore::new(
        client,
        S3Settings {
            bucket: "audit".into(),
            kms_key_id: None,
        },
    );
    let key = "audit/v1/2026/01/01/00/batch.ndjson.gz";
    let body = Bytes::from_static(b"{\"request_id\":\"a\"}\n");

    proxy.set(Action::s3_error(503, "SlowDown", "Please reduce your request rate."));
    let before = proxy.counts();
    let err = store.put_if_absent(key, body.clone()).await.expect_err("slowed down");
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("SlowDown")),
        "{err:?}"
    );
    assert_eq!(proxy.counts().faulted - before.faulted, 1, "one attempt");
    assert_eq!(proxy.counts().forwarded, before.forwarded, "nothing reached S3");
    // A 500 InternalError is transient too.
    proxy.set(Action::s3_error(
        500,
        "InternalError",
        "We encountered an internal error.",
    ));
    let err = store
        .put_if_absent(key, body.clone())
        .await
        .expect_err("internal error");
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("InternalError")),
        "{err:?}"
    );
    // An access denial is not.
    proxy.set(Action::s3_error(403, "AccessDenied", "Access Denied"));
    let err = store.put_if_absent(key, body.clone()).await.expect_err("denied");
    assert!(
        matches!(&err, StoreError::Failed(m) if m.contains("AccessDenied")),
        "{err:?}"
    );

    proxy.clear();
    assert!(
        store.list("audit/").await.unwrap().is_empty(),
        "no failed put left an object"
    );
    assert_eq!(
        store.put_if_absent(key, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(store.get(key).await.unwrap(), Some(body.clone()));
    assert_eq!(store.put_if_absent(key, body).await.unwrap(), PutOutcome::AlreadyExists);
}
