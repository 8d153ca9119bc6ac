//! End-to-end tests over HTTP against an in-process ingress on a free port: the request
//! surface, bad input, limits, keep-alive, and nothing lost under concurrency and faults.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::local::LocalFunction;
use tollgate_core::ports::{BoxFuture, InvokeError};

/// Reads a record back through the API itself.
async fn recorded(addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let r = request(addr, "GET", &format!("/v1/requests/{id}"), &[], "").await;
    assert_eq!(r.status, 200, "record of {id}: {:?}", r.body);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_then_its_record_and_audit_event_within_two_seconds() {
    let mut ing = InProcess::start(&[], |_| {}).await;
    let r = request(
        ing.addr,
        "POST",
        "/v1/echo/x?a=1&a=2",
        &[("content-type", "text/plain")],
        "hello",
    )
    .await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["query"]["a"], serde_json::json!(["1", "2"]));
    let id = r.request_id();
    let v = recorded(ing.addr, &id).await;
    assert_eq!(v["request"]["status"], 200);
    assert_eq!(v["request"]["route"], "/v1/echo/{*rest}");
    assert_eq!(v["request"]["function_name"], "echo");
    assert_eq!(v["request"]["request_bytes"], 5);
    let written = eventually(Duration::from_secs(2), || async {
        let v = recorded(ing.addr, &id).await;
        v["audit"]["state"] == "written"
    })
    .await;
    assert!(written, "audit event not written within 2 s");
    let v = recorded(ing.addr, &id).await;
    assert!(v["audit"]["object_key"].as_str().unwrap().starts_with("audit/v1/"));
    assert_eq!(v["audit"]["event"]["request_id"], id.as_str());
    assert_eq!(v["audit"]["event"]["response"]["status"], 200);
    assert_eq!(v["audit"]["event"]["request"]["body_bytes"], 5);

    // An incoming valid x-request-id is adopted; an invalid one is replaced.
    let r = request(ing.addr, "GET", "/v1/echo", &[("x-request-id", "client-id-1")], "").await;
    assert_eq!(r.request_id(), "client-id-1");
    let r = request(ing.addr, "GET", "/v1/echo", &[("x-request-id", "bad id!")], "").await;
    assert_ne!(r.request_id(), "bad id!");
    // A reused client id does not overwrite the first request's record.
    let r2 = request(
        ing.addr,
        "GET",
        "/v1/echo/again",
        &[("x-request-id", "client-id-1")],
        "",
    )
    .await;
    assert_eq!(r2.status, 200);
    assert_ne!(r2.request_id(), "client-id-1");
    assert_eq!(recorded(ing.addr, "client-id-1").await["request"]["path"], "/v1/echo");
    assert_eq!(
        recorded(ing.addr, &r2.request_id()).await["request"]["path"],
        "/v1/echo/again"
    );

    // Listing: newest first, filters, cursor paging.
    let list = request(ing.addr, "GET", "/v1/requests?limit=2&method=GET", &[], "")
        .await
        .json();
    assert_eq!(list["requests"].as_array().unwrap().len(), 2);
    let cursor = list["next_cursor"].as_str().unwrap().to_string();
    let next = request(
        ing.addr,
        "GET",
        &format!("/v1/requests?limit=2&method=GET&cursor={cursor}"),
        &[],
        "",
    )
    .await
    .json();
    let first_page: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    for r in next["requests"].as_array().unwrap() {
        assert!(
            !first_page.contains(&r["request_id"].as_str().unwrap()),
            "pages overlap"
        );
    }
    request(ing.addr, "GET", "/v1/requests?limit=0", &[], "")
        .await
        .assert_error(400, "invalid_parameter");
    request(ing.addr, "GET", "/v1/requests/nope", &[], "")
        .await
        .assert_error(404, "request_not_found");
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_gets_its_status_a_json_error_and_a_record() {
    let mut ing = InProcess::start(
        &[("TOLLGATE_MAX_BODY_BYTES", "1024"), ("TOLLGATE_BODY_TIMEOUT_MS", "300")],
        |_| {},
    )
    .await;
    let a = ing.addr;
    let mut cases: Vec<(u16, &str, String)> = Vec::new();

    let r = request(a, "GET", "/nope", &[], "").await;
    r.assert_error(404, "route_not_found");
    cases.push((404, "route_not_found", r.request_id()));

    let r = request(a, "POST", "/v1/requests", &[], "").await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET, HEAD");
    cases.push((405, "method_not_allowed", r.request_id()));

    let r = request(a, "BREW", "/v1/echo", &[], "").await;
    r.assert_error(405, "method_not_allowed");
    cases.push((405, "method_not_allowed", r.request_id()));

    let r = request(a, "POST", "/v1/echo", &[], &"x".repeat(2000)).await;
    r.assert_error(413, "payload_too_large");
    cases.push((413, "payload_too_large", r.request_id()));

    let big = "v".repeat(40 * 1024);
    let r = request(a, "GET", "/v1/echo", &[("x-big", big.as_str())], "").await;
    r.assert_error(431, "headers_too_large");
    cases.push((431, "headers_too_large", r.request_id()));

    for kind in ["error", "panic", "garbage", "badstatus"] {
        let code = if kind == "error" || kind == "panic" {
            "function_error"
        } else {
            "invalid_function_response"
        };
        let r = request(a, "GET", &format!("/v1/fault/{kind}"), &[], "").await;
        r.assert_error(502, code);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("internal detail"),
            "backend error leaked"
        );
        cases.push((502, code, r.request_id()));
    }

    let r = request(a, "GET", "/v1/fault/sleep", &[], "").await;
    r.assert_error(504, "function_timeout");
    cases.push((504, "function_timeout", r.request_id()));

    // 413 from Content-Length alone: answered before any body byte is sent, with no 100 Continue.
    let text = raw(
        a,
        b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(!text.contains("100 Continue"), "{text}");
    let (status, id, body) = parse_raw(&text);
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
    cases.push((413, "payload_too_large", id));

    // Chunked body over the limit: stopped while reading.
    let mut chunked = b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'z'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    let (status, id, _) = parse_raw(&raw(a, &chunked, Duration::from_secs(5)).await);
    assert_eq!(status, 413);
    cases.push((413, "payload_too_large", id));

    // HTTP/1.1 without Host; absolute-form target.
    let (status, id, body) = parse_raw(&raw(a, b"GET /v1/echo HTTP/1.1\r\n\r\n", Duration::from_secs(5)).await);
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_host")));
    cases.push((400, "invalid_host", id));
    let (status, id, body) = parse_raw(
        &raw(
            a,
            b"GET http://t/v1/echo HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(5),
        )
        .await,
    );
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_target")));
    cases.push((400, "invalid_target", id));

    // A body that stops arriving: 408 and the connection is closed.
    let (status, id, body) = parse_raw(
        &raw(
            a,
            b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
            Duration::from_secs(5),
        )
        .await,
    );
    assert_eq!((status, body["code"].as_str()), (408, Some("body_timeout")));
    cases.push((408, "body_timeout", id));

    // Every one of them is recorded with its status and error code, and the process is fine.
    for (status, code, id) in &cases {
        let v = recorded(a, id).await;
        assert_eq!(v["request"]["status"], *status, "{v}");
        assert_eq!(v["request"]["error_code"], *code, "{v}");
        assert_eq!(v["audit"]["event"]["error"]["code"], *code, "{v}");
    }
    assert_eq!(request(a, "GET", "/healthz", &[], "").await.status, 200);
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_outlasts_the_header_timeout_and_slow_headers_are_cut() {
    let mut ing = InProcess::start(
        &[
            ("TOLLGATE_KEEPALIVE_IDLE_MS", "1500"),
            ("TOLLGATE_HEADER_TIMEOUT_MS", "400"),
        ],
        |_| {},
    )
    .await;
    let mut c = Client::connect(ing.addr).await;
    assert_eq!(c.send("GET", "/v1/echo", &[], "").await.unwrap().status, 200);
    // Idle for longer than the header timeout: the connection is still served.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(c.send("GET", "/v1/echo", &[], "").await.unwrap().status, 200);
    // Idle past the keep-alive time: the server closes it.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        c.is_closed() || c.send("GET", "/v1/echo", &[], "").await.is_err(),
        "idle connection kept past its limit"
    );

    // Headers that start but do not finish within the header timeout: closed without an answer.
    let started = std::time::Instant::now();
    let text = raw(
        ing.addr,
        b"GET /v1/echo HTTP/1.1\r\nHost: t\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(text.is_empty(), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "slow headers held {:?}",
        started.elapsed()
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_fifty_requests_each_nothing_lost_nothing_doubled() {
    let mut ing = InProcess::start(&[("TOLLGATE_MAX_BODY_BYTES", "1024")], |_| {}).await;
    let addr = ing.addr;
    let clients: Vec<_> = (0..200)
        .map(|c| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut statuses: HashMap<u16, usize> = HashMap::new();
                let mut client = Client::connect(addr).await;
                for i in 0..50 {
                    if client.is_closed() {
                        client = Client::connect(addr).await;
                    }
                    let big = "h".repeat(40 * 1024);
                    let (method, path, headers, body): (&str, String, Vec<(&str, &str)>, String) =
                        match (c * 50 + i) % 9 {
                            0..=2 => ("POST", format!("/v1/echo/{c}/{i}"), vec![], format!("body {c} {i}")),
                            3 => ("GET", "/nope".into(), vec![], String::new()),
                            4 => ("DELETE", "/v1/requests".into(), vec![], String::new()),
                            5 => ("POST", "/v1/echo".into(), vec![], "x".repeat(2048)),
                            6 => ("GET", "/v1/echo".into(), vec![("x-big", big.as_str())], String::new()),
                            7 => ("GET", "/v1/fault/error".into(), vec![], String::new()),
                            _ => ("GET", "/v1/fault/panic".into(), vec![], String::new()),
                        };
                    let reply = client.send(method, &path, &headers, body).await.expect("answered");
                    *statuses.entry(reply.status.as_u16()).or_default() += 1;
                    if reply.headers.get("connection").is_some_and(|v| v == "close") {
                        client = Client::connect(addr).await;
                    }
                    ids.push(reply.request_id());
                }
                (ids, statuses)
            })
        })
        .collect();
    let mut answered = Vec::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for c in clients {
        let (ids, s) = c.await.unwrap();
        answered.extend(ids);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    assert_eq!(answered.len(), 10_000);
    for status in [200, 404, 405, 413, 431, 502] {
        assert!(
            statuses.get(&status).copied().unwrap_or(0) > 0,
            "no {status} in {statuses:?}"
        );
    }
    ing.stop().await;
    assert_exactly_once(&ing.dir.0, &answered).await;
    eprintln!("statuses: {statuses:?}");
}

/// Wraps the audit writer so its first invocation fails, as a dropped async batch would.
fn fail_first(functions: &mut HashMap<String, Arc<dyn LocalFunction>>, failures: Arc<AtomicUsize>) {
    let real = functions.remove("audit-writer").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    functions.insert(
        "audit-writer".into(),
        Arc::new(
            move |payload: bytes::Bytes| -> BoxFuture<'static, Result<bytes::Bytes, InvokeError>> {
                let real = real.clone();
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                let failures = failures.clone();
                Box::pin(async move {
                    if first {
                        failures.fetch_add(1, Ordering::SeqCst);
                        return Err(InvokeError::Function {
                            error_type: "Injected".into(),
                            message: "dropped on purpose".into(),
                        });
                    }
                    real.call(payload).await
                })
            },
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_audit_batch_is_redriven_by_the_reconciler() {
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let mut ing = InProcess::start(
        &[
            ("TOLLGATE_RECONCILE_INTERVAL_MS", "200"),
            ("TOLLGATE_RECONCILE_GRACE_MS", "1000"),
            ("TOLLGATE_AUDIT_BATCH_MAX_AGE_MS", "100"),
        ],
        move |functions| fail_first(functions, f),
    )
    .await;
    let addr = ing.addr;
    let tasks: Vec<_> = (0..10)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut ids = Vec::new();
                for i in 0..20 {
                    let r = client
                        .send("POST", &format!("/v1/echo/{c}/{i}"), &[], "b")
                        .await
                        .unwrap();
                    ids.push(r.request_id());
                }
                ids
            })
        })
        .collect();
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    let dir = ing.dir.0.clone();
    let all_audited = eventually(Duration::from_secs(15), || {
        let dir = dir.clone();
        async move { rows_by_id(&dir).values().all(|(_, key)| key.is_some()) }
    })
    .await;
    assert!(all_audited, "reconciler did not re-drive the dropped batch");
    assert_eq!(failures.load(Ordering::SeqCst), 1, "the first batch was not dropped");
    ing.stop().await;
    assert_exactly_once(&ing.dir.0, &answered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_invoker_meets_the_invoker_contract() {
    let dir = TempDir::new("invoker");
    let backends = tollgate_embedded::open(&tollgate_core::backends::StorageSettings {
        mode: tollgate_core::backends::Mode::Embedded,
        data_dir: dir.0.clone(),
        log_origin: None,
    })
    .unwrap();
    let invoker = tollgate_core::local::LocalInvoker::new(tollgate_ingress::app::embedded_functions(&backends));
    tollgate_testkit::contract::invoker(&invoker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_commits_batch_without_stranding_a_record() {
    let mut ing = InProcess::start(
        &[("TOLLGATE_COMMIT_LINGER_MS", "50"), ("TOLLGATE_COMMIT_MAX_BATCH", "8")],
        |_| {},
    )
    .await;
    let addr = ing.addr;
    let tasks: Vec<_> = (0..20)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut ids = Vec::new();
                for i in 0..10 {
                    // Every fifth request reuses a client-chosen id: a clash re-queued by the pipeline.
                    let chosen = format!("dup-{}", i % 3);
                    let headers: Vec<(&str, &str)> = if i % 5 == 0 {
                        vec![("x-request-id", chosen.as_str())]
                    } else {
                        vec![]
                    };
                    let r = client
                        .send("POST", &format!("/v1/echo/{c}/{i}"), &headers, "x")
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200);
                    ids.push(r.request_id());
                }
                ids
            })
        })
        .collect();
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    ing.stop().await;
    assert_exactly_once(&ing.dir.0, &answered).await;
}
