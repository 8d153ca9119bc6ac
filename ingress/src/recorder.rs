//! The recording pipeline.
//!
//! Requests hand their record and audit event to one task that group-commits them to the
//! request log: a commit starts as soon as a slot is free, with everything that queued
//! meanwhile (so a lone request commits at once and a busy server commits in large
//! batches). Each request is answered only when its commit is durable.
//!
//! Fail closed before, never after: while commits fail, new requests are refused before their
//! function runs (`is_failing`), and a record whose commit failed past its budget is not
//! dropped: its request is answered 503 `recording_unavailable`, the record is changed to say
//! so (its audit event keeps the answer that was not delivered), and it is kept in a bounded
//! queue and committed when the request log is back. A group commit is all or nothing in both
//! engines (one SQLite transaction; one atomic statement, or one transaction, on the Data API),
//! so a failed commit leaves no row that disagrees with what its client was told.
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
use tollgate_core::apierror::{problem_json, ErrorCode};
use tollgate_core::audit::{self, new_batch_id};
use tollgate_core::backoff::{self, full_jitter, retry};
use tollgate_core::model::{AuditError, AuditEvent, InsertOutcome, NewRecord, RequestRecord};
use tollgate_core::ports::{Invoker, LogError, RequestLog};

use crate::receipt::{ReceiptIssuer, ReceiptWindow, WaitingReceipt};

/// Queue depth in front of the committer; a full queue makes requests wait (backpressure).
const QUEUE_DEPTH: usize = 16_384;
/// Audit batches being sent at once.
const SHIP_CONCURRENCY: usize = 4;
/// Most records kept while the request log is down; past it a record is lost (logged).
const PARKED_MAX: usize = 100_000;
/// First and longest wait between attempts to commit the kept records.
const PARKED_RETRY_BASE: Duration = Duration::from_millis(200);
const PARKED_RETRY_CAP: Duration = Duration::from_secs(5);
/// Longest wait for one hand-off (Lambda answers an `Event` invoke at once; emulators that run
/// the function first may take as long as the function).
const SHIP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The request log failed past the retry budget.
    #[error("request log: {0}")]
    Log(#[from] LogError),
    /// The request log is down: the record is kept and committed when it is back.
    #[error("request log unavailable; the record is kept until it can be written")]
    Deferred,
    /// The recorder is shut down.
    #[error("recorder stopped")]
    Stopped,
}

struct Submission {
    record: RequestRecord,
    event: AuditEvent,
    client_chosen_id: bool,
    /// A write-ahead intent: durable before the function runs, never sent to the audit writer
    /// (the record that replaces it is), never kept when its commit fails (the request is then
    /// refused, its function not invoked, and that answer is recorded instead).
    intent: bool,
    /// Whether the request wants a receipt (`crate::receipt`), given once its commit is durable.
    receipt: bool,
    /// Taken when the request is answered (a kept record has been answered already).
    done: Option<oneshot::Sender<Result<Recorded, RecordError>>>,
}

/// What a durable record gives back: the id it is stored under and, if one was asked for and
/// could be signed, its receipt (a `Tollgate-Receipt` header value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The request id the record is stored under.
    pub request_id: String,
    /// The receipt, when asked for (none if the task has no certified key: the record is kept
    /// all the same, see `crate::receipt`).
    pub receipt: Option<String>,
}

impl Submission {
    fn answer(&mut self, result: Result<String, RecordError>) {
        self.answer_with(result.map(|request_id| Recorded {
            request_id,
            receipt: None,
        }));
    }

