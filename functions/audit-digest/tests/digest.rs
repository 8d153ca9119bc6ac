//! The digest chain over real embedded storage (SQLite, a directory) with the real audit
//! writer and integrator: period digests (empty periods included), backfills of late objects,
//! objects deferred until they are sequenced, and a chain whose links and signatures hold.

use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;
use tollgate_audit_digest::run_pass;
use tollgate_core::audit;
use tollgate_core::digest::{self, Digest, DigestSettings, Digester, Kind};
use tollgate_core::ports::{ObjectStore, RequestLog};
use tollgate_testkit::trail::Trail;
use tollgate_tlog::note::{open_note, Verifiers};

const PERIOD: Duration = Duration::from_secs(60);

fn at(s: &str) -> OffsetDateTime {
    tollgate_core::clock::parse_rfc3339(s).unwrap()
}

/// A new trail in a temporary directory: minute periods, 5 s of grace.
fn trail() -> Trail {
    Trail::temporary(
        "tollgate.test/digest",
        DigestSettings {
            period: PERIOD,
            grace: Duration::from_secs(5),
            lookback: 10,
        },
    )
}

/// The trail's digests in sequence, each opened with the log's key, with its bytes.
async fn digests(t: &Trail) -> Vec<(Digest, bytes::Bytes)> {
    let verifiers = Verifiers::new(vec![t.signer.verifier_key()]);
    let mut out = Vec::new();
    for k in t.store.list(digest::PREFIX).await.unwrap() {
        let bytes = t.store.get(&k).await.unwrap().unwrap();
        let note = open_note(&bytes, &verifiers).expect("every digest is signed by the log key");
        let d = Digest::parse_body(&note.text).unwrap();
        assert_eq!(k, digest::key(d.sequence));
        out.push((d, bytes));
    }
    out
}

