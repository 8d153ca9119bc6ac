//! Every `events/echo-*.json` is handled in-process through the ALB contract (the same files
//! run with `cargo lambda invoke echo --data-file` and `sam local invoke EchoFunction -e`).

use std::path::PathBuf;
use tollgate_core::http_fn::{call_http, event_files};

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

#[tokio::test]
async fn every_echo_event_is_answered() {
    let files = event_files(&events_dir(), "echo-");
    assert!(files.len() >= 3, "{files:?}");
    for (name, payload) in files {
        let out = call_http(&tollgate_echo::handle, &payload)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let resp: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(resp["statusCode"], 200, "{name}");
        let echo: serde_json::Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        let event: serde_json::Value =
            serde_json::from_slice(&std::fs::read(events_dir().join(&name)).unwrap()).unwrap();
        assert_eq!(echo["method"], event["httpMethod"], "{name}");
        assert_eq!(echo["path"], event["path"], "{name}");
        assert_eq!(echo["is_base64_encoded"], event["isBase64Encoded"], "{name}");
    }
}

/// Every file is named `<bin>-...json` after the function it is for, and that function's
/// package has a `tests/events.rs` that handles the files with its prefix.
#[test]
fn every_events_file_belongs_to_a_function_with_a_test() {
    let functions = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut tested: Vec<String> = Vec::new();
    for package in std::fs::read_dir(&functions).unwrap() {
        let dir = package.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let events_test = std::fs::read_to_string(dir.join("tests/events.rs")).unwrap_or_default();
        for line in manifest.lines().filter(|l| l.starts_with("name = ")) {
            let bin = line.trim_start_matches("name = ").trim_matches('"');
            if events_test.contains(&format!("\"{bin}-\"")) {
                tested.push(format!("{bin}-"));
            }
        }
    }
    let registered = std::fs::read_to_string(functions.join("../functions.toml"))
        .unwrap()
        .matches("[[functions]]")
        .count();
    assert_eq!(
        tested.len(),
        registered,
        "every function in functions.toml has its events test: {tested:?}"
    );
    for entry in std::fs::read_dir(events_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            tested.iter().any(|p| name.starts_with(p.as_str())),
            "{name} belongs to no function whose tests handle it ({tested:?})"
        );
    }
}
