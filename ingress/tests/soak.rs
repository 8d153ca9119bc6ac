//! The fault soak (embedded mode, in-process): a fixed count of mixed good and bad requests
//! from concurrent clients while faults are injected, then the books are balanced.
//!
//! Load: echo (some slow), unknown routes, wrong methods, bodies over the limit, function
//! errors, invalid statuses and garbage answers, heads hyper refuses, clients leaving mid-body and while
//! their function runs. Faults: the request log failing for 300 ms every 2 s. Counted: sent,
//! answered (by status), executed (echo's invocations by request id), rows, audit events.
//! Invariants: every executed request and every answered one has exactly one row and one
//! audit event; an audit event says `invoked` exactly for the requests whose function ran;
//! nothing is stored twice; every row's status is the one its client saw.
//!
//!     cargo test -p tollgate-ingress --test soak                  # 20,000 requests (test command)
//!     TOLLGATE_SOAK_REQUESTS=1000000 cargo test --release -p tollgate-ingress --test soak -- --nocapture

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_core::ports::ObjectStore;

const WORKERS: usize = 32;

/// What a client saw: a status, or nothing (it left, or was refused at the connection level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Status(u16),
    Left,
    Malformed(u16),
}

/// One request over a fresh connection, written raw so that a client can leave at any point.
/// Returns the status line's code, if one arrived.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8], leave_after: Option<Duration>) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(bytes).await.ok()?;
    if let Some(d) = leave_after {
        tokio::time::sleep(d).await;
        return None;
    }
    let mut out = Vec::with_capacity(1024);
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no answer within 30 s");
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
}

