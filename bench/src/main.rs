//! `tollgate-bench`: drives the baseline (a bare hyper server) and tollgate embedded, in one
//! run, with the same load generator (wrk, keep-alive connections), after a warm-up, at
//! each concurrency; reports requests/s, p50/p99/p99.9 latency, errors, peak RSS and CPU
//! seconds per 1,000 requests, and tollgate's ratios to the baseline. Then it opens 1,000
//! idle keep-alive connections to each and reads the server's RSS.
//!
//! Run through `bench/run.sh`, which builds the release binaries and installs wrk if needed.

use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Options {
    duration: u64,
    warmup: u64,
    concurrency: Vec<usize>,
    idle_connections: usize,
    bin_dir: PathBuf,
    routes: PathBuf,
    script: PathBuf,
    out: PathBuf,
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
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
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
    idle: Vec<Idle>,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
}

fn measure(o: &Options, s: &Server) -> Result<Vec<Run>, String> {
    let pid = s.child.id();
    let mut runs = Vec::new();
    for &c in &o.concurrency {
        wrk(o, s.addr, s.path, c, o.warmup)?;
        let cpu0 = cpu_seconds(pid);
        let r = wrk(o, s.addr, s.path, c, o.duration)?;
        let cpu = cpu_seconds(pid) - cpu0;
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
        };
        eprintln!(
            "  {:<18} c={:<4} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  errors {}",
            run.target, c, run.requests_per_s, run.p50_ms, run.p99_ms, run.p999_ms, run.errors
        );
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
    })
}

fn start_tollgate(o: &Options, logs: &Path, data: &Path) -> Result<Server, String> {
    let mut cmd = Command::new(o.bin_dir.join("tollgate"));
    // Its real defaults, but a fresh data dir and a free port.
    cmd.env_remove("RUST_LOG")
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .env("TOLLGATE_DATA_DIR", data)
        .env("TOLLGATE_ROUTES", &o.routes);
    let (child, addr) = spawn(cmd, &logs.join("tollgate.log"), "tollgate ready", |l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v["listen"].as_str()?.parse().ok()
    })?;
    Ok(Server {
        name: "tollgate-embedded",
        child,
        addr,
        path: "/v1/echo",
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
    // Idle connections on fresh processes, so the figure is what idle connections cost.
    eprintln!("{} idle keep-alive connections:", o.idle_connections);
    idles.push(idle(&start_baseline(&o, &work)?, o.idle_connections)?);
    idles.push(idle(
        &start_tollgate(&o, &work, &work.join("data-idle"))?,
        o.idle_connections,
    )?);

    let ratios: Vec<Ratio> = o
        .concurrency
        .iter()
        .filter_map(|&c| {
            let b = runs.iter().find(|r| r.target == "baseline" && r.concurrency == c)?;
            let t = runs
                .iter()
                .find(|r| r.target == "tollgate-embedded" && r.concurrency == c)?;
            Some(Ratio {
                concurrency: c,
                throughput_ratio: t.requests_per_s / b.requests_per_s,
                p99_ratio: t.p99_ms / b.p99_ms,
                cpu_per_request_ratio: t.cpu_s_per_1k / b.cpu_s_per_1k,
            })
        })
        .collect();
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
    println!("\n| conc | tollgate / baseline throughput | p99 ratio | CPU per request ratio |\n| ---: | ---: | ---: | ---: |");
    for x in &r.ratios {
        println!(
            "| {} | {:.1}% | {:.2}x | {:.2}x |",
            x.concurrency,
            x.throughput_ratio * 100.0,
            x.p99_ratio,
            x.cpu_per_request_ratio
        );
    }
    println!("\n| target | idle keep-alive connections | RSS before MiB | RSS with them open MiB | peak RSS MiB |\n| --- | ---: | ---: | ---: | ---: |");
    for x in &r.idle {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            x.target, x.connections, x.rss_before_mib, x.rss_with_idle_mib, x.peak_rss_mib
        );
    }
}
