//! End-to-end tests of the real `tollgate` binary: start-up, SIGTERM under load, restart,
//! and secrets kept out of rows, audit objects and logs.

mod common;

use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[test]
fn invalid_settings_stop_startup_naming_each_one() {
    let out = Command::new(binary())
        .env("TOLLGATE_LISTEN", "not-an-address")
        .env("TOLLGATE_MAX_BODY_BYTES", "lots")
        .arg("--drain-timeout-ms=forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["TOLLGATE_LISTEN", "TOLLGATE_MAX_BODY_BYTES", "--drain-timeout-ms"] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    let help = Command::new(binary()).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("TOLLGATE_LISTEN") && text.contains("--listen"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_health_echo_and_the_record_with_its_audit_event() {
    let data = TempDir::new("smoke");
    let proc = Proc::spawn(&workspace_root(), &[("TOLLGATE_DATA_DIR", data.0.to_str().unwrap())]);
    let a = proc.addr;
    assert_eq!(request(a, "GET", "/healthz", &[], "").await.status, 200);
    let r = request(a, "POST", "/v1/echo", &[], "ping").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "ping");
    let id = r.request_id();
    let rec = request(a, "GET", &format!("/v1/requests/{id}"), &[], "").await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.json()["request"]["status"], 200);
    let written = eventually(Duration::from_secs(2), || async {
        request(a, "GET", &format!("/v1/requests/{id}"), &[], "").await.json()["audit"]["state"] == "written"
    })
    .await;
    assert!(written, "audit event not written within 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_finishes_in_flight_requests_and_exits_zero() {
    let data = TempDir::new("sigterm");
    let dd = data.0.to_str().unwrap().to_string();
    let mut proc = Proc::spawn(&workspace_root(), &[("TOLLGATE_DATA_DIR", &dd)]);
    let addr = proc.addr;

    // A request whose body is still arriving when SIGTERM comes.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nin-")
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..32)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut client = Client::connect(addr).await;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let path = if i % 5 == 4 {
                        "/nope".to_string()
                    } else {
                        format!("/v1/echo/{c}/{i}")
                    };
                    match client.send("POST", &path, &[], "x").await {
                        Ok(r) => ids.push(r.request_id()),
                        Err(_) => break, // the server closed the connection while draining
                    }
                    i += 1;
                }
                ids
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proc.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.write_all(b"fly").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request was not completed: {text}"
    );
    assert!(text.contains("in-fly"), "{text}");
    let slow_id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_string();
    stop.store(true, Ordering::Relaxed);

    let code = tokio::task::spawn_blocking(move || {
        let code = proc.wait(Duration::from_secs(30));
        (code, proc)
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "exit code; output: {:?}", code.1.output());
    let mut answered = vec![slow_id];
    for l in load {
        answered.extend(l.await.unwrap());
    }
    assert!(
        answered.len() > 50,
        "load too light to mean anything: {}",
        answered.len()
    );
    assert_exactly_once(&data.0, &answered).await;

    // After a restart everything is still there and readable through the API.
    let proc = Proc::spawn(&workspace_root(), &[("TOLLGATE_DATA_DIR", &dd)]);
    let sample: Vec<String> = answered.iter().step_by(answered.len() / 20 + 1).cloned().collect();
    for id in sample {
        let r = request(proc.addr, "GET", &format!("/v1/requests/{id}"), &[], "").await;
        answered.push(r.request_id());
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["audit"]["state"], "written");
    }
    proc.sigterm();
    let mut proc = proc;
    assert_eq!(proc.wait(Duration::from_secs(30)), Some(0));
    assert_exactly_once(&data.0, &answered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_reaches_no_row_no_audit_object_and_no_log_line() {
    const CANARY: &str = "CANARY-7f3a9c1e-secret";
    let data = TempDir::new("canary");
    let dd = data.0.to_str().unwrap().to_string();
    let mut proc = Proc::spawn(&workspace_root(), &[("TOLLGATE_DATA_DIR", &dd), ("RUST_LOG", "trace")]);
    let a = proc.addr;
    let auth = format!("Bearer {CANARY}");
    let cookie = format!("session={CANARY}");
    let referer = format!("https://app.example/cb?state=1;code={CANARY}#access_token={CANARY}");
    let link = format!("<https://app.example/p?page=2&sig={CANARY}>; rel=\"next\"");
    let secret_headers = [
        ("authorization", auth.as_str()),
        ("cookie", cookie.as_str()),
        ("x-api-key", CANARY),
        ("x-amzn-oidc-data", CANARY),
        ("x-amzn-oidc-accesstoken", CANARY),
        ("referer", referer.as_str()),
        ("link", link.as_str()),
    ];
    let big = "b".repeat(40 * 1024);
    let mut with_big = secret_headers.to_vec();
    with_big.push(("x-big", big.as_str()));
    let mut ids = Vec::new();
    for (method, path, headers, body) in [
        (
            "POST",
            format!("/v1/echo?api_key={CANARY}&x=1"),
            secret_headers.to_vec(),
            "hello".to_string(),
        ),
        ("GET", "/v1/echo/a".to_string(), secret_headers.to_vec(), String::new()),
        (
            "GET",
            format!("/nope?token={CANARY}"),
            secret_headers.to_vec(),
            String::new(),
        ),
        (
            "DELETE",
            "/v1/requests".to_string(),
            secret_headers.to_vec(),
            String::new(),
        ),
        (
            "GET",
            format!("/v1/requests?password={CANARY}"),
            secret_headers.to_vec(),
            String::new(),
        ),
        ("GET", "/v1/echo".to_string(), with_big, String::new()),
        // `;` pairs, percent-encoded and bracketed names, the new built-in names.
        (
            "GET",
            format!("/v1/echo?a=1;session={CANARY}&%74oken={CANARY}&user[password]={CANARY}&Api-Key={CANARY}"),
            secret_headers.to_vec(),
            String::new(),
        ),
    ] {
        let r = Client::connect(a)
            .await
            .send(method, &path, &headers, body)
            .await
            .unwrap();
        ids.push(r.request_id());
    }
    // Rejected before its body is read (413 from Content-Length).
    let head = format!(
        "POST /v1/echo HTTP/1.1\r\nHost: t\r\nauthorization: {auth}\r\ncookie: {cookie}\r\nx-api-key: {CANARY}\r\nContent-Length: 99999999\r\n\r\n"
    );
    let (status, id, _) = parse_raw(&raw(a, head.as_bytes(), Duration::from_secs(5)).await);
    assert_eq!(status, 413);
    ids.push(id);
    // The echo itself shows the client its own headers redacted too.
    let r = request(a, "GET", "/v1/echo", &secret_headers, "").await;
    assert!(
        !String::from_utf8_lossy(&r.body).contains(CANARY),
        "echo reflected a secret"
    );
    ids.push(r.request_id());
    for id in ids.clone() {
        let r = request(a, "GET", &format!("/v1/requests/{id}"), &[], "").await;
        assert!(
            !String::from_utf8_lossy(&r.body).contains(CANARY),
            "requests-api served a secret"
        );
        ids.push(r.request_id());
    }
    proc.sigterm();
    assert_eq!(proc.wait(Duration::from_secs(30)), Some(0));

    let logs = proc.output();
    let access = logs.iter().filter(|l| l.contains("tollgate::access")).count();
    assert!(access >= ids.len(), "expected an access line per request, got {access}");
    for line in &logs {
        assert!(!line.contains(CANARY), "log line carries the secret: {line}");
    }
    for entry in std::fs::read_dir(&data.0).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
    let store = dir_store(&data.0);
    let keys = tollgate_core::ports::ObjectStore::list(&store, "audit/v1/")
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        let object = tollgate_core::ports::ObjectStore::get(&store, &key)
            .await
            .unwrap()
            .unwrap();
        for line in tollgate_core::audit::decode(&object).unwrap() {
            assert!(!line.contains(CANARY), "audit event carries the secret: {line}");
        }
    }
    assert_exactly_once(&data.0, &ids).await;
}

#[test]
fn the_configuration_docs_document_every_setting_with_its_flag() {
    // docs/configuration.md, and docs/aws-mode.md for the aws-mode settings.
    let doc = ["docs/configuration.md", "docs/aws-mode.md"]
        .map(|f| std::fs::read_to_string(workspace_root().join(f)).unwrap())
        .join("\n");
    let (_, docs) = tollgate_ingress::config::IngressConfig::from_sources(Vec::new(), Vec::new()).unwrap();
    for d in docs {
        assert!(
            doc.contains(&format!("`{}`", d.env)),
            "docs/configuration.md lacks {}",
            d.env
        );
        assert!(
            doc.contains(&format!("`{}`", d.flag)),
            "docs/configuration.md lacks {}",
            d.flag
        );
    }
}
