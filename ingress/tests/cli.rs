//! The `tollgate` command line, as an operator uses it: `--version`, `help <command>`,
//! completions, and the commands that read the request log (`requests list|get`, `export`)
//! against the data a real ingress wrote, agreeing with what `GET /v1/requests` answers.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

fn tollgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.current_dir(workspace_root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tollgate runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_help_and_completions() {
    let v = tollgate(&["--version"], &[]);
    assert!(v.status.success());
    assert_eq!(stdout(&v).trim(), format!("tollgate {}", env!("CARGO_PKG_VERSION")));
    let h = tollgate(&["help", "migrate"], &[]);
    assert!(h.status.success(), "{h:?}");
    let text = stdout(&h);
    assert!(text.contains("Usage: tollgate migrate"), "{text}");
    assert!(
        text.contains("[default: ./.tollgate]"),
        "the real default of --data-dir: {text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let c = tollgate(&["completions", shell], &[]);
        assert!(c.status.success(), "{shell}: {c:?}");
        assert!(stdout(&c).contains("requests"), "{shell}");
    }
    // clap's own usage errors exit 2 and say what is wrong.
    let bad = tollgate(&["--listen"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("a value is required for '--listen"));
    let unknown = tollgate(&["frobnicate"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_export_read_what_the_ingress_recorded() {
    let data = TempDir::new("cli");
    let dd = data.0.to_str().unwrap().to_string();
    let mut proc = Proc::spawn(&workspace_root(), &[("TOLLGATE_DATA_DIR", &dd)]);
    let a = proc.addr;
    let mut ids = BTreeSet::new();
    for i in 0..25 {
        let r = request(a, "POST", &format!("/v1/echo/{i}"), &[], "x").await;
        assert_eq!(r.status, 200);
        ids.insert(r.request_id());
    }
    let missing = request(a, "GET", "/nope", &[], "").await;
    assert_eq!(missing.status, 404);
    ids.insert(missing.request_id());
    let api_page = request(a, "GET", "/v1/requests?status=404&limit=10", &[], "")
        .await
        .json();
    // Stopped: the operator commands read the store, not the server.
    proc.sigterm();
    assert_eq!(proc.wait(Duration::from_secs(30)), Some(0));

    let env = [("TOLLGATE_DATA_DIR", dd.as_str())];
    let list = tollgate(&["requests", "list", "--status", "404", "--limit", "10"], &env);
    assert!(list.status.success(), "{list:?}");
    let cli_page: serde_json::Value = serde_json::from_str(&stdout(&list)).unwrap();
    // The same page, but for the audit object, which was written since the route answered.
    let without_key = |mut page: serde_json::Value| {
        for r in page["requests"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("audit_key");
        }
        page
    };
    assert_eq!(
        without_key(cli_page.clone()),
        without_key(api_page),
        "the command and the route answer the same"
    );
    assert!(cli_page["requests"][0]["audit_key"].is_string(), "{cli_page}");
    assert_eq!(cli_page["requests"][0]["request_id"], missing.request_id());

    let one = tollgate(&["--data-dir", &dd, "requests", "get", &missing.request_id()], &[]);
    assert!(one.status.success(), "{one:?}");
    let detail: serde_json::Value = serde_json::from_str(&stdout(&one)).unwrap();
    assert_eq!(detail["request"]["status"], 404);
    assert_eq!(detail["audit"]["state"], "written", "flushed at SIGTERM");

    // A bad filter is the route's own problem, on stderr, exit 1.
    let bad = tollgate(&["requests", "list", "--limit", "0"], &env);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"code\":\"invalid_parameter\""));

    // Export: every record once, in pages smaller than the log (the cursor is followed).
    let export = tollgate(&["export", "--since", "2000-01-01T00:00:00Z", "--page-size", "7"], &env);
    assert!(export.status.success(), "{export:?}");
    let exported: Vec<serde_json::Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: BTreeSet<String> = exported
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    // The API reads above are records too.
    assert_eq!(exported.len(), got.len(), "a record exported twice");
    assert!(
        ids.is_subset(&got),
        "missing: {:?}",
        ids.difference(&got).collect::<Vec<_>>()
    );
    assert_eq!(
        got.len(),
        ids.len() + 1,
        "the one GET /v1/requests is the only other record"
    );
    assert!(String::from_utf8_lossy(&export.stderr).contains(&format!("exported {} record(s)", got.len())));
    let none = tollgate(&["export", "--until", "2000-01-01T00:00:00Z"], &env);
    assert!(none.status.success());
    assert_eq!(stdout(&none), "");
}

#[test]
fn a_port_in_use_names_the_setting_and_creates_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = TempDir::new("port-in-use");
    let dir = data.0.join("never");
    let out = tollgate(&["--listen", &addr, "--data-dir", dir.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{addr} is already in use")), "{err}");
    assert!(err.contains("TOLLGATE_LISTEN") && err.contains("--listen"), "{err}");
    assert!(
        !dir.exists(),
        "the data directory was created before the port was checked"
    );
}
