//! aws mode end to end, for real: the `tollgate` binary with the AWS SDK adapters, against a
//! local AWS stack (PostgreSQL behind dataapi-local, an S3-compatible server, cargo lambda
//! watch with the function binaries). Concurrent good and bad requests; then the Lambda
//! endpoint is down for a while and, as deployed, the scheduled `audit-reconciler` function
//! (invoked here with the schedule's event) catches up once it returns. Every answered
//! request: one row, readable through the API, and one audit event in S3.

mod common;

use common::aws::AwsStack;
use common::*;
use std::time::Duration;

async fn load(addr: std::net::SocketAddr, clients: usize, per_client: usize, tag: &'static str) -> Vec<String> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut client = Client::connect(addr).await;
                for i in 0..per_client {
                    if client.is_closed() {
                        client = Client::connect(addr).await;
                    }
                    let big = "h".repeat(40 * 1024);
                    let (method, path, headers, body): (&str, String, Vec<(&str, &str)>, String) = match (c + i) % 6 {
                        0..=2 => (
                            "POST",
                            format!("/v1/echo/{tag}/{c}/{i}"),
                            vec![],
                            format!("{tag} {c} {i}"),
                        ),
                        3 => ("GET", "/nope".into(), vec![], String::new()),
                        4 => ("DELETE", "/v1/requests".into(), vec![], String::new()),
                        _ => ("GET", "/v1/echo".into(), vec![("x-big", big.as_str())], String::new()),
                    };
                    let r = client.send(method, &path, &headers, body).await.expect("answered");
                    if r.headers.get("connection").is_some_and(|v| v == "close") {
                        client = Client::connect(addr).await;
                    }
                    ids.push(r.request_id());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_mode_records_and_audits_every_request_through_an_outage() {
    let mut stack = AwsStack::start().await;
    let root = workspace_root();
    // As in template.yaml: the tasks do not reconcile; the scheduled function does.
    let mut proc = stack.ingress(&root, "200");
    let addr = proc.addr;

    // Healthy: a concurrent mix of good and bad requests.
    let mut answered = load(addr, 16, 25, "a").await;
    let r = request(addr, "POST", "/v1/echo", &[], "ping").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["body"], "ping");
    let id = r.request_id();
    answered.push(id.clone());
    let written = eventually(Duration::from_secs(10), || async {
        request(addr, "GET", &format!("/v1/requests/{id}"), &[], "")
            .await
            .json()["audit"]["state"]
            == "written"
    })
    .await;
    assert!(written, "audit event not written");
    // The request log needs a key in aws mode too (the one Proc::spawn made through the CLI, in
    // the Data API's api_keys): anonymous is 401, recorded in Aurora.
    let anonymous = Client::anonymous(addr)
        .await
        .send("GET", "/v1/requests", &[], "")
        .await
        .unwrap();
    anonymous.assert_error(401, "unauthenticated");
    answered.push(anonymous.request_id());
    let keyed = request(addr, "GET", &format!("/v1/requests/{id}"), &[], "").await;
    assert_eq!(keyed.status, 200, "{:?}", keyed.body);
    answered.push(keyed.request_id());
    let keyed_id = keyed.request_id();
    let own = request(addr, "GET", &format!("/v1/requests/{keyed_id}"), &[], "").await;
    answered.push(own.request_id());
    assert_eq!(own.json()["request"]["principal_kind"], "api_key", "{:?}", own.body);
    assert_eq!(own.json()["request"]["access"], "allowed:scope=requests:read");
    // The operator's command reads the same record and event, through the Data API and S3.
    let cli = std::process::Command::new(binary())
        .current_dir(&root)
        .args(["requests", "get", &id])
        .envs(stack.env_refs())
        .output()
        .unwrap();
    assert!(cli.status.success(), "tollgate requests get in aws mode: {cli:?}");
    let got: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(got["request"]["request_id"], id);
    assert_eq!(got["audit"]["state"], "written");
    assert_eq!(got["audit"]["event"]["request"]["body_bytes"], 4);

    // The Lambda endpoint goes away: routes answer 502 (and are recorded), audit batches fail.
    stack.lambda.down();
    let during = load(addr, 4, 10, "b").await;
    let r = request(addr, "GET", "/v1/echo", &[], "").await;
    r.assert_error(502, "function_unavailable");
    answered.push(r.request_id());
    answered.extend(during);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(stack.rows().1 > 0, "some rows must be waiting for their audit");

    // It comes back: the schedule fires the reconciler, which re-drives everything left behind.
    stack.lambda.up();
    let reconciler = stack.lambda_invoker();
    let schedule = std::fs::read(root.join("events/audit-reconciler-schedule.json")).unwrap();
    let mut passes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let caught_up = loop {
        use tollgate_core::ports::Invoker;
        match reconciler.invoke("audit-reconciler", schedule.clone().into()).await {
            Ok(report) => passes.push(String::from_utf8_lossy(&report).into_owned()),
            Err(e) => passes.push(e.to_string()),
        }
        if stack.rows().1 == 0 {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("reconciler passes: {passes:?}");
    assert!(
        passes
            .iter()
            .any(|p| p.contains("\"batches\":") && !p.contains("\"batches\":0")),
        "the reconciler re-drove nothing: {passes:?}"
    );
    assert!(
        caught_up,
        "reconciler did not catch up: {} rows unaudited",
        stack.rows().1
    );

    // Every row is readable through the API (which itself is recorded).
    for id in answered.clone().iter().step_by(7) {
        let r = request(addr, "GET", &format!("/v1/requests/{id}"), &[], "").await;
        assert_eq!(r.status, 200, "{id}: {:?}", r.body);
        assert_eq!(r.json()["audit"]["state"], "written", "{id}");
        answered.push(r.request_id());
    }
    proc.sigterm();
    let code = tokio::task::spawn_blocking(move || proc.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));

    // The polls above were answered and recorded too: every row is an answered request, and
    // every answered request we tracked has its row.
    let (rows, open) = stack.rows();
    assert_eq!(open, 0, "rows left unaudited after shutdown");
    let row_set: std::collections::BTreeSet<&String> = rows.iter().collect();
    assert_eq!(row_set.len(), rows.len(), "a request id has two rows");
    let missing: Vec<&String> = answered.iter().filter(|id| !row_set.contains(id)).collect();
    assert!(missing.is_empty(), "answered requests without a row: {missing:?}");
    let audits = stack.audit_counts().await;
    let doubled: Vec<(&String, &usize)> = audits.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "audit events written more than once: {doubled:?}");
    let audited: std::collections::BTreeSet<&String> = audits.keys().collect();
    assert_eq!(audited, row_set, "the audit events and the rows differ");
    eprintln!(
        "aws e2e: {} rows, {} audit events, {} tracked answers",
        rows.len(),
        audits.len(),
        answered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_invoker_meets_the_invoker_contract() {
    let stack = AwsStack::start().await;
    stack.migrate(&workspace_root());
    let invoker = stack.lambda_invoker();
    tollgate_testkit::contract::invoker(&invoker).await;

    // A stack deploys `echo` as `<stack>-echo`: the prefix is what goes on the wire.
    use tollgate_core::ports::{InvokeError, Invoker};
    let prefixed = stack.lambda_invoker().with_function_prefix("tollgate-dev-");
    match prefixed.invoke("echo", bytes::Bytes::from_static(b"{}")).await {
        Err(InvokeError::UnknownFunction(_)) => {}
        other => panic!("tollgate-dev-echo is not served here: {other:?}"),
    }
}
