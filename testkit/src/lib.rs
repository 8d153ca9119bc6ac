//! Stand-ins the tests start themselves. Each fails loudly (panics with the reason) when it
//! cannot start: a test that needs PostgreSQL never passes silently without it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod contract;
pub mod faults;
pub mod kms_local;
#[cfg(feature = "trail")]
pub mod trail;

/// Where Debian's PostgreSQL binaries live (`apt-get install -y postgresql`).
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TOLLGATE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL binaries not found under /usr/lib/postgresql (install with `apt-get install -y postgresql`, or set TOLLGATE_PG_BIN)")
    })
}

/// The tools directory `scripts/prereqs.sh` installs the pinned Python tools into, each in its
/// own virtual environment, with their commands in `bin/` (the same default as the scripts).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOLLGATE_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    cache.join("tollgate").join("tools")
}

/// The command `name` of a pinned tool (`tools/python/*.in`), from the tools directory only:
/// never whatever a global site-packages put on `PATH`. Panics, naming the command that
/// installs it, when it is not there.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    assert!(
        path.is_file(),
        "{name} is not installed in {}: run `bash scripts/test.sh` (or `source scripts/prereqs.sh && ensure_tool <tool>`), which installs the pinned tools",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `child` accepts connections on `port` of 127.0.0.1. False when the child exits
/// first, or is gone just after the port answered: then the port was taken by another process
/// between `free_port` and the child's bind, and what answered is not ours. Panics after
/// `limit` with `what` in the message.
pub fn wait_until_serving(child: &mut Child, port: u16, limit: Duration, what: &str) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(200));
            return child.try_wait().ok().flatten().is_none();
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A private PostgreSQL cluster in a temporary directory, on a free port, with trust auth for
/// user `postgres`. Stopped and removed when dropped.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Postgres {
    /// Starts a new cluster; panics with the reason if it cannot.
    pub fn start() -> Self {
        let bin = pg_bin_dir();
        let dir = std::env::temp_dir().join(format!("tollgate-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir for PostgreSQL");
        // initdb refuses to run as root: run the server as the postgres user then.
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .map(|s| s.success());
            assert!(matches!(ok, Ok(true)), "chown of {} to postgres failed", dir.display());
        }
        let mut pg = Self {
            dir: dir.clone(),
            bin,
            as_postgres,
            port: free_port(),
        };
        let data = dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // A free port can be taken by another test between `free_port` and the server's bind:
        // then the server says so in its log, and it is started again on another port.
        for attempt in 1.. {
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
                pg.port,
                dir.display()
            );
            let log = dir.join("log");
            let _ = std::fs::remove_file(&log);
            let args = [
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ];
            match pg.try_run("pg_ctl", &args) {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("Address already in use") => pg.port = free_port(),
                Err(e) => panic!("{e}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not listen on {}", pg.port);
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        if let Err(e) = self.try_run(tool, args) {
            panic!("{e}");
        }
    }

    /// A PostgreSQL tool's command, run as the postgres user when we are root.
    fn tool(&self, tool: &str, args: &[&str]) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .tool(tool, args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join(tool).display()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        ))
    }

    /// Runs SQL through `psql` (for set-up in tests).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let args = ["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"];
        let _ = self.tool("pg_ctl", &args).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An S3-compatible server on loopback: moto's server (the pinned `moto` tool), in
/// memory. Stopped when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// Its endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
}

impl S3Server {
    /// Starts one; panics with the reason if it cannot. (moto serves every AWS API it
    /// emulates on the one endpoint: S3.)
    pub fn start() -> Self {
        // A free port can be taken by another test before moto binds it: moto then exits, and
        // it is started again on another port. Only a server still running after it answers
        // is ours.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(tool("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start moto_server ({e})"));
            if wait_until_serving(&mut child, port, Duration::from_secs(30), "moto_server") {
                return Self {
                    child,
                    endpoint: format!("http://127.0.0.1:{port}"),
                };
            }
        }
        panic!("moto_server could not bind a free port in 5 attempts");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `body` is tollgate's RFC 9457 problem for `code`, answered with `status`, for the
/// request `request_id`: every standard member, typed as the RFC says (`type` and `instance`
/// URI references, `status` the response's own), and the `code` and `request_id` extensions.
pub fn assert_problem(body: &serde_json::Value, status: u16, code: &str, request_id: &str) {
    use tollgate_core::apierror::{ErrorCode, INSTANCE_PREFIX, PROBLEM_TYPE_PREFIX};
    let known = ErrorCode::from_code(code).unwrap_or_else(|| panic!("{code} is not in the error table"));
    assert_eq!(body["type"], format!("{PROBLEM_TYPE_PREFIX}{code}"), "{body}");
    assert_eq!(body["title"], known.message(), "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(known.status(), status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert_eq!(body["instance"], format!("{INSTANCE_PREFIX}{request_id}"), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["request_id"], request_id, "{body}");
    let members: Vec<&String> = body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(
        members.len(),
        7,
        "only the RFC 9457 members and our two extensions: {body}"
    );
}
