//! The open-loop load generator shared by `receipt-cost` and `tlog-proof-latency`: requests
//! scheduled at a fixed arrival rate (request `i` is due at `start + i / rate`) whatever the
//! server's answers do, so that a latency counted from a request's due time shows a server's
//! queue instead of slowing the load down (coordinated omission); a pool of keep-alive HTTP/1.1
//! connections takes the due requests in order. Also the latency percentiles of the reports
//! and the server's CPU time from `/proc`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A keep-alive HTTP/1.1 connection to the server.
pub type Conn = SendRequest<Empty<Bytes>>;

/// Opens a connection to `addr` (no Nagle: the requests are small and latency is measured).
pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
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

/// One answer: its status, headers and body.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The value of header `name`, when it is there and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(String::from)
    }
}

/// `GET path` on `conn` with `headers` (and the `host` header of `addr`), the body read whole.
pub async fn get(conn: &mut Conn, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    conn.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut req = Request::get(path).header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = conn.send_request(req).await.map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("GET {path}: body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers: parts.headers,
        body,
    })
}

/// The fixed arrival schedule of a run: a warm-up, then the measured window.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate: u64,
    /// Every request of the run (warm-up and window).
    pub total: u64,
    /// The first request of the measured window.
    pub first_measured: u64,
}

/// The due requests, `(i, due time)` in order, shared by the connections' workers.
pub type Jobs = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(u64, Instant)>>>;

impl Schedule {
    /// `rate` requests a second for `warmup_s` then `duration_s` seconds, from 100 ms from now.
    pub fn new(rate: u64, warmup_s: u64, duration_s: u64) -> Self {
        Self {
            start: Instant::now() + Duration::from_millis(100),
            rate,
            total: rate * (warmup_s + duration_s),
            first_measured: rate * warmup_s,
        }
    }

    /// When request `i` is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos(i * 1_000_000_000 / self.rate)
    }

    /// The measured window: the first measured request's due time, and the end of the run.
    pub fn window(&self) -> (Instant, Instant) {
        (self.due(self.first_measured), self.due(self.total))
    }

    /// Whether request `i` is in the measured window (not the warm-up).
    pub fn measured(&self, i: u64) -> bool {
        i >= self.first_measured
    }

    /// Starts the scheduler: each request is queued at its due time, whatever the answers do;
    /// the queue closes after the last one.
    pub fn spawn(&self) -> (tokio::task::JoinHandle<()>, Jobs) {
        let (tx, rx) = mpsc::unbounded_channel::<(u64, Instant)>();
        let schedule = *self;
        let scheduler = tokio::spawn(async move {
            for i in 0..schedule.total {
                let at = schedule.due(i);
                tokio::time::sleep_until(at.into()).await;
                if tx.send((i, at)).is_err() {
                    return;
                }
            }
        });
        (scheduler, Arc::new(tokio::sync::Mutex::new(rx)))
    }
}

/// The next due request for a worker, `None` once the run is over.
pub async fn next_job(jobs: &Jobs) -> Option<(u64, Instant)> {
    jobs.lock().await.recv().await
}

/// Latency percentiles, in milliseconds.
#[derive(Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The 99.9th percentile, where the report asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_ms: Option<f64>,
    /// The longest.
    pub max_ms: f64,
}

impl Percentiles {
    /// The p50, p90, p99 and max of `v` (nearest rank; zeros when empty).
    pub fn of(v: Vec<Duration>) -> Self {
        Self::with_ranks(v, false)
    }

    /// The same and the p99.9.
    pub fn with_p999(v: Vec<Duration>) -> Self {
        Self::with_ranks(v, true)
    }

    fn with_ranks(mut v: Vec<Duration>, p999: bool) -> Self {
        v.sort();
        let at = |p: f64| {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
            v[i].as_secs_f64() * 1000.0
        };
        Self {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: p999.then(|| at(0.999)),
            max_ms: at(1.0),
        }
    }
}

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
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

/// A load generator's `main`: its options (a usage error exits 2), then `run` on a runtime of
/// two worker threads (a failure exits 1); errors go to stderr after the binary's `name`.
pub fn main<O, F>(name: &str, options: impl FnOnce() -> Result<O, String>, run: impl FnOnce(O) -> F)
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(o)) {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}
