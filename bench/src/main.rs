//! `tollgate-bench`: drives the baseline (a bare hyper server) and tollgate embedded, in one
//! run, with the same load generator (wrk, keep-alive connections), after a warm-up, at
//! each concurrency; reports requests/s, p50/p99/p99.9 latency, errors, peak RSS and CPU
//! seconds per 1,000 requests, and tollgate's ratios to the baseline. Then it opens 1,000
//! idle keep-alive connections to each and reads the server's RSS.
//!
//! Run through `bench/run.sh`, which builds the release binaries and installs wrk if needed.

use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
struct Options {
    duration: u64,
    warmup: u64,
    concurrency: Vec<usize>,
    idle_connections: usize,
    bin_dir: PathBuf,
    routes: PathBuf,
    script: PathBuf,
    out: PathBuf,
    aws: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        duration: 10,
        warmup: 3,
        concurrency: vec![1, 64, 256],
        idle_connections: 1000,
        bin_dir: PathBuf::from("target/release"),
        routes: PathBuf::from("routes.toml"),
        script: PathBuf::from("bench/wrk/report.lua"),
        out: PathBuf::from("bench/results"),
        aws: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--aws" {
            o.aws = true;
            i += 1;
            continue;
        }
        let (name, value) = (
            &args[i],
            args.get(i + 1).cloned().ok_or(format!("{} needs a value", args[i]))?,
        );
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{name}: not a number"));
        match name.as_str() {
            "--duration" => o.duration = num(&value)?,
            "--warmup" => o.warmup = num(&value)?,
            "--idle-connections" => o.idle_connections = num(&value)? as usize,
            "--concurrency" => {
                o.concurrency = value
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|_| format!("--concurrency: bad {c:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--bin-dir" => o.bin_dir = value.into(),
            "--routes" => o.routes = value.into(),
            "--script" => o.script = value.into(),
            "--out" => o.out = value.into(),
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    Ok(o)
}

/// A server under test.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    path: &'static str,
    /// The process to measure (the ingress under a launcher script), if not `child`.
    measured_pid: Option<u32>,
    /// Stand-ins to count calls on (aws mode).
    stand_ins: Option<StandIns>,
}

/// Where the aws-mode stand-ins are, to count the calls they served.
#[derive(Clone)]
struct StandIns {
    dataapi: SocketAddr,
    s3: SocketAddr,
    bucket: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.measured_pid.unwrap_or_else(|| self.child.id())
    }
}

/// A plain HTTP/1.1 GET on loopback (the stand-ins' own counters).
fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

impl StandIns {
    /// Data API calls served so far.
    fn data_api_calls(&self) -> u64 {
        let body = http_get(self.dataapi, "/_dataapi-local/stats").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_object()
            .map(|m| m.values().filter_map(|x| x.as_u64()).sum())
            .unwrap_or(0)
    }