/// The chain's invariants: gap-free sequence, each link the previous digest's hash and
/// signature, regular periods contiguous, every object listed once, index runs = the rows'.
async fn check_chain(t: &Trail) -> HashMap<String, Digest> {
    use sha2::Digest as _;
    let chain = digests(t).await;
    let mut listed: HashMap<String, Digest> = HashMap::new();
    let mut last_period_end = None;
    for (i, (d, _)) in chain.iter().enumerate() {
        assert_eq!(d.sequence, i as u64);
        match (i, &d.previous) {
            (0, None) => {}
            (0, Some(_)) => panic!("digest 0 links to something"),
            (_, None) => panic!("digest {i} has no link"),
            (_, Some(link)) => {
                let prev = &chain[i - 1].1;
                assert_eq!(link.sha256, <[u8; 32]>::from(sha2::Sha256::digest(prev)));
                assert_eq!(
                    link.signature,
                    digest::signature_of(prev, "tollgate.test/digest").unwrap()
                );
            }
        }
        if d.kind == Kind::Period {
            if let Some(end) = last_period_end {
                assert_eq!(d.start, end, "regular periods are contiguous");
            }
            last_period_end = Some(d.end);
        }
        for o in &d.objects {
            assert!(
                listed.insert(o.key.clone(), d.clone()).is_none(),
                "{} listed twice",
                o.key
            );
            let object = t.store.get(&o.key).await.unwrap().unwrap();
            let lines = audit::decode(&object).unwrap();
            assert_eq!(o.events, lines.len() as u64);
            let mut text = String::new();
            for l in &lines {
                text.push_str(l);
                text.push('\n');
            }
            assert_eq!(o.sha256, <[u8; 32]>::from(sha2::Sha256::digest(text.as_bytes())));
            for (line, index) in lines.iter().zip(o.line_indexes()) {
                let id = audit::event_request_id(line).unwrap();
                let row = t.log.get(&id).await.unwrap().unwrap();
                assert_eq!(row.log_index, Some(index), "{id}");
            }
            let ot = digest::object_time(&o.key).unwrap();
            assert!(ot >= d.start && ot < d.end, "{} is in its digest's period", o.key);
        }
    }
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periods_empty_periods_backfills_and_deferred_objects() {
    let mut t = trail();
    // Two objects at 10:00:10 and one at 10:00:50; nothing at 10:01; one at 10:02:30.
    let a = t.write(at("2026-12-03T10:00:10Z"), 3).await;
    let b = t.write(at("2026-12-03T10:00:10.5Z"), 2).await;
    let c = t.write(at("2026-12-03T10:00:50Z"), 1).await;
    let d = t.write(at("2026-12-03T10:02:30Z"), 4).await;
    // An object written but not marked (its writer died between the put and the marking).
    let late_batch = t.record(at("2026-12-03T10:02:40Z"), 2).await;
    let key_e = audit::object_key(&late_batch.batch_id, 0).unwrap();
    let lines: Vec<String> = late_batch.events.iter().map(|e| e.get().to_string()).collect();
    t.store
        .put_if_absent(
            &key_e,
            bytes::Bytes::from(audit::encode(lines.iter().map(String::as_str))),
        )
        .await
        .unwrap();

    // Before 10:01:05 nothing is closed (grace 5 s).
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:01:04Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills), (0, 0));
    assert_eq!(r.tree_size, 10, "the pass integrates what was sequenced");

    // At 10:03:06 the periods 10:00, 10:01 (empty) and 10:02 are closed.
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:03:06Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills, r.objects, r.deferred), (3, 0, 4, 1));
    let listed = check_chain(&t).await;
    assert_eq!(listed.len(), 4);
    for k in [&a, &b, &c] {
        assert_eq!(listed[k].start, at("2026-12-03T10:00:00Z"));
    }
    assert_eq!(listed[&d].start, at("2026-12-03T10:02:00Z"));
    let chain = digests(&t).await;
    assert!(
        chain[1].0.objects.is_empty() && chain[1].0.kind == Kind::Period,
        "an empty period still gets a digest"
    );
    assert_eq!(chain[2].0.checkpoint.0, 10, "each digest names the latest checkpoint");

    // A run with nothing new writes nothing.
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:03:30Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills), (0, 0));

    // The stuck object's re-drive marks it; a late object of 10:00 arrives too.
    let report = tollgate_audit_writer::write_batch(&*t.log, &*t.store, late_batch)
        .await
        .unwrap();
    assert_eq!(report.rows_marked, 2);
    let f = t.write(at("2026-12-03T10:00:30Z"), 2).await;
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:04:06Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills, r.objects, r.deferred), (1, 2, 2, 0));
    let listed = check_chain(&t).await;
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[&f].kind, Kind::Backfill);
    assert_eq!(listed[&f].start, at("2026-12-03T10:00:00Z"));
    assert_eq!(listed[&key_e].kind, Kind::Backfill);
    assert_eq!(listed[&key_e].start, at("2026-12-03T10:02:00Z"));
    assert_eq!(digests(&t).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_log_starts_at_its_earliest_object_and_two_digesters_never_fork_the_chain() {
    let mut t = trail();
    t.write(at("2026-12-03T09:58:20Z"), 2).await;
    let other = Digester::new(
        t.log.clone(),
        t.store.clone(),
        t.store.clone(),
        t.signer.clone(),
        t.digester.settings().clone(),
    );
    let now = at("2026-12-03T10:01:30Z");
    let (x, y) = tokio::join!(t.digester.run(now), other.run(now));
    // One of them may lose a race on a sequence number; it never writes a second digest n.
    for r in [&x, &y] {
        if let Err(e) = r {
            assert!(matches!(e, tollgate_core::digest::DigestError::Raced(_)), "{e}");
        }
    }
    t.digester.run(now).await.unwrap();
    let chain = digests(&t).await;
    let starts: Vec<OffsetDateTime> = chain.iter().map(|(d, _)| d.start).collect();
    assert_eq!(
        starts,
        vec![
            at("2026-12-03T09:58:00Z"),
            at("2026-12-03T09:59:00Z"),
            at("2026-12-03T10:00:00Z")
        ]
    );
    check_chain(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_log_digests_its_first_closed_period() {
    let t = trail();
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:01:30Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.objects, r.tree_size), (1, 0, 0));
    let chain = digests(&t).await;
    assert_eq!(chain[0].0.start, at("2026-12-03T10:00:00Z"));
    assert_eq!(chain[0].0.checkpoint, (0, None));
}

#[test]
fn the_timer_ticks_within_a_minute() {
    use tollgate_audit_digest::tick_interval;
    assert_eq!(tick_interval(Duration::from_secs(3600)), Duration::from_secs(60));
    assert_eq!(tick_interval(Duration::from_secs(60)), Duration::from_secs(15));
    assert_eq!(tick_interval(Duration::from_secs(2)), Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_backfill_in_the_chain_does_not_hide_newer_periods_from_the_lookback() {
    let mut t = trail();
    t.digester = Digester::new(
        t.log.clone(),
        t.store.clone(),
        t.store.clone(),
        t.signer.clone(),
        DigestSettings {
            period: PERIOD,
            grace: Duration::from_secs(5),
            lookback: 1,
        },
    );
    t.write(at("2026-12-03T10:00:10Z"), 1).await;
    t.write(at("2026-12-03T10:01:10Z"), 1).await;
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:02:06Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills), (2, 0));
    t.write(at("2026-12-03T10:00:20Z"), 1).await;
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:02:30Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills), (0, 1));
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:03:06Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills), (1, 0));
    // The chain is now P(10:00) P(10:01) B(10:00) P(10:02). A late object of 10:01: the walk
    // back must pass the backfill of 10:00 (older than the lookback) to reach 10:01's digest.
    t.write(at("2026-12-03T10:01:30Z"), 1).await;
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:03:30Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills, r.objects), (0, 1, 1));
    let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:03:40Z"))
        .await
        .unwrap();
    assert_eq!((r.periods, r.backfills), (0, 0));
    assert_eq!(check_chain(&t).await.len(), 4);
}