fn req(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    id: &str,
    body: &[u8],
    declared: Option<usize>,
) -> Vec<u8> {
    let len = declared.unwrap_or(body.len());
    let mut v = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nx-request-id: {id}\r\ncontent-length: {len}\r\n\r\n"
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Sends request `i` of the mix; returns its id and what the client saw.
async fn one(addr: std::net::SocketAddr, i: usize) -> (String, Seen) {
    let id = format!("soak-{i}");
    let small = format!("payload {i}");
    let (bytes, leave) = match i % 20 {
        0..=7 => (
            req(addr, "POST", &format!("/v1/echo/s/{i}"), &id, small.as_bytes(), None),
            None,
        ),
        8 => (
            req(
                addr,
                "GET",
                &format!("/v1/echo/slow?delay_ms={}", i % 40),
                &id,
                b"",
                None,
            ),
            None,
        ),
        9 => (req(addr, "GET", "/v1/requests?limit=1", &id, b"", None), None),
        10 => (req(addr, "GET", "/nope", &id, b"", None), None),
        11 => (req(addr, "DELETE", "/v1/requests", &id, b"", None), None),
        12 => (req(addr, "POST", "/v1/echo/big", &id, b"", Some(1 << 20)), None),
        13 => (req(addr, "GET", "/v1/fault/error", &id, b"", None), None),
        14 => (req(addr, "GET", "/v1/fault/garbage", &id, b"", None), None),
        15 => (
            format!("GET /v1/echo HTTP/1.1\r\nhost: {addr}\r\nno colon here\r\n\r\n").into_bytes(),
            None,
        ),
        16 => {
            let mut v = req(addr, "POST", "/v1/echo/m", &id, b"half", Some(100));
            v.truncate(v.len() - 2);
            (v, Some(Duration::from_millis(2)))
        }
        17 => (
            req(addr, "GET", "/v1/echo/d?delay_ms=40", &id, b"", None),
            Some(Duration::from_millis(5)),
        ),
        18 => (req(addr, "GET", "/v1/fault/badstatus", &id, b"", None), None),
        _ => (
            req(
                addr,
                "PUT",
                &format!("/v1/echo/p?x={i}"),
                &id,
                &[0xff, 0, (i % 256) as u8],
                None,
            ),
            None,
        ),
    };
    let got = exchange(addr, &bytes, leave).await;
    let seen = match (i % 20, got) {
        (15, Some(code)) => Seen::Malformed(code),
        (_, Some(code)) => Seen::Status(code),
        (_, None) => Seen::Left,
    };
    (id, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_soak_balances_its_books() {
    let total: usize = std::env::var("TOLLGATE_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = TempDir::new("soak");
    let ing = Faulty::start(
        &dir.0,
        &[
            ("TOLLGATE_COMMIT_RETRY_MS", "200"),
            ("TOLLGATE_MAX_BODY_BYTES", "65536"),
            ("TOLLGATE_RECONCILE_INTERVAL_MS", "1000"),
            ("TOLLGATE_RECONCILE_GRACE_MS", "3000"),
            ("TOLLGATE_MAX_IN_FLIGHT", "4096"),
        ],
    )
    .await;
    let (running, flaky, executed) = (ing.running, ing.flaky, ing.executed);
    let addr = running.local_addr;

    // The fault: the request log down for 300 ms every 2 s while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let outages = tokio::spawn({
        let (flaky, stop) = (flaky.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1700)).await;
                flaky.down.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                flaky.down.store(false, Ordering::SeqCst);
                n += 1;
            }
            n
        }
    });

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return out;
                }
                out.push(one(addr, i).await);
            }
        }));
    }
    let mut results: Vec<(String, Seen)> = Vec::with_capacity(total);
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let load_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let outage_count = outages.await.unwrap();
    flaky.down.store(false, Ordering::SeqCst);

    let malformed = results.iter().filter(|(_, s)| matches!(s, Seen::Malformed(_))).count();
    let expected_rows = total; // every request reaches a row: by its id, or as a connection-level one
    let data = dir.0.clone();
    let settled = eventually(Duration::from_secs(60), || {
        let data = data.clone();
        async move {
            let rows = rows_by_id(&data);
            rows.len() == expected_rows && rows.values().all(|r| r.1.is_some())
        }
    })
    .await;
    running.shutdown();
    running.wait().await;

    let rows = rows_by_id(&dir.0);
    let store = dir_store(&dir.0);
    let mut events: HashMap<String, usize> = HashMap::new();
    let mut invoked: HashSet<String> = HashSet::new();
    for key in store.list("audit/v1/").await.unwrap() {
        for line in tollgate_core::audit::decode(&store.get(&key).await.unwrap().unwrap()).unwrap() {
            let e: serde_json::Value = serde_json::from_str(&line).unwrap();
            let id = e["request_id"].as_str().unwrap().to_string();
            if e["invoked"] == true && e["function_name"] == "echo" {
                invoked.insert(id.clone());
            }
            *events.entry(id).or_insert(0) += 1;
        }
    }
    let executed = executed.lock().unwrap().clone();
    let executed_set: HashSet<String> = executed.iter().cloned().collect();
    let mut by_seen: BTreeMap<Seen, usize> = BTreeMap::new();
    for (_, s) in &results {
        *by_seen.entry(*s).or_insert(0) += 1;
    }
    let answered = results.iter().filter(|(_, s)| matches!(s, Seen::Status(_))).count();
    let executed_without_row = executed_set.iter().filter(|id| !rows.contains_key(*id)).count();
    let answered_without_row = results
        .iter()
        .filter(|(id, s)| matches!(s, Seen::Status(_)) && !rows.contains_key(id))
        .count();
    let status_mismatch = results
        .iter()
        .filter(|(id, s)| matches!(s, Seen::Status(code) if rows.get(id).is_some_and(|r| r.0 != *code)))
        .count();
    let rows_without_one_event = rows.keys().filter(|id| events.get(*id) != Some(&1)).count();
    let connection_level = rows.keys().filter(|id| !id.starts_with("soak-")).count();
    println!(
        "soak: {total} requests in {load_time:?} ({:.0}/s), {outage_count} log outages; seen {by_seen:?}; \
         answered {answered}, executed {} ({} distinct), rows {}, audit events {}, connection-level rows {connection_level}; \
         executed without a row {executed_without_row}, answered without a row {answered_without_row}, \
         rows without exactly one event {rows_without_one_event}, status mismatches {status_mismatch}",
        total as f64 / load_time.as_secs_f64(),
        executed.len(),
        executed_set.len(),
        rows.len(),
        events.values().sum::<usize>(),
    );
    assert!(settled, "rows did not settle: {} of {expected_rows}", rows.len());
    assert_eq!(
        executed.len(),
        executed_set.len(),
        "a function ran twice for one request"
    );
    assert_eq!(executed_without_row, 0);
    assert_eq!(answered_without_row, 0);
    assert_eq!(rows_without_one_event, 0);
    assert_eq!(status_mismatch, 0, "a row disagrees with what its client saw");
    assert_eq!(events.len(), rows.len(), "audit events of requests with no row");
    assert_eq!(connection_level, malformed, "one connection-level row per refused head");
    assert_eq!(
        invoked, executed_set,
        "audit events say `invoked` exactly where echo ran"
    );
    assert!(
        outage_count > 0 || load_time < Duration::from_secs(2),
        "the outages ran"
    );
}