    /// Objects in the audit bucket (each created by one PUT).
    fn s3_objects(&self) -> u64 {
        let mut count = 0;
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{}?list-type=2&max-keys=1000", self.bucket);
            if let Some(t) = &token {
                path.push_str(&format!(
                    "&continuation-token={}",
                    t.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
                ));
            }
            let body = http_get(self.s3, &path).unwrap_or_default();
            // Chunked or not, the keys are plain <Key> elements.
            count += body.matches("<Key>").count() as u64;
            token = body
                .split_once("<NextContinuationToken>")
                .and_then(|(_, r)| r.split_once("</NextContinuationToken>"))
                .map(|(t, _)| t.to_string());
            if token.is_none() {
                return count;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a process and waits for the line that names its address; the rest of its output
/// goes to `log`.
fn spawn(
    mut cmd: Command,
    log: &Path,
    ready: &str,
    parse: fn(&str) -> Option<SocketAddr>,
) -> Result<(Child, SocketAddr), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(ready) => match parse(&line) {
                Some(a) => break a,
                None => return Err(format!("cannot read the address from {line:?}")),
            },
            Some(Ok(_)) => {}
            _ => return Err(format!("{cmd:?} exited before it was ready")),
        }
    };
    let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok((child, addr))
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: indexes 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A line of /proc/<pid>/status in MiB (VmRSS, VmHWM).
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(serde::Deserialize)]
struct WrkReport {
    requests: u64,
    duration_us: u64,
    errors: u64,
    non_2xx: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

fn wrk(o: &Options, addr: SocketAddr, path: &str, connections: usize, seconds: u64) -> Result<WrkReport, String> {
    let threads = connections.min(2);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .args(["--timeout", "5s", "-s"])
        .arg(&o.script)
        .arg(format!("http://{addr}{path}"))
        .output()
        .map_err(|e| format!("wrk: {e} (is wrk installed? bench/run.sh installs it)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WRKJSON "))
        .ok_or_else(|| format!("wrk printed no summary: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    serde_json::from_str(line).map_err(|e| format!("wrk summary {line}: {e}"))
}

#[derive(Serialize, Clone)]
struct Run {
    target: &'static str,
    concurrency: usize,
    requests: u64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    errors: u64,
    non_2xx: u64,
    cpu_s_per_1k: f64,
    peak_rss_mib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_api_calls_per_1k: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_puts_per_1k: Option<f64>,
}

#[derive(Serialize)]
struct Ratio {
    concurrency: usize,
    throughput_ratio: f64,
    p99_ratio: f64,
    cpu_per_request_ratio: f64,
}

#[derive(Serialize)]
struct Idle {
    target: &'static str,
    connections: usize,
    rss_before_mib: f64,
    rss_with_idle_mib: f64,
    peak_rss_mib: f64,
}

#[derive(Serialize)]
struct Report {
    started_unix: u64,
    machine: Machine,
    duration_s: u64,
    warmup_s: u64,
    load_generator: String,
    runs: Vec<Run>,
    ratios: Vec<Ratio>,
    /// What a write-ahead route (`record = "before"`: one more durable commit per request)
    /// costs against the default (`record = "after"`), same binary, same load, same run.
    write_ahead_vs_after: Vec<Ratio>,
    idle: Vec<Idle>,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
}

fn measure(o: &Options, s: &Server) -> Result<Vec<Run>, String> {
    let pid = s.pid();
    let mut runs = Vec::new();
    for &c in &o.concurrency {
        wrk(o, s.addr, s.path, c, o.warmup)?;
        // Let the warm-up's audit batches settle before counting.
        if s.stand_ins.is_some() {
            std::thread::sleep(Duration::from_secs(2));
        }
        let counts0 = s.stand_ins.as_ref().map(|x| (x.data_api_calls(), x.s3_objects()));
        let cpu0 = cpu_seconds(pid);
        let r = wrk(o, s.addr, s.path, c, o.duration)?;
        let cpu = cpu_seconds(pid) - cpu0;
        let counts = match (&s.stand_ins, counts0) {
            (Some(x), Some((calls0, puts0))) => {
                // Audit batches close within a second of the run's end.
                std::thread::sleep(Duration::from_secs(2));
                let per_1k = |n: u64| {
                    if r.requests > 0 {
                        n as f64 / r.requests as f64 * 1000.0
                    } else {
                        0.0
                    }
                };
                Some((per_1k(x.data_api_calls() - calls0), per_1k(x.s3_objects() - puts0)))
            }
            _ => None,
        };
        let secs = r.duration_us as f64 / 1e6;
        let run = Run {
            target: s.name,
            concurrency: c,
            requests: r.requests,
            requests_per_s: r.requests as f64 / secs,
            p50_ms: r.p50_us as f64 / 1000.0,
            p99_ms: r.p99_us as f64 / 1000.0,
            p999_ms: r.p999_us as f64 / 1000.0,
            max_ms: r.max_us as f64 / 1000.0,
            errors: r.errors,
            non_2xx: r.non_2xx,
            cpu_s_per_1k: if r.requests > 0 {
                cpu / r.requests as f64 * 1000.0
            } else {
                0.0
            },
            peak_rss_mib: status_mib(pid, "VmHWM:"),
            data_api_calls_per_1k: counts.map(|c| c.0),
            s3_puts_per_1k: counts.map(|c| c.1),
        };
        eprintln!(
            "  {:<18} c={:<4} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  errors {}",
            run.target, c, run.requests_per_s, run.p50_ms, run.p99_ms, run.p999_ms, run.errors
        );
        if let (Some(calls), Some(puts)) = (run.data_api_calls_per_1k, run.s3_puts_per_1k) {
            eprintln!(
                "  {:<18}        {calls:.1} Data API calls and {puts:.1} S3 PUTs per 1,000 requests",
                ""
            );
        }
        runs.push(run);
    }
    Ok(runs)
}

/// Opens `n` keep-alive connections, one request each, holds them idle and reads the RSS.
fn idle(s: &Server, n: usize) -> Result<Idle, String> {
    let pid = s.child.id();
    let before = status_mib(pid, "VmRSS:");
    let mut conns = Vec::with_capacity(n);
    let request = format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", s.path);
    for i in 0..n {
        let mut c = TcpStream::connect(s.addr).map_err(|e| format!("connection {i}: {e}"))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        c.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let got = c.read(&mut buf).map_err(|e| format!("connection {i}: {e}"))?;
        if !buf[..got].starts_with(b"HTTP/1.1 200") {
            return Err(format!("connection {i}: {}", String::from_utf8_lossy(&buf[..got])));
        }
        conns.push(c);
    }
    std::thread::sleep(Duration::from_secs(2));
    let with = status_mib(pid, "VmRSS:");
    let peak = status_mib(pid, "VmHWM:");
    drop(conns);
    Ok(Idle {
        target: s.name,
        connections: n,
        rss_before_mib: before,
        rss_with_idle_mib: with,
        peak_rss_mib: peak,
    })
}

fn start_baseline(o: &Options, logs: &Path) -> Result<Server, String> {
    let mut cmd = Command::new(o.bin_dir.join("baseline"));
    cmd.arg("127.0.0.1:0");
    let (child, addr) = spawn(cmd, &logs.join("baseline.log"), "listening on", |l| {
        l.strip_prefix("listening on ").and_then(|a| a.trim().parse().ok())
    })?;
    Ok(Server {
        name: "baseline",
        child,
        addr,
        path: "/v1/echo",
        measured_pid: None,
        stand_ins: None,
    })
}

fn start_tollgate(o: &Options, logs: &Path, data: &Path) -> Result<Server, String> {
    start_tollgate_with(o, logs, data, &o.routes, "tollgate-embedded")
}

/// The same measured route (`/v1/echo`) as a write-ahead route: an intent is committed before
/// echo runs, the record after.
fn start_tollgate_write_ahead(o: &Options, logs: &Path, data: &Path) -> Result<Server, String> {
    let routes = logs.join("routes-write-ahead.toml");
    std::fs::write(
        &routes,
        "[[routes]]\npath = \"/v1/echo\"\nmethods = [\"ANY\"]\nfunction = \"echo\"\ntimeout_ms = 10000\nrecord = \"before\"\nauth = \"none\"\n",
    )
    .map_err(|e| e.to_string())?;
    start_tollgate_with(o, logs, data, &routes, "tollgate-write-ahead")
}

fn start_tollgate_with(
    o: &Options,
    logs: &Path,
    data: &Path,
    routes: &Path,
    name: &'static str,
) -> Result<Server, String> {
    let mut cmd = Command::new(o.bin_dir.join("tollgate"));
    // Its real defaults, but a fresh data dir and a free port.
    cmd.env_remove("RUST_LOG")
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .env("TOLLGATE_DATA_DIR", data)
        .env("TOLLGATE_ROUTES", routes);
    let (child, addr) = spawn(cmd, &logs.join(format!("{name}.log")), "tollgate ready", |l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v["listen"].as_str()?.parse().ok()
    })?;
    Ok(Server {
        name,
        child,
        addr,
        path: "/v1/echo",
        measured_pid: None,
        stand_ins: None,
    })
}

/// The first descendant of `pid` whose command is `name`.
fn descendant(pid: u32, name: &str) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
        let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
        if comm.trim() == name {
            return Some(child);
        }
        if let Some(found) = descendant(child, name) {
            return Some(found);
        }
    }
    None
}

