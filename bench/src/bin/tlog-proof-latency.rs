//! `tlog-proof-latency`: issue 15's "time from an answer to its available inclusion proof"
//! (target: p99 <= 1 s at 1,000 requests/s in embedded mode), against a running tollgate.
//!
//! Open loop: `/v1/echo` requests are scheduled at a fixed arrival rate (request `i` is due at
//! `start + i / rate`) whatever the server's answers do, and an answer's latency counts from
//! when its request was due, so a server that falls behind shows its queue instead of slowing
//! the load down (coordinated omission). A pool of keep-alive connections takes the due
//! requests in order; when every connection is busy, requests wait in the queue on their due
//! times.
//!
//! For every `--sample-every`th answer (default 50th; after the warm-up), a poller asks
//! `GET /v1/requests/{id}/proof` with the admin key every `--poll-ms` from the answer until the
//! first 200 (409 `proof_not_ready` before). The proof's availability lies between the send of
//! the last 409's request and the first 200's arrival: both bounds are reported, and the upper
//! one is the figure. Once the load ends, every proof fetched is verified with
//! `tollgate_tlog::verify_proof` against the event's exact line, read from the audit objects
//! in the data directory, with the verifier key `tollgate log-key` printed; any failure, any
//! error answer or any proof not available within `--give-up` makes the run fail.
//!
//! Run through `bench/tlog-proof-latency.sh`, which builds the release binaries, starts a
//! tollgate with a fresh data directory and stops it afterwards.

use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate_bench::load::{self, cpu_seconds, Answer, Conn, Percentiles, Schedule};

#[derive(Clone, Debug)]
struct Options {
    addr: SocketAddr,
    data_dir: PathBuf,
    vkey: String,
    rate: u64,
    duration: u64,
    warmup: u64,
    sample_every: u64,
    poll: Duration,
    connections: usize,
    give_up: Duration,
    server_pid: Option<u32>,
    out: Option<PathBuf>,
    label: String,
}

const USAGE: &str = "tlog-proof-latency --addr HOST:PORT --data-dir DIR --vkey VKEY [--rate 1000] [--duration 60] \
     [--warmup 5] [--sample-every 50] [--poll-ms 20] [--connections 64] [--give-up-s 30] [--server-pid PID] \
     [--out FILE] [--label TEXT]";

fn options() -> Result<Options, String> {
    let mut addr = None;
    let mut data_dir = None;
    let mut vkey = None;
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: PathBuf::new(),
        vkey: String::new(),
        rate: 1000,
        duration: 60,
        warmup: 5,
        // Few polls (~300/s beside 1,000 echoes/s): every poll is a recorded request too, and a
        // busier server fills its audit batches (1,000 events at most) before their age closes
        // them, which would shorten the very wait being measured.
        sample_every: 50,
        poll: Duration::from_millis(20),
        connections: 64,
        give_up: Duration::from_secs(30),
        server_pid: None,
        out: None,
        label: String::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let name = pair[0].as_str();
        let value = pair.get(1).ok_or(format!("{name} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v:?}"));
        match name {
            "--addr" => addr = Some(value.parse().map_err(|_| format!("--addr: bad address {value:?}"))?),
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--vkey" => vkey = Some(value.trim().to_string()),
            "--rate" => o.rate = num(value)?.max(1),
            "--duration" => o.duration = num(value)?.max(1),
            "--warmup" => o.warmup = num(value)?,
            "--sample-every" => o.sample_every = num(value)?.max(1),
            "--poll-ms" => o.poll = Duration::from_millis(num(value)?.max(1)),
            "--connections" => o.connections = num(value)?.max(1) as usize,
            "--give-up-s" => o.give_up = Duration::from_secs(num(value)?.max(1)),
            "--server-pid" => o.server_pid = Some(num(value)? as u32),
            "--out" => o.out = Some(PathBuf::from(value)),
            "--label" => o.label = value.clone(),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    o.addr = addr.ok_or(format!("--addr is required\n{USAGE}"))?;
    o.data_dir = data_dir.ok_or(format!("--data-dir is required\n{USAGE}"))?;
    o.vkey = vkey.ok_or(format!("--vkey is required\n{USAGE}"))?;
    Ok(o)
}

/// Keep-alive connections for the pollers, opened on demand and reused.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    async fn get(&self, path: &str, auth: &str) -> Result<Answer, String> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut conn = match idle {
            Some(c) if !c.is_closed() => c,
            _ => load::connect(self.addr).await?,
        };
        let answer = load::get(&mut conn, self.addr, path, &[("authorization", auth)]).await?;
        if let Ok(mut v) = self.idle.lock() {
            v.push(conn);
        }
        Ok(answer)
    }
}

