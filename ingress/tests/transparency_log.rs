//! The transparency log end to end (issue 15; docs/transparency-log.md): concurrent load over a
//! real in-process ingress, then every audited row has a unique index in 0..n, the signed
//! checkpoint covers all n, its root is the tree of the objects' lines in index order, proofs
//! served by `GET /v1/requests/{id}/proof` and printed by `tollgate prove` verify with
//! `tollgate verify-proof` (and a changed event does not), and `requests:read:own` callers get
//! proofs of their own requests only. Prints the time from an answer to its available proof.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_core::ports::TlogStore;

const CONNECTIONS: usize = 16;
const PER_CONNECTION: usize = 32;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_gets_a_verifiable_inclusion_proof() {
    // The writer's retry paths under load: every third batch is delivered twice at once (an
    // async invoke is at-least-once), so one copy creates the object and the other finds it,
    // and both mark and integrate concurrently.
    let deliveries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = deliveries.clone();
    let mut ing = InProcess::start(&[], move |functions| {
        let inner = functions["audit-writer"].clone();
        let twice: Arc<dyn tollgate_core::local::LocalFunction> = Arc::new(
            move |payload: bytes::Bytes| -> tollgate_core::BoxFuture<'static, Result<bytes::Bytes, tollgate_core::InvokeError>> {
                let (inner, n) = (inner.clone(), counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
                Box::pin(async move {
                    if n % 3 != 0 {
                        return inner.call(payload).await;
                    }
                    let (a, b) = tokio::join!(inner.call(payload.clone()), inner.call(payload));
                    b?;
                    a
                })
            },
        );
        functions.insert("audit-writer".into(), twice);
    })
    .await;
    let addr = ing.addr;
    // Answer -> proof available, for every 4th request.
    let waits: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let waits = waits.clone();
        let (log, tlog) = (ing.backends.log.clone(), ing.backends.tlog.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut ids = Vec::new();
            let mut pollers = Vec::new();
            for i in 0..PER_CONNECTION {
                let reply = client.send("GET", &format!("/v1/echo/{c}/{i}"), &[], "").await.unwrap();
                assert_eq!(reply.status, 200);
                let answered = Instant::now();
                let id = reply.request_id();
                if i % 4 == 0 {
                    let (waits, id) = (waits.clone(), id.clone());
                    let (log, tlog) = (log.clone(), tlog.clone());
                    pollers.push(tokio::spawn(async move {
                        // Servable once its index is under the signed checkpoint's size (read from
                        // the store: the API's per-caller rate limit would pace a poller).
                        loop {
                            let row = log.get(&id).await.unwrap();
                            let size = tlog.tlog_state().await.unwrap().size;
                            if row.and_then(|r| r.log_index).is_some_and(|i| i < size) {
                                break;
                            }
                            assert!(answered.elapsed() < Duration::from_secs(30), "no proof of {id}");
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        waits.lock().unwrap().push(answered.elapsed());
                    }));
                }
                ids.push(id);
            }
            for p in pollers {
                p.await.unwrap();
            }
            ids
        }));
    }
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let mut waits = waits.lock().unwrap().clone();
    waits.sort();
    println!(
        "tlog: {} answers over {CONNECTIONS} connections in {:.2} s ({:.0}/s); answer -> proof available over {} samples: p50 {:?}, p99 {:?}, max {:?}",
        answered.len(),
        elapsed.as_secs_f64(),
        answered.len() as f64 / elapsed.as_secs_f64(),
        waits.len(),
        percentile(&waits, 0.50),
        percentile(&waits, 0.99),
        waits[waits.len() - 1],
    );

    // A requests:read:own caller: a proof of its own request, not of another's.
    let scopes = vec!["requests:read:own".to_string()];
    let own = tollgate_ingress::ops::create_key(&*ing.backends.keys, "own", &scopes, None)
        .await
        .unwrap();
    let bearer = format!("Bearer {}", own.token);
    let mine = request(addr, "GET", "/v1/echo/mine", &[("authorization", &bearer)], "")
        .await
        .request_id();
    assert!(
        eventually(Duration::from_secs(20), || async {
            let r = request(
                addr,
                "GET",
                &format!("/v1/requests/{mine}/proof"),
                &[("authorization", &bearer)],
                "",
            )
            .await;
            r.status == 200
        })
        .await,
        "the caller's own proof"
    );
    request(
        addr,
        "GET",
        &format!("/v1/requests/{}/proof", answered[0]),
        &[("authorization", &bearer)],
        "",
    )
    .await
    .assert_error(404, "request_not_found");
    request(addr, "GET", "/v1/requests/no-such-request/proof", &[], "")
        .await
        .assert_error(404, "request_not_found");
    let api_proof = request(addr, "GET", &format!("/v1/requests/{}/proof", answered[7]), &[], "").await;
    assert_eq!(api_proof.status, 200);
    assert!(api_proof.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    ing.stop().await;
    assert!(
        deliveries.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "some batches were delivered twice"
    );
    let data = ing.dir.0.clone();

    // Every row audited and indexed once, 0..n; the checkpoint covers n; the root is the tree of
    // the objects' lines in index order.
    let log = tollgate_embedded::sqlite::SqliteRequestLog::open(data.join(tollgate_embedded::DB_FILE)).unwrap();
    let rows = rows_by_id(&data);
    let n = rows.len() as u64;
    let store = dir_store(&data);
    let mut by_index: BTreeMap<u64, String> = BTreeMap::new();
    let mut line_of = BTreeMap::new();
    for key in tollgate_core::ports::ObjectStore::list(&store, "audit/v1/")
        .await
        .unwrap()
    {
        let object = tollgate_core::ports::ObjectStore::get(&store, &key)
            .await
            .unwrap()
            .unwrap();
        for line in tollgate_core::audit::decode(&object).unwrap() {
            let id = tollgate_core::audit::event_request_id(&line).unwrap();
            let row = tollgate_core::RequestLog::get(&log, &id).await.unwrap().unwrap();
            let index = row.log_index.expect("every audited row has an index");
            assert!(by_index.insert(index, line.clone()).is_none(), "index {index} twice");
            line_of.insert(id, line);
        }
    }
    assert_eq!(by_index.len() as u64, n, "every row's event is in the log");
    assert_eq!(by_index.keys().copied().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    let vkey_out = Command::new(binary())
        .arg("log-key")
        .env("TOLLGATE_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(vkey_out.status.success());
    let vkey = String::from_utf8(vkey_out.stdout).unwrap().trim().to_string();
    let verifiers = tollgate_tlog::Verifiers::parse(&[vkey.as_str()]).unwrap();
    let state = log.tlog_state().await.unwrap();
    let checkpoint = tollgate_tlog::Checkpoint::open(state.checkpoint.unwrap().as_bytes(), &verifiers).unwrap();
    assert_eq!((state.size, checkpoint.size), (n, n));
    let mut root = tollgate_tlog::merkle::RootBuilder::new();
    for line in by_index.values() {
        root.push(line.as_bytes());
    }
    assert_eq!(root.root(), checkpoint.root);

    // The API's proof (of an older checkpoint) and `tollgate prove`'s verify offline.
    let tmp = TempDir::new("proofs");
    let event_file = tmp.0.join("event");
    std::fs::write(&event_file, format!("{}\n", line_of[&answered[7]])).unwrap();
    let api_file = tmp.0.join("api.proof");
    std::fs::write(&api_file, &api_proof.body).unwrap();
    let verify = |proof: &std::path::Path, event: &std::path::Path| {
        Command::new(binary())
            .arg("verify-proof")
            .arg(proof)
            .args(["--vkey", &vkey, "--event"])
            .arg(event)
            .env("TOLLGATE_DATA_DIR", &data)
            .output()
            .unwrap()
    };
    let ok = verify(&api_file, &event_file);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for id in answered.iter().step_by(61).chain([&mine]) {
        let out = Command::new(binary())
            .args(["prove", id])
            .env("TOLLGATE_DATA_DIR", &data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let proof_file = tmp.0.join("cli.proof");
        std::fs::write(&proof_file, &out.stdout).unwrap();
        std::fs::write(&event_file, &line_of[id]).unwrap();
        let ok = verify(&proof_file, &event_file);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("tree of size {n}")));
        // A tampered event line fails.
        std::fs::write(&event_file, line_of[id].replacen('{', "{ ", 1)).unwrap();
        let bad = verify(&proof_file, &event_file);
        assert!(!bad.status.success(), "a changed event verified");
        assert!(String::from_utf8_lossy(&bad.stderr).contains("does not verify"));
    }
}
