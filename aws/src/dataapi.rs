//! `RequestLog` on the RDS Data API (Aurora PostgreSQL).
//!
//! Every statement is in `tollgate_core::sql` (the shared ones, and `sql::postgres` for this
//! adapter's own). A group commit is all or nothing: its rows go as one JSON parameter of one
//! `INSERT ... SELECT FROM json_to_recordset(...) ON CONFLICT ... RETURNING request_id`, which
//! PostgreSQL runs atomically and which names the rows inserted now; only client-chosen ids
//! that were not inserted are read back, to tell a retried row from a clashing request id. A
//! commit over the 4 MiB request limit is split into statements inside one transaction. The
//! commit makes one attempt per call: the recorder owns its retries (`TOLLGATE_COMMIT_RETRY_MS`).
//! Reads use `formatRecordsAs: JSON`, paged to stay under the 1 MiB response limit. Other calls
//! retry transient failures (throttling, 5xx, `DatabaseResumingException` while an auto-paused
//! Aurora Serverless v2 cluster wakes up) under `tollgate_core::backoff::DATA_API`.

use aws_sdk_rdsdata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rdsdata::types::{Field, RecordsFormatType, SqlParameter, TypeHint};
use aws_sdk_rdsdata::Client;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tollgate_core::access::{join_scopes, split_scopes, ApiKeyRecord, PrincipalKind};
use tollgate_core::backoff::{self, retry, Policy};
use tollgate_core::model::{
    AuditedEvent, InsertOutcome, NewRecord, PendingAudit, RecordQuery, RequestRecord, StoredRecord, TlogState,
};
use tollgate_core::ports::{BoxFuture, KeyStore, LogError, MarkedPending, RequestLog, TlogStore};
use tollgate_core::sql::{self, SqlValue};

/// The Data API's request limit is 4 MiB; batches are split well under it.
const MAX_BATCH_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// Rows read per page of the reconciler's scan (payloads are ~1 KiB; pages shrink on demand).
const PENDING_PAGE: usize = 200;
/// Events per marking statement (each ~120 bytes of JSON: far under the 4 MiB request limit).
const MARK_CHUNK: usize = 10_000;
/// Leaves a marking answers with the log's state (`sql::tlog::MARK_AUDITED_PENDING_POSTGRES`):
/// 64 hex characters each, 256 to a row, so 8,192 leaves are 32 rows of 16 KiB and ~520 KiB of
/// response in all. "The response size limit is 1 MiB. If the call returns more than 1 MiB of
/// response data, the call is terminated", and "The Data API size limit is 64 KB per row in
/// the result set" (Amazon Aurora User Guide, Limitations for the Amazon RDS Data API,
/// https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api.limitations.html).
/// A writer batch holds at most 1,000 events by default; more pending is read by the
/// integrator itself.
const MARK_PENDING_LEAVES: usize = 8192;
/// Ids per `IN (...)` list.
const IN_LIST_MAX: usize = 1000;
/// Where the request log lives.
#[derive(Clone, Debug)]
pub struct DataApiSettings {
    /// Aurora cluster ARN (`resourceArn`).
    pub cluster_arn: String,
    /// Secrets Manager secret with the database credentials (`secretArn`).
    pub secret_arn: String,
    /// Database name.
    pub database: String,
}

/// The Data API request log.
#[derive(Clone)]
pub struct DataApiRequestLog {
    client: Client,
    settings: DataApiSettings,
}

/// Formats a timestamp in the Data API's documented TIMESTAMP format, `YYYY-MM-DD HH:MM:SS[.FFF]`
/// ("The accepted format is `YYYY-MM-DD HH:MM:SS[.FFF]`", RDS Data API reference, SqlParameter):
/// milliseconds, rounded down. Rows are stored through it, so every `received_at` in the Aurora
/// request log is a whole millisecond, and the cursors built from stored rows are too.
pub fn timestamp_text(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A timestamp as a query bound: rounded *up* to the millisecond. Stored values `s` are whole
/// milliseconds ([`timestamp_text`]), so for any bound `b`, `s >= ceil(b)` exactly when
/// `s >= b` and `s < ceil(b)` exactly when `s < b` (the `since`, `until` and `before` bounds), and
/// a whole-millisecond bound is sent as it is (the cursors, which come from stored rows, compared
/// with `=`, `<` and `>`). Rounding down instead would let `until` drop a row stored in its last
/// millisecond.
fn bound_text(t: OffsetDateTime) -> String {
    let rest = t.nanosecond() % 1_000_000;
    let t = if rest == 0 {
        t
    } else {
        t + time::Duration::nanoseconds(i64::from(1_000_000 - rest))
    };
    timestamp_text(t)
}

fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    tollgate_core::clock::parse_rfc3339(&format!("{}Z", text.replacen(' ', "T", 1)))
}

fn param(name: &str, v: &SqlValue) -> SqlParameter {
    let (value, hint) = match v {
        SqlValue::Null => (Field::IsNull(true), None),
        SqlValue::Text(t) => (Field::StringValue(t.clone()), None),
        SqlValue::Int(i) => (Field::LongValue(*i), None),
        SqlValue::Real(r) => (Field::DoubleValue(*r), None),
        SqlValue::Timestamp(t) => (Field::StringValue(bound_text(*t)), Some(TypeHint::Timestamp)),
        SqlValue::Uuid(u) => (Field::StringValue(u.clone()), Some(TypeHint::Uuid)),
        SqlValue::Json(j) => (Field::StringValue(j.clone()), Some(TypeHint::Json)),
    };
    SqlParameter::builder()
        .name(name)
        .value(value)
        .set_type_hint(hint)
        .build()
}

