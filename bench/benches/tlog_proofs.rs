//! Proof generation and verification latency (issue 15's `bench/` acceptance): one
//! `tollgate_core::translog::prove` (the state row read from SQLite, the tiles on the proof's
//! path read from the directory store and authenticated against the checkpoint, the C2SP
//! tlog-proof encoded) and one `tollgate_tlog::verify_proof` (parse, the checkpoint's Ed25519
//! signature checked, the inclusion path hashed to the root), over embedded logs of 1,000,
//! 100,000 and 1,000,000 leaves.
//!
//! How the logs are built, fast but through the real code: each leaf is a synthetic event line
//! (`{"request_id":"bench-000000042","i":42}`); rows are inserted with
//! `RequestLog::insert_batch` and sequenced with `RequestLog::mark_audited` (the audit writer's
//! call: indexes from the sequencer row, leaf hashes stored), 20,000 a transaction, without
//! writing the audit objects themselves (a proof never reads them); then one
//! `Integrator::integrate` writes the C2SP tiles (with the directory store's fsyncs) and signs
//! the checkpoint, as the writer does after each batch. The build's timings are printed.
//! Every proof timed is verified first, so a log the tiles do not match fails the bench.
//! Each is timed twice: wall-clock (`tlog_prove`, `tlog_verify_proof`) and as the process's CPU
//! time (`..._cpu`), which other work on the shared cores does not inflate.
//!
//! `cargo bench -p tollgate-bench --bench tlog_proofs` (or `bash bench/tlog-proofs.sh`, which
//! keeps the results in `bench/results/`). `TOLLGATE_BENCH_TLOG_SIZES=1000,100000` picks sizes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::model::{AuditedEvent, NewRecord, RequestRecord, StoredRecord};
use tollgate_core::ports::RequestLog;
use tollgate_core::translog::{prove, Integrator, ProofOutcome};
use tollgate_embedded::dirstore::DirObjectStore;
use tollgate_embedded::sqlite::SqliteRequestLog;

const ORIGIN: &str = "tollgate.bench/log";
/// Rows per insert and marking transaction while building.
const CHUNK: u64 = 20_000;
/// Records whose proofs are timed, spread over the log (a proof's cost depends on where its
/// leaf lies: the path through full tiles or the partial right edge).
const PROVEN: u64 = 256;

