//! The recording pipeline.
//!
//! Requests hand their record and audit event to one task that group-commits them to the
//! request log: a commit starts as soon as a slot is free, with everything that queued
//! meanwhile (so a lone request commits at once and a busy server commits in large
//! batches). Each request is answered only when its commit is durable.
//!
//! Every record is assigned, before its insert, to the audit batch open at the time; the batch
//! id is stored in the row. Once a batch is closed (by size, count or age) and all its
//! commits are done, its committed events are sent to the audit writer with an async
//! invoke. A batch that never arrives is found by the reconciler through the outbox, under
//! the same batch id, so the writer's create-only keys keep every event in exactly one object.

use crate::config::RecorderSettings;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tollgate_core::audit::{self, new_batch_id};
use tollgate_core::backoff::full_jitter;
use tollgate_core::model::{AuditEvent, InsertOutcome, NewRecord, RequestRecord};
use tollgate_core::ports::{Invoker, LogError, RequestLog};

/// Queue depth in front of the committer; a full queue makes requests wait (backpressure).
const QUEUE_DEPTH: usize = 16_384;
/// Audit batches being sent at once.
const SHIP_CONCURRENCY: usize = 4;
/// Attempts to hand a batch to the platform before leaving it to the reconciler.
const SHIP_ATTEMPTS: u32 = 4;
/// Longest wait for one hand-off (Lambda answers an `Event` invoke at once; emulators that run
/// the function first may take as long as the function).
const SHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The request log failed past the retry budget.
    #[error("request log: {0}")]
    Log(#[from] LogError),
    /// The recorder is shut down.
    #[error("recorder stopped")]
    Stopped,
}

struct Submission {
    record: RequestRecord,
    event: AuditEvent,
    client_chosen_id: bool,
    done: oneshot::Sender<Result<String, RecordError>>,
}

/// Where requests send their records.
#[derive(Clone)]
pub struct RecorderHandle {
    tx: mpsc::Sender<Submission>,
    failing: Arc<AtomicBool>,
}

impl RecorderHandle {
    /// Whether the request log is failing now: its last commit attempt failed and none has
    /// succeeded since. New requests are then refused before their function runs.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Records a request durably; returns the request id it was stored under (a new one
    /// only if a client-chosen id was already taken by another request).
    pub async fn record(
        &self,
        record: RequestRecord,
        event: AuditEvent,
        client_chosen_id: bool,
    ) -> Result<String, RecordError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Submission {
                record,
                event,
                client_chosen_id,
                done,
            })
            .await
            .map_err(|_| RecordError::Stopped)?;
        rx.await.map_err(|_| RecordError::Stopped)?
    }
}

struct Queued {
    sub: Submission,
    payload: String,
    batch: usize,
}

struct OpenBatch {
    seq: usize,
    id: String,
    opened: Instant,
    assigned: usize,
    bytes: usize,
    outstanding: usize,
    closed: bool,
    events: Vec<String>,
}

struct CommitDone {
    items: Vec<Queued>,
    result: Result<Vec<InsertOutcome>, LogError>,
}

struct Pipeline {
    settings: RecorderSettings,
    failing: Arc<AtomicBool>,
    log: Arc<dyn RequestLog>,
    invoker: Arc<dyn Invoker>,
    batches: VecDeque<OpenBatch>,
    next_seq: usize,
    ships: JoinSet<()>,
    ship_permits: Arc<Semaphore>,
}

/// Starts the pipeline. It stops when every handle is dropped, after committing what was
/// queued and sending every closed batch.
pub fn start(
    settings: RecorderSettings,
    log: Arc<dyn RequestLog>,
    invoker: Arc<dyn Invoker>,
) -> (RecorderHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let failing = Arc::new(AtomicBool::new(false));
    let pipeline = Pipeline {
        settings,
        failing: failing.clone(),
        log,
        invoker,
        batches: VecDeque::new(),
        next_seq: 0,
        ships: JoinSet::new(),
        ship_permits: Arc::new(Semaphore::new(SHIP_CONCURRENCY)),
    };
    let task = tokio::spawn(pipeline.run(rx));
    (RecorderHandle { tx, failing }, task)
}

fn rekey(mut sub: Submission) -> Submission {
    let fresh = tollgate_core::ids::new_request_id();
    tracing::warn!(taken = %sub.record.request_id, request_id = %fresh,
        "client-chosen request id already recorded for another request; recorded under a new id");
    sub.record.request_id = fresh.clone();
    sub.event.request_id = fresh;
    sub.client_chosen_id = false;
    sub
}