/// A row as an element of [`INSERT_ROWS`]'s JSON array (the outbox text stays a string, cast
/// to JSON by the statement, so it is stored exactly as serialized).
fn row_json(row: &NewRecord) -> Value {
    let r = &row.record;
    serde_json::json!({
        "request_id": r.request_id,
        "event_id": r.event_id,
        "trace_id": r.trace_id,
        "received_at": timestamp_text(r.received_at),
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "route": r.route,
        "function_name": r.function_name,
        "status": r.status,
        "latency_ms": r.latency_ms,
        "client_ip": r.client_ip,
        "user_agent": r.user_agent,
        "principal": r.principal,
        "request_bytes": r.request_bytes,
        "response_bytes": r.response_bytes,
        "error_code": r.error_code,
        "audit_batch": row.audit_batch,
        "audit_payload": row.audit_payload,
        "intent": row.intent,
        "principal_kind": r.principal_kind.as_str(),
        "principal_name": r.principal_name,
        "scopes": tollgate_core::access::join_scopes(&r.scopes),
        "access": r.access,
    })
}

/// Rough size of a row in the request JSON (escaping can double quotes, twice: the row's JSON
/// text is itself a string in the request).
fn estimated_bytes(row: &NewRecord) -> usize {
    let r = &row.record;
    let text = r.request_id.len()
        + r.path.len()
        + r.query.as_ref().map_or(0, String::len)
        + r.user_agent.as_ref().map_or(0, String::len)
        + r.principal.as_ref().map_or(0, String::len)
        + r.principal_name.as_ref().map_or(0, String::len)
        + r.scopes.iter().map(|s| s.len() + 1).sum::<usize>()
        + r.access.len()
        + r.route.as_ref().map_or(0, String::len);
    4 * (text + row.audit_payload.len()) + 1024
}

fn transient_code(code: &str) -> bool {
    matches!(
        code,
        "DatabaseResumingException"
            | "DatabaseUnavailableException"
            | "ServiceUnavailableError"
            | "InternalServerErrorException"
            | "StatementTimeoutException"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
    )
}

fn map_sdk_error<E: ProvideErrorMetadata + std::fmt::Debug>(e: SdkError<E>) -> LogError {
    match &e {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("Unknown").to_string();
            let status = ctx.raw().status().as_u16();
            // Backend messages are kept for the log only; callers map them to a fixed answer.
            let message = ctx.err().message().unwrap_or_default().to_string();
            if transient_code(&code) || status >= 500 || status == 429 {
                LogError::Unavailable(format!("{code}: {message}"))
            } else {
                LogError::Failed(format!("{code}: {message}"))
            }
        }
        _ => LogError::Unavailable(format!("{e:?}")),
    }
}

fn is_too_large(e: &LogError) -> bool {
    matches!(e, LogError::Failed(m) if m.contains("response size limit"))
}

impl DataApiRequestLog {
    /// A request log over a Data API client.
    pub fn new(client: Client, settings: DataApiSettings) -> Self {
        Self { client, settings }
    }

    /// A call under the Data API policy: transient errors (throttling, 5xx,
    /// `DatabaseResumingException` while an auto-paused cluster resumes) are retried within
    /// its budget.
    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T, LogError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, LogError>>,
    {
        retry(&backoff::DATA_API, LogError::is_transient, call).await
    }

    async fn execute(
        &self,
        sql: &str,
        params: Vec<SqlParameter>,
        tx: Option<&str>,
        json: bool,
    ) -> Result<(i64, Vec<Map<String, Value>>), LogError> {
        self.execute_under(&backoff::DATA_API, sql, params, tx, json).await
    }

    async fn execute_under(
        &self,
        policy: &Policy,
        sql: &str,
        params: Vec<SqlParameter>,
        tx: Option<&str>,
        json: bool,
    ) -> Result<(i64, Vec<Map<String, Value>>), LogError> {
        retry(policy, LogError::is_transient, || async {
            let mut req = self
                .client
                .execute_statement()
                .resource_arn(&self.settings.cluster_arn)
                .secret_arn(&self.settings.secret_arn)
                .database(&self.settings.database)
                .sql(sql)
                .set_parameters(Some(params.clone()))
                .set_transaction_id(tx.map(String::from));
            if json {
                req = req.format_records_as(RecordsFormatType::Json);
            }
            let out = req.send().await.map_err(map_sdk_error)?;
            let rows = match out.formatted_records() {
                Some(text) => serde_json::from_str::<Vec<Map<String, Value>>>(text)
                    .map_err(|e| LogError::Failed(format!("formattedRecords: {e}")))?,
                None => Vec::new(),
            };
            Ok((out.number_of_records_updated, rows))
        })
        .await
    }

    /// Inserts one chunk of a group commit (one attempt); the request ids inserted now.
    async fn insert_chunk(&self, rows: &[NewRecord], tx: Option<&str>) -> Result<Vec<String>, LogError> {
        let array = Value::Array(rows.iter().map(row_json).collect());
        let params = vec![param("rows", &SqlValue::Json(array.to_string()))];
        let (_, returned) = self
            .execute_under(&backoff::DATA_API.once(), &sql::postgres::INSERT_ROWS, params, tx, true)
            .await?;
        Ok(returned.iter().filter_map(|r| text(r, "request_id")).collect())
    }