fn line(i: u64) -> String {
    format!(r#"{{"request_id":"{}","i":{i}}}"#, request_id(i))
}

fn request_id(i: u64) -> String {
    format!("bench-{i:09}")
}

fn row(i: u64) -> NewRecord {
    NewRecord {
        record: RequestRecord {
            request_id: request_id(i),
            event_id: format!("ev-{i}"),
            trace_id: None,
            received_at: tollgate_core::clock::now(),
            method: "GET".into(),
            path: "/v1/echo".into(),
            query: None,
            route: Some("/v1/echo".into()),
            function_name: Some("echo".into()),
            status: 200,
            latency_ms: 0.5,
            client_ip: Some("127.0.0.1".into()),
            user_agent: None,
            principal: None,
            principal_kind: Default::default(),
            principal_name: None,
            scopes: Vec::new(),
            access: "allowed:auth=none".into(),
            request_bytes: 0,
            response_bytes: 0,
            error_code: None,
        },
        audit_batch: format!("bench-batch-{}", i / CHUNK),
        audit_payload: line(i),
        client_chosen_id: false,
        intent: false,
    }
}

/// A log of `n` leaves in `dir`: the request log, the tile store and its records to prove.
struct Log {
    n: u64,
    log: SqliteRequestLog,
    store: DirObjectStore,
    proven: Vec<(StoredRecord, String)>,
}

async fn build(dir: &Path, n: u64) -> Log {
    let log = SqliteRequestLog::open(dir.join(tollgate_embedded::DB_FILE)).expect("sqlite");
    let store = DirObjectStore::open(dir.join(tollgate_embedded::OBJECTS_DIR)).expect("store");
    let signer = tollgate_tlog::Ed25519Signer::from_seed(ORIGIN, &[7; 32]).expect("signer");
    let t0 = Instant::now();
    for from in (0..n).step_by(CHUNK as usize) {
        let to = (from + CHUNK).min(n);
        let rows: Vec<NewRecord> = (from..to).map(row).collect();
        log.insert_batch(&rows).await.expect("insert");
    }
    let inserted = t0.elapsed();
    let t1 = Instant::now();
    for from in (0..n).step_by(CHUNK as usize) {
        let to = (from + CHUNK).min(n);
        let events: Vec<AuditedEvent> = (from..to)
            .map(|i| AuditedEvent {
                request_id: request_id(i),
                leaf_hash: tollgate_tlog::merkle::leaf_hash(line(i).as_bytes()),
            })
            .collect();
        let key = format!("audit/v1/bench/{}.ndjson.gz", from / CHUNK);
        let marked = log.mark_audited(&key, &events).await.expect("mark");
        assert_eq!(marked, to - from, "every row marked and sequenced once");
    }
    let sequenced = t1.elapsed();
    let t2 = Instant::now();
    let integrator = Integrator::new(Arc::new(log.clone()), Arc::new(store.clone()), Arc::new(signer));
    let state = integrator.integrate().await.expect("integrate");
    assert_eq!(state.size, n, "the checkpoint covers every leaf");
    let integrated = t2.elapsed();
    eprintln!(
        "tlog_proofs: {n} leaves: inserted in {:.1} s, marked and sequenced in {:.1} s, integrated (tiles + checkpoint) in {:.1} s ({:.0} leaves/s)",
        inserted.as_secs_f64(),
        sequenced.as_secs_f64(),
        integrated.as_secs_f64(),
        n as f64 / integrated.as_secs_f64()
    );
    // Spread over the log, the last leaf (on the partial right edge) included.
    let mut proven = Vec::new();
    for k in 0..PROVEN.min(n) {
        let i = if k + 1 == PROVEN.min(n) {
            n - 1
        } else {
            k * n / PROVEN.min(n)
        };
        let record = log.get(&request_id(i)).await.expect("get").expect("row");
        assert_eq!(record.log_index, Some(i), "indexes follow the marking order");
        proven.push((record, line(i)));
    }
    Log { n, log, store, proven }
}

fn sizes() -> Vec<u64> {
    std::env::var("TOLLGATE_BENCH_TLOG_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000])
}

fn tlog_proofs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let root = std::env::temp_dir().join(format!("tollgate-bench-tlog-{}", std::process::id()));
    let signer = tollgate_tlog::Ed25519Signer::from_seed(ORIGIN, &[7; 32]).expect("signer");
    let verifiers = tollgate_tlog::Verifiers::new(vec![signer.verifier_key()]);
    for n in sizes() {
        let dir = root.join(n.to_string());
        let log = rt.block_on(build(&dir, n));
        // Every proof timed verifies, and a changed line does not.
        let proofs: Vec<(String, String)> = log
            .proven
            .iter()
            .map(|(record, line)| {
                let proof = match rt.block_on(prove(&log.log, &log.store, record)) {
                    Ok(ProofOutcome::Ready(p)) => p,
                    other => panic!("no proof of {}: {other:?}", record.record.request_id),
                };
                let (index, size) = tollgate_tlog::verify_proof(&proof, line.as_bytes(), &verifiers).expect("verifies");
                assert_eq!((Some(index), size), (record.log_index, log.n));
                assert!(tollgate_tlog::verify_proof(&proof, format!("{line} ").as_bytes(), &verifiers).is_err());
                (proof, line.clone())
            })
            .collect();
        // Wall-clock, and the CPU time of the whole process (a proof's work runs on the tokio
        // workers and the blocking pool, so a thread's own clock would miss some): the second
        // does not count other processes on the 2 shared cores.
        for (group, clock) in [("tlog_prove", Clock::Wall), ("tlog_prove_cpu", Clock::ProcessCpu)] {
            let mut g = c.benchmark_group(group);
            g.throughput(Throughput::Elements(1));
            let mut k = 0;
            g.bench_with_input(BenchmarkId::from_parameter(n), &log, |b, log| {
                b.iter_custom(|iters| {
                    clock.time(|| {
                        for _ in 0..iters {
                            k = (k + 1) % log.proven.len();
                            match rt.block_on(prove(&log.log, &log.store, black_box(&log.proven[k].0))) {
                                Ok(ProofOutcome::Ready(p)) => drop(black_box(p)),
                                other => panic!("{other:?}"),
                            }
                        }
                    })
                })
            });
            g.finish();
        }
        for (group, clock) in [
            ("tlog_verify_proof", Clock::Wall),
            ("tlog_verify_proof_cpu", Clock::ProcessCpu),
        ] {
            let mut g = c.benchmark_group(group);
            g.throughput(Throughput::Elements(1));
            let mut k = 0;
            g.bench_with_input(BenchmarkId::from_parameter(n), &proofs, |b, proofs| {
                b.iter_custom(|iters| {
                    clock.time(|| {
                        for _ in 0..iters {
                            k = (k + 1) % proofs.len();
                            let (proof, line) = &proofs[k];
                            black_box(
                                tollgate_tlog::verify_proof(black_box(proof), line.as_bytes(), &verifiers)
                                    .expect("verifies"),
                            );
                        }
                    })
                })
            });
            g.finish();
        }
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// What a sample's time is.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    ProcessCpu,
}

impl Clock {
    fn time(self, f: impl FnOnce()) -> Duration {
        match self {
            Clock::Wall => {
                let start = Instant::now();
                f();
                start.elapsed()
            }
            Clock::ProcessCpu => {
                let start = process_cpu();
                f();
                process_cpu() - start
            }
        }
    }
}

/// This process's CPU time so far, every thread's.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

criterion_group!(benches, tlog_proofs);
criterion_main!(benches);
