//! The tamper corpus (issue 15's acceptance for `tollgate verify`): a real trail over embedded
//! storage (SQLite, a directory), built with the real audit writer, integrator and digester at
//! chosen times (an empty period, a backfill, a pending object included), verifies with no
//! finding; each kind of tampering is then found, with a finding that names what and where.

use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tollgate_audit_digest::run_pass;
use tollgate_core::audit;
use tollgate_core::digest::{self, DigestSettings};
use tollgate_core::model::NewRecord;
use tollgate_core::ports::{ObjectStore, RequestLog};
use tollgate_core::translog;
use tollgate_embedded::dirstore::DirObjectStore;
use tollgate_embedded::sqlite::SqliteRequestLog;
use tollgate_tlog::Ed25519Signer;
use tollgate_verify::{verify, NoProgress, Options, Report, Sources};

const PERIOD: Duration = Duration::from_secs(60);
const ORIGIN: &str = "tollgate.test/verify";

fn at(s: &str) -> OffsetDateTime {
    tollgate_core::clock::parse_rfc3339(s).unwrap()
}

fn event(id: &str, t: OffsetDateTime) -> String {
    format!(
        "{{\"event_version\":\"2\",\"event_time\":\"{}\",\"request_id\":\"{id}\",\"route\":\"/v1/echo\"}}",
        tollgate_core::clock::format(t)
    )
}

/// A trail and the keys of its objects, by name:
/// - period 10:00: `a` (3 events, indexes 0-2), `b` (2, 3-4), `c` (1, 5): digest 0
/// - period 10:01: nothing: digest 1 (empty)
/// - period 10:02: `d` (4, 6-9): digest 2
/// - period 10:03: `g` (3, 12-14): digest 3
/// - `f` (2, 10-11), a late object of 10:00: backfill digest 4
/// - `h` (2, 15-16) of 10:04: pending (its period is not closed at [`NOW`])
struct Trail {
    trail: tollgate_testkit::trail::Trail,
    keys: std::collections::HashMap<&'static str, String>,
}

const NOW: &str = "2026-12-03T10:04:30Z";

impl std::ops::Deref for Trail {
    type Target = tollgate_testkit::trail::Trail;

    fn deref(&self) -> &Self::Target {
        &self.trail
    }
}

impl Trail {
    async fn write(&mut self, name: &'static str, t: OffsetDateTime, n: usize) {
        let key = self.trail.write(t, n).await;
        self.keys.insert(name, key);
    }

    async fn build() -> Self {
        let trail = tollgate_testkit::trail::Trail::temporary(
            ORIGIN,
            DigestSettings {
                period: PERIOD,
                grace: Duration::from_secs(5),
                lookback: 10,
            },
        )
        .with_events(|_, id, t| event(id, t));
        let mut t = Self {
            trail,
            keys: Default::default(),
        };
        t.write("a", at("2026-12-03T10:00:10Z"), 3).await;
        t.write("b", at("2026-12-03T10:00:10.5Z"), 2).await;
        t.write("c", at("2026-12-03T10:00:50Z"), 1).await;
        t.write("d", at("2026-12-03T10:02:30Z"), 4).await;
        let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:03:06Z"))
            .await
            .unwrap();
        assert_eq!((r.periods, r.tree_size), (3, 10));
        t.write("f", at("2026-12-03T10:00:30Z"), 2).await;
        t.write("g", at("2026-12-03T10:03:20Z"), 3).await;
        let r = run_pass(&t.integrator, &t.digester, at("2026-12-03T10:04:06Z"))
            .await
            .unwrap();
        assert_eq!((r.periods, r.backfills, r.tree_size), (1, 1, 15));
        t.write("h", at("2026-12-03T10:04:10Z"), 2).await;
        assert_eq!(t.integrator.integrate().await.unwrap().size, 17);
        t
    }

    fn key(&self, name: &str) -> &str {
        &self.keys[name]
    }

    fn path(&self, key: &str) -> std::path::PathBuf {
        self.object_path(key)
    }

    fn options(&self) -> Options {
        Options {
            verifier: self.signer.verifier_key(),
            from: None,
            to: None,
            auditor_checkpoint: None,
            now: at(NOW),
            settle: Duration::from_secs(6),
            period: PERIOD,
            concurrency: 4,
        }
    }

