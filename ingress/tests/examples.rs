//! The example API client (`examples/client.sh`, curl + jq) works against a live ingress: it
//! finds its call's record and audit event, pages through the log with the cursor, and reads a
//! problem.

mod common;

use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_client_runs_against_a_live_ingress() {
    let data = TempDir::new("examples");
    let proc = Proc::spawn(&workspace_root(), &[("TOLLGATE_DATA_DIR", data.0.to_str().unwrap())]);
    // Four earlier POSTs, so that with the client's own there are 5: pages of 2, 2 and 1.
    for i in 0..4 {
        assert_eq!(
            request(proc.addr, "POST", &format!("/v1/echo/{i}"), &[], "x")
                .await
                .status,
            200
        );
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("examples/client.sh"))
        .arg(format!("http://{}", proc.addr))
        .env(
            "TOLLGATE_TOKEN",
            token_for(proc.addr).expect("the first start wrote a key"),
        )
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "examples/client.sh failed (is jq installed? scripts/test.sh installs it):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let echo: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(echo["path"], "/v1/echo/orders");
    let id = lines[1].strip_prefix("request id: ").unwrap();
    assert!(tollgate_core::ids::is_valid_request_id(id), "{id}");
    let record: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(record["status"], 200);
    assert_eq!(record["audit"], "written");
    assert!(record["object"].as_str().unwrap().starts_with("audit/v1/"));
    assert_eq!(lines[3], "POSTs to echo: 5 record(s) in 3 page(s)");
    let problem: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(problem["http_status"], 400);
    assert_eq!(problem["code"], "invalid_parameter");
    assert!(problem["instance"].as_str().unwrap().starts_with("/v1/requests/"));
}
