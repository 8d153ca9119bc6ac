//! The request log's SQL, kept portable between SQLite (embedded) and PostgreSQL (Aurora,
//! through the Data API): named `:param`s, no dialect-specific functions.

use crate::model::RecordQuery;
use time::OffsetDateTime;

/// A parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// Text.
    Text(String),
    /// 64-bit integer.
    Int(i64),
    /// Double.
    Real(f64),
    /// Timestamp (UTC).
    Timestamp(OffsetDateTime),
    /// A UUID, as text (typed `UUID` where the database has the type).
    Uuid(String),
    /// A JSON document, as text (typed `JSON` where the database has the type).
    Json(String),
}

impl From<Option<String>> for SqlValue {
    fn from(v: Option<String>) -> Self {
        v.map_or(SqlValue::Null, SqlValue::Text)
    }
}

/// Columns of `api_requests` in the order every SELECT returns them.
pub const COLUMNS: &str = "request_id, event_id, trace_id, received_at, method, path, query, route, \
     function_name, status, latency_ms, client_ip, user_agent, principal, request_bytes, \
     response_bytes, error_code, audit_batch, audit_key, audit_payload, intent";

/// What an insert does when the request id is taken: a row that is the write-ahead intent of
/// the same event is replaced by the record (the request's answer); anything else is left
/// alone (a retried insert, or a clashing request id, told apart by the event id).
pub const ON_CONFLICT: &str = "ON CONFLICT (request_id) DO UPDATE SET trace_id = excluded.trace_id, \
     method = excluded.method, path = excluded.path, query = excluded.query, route = excluded.route, \
     function_name = excluded.function_name, status = excluded.status, latency_ms = excluded.latency_ms, \
     client_ip = excluded.client_ip, user_agent = excluded.user_agent, principal = excluded.principal, \
     request_bytes = excluded.request_bytes, response_bytes = excluded.response_bytes, \
     error_code = excluded.error_code, audit_batch = excluded.audit_batch, \
     audit_payload = excluded.audit_payload, intent = excluded.intent \
     WHERE api_requests.intent AND api_requests.event_id = excluded.event_id";

/// Insert of one row (SQLite; the Data API inserts a whole commit in one statement with the
/// same conflict rule): a retried batch never doubles a row.
pub static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO api_requests (request_id, event_id, trace_id, received_at, method, path, \
         query, route, function_name, status, latency_ms, client_ip, user_agent, principal, request_bytes, \
         response_bytes, error_code, audit_batch, audit_key, audit_payload, intent) VALUES (:request_id, \
         :event_id, :trace_id, :received_at, :method, :path, :query, :route, :function_name, :status, \
         :latency_ms, :client_ip, :user_agent, :principal, :request_bytes, :response_bytes, :error_code, \
         :audit_batch, NULL, :audit_payload, :intent) {ON_CONFLICT}"
    )
});

/// The event id holding a request id (tells a retry from a clash after a conflicting insert).
pub const EVENT_ID_OF: &str = "SELECT event_id FROM api_requests WHERE request_id = :request_id";

/// Marks one row audited unless it already is.
pub const MARK_AUDITED: &str = "UPDATE api_requests SET audit_key = :audit_key, audit_payload = NULL \
     WHERE request_id = :request_id AND audit_key IS NULL";

/// Counts one more failed re-drive of an unaudited row.
pub const NOTE_REDRIVE_FAILURE: &str = "UPDATE api_requests SET redrive_attempts = redrive_attempts + 1 \
     WHERE request_id = :request_id AND audit_key IS NULL";

/// Unaudited rows set aside (re-driven `max_attempts` times without success).
pub const COUNT_SET_ASIDE: &str = "SELECT count(*) AS n FROM api_requests \
     WHERE audit_key IS NULL AND redrive_attempts >= :max_attempts";

/// Finalizes the oldest write-ahead intents received before `:before` (their ingress died
/// between the intent and the answer): each already holds its `outcome_unknown` record and
/// audit event, so finalizing is clearing the flag; the audit event then goes out like any
/// other unaudited row's.
pub const FINALIZE_INTENTS: &str = "UPDATE api_requests SET intent = FALSE WHERE intent AND request_id IN \
     (SELECT request_id FROM api_requests WHERE intent AND received_at < :before ORDER BY received_at \
     LIMIT :limit) RETURNING request_id";

