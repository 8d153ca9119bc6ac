//! Domain types: request records, audit events and audit batches.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Version of the audit event schema written by this build.
/// `"2"`: the principal is the verified one (`{kind, id, name, scopes}`, never a header a
/// client set) and every event carries the access decision; `"1"` had a principal string.
pub const AUDIT_EVENT_VERSION: &str = "2";

/// One API request's metadata: a row of `api_requests`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// Id of this request's audit event; tells a retried insert from a clashing request id.
    pub event_id: String,
    /// The ALB's `X-Amzn-Trace-Id`, or one the ingress made.
    pub trace_id: Option<String>,
    /// When the ingress received the request head.
    #[serde(with = "crate::clock::serde_ts")]
    pub received_at: OffsetDateTime,
    /// HTTP method.
    pub method: String,
    /// Path as received (percent-encoded), without the query.
    pub path: String,
    /// Query string with secret parameters redacted; `None` when there was none.
    pub query: Option<String>,
    /// Pattern of the matched route, if any.
    pub route: Option<String>,
    /// Function the route hands off to, if any.
    pub function_name: Option<String>,
    /// Status sent to the client; 0 when the ingress never answered (`outcome_unknown`: it
    /// stopped between a write-ahead intent and the answer).
    pub status: u16,
    /// Time from receipt to response ready, in milliseconds.
    pub latency_ms: f64,
    /// Client address (see the trusted proxy setting).
    pub client_ip: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// The verified principal's id (`None`: anonymous).
    pub principal: Option<String>,
    /// How the principal was verified.
    #[serde(default)]
    pub principal_kind: crate::access::PrincipalKind,
    /// The principal's display name, if any.
    #[serde(default)]
    pub principal_name: Option<String>,
    /// The scopes it was granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The access decision, as stored: `allowed:<policy>`, `refused:<reason>` or
    /// `not_evaluated` (see [`crate::access::Access::stored`]).
    #[serde(default)]
    pub access: String,
    /// Request body size in bytes (as read, or as declared when rejected unread).
    pub request_bytes: u64,
    /// Response body size in bytes.
    pub response_bytes: u64,
    /// Stable error code when the ingress answered with an error.
    pub error_code: Option<String>,
}

/// A record as stored, with its audit state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The request's metadata.
    #[serde(flatten)]
    pub record: RequestRecord,
    /// Audit batch the event was assigned to.
    pub audit_batch: String,
    /// Key of the audit object holding the event, once written.
    pub audit_key: Option<String>,
    /// The audit event (outbox), until it is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_payload: Option<String>,
    /// A write-ahead intent: the function of a `record = "before"` route was (or is about to
    /// be) invoked and the request is not answered yet. Its status is 0 and its error code
    /// `outcome_unknown` until the answer replaces it, or for good if the ingress died first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intent: bool,
    /// The event's index in the transparency log, assigned when it was marked audited
    /// (`docs/transparency-log.md`); `None` before, and for rows audited before the log existed.
    #[serde(skip)]
    pub log_index: Option<u64>,
    /// The RFC 6962 leaf hash of the event's line in its audit object (hex), stored with the index.
    #[serde(skip)]
    pub leaf_hash: Option<String>,
}

/// An event being marked audited: its request id and the RFC 6962 leaf hash of its exact line
/// in the audit object (SHA-256(0x00 || line), without the newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditedEvent {
    /// The request id.
    pub request_id: String,
    /// The leaf hash.
    pub leaf_hash: [u8; 32],
}

impl AuditedEvent {
    /// The leaf hash as lowercase hex (how both engines store it).
    pub fn leaf_hex(&self) -> String {
        hex(&self.leaf_hash)
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The 32 bytes of a 64-digit hex hash, `None` when malformed.
pub fn parse_hash_hex(text: &str) -> Option<[u8; 32]> {
    let b = text.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// The transparency log's state as the request log's database holds it: the sequencer's next
/// index, and the integrated tree (size, root hash, latest signed checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlogState {
    /// The next index the sequencer hands out: events 0..next_index are sequenced.
    pub next_index: u64,
    /// Leaves integrated into tiles and covered by `checkpoint`.
    pub size: u64,
    /// The root hash of the tree of `size` leaves (`None` while empty).
    pub root_hash: Option<[u8; 32]>,
    /// The latest signed checkpoint (a C2SP signed note), `None` before the first.
    pub checkpoint: Option<String>,
}

/// A record to insert together with its outbox entry.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// The request's metadata.
    pub record: RequestRecord,
    /// Audit batch the event belongs to.
    pub audit_batch: String,
    /// The serialized audit event.
    pub audit_payload: String,
    /// Whether the request id came from the client (`x-request-id`) rather than being minted
    /// here: only such ids can clash with another request's, so only they need checking.
    pub client_chosen_id: bool,
    /// A write-ahead intent (see [`StoredRecord::intent`]). The request's record later replaces
    /// it: an insert of the same event over an intent updates the row.
    pub intent: bool,
}

/// What happened to one row of an insert batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The row was inserted.
    Inserted,
    /// The same event was already stored (a retried batch): nothing to do.
    AlreadyPresent,
    /// Another request already holds this request id; the row was not inserted.
    IdConflict,
}

/// An unaudited event found by the reconciler.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingAudit {
    /// Request id of the row.
    pub request_id: String,
    /// Batch the event was assigned to.
    pub audit_batch: String,
    /// The serialized audit event.
    pub audit_payload: String,
    /// Re-drives of this event that failed so far.
    pub redrive_attempts: u32,
}

