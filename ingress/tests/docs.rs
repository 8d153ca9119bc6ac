//! The documented command lines work as written: every ```sh block marked `<!-- tested -->` in
//! the README and in docs/ is extracted (never retyped here) and run with bash against a real
//! `tollgate` serving a fresh data directory, in order, failing on the first command that fails.
//! Three substitutions only: `base=http://127.0.0.1:8080` gets the test's port, and `cargo run
//! -q --` and a leading `tollgate` become the binary under test.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const MARKER: &str = "<!-- tested -->";

/// The tested blocks of one markdown file, in order.
fn tested_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(MARKER) {
        rest = &rest[i + MARKER.len()..];
        let open = rest.find("```sh\n").expect("a ```sh block follows the marker");
        assert!(rest[..open].trim().is_empty(), "the marker is right before its block");
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("the block ends");
        out.push(body[..close].to_string());
        rest = &body[close..];
    }
    out
}

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
        for (n, block) in tested_blocks(&text).iter().enumerate() {
            let name = format!("{} block {}", file.strip_prefix(&root).unwrap().display(), n + 1);
            run(&runnable(block, &base), &home.0, &name);
            ran.push(name);
        }
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
