//! `receipt-cost`: what a receipt costs the server (issue 15 item 4: <= 3 us of CPU per
//! request, amortized, at realistic load), against a running tollgate.
//!
//! Open loop, as `tlog-proof-latency`: `/v1/echo` requests are scheduled at a fixed arrival
//! rate (request `i` is due at `start + i / rate`) whatever the answers do, and a latency
//! counts from the request's due time, so a server that falls behind shows its queue. With
//! `--receipt` every request sends `Prefer: tollgate-receipt` and every answer must carry a
//! `Tollgate-Receipt` header (a run with a missing one fails); without it none may.
//!
//! The server's CPU (utime + stime from `/proc/<pid>/stat`) is read when the measured window
//! starts and when it ends; CPU per request is that difference over the requests due in the
//! window. Distinct signed statements (a receipt header's middle part) are counted, so the
//! report says how many receipts shared one signature. Up to `--keep-receipts` receipts are
//! written to a directory for `tollgate verify-receipt`.
//!
//! Run through `bench/receipt-cost.sh`, which runs the server with and without receipts in
//! one run and reports the difference.

use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
struct Options {
    addr: SocketAddr,
    rate: u64,
    duration: u64,
    warmup: u64,
    connections: usize,
    receipt: bool,
    server_pid: u32,
    keep_receipts: usize,
    keep_dir: Option<PathBuf>,
    out: Option<PathBuf>,
    label: String,
}

const USAGE: &str = "receipt-cost --addr HOST:PORT --server-pid PID [--receipt] [--rate 1000] [--duration 20] \
     [--warmup 5] [--connections 64] [--keep-receipts N --keep-dir DIR] [--out FILE] [--label TEXT]";

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        rate: 1000,
        duration: 20,
        warmup: 5,
        connections: 64,
        receipt: false,
        server_pid: 0,
        keep_receipts: 0,
        keep_dir: None,
        out: None,
        label: String::new(),
    };
    let (mut addr, mut pid) = (None, None);
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--receipt" {
            o.receipt = true;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: not a number: {v:?}"));
        match flag {
            "--addr" => addr = Some(value.parse().map_err(|_| format!("--addr: bad address {value:?}"))?),
            "--server-pid" => pid = Some(num(value)? as u32),
            "--rate" => o.rate = num(value)?.max(1),
            "--duration" => o.duration = num(value)?.max(1),
            "--warmup" => o.warmup = num(value)?,
            "--connections" => o.connections = num(value)?.max(1) as usize,
            "--keep-receipts" => o.keep_receipts = num(value)? as usize,
            "--keep-dir" => o.keep_dir = Some(PathBuf::from(value)),
            "--out" => o.out = Some(PathBuf::from(value)),
            "--label" => o.label = value.clone(),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
        i += 2;
    }
    o.addr = addr.ok_or(format!("--addr is required\n{USAGE}"))?;
    o.server_pid = pid.ok_or(format!("--server-pid is required\n{USAGE}"))?;
    if o.keep_receipts > 0 && o.keep_dir.is_none() {
        return Err("--keep-receipts needs --keep-dir".into());
    }
    Ok(o)
}

type Conn = SendRequest<Empty<bytes::Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')';
    // utime and stime are fields 14 and 15 of stat (proc(5)), in clock ticks.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // sysconf(_SC_CLK_TCK) is 100 on Linux for every architecture the kernel exports to user
    // space (USER_HZ).
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

