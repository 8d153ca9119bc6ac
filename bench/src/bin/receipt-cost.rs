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

use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_bench::load::{self, cpu_seconds, Percentiles, Schedule};

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
    load::main("receipt-cost", options, run);
}

async fn run(o: Options) -> Result<(), String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let schedule = Schedule::new(o.rate, o.warmup, o.duration);
    let (measured_from, measured_to) = schedule.window();
    let (scheduler, jobs) = schedule.spawn();
    let mut workers = Vec::new();
    for _ in 0..o.connections {
        let mut conn = load::connect(o.addr).await?;
        let (jobs, tally, o) = (jobs.clone(), tally.clone(), o.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some((i, due)) = load::next_job(&jobs).await else {
                    return;
                };
                let measured = schedule.measured(i);
                let result = async {
                    if conn.is_closed() {
                        conn = load::connect(o.addr).await?;
                    }
                    let prefer: &[(&str, &str)] = if o.receipt {
                        &[("prefer", "tollgate-receipt")]
                    } else {
                        &[]
                    };
                    let answer = load::get(&mut conn, o.addr, &format!("/v1/echo/load/{i}"), prefer).await?;
                    Ok::<_, String>((answer.status, answer.header("tollgate-receipt")))
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
    let measured_requests = schedule.total - schedule.first_measured;
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
        latency: Percentiles::of(t.latencies),
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