    fn answer_with(&mut self, result: Result<Recorded, RecordError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(result);
        }
    }

    /// The record of a request answered 503 `recording_unavailable` because its commit failed:
    /// what the client was told. The audit event keeps the answer it did not get.
    fn degrade(&mut self) {
        let code = ErrorCode::RecordingUnavailable;
        if !self.event.response.delivered || self.record.error_code.as_deref() == Some(code.as_str()) {
            return; // the client was gone (499), or was told this already
        }
        self.record.status = code.status();
        self.record.error_code = Some(code.as_str().to_string());
        self.record.response_bytes = problem_json(code, code.message(), &self.record.request_id).len() as u64;
        self.event.response.delivered = false;
        self.event.error = Some(AuditError {
            code: code.as_str().to_string(),
            message: code.message().to_string(),
        });
    }
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
        Ok(self
            .submit(record, event, client_chosen_id, false, false)
            .await?
            .request_id)
    }

    /// [`RecorderHandle::record`] for a request that wants a receipt: the receipt comes with
    /// the id once the commit is durable.
    pub async fn record_with_receipt(
        &self,
        record: RequestRecord,
        event: AuditEvent,
        client_chosen_id: bool,
    ) -> Result<Recorded, RecordError> {
        self.submit(record, event, client_chosen_id, false, true).await
    }

    /// Makes a write-ahead intent durable (a `record = "before"` route, before its function is
    /// invoked); returns the request id it holds, which its record must use. A failed intent
    /// is not kept: the request must be refused.
    pub async fn record_intent(
        &self,
        record: RequestRecord,
        event: AuditEvent,
        client_chosen_id: bool,
    ) -> Result<String, RecordError> {
        Ok(self
            .submit(record, event, client_chosen_id, true, false)
            .await?
            .request_id)
    }

    async fn submit(
        &self,
        record: RequestRecord,
        event: AuditEvent,
        client_chosen_id: bool,
        intent: bool,
        receipt: bool,
    ) -> Result<Recorded, RecordError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Submission {
                record,
                event,
                client_chosen_id,
                intent,
                receipt,
                done: Some(done),
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
    /// Records whose commit failed, answered already, waiting for the request log.
    parked: VecDeque<Submission>,
    parked_attempt: u32,
    parked_retry_at: Option<Instant>,
    lost: u64,
    log: Arc<dyn RequestLog>,
    invoker: Arc<dyn Invoker>,
    batches: VecDeque<OpenBatch>,
    next_seq: usize,
    ships: JoinSet<()>,
    ship_permits: Arc<Semaphore>,
    /// The receipt signer: durable records that asked for a receipt are answered by it.
    receipts: Option<ReceiptWindow>,
}

/// Starts the pipeline. It stops when every handle is dropped, after committing what was
/// queued and sending every closed batch.
pub fn start(
    settings: RecorderSettings,
    log: Arc<dyn RequestLog>,
    invoker: Arc<dyn Invoker>,
) -> (RecorderHandle, tokio::task::JoinHandle<()>) {
    start_with_receipts(settings, log, invoker, None)
}

