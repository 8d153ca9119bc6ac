//! The documented command lines work as written: every ```sh block marked `<!-- tested -->` in
//! the README and in docs/ is extracted (never retyped here) and run with bash against a real
//! `tollgate` serving a fresh data directory, in order, failing on the first command that fails.
//! Three substitutions only: `base=http://127.0.0.1:8080` gets the test's port, and `cargo run
//! -q --` and a leading `tollgate` become the binary under test. Blocks marked
//! `<!-- tested: NAME -->` are each run from the workspace root by the test that
//! `common::blocks::NAMED` names (the `cargo lambda watch` block of docs/aws-mode.md by the
//! second test here), with `base=` and `NAME_port=` lines as the only substitutions.

mod common;

use common::blocks::{self, tested_blocks, MARKER};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn runnable(block: &str, base: &str) -> String {
    let bin = binary();
    block
        .lines()
        .map(|l| {
            let l = if l.trim() == "base=http://127.0.0.1:8080" {
                format!("base={base}")
            } else {
                l.replace("cargo run -q --", bin)
            };
            match l.strip_prefix("tollgate ") {
                Some(rest) => format!("{bin} {rest}"),
                None => l.replace("$(tollgate ", &format!("$({bin} ")),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(block: &str, cwd: &Path, what: &str) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(cwd)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{what} failed:\n--- block\n{block}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tested_block_of_the_readme_and_docs_runs_as_written() {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);

    let home = TempDir::new("docs");
    let data = home.0.join(".tollgate");
    let proc = Proc::spawn(&root, &[("TOLLGATE_DATA_DIR", data.to_str().unwrap())]);
    let base = format!("http://{}", proc.addr);
    let mut ran = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // A named marker is run by the test NAMED gives it; one it does not list would be a
        // block that looks tested and is not.
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        for name in blocks::named_markers(&text) {
            assert!(
                blocks::NAMED.iter().any(|(n, f, _)| *n == name && *f == rel),
                "{rel}: `<!-- tested: {name} -->` is run by no test (common::blocks::NAMED)"
            );
        }
        for (n, block) in tested_blocks(&text, MARKER).iter().enumerate() {
            let name = format!("{} block {}", file.strip_prefix(&root).unwrap().display(), n + 1);
            run(&runnable(block, &base), &home.0, &name);
            ran.push(name);
        }
    }
    // Every named block is where NAMED says (each test also fails if its block is gone).
    for (name, file, test) in blocks::NAMED {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            blocks::named_markers(&text).iter().any(|n| n == name),
            "{file} has no `<!-- tested: {name} -->` block, which {test} runs"
        );
    }
    // The README's "Try it" and "Look inside", and the commands of docs/configuration.md.
    for expected in [
        "README.md block 1",
        "README.md block 2",
        "docs/configuration.md block 1",
    ] {
        assert!(
            ran.iter().any(|r| r == expected),
            "{expected} is not marked tested: {ran:?}"
        );
    }
    drop(proc);
}

/// The `cargo lambda watch` / `invoke` block of docs/aws-mode.md, as written, from the workspace
/// root, with an ingress serving (`cargo run` in the docs is this binary): its data directory is
/// the one the block's functions share (`TOLLGATE_DATA_DIR`, as a user who set it for `cargo
/// run` has it), and the block's own ports are free ones (`echo_port=... api_port=...`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cargo_lambda_block_of_aws_mode_runs_as_written() {
    // The block needs the pinned cargo lambda (it installs it itself when missing, but a test
    // that starts with a clear message is better than a pip error in its output).
    tollgate_testkit::tool("cargo-lambda");
    let root = workspace_root();
    let home = TempDir::new("docs-lambda");
    let data = home.0.join(".tollgate");
    let proc = Proc::spawn(&root, &[("TOLLGATE_DATA_DIR", data.to_str().unwrap())]);
    let block = blocks::with_test_values(&blocks::named_block("lambda-watch"), &format!("http://{}", proc.addr));
    assert!(
        !block.contains("9000") && !block.contains("9001"),
        "the ports of the block are substituted:\n{block}"
    );
    let mut script = blocks::Script::start(&block, &root, &[("TOLLGATE_DATA_DIR", data.to_str().unwrap())]);
    // Generous: each watch builds its function on the first invoke, and requests-api with its
    // embedded feature links the AWS SDK and SQLite (several minutes from a cold target
    // directory on two shared cores).
    let out = script.finish(
        Duration::from_secs(20 * 60),
        "the cargo lambda block of docs/aws-mode.md",
        "the first invoke of each function waits for `cargo run` to build it: is the machine busy, or the build broken? \
         Try `cd functions/requests-api && cargo build --features embedded`",
    );
    // Its stop ended everything it started: the watches and the function processes (which
    // cargo lambda runs in sessions of their own).
    let left = script.leftovers(Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "the block's stop left processes running: {left:?}\n{out}"
    );

    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("request id: "))
        .unwrap_or_else(|| panic!("no request id printed:\n{out}"))
        .to_string();
    assert!(tollgate_core::ids::is_valid_request_id(&id), "{id:?}\n{out}");
    // echo's answer: the ALB response to events/echo-alb-get.json.
    let echo: serde_json::Value = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("statusCode").is_some())
        .unwrap_or_else(|| panic!("no ALB answer from echo:\n{out}"));
    assert_eq!(echo["statusCode"], 200, "{out}");
    let body: serde_json::Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["path"], "/v1/echo/hello", "{out}");
    assert_eq!(body["method"], "GET", "{out}");
    // requests-api found the ingress's record of the block's POST in the shared data directory.
    assert!(
        out.stdout.lines().any(|l| l.trim() == id),
        "requests-api did not list the ingress's record {id}:\n{out}"
    );
    // And the ingress really holds that record: the id is the ingress's, not made up.
    let r = request(proc.addr, "GET", &format!("/v1/requests/{id}"), &[], "").await;
    assert_eq!(r.status, 200, "{id}");
    drop(proc);
}
