//! `audit-writer`: writes one batch of audit events as create-only gzip NDJSON, then marks
//! the rows audited.
//!
//! Exactly-once without coordination: part `n` of a batch has a key fixed by the batch id,
//! and puts are create-only. On a retry or a concurrent re-drive the put finds the key
//! taken; the writer reads that object, counts the events it already holds as written (and
//! marks them), and writes only the rest, to part `n + 1`. So every event ends up in exactly
//! one object, whatever mix of retries, re-drives and lost invocations happened.

use bytes::Bytes;
use std::collections::BTreeMap;
use tollgate_core::audit::{self, AuditFormatError};
use tollgate_core::model::{AuditBatch, AuditWriteReport, AuditedEvent, WrittenObject};
use tollgate_core::ports::{LogError, ObjectStore, PutOutcome, RequestLog, StoreError, TlogPending};

/// Parts tried per batch before giving up (each taken part means a concurrent writer made
/// progress, so this is never reached in practice).
pub const MAX_PARTS: u32 = 64;

/// Why a batch was not (fully) written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The batch is malformed.
    #[error("invalid batch: {0}")]
    Invalid(#[from] AuditFormatError),
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Too many parts were taken.
    #[error("batch {0}: every part up to {MAX_PARTS} is taken")]
    PartsExhausted(String),
}

/// Writes a batch; see the module docs for the protocol.
pub async fn write_batch(
    log: &dyn RequestLog,
    store: &dyn ObjectStore,
    batch: AuditBatch,
) -> Result<AuditWriteReport, WriteError> {
    Ok(write(log, store, batch, false).await?.0)
}

/// [`write_batch`] for a writer that integrates the transparency log next: its markings also
/// answer the log's state and pending leaves ([`RequestLog::mark_audited_pending`], in the
/// same calls), and the last marking's answer is returned for
/// [`tollgate_core::translog::Integrator::integrate_from`], so the integration reads nothing
/// itself. `None` when nothing was marked or the log does not answer it.
pub async fn write_batch_pending(
    log: &dyn RequestLog,
    store: &dyn ObjectStore,
    batch: AuditBatch,
) -> Result<(AuditWriteReport, Option<TlogPending>), WriteError> {
    write(log, store, batch, true).await
}

/// Marks `events` audited in `key`, with the log's pending read when `pending` asks for it
/// (the last answer is kept: it was read after every earlier marking of the batch).
async fn mark(
    log: &dyn RequestLog,
    key: &str,
    events: &[AuditedEvent],
    pending: &mut Option<Option<TlogPending>>,
) -> Result<u64, LogError> {
    match pending {
        None => log.mark_audited(key, events).await,
        Some(last) => {
            let m = log
                .mark_audited_pending(key, events, tollgate_core::translog::MAX_LEAVES_PER_ROUND)
                .await?;
            if m.pending.is_some() {
                *last = m.pending;
            }
            Ok(m.marked)
        }
    }
}