/// A sampled answer and when its proof became available.
struct Sample {
    request_id: String,
    /// From the answer to the arrival of the first 200 (the upper bound).
    upper: Duration,
    /// From the answer to the send of the last 409 (the lower bound; zero when the first poll
    /// already had it).
    lower: Duration,
    polls: u64,
    proof: String,
}

#[derive(Default)]
struct Counters {
    echo_ok: AtomicU64,
    echo_errors: AtomicU64,
    polls: AtomicU64,
    poll_not_ready: AtomicU64,
    poll_errors: AtomicU64,
}

#[derive(Serialize)]
struct Report {
    what: &'static str,
    label: String,
    started_unix: u64,
    machine: Machine,
    target_rate_per_s: u64,
    duration_s: u64,
    warmup_s: u64,
    connections: usize,
    sample_every: u64,
    poll_ms: u64,
    /// Echo answers in the measured window, per second of it.
    achieved_rate_per_s: f64,
    echo_answers: u64,
    echo_errors: u64,
    /// Every request the server got in the window (echo and proof polls), per second.
    total_rate_per_s: f64,
    polls: u64,
    polls_not_ready: u64,
    poll_errors: u64,
    /// Echo latency from the request's due time (open loop) to its answer.
    answer_latency: Percentiles,
    samples: usize,
    /// Answer -> first 200 of its proof (the reported figure).
    answer_to_proof: Percentiles,
    /// Answer -> send of the last 409 (the availability was after this).
    answer_to_proof_lower_bound: Percentiles,
    mean_polls_per_sample: f64,
    proofs_verified: usize,
    proofs_failed: usize,
    target_p99_ms: f64,
    meets_target: bool,
    server_cpu_s_per_1k_requests: Option<f64>,
    settings: HashMap<String, String>,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
    loadavg_at_start: String,
}

fn main() {
    load::main("tlog-proof-latency", options, run);
}

