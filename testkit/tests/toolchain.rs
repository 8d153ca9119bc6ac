//! One toolchain and pinned tools: the Rust version is written once (rust-toolchain.toml), the
//! workspace's `rust-version` is what Cargo.lock really needs, and every Python tool is pinned
//! and used from its own environment (scripts/check-tools.py, whose rules are self-tested).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn version(s: &str) -> Vec<u64> {
    s.split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("version {s}")))
        .collect()
}

fn toolchain_channel() -> String {
    let file: toml::Table = toml::from_str(&read("rust-toolchain.toml")).unwrap();
    file["toolchain"]["channel"].as_str().unwrap().to_string()
}

#[test]
fn rust_version_is_what_the_lockfile_needs() {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let (needed, by) = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !members.contains(&p["id"].as_str().unwrap()))
        .filter_map(|p| {
            Some((
                version(p["rust_version"].as_str()?),
                p["name"].as_str().unwrap().to_string(),
            ))
        })
        .max()
        .expect("dependencies with a rust-version");
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let declared = manifest["workspace"]["package"]["rust-version"].as_str().unwrap();
    assert_eq!(
        version(declared),
        needed,
        "Cargo.toml's rust-version must be what {by} needs"
    );
    let channel = toolchain_channel();
    assert!(
        version(&channel) >= needed,
        "rust-toolchain.toml's {channel} is older than {declared}"
    );
}

#[test]
fn the_rust_version_is_written_only_in_rust_toolchain_toml() {
    let channel = toolchain_channel();
    let file: toml::Table = toml::from_str(&read("rust-toolchain.toml")).unwrap();
    let list = |key: &str| -> Vec<String> {
        file["toolchain"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(list("components").contains(&"rustfmt".into()) && list("components").contains(&"clippy".into()));
    assert!(
        list("targets").contains(&"aarch64-unknown-linux-gnu".into()),
        "the Lambda target"
    );
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("COPY rust-toolchain.toml"),
        "the Dockerfile installs rust-toolchain.toml's toolchain"
    );
    for (name, text) in [
        ("Dockerfile", dockerfile.clone()),
        (".github/workflows/ci.yml", read(".github/workflows/ci.yml")),
        (".github/workflows/deploy.yml", read(".github/workflows/deploy.yml")),
        ("scripts/prereqs.sh", read("scripts/prereqs.sh")),
        ("README.md", read("README.md")),
    ] {
        let short = channel.rsplit_once('.').map(|(a, _)| a).unwrap_or(&channel);
        for written in [channel.as_str(), short] {
            for context in [
                format!("rust:{written}"),
                format!("toolchain install {written}"),
                format!("default {written}"),
                format!("RUST_VERSION={written}"),
            ] {
                assert!(
                    !text.contains(&context),
                    "{name} writes the Rust version ({context}); use rust-toolchain.toml"
                );
            }
        }
    }
    for workflow in [".github/workflows/ci.yml", ".github/workflows/deploy.yml"] {
        assert!(
            read(workflow).contains("rustup toolchain install #"),
            "{workflow} installs rust-toolchain.toml's toolchain"
        );
    }
}

fn check_tools(arg: Option<&str>) {
    let out = Command::new("python3")
        .current_dir(root())
        .arg("-S")
        .arg("scripts/check-tools.py")
        .args(arg)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-tools {arg:?}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_python_tool_is_pinned_and_used_from_its_own_environment() {
    check_tools(None);
}

#[test]
fn the_tool_rules_fail_on_a_tree_that_breaks_them() {
    check_tools(Some("--self-test"));
}