async fn write(
    log: &dyn RequestLog,
    store: &dyn ObjectStore,
    batch: AuditBatch,
    with_pending: bool,
) -> Result<(AuditWriteReport, Option<TlogPending>), WriteError> {
    let mut pending: Option<Option<TlogPending>> = with_pending.then_some(None);
    audit::batch_time(&batch.batch_id)?;
    // Sorted by request id (and deduplicated), so the same events always encode to the same bytes.
    let mut remaining: BTreeMap<String, String> = BTreeMap::new();
    for e in &batch.events {
        let text = e.get().to_string();
        remaining.insert(audit::event_request_id(&text)?, text);
    }
    let mut report = AuditWriteReport {
        batch_id: batch.batch_id.clone(),
        objects: Vec::new(),
        rows_marked: 0,
    };
    for part in 0..MAX_PARTS {
        if remaining.is_empty() {
            return Ok((report, pending.flatten()));
        }
        let key = audit::object_key(&batch.batch_id, part)?;
        let body = Bytes::from(audit::encode(remaining.values().map(String::as_str)));
        match store.put_if_absent(&key, body).await? {
            PutOutcome::Created => {
                // The leaves, in the object's line order: each event's exact line.
                let events: Vec<AuditedEvent> = std::mem::take(&mut remaining)
                    .into_iter()
                    .map(|(request_id, line)| AuditedEvent {
                        leaf_hash: tollgate_tlog::merkle::leaf_hash(line.as_bytes()),
                        request_id,
                    })
                    .collect();
                report.rows_marked += mark(log, &key, &events, &mut pending).await?;
                report.objects.push(WrittenObject {
                    key,
                    events: events.len(),
                    created: true,
                });
                return Ok((report, pending.flatten()));
            }
            PutOutcome::AlreadyExists => {
                let existing = store
                    .get(&key)
                    .await?
                    .ok_or_else(|| StoreError::Unavailable(format!("{key} exists but cannot be read yet")))?;
                let mut held = Vec::new();
                for line in audit::decode(&existing)? {
                    let id = audit::event_request_id(&line)?;
                    if remaining.remove(&id).is_some() {
                        // The leaf is the line as the object holds it, not our copy of the event.
                        held.push(AuditedEvent {
                            leaf_hash: tollgate_tlog::merkle::leaf_hash(line.as_bytes()),
                            request_id: id,
                        });
                    }
                }
                if !held.is_empty() {
                    report.rows_marked += mark(log, &key, &held, &mut pending).await?;
                    report.objects.push(WrittenObject {
                        key,
                        events: held.len(),
                        created: false,
                    });
                }
            }
        }
    }
    if remaining.is_empty() {
        Ok((report, pending.flatten()))
    } else {
        Err(WriteError::PartsExhausted(batch.batch_id))
    }
}

impl WriteError {
    /// The `errorType` reported to Lambda (and so to the invoker).
    pub fn error_type(&self) -> &'static str {
        match self {
            WriteError::Invalid(_) => "InvalidBatch",
            WriteError::Store(_) => "ObjectStoreError",
            WriteError::Log(_) => "RequestLogError",
            WriteError::PartsExhausted(_) => "PartsExhausted",
        }
    }
}

/// The writer as an in-process function over the given adapters (embedded mode): the same
/// JSON contract and error types as the Lambda.
pub fn local_function(
    log: std::sync::Arc<dyn RequestLog>,
    store: std::sync::Arc<dyn ObjectStore>,
) -> std::sync::Arc<dyn tollgate_core::local::LocalFunction> {
    local_function_with_log(log, store, None)
}

/// [`local_function`] that integrates the transparency log after each batch it marked
/// (`docs/transparency-log.md`): the new leaves go into tiles and a signed checkpoint before
/// the batch is reported done, so a proof is available as soon as the writer returns.
pub fn local_function_with_log(
    log: std::sync::Arc<dyn RequestLog>,
    store: std::sync::Arc<dyn ObjectStore>,
    integrator: Option<std::sync::Arc<tollgate_core::translog::Integrator>>,
) -> std::sync::Arc<dyn tollgate_core::local::LocalFunction> {
    tollgate_core::http_fn::json_function(move |batch: AuditBatch| {
        let (log, store, integrator) = (log.clone(), store.clone(), integrator.clone());
        async move {
            let Some(integrator) = integrator else {
                return write_batch(&*log, &*store, batch).await;
            };
            let (report, pending) = write_batch_pending(&*log, &*store, batch).await?;
            if report.rows_marked > 0 {
                integrate_after(&integrator, pending).await;
            }
            Ok::<_, WriteError>(report)
        }
    })
}

/// Integrates what was sequenced; a failure is logged, never the batch's: its events are
/// marked and sequenced, and the next integration (any batch's, or the timer's) takes them.
pub async fn integrate(integrator: &tollgate_core::translog::Integrator) {
    if let Err(e) = integrator.integrate().await {
        tracing::warn!(error = %e, "tlog: integration failed; the next one retries");
    }
}

