//! The documented command blocks, extracted from the markdown (never retyped in a test) and run
//! with bash. A block is marked by an HTML comment right before its ```sh fence:
//!
//! * `<!-- tested -->`: run by `docs.rs` in a scratch directory against a live ingress.
//! * `<!-- tested: NAME -->`: run from the workspace root by the one test that names it (see
//!   [`NAMED`]); these start processes of their own (`cargo lambda watch`, a generator), so they
//!   run under [`Script`], which bounds their time and ends everything they started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MARKER: &str = "<!-- tested -->";

/// Every `<!-- tested: NAME -->` block, with the file it must be in and the test that runs it.
/// `docs.rs` fails on a named marker that is not here, so no block is marked and left unrun.
pub const NAMED: &[(&str, &str, &str)] = &[
    ("lambda-watch", "docs/aws-mode.md", "ingress/tests/docs.rs"),
    ("python-client", "docs/api.md", "ingress/tests/python_client.rs"),
];

/// The blocks of `text` marked exactly `marker`, in order.
pub fn tested_blocks(text: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let open = rest.find("```sh\n").expect("a ```sh block follows the marker");
        assert!(
            rest[..open].trim().is_empty(),
            "the marker {marker} is right before its block"
        );
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("the block ends");
        out.push(body[..close].to_string());
        rest = &body[close..];
    }
    out
}

/// The names of every `<!-- tested: NAME -->` marker in `text`.
pub fn named_markers(text: &str) -> Vec<String> {
    text.match_indices("<!-- tested: ")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest[..rest.find(" -->").expect("the marker ends with -->")].to_string()
        })
        .collect()
}

/// The one block marked `<!-- tested: NAME -->`, from the file [`NAMED`] gives it.
pub fn named_block(name: &str) -> String {
    let (_, file, _) = NAMED
        .iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not in blocks::NAMED"));
    let text = std::fs::read_to_string(super::workspace_root().join(file)).unwrap();
    let mut blocks = tested_blocks(&text, &format!("<!-- tested: {name} -->"));
    assert_eq!(blocks.len(), 1, "{file} has one block marked `<!-- tested: {name} -->`");
    blocks.pop().unwrap()
}

/// The block with the test's own values on the lines that name a place to talk to, the only
/// lines a test may change: `base=http://127.0.0.1:8080` becomes `base`, and a line of
/// `NAME_port=NUMBER` assignments gets free ports (a fixed port may be someone else's here).
pub fn with_test_values(block: &str, base: &str) -> String {
    block
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split('#').next().unwrap().split_whitespace().collect();
            if l.trim() == "base=http://127.0.0.1:8080" {
                format!("base={base}")
            } else if !words.is_empty()
                && words.iter().all(|w| {
                    w.split_once('=').is_some_and(|(k, v)| {
                        k.ends_with("_port") && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
                    })
                })
            {
                let ports: Vec<String> = words
                    .iter()
                    .map(|w| format!("{}={}", w.split_once('=').unwrap().0, tollgate_testkit::free_port()))
                    .collect();
                ports.join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a finished block printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// A block run by `bash -euo pipefail`, every process it starts tagged with an environment
/// variable unique to this run. Processes can leave the tree (`cargo lambda watch` starts each
/// function in a session of its own; `set -m` jobs get process groups of their own; an orphan
/// is re-parented to init), but none drops its environment, so the tag finds them all: after
/// the block, [`Script::leftovers`] are what its own stop did not end, and drop ends them
/// whatever happened (a failed assertion, a timeout, a panic).
pub struct Script {
    child: Child,
    tag: String,
    dir: super::TempDir,
}

const TAG: &str = "TOLLGATE_TEST_BLOCK";

impl Script {
    /// Starts `block` in `cwd` with `env` added. Its output goes to files, not pipes: a
    /// process left behind holding a pipe open would keep a reader waiting forever.
    pub fn start(block: &str, cwd: &Path, env: &[(&str, &str)]) -> Self {
        let dir = super::TempDir::new("block");
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let child = Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .current_dir(cwd)
            .envs(env.iter().copied())
            .env(TAG, &tag)
            // mktemp and friends write under the test's directory, removed with it.
            .env("TMPDIR", &dir.0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.0.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.0.join("stderr")).unwrap())
            .spawn()
            .expect("bash runs");
        Self { child, tag, dir }
    }

    pub fn output(&self) -> Output {
        let read =
            |f: &str| String::from_utf8_lossy(&std::fs::read(self.dir.0.join(f)).unwrap_or_default()).into_owned();
        Output {
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }

    /// Waits for the block to end, at most `limit`; panics naming `what` and `why_slow` when
    /// it takes longer (everything it started is ended by drop), or when it fails.
    pub fn finish(&mut self, limit: Duration, what: &str, why_slow: &str) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for bash") {
                break status;
            }
            if Instant::now() >= deadline {
                self.end_all();
                panic!(
                    "{what} did not finish within {} s ({why_slow}); everything it started was killed.\n{}",
                    limit.as_secs(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let out = self.output();
        assert!(status.success(), "{what} failed ({status}):\n{out}");
        out
    }

    /// The processes of this run still alive after `grace`: pid and command line.
    pub fn leftovers(&self, grace: Duration) -> Vec<(u32, String)> {
        let deadline = Instant::now() + grace;
        loop {
            let left = tagged(&self.tag);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ends every process of this run: stopped first (so none starts another while the rest
    /// are found), then killed.
    fn end_all(&mut self) {
        let _ = self.child.kill();
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let found: Vec<u32> = tagged(&self.tag)
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| !seen.contains(p))
                .collect();
            if found.is_empty() {
                break;
            }
            signal("STOP", &found);
            seen.extend(found);
        }
        let all: Vec<u32> = seen.into_iter().collect();
        signal("KILL", &all);
        signal("CONT", &all);
        let _ = self.child.wait();
    }

    /// Where the block's files are (its TMPDIR).
    pub fn dir(&self) -> PathBuf {
        self.dir.0.clone()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.end_all();
    }
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Live processes (zombies left out) whose environment holds `TOLLGATE_TEST_BLOCK=tag`.
fn tagged(tag: &str) -> Vec<(u32, String)> {
    let needle = format!("{TAG}={tag}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .map(|(_, s)| s.chars().next().unwrap_or('?'))
            .unwrap_or('?');
        if state == 'Z' || state == 'X' {
            continue;
        }
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        out.push((pid, cmd.trim().to_string()));
    }
    out
}
