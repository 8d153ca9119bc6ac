//! The fault soak in aws mode: the `tollgate` binary with the AWS SDK adapters against the local
//! stack, a fixed count of mixed requests from concurrent clients, while faults are injected
//! in turn: the Data API answering 503, throttling, slow answers (a fault-injecting proxy,
//! `tollgate_testkit::faults`, in front of dataapi-local), S3 answering 503 `SlowDown` to the
//! audit writer (the stack's S3 proxy), the Lambda endpoint down and back,
//! clients leaving while their function runs, and SIGKILL of the ingress with a restart on the
//! same port. The functions run on write-ahead routes (`record = "before"`), the routes whose
//! promise holds across SIGKILL. Once the faults stop and the scheduled reconciler has run:
//! every executed request (echo's own log) has a row, every answered request has a row with
//! the status its client saw, every row has exactly one audit event in S3, no intent is left.
//!
//!     cargo test -p tollgate-ingress --test aws_faults -- --nocapture       # 2,000 requests
//!     TOLLGATE_AWS_SOAK_REQUESTS=20000 cargo test -p tollgate-ingress --test aws_faults -- --nocapture
//!
//! Not injected here: a Data API outage overlapping the kill (records kept in memory during an
//! outage die with the process: refused requests only, since an executed write-ahead request
//! already has its intent).

mod common;

use common::aws::AwsStack;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_testkit::faults::{Action, FaultProxy};

const WORKERS: usize = 16;

/// What a client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Status(u16),
    /// Left on purpose before the answer.
    Left,
    /// The connection ended without an answer (the ingress was killed).
    Cut,
}

async fn one(addr: SocketAddr, i: usize) -> (String, Seen) {
    let id = format!("fs-{i:06}");
    let (method, path, leave) = match i % 10 {
        0..=5 => ("POST", format!("/v1/wa/s/{i}"), None),
        6 => ("GET", "/nope".to_string(), None),
        7 => ("DELETE", "/v1/requests".to_string(), None),
        8 => ("POST", format!("/v1/wa/bad/{i}?delay_ms=abc"), None),
        _ => (
            "POST",
            format!("/v1/wa/slow/{i}?delay_ms=40"),
            Some(Duration::from_millis(10)),
        ),
    };
    let body = format!("payload {i}");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // While the ingress restarts, a client waits for it (connections are refused meanwhile).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return (id, Seen::Cut),
        }
    };
    if s.write_all(req.as_bytes()).await.is_err() {
        return (id, Seen::Cut);
    }
    if let Some(d) = leave {
        tokio::time::sleep(d).await;
        return (id, Seen::Left);
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    (id, status.map_or(Seen::Cut, Seen::Status))
}

