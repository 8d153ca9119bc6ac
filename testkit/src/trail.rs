//! An audit trail built through the real parts over embedded storage (SQLite, a directory):
//! rows inserted in the request log, each batch written by the audit writer (the gzip NDJSON
//! object, the marking, the sequencing), and the integrator and digester the caller runs at the
//! times it chooses (`tollgate_audit_digest::run_pass`). The digest tests, the tamper corpus
//! of `tollgate verify` and `bench/verify.sh`'s trail builder all build their trails here.
//!
//! Feature `trail` (it links the audit writer and the embedded adapters, which the other users
//! of the test kit do not need to build).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tollgate_core::audit;
use tollgate_core::digest::{DigestSettings, Digester};
use tollgate_core::model::{AuditBatch, AuditWriteReport, NewRecord};
use tollgate_core::ports::RequestLog;
use tollgate_core::translog::{self, Integrator};
use tollgate_embedded::dirstore::DirObjectStore;
use tollgate_embedded::sqlite::SqliteRequestLog;
use tollgate_tlog::Ed25519Signer;

/// Makes the audit event of the `n`th request recorded in a trail, with its request id and time.
pub type EventFn = fn(n: usize, request_id: &str, t: OffsetDateTime) -> String;

/// Makes the request id of the `n`th request recorded in a trail.
pub type RequestIdFn = fn(n: usize) -> String;

/// The smallest event the writer, the digester and the verifier accept: version, time, id.
pub fn minimal_event(_n: usize, request_id: &str, t: OffsetDateTime) -> String {
    format!(
        "{{\"event_version\":\"2\",\"event_time\":\"{}\",\"request_id\":\"{request_id}\"}}",
        tollgate_core::clock::format(t)
    )
}

/// `req-00000`, `req-00001`, ...: ids a test can name in its assertions.
pub fn numbered_request_id(n: usize) -> String {
    format!("req-{n:05}")
}

/// Time spent in the trail's two writing phases, summed over every batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    /// Inserting the rows in the request log.
    pub insert: Duration,
    /// Writing the batches: the object, the marking and the sequencing.
    pub write: Duration,
}

/// A request log, an object store (audit objects and the trail's `log/` and `digest/`), the
/// log's signer, and the integrator and digester over them.
pub struct Trail {
    /// The data directory.
    pub dir: PathBuf,
    /// The request log (`<dir>/requests.db`).
    pub log: Arc<SqliteRequestLog>,
    /// The object store (`<dir>/objects`).
    pub store: Arc<DirObjectStore>,
    /// The log's checkpoint and digest signer.
    pub signer: Arc<Ed25519Signer>,
    /// The integrator of the log (tiles, checkpoints).
    pub integrator: Integrator,
    /// The digester of the trail.
    pub digester: Digester,
    /// Time spent writing so far.
    pub spent: Spent,
    event: EventFn,
    request_id: RequestIdFn,
    next: usize,
    temporary: bool,
}

impl Drop for Trail {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Trail {
    /// A trail in a new temporary directory (removed when the trail is dropped), signed by a new
    /// Ed25519 key named `origin`, with [`minimal_event`]s and [`numbered_request_id`]s.
    pub fn temporary(origin: &str, settings: DigestSettings) -> Self {
        let dir = std::env::temp_dir().join(format!("tollgate-trail-{}", uuid::Uuid::new_v4().simple()));
        let signer = Ed25519Signer::generate(origin).expect("an Ed25519 log key");
        let mut trail = Self::open(&dir, signer, settings);
        trail.temporary = true;
        trail
    }

    /// A trail in the embedded data directory `dir` (created when missing, kept), signed by the
    /// directory's log key as `tollgate` itself would load or create it.
    pub fn in_data_dir(dir: &Path, settings: DigestSettings) -> Self {
        std::fs::create_dir_all(dir).expect("the data directory");
        let signer = translog::load_or_create_key(
            &dir.join(translog::KEY_FILE),
            None,
            &tollgate_embedded::default_origin(dir),
        )
        .expect("the log key");
        Self::open(dir, signer, settings)
    }

    fn open(dir: &Path, signer: Ed25519Signer, settings: DigestSettings) -> Self {
        let log = Arc::new(SqliteRequestLog::open(dir.join(tollgate_embedded::DB_FILE)).expect("the request log"));
        let store = Arc::new(DirObjectStore::open(dir.join(tollgate_embedded::OBJECTS_DIR)).expect("the object store"));
        let signer = Arc::new(signer);
        let integrator = Integrator::new(log.clone(), store.clone(), signer.clone());
        let digester = Digester::new(log.clone(), store.clone(), store.clone(), signer.clone(), settings);
        Self {
            dir: dir.to_path_buf(),
            log,
            store,
            signer,
            integrator,
            digester,
            spent: Spent::default(),
            event: minimal_event,
            request_id: numbered_request_id,
            next: 0,
            temporary: false,
        }
    }

    /// The same trail, its events made by `event`.
    pub fn with_events(mut self, event: EventFn) -> Self {
        self.event = event;
        self
    }

    /// The same trail, its request ids made by `request_id`.
    pub fn with_request_ids(mut self, request_id: RequestIdFn) -> Self {
        self.request_id = request_id;
        self
    }

    /// The path of the request log's SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(tollgate_embedded::DB_FILE)
    }

    /// The path of the object at `key` in the store's directory.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.join(tollgate_embedded::OBJECTS_DIR).join(key)
    }

    /// Records `n` requests of a batch of time `t` in the request log (their rows, each with its
    /// event as the outbox payload) and returns the batch, not yet written.
    pub async fn record(&mut self, t: OffsetDateTime, n: usize) -> AuditBatch {
        let batch_id = audit::batch_id_at(t);
        let mut events = Vec::with_capacity(n);
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let id = (self.request_id)(self.next);
            let e = (self.event)(self.next, &id, t);
            self.next += 1;
            rows.push(NewRecord {
                audit_payload: e.clone(),
                ..crate::contract::sample_record(&id, &batch_id)
            });
            events.push(e);
        }
        let started = Instant::now();
        self.log.insert_batch(&rows).await.expect("insert the rows");
        self.spent.insert += started.elapsed();
        let started = Instant::now();
        let batch = serde_json::from_slice(&audit::batch_payload(&batch_id, &events)).expect("a batch");
        self.spent.write += started.elapsed();
        batch
    }

    /// Writes `batch` with the audit writer (object, marking, sequencing).
    pub async fn write_batch(&mut self, batch: AuditBatch) -> AuditWriteReport {
        let started = Instant::now();
        let report = tollgate_audit_writer::write_batch(&*self.log, &*self.store, batch)
            .await
            .expect("write the batch");
        self.spent.write += started.elapsed();
        report
    }

    /// Records and writes a batch of `n` requests of time `t`; returns its object's key.
    pub async fn write(&mut self, t: OffsetDateTime, n: usize) -> String {
        let batch = self.record(t, n).await;
        let report = self.write_batch(batch).await;
        report.objects[0].key.clone()
    }
}