/// Filters of a request-log query (newest first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordQuery {
    /// Inclusive lower bound on `received_at`.
    pub since: Option<OffsetDateTime>,
    /// Exclusive upper bound on `received_at`.
    pub until: Option<OffsetDateTime>,
    /// Exact status.
    pub status: Option<u16>,
    /// Exact method.
    pub method: Option<String>,
    /// Path prefix.
    pub path_prefix: Option<String>,
    /// Exact principal id.
    pub principal: Option<String>,
    /// Resume after this (received_at, request_id), exclusive.
    pub after: Option<(OffsetDateTime, String)>,
    /// Rows to return.
    pub limit: usize,
}

/// Source of a request in an audit event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditSource {
    /// Client address.
    pub ip: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Headers in an audit event: lowercase name -> values, secrets redacted.
pub type AuditHeaders = BTreeMap<String, Vec<String>>;

/// The request half of an audit event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRequest {
    /// HTTP method.
    pub method: String,
    /// Path as received.
    pub path: String,
    /// Query string, secret parameters redacted.
    pub query: Option<String>,
    /// Headers, secrets redacted.
    pub headers: AuditHeaders,
    /// Hex SHA-256 of the body as read (`None` when it was not read).
    pub body_sha256: Option<String>,
    /// Body size in bytes.
    pub body_bytes: u64,
}

/// The response half of an audit event: the answer the ingress made (the function's, or its
/// own error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditResponse {
    /// Status of the answer.
    pub status: u16,
    /// Headers of the answer, secrets redacted.
    pub headers: AuditHeaders,
    /// Hex SHA-256 of the body.
    pub body_sha256: String,
    /// Body size in bytes.
    pub body_bytes: u64,
    /// Whether the answer was released to the connection. False when the client had gone
    /// first: the record's status is then 499 `client_closed_request`, and this is the answer
    /// it would have had (for a function that ran, the function's own).
    #[serde(default = "yes")]
    pub delivered: bool,
}

fn yes() -> bool {
    true
}

/// An error the ingress answered with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditError {
    /// Stable error code.
    pub code: String,
    /// Message sent to the client.
    pub message: String,
}

/// Audit event v2 (fields informed by CloudTrail's record and OWASP's logging cheat sheet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Schema version ([`AUDIT_EVENT_VERSION`]).
    pub event_version: String,
    /// Unique id of this event.
    pub event_id: String,
    /// When the request was received.
    #[serde(with = "crate::clock::serde_ts")]
    pub event_time: OffsetDateTime,
    /// The request id.
    pub request_id: String,
    /// The trace id.
    pub trace_id: Option<String>,
    /// Who sent it.
    pub source: AuditSource,
    /// The verified principal (anonymous unless a credential was verified).
    pub principal: crate::access::Principal,
    /// The access decision taken on the request.
    pub access: crate::access::Access,
    /// What was asked.
    pub request: AuditRequest,
    /// Matched route pattern.
    pub route: Option<String>,
    /// Function the route hands off to.
    pub function_name: Option<String>,
    /// Whether the function was invoked for this request (a request refused before its hand-off
    /// names its route's function but did not run it). For `outcome_unknown` it may have been:
    /// the ingress stopped after the write-ahead intent, so this says true.
    #[serde(default)]
    pub invoked: bool,
    /// What was answered.
    pub response: AuditResponse,
    /// Time from receipt to response ready, in milliseconds.
    pub latency_ms: f64,
    /// The error answered, if any.
    pub error: Option<AuditError>,
}

/// The payload of an audit-writer invocation: one batch of serialized audit events.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditBatch {
    /// Batch id (a UUIDv7: its time names the object's hour).
    pub batch_id: String,
    /// The events, each as stored in the outbox.
    pub events: Vec<Box<RawValue>>,
}

/// One object the audit writer wrote or found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenObject {
    /// Object key.
    pub key: String,
    /// Events of this batch the object holds.
    pub events: usize,
    /// Whether this call created the object (false: it was there from an earlier attempt).
    pub created: bool,
}

/// The audit writer's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditWriteReport {
    /// The batch.
    pub batch_id: String,
    /// Objects holding the batch's events.
    pub objects: Vec<WrittenObject>,
    /// Rows marked audited by this call.
    pub rows_marked: u64,
}

/// Summary of one reconciler pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Unaudited rows found past the grace period.
    pub pending: usize,
    /// Batches re-driven.
    pub batches: usize,
    /// Batches whose re-drive failed (left for the next pass).
    pub failed_batches: usize,
    /// Write-ahead intents left by an ingress that died, finalized as `outcome_unknown`.
    #[serde(default)]
    pub intents_finalized: usize,
    /// Unaudited rows set aside: their re-drive failed too often, so they are no longer tried
    /// (alarmed on; an operator clears their `redrive_attempts` once the cause is fixed).
    #[serde(default)]
    pub set_aside: u64,
}

/// The EventBridge scheduled event (`detail-type: "Scheduled Event"`, `source: "aws.events"`)
/// that starts a scheduled function. Only what the functions use is kept; any event with a
/// `source` and `detail-type` is accepted (a manual run can send the same shape).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScheduledEvent {
    /// EventBridge event id.
    #[serde(default)]
    pub id: Option<String>,
    /// `Scheduled Event` for a schedule.
    pub detail_type: String,
    /// `aws.events` (rule) or `aws.scheduler` (EventBridge Scheduler).
    pub source: String,
    /// When the schedule fired (RFC 3339).
    #[serde(default)]
    pub time: Option<String>,
    /// The rule or schedule that fired.
    #[serde(default)]
    pub resources: Vec<String>,
}