    async fn begin(&self) -> Result<String, LogError> {
        self.retrying(|| async {
            self.client
                .begin_transaction()
                .resource_arn(&self.settings.cluster_arn)
                .secret_arn(&self.settings.secret_arn)
                .database(&self.settings.database)
                .send()
                .await
                .map_err(map_sdk_error)
        })
        .await?
        .transaction_id
        .ok_or_else(|| LogError::Failed("BeginTransaction returned no id".into()))
    }

    async fn event_ids(
        &self,
        ids: &[&str],
        tx: Option<&str>,
    ) -> Result<std::collections::HashMap<String, String>, LogError> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(IN_LIST_MAX) {
            let (list, params) = in_list(chunk.iter().copied());
            let text = sql::postgres::event_ids_in(&list);
            let (_, rows) = self
                .execute_under(&backoff::DATA_API.once(), &text, params, tx, true)
                .await?;
            for row in rows {
                if let (Some(r), Some(e)) = (
                    row.get("request_id").and_then(Value::as_str),
                    row.get("event_id").and_then(Value::as_str),
                ) {
                    out.insert(r.to_string(), e.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Commits the transaction if `commit`, else rolls it back. A commit that fails is followed
    /// by a best-effort rollback: otherwise the transaction would stay open, holding its rows'
    /// locks, until the Data API expires it (3 minutes without a call), and every retry of
    /// those rows would block behind it. (If the commit did happen, the rollback finds no
    /// transaction and its error is ignored.)
    async fn end_transaction(&self, tx: &str, commit: bool) -> Result<(), LogError> {
        let ended = self.end_transaction_once(tx, commit).await;
        if commit && ended.is_err() {
            if let Err(e) = self.end_transaction_once(tx, false).await {
                tracing::debug!(error = %e, "rollback after a failed commit");
            }
        }
        ended
    }

    async fn end_transaction_once(&self, tx: &str, commit: bool) -> Result<(), LogError> {
        let (arn, secret) = (&self.settings.cluster_arn, &self.settings.secret_arn);
        if commit {
            let call = self
                .client
                .commit_transaction()
                .resource_arn(arn)
                .secret_arn(secret)
                .transaction_id(tx);
            call.send().await.map(|_| ()).map_err(map_sdk_error)
        } else {
            let call = self
                .client
                .rollback_transaction()
                .resource_arn(arn)
                .secret_arn(secret)
                .transaction_id(tx);
            call.send().await.map(|_| ()).map_err(map_sdk_error)
        }
    }

    async fn migrate_inner(&self) -> Result<Vec<String>, LogError> {
        let tx = self.begin().await?;
        let result = async {
            use tollgate_core::sql::migrations::{self, Step};
            self.execute(migrations::LOCK_POSTGRES, vec![], Some(&tx), false)
                .await?;
            self.execute(migrations::TABLE_POSTGRES, vec![], Some(&tx), false)
                .await?;
            self.execute(migrations::ADD_CHECKSUM_POSTGRES, vec![], Some(&tx), false)
                .await?;
            let (_, rows) = self.execute(migrations::APPLIED, vec![], Some(&tx), true).await?;
            let done: Vec<(String, Option<String>)> = rows
                .iter()
                .filter_map(|r| Some((text(r, "version")?, text(r, "checksum"))))
                .collect();
            let mut applied = Vec::new();
            for step in migrations::plan(sql::POSTGRES_MIGRATIONS, &done)? {
                match step {
                    Step::Apply {
                        version,
                        text,
                        checksum,
                    } => {
                        for stmt in sql::split_statements(text) {
                            self.execute(&stmt, vec![], Some(&tx), false).await?;
                        }
                        let params = vec![
                            param("version", &SqlValue::Text(version.to_string())),
                            param("applied_at", &SqlValue::Timestamp(tollgate_core::clock::now())),
                            param("checksum", &SqlValue::Text(checksum)),
                        ];
                        self.execute(migrations::RECORD, params, Some(&tx), false).await?;
                        applied.push(version.to_string());
                    }
                    Step::RecordChecksum { version, checksum } => {
                        let params = vec![
                            param("version", &SqlValue::Text(version.to_string())),
                            param("checksum", &SqlValue::Text(checksum)),
                        ];
                        self.execute(migrations::SET_CHECKSUM, params, Some(&tx), false).await?;
                    }
                }
            }
            Ok::<_, LogError>(applied)
        }
        .await;
        let end = self.end_transaction(&tx, result.is_ok()).await;
        let applied = result?;
        end?;
        Ok(applied)
    }
}

/// `:r0, :r1, ...` for an `IN (...)` list of request ids, with its parameters.
fn in_list<'a>(ids: impl Iterator<Item = &'a str>) -> (String, Vec<SqlParameter>) {
    let mut names = Vec::new();
    let mut params = Vec::new();
    for (i, id) in ids.enumerate() {
        names.push(format!(":r{i}"));
        params.push(param(&format!("r{i}"), &SqlValue::Text(id.to_string())));
    }
    (names.join(", "), params)
}

fn text(row: &Map<String, Value>, col: &str) -> Option<String> {
    row.get(col).and_then(Value::as_str).map(String::from)
}

fn number(row: &Map<String, Value>, col: &str) -> Result<f64, LogError> {
    row.get(col)
        .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .ok_or_else(|| LogError::Failed(format!("column {col} missing or not a number")))
}

fn row_to_record(row: &Map<String, Value>) -> Result<StoredRecord, LogError> {
    let received = text(row, "received_at").ok_or_else(|| LogError::Failed("received_at missing".into()))?;
    Ok(StoredRecord {
        record: RequestRecord {
            request_id: text(row, "request_id").ok_or_else(|| LogError::Failed("request_id missing".into()))?,
            event_id: text(row, "event_id").unwrap_or_default(),
            trace_id: text(row, "trace_id"),
            received_at: parse_timestamp(&received)
                .ok_or_else(|| LogError::Failed(format!("bad received_at {received}")))?,
            method: text(row, "method").unwrap_or_default(),
            path: text(row, "path").unwrap_or_default(),
            query: text(row, "query"),
            route: text(row, "route"),
            function_name: text(row, "function_name"),
            status: number(row, "status")? as u16,
            latency_ms: number(row, "latency_ms")?,
            client_ip: text(row, "client_ip"),
            user_agent: text(row, "user_agent"),
            principal: text(row, "principal"),
            request_bytes: number(row, "request_bytes")? as u64,
            response_bytes: number(row, "response_bytes")? as u64,
            error_code: text(row, "error_code"),
            principal_kind: PrincipalKind::from_stored(&text(row, "principal_kind").unwrap_or_default()),
            principal_name: text(row, "principal_name"),
            scopes: split_scopes(&text(row, "scopes").unwrap_or_default()),
            access: text(row, "access").unwrap_or_default(),
        },
        audit_batch: text(row, "audit_batch").unwrap_or_default(),
        audit_key: text(row, "audit_key"),
        audit_payload: match row.get("audit_payload") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        },
        intent: row.get("intent").and_then(Value::as_bool).unwrap_or(false),
        log_index: row.get("log_index").and_then(Value::as_u64),
        leaf_hash: text(row, "leaf_hash").map(|h| h.trim_end().to_string()),
    })
}

impl RequestLog for DataApiRequestLog {
    fn migrate(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        Box::pin(self.migrate_inner())
    }

    fn execute_script<'a>(&'a self, steps: &'a [tollgate_core::ports::SqlStep]) -> BoxFuture<'a, Result<(), LogError>> {
        Box::pin(async move {
            let tx = self.begin().await?;
            let result = async {
                for step in steps {
                    let params = step
                        .params
                        .iter()
                        .map(|(n, v)| param(n, &SqlValue::Text(v.clone())))
                        .collect();
                    self.execute_under(&backoff::DATA_API.once(), &step.sql, params, Some(&tx), false)
                        .await?;
                }
                Ok::<_, LogError>(())
            }
            .await;
            let ended = self.end_transaction(&tx, result.is_ok()).await;
            result.and(ended)
        })
    }

    fn insert_batch<'a>(&'a self, rows: &'a [NewRecord]) -> BoxFuture<'a, Result<Vec<InsertOutcome>, LogError>> {
        Box::pin(async move {
            // A second row under a request id already in this commit is another request's
            // (one id, two events): it is not sent, and is found a conflict below.
            let mut first = std::collections::HashSet::new();
            let mut repeated = std::collections::HashSet::new();
            let sent: Vec<NewRecord> = rows
                .iter()
                .filter(|r| {
                    let id = r.record.request_id.as_str();
                    let is_first = first.insert(id);
                    if !is_first {
                        repeated.insert(id);
                    }
                    is_first
                })
                .cloned()
                .collect();
            let mut chunks = Vec::new();
            let mut start = 0;
            while start < sent.len() {
                let mut end = start;
                let mut bytes = 4096;
                while end < sent.len()
                    && (end == start || bytes + estimated_bytes(&sent[end]) <= MAX_BATCH_REQUEST_BYTES)
                {
                    bytes += estimated_bytes(&sent[end]);
                    end += 1;
                }
                chunks.push(&sent[start..end]);
                start = end;
            }
            // One statement is atomic by itself; several go in one transaction.
            let tx = if chunks.len() > 1 {
                Some(self.begin().await?)
            } else {
                None
            };
            let result = async {
                let mut inserted = std::collections::HashSet::new();
                for chunk in &chunks {
                    inserted.extend(self.insert_chunk(chunk, tx.as_deref()).await?);
                }
                // Each id is inserted by at most one row: the first that carries it.
                let mut claimed = std::collections::HashSet::new();
                // Ids minted here are unique by construction: one not inserted now was this
                // very row, stored by an earlier attempt. A client-chosen one may be another
                // request's: its event id tells.
                let ask: Vec<&str> = rows
                    .iter()
                    .filter(|r| {
                        let id = r.record.request_id.as_str();
                        r.client_chosen_id && (!inserted.contains(id) || repeated.contains(id))
                    })
                    .map(|r| r.record.request_id.as_str())
                    .collect();
                let stored = if ask.is_empty() {
                    Default::default()
                } else {
                    self.event_ids(&ask, tx.as_deref()).await?
                };
                rows.iter()
                    .map(|r| {
                        let id = r.record.request_id.as_str();
                        if inserted.contains(id) && claimed.insert(id) {
                            return Ok(InsertOutcome::Inserted);
                        }
                        if !r.client_chosen_id {
                            return Ok(InsertOutcome::AlreadyPresent);
                        }
                        match stored.get(&r.record.request_id) {
                            Some(e) if e.eq_ignore_ascii_case(&r.record.event_id) => Ok(InsertOutcome::AlreadyPresent),
                            Some(_) => Ok(InsertOutcome::IdConflict),
                            None => Err(LogError::Failed(format!(
                                "row {} missing after insert",
                                r.record.request_id
                            ))),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            }
            .await;
            if let Some(tx) = &tx {
                let end = self.end_transaction(tx, result.is_ok()).await;
                let outcomes = result?;
                end?;
                return Ok(outcomes);
            }
            result
        })
    }

    fn mark_audited<'a>(&'a self, key: &'a str, events: &'a [AuditedEvent]) -> BoxFuture<'a, Result<u64, LogError>> {
        Box::pin(async move { Ok(self.mark_chunks(key, events, None).await?.marked) })
    }

    fn mark_audited_pending<'a>(
        &'a self,
        key: &'a str,
        events: &'a [AuditedEvent],
        limit: usize,
    ) -> BoxFuture<'a, Result<MarkedPending, LogError>> {
        Box::pin(self.mark_chunks(key, events, Some(limit.min(MARK_PENDING_LEAVES))))
    }

    fn pending_audits(
        &self,
        received_before: OffsetDateTime,
        max_attempts: u32,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingAudit>, LogError>> {
        Box::pin(async move {
            let mut out: Vec<PendingAudit> = Vec::new();
            let mut after: Option<(u32, OffsetDateTime, String)> = None;
            let mut page = PENDING_PAGE;
            while out.len() < limit {
                let n = page.min(limit - out.len());
                let (statement, params) = sql::pending_audits(received_before, max_attempts, after.clone(), n);
                let params = params.iter().map(|(k, v)| param(k, v)).collect();
                let rows = match self.execute(&statement, params, None, true).await {
                    Ok((_, rows)) => rows,
                    Err(e) if is_too_large(&e) && page > 1 => {
                        page /= 2;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let got = rows.len();
                for row in rows {
                    let id = text_of(&row, "request_id")?;
                    let at = text_of(&row, "received_at")?;
                    let at = parse_timestamp(&at).ok_or_else(|| LogError::Failed(format!("bad received_at {at}")))?;
                    let attempts = number(&row, "redrive_attempts")? as u32;
                    after = Some((attempts, at, id.clone()));
                    out.push(PendingAudit {
                        request_id: id,
                        audit_batch: text(&row, "audit_batch").unwrap_or_default(),
                        audit_payload: match row.get("audit_payload") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        },
                        redrive_attempts: attempts,
                    });
                }
                if got < n {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn note_redrive_failure<'a>(&'a self, request_ids: &'a [String]) -> BoxFuture<'a, Result<u64, LogError>> {
        Box::pin(async move {
            let mut changed = 0u64;
            for chunk in request_ids.chunks(IN_LIST_MAX) {
                let (list, params) = in_list(chunk.iter().map(String::as_str));
                let text = sql::postgres::note_redrive_failure_in(&list);
                let (n, _) = self.execute(&text, params, None, false).await?;
                changed += n.max(0) as u64;
            }
            Ok(changed)
        })
    }

    fn count_set_aside(&self, max_attempts: u32) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move {
            let params = vec![param("max_attempts", &SqlValue::Int(max_attempts.into()))];
            let (_, rows) = self.execute(sql::COUNT_SET_ASIDE, params, None, true).await?;
            Ok(rows.first().map(|r| number(r, "n")).transpose()?.unwrap_or(0.0) as u64)
        })
    }

    fn finalize_intents(
        &self,
        received_before: OffsetDateTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        Box::pin(async move {
            let params = vec![
                param("before", &SqlValue::Timestamp(received_before)),
                param("limit", &SqlValue::Int(limit as i64)),
            ];
            let (_, rows) = self.execute(sql::FINALIZE_INTENTS, params, None, true).await?;
            rows.iter().map(|r| text_of(r, "request_id")).collect()
        })
    }

    fn get<'a>(&'a self, request_id: &'a str) -> BoxFuture<'a, Result<Option<StoredRecord>, LogError>> {
        Box::pin(async move {
            let (_, rows) = self
                .execute(
                    &sql::select_one(),
                    vec![param("request_id", &SqlValue::Text(request_id.to_string()))],
                    None,
                    true,
                )
                .await?;
            rows.first().map(row_to_record).transpose()
        })
    }

    fn query<'a>(&'a self, query: &'a RecordQuery) -> BoxFuture<'a, Result<Vec<StoredRecord>, LogError>> {
        Box::pin(async move {
            let (text, params) = sql::select_query(query);
            let params = params.iter().map(|(n, v)| param(n, v)).collect();
            let (_, rows) = self.execute(&text, params, None, true).await?;
            rows.iter().map(row_to_record).collect()
        })
    }
}

fn timestamp_of(row: &Map<String, Value>, col: &str) -> Result<Option<OffsetDateTime>, LogError> {
    text(row, col)
        .map(|t| parse_timestamp(&t).ok_or_else(|| LogError::Failed(format!("bad {col} {t}"))))
        .transpose()
}

fn row_to_key(row: &Map<String, Value>) -> Result<ApiKeyRecord, LogError> {
    Ok(ApiKeyRecord {
        key_id: text_of(row, "key_id")?,
        name: text_of(row, "name")?,
        scopes: split_scopes(&text_of(row, "scopes")?),
        secret_sha256: text_of(row, "secret_sha256")?,
        created_at: timestamp_of(row, "created_at")?.ok_or_else(|| LogError::Failed("created_at missing".into()))?,
        expires_at: timestamp_of(row, "expires_at")?,
        revoked_at: timestamp_of(row, "revoked_at")?,
    })
}

impl KeyStore for DataApiRequestLog {
    fn create_key<'a>(&'a self, key: &'a ApiKeyRecord) -> BoxFuture<'a, Result<(), LogError>> {
        Box::pin(async move {
            let params = vec![
                param("key_id", &SqlValue::Text(key.key_id.clone())),
                param("name", &SqlValue::Text(key.name.clone())),
                param("scopes", &SqlValue::Text(join_scopes(&key.scopes))),
                param("secret_sha256", &SqlValue::Text(key.secret_sha256.clone())),
                param("created_at", &SqlValue::Timestamp(key.created_at)),
                param(
                    "expires_at",
                    &key.expires_at.map_or(SqlValue::Null, SqlValue::Timestamp),
                ),
            ];
            // One attempt: a retried INSERT after a lost answer would clash with its own row.
            self.execute_under(&backoff::DATA_API.once(), sql::keys::INSERT, params, None, false)
                .await
                .map(|_| ())
        })
    }

    fn find_key<'a>(&'a self, key_id: &'a str) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, LogError>> {
        Box::pin(async move {
            let params = vec![param("key_id", &SqlValue::Text(key_id.to_string()))];
            let (_, rows) = self.execute(sql::keys::FIND, params, None, true).await?;
            rows.first().map(row_to_key).transpose()
        })
    }

    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<ApiKeyRecord>, LogError>> {
        Box::pin(async move {
            let (_, rows) = self.execute(sql::keys::LIST, Vec::new(), None, true).await?;
            rows.iter().map(row_to_key).collect()
        })
    }

    fn revoke_key<'a>(&'a self, key_id: &'a str, at: OffsetDateTime) -> BoxFuture<'a, Result<bool, LogError>> {
        Box::pin(async move {
            let params = vec![
                param("key_id", &SqlValue::Text(key_id.to_string())),
                param("revoked_at", &SqlValue::Timestamp(at)),
            ];
            let (_, rows) = self.execute(sql::keys::REVOKE, params, None, true).await?;
            Ok(!rows.is_empty())
        })
    }

    fn count_keys(&self) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move {
            let (_, rows) = self.execute(sql::keys::COUNT, Vec::new(), None, true).await?;
            Ok(rows.first().map(|r| number(r, "n")).transpose()?.unwrap_or(0.0) as u64)
        })
    }
}

impl DataApiRequestLog {
    /// Marks and sequences `events` in chunks, one statement each (migration 0004's function
    /// locks the sequencer, marks and advances it): the same single call marking made before
    /// the log existed. Chunks stay far under the 4 MiB request limit (~120 bytes per event);
    /// each chunk is sequenced atomically, so a split object still gets gap-free indexes. With
    /// `pending` (a limit), the last chunk goes through migration 0005's function, which also
    /// answers the log's state and at most that many pending leaves, in the same call.
    async fn mark_chunks(
        &self,
        key: &str,
        events: &[AuditedEvent],
        pending: Option<usize>,
    ) -> Result<MarkedPending, LogError> {
        let mut out = MarkedPending {
            marked: 0,
            pending: None,
        };
        let chunks = events.len().div_ceil(MARK_CHUNK);
        for (c, chunk) in events.chunks(MARK_CHUNK).enumerate() {
            let array: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    serde_json::json!({
                        "request_id": e.request_id,
                        "leaf_hash": e.leaf_hex(),
                        "ord": c * MARK_CHUNK + i,
                    })
                })
                .collect();
            let mut params = vec![
                param("audit_key", &SqlValue::Text(key.to_string())),
                param("events", &SqlValue::Json(Value::Array(array).to_string())),
            ];
            let limit = pending.filter(|_| c + 1 == chunks);
            let statement = match limit {
                Some(limit) => {
                    params.push(param("limit", &SqlValue::Int(limit as i64)));
                    sql::tlog::MARK_AUDITED_PENDING_POSTGRES
                }
                None => sql::tlog::MARK_AUDITED_POSTGRES,
            };
            let (_, rows) = self.execute(statement, params, None, true).await?;
            let first = rows
                .first()
                .ok_or_else(|| LogError::Failed("tlog marking returned no row".into()))?;
            out.marked += number(first, "marked")?.max(0.0) as u64;
            if limit.is_some() {
                let state = tlog_state_of(Some(first))?;
                let mut leaves = Vec::new();
                push_leaf_runs(state.size, rows.iter().skip(1), &mut leaves)?;
                out.pending = Some((state, leaves));
            }
        }
        Ok(out)
    }
}

/// Appends the leaf rows of [`sql::tlog::MARK_AUDITED_PENDING_POSTGRES`] (`leaves_from`,
/// `leaves_to`, and their hex hashes concatenated) to `out`, which holds the leaves from `from`
/// on: each run must start at the next index and hold exactly its range (indexes are unique,
/// so a run of the right length has no hole).
fn push_leaf_runs<'a>(
    from: u64,
    rows: impl Iterator<Item = &'a Map<String, Value>>,
    out: &mut Vec<[u8; 32]>,
) -> Result<(), LogError> {
    for row in rows {
        let expected = from + out.len() as u64;
        let (first, last) = (number(row, "leaves_from")? as u64, number(row, "leaves_to")? as u64);
        let hex = text(row, "leaves").unwrap_or_default();
        let count = last.checked_sub(first).map(|d| d + 1).unwrap_or(0);
        if first != expected || count == 0 || hex.len() as u64 != count * 64 {
            return Err(LogError::Failed(format!(
                "tlog: leaves {first}..={last} do not continue at {expected} without a hole"
            )));
        }
        for (i, h) in hex.as_bytes().chunks(64).enumerate() {
            let hash = std::str::from_utf8(h)
                .ok()
                .and_then(tollgate_core::model::parse_hash_hex)
                .ok_or_else(|| LogError::Failed(format!("tlog: leaf {} is malformed", first + i as u64)))?;
            out.push(hash);
        }
    }
    Ok(())
}

