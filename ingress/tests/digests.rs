//! The signed digests of a running `tollgate` (embedded mode, the real binary): its in-process
//! timer signs one digest per period, idle periods included, each audit object listed exactly
//! once across the chain, each digest signed by the log's key and linked to the one before.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tollgate_core::digest::{self, Digest, Kind};
use tollgate_core::ports::ObjectStore;
use tollgate_tlog::note::{open_note, Verifiers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tollgate_signs_a_chained_digest_every_period_busy_or_idle() {
    let data = TempDir::new("digests");
    let dd = data.0.to_str().unwrap().to_string();
    // Two-second periods, digested half a second after they end (the timer ticks every second).
    let proc = Proc::spawn(
        &workspace_root(),
        &[
            ("TOLLGATE_DATA_DIR", &dd),
            ("TOLLGATE_DIGEST_PERIOD_MS", "2000"),
            ("TOLLGATE_DIGEST_GRACE_MS", "500"),
        ],
    );
    let mut answered = Vec::new();
    for i in 0..40 {
        let r = request(proc.addr, "POST", "/v1/echo", &[], &format!("n{i}")).await;
        assert_eq!(r.status, 200);
        answered.push(r.request_id());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then idle for a few periods.
    let store = dir_store(&data.0);
    let vkey = {
        let out = std::process::Command::new(binary())
            .args(["log-key"])
            .env("TOLLGATE_DATA_DIR", &dd)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let verifiers = Verifiers::parse(&[vkey.as_str()]).unwrap();
    let objects_listed = |chain: &[Digest]| chain.iter().map(|d| d.objects.len()).sum::<usize>();
    let seen = std::sync::Mutex::new(Vec::<Digest>::new());
    let done = eventually(Duration::from_secs(30), || {
        let (store, verifiers, seen) = (&store, &verifiers, &seen);
        async move {
            let mut read = Vec::new();
            for k in store.list(digest::PREFIX).await.unwrap() {
                let bytes = store.get(&k).await.unwrap().unwrap();
                let note = open_note(&bytes, verifiers).expect("signed by the log key");
                read.push(Digest::parse_body(&note.text).unwrap());
            }
            let objects = store.list(tollgate_core::audit::KEY_PREFIX).await.unwrap().len();
            // Done when every object is listed and at least three idle periods followed.
            let idle_tail = read.iter().rev().take_while(|d| d.objects.is_empty()).count();
            let ok = objects > 0 && objects_listed(&read) == objects && idle_tail >= 3;
            *seen.lock().unwrap() = read;
            ok
        }
    })
    .await;
    let chain = seen.into_inner().unwrap();
    assert!(done, "digests so far: {chain:#?}");
    proc.sigterm();
    let mut proc = proc;
    assert_eq!(proc.wait(Duration::from_secs(30)), Some(0));

    // One chain, gap-free, periods contiguous, every object once, every line's index right.
    let mut listed: BTreeMap<String, u64> = BTreeMap::new();
    let mut end = None;
    for (i, d) in chain.iter().enumerate() {
        assert_eq!(d.sequence, i as u64);
        assert_eq!(d.previous.is_some(), i > 0);
        if d.kind == Kind::Period {
            if let Some(e) = end {
                assert_eq!(d.start, e, "periods are contiguous");
            }
            end = Some(d.end);
        }
        for o in &d.objects {
            assert!(
                listed.insert(o.key.clone(), d.sequence).is_none(),
                "{} listed twice",
                o.key
            );
        }
    }
    let rows = rows_by_id(&data.0);
    for id in &answered {
        assert!(rows.contains_key(id), "{id} has no row");
    }
    let total: u64 = chain.iter().flat_map(|d| &d.objects).map(|o| o.events).sum();
    assert_eq!(
        total,
        answered.len() as u64,
        "every answered request's event is listed once"
    );
    let last = chain.last().unwrap();
    assert_eq!(
        last.checkpoint.0,
        answered.len() as u64,
        "the last digest names the whole log"
    );
    assert_exactly_once(&data.0, &answered).await;
}
