//! A group commit is all or nothing on the Data API. A commit over the request size limit goes
//! as several `ExecuteStatement` chunks inside one transaction (BeginTransaction, Execute per
//! chunk, CommitTransaction); the fault proxy fails one call of that sequence, in the Data
//! API's REST-JSON error shape, between the real SDK client and dataapi-local over a private
//! PostgreSQL. No row of the failed commit may persist, and the same rows retried go in
//! exactly once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_aws::dataapi::DataApiRequestLog;
use tollgate_core::model::{InsertOutcome, NewRecord};
use tollgate_core::ports::{LogError, RequestLog};
use tollgate_testkit::faults::{Action, FaultProxy, RequestInfo};
use tollgate_testkit::Postgres;

/// The request log over dataapi-local (transactions expire after `tx_idle`) behind a fault
/// proxy, migrated.
async fn stack(tx_idle: Duration) -> (Postgres, FaultProxy, DataApiRequestLog) {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE tollgate");
    let endpoint = dataapi_local::server::spawn_local(pg.port, tx_idle)
        .await
        .expect("dataapi-local");
    let proxy = FaultProxy::start(&endpoint);
    let log = common::data_api_log(&proxy.endpoint());
    log.migrate().await.expect("migrations through the proxy");
    (pg, proxy, log)
}

/// 1,200 rows with 4 KiB payloads: ~5 MiB of parameters, over the 4 MiB request limit, so
/// several chunks in one transaction.
fn big_commit() -> Vec<NewRecord> {
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    (0..1200)
        .map(|i| NewRecord {
            audit_payload: format!("{{\"request_id\":\"big-{i:05}\",\"pad\":\"{}\"}}", "p".repeat(4096)),
            ..tollgate_testkit::contract::sample_record(&format!("big-{i:05}"), batch)
        })
        .collect()
}

/// `(rows, distinct request ids, rows outside the commit's ids)` in api_requests.
fn stored(pg: &Postgres) -> String {
    pg.psql(
        "tollgate",
        "SELECT count(*), count(DISTINCT request_id), count(*) FILTER (WHERE request_id NOT LIKE 'big-%') FROM api_requests",
    )
    .trim()
    .to_string()
}

/// Sessions holding a transaction open (idle in transaction), in database tollgate.
fn open_transactions(pg: &Postgres) -> String {
    pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'tollgate' AND state LIKE 'idle in transaction%'",
    )
    .trim()
    .to_string()
}

/// One call as the proxy saw it: the operation's path, whether it named a transaction, and
/// whether the proxy failed it.
type Calls = Arc<Mutex<Vec<(String, bool, bool)>>>;

fn record(calls: &Calls, r: &RequestInfo, failed: bool) {
    calls
        .lock()
        .unwrap()
        .push((r.path.clone(), r.body_contains("\"transactionId\""), failed));
}

fn paths(calls: &Calls) -> Vec<String> {
    calls.lock().unwrap().iter().map(|c| c.0.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_chunk_rolls_the_whole_group_commit_back() {
    let (pg, proxy, log) = stack(Duration::from_secs(180)).await;
    let rows = big_commit();
    let calls: Calls = Arc::default();
    let (seen, in_tx) = (calls.clone(), Arc::new(AtomicUsize::new(0)));
    proxy.set_rule(move |r| {
        let second =
            r.path == "/Execute" && r.body_contains("\"transactionId\"") && in_tx.fetch_add(1, Ordering::SeqCst) == 1;
        record(&seen, r, second);
        if second {
            Action::aws_rest_json_error(503, "ServiceUnavailableError", "The service is unavailable")
        } else {
            Action::Pass
        }
    });
    let err = log.insert_batch(&rows).await.expect_err("the second chunk failed");
    assert!(matches!(err, LogError::Unavailable(_)), "{err:?}");
    let seq = paths(&calls);
    println!("calls of the failed commit: {seq:?}");
    assert_eq!(
        seq,
        ["/BeginTransaction", "/Execute", "/Execute", "/RollbackTransaction"],
        "begun, first chunk in, second failed, rolled back; no commit"
    );
    assert!(
        calls.lock().unwrap()[1..3].iter().all(|c| c.1),
        "both chunks inside the transaction"
    );
    assert_eq!(stored(&pg), "0|0|0", "no row of the failed commit persists");
    assert_eq!(open_transactions(&pg), "0", "the rollback ended the transaction");

    proxy.clear();
    let started = Instant::now();
    let out = log.insert_batch(&rows).await.expect("the same commit once cleared");
    println!("retried commit: {:?}", started.elapsed());
    assert_eq!(out.len(), 1200);
    assert!(
        out.iter().all(|o| *o == InsertOutcome::Inserted),
        "every row inserted now"
    );
    assert_eq!(stored(&pg), "1200|1200|0", "all 1,200 rows, each exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_call_leaves_no_row() {
    // Transactions abandoned by a client expire after 2 s here (3 minutes on AWS).
    let tx_idle = Duration::from_secs(2);
    let (pg, proxy, log) = stack(tx_idle).await;
    let rows = big_commit();
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    // Answered by the proxy, not forwarded: the commit never happens.
    proxy.set_rule(move |r| {
        let commit = r.path == "/CommitTransaction";
        record(&seen, r, commit);
        if commit {
            Action::aws_rest_json_error(500, "InternalServerErrorException", "An internal error occurred")
        } else {
            Action::Pass
        }
    });
    let err = log.insert_batch(&rows).await.expect_err("the commit failed");
    assert!(matches!(err, LogError::Unavailable(_)), "{err:?}");
    let seq = paths(&calls);
    println!("calls of the failed commit: {seq:?}");
    assert_eq!(seq.first().map(String::as_str), Some("/BeginTransaction"));
    assert!(seq.iter().any(|p| p == "/CommitTransaction"));
    assert_eq!(stored(&pg), "0|0|0", "no row of the uncommitted transaction is visible");
    // The adapter rolls back after a failed commit: nothing is left holding the rows' locks
    // (without that, the retry below blocked until the abandoned transaction expired).
    assert_eq!(
        open_transactions(&pg),
        "0",
        "a transaction is left open after the failed commit"
    );
    assert_eq!(seq.last().map(String::as_str), Some("/RollbackTransaction"), "{seq:?}");

    // The recorder's retry, as it would run it: again while the log is unavailable.
    proxy.clear();
    let started = Instant::now();
    let out = loop {
        match log.insert_batch(&rows).await {
            Ok(out) => break out,
            Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(15) => {
                println!("retry after {:?}: {e}", started.elapsed());
            }
            Err(e) => panic!("the retried commit: {e:?}"),
        }
    };
    println!(
        "retried commit went in after {:?} (abandoned transactions expire after {tx_idle:?})",
        started.elapsed()
    );
    assert_eq!(out.len(), 1200);
    assert!(
        out.iter().all(|o| *o == InsertOutcome::Inserted),
        "every row inserted now"
    );
    assert_eq!(stored(&pg), "1200|1200|0", "all 1,200 rows, each exactly once");
    assert_eq!(open_transactions(&pg), "0");
}