/// [`integrate`] after a batch this writer marked, from its marking's pending read when it
/// has one ([`write_batch_pending`]): one call of the database a round instead of two.
pub async fn integrate_after(integrator: &tollgate_core::translog::Integrator, pending: Option<TlogPending>) {
    let result = match pending {
        Some(p) => integrator.integrate_from(p).await,
        None => integrator.integrate().await,
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "tlog: integration failed; the next one retries");
    }
}

impl From<WriteError> for lambda_runtime::Diagnostic {
    fn from(e: WriteError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use tollgate_core::model::NewRecord;
    use tollgate_embedded::dirstore::DirObjectStore;
    use tollgate_embedded::sqlite::SqliteRequestLog;

    struct Fixture {
        dir: std::path::PathBuf,
        log: Arc<SqliteRequestLog>,
        store: Arc<DirObjectStore>,
        batch_id: String,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn event(id: &str) -> String {
        format!("{{\"request_id\":\"{id}\",\"event_version\":\"1\"}}")
    }

    async fn fixture(n: usize) -> Fixture {
        let dir = std::env::temp_dir().join(format!("tollgate-writer-{}", uuid::Uuid::new_v4().simple()));
        let log = Arc::new(SqliteRequestLog::open(dir.join("r.db")).unwrap());
        let store = Arc::new(DirObjectStore::open(dir.join("objects")).unwrap());
        let batch_id = audit::new_batch_id();
        let rows: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                audit_payload: event(&format!("r{i:03}")),
                ..tollgate_testkit::contract::sample_record(&format!("r{i:03}"), &batch_id)
            })
            .collect();
        tollgate_core::RequestLog::insert_batch(&*log, &rows).await.unwrap();
        Fixture {
            dir,
            log,
            store,
            batch_id,
        }
    }

    fn batch(id: &str, ids: impl IntoIterator<Item = usize>) -> AuditBatch {
        let events: Vec<String> = ids.into_iter().map(|i| event(&format!("r{i:03}"))).collect();
        serde_json::from_slice(&audit::batch_payload(id, &events)).unwrap()
    }

    async fn counts(store: &DirObjectStore) -> (usize, HashMap<String, usize>) {
        let keys = ObjectStore::list(store, "audit/v1/").await.unwrap();
        let mut counts = HashMap::new();
        for k in &keys {
            for line in audit::decode(&ObjectStore::get(store, k).await.unwrap().unwrap()).unwrap() {
                *counts.entry(audit::event_request_id(&line).unwrap()).or_insert(0) += 1;
            }
        }
        (keys.len(), counts)
    }