impl Pipeline {
    async fn run(mut self, mut rx: mpsc::Receiver<Submission>) {
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut commits: JoinSet<CommitDone> = JoinSet::new();
        let mut open = true;
        let mut oldest: Option<Instant> = None;
        loop {
            // Start commits while slots are free: at once, or once the oldest queued record has
            // lingered long enough, or the batch is full, or we are closing.
            // Records re-queued by the pipeline itself (a re-keyed clash) start lingering now.
            if !queue.is_empty() && oldest.is_none() {
                oldest = Some(Instant::now());
            }
            let (max_batch, linger) = (self.settings.commit_max_batch, self.settings.commit_linger);
            let ready = |queue: &VecDeque<Queued>, oldest: Option<Instant>| {
                queue.len() >= max_batch || !open || oldest.is_some_and(|t| t.elapsed() >= linger)
            };
            while !queue.is_empty() && commits.len() < self.settings.commit_max_inflight && ready(&queue, oldest) {
                let n = queue.len().min(self.settings.commit_max_batch);
                let items: Vec<Queued> = queue.drain(..n).collect();
                self.start_commit(&mut commits, items);
                oldest = (!queue.is_empty()).then(Instant::now);
            }
            if queue.is_empty() {
                oldest = None;
            }
            let linger_deadline = match oldest {
                Some(t) if !queue.is_empty() && commits.len() < self.settings.commit_max_inflight => {
                    Some(t + self.settings.commit_linger)
                }
                _ => None,
            };
            if !open && queue.is_empty() && commits.is_empty() {
                break;
            }
            let age_deadline = self.current().map(|b| b.opened + self.settings.audit_max_age);
            tokio::select! {
                biased;
                Some(done) = commits.join_next(), if !commits.is_empty() => match done {
                    Ok(done) => self.finish_commit(done, &mut queue),
                    Err(e) => tracing::error!(error = %e, "commit task failed"),
                },
                msg = rx.recv(), if open => match msg {
                    Some(sub) => {
                        oldest.get_or_insert_with(Instant::now);
                        self.enqueue(sub, &mut queue);
                        while queue.len() < self.settings.commit_max_batch * 4 {
                            match rx.try_recv() {
                                Ok(sub) => self.enqueue(sub, &mut queue),
                                Err(_) => break,
                            }
                        }
                    }
                    None => open = false,
                },
                _ = sleep_until(age_deadline), if age_deadline.is_some() => self.close_current(),
                _ = sleep_until(linger_deadline), if linger_deadline.is_some() => {}
            }
            self.ship_ready();
        }
        // Everything is committed: close the last batch and send what is left.
        self.close_current();
        self.ship_ready();
        while self.ships.join_next().await.is_some() {}
    }

    fn current(&self) -> Option<&OpenBatch> {
        self.batches.back().filter(|b| !b.closed)
    }

    fn close_current(&mut self) {
        if let Some(b) = self.batches.back_mut() {
            b.closed = true;
        }
    }

    /// Assigns an audit batch (opening a new one when the current is full or old).
    fn assign(&mut self, payload_len: usize) -> usize {
        let s = &self.settings;
        let full = self.current().is_none_or(|b| {
            b.assigned >= s.audit_max_events
                || b.bytes + payload_len + 1 > s.audit_max_bytes
                || b.opened.elapsed() >= s.audit_max_age
        });
        if full {
            self.close_current();
            self.batches.push_back(OpenBatch {
                seq: self.next_seq,
                id: new_batch_id(),
                opened: Instant::now(),
                assigned: 0,
                bytes: audit::BATCH_ENVELOPE_BYTES,
                outstanding: 0,
                closed: false,
                events: Vec::new(),
            });
            self.next_seq += 1;
        }
        let b = self.batches.back_mut().expect("just ensured");
        b.assigned += 1;
        b.outstanding += 1;
        b.bytes += payload_len + 1;
        b.seq
    }

    fn batch_mut(&mut self, seq: usize) -> Option<&mut OpenBatch> {
        let first = self.batches.front()?.seq;
        self.batches.get_mut(seq.checked_sub(first)?)
    }

    fn enqueue(&mut self, sub: Submission, queue: &mut VecDeque<Queued>) {
        let payload = match serde_json::to_string(&sub.event) {
            Ok(p) => p,
            Err(e) => {
                let _ = sub
                    .done
                    .send(Err(RecordError::Log(LogError::Failed(format!("audit event: {e}")))));
                return;
            }
        };
        let batch = self.assign(payload.len());
        queue.push_back(Queued { sub, payload, batch });
    }