/// The state row (of [`sql::tlog::STATE`] or the first of [`sql::tlog::PENDING`]).
fn tlog_state_of(row: Option<&Map<String, Value>>) -> Result<TlogState, LogError> {
    let row = row.ok_or_else(|| LogError::Failed("tlog_state: no row (migration 0004 not applied?)".into()))?;
    let root_hash = match text(row, "root_hash") {
        None => None,
        Some(h) => Some(
            tollgate_core::model::parse_hash_hex(h.trim_end())
                .ok_or_else(|| LogError::Failed(format!("tlog_state: bad root hash {h:?}")))?,
        ),
    };
    Ok(TlogState {
        next_index: number(row, "next_index")? as u64,
        size: number(row, "size")? as u64,
        root_hash,
        checkpoint: text(row, "checkpoint"),
    })
}

/// Appends leaf rows (`log_index`, `leaf_hash`) to `out`, which holds the leaves from `from`
/// on: each must be the next index.
fn push_leaves<'a>(
    from: u64,
    rows: impl Iterator<Item = &'a Map<String, Value>>,
    out: &mut Vec<[u8; 32]>,
) -> Result<(), LogError> {
    for row in rows {
        let expected = from + out.len() as u64;
        let index = number(row, "log_index")? as u64;
        let hash = text(row, "leaf_hash").and_then(|h| tollgate_core::model::parse_hash_hex(h.trim_end()));
        match hash {
            Some(h) if index == expected => out.push(h),
            _ => {
                return Err(LogError::Failed(format!(
                    "tlog: leaf {expected} missing or malformed (found index {index})"
                )))
            }
        }
    }
    Ok(())
}