    /// Every line of the fixture's objects by its row's log index, and the tree they make in
    /// index order (what the log must be).
    async fn log_of_objects(
        f: &Fixture,
    ) -> (
        std::collections::BTreeMap<u64, String>,
        tollgate_tlog::merkle::MemoryTree,
    ) {
        let mut by_index = std::collections::BTreeMap::new();
        for k in ObjectStore::list(&*f.store, "audit/v1/").await.unwrap() {
            for line in audit::decode(&ObjectStore::get(&*f.store, &k).await.unwrap().unwrap()).unwrap() {
                let row = tollgate_core::RequestLog::get(&*f.log, &audit::event_request_id(&line).unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                by_index.insert(row.log_index.unwrap(), line);
            }
        }
        let mut tree = tollgate_tlog::merkle::MemoryTree::new();
        for line in by_index.values() {
            tree.append(line.as_bytes());
        }
        (by_index, tree)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_batch_is_a_no_op() {
        let f = fixture(5).await;
        let first = write_batch(&*f.log, &*f.store, batch(&f.batch_id, 0..5)).await.unwrap();
        assert_eq!(first.rows_marked, 5);
        assert!(first.objects[0].created);
        let again = write_batch(&*f.log, &*f.store, batch(&f.batch_id, (0..5).rev()))
            .await
            .unwrap();
        assert_eq!(again.rows_marked, 0);
        assert!(!again.objects[0].created);
        let (objects, counts) = counts(&f.store).await;
        assert_eq!(objects, 1);
        assert!(counts.values().all(|c| *c == 1) && counts.len() == 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_writers_and_overlapping_redrives_never_double_an_event() {
        let f = fixture(40).await;
        // The original batch held 0..30; re-drives carry overlapping and larger sets.
        let sets: Vec<Vec<usize>> = vec![
            (0..30).collect(),
            (0..40).collect(),
            (10..40).collect(),
            (0..30).collect(),
            (20..25).collect(),
            (35..40).collect(),
        ];
        let tasks: Vec<_> = sets
            .into_iter()
            .map(|s| {
                let (log, store, id) = (f.log.clone(), f.store.clone(), f.batch_id.clone());
                tokio::spawn(async move { write_batch(&*log, &*store, batch(&id, s)).await.unwrap() })
            })
            .collect();
        let mut marked = 0;
        for t in tasks {
            marked += t.await.unwrap().rows_marked;
        }
        assert_eq!(marked, 40, "each row marked exactly once");
        let (_, counts) = counts(&f.store).await;
        assert_eq!(counts.len(), 40);
        assert!(counts.values().all(|c| *c == 1), "{counts:?}");
        let pending = tollgate_core::RequestLog::pending_audits(&*f.log, tollgate_core::clock::now(), 5, 100)
            .await
            .unwrap();
        assert!(pending.is_empty());
        // Sequenced once each: indexes 0..40, each row's leaf hash that of its line in its object.
        let mut lines = HashMap::new();
        for k in ObjectStore::list(&*f.store, "audit/v1/").await.unwrap() {
            for line in audit::decode(&ObjectStore::get(&*f.store, &k).await.unwrap().unwrap()).unwrap() {
                lines.insert(audit::event_request_id(&line).unwrap(), line);
            }
        }
        let mut indexes = Vec::new();
        for (id, line) in &lines {
            let row = tollgate_core::RequestLog::get(&*f.log, id).await.unwrap().unwrap();
            indexes.push(row.log_index.unwrap());
            let leaf = tollgate_tlog::merkle::leaf_hash(line.as_bytes());
            assert_eq!(row.leaf_hash, Some(tollgate_core::model::hex(&leaf)));
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (0..40).collect::<Vec<u64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integration_builds_tiles_and_checkpoints_that_prove_every_line() {
        use tollgate_core::translog::{prove, Integrator, ProofOutcome};
        use tollgate_core::TlogStore;
        let f = fixture(600).await;
        let signer = Arc::new(tollgate_tlog::Ed25519Signer::from_seed("tollgate.test/log", &[5; 32]).unwrap());
        let verifiers = tollgate_tlog::Verifiers::new(vec![signer.verifier_key()]);
        let integrator = Integrator::new(f.log.clone(), f.store.clone(), signer.clone());
        // Batches crossing tile boundaries (256, 512), two integrators racing on the last.
        for range in [0..1, 1..300, 300..555] {
            write_batch(&*f.log, &*f.store, batch(&f.batch_id, range))
                .await
                .unwrap();
            integrator.integrate().await.unwrap();
        }
        write_batch(&*f.log, &*f.store, batch(&f.batch_id, 555..600))
            .await
            .unwrap();
        let other = Integrator::new(f.log.clone(), f.store.clone(), signer.clone());
        let (a, b) = tokio::join!(integrator.integrate(), other.integrate());
        assert_eq!(a.unwrap().size, 600);
        assert_eq!(b.unwrap().size, 600);
        let state = f.log.tlog_state().await.unwrap();
        assert_eq!((state.size, state.next_index), (600, 600));
        let cp = tollgate_tlog::Checkpoint::open(state.checkpoint.as_deref().unwrap().as_bytes(), &verifiers).unwrap();
        assert_eq!(cp.size, 600);
        // The root recomputed from the objects' lines in index order.
        let (by_index, tree) = log_of_objects(&f).await;
        assert_eq!(tree.root(600).unwrap(), cp.root);
        assert_eq!(state.root_hash, Some(cp.root));
        // Every checkpoint is kept, one object per size.
        let sizes = ObjectStore::list(&*f.store, "log/checkpoint/").await.unwrap();
        assert_eq!(sizes.len(), 4, "{sizes:?}");
        // Proofs from the tiles verify against the line, and not against a changed one.
        for i in [0usize, 1, 255, 256, 299, 511, 512, 599] {
            let id = audit::event_request_id(&by_index[&(i as u64)]).unwrap();
            let row = tollgate_core::RequestLog::get(&*f.log, &id).await.unwrap().unwrap();
            let ProofOutcome::Ready(proof) = prove(&*f.log, &*f.store, &row).await.unwrap() else {
                panic!("integrated");
            };
            let line = &by_index[&(i as u64)];
            assert_eq!(
                tollgate_tlog::verify_proof(&proof, line.as_bytes(), &verifiers).unwrap(),
                (i as u64, 600)
            );
            assert!(tollgate_tlog::verify_proof(&proof, line.replace("r", "R").as_bytes(), &verifiers).is_err());
        }
        // Nothing new: no new checkpoint.
        integrator.integrate().await.unwrap();
        assert_eq!(ObjectStore::list(&*f.store, "log/checkpoint/").await.unwrap().len(), 4);
    }

    /// The request log's `TlogStore`, counting the integration's reads and compare-and-sets.
    struct CountingTlog {
        inner: Arc<SqliteRequestLog>,
        reads: std::sync::atomic::AtomicU64,
        advances: std::sync::atomic::AtomicU64,
    }

    impl tollgate_core::TlogStore for CountingTlog {
        fn tlog_state(&self) -> tollgate_core::BoxFuture<'_, Result<tollgate_core::model::TlogState, LogError>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tollgate_core::TlogStore::tlog_state(&*self.inner)
        }
        fn tlog_leaves(
            &self,
            from: u64,
            limit: usize,
        ) -> tollgate_core::BoxFuture<'_, Result<Vec<[u8; 32]>, LogError>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tollgate_core::TlogStore::tlog_leaves(&*self.inner, from, limit)
        }
        fn tlog_pending(&self, limit: usize) -> tollgate_core::BoxFuture<'_, Result<TlogPending, LogError>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tollgate_core::TlogStore::tlog_pending(&*self.inner, limit)
        }
        fn tlog_object_rows<'a>(
            &'a self,
            keys: &'a [String],
        ) -> tollgate_core::BoxFuture<'a, Result<Vec<tollgate_core::ports::ObjectRow>, LogError>> {
            tollgate_core::TlogStore::tlog_object_rows(&*self.inner, keys)
        }
        fn tlog_rows(
            &self,
            from: u64,
            limit: usize,
        ) -> tollgate_core::BoxFuture<'_, Result<Vec<tollgate_core::ports::IndexedRow>, LogError>> {
            tollgate_core::TlogStore::tlog_rows(&*self.inner, from, limit)
        }
        fn tlog_advance<'a>(
            &'a self,
            old_size: u64,
            new_size: u64,
            root_hash: &'a [u8; 32],
            checkpoint: &'a str,
        ) -> tollgate_core::BoxFuture<'a, Result<bool, LogError>> {
            self.advances.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tollgate_core::TlogStore::tlog_advance(&*self.inner, old_size, new_size, root_hash, checkpoint)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integrating_from_the_markings_answer_reads_nothing_and_builds_the_same_log() {
        use std::sync::atomic::Ordering;
        use tollgate_core::translog::{prove, Integrator, ProofOutcome};
        let f = fixture(600).await;
        let counting = Arc::new(CountingTlog {
            inner: f.log.clone(),
            reads: Default::default(),
            advances: Default::default(),
        });
        let signer = Arc::new(tollgate_tlog::Ed25519Signer::from_seed("tollgate.test/log", &[5; 32]).unwrap());
        let verifiers = tollgate_tlog::Verifiers::new(vec![signer.verifier_key()]);
        let integrator = Integrator::new(counting.clone(), f.store.clone(), signer.clone());
        // Batches crossing tile boundaries (256, 512), each integrated from its own marking.
        for range in [0..1, 1..300, 300..555, 555..600] {
            let (report, pending) = write_batch_pending(&*f.log, &*f.store, batch(&f.batch_id, range.clone()))
                .await
                .unwrap();
            assert_eq!(report.rows_marked, range.len() as u64);
            integrate_after(
                &integrator,
                Some(pending.expect("SQLite answers the read with the marking")),
            )
            .await;
        }
        assert_eq!(counting.reads.load(Ordering::Relaxed), 0, "no read of its own");
        assert_eq!(
            counting.advances.load(Ordering::Relaxed),
            4,
            "one compare-and-set a batch"
        );
        // A retried batch marks nothing and answers nothing to integrate.
        let (again, pending) = write_batch_pending(&*f.log, &*f.store, batch(&f.batch_id, 555..600))
            .await
            .unwrap();
        assert_eq!(again.rows_marked, 0);
        let (state, leaves) = pending.expect("a re-drive still answers");
        assert_eq!((state.size, state.next_index, leaves.len()), (600, 600, 0));
        // The log is the one the objects' lines make: root, checkpoint, proofs from the tiles.
        let state = tollgate_core::TlogStore::tlog_state(&*f.log).await.unwrap();
        let cp = tollgate_tlog::Checkpoint::open(state.checkpoint.as_deref().unwrap().as_bytes(), &verifiers).unwrap();
        let (by_index, tree) = log_of_objects(&f).await;
        assert_eq!((cp.size, cp.root), (600, tree.root(600).unwrap()));
        for i in [0u64, 255, 256, 299, 554, 599] {
            let row = tollgate_core::RequestLog::get(&*f.log, &audit::event_request_id(&by_index[&i]).unwrap())
                .await
                .unwrap()
                .unwrap();
            let ProofOutcome::Ready(proof) = prove(&*f.log, &*f.store, &row).await.unwrap() else {
                panic!("integrated");
            };
            assert_eq!(
                tollgate_tlog::verify_proof(&proof, by_index[&i].as_bytes(), &verifiers).unwrap(),
                (i, 600)
            );
        }
        assert_eq!(ObjectStore::list(&*f.store, "log/checkpoint/").await.unwrap().len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tampered_tile_stops_integration() {
        use tollgate_core::translog::Integrator;
        let f = fixture(10).await;
        let signer = Arc::new(tollgate_tlog::Ed25519Signer::from_seed("tollgate.test/log", &[5; 32]).unwrap());
        let integrator = Integrator::new(f.log.clone(), f.store.clone(), signer);
        write_batch(&*f.log, &*f.store, batch(&f.batch_id, 0..5)).await.unwrap();
        integrator.integrate().await.unwrap();
        // The partial tile of size 5, rewritten behind the store's back.
        let path = f.dir.join("objects/log/tile/0/000.p/5");
        let mut data = std::fs::read(&path).unwrap();
        data[0] ^= 1;
        std::fs::write(&path, data).unwrap();
        write_batch(&*f.log, &*f.store, batch(&f.batch_id, 5..10))
            .await
            .unwrap();
        let err = integrator.integrate().await.unwrap_err().to_string();
        assert!(err.contains("do not hash to the stored root"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_batches_are_rejected() {
        let f = fixture(1).await;
        let bad_id = batch("not-a-uuid", [0]);
        assert!(matches!(
            write_batch(&*f.log, &*f.store, bad_id).await,
            Err(WriteError::Invalid(_))
        ));
        let no_id: AuditBatch =
            serde_json::from_str(&format!("{{\"batch_id\":\"{}\",\"events\":[{{}}]}}", f.batch_id)).unwrap();
        let e = write_batch(&*f.log, &*f.store, no_id).await.unwrap_err();
        assert_eq!(e.error_type(), "InvalidBatch");
    }
}
