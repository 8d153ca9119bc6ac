//! The three ports: invoking functions, the request log, and the audit object store.
//!
//! Each has an AWS adapter (aws mode) and an embedded adapter (the default), and one
//! contract every adapter must meet.

use crate::access::ApiKeyRecord;
use crate::model::{AuditedEvent, InsertOutcome, NewRecord, PendingAudit, RecordQuery, StoredRecord, TlogState};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use time::OffsetDateTime;

/// A boxed, sendable future (keeps the ports object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an invocation did not produce a payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// The function ran and reported an error (Lambda's `X-Amz-Function-Error`).
    #[error("function error ({error_type})")]
    Function {
        /// The error type the function reported (`errorType`).
        error_type: String,
        /// The function's message; never sent to clients.
        message: String,
    },
    /// The platform throttled the call.
    #[error("throttled")]
    Throttled {
        /// When to retry, if the platform said.
        retry_after: Option<Duration>,
    },
    /// The request payload is over the invocation limit.
    #[error("payload too large for the invocation")]
    PayloadTooLarge,
    /// No such function.
    #[error("unknown function {0}")]
    UnknownFunction(String),
    /// The platform could not be reached or failed (transient).
    #[error("invoke failed: {0}")]
    Unavailable(String),
}

impl InvokeError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable(_))
    }
}

/// Invokes functions by name with a JSON payload.
pub trait Invoker: Send + Sync + 'static {
    /// Synchronous invoke (Lambda `RequestResponse`): the function's response payload.
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Result<Bytes, InvokeError>>;

    /// Asynchronous invoke (Lambda `Event`): accepted for later execution; the outcome is
    /// not reported (the platform may retry or drop it).
    fn invoke_event<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Result<(), InvokeError>>;

    /// Waits until accepted asynchronous invocations have run (embedded mode); a no-op
    /// where the platform owns them.
    fn drain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Errors of the request log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogError {
    /// The database is unreachable or busy; a retry may succeed.
    #[error("request log unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement; retrying will not help.
    #[error("request log error: {0}")]
    Failed(String),
}

impl LogError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The durable request log (`api_requests`) with its audit outbox.
pub trait RequestLog: Send + Sync + 'static {
    /// Applies pending schema migrations; returns the versions applied now.
    fn migrate(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>>;

    /// Inserts rows in one transaction. Idempotent: re-inserting the same event is
    /// `AlreadyPresent`; a request id held by another event is `IdConflict`.
    fn insert_batch<'a>(&'a self, rows: &'a [NewRecord]) -> BoxFuture<'a, Result<Vec<InsertOutcome>, LogError>>;

    /// Marks rows audited in `key` (sets `audit_key`, clears the outbox payload) where not
    /// already marked, and sequences them into the transparency log in the same transaction:
    /// the rows marked now get consecutive log indexes from the single sequencer row, in the
    /// order of `events` (their lines' order in the object), with their leaf hashes; rows
    /// already marked keep theirs (a re-drive never re-sequences). Returns the rows changed.
    /// Concurrent calls never share or skip an index.
    fn mark_audited<'a>(&'a self, key: &'a str, events: &'a [AuditedEvent]) -> BoxFuture<'a, Result<u64, LogError>>;

    /// [`RequestLog::mark_audited`], answering in the same call (one statement, one Data API
    /// call) the transparency log's state after the marking with the leaf hashes pending past
    /// its integrated size, at most `limit` (an adapter may answer fewer, to keep within its
    /// response limits; never a gap), read while the marking still holds the sequencer: what
    /// the writer's integration round would otherwise read ([`TlogStore::tlog_pending`]). The
    /// default marks and answers no pending read (the integrator then reads it itself).
    fn mark_audited_pending<'a>(
        &'a self,
        key: &'a str,
        events: &'a [AuditedEvent],
        limit: usize,
    ) -> BoxFuture<'a, Result<MarkedPending, LogError>> {
        let _ = limit;
        Box::pin(async move {
            Ok(MarkedPending {
                marked: self.mark_audited(key, events).await?,
                pending: None,
            })
        })
    }

    /// Unaudited rows received before `received_before` and re-driven fewer than
    /// `max_attempts` times without success, fewest attempts first, then oldest; write-ahead
    /// intents are not among them.
    fn pending_audits(
        &self,
        received_before: OffsetDateTime,
        max_attempts: u32,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingAudit>, LogError>>;

    /// Counts one more failed re-drive of each of these rows (still unaudited); returns the
    /// rows changed.
    fn note_redrive_failure<'a>(&'a self, request_ids: &'a [String]) -> BoxFuture<'a, Result<u64, LogError>>;

    /// Unaudited rows re-driven `max_attempts` times or more without success (set aside).
    fn count_set_aside(&self, max_attempts: u32) -> BoxFuture<'_, Result<u64, LogError>>;

    /// Finalizes at most `limit` write-ahead intents received before `received_before`, oldest
    /// first: each keeps the `outcome_unknown` record and audit event it was written with and
    /// becomes an ordinary unaudited row. Returns their request ids.
    fn finalize_intents(
        &self,
        received_before: OffsetDateTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, LogError>>;

    /// One row by request id.
    fn get<'a>(&'a self, request_id: &'a str) -> BoxFuture<'a, Result<Option<StoredRecord>, LogError>>;

    /// Rows matching the query, newest first.
    fn query<'a>(&'a self, query: &'a RecordQuery) -> BoxFuture<'a, Result<Vec<StoredRecord>, LogError>>;

    /// Runs administrative statements (db-migrate's roles and grants) in one transaction, each
    /// with its named text parameters, as the log's own (master) credentials. Only a PostgreSQL
    /// log has roles; the others refuse.
    fn execute_script<'a>(&'a self, steps: &'a [SqlStep]) -> BoxFuture<'a, Result<(), LogError>> {
        let _ = steps;
        Box::pin(async { Err(LogError::Failed("this request log has no database roles".into())) })
    }
}

/// One statement of [`RequestLog::execute_script`]: SQL with `:name` placeholders and their text
/// values. Values may be secrets (a role's password): `Debug` never shows them.
#[derive(Clone)]
pub struct SqlStep {
    /// The statement.
    pub sql: String,
    /// Named text parameters (`:name` in `sql`).
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for SqlStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SqlStep")
            .field("sql", &self.sql)
            .field("params", &names)
            .finish()
    }
}