/// Leaves per Data API page: ~100 bytes per leaf in the JSON response, so pages stay under
/// the 1 MiB response limit.
const LEAVES_PAGE: usize = PENDING_PAGE * 20;

impl TlogStore for DataApiRequestLog {
    fn tlog_state(&self) -> BoxFuture<'_, Result<TlogState, LogError>> {
        Box::pin(async move {
            let (_, rows) = self.execute(sql::tlog::STATE, vec![], None, true).await?;
            tlog_state_of(rows.first())
        })
    }

    fn tlog_pending(&self, limit: usize) -> BoxFuture<'_, Result<tollgate_core::ports::TlogPending, LogError>> {
        Box::pin(async move {
            // One call for the state and the first page of leaves; more pages only when more
            // than a page is waiting.
            let page = limit.min(LEAVES_PAGE);
            let params = vec![param("limit", &SqlValue::Int(page as i64))];
            let (_, rows) = self.execute(sql::tlog::PENDING, params, None, true).await?;
            let state = tlog_state_of(rows.first())?;
            let mut leaves = Vec::with_capacity(rows.len().saturating_sub(1));
            push_leaves(state.size, rows.iter().skip(1), &mut leaves)?;
            let waiting = state.next_index.saturating_sub(state.size) as usize;
            if leaves.len() == page && leaves.len() < limit.min(waiting) {
                let more = self
                    .tlog_leaves(state.size + leaves.len() as u64, limit.min(waiting) - leaves.len())
                    .await?;
                leaves.extend(more);
            }
            Ok((state, leaves))
        })
    }

    fn tlog_leaves(&self, from: u64, limit: usize) -> BoxFuture<'_, Result<Vec<[u8; 32]>, LogError>> {
        Box::pin(async move {
            let mut out: Vec<[u8; 32]> = Vec::with_capacity(limit.min(LEAVES_PAGE));
            while out.len() < limit {
                let page = (limit - out.len()).min(LEAVES_PAGE);
                let at = from + out.len() as u64;
                let params = vec![
                    param("from", &SqlValue::Int(at as i64)),
                    param("limit", &SqlValue::Int(page as i64)),
                ];
                let (_, rows) = self.execute(sql::tlog::LEAVES, params, None, true).await?;
                push_leaves(from, rows.iter(), &mut out)?;
                if rows.len() < page {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn tlog_object_rows<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<tollgate_core::ports::ObjectRow>, LogError>> {
        Box::pin(async move {
            let keys = serde_json::to_string(keys).map_err(|e| LogError::Failed(e.to_string()))?;
            let params = vec![param("keys", &SqlValue::Text(keys))];
            let (_, rows) = self
                .execute(sql::tlog::OBJECT_ROWS_POSTGRES, params, None, true)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let key =
                    text(row, "audit_key").ok_or_else(|| LogError::Failed("tlog: row without audit_key".into()))?;
                let id =
                    text(row, "request_id").ok_or_else(|| LogError::Failed("tlog: row without request_id".into()))?;
                let index = number(row, "log_index").ok().map(|i| i as u64);
                out.push((key.to_string(), id.to_string(), index));
            }
            Ok(out)
        })
    }

    fn tlog_rows(
        &self,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<tollgate_core::ports::IndexedRow>, LogError>> {
        Box::pin(async move {
            // ~350 bytes of Data API JSON a row (index, request id, key, hex hash, each in its
            // field object): 2,000 rows a page stay well under the 1 MiB response limit
            // (https://docs.aws.amazon.com/rdsdataservice/latest/APIReference/API_ExecuteStatement.html).
            // Keyset paging on the unique `log_index`: each page resumes after the last index.
            const PAGE: usize = PENDING_PAGE * 10;
            let mut out: Vec<tollgate_core::ports::IndexedRow> = Vec::with_capacity(limit.min(PAGE));
            let mut at = from;
            while out.len() < limit {
                let page = (limit - out.len()).min(PAGE);
                let params = vec![
                    param("from", &SqlValue::Int(at as i64)),
                    param("limit", &SqlValue::Int(page as i64)),
                ];
                let (_, rows) = self.execute(sql::tlog::ROWS, params, None, true).await?;
                for row in &rows {
                    let index = number(row, "log_index")? as u64;
                    let request_id = text(row, "request_id")
                        .ok_or_else(|| LogError::Failed("tlog: row without request_id".into()))?;
                    out.push(tollgate_core::ports::IndexedRow {
                        log_index: index,
                        request_id,
                        audit_key: text(row, "audit_key"),
                        // PostgreSQL `char(64)`-style padding, if any, is not part of the hash.
                        leaf_hash: text(row, "leaf_hash").map(|h| h.trim_end().to_string()),
                    });
                    at = index + 1;
                }
                if rows.len() < page {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn tlog_advance<'a>(
        &'a self,
        old_size: u64,
        new_size: u64,
        root_hash: &'a [u8; 32],
        checkpoint: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        Box::pin(async move {
            let params = vec![
                param("old_size", &SqlValue::Int(old_size as i64)),
                param("new_size", &SqlValue::Int(new_size as i64)),
                param("root_hash", &SqlValue::Text(tollgate_core::model::hex(root_hash))),
                param("checkpoint", &SqlValue::Text(checkpoint.to_string())),
            ];
            let (n, _) = self.execute(sql::tlog::ADVANCE, params, None, false).await?;
            Ok(n == 1)
        })
    }
}

fn text_of(row: &Map<String, Value>, col: &str) -> Result<String, LogError> {
    text(row, col).ok_or_else(|| LogError::Failed(format!("column {col} missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_sent_in_the_documented_format() {
        // `YYYY-MM-DD HH:MM:SS[.FFF]` (RDS Data API reference, SqlParameter): no `T`, no zone,
        // at most three fractional digits.
        let documented = |text: &str| {
            let b = text.as_bytes();
            text.len() == 23
                && b[10] == b' '
                && b[19] == b'.'
                && text.chars().enumerate().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == ' ',
                    13 | 16 => c == ':',
                    19 => c == '.',
                    _ => c.is_ascii_digit(),
                })
        };
        let t = tollgate_core::clock::parse_rfc3339("2026-11-25T22:10:04.000500Z").unwrap();
        assert_eq!(timestamp_text(t), "2026-11-25 22:10:04.000");
        assert_eq!(bound_text(t), "2026-11-25 22:10:04.001");
        let whole = tollgate_core::clock::parse_rfc3339("2026-11-25T22:10:04.123Z").unwrap();
        assert_eq!(
            bound_text(whole),
            timestamp_text(whole),
            "a stored value is its own bound"
        );
        let carry = tollgate_core::clock::parse_rfc3339("2026-12-31T23:59:59.999001Z").unwrap();
        assert_eq!(bound_text(carry), "2027-01-01 00:00:00.000");
        for text in [timestamp_text(t), bound_text(t), bound_text(carry)] {
            assert!(documented(&text), "{text}");
        }
        // What the Data API answers is read back whatever its precision.
        assert_eq!(parse_timestamp("2026-11-25 22:10:04.123"), Some(whole));
        assert!(parse_timestamp("2026-11-25 22:10:04.0005").is_some());
        assert!(parse_timestamp("2026-11-25 22:10:04").is_some());
    }

    #[test]
    fn bounds_keep_their_meaning_against_stored_milliseconds() {
        // Every stored value is a whole millisecond; for bounds anywhere inside and around one,
        // the rounded bound selects exactly what the exact bound would (>= since, < until).
        let base = tollgate_core::clock::parse_rfc3339("2026-11-25T22:10:04.120Z").unwrap();
        let ms = |n: i64| base + time::Duration::milliseconds(n);
        let stored: Vec<OffsetDateTime> = (0..4).map(ms).collect();
        for offset_us in [0, 1, 499, 500, 999, 1000, 1500, 2999] {
            let b = base + time::Duration::microseconds(offset_us);
            let rounded = parse_timestamp(&bound_text(b)).unwrap();
            for s in &stored {
                assert_eq!(*s >= rounded, *s >= b, "since {b}, stored {s}");
                assert_eq!(*s < rounded, *s < b, "until {b}, stored {s}");
            }
        }
    }
}