async fn run(o: Options) -> Result<(), String> {
    let admin = std::fs::read_to_string(o.data_dir.join("admin-key"))
        .map_err(|e| format!("{}: {e}", o.data_dir.join("admin-key").display()))?;
    let auth: Arc<str> = format!("Bearer {}", admin.trim()).into();
    let verifiers = tollgate_tlog::Verifiers::parse(&[o.vkey.as_str()]).map_err(|e| format!("--vkey: {e}"))?;
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let counters = Arc::new(Counters::default());
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let answer_latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let pool = Arc::new(Pool {
        addr: o.addr,
        idle: Mutex::new(Vec::new()),
    });
    let pollers: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();

    // The schedule: request i is due at start + i * period, whatever the answers do.
    let schedule = Schedule::new(o.rate, o.warmup, o.duration);
    let (measured_from, measured_to) = schedule.window();
    let (scheduler, jobs) = schedule.spawn();

    let mut workers = Vec::new();
    for _ in 0..o.connections {
        let mut conn = load::connect(o.addr).await?;
        let (jobs, counters, samples, latencies, failures, pool, pollers, auth, o) = (
            jobs.clone(),
            counters.clone(),
            samples.clone(),
            answer_latencies.clone(),
            failures.clone(),
            pool.clone(),
            pollers.clone(),
            auth.clone(),
            o.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some((i, due)) = load::next_job(&jobs).await else {
                    return;
                };
                if conn.is_closed() {
                    match load::connect(o.addr).await {
                        Ok(c) => conn = c,
                        Err(e) => {
                            counters.echo_errors.fetch_add(1, Ordering::Relaxed);
                            note(&failures, e);
                            continue;
                        }
                    }
                }
                let result = load::get(&mut conn, o.addr, &format!("/v1/echo/load/{i}"), &[]).await;
                let answered = Instant::now();
                let measured = schedule.measured(i);
                let id = match result {
                    Ok(a) if a.status == 200 => a.header("x-request-id"),
                    Ok(a) => {
                        counters.echo_errors.fetch_add(1, Ordering::Relaxed);
                        note(
                            &failures,
                            format!("echo {i}: {} {}", a.status, String::from_utf8_lossy(&a.body)),
                        );
                        continue;
                    }
                    Err(e) => {
                        counters.echo_errors.fetch_add(1, Ordering::Relaxed);
                        note(&failures, format!("echo {i}: {e}"));
                        continue;
                    }
                };
                if !measured {
                    continue;
                }
                counters.echo_ok.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = latencies.lock() {
                    l.push(answered - due);
                }
                let Some(id) = id else {
                    note(&failures, format!("echo {i}: no x-request-id"));
                    continue;
                };
                if i % o.sample_every != 0 {
                    continue;
                }
                let (counters, samples, failures, pool, auth) = (
                    counters.clone(),
                    samples.clone(),
                    failures.clone(),
                    pool.clone(),
                    auth.clone(),
                );
                let (poll, give_up) = (o.poll, o.give_up);
                let task = async move {
                    let path = format!("/v1/requests/{id}/proof");
                    let mut lower = Duration::ZERO;
                    let mut polls = 0u64;
                    loop {
                        // An absolute schedule from the answer: answer + k * poll.
                        polls += 1;
                        tokio::time::sleep_until((answered + poll * polls as u32).into()).await;
                        let sent = Instant::now();
                        counters.polls.fetch_add(1, Ordering::Relaxed);
                        match pool.get(&path, &auth).await {
                            Ok(a) if a.status == 200 => {
                                let upper = answered.elapsed();
                                let proof = String::from_utf8_lossy(&a.body).into_owned();
                                if let Ok(mut s) = samples.lock() {
                                    s.push(Sample {
                                        request_id: id,
                                        upper,
                                        lower,
                                        polls,
                                        proof,
                                    });
                                }
                                return;
                            }
                            Ok(a) if a.status == 409 => {
                                counters.poll_not_ready.fetch_add(1, Ordering::Relaxed);
                                lower = sent - answered;
                            }
                            Ok(a) => {
                                counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                                note(
                                    &failures,
                                    format!("proof of {id}: {} {}", a.status, String::from_utf8_lossy(&a.body)),
                                );
                            }
                            Err(e) => {
                                counters.poll_errors.fetch_add(1, Ordering::Relaxed);
                                note(&failures, format!("proof of {id}: {e}"));
                            }
                        }
                        if answered.elapsed() > give_up {
                            note(&failures, format!("no proof of {id} within {give_up:?}"));
                            return;
                        }
                    }
                };
                let handle = tokio::spawn(task);
                if let Ok(mut p) = pollers.lock() {
                    p.push(handle);
                }
            }
        }));
    }

    // The measured window: CPU of the server, from the first measured request's due time to
    // the last one's.
    tokio::time::sleep_until(measured_from.into()).await;
    let cpu0 = o.server_pid.and_then(cpu_seconds);
    let polls0 = counters.polls.load(Ordering::Relaxed);
    tokio::time::sleep_until(measured_to.into()).await;
    let cpu1 = o.server_pid.and_then(cpu_seconds);
    let polls_in_window = counters.polls.load(Ordering::Relaxed) - polls0;
    scheduler.await.map_err(|e| e.to_string())?;
    for w in workers {
        w.await.map_err(|e| e.to_string())?;
    }
    let finished = Instant::now();
    // Every worker is done, so no poller is added any more.
    let handles = std::mem::take(&mut *pollers.lock().map_err(|_| "poisoned")?);
    for h in handles {
        h.await.map_err(|e| e.to_string())?;
    }
    let window = measured_to - measured_from;
    // The last echo answers may come after the window ends (a queue): the rate is what was
    // answered over the time from the window's start to the last answer.
    let answered_span = finished.max(measured_to) - measured_from;

    // Verify every proof against its event's exact line in its audit object.
    let store = tollgate_embedded::dirstore::DirObjectStore::open(o.data_dir.join(tollgate_embedded::OBJECTS_DIR))
        .map_err(|e| e.to_string())?;
    let lines = event_lines(&store).await?;
    let samples = std::mem::take(&mut *samples.lock().map_err(|_| "poisoned")?);
    let (mut verified, mut failed) = (0usize, 0usize);
    for s in &samples {
        let outcome = match lines.get(&s.request_id) {
            None => Err(format!("{}: its event is in no audit object", s.request_id)),
            Some(line) => tollgate_tlog::verify_proof(&s.proof, line.as_bytes(), &verifiers)
                .map_err(|e| format!("{}: the proof does not verify: {e}", s.request_id)),
        };
        match outcome {
            Ok(_) => verified += 1,
            Err(e) => {
                failed += 1;
                note(&failures, e);
            }
        }
    }
    // The check can fail: the first proof does not verify a changed line.
    if let Some(s) = samples.first() {
        let changed = format!("{} ", lines.get(&s.request_id).cloned().unwrap_or_default());
        if tollgate_tlog::verify_proof(&s.proof, changed.as_bytes(), &verifiers).is_ok() {
            note(&failures, "a proof verified a changed event line".to_string());
        }
    }

    let echo_ok = counters.echo_ok.load(Ordering::Relaxed);
    let polls = counters.polls.load(Ordering::Relaxed);
    let upper: Vec<Duration> = samples.iter().map(|s| s.upper).collect();
    let lower: Vec<Duration> = samples.iter().map(|s| s.lower).collect();
    let answer_to_proof = Percentiles::with_p999(upper);
    let latencies = std::mem::take(&mut *answer_latencies.lock().map_err(|_| "poisoned")?);
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) if echo_ok + polls_in_window > 0 => {
            Some((b - a) / (o.rate * o.duration + polls_in_window) as f64 * 1000.0)
        }
        _ => None,
    };
    let mut settings = HashMap::new();
    for (k, v) in std::env::vars() {
        if k.starts_with("TOLLGATE_") && !k.contains("KEY") && !k.contains("SECRET") {
            settings.insert(k, v);
        }
    }
    let report = Report {
        what: "answer -> available inclusion proof, open-loop /v1/echo load against a release tollgate in embedded mode (bench/tlog-proof-latency.sh)",
        label: o.label.clone(),
        started_unix,
        machine: Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            loadavg_at_start: loadavg.trim().to_string(),
        },
        target_rate_per_s: o.rate,
        duration_s: o.duration,
        warmup_s: o.warmup,
        connections: o.connections,
        sample_every: o.sample_every,
        poll_ms: o.poll.as_millis() as u64,
        achieved_rate_per_s: echo_ok as f64 / answered_span.as_secs_f64(),
        echo_answers: echo_ok,
        echo_errors: counters.echo_errors.load(Ordering::Relaxed),
        total_rate_per_s: (o.rate * o.duration + polls_in_window) as f64 / window.as_secs_f64(),
        polls,
        polls_not_ready: counters.poll_not_ready.load(Ordering::Relaxed),
        poll_errors: counters.poll_errors.load(Ordering::Relaxed),
        answer_latency: Percentiles::with_p999(latencies),
        samples: samples.len(),
        meets_target: answer_to_proof.p99_ms <= 1000.0,
        answer_to_proof,
        answer_to_proof_lower_bound: Percentiles::with_p999(lower),
        mean_polls_per_sample: if samples.is_empty() {
            0.0
        } else {
            samples.iter().map(|s| s.polls).sum::<u64>() as f64 / samples.len() as f64
        },
        proofs_verified: verified,
        proofs_failed: failed,
        target_p99_ms: 1000.0,
        server_cpu_s_per_1k_requests: server_cpu,
        settings,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if let Some(out) = &o.out {
        std::fs::write(out, &json).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let p = &report.answer_to_proof;
    let l = &report.answer_to_proof_lower_bound;
    println!(
        "tlog: {} echo answers at {:.0}/s (target {}/s; {:.0} requests/s with the proof polls), answer latency p50 {:.2} ms p99 {:.2} ms; \
         answer -> proof over {} samples: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (lower bounds {:.0}/{:.0}/{:.0}/{:.0}); \
         {} proofs verified, {} failed; server CPU {} s per 1,000 requests",
        report.echo_answers,
        report.achieved_rate_per_s,
        o.rate,
        report.total_rate_per_s,
        report.answer_latency.p50_ms,
        report.answer_latency.p99_ms,
        report.samples,
        p.p50_ms,
        p.p90_ms,
        p.p99_ms,
        p.max_ms,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms,
        verified,
        failed,
        server_cpu.map_or("?".into(), |c| format!("{c:.3}")),
    );
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    if !failures.is_empty() {
        for f in failures.iter().take(20) {
            eprintln!("  {f}");
        }
        return Err(format!("{} failures (the first 20 above)", failures.len()));
    }
    if samples.is_empty() {
        return Err("no samples".into());
    }
    Ok(())
}

fn note(failures: &Mutex<Vec<String>>, what: String) {
    if let Ok(mut f) = failures.lock() {
        f.push(what);
    }
}

/// Every event's exact line (the leaf data) by request id, from the audit objects.
async fn event_lines(store: &tollgate_embedded::dirstore::DirObjectStore) -> Result<HashMap<String, String>, String> {
    use tollgate_core::ports::ObjectStore;
    let mut lines = HashMap::new();
    for key in store.list("audit/v1/").await.map_err(|e| e.to_string())? {
        let object = store
            .get(&key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{key} listed but missing"))?;
        for line in tollgate_core::audit::decode(&object).map_err(|e| format!("{key}: {e}"))? {
            let id = tollgate_core::audit::event_request_id(&line).map_err(|e| format!("{key}: {e}"))?;
            lines.insert(id, line);
        }
    }
    Ok(lines)
}