fn spawn_ingress(root: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    Proc::spawn(root, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_mode_keeps_every_execution_on_record_through_faults_and_a_kill() {
    let total: usize = std::env::var("TOLLGATE_AWS_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let started = Instant::now();
    let mut stack = AwsStack::start().await;
    let root = workspace_root();
    stack.migrate(&root);
    let proxy = FaultProxy::start(&stack.dataapi);
    let dir = TempDir::new("aws-faults");
    let routes = dir.0.join("routes.toml");
    std::fs::write(&routes, test_routes()).unwrap();
    let port = tollgate_testkit::free_port();
    let (listen, routes_path, dataapi) = (
        format!("127.0.0.1:{port}"),
        routes.display().to_string(),
        proxy.endpoint(),
    );
    let stack_env = stack.env.clone();
    let mut env: Vec<(&str, &str)> = stack_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_TRUSTED_PROXIES", "0"),
        ("TOLLGATE_RECONCILE_INTERVAL_MS", "0"),
        ("TOLLGATE_AUDIT_BATCH_MAX_AGE_MS", "200"),
        ("TOLLGATE_COMMIT_RETRY_MS", "1000"),
        ("TOLLGATE_ROUTES", routes_path.as_str()),
        ("TOLLGATE_INTENT_GRACE_MS", "1200000"),
        // The ingress reaches the Data API through the fault proxy.
        ("AWS_ENDPOINT_URL_RDS_DATA", dataapi.as_str()),
    ]);
    let mut proc = spawn_ingress(&root, &env);
    let addr = proc.addr;

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // The load lasts at least `total` requests and until every fault phase has run under it,
    // however fast this machine serves them.
    let phases_done = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<BTreeMap<String, Seen>>> = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (next, done, seen, phases_done) = (next.clone(), done.clone(), seen.clone(), phases_done.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total && phases_done.load(Ordering::Relaxed) {
                        break;
                    }
                    let (id, s) = one(addr, i).await;
                    seen.lock().unwrap().insert(id, s);
                }
                done.store(true, Ordering::Relaxed);
            })
        })
        .collect();

    // The faults, in turn, while the load runs (each phase then a healthy pause).
    let mut kills = 0;
    let mut phases = Vec::new();
    let mut round = 0usize;
    while round < 6 || next.load(Ordering::Relaxed) < total {
        // The kill first (the load is sure to outlast one), then the others.
        let phase = (round + 5) % 6;
        round += 1;
        match phase {
            0 => {
                proxy.set(Action::aws_rest_json_error(503, "ServiceUnavailableError", "injected"));
                tokio::time::sleep(Duration::from_millis(300)).await;
                proxy.clear();
                phases.push("data-api-503");
            }
            1 => {
                proxy.set(Action::aws_rest_json_error(400, "ThrottlingException", "Rate exceeded"));
                tokio::time::sleep(Duration::from_millis(300)).await;
                proxy.clear();
                phases.push("data-api-throttled");
            }
            2 => {
                proxy.set(Action::Delay(Duration::from_millis(250)));
                tokio::time::sleep(Duration::from_millis(600)).await;
                proxy.clear();
                phases.push("data-api-slow");
            }
            4 => {
                // The audit writer's puts fail: its batches are left to the reconciler.
                stack
                    .s3_faults
                    .set(Action::s3_error(503, "SlowDown", "Please reduce your request rate."));
                tokio::time::sleep(Duration::from_millis(500)).await;
                stack.s3_faults.clear();
                phases.push("s3-slow-down");
            }
            3 => {
                tokio::task::block_in_place(|| stack.lambda.down());
                tokio::time::sleep(Duration::from_millis(500)).await;
                tokio::task::block_in_place(|| stack.lambda.up());
                phases.push("lambda-down");
            }
            _ => {
                // Only with the log healthy for a while (see the module docs).
                tokio::time::sleep(Duration::from_millis(1500)).await;
                tokio::task::block_in_place(|| {
                    proc.child.kill().unwrap();
                    proc.child.wait().unwrap();
                });
                kills += 1;
                proc = tokio::task::block_in_place(|| spawn_ingress(&root, &env));
                assert_eq!(proc.addr, addr, "restarted on the same port");
                phases.push("sigkill-restart");
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        if round >= 6 {
            phases_done.store(true, Ordering::Relaxed);
        }
    }
    phases_done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed));
    proxy.clear();
    let load_time = started.elapsed();

    // Faults over: the scheduled reconciler (intents past 2 s, rows past 3 s) catches up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let caught_up = stack.reconcile_until_caught_up(Duration::from_secs(120)).await;
    assert!(caught_up, "rows left unaudited: {}", stack.rows().1);

    let seen = seen.lock().unwrap().clone();
    let rows = stack.rows_by_id();
    let executed = stack.echo_invocations();
    let ours = |id: &String| id.starts_with("fs-");
    let executed_ids: BTreeSet<&String> = executed.keys().filter(|id| ours(id)).collect();
    let audits = stack.audit_counts().await;

    let without_row: Vec<&&String> = executed_ids.iter().filter(|id| !rows.contains_key(**id)).collect();
    assert!(without_row.is_empty(), "executed without a row: {without_row:?}");
    let twice: Vec<(&String, &usize)> = executed.iter().filter(|(id, n)| ours(id) && **n > 1).collect();
    assert!(twice.is_empty(), "executed twice: {twice:?}");
    let mut by_seen: BTreeMap<String, usize> = BTreeMap::new();
    for (id, s) in &seen {
        let key = match s {
            Seen::Status(c) => c.to_string(),
            Seen::Left => "left".into(),
            Seen::Cut => "cut".into(),
        };
        *by_seen.entry(key).or_default() += 1;
        match s {
            Seen::Status(status) => {
                let row = rows
                    .get(id)
                    .unwrap_or_else(|| panic!("answered {id} ({status}) has no row"));
                assert_eq!(row.0, *status, "{id}: the row's status is not what its client saw");
            }
            Seen::Left => {
                // Gone before the answer (499), lost with a killed ingress (0), or answered
                // before its client left 10 ms in, which only a quick refusal can be (503, or
                // 502 function_unavailable while the Lambda endpoint is down).
                if let Some(row) = rows.get(id) {
                    let quick = row.0 == 503 || (row.0 == 502 && row.1 == "function_unavailable");
                    assert!(row.0 == 499 || row.0 == 0 || quick, "{id}: {row:?}");
                }
            }
            Seen::Cut => {}
        }
    }
    assert!(rows.values().all(|r| !r.2), "intents left");
    let row_ids: BTreeSet<&String> = rows.keys().collect();
    let audited: BTreeSet<&String> = audits.keys().collect();
    assert_eq!(audited, row_ids, "rows and audit events differ");
    assert!(audits.values().all(|&n| n == 1), "an audit event written twice");
    let unknown = rows.values().filter(|r| r.1 == "outcome_unknown").count();
    let sent = seen.len();
    eprintln!(
        "aws fault soak: {sent} sent (at least {total}) in {:.1} s (total {:.1} s), seen {by_seen:?}; {} executed, {} rows ({unknown} outcome_unknown), {} audit events; {kills} SIGKILLs; phases {phases:?}; Data API proxy {:?}; S3 proxy {:?}",
        load_time.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        executed_ids.len(),
        rows.len(),
        audits.len(),
        proxy.counts(),
        stack.s3_faults.counts()
    );
    assert!(stack.s3_faults.counts().faulted > 0, "no S3 put met the SlowDown");
    assert!(kills >= 1, "the load ended before a kill: raise the request count");
    drop(proc);
}
