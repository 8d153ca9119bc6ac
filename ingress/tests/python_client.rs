//! One generated client: docs/api.md's block (extracted, never retyped here) generates a Python
//! client from api/openapi.json with the pinned openapi-python-client and runs
//! examples/python-client/client.py with it against a live ingress: health, an echo, that
//! echo's record by id, the log listed with filters, and a 404 parsed as the document's RFC 9457
//! Problem model. The block reads the key the first start wrote (the request log needs one) and
//! the client sends it as a bearer token.

mod common;

use common::blocks;
use common::*;
use std::time::Duration;

/// The body-carrying echo operations: their request body is `*/*` (echo takes any bytes),
/// which openapi-python-client cannot type, so it leaves exactly these out, saying so.
const NOT_GENERATED: &[&str] = &[
    "PUT /v1/echo",
    "POST /v1/echo",
    "PATCH /v1/echo",
    "PUT /v1/echo/{rest}",
    "POST /v1/echo/{rest}",
    "PATCH /v1/echo/{rest}",
];

fn lines(stdout: &str) -> Vec<serde_json::Value> {
    // The block's own output also holds the generator's; the client's lines are the JSON ones.
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_python_client_runs_against_a_live_ingress() {
    // Installed by `bash scripts/test.sh` (ensure_test_tools); the block installs it too when
    // it is missing, and a failed install fails the block, with pip's reason in its output.
    let root = workspace_root();
    let data = TempDir::new("python-client");
    let proc = Proc::spawn(&root, &[("TOLLGATE_DATA_DIR", data.0.to_str().unwrap())]);
    let block = blocks::with_test_values(&blocks::named_block("python-client"), &format!("http://{}", proc.addr));

    let mut echoes: Vec<String> = Vec::new();
    let data_dir = data.0.to_str().unwrap().to_string();
    {
        let token = Some(());
        let env: Vec<(&str, &str)> = vec![("TOLLGATE_DATA_DIR", data_dir.as_str())];
        let started = std::time::Instant::now();
        let mut script = blocks::Script::start(&block, &root, &env);
        let out = script.finish(
            Duration::from_secs(10 * 60),
            "docs/api.md's generated-client block",
            "installing openapi-python-client from its lock, generating, or the client's calls",
        );
        eprintln!(
            "python client (token: {}): {:.1} s",
            token.is_some(),
            started.elapsed().as_secs_f64()
        );

        // The generator left out only what it cannot type; anything else it skips is a change
        // in the document that a generated client would silently lose.
        let all = format!("{}\n{}", out.stdout, out.stderr);
        let skipped: Vec<&str> = all
            .lines()
            .filter_map(|l| l.strip_prefix("WARNING parsing "))
            .map(|l| l.split(" within ").next().unwrap())
            .collect();
        assert_eq!(skipped, NOT_GENERATED, "{out}");
        assert!(
            all.matches("Unsupported content type */*").count() == NOT_GENERATED.len(),
            "{out}"
        );

        let l = lines(&out.stdout);
        assert_eq!(l.len(), 5, "five steps, one line each:\n{out}");
        assert_eq!(l[0], serde_json::json!({"health": "ok"}), "{out}");

        assert_eq!(l[1]["echo"]["method"], "GET", "{out}");
        assert_eq!(l[1]["echo"]["path"], "/v1/echo/python-client", "{out}");
        // With a token, the echo saw an authorization header (redacted, as every secret is).
        let expected_auth = match token {
            Some(_) => serde_json::json!(["[REDACTED]"]),
            None => serde_json::Value::Null,
        };
        assert_eq!(l[1]["echo"]["authorization"], expected_auth, "{out}");
        let id = l[1]["request_id"].as_str().unwrap().to_string();
        assert!(tollgate_core::ids::is_valid_request_id(&id), "{out}");

        assert_eq!(l[2]["record"]["request_id"], id.as_str(), "{out}");
        assert_eq!(l[2]["record"]["status"], 200, "{out}");
        assert_eq!(l[2]["record"]["function"], "echo", "{out}");
        assert_eq!(l[2]["audit"], "written", "{out}");
        assert!(l[2]["object_key"].as_str().unwrap().starts_with("audit/v1/"), "{out}");

        // The filtered list: that echo first (newest first), and nothing but the client's own
        // echoes (the first run's may fall inside the second's `since`).
        echoes.push(id.clone());
        let listed: Vec<&str> = l[3]["listed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed.first(), Some(&id.as_str()), "{out}");
        assert!(listed.iter().all(|i| echoes.iter().any(|e| e == i)), "{out}");

        let p = &l[4];
        assert_eq!(p["http_status"], 404, "{out}");
        assert_eq!(p["content_type"], "application/problem+json", "{out}");
        assert_eq!(p["problem"]["status"], 404, "{out}");
        assert_eq!(p["problem"]["code"], "request_not_found", "{out}");
        assert_eq!(p["problem"]["type"], "/problems/request_not_found", "{out}");
        let problem_id = p["problem"]["request_id"].as_str().unwrap();
        assert_eq!(p["problem"]["instance"], format!("/v1/requests/{problem_id}"), "{out}");

        // The problem's own request was recorded too, as a 404.
        let r = request(proc.addr, "GET", &format!("/v1/requests/{problem_id}"), &[], "").await;
        assert_eq!(r.status, 200, "{out}");
        assert!(script.leftovers(Duration::from_secs(5)).is_empty(), "{out}");
    }
    drop(proc);
}