    fn start_commit(&mut self, commits: &mut JoinSet<CommitDone>, items: Vec<Queued>) {
        let rows: Vec<NewRecord> = items
            .iter()
            .map(|q| NewRecord {
                record: q.sub.record.clone(),
                audit_batch: self.batches_id(q.batch),
                audit_payload: q.payload.clone(),
                client_chosen_id: q.sub.client_chosen_id,
            })
            .collect();
        let log = self.log.clone();
        let budget = self.settings.commit_retry;
        let failing = self.failing.clone();
        commits.spawn(async move {
            let started = Instant::now();
            let mut attempt = 0;
            let result = loop {
                let result = log.insert_batch(&rows).await;
                failing.store(result.is_err(), Ordering::Relaxed);
                match result {
                    Err(e) if e.is_transient() && started.elapsed() < budget => {
                        tracing::warn!(error = %e, attempt, rows = rows.len(), "group commit failed; retrying");
                        tokio::time::sleep(full_jitter(attempt, Duration::from_millis(20), Duration::from_secs(1)))
                            .await;
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            CommitDone { items, result }
        });
    }

    fn batches_id(&self, seq: usize) -> String {
        let first = self.batches.front().map_or(0, |b| b.seq);
        // A batch stays queued while any of its records is outstanding, so this always finds it.
        seq.checked_sub(first)
            .and_then(|i| self.batches.get(i))
            .map(|b| b.id.clone())
            .unwrap_or_default()
    }

    fn finish_commit(&mut self, done: CommitDone, queue: &mut VecDeque<Queued>) {
        // Every record of the commit is done with its batch (a re-keyed one gets a new one).
        for q in &done.items {
            if let Some(b) = self.batch_mut(q.batch) {
                b.outstanding -= 1;
            }
        }
        match done.result {
            Ok(outcomes) => {
                let mut retry = Vec::new();
                for (q, outcome) in done.items.into_iter().zip(outcomes) {
                    match outcome {
                        InsertOutcome::Inserted | InsertOutcome::AlreadyPresent => {
                            let id = q.sub.record.request_id.clone();
                            if let Some(b) = self.batch_mut(q.batch) {
                                b.events.push(q.payload);
                            }
                            let _ = q.sub.done.send(Ok(id));
                        }
                        InsertOutcome::IdConflict => retry.push(rekey(q.sub)),
                    }
                }
                for sub in retry {
                    self.enqueue(sub, queue);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rows = done.items.len(), "group commit failed; answering 503");
                for q in done.items {
                    let _ = q.sub.done.send(Err(RecordError::Log(e.clone())));
                }
            }
        }
    }

    /// Sends every closed batch whose commits are all done, oldest first.
    fn ship_ready(&mut self) {
        while self.batches.front().is_some_and(|b| b.closed && b.outstanding == 0) {
            let b = self.batches.pop_front().expect("checked");
            if b.events.is_empty() {
                continue;
            }
            let invoker = self.invoker.clone();
            let function = self.settings.audit_function.clone();
            let permits = self.ship_permits.clone();
            let (max_bytes, max_events) = (self.settings.audit_max_bytes, self.settings.audit_max_events);
            self.ships.spawn(async move {
                let _permit = permits.acquire_owned().await;
                for part in audit::split_by_size(b.events, max_bytes, max_events) {
                    ship(&*invoker, &function, &b.id, &part).await;
                }
            });
        }
        // Reap finished sends so the set does not grow.
        while let Some(Ok(())) = self.ships.try_join_next() {}
    }
}

async fn ship(invoker: &dyn Invoker, function: &str, batch_id: &str, events: &[String]) {
    let payload: Bytes = audit::batch_payload(batch_id, events);
    for attempt in 0..SHIP_ATTEMPTS {
        let handed = tokio::time::timeout(SHIP_TIMEOUT, invoker.invoke_event(function, payload.clone()))
            .await
            .unwrap_or_else(|_| Err(tollgate_core::InvokeError::Unavailable("hand-off timed out".into())));
        match handed {
            Ok(()) => return,
            Err(e) if e.is_transient() && attempt + 1 < SHIP_ATTEMPTS => {
                tokio::time::sleep(full_jitter(attempt, Duration::from_millis(100), Duration::from_secs(2))).await;
            }
            Err(e) => {
                tracing::warn!(batch_id, events = events.len(), error = %e,
                    "audit batch not handed off; the reconciler will re-drive it");
                return;
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that may be off).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
