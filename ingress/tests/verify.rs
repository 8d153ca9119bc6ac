//! `tollgate verify`, the binary, end to end: a real ingress serves requests and its
//! in-process timer signs digests (2 s periods), then `tollgate verify` checks the data
//! directory while it runs (exit 0), finds a deleted object (exit 1, a line naming it), and
//! refuses a bad argument (exit 2). The tamper corpus itself is `verify/tests/tamper.rs`.

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::Duration;

const PERIOD_MS: &str = "2000";
const GRACE_MS: &str = "300";

fn verify(data_dir: &str, extra: &[&str]) -> Output {
    Command::new(binary())
        .current_dir(workspace_root())
        .args(["verify", "--data-dir", data_dir])
        .args(["--digest-period-ms", PERIOD_MS, "--digest-grace-ms", GRACE_MS])
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("tollgate verify runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_a_live_data_directory_and_exits_by_its_findings() {
    let data = TempDir::new("verify");
    let dd = data.0.to_str().unwrap().to_string();
    let mut proc = Proc::spawn(
        &workspace_root(),
        &[
            ("TOLLGATE_DATA_DIR", &dd),
            ("TOLLGATE_DIGEST_PERIOD_MS", PERIOD_MS),
            ("TOLLGATE_DIGEST_GRACE_MS", GRACE_MS),
        ],
    );
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = request(proc.addr, "POST", &format!("/v1/echo/{i}"), &[], "x").await;
        assert_eq!(r.status, 200);
        ids.push(r.request_id());
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    }
    // Every event written, and the periods that hold them digested (2 s periods, 0.3 s grace,
    // a 1 s timer): two more periods are plenty.
    let store = dir_store(&data.0);
    assert!(
        eventually(Duration::from_secs(20), || async {
            audit_counts(&store).await.values().sum::<usize>() >= ids.len()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(5000)).await;

    let out = verify(&dd, &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("OK: no findings"), "{text}");
    // The events include the requests answered since start (the first key's, health checks
    // are not recorded): at least the 30 echoes.
    let json = verify(&dd, &["--json"]);
    assert_eq!(json.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert!(report["events"]["valid"].as_u64().unwrap() >= 30, "{report}");
    assert_eq!(report["events"]["valid"], report["events"]["checked"]);
    assert!(report["digests"]["valid"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["findings"], serde_json::json!([]));

    // The auditor keeps the newest checkpoint; it verifies too.
    let newest = std::fs::read_dir(data.0.join("objects/log/checkpoint"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let kept = data.0.join("kept.checkpoint");
    std::fs::copy(data.0.join(format!("objects/log/checkpoint/{newest}")), &kept).unwrap();
    let vkey = Command::new(binary())
        .args(["log-key", "--data-dir", &dd])
        .output()
        .unwrap();
    let vkey = String::from_utf8_lossy(&vkey.stdout).trim().to_string();
    let out = verify(&dd, &["--checkpoint", kept.to_str().unwrap(), "--vkey", &vkey]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // An object deleted: exit 1, and the line names it.
    let key = std::fs::read_dir(data.0.join("objects/audit/v1"))
        .ok()
        .and_then(|_| {
            let mut keys = Vec::new();
            let mut stack = vec![data.0.join("objects/audit/v1")];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).ok()?.flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    } else {
                        keys.push(e.path());
                    }
                }
            }
            keys.sort();
            keys.into_iter().next()
        })
        .expect("an audit object");
    std::fs::remove_file(&key).unwrap();
    let out = verify(&dd, &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let name = key
        .strip_prefix(data.0.join("objects"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("INVALID object_missing") && l.contains(&name)),
        "{text}"
    );

    // Not a time: exit 2, and why.
    let out = verify(&dd, &["--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from \"yesterday\" is not an RFC 3339 time"));

    proc.sigterm();
    assert_eq!(proc.wait(Duration::from_secs(30)), Some(0));
}