/// tollgate's API keys, kept in the request log's database (`api_keys`): only the SHA-256 of
/// each secret.
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key (its id must be new).
    fn create_key<'a>(&'a self, key: &'a ApiKeyRecord) -> BoxFuture<'a, Result<(), LogError>>;

    /// One key by id, revoked and expired ones included.
    fn find_key<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, LogError>>;

    /// Every key, oldest first.
    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<ApiKeyRecord>, LogError>>;

    /// Revokes a key at `at`; false when there is no such key or it already was revoked.
    fn revoke_key<'a>(&'a self, key_id: &'a str, at: OffsetDateTime) -> BoxFuture<'a, Result<bool, LogError>>;

    /// How many keys exist, revoked ones included.
    fn count_keys(&self) -> BoxFuture<'_, Result<u64, LogError>>;
}

/// An integration round's read: the state, and the leaf hashes from its integrated size on.
pub type TlogPending = (TlogState, Vec<[u8; 32]>);

/// What [`RequestLog::mark_audited_pending`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedPending {
    /// The rows marked (and sequenced) now, as [`RequestLog::mark_audited`] returns.
    pub marked: u64,
    /// The log's state after the marking with the leaves from its integrated size on; `None`
    /// when the adapter does not read it with the marking.
    pub pending: Option<TlogPending>,
}

/// A row of an audit object, for the digester: (audit key, request id, log index).
pub type ObjectRow = (String, String, Option<u64>);

/// A sequenced row of the request log, for `tollgate verify`'s cross-check: the row's event
/// must be the audit object line the digests place at its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedRow {
    /// Its index in the log.
    pub log_index: u64,
    /// The request.
    pub request_id: String,
    /// The audit object its event was written to (`None` only in a damaged log).
    pub audit_key: Option<String>,
    /// The leaf hash stored at marking (hex; `None` only in a damaged log).
    pub leaf_hash: Option<String>,
}

/// The transparency log's state in the request log's database (`tlog_sequencer`,
/// `tlog_state`, and `log_index`/`leaf_hash` of the rows): what the integrator reads and
/// advances. Sequencing itself happens in [`RequestLog::mark_audited`].
pub trait TlogStore: Send + Sync + 'static {
    /// The sequencer's next index and the integrated tree.
    fn tlog_state(&self) -> BoxFuture<'_, Result<TlogState, LogError>>;

    /// The leaf hashes of indexes `from..` in index order, at most `limit`; contiguous (an
    /// index is assigned in the transaction that stores its row's hash).
    fn tlog_leaves(&self, from: u64, limit: usize) -> BoxFuture<'_, Result<Vec<[u8; 32]>, LogError>>;

    /// The state and the leaf hashes from its integrated size on (at most `limit`, in index
    /// order, contiguous), read together: an integration round's one read, so that a round
    /// costs two calls of the database (this and [`TlogStore::tlog_advance`]). The default
    /// reads them one after the other.
    fn tlog_pending(&self, limit: usize) -> BoxFuture<'_, Result<TlogPending, LogError>> {
        Box::pin(async move {
            let state = self.tlog_state().await?;
            let leaves = self.tlog_leaves(state.size, limit).await?;
            Ok((state, leaves))
        })
    }

    /// The rows marked audited into any of `keys`: (audit key, request id, log index; `None`
    /// for a row audited before the log existed). The digester maps an object's lines to
    /// their indexes with it; rows not marked yet are not returned.
    fn tlog_object_rows<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<ObjectRow>, LogError>>;

    /// The sequenced rows with `log_index >= from`, in index order, at most `limit` (the
    /// verifier streams the whole log with it, resuming after the last index it got). Unlike
    /// [`TlogStore::tlog_leaves`] it reports what is stored, gaps included: finding them is
    /// the caller's job.
    fn tlog_rows(&self, from: u64, limit: usize) -> BoxFuture<'_, Result<Vec<IndexedRow>, LogError>>;

    /// Records a newly integrated tree if the stored one still has `old_size` leaves
    /// (compare-and-set: two integrators never both advance from the same size); false when
    /// another integrator got there first.
    fn tlog_advance<'a>(
        &'a self,
        old_size: u64,
        new_size: u64,
        root_hash: &'a [u8; 32],
        checkpoint: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>>;
}

/// Errors of the object store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The store is unreachable or failed; a retry may succeed.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request; retrying will not help.
    #[error("object store error: {0}")]
    Failed(String),
}

/// Outcome of a create-only put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was created.
    Created,
    /// An object already had this key; it was left untouched.
    AlreadyExists,
}

/// Audit object storage: create-only puts, never overwrites.
pub trait ObjectStore: Send + Sync + 'static {
    /// Creates `key` with `body` unless it exists (S3 `If-None-Match: *`).
    fn put_if_absent<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<PutOutcome, StoreError>>;

    /// Reads an object, `None` when absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    /// Keys under a prefix, sorted.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
}