    async fn verify_with(&self, opt: Options) -> Report {
        let src = Sources {
            audit: self.store.clone(),
            trail: self.store.clone(),
            tlog: self.log.clone(),
            log: self.log.clone(),
        };
        let r = verify(&src, &opt, &NoProgress).await.unwrap();
        eprintln!("{}", r.to_text());
        r
    }

    async fn verify(&self) -> Report {
        self.verify_with(self.options()).await
    }

    fn lines(&self, name: &str) -> Vec<String> {
        audit::decode(&std::fs::read(self.path(self.key(name))).unwrap()).unwrap()
    }

    fn rewrite(&self, name: &str, lines: &[String]) {
        std::fs::write(
            self.path(self.key(name)),
            audit::encode(lines.iter().map(String::as_str)),
        )
        .unwrap();
    }

    fn sql(&self, statement: &str) {
        let db = rusqlite::Connection::open(self.db_path()).unwrap();
        db.execute_batch(statement).unwrap();
    }

    async fn checkpoint(&self, size: u64) -> Vec<u8> {
        self.store
            .get(&translog::checkpoint_key(size))
            .await
            .unwrap()
            .unwrap()
            .to_vec()
    }
}

/// The finding with this code whose place contains `at`; fails with the report otherwise.
fn assert_found(r: &Report, code: &str, at: &str) {
    assert!(
        r.findings.iter().any(|f| f.code == code && f.at.contains(at)),
        "no {code} finding at {at:?}:\n{}",
        r.to_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_trail_verifies_with_no_finding() {
    let t = Trail::build().await;
    let r = t.verify().await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.digests.checked, 5, "4 periods (one empty) and a backfill");
    assert_eq!((r.objects.checked, r.objects.valid), (7, 7));
    assert_eq!(r.pending_objects, 1, "h: its period is not digested yet");
    assert_eq!((r.events.checked, r.events.valid), (17, 17));
    assert_eq!((r.rows.checked, r.rows.valid), (17, 17));
    assert_eq!(r.tree_size, 17);
    assert_eq!(r.checkpoints.checked, r.checkpoints.valid);
    assert!(r.checkpoints.checked >= 3, "after each pass, and after h");
    assert!(r.tiles.checked >= 3 && r.tiles.checked == r.tiles.valid);
    assert_eq!(
        r.found,
        Some(("2026-12-03T10:00:00Z".into(), "2026-12-03T10:04:00Z".into()))
    );
    // The auditor's own copy of the newest checkpoint, and of an older one: consistent.
    for size in [10, 17] {
        let opt = Options {
            auditor_checkpoint: Some(t.checkpoint(size).await),
            ..t.options()
        };
        let r = t.verify_with(opt).await;
        assert!(r.ok(), "{}", r.to_text());
    }
    // A bounded run: only period 10:02's objects, checked against the tiles.
    let opt = Options {
        from: Some(at("2026-12-03T10:02:00Z")),
        to: Some(at("2026-12-03T10:03:00Z")),
        ..t.options()
    };
    let r = t.verify_with(opt).await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!((r.objects.checked, r.events.checked, r.rows.checked), (1, 4, 4));
    assert_eq!(r.digests.checked, 5, "the chain is always walked whole");
    // Period 10:00: its digest and its backfill (indexes 0-5 and 10-11, around d's 6-9).
    let opt = Options {
        from: Some(at("2026-12-03T10:00:00Z")),
        to: Some(at("2026-12-03T10:01:00Z")),
        ..t.options()
    };
    let r = t.verify_with(opt).await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!((r.objects.checked, r.events.checked, r.rows.checked), (4, 8, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_log_verifies() {
    let dir = std::env::temp_dir().join(format!("tollgate-verify-empty-{}", uuid::Uuid::new_v4().simple()));
    let log = Arc::new(SqliteRequestLog::open(dir.join("r.db")).unwrap());
    let store = Arc::new(DirObjectStore::open(dir.join("objects")).unwrap());
    let signer = Ed25519Signer::generate(ORIGIN).unwrap();
    let src = Sources {
        audit: store.clone(),
        trail: store,
        tlog: log.clone(),
        log,
    };
    let opt = Options {
        verifier: signer.verifier_key(),
        from: None,
        to: None,
        auditor_checkpoint: None,
        now: at(NOW),
        settle: Duration::from_secs(6),
        period: PERIOD,
        concurrency: 2,
    };
    let r = verify(&src, &opt, &NoProgress).await.unwrap();
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.digests.checked + r.objects.checked + r.events.checked, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_changed_in_an_object_is_found() {
    let t = Trail::build().await;
    // In the content (the object re-gzipped, so it still reads).
    let mut lines = t.lines("a");
    lines[1] = lines[1].replacen("/v1/echo", "/v1/ech0", 1);
    t.rewrite("a", &lines);
    // And in the compressed bytes of another one.
    let path = t.path(t.key("d"));
    let mut raw = std::fs::read(&path).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x20;
    std::fs::write(&path, raw).unwrap();
    let r = t.verify().await;
    assert_found(&r, "object_hash", t.key("a"));
    assert!(
        r.findings
            .iter()
            .any(|f| f.at == t.key("d") && (f.code == "object_hash" || f.code == "object_unreadable")),
        "{}",
        r.to_text()
    );
    // The changed line is no longer the log's entry: the checkpoints after it disagree.
    assert_found(&r, "checkpoint_root", "log/checkpoint/10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_is_found() {
    let t = Trail::build().await;
    std::fs::remove_file(t.path(t.key("b"))).unwrap();
    let r = t.verify().await;
    assert_found(&r, "object_missing", t.key("b"));
    assert!(r.detail_of("object_missing").contains("digest 0"), "{}", r.to_text());
    // Its indexes are filled from the tiles: the rest of the log still checks out.
    assert!(r.with_code("checkpoint_root").is_empty(), "{}", r.to_text());
    assert_eq!(r.events.valid, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_planted_is_found() {
    let t = Trail::build().await;
    let when = at("2026-12-03T10:01:20Z");
    let key = audit::object_key(&tollgate_core::audit::batch_id_at(when), 0).unwrap();
    let fake = [event("req-planted", when)];
    t.store
        .put_if_absent(&key, audit::encode(fake.iter().map(String::as_str)).into())
        .await
        .unwrap();
    // And a file that is not even an audit object's name.
    t.store
        .put_if_absent("audit/v1/2026/12/03/10/notes.txt", "x".into())
        .await
        .unwrap();
    let r = t.verify().await;
    assert_found(&r, "object_unlisted", &key);
    assert_found(&r, "object_unexpected", "notes.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_removed_and_the_object_regzipped_is_found() {
    let t = Trail::build().await;
    let mut lines = t.lines("d");
    lines.remove(2);
    t.rewrite("d", &lines);
    let r = t.verify().await;
    assert_found(&r, "object_hash", t.key("d"));
    assert_found(&r, "object_events", t.key("d"));
    assert!(r
        .detail_of("object_events")
        .contains("holds 3 events, its digest lists 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objects_contents_swapped_are_found() {
    let t = Trail::build().await;
    let (pa, pb) = (t.path(t.key("a")), t.path(t.key("g")));
    let (a, g) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
    std::fs::write(&pa, g).unwrap();
    std::fs::write(&pb, a).unwrap();
    let r = t.verify().await;
    assert_found(&r, "object_hash", t.key("a"));
    assert_found(&r, "object_hash", t.key("g"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_deleted_is_found() {
    let t = Trail::build().await;
    std::fs::remove_file(t.path(&digest::key(1))).unwrap();
    let r = t.verify().await;
    assert_found(&r, "digest_missing", &digest::key(1));
    assert_found(&r, "period_missing", "2026-12-03T10:01:00Z");
    // The newest regular digest deleted: its period is missing, its object unlisted.
    let t = Trail::build().await;
    std::fs::remove_file(t.path(&digest::key(4))).unwrap();
    std::fs::remove_file(t.path(&digest::key(3))).unwrap();
    let r = t.verify().await;
    assert_found(&r, "period_missing", "2026-12-03T10:03:00Z");
    assert_found(&r, "object_unlisted", t.key("g"));
    assert_found(&r, "object_unlisted", t.key("f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_modified_is_found() {
    let t = Trail::build().await;
    let path = t.path(&digest::key(2));
    let text = std::fs::read_to_string(&path).unwrap();
    // Drop the object line of d, keep everything else (the signature too).
    let d_line = text.lines().find(|l| l.starts_with(t.key("d"))).unwrap().to_string();
    let edited = text
        .replace(&format!("{d_line}\n"), "")
        .replace("objects 1\n", "objects 0\n");
    std::fs::write(&path, edited).unwrap();
    let r = t.verify().await;
    assert_found(&r, "digest_signature", &digest::key(2));
    assert_found(&r, "digest_link", &digest::key(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_replaced_by_an_older_one_is_found() {
    let t = Trail::build().await;
    std::fs::copy(t.path(&digest::key(1)), t.path(&digest::key(3))).unwrap();
    let r = t.verify().await;
    assert_found(&r, "digest_misplaced", &digest::key(3));
    assert!(r.detail_of("digest_misplaced").contains("holds digest 1"));
    assert_found(&r, "digest_link", &digest::key(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_resigned_with_another_key_is_found() {
    let t = Trail::build().await;
    let path = t.path(&digest::key(2));
    let bytes = std::fs::read(&path).unwrap();
    let note = tollgate_tlog::note::parse_unverified(&bytes).unwrap();
    // Same name, another key: the note format lets anyone sign with a key of any name.
    let other = Ed25519Signer::generate(ORIGIN).unwrap();
    let signed = tollgate_tlog::note::sign_note(&note.text, &[&other]).await.unwrap();
    std::fs::write(&path, signed).unwrap();
    let r = t.verify().await;
    assert_found(&r, "digest_signature", &digest::key(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rows_audit_key_or_index_altered_is_found() {
    let t = Trail::build().await;
    t.sql(&format!(
        "UPDATE api_requests SET audit_key = '{}' WHERE request_id = 'req-00007'",
        t.key("a")
    ));
    t.sql("UPDATE api_requests SET log_index = 999999 WHERE request_id = 'req-00012'");
    let r = t.verify().await;
    assert_found(&r, "row_mismatch", "request req-00007 (index 7)");
    assert!(r.detail_of("row_mismatch").contains("audit_key"));
    assert_found(&r, "event_without_row", "request req-00012 (index 12");
    assert_found(&r, "row_beyond_log", "request req-00012 (index 999999)");
    // Two rows' indexes exchanged (through a free index: log_index is unique).
    let t = Trail::build().await;
    t.sql(
        "UPDATE api_requests SET log_index = -1 WHERE request_id = 'req-00001';
         UPDATE api_requests SET log_index = 1 WHERE request_id = 'req-00002';
         UPDATE api_requests SET log_index = 2 WHERE request_id = 'req-00001';",
    );
    let r = t.verify().await;
    assert_found(&r, "row_mismatch", "request req-00001 (index 2)");
    assert_found(&r, "row_mismatch", "request req-00002 (index 1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_entries_and_checkpoints_deleted_are_caught_with_the_auditors_checkpoint() {
    let t = Trail::build().await;
    let kept = t.checkpoint(17).await;
    // The operator removes h: its object, its rows, the checkpoint that holds it, and winds the
    // sequencer and the state back to the checkpoint of size 15.
    let cp15 = String::from_utf8(t.checkpoint(15).await).unwrap();
    let root15 =
        tollgate_tlog::Checkpoint::parse(&tollgate_tlog::note::parse_unverified(cp15.as_bytes()).unwrap().text)
            .unwrap()
            .root;
    std::fs::remove_file(t.path(t.key("h"))).unwrap();
    std::fs::remove_file(t.path(&translog::checkpoint_key(17))).unwrap();
    t.sql(&format!(
        "DELETE FROM api_requests WHERE log_index >= 15;
         UPDATE tlog_sequencer SET next_index = 15;
         UPDATE tlog_state SET size = 15, root_hash = '{}', checkpoint = '{}';",
        tollgate_core::model::hex(&root15),
        cp15.replace('\'', "''")
    ));
    // Consistent in itself: nothing the log holds says it was longer.
    let r = t.verify().await;
    assert!(r.ok(), "{}", r.to_text());
    // The auditor's checkpoint does.
    let opt = Options {
        auditor_checkpoint: Some(kept),
        ..t.options()
    };
    let r = t.verify_with(opt).await;
    assert_found(&r, "log_truncated", "size 17");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_is_found() {
    // A second checkpoint of size 10, signed by the log's key over other leaves, put in place
    // of the stored one: the digests name the original, and the events give another root.
    let t = Trail::build().await;
    let mut other = tollgate_tlog::merkle::MemoryTree::new();
    for i in 0..10u8 {
        other.append(&[i]);
    }
    let forged = tollgate_tlog::Checkpoint::new(ORIGIN, 10, other.root(10).unwrap()).to_text();
    let signed = tollgate_tlog::note::sign_note(&forged, &[&*t.signer]).await.unwrap();
    std::fs::write(t.path(&translog::checkpoint_key(10)), &signed).unwrap();
    let r = t.verify().await;
    assert_found(&r, "checkpoint_root", "log/checkpoint/10");
    assert_found(&r, "checkpoint_fork", "log/checkpoint/10");
    // The auditor holds a different checkpoint of size 17 than the log's: a fork.
    let t = Trail::build().await;
    let forged = tollgate_tlog::Checkpoint::new(ORIGIN, 17, [7; 32]).to_text();
    let signed = tollgate_tlog::note::sign_note(&forged, &[&*t.signer]).await.unwrap();
    let opt = Options {
        auditor_checkpoint: Some(signed.into_bytes()),
        ..t.options()
    };
    let r = t.verify_with(opt).await;
    assert_found(&r, "checkpoint_fork", "log/checkpoint/17");
    // And one of a size the log has no checkpoint of (16): the tiles give the log's root there.
    let forged = tollgate_tlog::Checkpoint::new(ORIGIN, 16, [7; 32]).to_text();
    let signed = tollgate_tlog::note::sign_note(&forged, &[&*t.signer]).await.unwrap();
    let opt = Options {
        auditor_checkpoint: Some(signed.into_bytes()),
        ..t.options()
    };
    let r = t.verify_with(opt).await;
    assert_found(&r, "checkpoint_fork", "size 16");
    // A checkpoint not signed by the log's key is no evidence of anything.
    let stranger = Ed25519Signer::generate(ORIGIN).unwrap();
    let signed = tollgate_tlog::note::sign_note(&forged, &[&stranger]).await.unwrap();
    let opt = Options {
        auditor_checkpoint: Some(signed.into_bytes()),
        ..t.options()
    };
    let r = t.verify_with(opt).await;
    assert_found(&r, "auditor_checkpoint", "auditor's checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_checks_its_periods_only() {
    let t = Trail::build().await;
    let mut lines = t.lines("a");
    lines[0] = lines[0].replacen("/v1/echo", "/v1/ech0", 1);
    t.rewrite("a", &lines);
    let bounded = |from: &str, to: &str| Options {
        from: Some(at(from)),
        to: Some(at(to)),
        ..t.options()
    };
    // Period 10:02 does not hold a: nothing found there.
    let r = t
        .verify_with(bounded("2026-12-03T10:02:00Z", "2026-12-03T10:03:00Z"))
        .await;
    assert!(r.ok(), "{}", r.to_text());
    // Period 10:00 does: the object's hash, and its line against the authenticated tiles.
    let r = t
        .verify_with(bounded("2026-12-03T10:00:00Z", "2026-12-03T10:01:00Z"))
        .await;
    assert_found(&r, "object_hash", t.key("a"));
    assert_found(&r, "event_leaf", "index 0");
}

trait Detail {
    fn detail_of(&self, code: &str) -> String;
}

impl Detail for Report {
    fn detail_of(&self, code: &str) -> String {
        self.with_code(code)
            .iter()
            .map(|f| f.detail.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_awaiting_its_marking_is_pending_not_planted() {
    // Its writer died between the put and the marking: the rows exist, unaudited; the
    // digester defers the object until the reconciler's re-drive marks it.
    let t = Trail::build().await;
    let when = at("2026-12-03T10:01:40Z");
    let batch_id = tollgate_core::audit::batch_id_at(when);
    let ids = ["req-stuck-1", "req-stuck-2"];
    let rows: Vec<NewRecord> = ids
        .iter()
        .map(|id| NewRecord {
            audit_payload: event(id, when),
            ..tollgate_testkit::contract::sample_record(id, &batch_id)
        })
        .collect();
    t.log.insert_batch(&rows).await.unwrap();
    let lines: Vec<String> = ids.iter().map(|id| event(id, when)).collect();
    let key = audit::object_key(&batch_id, 0).unwrap();
    t.store
        .put_if_absent(&key, audit::encode(lines.iter().map(String::as_str)).into())
        .await
        .unwrap();
    let r = t.verify().await;
    assert!(r.ok(), "{}", r.to_text());
    assert_eq!(r.pending_objects, 2);
    // The same object with one event nobody recorded is planted.
    let mut forged = lines.clone();
    forged.push(event("req-nobody", when));
    std::fs::write(t.path(&key), audit::encode(forged.iter().map(String::as_str))).unwrap();
    let r = t.verify().await;
    assert_found(&r, "object_unlisted", &key);
}