/// A page of unaudited rows past the grace period, fewest failed re-drives first, then oldest
/// (so rows that keep failing cannot hold back newer ones); rows re-driven `max_attempts`
/// times are set aside; intents wait for their answer. `after` resumes after a row (keyset
/// paging for the Data API's 1 MiB response limit).
pub fn pending_audits(
    before: OffsetDateTime,
    max_attempts: u32,
    after: Option<(u32, OffsetDateTime, String)>,
    limit: usize,
) -> (String, Vec<(&'static str, SqlValue)>) {
    let mut sql = String::from(
        "SELECT request_id, audit_batch, audit_payload, redrive_attempts, received_at FROM api_requests \
         WHERE audit_key IS NULL AND redrive_attempts < :max_attempts AND received_at < :before AND NOT intent",
    );
    let mut params = vec![
        ("max_attempts", SqlValue::Int(max_attempts.into())),
        ("before", SqlValue::Timestamp(before)),
        ("limit", SqlValue::Int(limit as i64)),
    ];
    if let Some((attempts, at, id)) = after {
        sql.push_str(
            " AND (redrive_attempts > :after_attempts OR (redrive_attempts = :after_attempts AND \
             (received_at > :after_at OR (received_at = :after_at AND request_id > :after_id))))",
        );
        params.push(("after_attempts", SqlValue::Int(attempts.into())));
        params.push(("after_at", SqlValue::Timestamp(at)));
        params.push(("after_id", SqlValue::Text(id)));
    }
    sql.push_str(" ORDER BY redrive_attempts, received_at, request_id LIMIT :limit");
    (sql, params)
}

/// Columns of a list query: the outbox payload is left out (`NULL`), so pages of records
/// stay small (the Data API's responses are limited to 1 MiB).
pub const LIST_COLUMNS: &str = "request_id, event_id, trace_id, received_at, method, path, query, route, \
     function_name, status, latency_ms, client_ip, user_agent, principal, request_bytes, \
     response_bytes, error_code, audit_batch, audit_key, NULL AS audit_payload, intent";

/// Versioned PostgreSQL migrations (Aurora, through the Data API).
pub const POSTGRES_MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_api_requests",
        include_str!("../migrations/postgres/0001_api_requests.sql"),
    ),
    (
        "0002_write_ahead_and_redrive",
        include_str!("../migrations/postgres/0002_write_ahead_and_redrive.sql"),
    ),
];

/// Splits a migration file into statements (the Data API runs one statement per call):
/// on `;` outside string literals, quoted identifiers and comments.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                current.push(c);
                for d in chars.by_ref() {
                    current.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ';' => {
                let stmt = current.trim();
                if !stmt.is_empty() {
                    out.push(stmt.to_string());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let stmt = current.trim();
    if !stmt.is_empty() {
        out.push(stmt.to_string());
    }
    out
}

/// One row.
pub fn select_one() -> String {
    format!("SELECT {COLUMNS} FROM api_requests WHERE request_id = :request_id")
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The SELECT for a [`RecordQuery`] and its parameters.
pub fn select_query(q: &RecordQuery) -> (String, Vec<(&'static str, SqlValue)>) {
    let mut sql = format!("SELECT {LIST_COLUMNS} FROM api_requests WHERE 1 = 1");
    let mut params: Vec<(&'static str, SqlValue)> = Vec::new();
    if let Some(since) = q.since {
        sql.push_str(" AND received_at >= :since");
        params.push(("since", SqlValue::Timestamp(since)));
    }
    if let Some(until) = q.until {
        sql.push_str(" AND received_at < :until");
        params.push(("until", SqlValue::Timestamp(until)));
    }
    if let Some(status) = q.status {
        sql.push_str(" AND status = :status");
        params.push(("status", SqlValue::Int(status.into())));
    }
    if let Some(method) = &q.method {
        sql.push_str(" AND method = :method");
        params.push(("method", SqlValue::Text(method.clone())));
    }
    if let Some(prefix) = &q.path_prefix {
        sql.push_str(" AND path LIKE :path_prefix ESCAPE '\\'");
        params.push(("path_prefix", SqlValue::Text(like_prefix(prefix))));
    }
    if let Some(principal) = &q.principal {
        sql.push_str(" AND principal = :principal");
        params.push(("principal", SqlValue::Text(principal.clone())));
    }
    if let Some((at, id)) = &q.after {
        sql.push_str(" AND (received_at < :after_at OR (received_at = :after_at AND request_id < :after_id))");
        params.push(("after_at", SqlValue::Timestamp(*at)));
        params.push(("after_id", SqlValue::Text(id.clone())));
    }
    sql.push_str(" ORDER BY received_at DESC, request_id DESC LIMIT :limit");
    params.push(("limit", SqlValue::Int(q.limit as i64)));
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_single_statements() {
        let stmts = split_statements("CREATE TABLE a (x TEXT DEFAULT ';'); -- c;\nCREATE INDEX i ON a (x);\n");
        assert_eq!(
            stmts,
            vec!["CREATE TABLE a (x TEXT DEFAULT ';')", "CREATE INDEX i ON a (x)"]
        );
        assert_eq!(split_statements(POSTGRES_MIGRATIONS[0].1).len(), 3);
    }

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("/v1/a_b%"), "/v1/a\\_b\\%%");
    }

    #[test]
    fn query_binds_only_what_is_set() {
        let (sql, params) = select_query(&RecordQuery {
            status: Some(404),
            limit: 5,
            ..Default::default()
        });
        assert!(sql.contains("status = :status"));
        assert!(!sql.contains(":since"));
        assert_eq!(params.len(), 2);
    }
}