/// tollgate in aws mode against the local stand-ins (scripts/aws-local.sh, release build),
/// with the settings an aws deployment would use for batching.
fn start_tollgate_aws(logs: &Path) -> Result<Server, String> {
    let listen = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("bash");
    cmd.arg("scripts/aws-local.sh")
        .env_remove("RUST_LOG")
        .env("TOLLGATE_PROFILE", "release")
        .env("TOLLGATE_LISTEN", listen.to_string())
        .env("TOLLGATE_COMMIT_LINGER_MS", "200")
        .env("TOLLGATE_COMMIT_MAX_BATCH", "1000")
        .env("TOLLGATE_COMMIT_MAX_INFLIGHT", "4")
        .env("TOLLGATE_AUDIT_BATCH_MAX_AGE_MS", "1000")
        .stderr(Stdio::piped());
    let mut child = cmd.stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let err_log = logs.join("aws-stack.err");
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(err_log).ok();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("stand-ins: ") {
                let _ = tx.send(rest.to_string());
            }
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("tollgate ready") => {
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
                break v["listen"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .ok_or("no listen address")?;
            }
            Some(Ok(_)) => {}
            _ => {
                return Err(format!(
                    "the aws stack did not start; see {}",
                    logs.join("aws-stack.err").display()
                ))
            }
        }
    };
    let mut file = std::fs::File::create(logs.join("tollgate-aws.log")).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    let info = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "stand-in endpoints not announced")?;
    let field = |k: &str| {
        info.split_whitespace()
            .find_map(|p| p.strip_prefix(k))
            .map(String::from)
    };
    let host = |u: Option<String>| u.and_then(|u| u.trim_start_matches("http://").parse::<SocketAddr>().ok());
    let stand_ins = StandIns {
        dataapi: host(field("dataapi=")).ok_or("dataapi endpoint")?,
        s3: host(field("s3=")).ok_or("s3 endpoint")?,
        bucket: field("bucket=").ok_or("bucket")?,
    };
    let measured_pid = descendant(child.id(), "tollgate");
    Ok(Server {
        name: "tollgate-aws-local",
        child,
        addr,
        path: "/v1/echo",
        measured_pid,
        stand_ins: Some(stand_ins),
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("tollgate-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let o = options()?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let work = std::env::temp_dir().join(format!("tollgate-bench-{started}-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    let mut idles = Vec::new();

    eprintln!("baseline (bare hyper):");
    runs.extend(measure(&o, &start_baseline(&o, &work)?)?);
    eprintln!("tollgate embedded (echo route, durable recording, default settings):");
    runs.extend(measure(&o, &start_tollgate(&o, &work, &work.join("data"))?)?);
    eprintln!("tollgate embedded, the echo route write-ahead (record = \"before\"):");
    runs.extend(measure(
        &o,
        &start_tollgate_write_ahead(&o, &work, &work.join("data-wa"))?,
    )?);
    if o.aws {
        eprintln!("tollgate aws mode against the local stand-ins (Data API, S3, Lambda emulator):");
        // The Lambda emulator runs one runtime process per function, one invocation at a time:
        // past 64 connections it stalls (measured: 24 requests in 8 s at 256), so the aws-mode
        // run stops at 64.
        let aws = Options {
            concurrency: o.concurrency.iter().copied().filter(|c| *c <= 64).collect(),
            ..o.clone()
        };
        runs.extend(measure(&aws, &start_tollgate_aws(&work)?)?);
    }
    // Idle connections on fresh processes, so the figure is what idle connections cost.
    eprintln!("{} idle keep-alive connections:", o.idle_connections);
    idles.push(idle(&start_baseline(&o, &work)?, o.idle_connections)?);
    idles.push(idle(
        &start_tollgate(&o, &work, &work.join("data-idle"))?,
        o.idle_connections,
    )?);

    let ratios_of = |candidate: &str, base: &str| -> Vec<Ratio> {
        o.concurrency
            .iter()
            .filter_map(|&c| {
                let b = runs.iter().find(|r| r.target == base && r.concurrency == c)?;
                let t = runs.iter().find(|r| r.target == candidate && r.concurrency == c)?;
                Some(Ratio {
                    concurrency: c,
                    throughput_ratio: t.requests_per_s / b.requests_per_s,
                    p99_ratio: t.p99_ms / b.p99_ms,
                    cpu_per_request_ratio: t.cpu_s_per_1k / b.cpu_s_per_1k,
                })
            })
            .collect()
    };
    let ratios = ratios_of("tollgate-embedded", "baseline");
    let write_ahead_vs_after = ratios_of("tollgate-write-ahead", "tollgate-embedded");
    let report = Report {
        started_unix: started,
        machine: Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        },
        duration_s: o.duration,
        warmup_s: o.warmup,
        load_generator: "wrk (keep-alive), POST 14-byte body".into(),
        runs,
        ratios,
        write_ahead_vs_after,
        idle: idles,
    };
    print_table(&report);
    std::fs::create_dir_all(&o.out).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    for name in [format!("{started}.json"), "latest.json".to_string()] {
        std::fs::write(o.out.join(name), &json).map_err(|e| e.to_string())?;
    }
    println!("\nresults: {}", o.out.join(format!("{started}.json")).display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn print_ratios(title: &str, ratios: &[Ratio]) {
    println!("\n| conc | {title} throughput | p99 ratio | CPU per request ratio |\n| ---: | ---: | ---: | ---: |");
    for x in ratios {
        println!(
            "| {} | {:.1}% | {:.2}x | {:.2}x |",
            x.concurrency,
            x.throughput_ratio * 100.0,
            x.p99_ratio,
            x.cpu_per_request_ratio
        );
    }
}

fn print_table(r: &Report) {
    println!(
        "\n| target | conc | req/s | p50 ms | p99 ms | p99.9 ms | errors | CPU s / 1k req | peak RSS MiB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for x in &r.runs {
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.4} | {:.1} |",
            x.target,
            x.concurrency,
            x.requests_per_s,
            x.p50_ms,
            x.p99_ms,
            x.p999_ms,
            x.errors,
            x.cpu_s_per_1k,
            x.peak_rss_mib
        );
    }
    let aws: Vec<&Run> = r.runs.iter().filter(|x| x.data_api_calls_per_1k.is_some()).collect();
    if !aws.is_empty() {
        println!(
            "\n| aws mode conc | req/s | Data API calls / 1k req | S3 PUTs / 1k req |\n| ---: | ---: | ---: | ---: |"
        );
        for x in aws {
            println!(
                "| {} | {:.0} | {:.1} | {:.1} |",
                x.concurrency,
                x.requests_per_s,
                x.data_api_calls_per_1k.unwrap_or(0.0),
                x.s3_puts_per_1k.unwrap_or(0.0)
            );
        }
    }
    print_ratios("tollgate / baseline", &r.ratios);
    print_ratios("write-ahead / after", &r.write_ahead_vs_after);
    println!("\n| target | idle keep-alive connections | RSS before MiB | RSS with them open MiB | peak RSS MiB |\n| --- | ---: | ---: | ---: | ---: |");
    for x in &r.idle {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            x.target, x.connections, x.rss_before_mib, x.rss_with_idle_mib, x.peak_rss_mib
        );
    }
}