#[derive(Serialize)]
struct Percentiles {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort();
    let at = |p: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    Percentiles {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

#[derive(Serialize)]
struct Report {
    what: &'static str,
    label: String,
    receipt: bool,
    target_rate_per_s: u64,
    duration_s: u64,
    warmup_s: u64,
    connections: usize,
    loadavg_at_start: String,
    /// Answers in the measured window, per second of it.
    achieved_rate_per_s: f64,
    answers: u64,
    errors: u64,
    receipts: u64,
    /// Distinct signed statements among the measured receipts (signatures made).
    statements: usize,
    receipts_per_statement: f64,
    /// Latency from the request's due time (open loop) to its answer.
    latency: Percentiles,
    server_cpu_s: f64,
    server_cpu_us_per_request: f64,
    failures: Vec<String>,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    answers: u64,
    errors: u64,
    receipts: u64,
    statements: HashSet<String>,
    kept: Vec<String>,
    failures: Vec<String>,
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("receipt-cost: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(o)) {
        eprintln!("receipt-cost: {e}");
        std::process::exit(1);
    }
}

async fn run(o: Options) -> Result<(), String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let total = o.rate * (o.warmup + o.duration);
    let first_measured = o.rate * o.warmup;
    let start = Instant::now() + Duration::from_millis(100);
    let rate = o.rate;
    let due = move |i: u64| start + Duration::from_nanos(i * 1_000_000_000 / rate);
    let (measured_from, measured_to) = (due(first_measured), due(total));

    let (tx, rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let scheduler = tokio::spawn(async move {
        for i in 0..total {
            let at = due(i);
            tokio::time::sleep_until(at.into()).await;
            if tx.send((i, at)).is_err() {
                return;
            }
        }
    });
    let mut workers = Vec::new();
    for _ in 0..o.connections {
        let mut conn = connect(o.addr).await?;
        let (rx, tally, o) = (rx.clone(), tally.clone(), o.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let job = rx.lock().await.recv().await;
                let Some((i, due)) = job else { return };
                let measured = i >= first_measured;
                let result = async {
                    if conn.is_closed() {
                        conn = connect(o.addr).await?;
                    }
                    conn.ready().await.map_err(|e| format!("connection: {e}"))?;
                    let mut req = Request::get(format!("/v1/echo/load/{i}")).header("host", o.addr.to_string());
                    if o.receipt {
                        req = req.header("prefer", "tollgate-receipt");
                    }
                    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
                    let resp = conn.send_request(req).await.map_err(|e| format!("GET: {e}"))?;
                    let status = resp.status().as_u16();
                    let receipt = resp
                        .headers()
                        .get("tollgate-receipt")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    let _ = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
                    Ok::<_, String>((status, receipt))
                }
                .await;
                let answered = Instant::now();
                let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok((200, receipt)) if receipt.is_some() == o.receipt => {
                        if !measured {
                            continue;
                        }
                        t.answers += 1;
                        t.latencies.push(answered - due);
                        if let Some(r) = receipt {
                            t.receipts += 1;
                            if let Some(statement) = r.split('.').nth(1) {
                                if !t.statements.contains(statement) {
                                    t.statements.insert(statement.to_owned());
                                }
                            }
                            if t.kept.len() < o.keep_receipts {
                                t.kept.push(r);
                            }
                        }
                    }
                    Ok((status, receipt)) => {
                        t.errors += 1;
                        if t.failures.len() < 20 {
                            t.failures
                                .push(format!("request {i}: {status}, receipt {}", receipt.is_some()));
                        }
                    }
                    Err(e) => {
                        t.errors += 1;
                        if t.failures.len() < 20 {
                            t.failures.push(format!("request {i}: {e}"));
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep_until(measured_from.into()).await;
    let cpu_from = cpu_seconds(o.server_pid).ok_or("cannot read the server's /proc/<pid>/stat")?;
    tokio::time::sleep_until(measured_to.into()).await;
    let cpu_to = cpu_seconds(o.server_pid).ok_or("cannot read the server's /proc/<pid>/stat")?;
    let _ = scheduler.await;
    for w in workers {
        let _ = w.await;
    }
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(dir) = &o.keep_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (n, r) in t.kept.iter().enumerate() {
            let p = dir.join(format!("receipt-{n}"));
            std::fs::write(&p, r).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    let measured_requests = total - first_measured;
    let cpu = cpu_to - cpu_from;
    let report = Report {
        what: "receipt-cost",
        label: o.label.clone(),
        receipt: o.receipt,
        target_rate_per_s: o.rate,
        duration_s: o.duration,
        warmup_s: o.warmup,
        connections: o.connections,
        loadavg_at_start: loadavg.trim().to_owned(),
        achieved_rate_per_s: t.answers as f64 / o.duration as f64,
        answers: t.answers,
        errors: t.errors,
        receipts: t.receipts,
        statements: t.statements.len(),
        receipts_per_statement: if t.statements.is_empty() {
            0.0
        } else {
            t.receipts as f64 / t.statements.len() as f64
        },
        latency: percentiles(t.latencies),
        server_cpu_s: cpu,
        server_cpu_us_per_request: cpu * 1e6 / measured_requests as f64,
        failures: t.failures,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if let Some(out) = &o.out {
        std::fs::write(out, &json).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    println!("{json}");
    if report.errors > 0 {
        return Err(format!("{} requests failed: {:?}", report.errors, report.failures));
    }
    Ok(())
}
