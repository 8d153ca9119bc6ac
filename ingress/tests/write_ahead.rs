//! Write-ahead routes (`record = "before"`): the intent is durable before the function runs, the
//! answer's record replaces it, a failing request log refuses the request before its function,
//! and an ingress killed (SIGKILL) while functions run leaves a row for every invocation, which
//! the reconciler finalizes as `outcome_unknown` with its audit event.

mod common;

use common::aws::AwsStack;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_core::ports::{BoxFuture, InvokeError, RequestLog};

/// A row as a function saw it: (intent, status, error code).
type RowSeen = Option<(bool, u16, Option<String>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intent_is_durable_before_the_function_runs_and_the_answer_replaces_it() {
    // What the request log held for the request at the moment echo ran.
    let seen_by_function: Arc<Mutex<Vec<RowSeen>>> = Arc::default();
    let log_cell: Arc<Mutex<Option<Arc<dyn RequestLog>>>> = Arc::default();
    let mut ing = InProcess::start(&[], |functions| {
        let inner = functions["echo"].clone();
        let (seen, cell) = (seen_by_function.clone(), log_cell.clone());
        functions.insert(
            "echo".into(),
            Arc::new(
                move |payload: bytes::Bytes| -> BoxFuture<'static, Result<bytes::Bytes, InvokeError>> {
                    let (inner, seen, cell) = (inner.clone(), seen.clone(), cell.clone());
                    Box::pin(async move {
                        let event: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                        let id = event["multiValueHeaders"]["x-request-id"][0]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        let log = cell.lock().unwrap().clone().expect("log set before requests");
                        let row = log.get(&id).await.expect("read the log");
                        seen.lock()
                            .unwrap()
                            .push(row.map(|r| (r.intent, r.record.status, r.record.error_code)));
                        inner.call(payload).await
                    })
                },
            ),
        );
    })
    .await;
    *log_cell.lock().unwrap() = Some(ing.backends.log.clone());

    let r = request(ing.addr, "POST", "/v1/wa/orders", &[("x-request-id", "wa-1")], "hello").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["body"], "hello");
    assert_eq!(
        *seen_by_function.lock().unwrap(),
        vec![Some((true, 0, Some("outcome_unknown".to_string())))],
        "the intent was durable when the function ran"
    );
    let row = ing.backends.log.get("wa-1").await.unwrap().expect("row");
    assert!(!row.intent, "the answer replaced the intent");
    assert_eq!(row.record.status, 200);
    assert_eq!(row.record.error_code, None);
    let event: serde_json::Value = serde_json::from_str(row.audit_payload.as_deref().unwrap()).unwrap();
    assert_eq!(event["response"]["status"], 200);
    assert_eq!(event["invoked"], true);
    assert_eq!(
        event["event_id"], row.record.event_id,
        "the intent's event id is the record's"
    );

    // An ordinary route writes once: no intent ever.
    let r = request(ing.addr, "POST", "/v1/echo/x", &[("x-request-id", "after-1")], "x").await;
    assert_eq!(r.status, 200);
    assert_eq!(seen_by_function.lock().unwrap().len(), 2);
    assert_eq!(
        seen_by_function.lock().unwrap()[1],
        None,
        "no row before the function ran"
    );

    ing.stop().await;
    assert_exactly_once(&ing.dir.0, &["wa-1".to_string(), "after-1".to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_ahead_request_is_refused_before_its_function_when_the_intent_cannot_be_written() {
    let dir = TempDir::new("wa-flaky");
    let f = Faulty::start(&dir.0, &[("TOLLGATE_COMMIT_RETRY_MS", "200")]).await;
    let addr = f.running.local_addr;
    f.flaky.down.store(true, Ordering::SeqCst);
    let r = request(addr, "POST", "/v1/wa/x", &[("x-request-id", "wa-refused")], "x").await;
    r.assert_error(503, "recording_unavailable");
    assert!(
        f.executed.lock().unwrap().is_empty(),
        "the function must not run without its intent"
    );
    f.flaky.down.store(false, Ordering::SeqCst);
    // The refusal itself was kept and is written once the log is back.
    let recorded = eventually(Duration::from_secs(10), || async {
        f.flaky.inner.get("wa-refused").await.ok().flatten().is_some()
    })
    .await;
    assert!(recorded, "the refused request has no row");
    let row = f.flaky.inner.get("wa-refused").await.unwrap().unwrap();
    assert_eq!(row.record.status, 503);
    assert!(!row.intent);
    let event: serde_json::Value =
        serde_json::from_str(row.audit_payload.as_deref().unwrap_or("{}")).unwrap_or_default();
    assert!(row.audit_key.is_some() || event["invoked"] == false, "{event}");
    let r = request(addr, "POST", "/v1/wa/y", &[("x-request-id", "wa-ok")], "y").await;
    assert_eq!(r.status, 200);
    assert_eq!(*f.executed.lock().unwrap(), vec!["wa-ok".to_string()]);
    f.running.shutdown();
    f.running.wait().await;
}

/// Sends `n` write-ahead requests at once (echo waits `delay_ms`); returns what each client saw
/// (`None`: the connection ended without an answer).
async fn burst(addr: std::net::SocketAddr, tag: &str, n: usize, delay_ms: u64) -> BTreeMap<String, Option<u16>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("{tag}-{i:03}");
            tokio::spawn(async move {
                let req = format!(
                    "POST /v1/wa/{i}?delay_ms={delay_ms} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nx-request-id: {id}\r\ncontent-length: 2\r\n\r\nhi"
                );
                let text = raw(addr, req.as_bytes(), Duration::from_secs(60)).await;
                let status = text
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|t| t.get(..3))
                    .and_then(|c| c.parse().ok());
                (id, status)
            })
        })
        .collect();
    let mut out = BTreeMap::new();
    for t in tasks {
        let (id, status) = t.await.unwrap();
        out.insert(id, status);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_killed_while_functions_run_leaves_a_row_for_every_invocation() {
    let stack = AwsStack::start().await;
    let root = workspace_root();
    stack.migrate(&root);
    let dir = TempDir::new("wa-kill");
    let routes = dir.0.join("routes.toml");
    std::fs::write(&routes, test_routes()).unwrap();
    let mut env = stack.env_refs();
    let routes_path = routes.display().to_string();
    env.extend([
        ("TOLLGATE_TRUSTED_PROXIES", "0"),
        ("TOLLGATE_RECONCILE_INTERVAL_MS", "0"),
        ("TOLLGATE_AUDIT_BATCH_MAX_AGE_MS", "200"),
        ("TOLLGATE_ROUTES", routes_path.as_str()),
        // The ingress checks its write-ahead routes against the real grace (later wins).
        ("TOLLGATE_INTENT_GRACE_MS", "1200000"),
    ]);

    // Round 1: 12 requests at once; echo (one invocation at a time in the emulator) takes
    // 400 ms each; the ingress is killed 1.5 s in, with some answered, one running, the rest
    // waiting for the function.
    let mut proc = Proc::spawn(&root, &env);
    let addr = proc.addr;
    let sent = tokio::spawn(async move { burst(addr, "kill1", 12, 400).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    let mut seen = sent.await.unwrap();
    // Whatever the emulator still had queued runs now; then the ingress restarts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let proc = Proc::spawn(&root, &env);
    let after = burst(proc.addr, "after", 4, 0).await;
    assert!(after.values().all(|s| *s == Some(200)), "restarted ingress: {after:?}");
    seen.extend(after);

    let answered: Vec<&String> = seen.iter().filter(|(_, s)| s.is_some()).map(|(id, _)| id).collect();
    let cut: Vec<&String> = seen.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| id).collect();
    assert!(!cut.is_empty(), "the kill cut no request off: {seen:?}");
    let before = stack.rows_by_id();
    let intents = before.values().filter(|r| r.2).count();
    assert!(intents > 0, "no intent left behind by the kill: {before:?}");

    // The scheduled reconciler, once the intents are past their grace (2 s in the stack's
    // environment), finalizes them and sends their audit events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let caught_up = stack.reconcile_until_caught_up(Duration::from_secs(60)).await;
    assert!(caught_up, "rows left unaudited: {}", stack.rows().1);

    let rows = stack.rows_by_id();
    let invoked = stack.echo_invocations();
    let ours = |id: &&String| id.starts_with("kill1-") || id.starts_with("after-");
    let invoked_ids: BTreeSet<&String> = invoked.keys().filter(ours).collect();
    let without_row: Vec<&&String> = invoked_ids.iter().filter(|id| !rows.contains_key(**id)).collect();
    assert!(without_row.is_empty(), "invocations without a row: {without_row:?}");
    let twice: Vec<(&String, &usize)> = invoked.iter().filter(|(id, n)| ours(id) && **n > 1).collect();
    assert!(twice.is_empty(), "a request invoked twice: {twice:?}");
    for id in &answered {
        assert!(rows.contains_key(*id), "answered {id} has no row");
    }
    for id in &cut {
        let (status, code, intent) = rows.get(*id).unwrap_or_else(|| panic!("cut-off {id} has no row"));
        assert!(!intent, "{id} still an intent");
        assert_eq!((*status, code.as_str()), (0, "outcome_unknown"), "{id}");
    }
    assert!(rows.values().all(|r| !r.2), "intents left: {rows:?}");
    let audits = stack.audit_counts().await;
    let row_ids: BTreeSet<&String> = rows.keys().collect();
    let audited: BTreeSet<&String> = audits.keys().collect();
    assert_eq!(audited, row_ids, "rows and audit events differ");
    assert!(
        audits.values().all(|&n| n == 1),
        "an audit event written twice: {audits:?}"
    );
    eprintln!(
        "write-ahead across SIGKILL: {} sent, {} answered, {} cut off, {} invoked, {} rows ({} finalized as outcome_unknown), {} audit events",
        seen.len(),
        answered.len(),
        cut.len(),
        invoked_ids.len(),
        rows.len(),
        rows.values().filter(|r| r.1 == "outcome_unknown").count(),
        audits.len()
    );
    drop(proc);
}