/// [`start`], with the issuer of the receipts that requests may ask for (none: no receipts).
pub fn start_with_receipts(
    settings: RecorderSettings,
    log: Arc<dyn RequestLog>,
    invoker: Arc<dyn Invoker>,
    receipts: Option<Arc<ReceiptIssuer>>,
) -> (RecorderHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let failing = Arc::new(AtomicBool::new(false));
    // The signer task ends once the pipeline (its one handle) has stopped and it has answered
    // every record it was given.
    let receipts = receipts.map(|issuer| ReceiptWindow::start(issuer, settings.receipt_window).0);
    let pipeline = Pipeline {
        settings,
        failing: failing.clone(),
        parked: VecDeque::new(),
        parked_attempt: 0,
        parked_retry_at: None,
        lost: 0,
        log,
        invoker,
        batches: VecDeque::new(),
        next_seq: 0,
        ships: JoinSet::new(),
        ship_permits: Arc::new(Semaphore::new(SHIP_CONCURRENCY)),
        receipts,
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
        let mut closing_since: Option<Instant> = None;
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
                if self.parked.is_empty() {
                    break;
                }
                // Closing with kept records: keep trying for one commit budget, then say what
                // is lost.
                let since = *closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.settings.commit_retry {
                    self.lost += self.parked.len() as u64;
                    tracing::error!(
                        records = self.parked.len(),
                        "stopping with records the request log never took: lost"
                    );
                    self.parked.clear();
                    break;
                }
            }
            let parked_deadline = if self.parked.is_empty() {
                None
            } else {
                self.parked_retry_at
            };
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
                _ = sleep_until(parked_deadline), if parked_deadline.is_some() => {
                    // One more attempt at the kept records (the commit's own attempt decides
                    // whether the log is back).
                    self.parked_retry_at = None;
                    let n = self.parked.len().min(self.settings.commit_max_batch);
                    for sub in self.parked.drain(..n).collect::<Vec<_>>() {
                        self.enqueue(sub, &mut queue);
                    }
                    oldest.get_or_insert_with(Instant::now);
                }
                _ = sleep_until(linger_deadline), if linger_deadline.is_some() => {}
            }
            self.ship_ready();
        }
        // Everything is committed: close the last batch and send what is left.
        self.close_current();
        self.ship_ready();
        while self.ships.join_next().await.is_some() {}
        if self.lost > 0 {
            // Answered (503) but never written: the queue of kept records overflowed, or the
            // request log never came back before shutdown.
            tracing::error!(
                records_lost = self.lost,
                "recorder stopped with records the request log never took"
            );
        }
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

    fn enqueue(&mut self, mut sub: Submission, queue: &mut VecDeque<Queued>) {
        let payload = match serde_json::to_string(&sub.event) {
            Ok(p) => p,
            Err(e) => {
                sub.answer(Err(RecordError::Log(LogError::Failed(format!("audit event: {e}")))));
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
                intent: q.sub.intent,
            })
            .collect();
        let log = self.log.clone();
        let failing = self.failing.clone();
        // While the log is known to be failing, one attempt: the request waits no longer
        // than that for its 503 (it was refused before its function ran).
        let policy = if self.failing.load(Ordering::Relaxed) {
            backoff::COMMIT.once()
        } else {
            backoff::COMMIT.with_budget(self.settings.commit_retry)
        };
        commits.spawn(async move {
            let result = retry(&policy, LogError::is_transient, || async {
                let result = log.insert_batch(&rows).await;
                failing.store(result.is_err(), Ordering::Relaxed);
                result
            })
            .await;
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
                // Receipts promise what is recorded: the records that asked go to the signer
                // only now that their commit is durable (re-keyed ones ask again in their next
                // commit), and it answers them.
                let mut waiting = Vec::new();
                for (q, outcome) in done.items.into_iter().zip(outcomes) {
                    match outcome {
                        InsertOutcome::Inserted | InsertOutcome::AlreadyPresent => {
                            let id = q.sub.record.request_id.clone();
                            let mut sub = q.sub;
                            if sub.receipt && !sub.intent && self.receipts.is_some() {
                                if let Some(done) = sub.done.take() {
                                    waiting.push(WaitingReceipt {
                                        request_id: id.clone(),
                                        line: q.payload.clone(),
                                        answer: Box::new(move |receipt| {
                                            let _ = done.send(Ok(Recorded {
                                                request_id: id,
                                                receipt,
                                            }));
                                        }),
                                    });
                                }
                            }
                            if !sub.intent {
                                if let Some(b) = self.batch_mut(q.batch) {
                                    b.events.push(q.payload);
                                }
                            }
                            sub.answer_with(Ok(Recorded {
                                request_id: sub.record.request_id.clone(),
                                receipt: None,
                            }));
                        }
                        InsertOutcome::IdConflict => retry.push(rekey(q.sub)),
                    }
                }
                if let Some(window) = &self.receipts {
                    window.submit(waiting);
                }
                for sub in retry {
                    self.enqueue(sub, queue);
                }
                // The log is back: the kept records go next.
                self.parked_attempt = 0;
                if !self.parked.is_empty() {
                    self.parked_retry_at = Some(Instant::now());
                }
            }
            Err(e) if e.is_transient() => {
                tracing::error!(error = %e, rows = done.items.len(), kept = self.parked.len(),
                    "group commit failed; answering 503 and keeping the records until the request log is back");
                for q in done.items {
                    let mut sub = q.sub;
                    if sub.intent {
                        sub.answer(Err(RecordError::Log(e.clone())));
                        continue;
                    }
                    sub.degrade();
                    sub.answer(Err(RecordError::Deferred));
                    if self.parked.len() < PARKED_MAX {
                        self.parked.push_back(sub);
                    } else {
                        self.lost += 1;
                        tracing::error!(request_id = %sub.record.request_id, "too many records kept: this one is lost");
                    }
                }
                let wait = full_jitter(self.parked_attempt, PARKED_RETRY_BASE, PARKED_RETRY_CAP).max(PARKED_RETRY_BASE);
                self.parked_attempt = self.parked_attempt.saturating_add(1);
                self.parked_retry_at.get_or_insert(Instant::now() + wait);
            }
            Err(e) => {
                // The database refused the rows themselves: retrying cannot help.
                tracing::error!(error = %e, rows = done.items.len(), "group commit refused; answering 503");
                for q in done.items {
                    let mut sub = q.sub;
                    sub.answer(Err(RecordError::Log(e.clone())));
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
    let handed = retry(
        &backoff::AUDIT_HANDOFF,
        tollgate_core::InvokeError::is_transient,
        || async {
            tokio::time::timeout(SHIP_TIMEOUT, invoker.invoke_event(function, payload.clone()))
                .await
                .unwrap_or_else(|_| Err(tollgate_core::InvokeError::Unavailable("hand-off timed out".into())))
        },
    )
    .await;
    if let Err(e) = handed {
        tracing::warn!(batch_id, events = events.len(), error = %e,
            "audit batch not handed off; the reconciler will re-drive it");
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that may be off).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
