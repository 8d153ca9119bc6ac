//! Bounded memory: 200 clients uploading 5 MiB bodies slowly at once keep the real binary's
//! peak RSS under the README's bound (64 MiB + 4 x TOLLGATE_MAX_BUFFERED_BODY_BYTES: a body is copied a few times on its way through a function: the ALB event, base64 for a binary body, the answer): bodies
//! past the budget are refused before they are read (503 `overloaded`, recorded), and a body
//! buffer grows with the bytes that arrive.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPLOADS: usize = 200;
const BODY: usize = 5 * 1024 * 1024;
const BUDGET: u64 = 64 * 1024 * 1024;

/// Peak resident set size of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// Uploads `BODY` bytes in 64 KiB pieces 25 ms apart (about 2 s), then reads the status line.
async fn slow_upload(addr: std::net::SocketAddr, id: usize) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /v1/echo/upload HTTP/1.1\r\nhost: {addr}\r\nx-request-id: upload-{id}\r\ncontent-type: application/octet-stream\r\ncontent-length: {BODY}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let piece = vec![(id % 251) as u8 | 0x80; 64 * 1024];
    let mut sent = 0;
    while sent < BODY {
        if s.write_all(&piece).await.is_err() {
            break; // refused before the body: the answer is waiting to be read
        }
        sent += piece.len();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.get(9..12).and_then(|c| c.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_five_mib_uploads_stay_under_the_memory_bound() {
    let data = TempDir::new("memory");
    let budget = BUDGET.to_string();
    let proc = Proc::spawn(
        &workspace_root(),
        &[
            ("TOLLGATE_DATA_DIR", data.0.to_str().unwrap()),
            ("TOLLGATE_MAX_BUFFERED_BODY_BYTES", budget.as_str()),
            ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ],
    );
    let addr = proc.addr;
    let started = Instant::now();
    let tasks: Vec<_> = (0..UPLOADS).map(|i| tokio::spawn(slow_upload(addr, i))).collect();
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0usize) += 1;
    }
    let peak = peak_rss(proc.child.id());
    let bound = 64 * 1024 * 1024 + 4 * BUDGET;
    println!(
        "{UPLOADS} uploads of 5 MiB in {:?}: {statuses:?}; peak RSS {:.1} MiB (bound {:.0} MiB)",
        started.elapsed(),
        peak as f64 / 1048576.0,
        bound as f64 / 1048576.0
    );
    let admitted = statuses.get(&Some(200)).copied().unwrap_or(0);
    assert!(
        admitted >= (BUDGET as usize / BODY) - 1,
        "at least a budget's worth was served: {statuses:?}"
    );
    assert_eq!(
        admitted + statuses.get(&Some(503)).copied().unwrap_or(0),
        UPLOADS,
        "{statuses:?}"
    );
    assert!(peak < bound, "peak RSS {peak} over the bound {bound}");
    // Every upload, served or refused, is recorded.
    let dir = data.0.clone();
    let all = eventually(Duration::from_secs(20), || {
        let dir = dir.clone();
        async move { rows_by_id(&dir).len() == UPLOADS }
    })
    .await;
    assert!(all, "{} rows of {UPLOADS}", rows_by_id(&data.0).len());
}
