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
     response_bytes, error_code, audit_batch, audit_key, audit_payload, intent, principal_kind, \
     principal_name, scopes, access, log_index, leaf_hash";

/// What an insert does when the request id is taken: a row that is the write-ahead intent of
/// the same event is replaced by the record (the request's answer); anything else is left
/// alone (a retried insert, or a clashing request id, told apart by the event id).
pub const ON_CONFLICT: &str = "ON CONFLICT (request_id) DO UPDATE SET trace_id = excluded.trace_id, \
     method = excluded.method, path = excluded.path, query = excluded.query, route = excluded.route, \
     function_name = excluded.function_name, status = excluded.status, latency_ms = excluded.latency_ms, \
     client_ip = excluded.client_ip, user_agent = excluded.user_agent, principal = excluded.principal, \
     request_bytes = excluded.request_bytes, response_bytes = excluded.response_bytes, \
     error_code = excluded.error_code, audit_batch = excluded.audit_batch, \
     audit_payload = excluded.audit_payload, intent = excluded.intent, \
     principal_kind = excluded.principal_kind, principal_name = excluded.principal_name, \
     scopes = excluded.scopes, access = excluded.access \
     WHERE api_requests.intent AND api_requests.event_id = excluded.event_id";

/// Insert of one row (SQLite; the Data API inserts a whole commit in one statement with the
/// same conflict rule): a retried batch never doubles a row.
pub static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO api_requests (request_id, event_id, trace_id, received_at, method, path, \
         query, route, function_name, status, latency_ms, client_ip, user_agent, principal, request_bytes, \
         response_bytes, error_code, audit_batch, audit_key, audit_payload, intent, principal_kind, \
         principal_name, scopes, access) VALUES (:request_id, \
         :event_id, :trace_id, :received_at, :method, :path, :query, :route, :function_name, :status, \
         :latency_ms, :client_ip, :user_agent, :principal, :request_bytes, :response_bytes, :error_code, \
         :audit_batch, NULL, :audit_payload, :intent, :principal_kind, :principal_name, :scopes, :access) \
         {ON_CONFLICT}"
    )
});

/// The event id holding a request id (tells a retry from a clash after a conflicting insert).
pub const EVENT_ID_OF: &str = "SELECT event_id FROM api_requests WHERE request_id = :request_id";

/// Marks one row audited unless it already is, with its log index and leaf hash (SQLite: run
/// once per row inside the immediate transaction that holds the sequencer, see [`tlog`]).
pub const MARK_AUDITED: &str = "UPDATE api_requests SET audit_key = :audit_key, audit_payload = NULL, \
     log_index = :log_index, leaf_hash = :leaf_hash WHERE request_id = :request_id AND audit_key IS NULL";

/// The transparency log's statements (`docs/transparency-log.md`).
pub mod tlog {
    /// The sequencer's next index. SQLite runs it inside an immediate transaction, which holds
    /// the database's write lock: the single-writer lock that keeps indexes gap-free.
    pub const NEXT_INDEX: &str = "SELECT next_index FROM tlog_sequencer WHERE id = 1";
    /// Advances the sequencer past the rows marked now.
    pub const SET_NEXT_INDEX: &str = "UPDATE tlog_sequencer SET next_index = :next_index WHERE id = 1";
    /// The sequencer and the integrated tree, in one row.
    pub const STATE: &str = "SELECT s.next_index, t.size, t.root_hash, t.checkpoint FROM tlog_sequencer s, \
         tlog_state t WHERE s.id = 1 AND t.id = 1";
    /// Leaf hashes from an index on, in index order.
    pub const LEAVES: &str = "SELECT log_index, leaf_hash FROM api_requests WHERE log_index >= :from \
         ORDER BY log_index LIMIT :limit";
    /// The sequencer and the integrated tree (the first row, `log_index` NULL), then the leaf
    /// hashes from the integrated size on, in index order, at most `:limit`: what an
    /// integration round reads, in one statement (one Data API call; issue 15's budget). The
    /// range on `log_index` stands for a LIMIT, since indexes have no holes.
    pub const PENDING: &str = "SELECT s.next_index AS next_index, t.size AS size, t.root_hash AS root_hash, \
         t.checkpoint AS checkpoint, NULL AS log_index, NULL AS leaf_hash FROM tlog_sequencer s, tlog_state t \
         WHERE s.id = 1 AND t.id = 1 \
         UNION ALL SELECT NULL, NULL, NULL, NULL, r.log_index, r.leaf_hash FROM api_requests r, tlog_state t \
         WHERE t.id = 1 AND r.log_index >= t.size AND r.log_index < t.size + :limit \
         ORDER BY log_index NULLS FIRST";
    /// The sequenced rows from an index on, in index order (`tollgate verify`'s cross-check;
    /// the unique index on `log_index` serves it and makes the keyset exact).
    pub const ROWS: &str = "SELECT log_index, request_id, audit_key, leaf_hash FROM api_requests \
         WHERE log_index >= :from ORDER BY log_index LIMIT :limit";
    /// Records a newly integrated tree if nobody else advanced it first (compare-and-set).
    pub const ADVANCE: &str = "UPDATE tlog_state SET size = :new_size, root_hash = :root_hash, \
         checkpoint = :checkpoint WHERE id = 1 AND size = :old_size";
    /// The marked rows of some audit objects (`:keys`, a JSON array of keys): the digester's
    /// map from an object's lines to their log indexes.
    pub const OBJECT_ROWS_SQLITE: &str = "SELECT audit_key, request_id, log_index FROM api_requests \
         WHERE audit_key IN (SELECT value FROM json_each(:keys))";
    /// [`OBJECT_ROWS_SQLITE`] for PostgreSQL.
    pub const OBJECT_ROWS_POSTGRES: &str = "SELECT audit_key, request_id, log_index FROM api_requests \
         WHERE audit_key IN (SELECT json_array_elements_text(CAST(:keys AS json)))";
    /// PostgreSQL: marks and sequences a whole object's events in one statement (the function of
    /// migration 0004: it locks the sequencer row `FOR UPDATE`, then marks, then advances, in
    /// the statement's own transaction), so sequencing adds no Data API call to marking.
    pub const MARK_AUDITED_POSTGRES: &str = "SELECT tlog_mark_audited(:audit_key, :events) AS marked";
    /// PostgreSQL: [`MARK_AUDITED_POSTGRES`], and in the same call the log's state after it
    /// with the leaves pending past the integrated size, at most `:limit` (the function of
    /// migration 0005): the integration after a writer batch then reads nothing itself. The
    /// first row holds `marked` and the state; each further row up to 256 consecutive leaves
    /// (`leaves_from`..=`leaves_to`, their hex hashes concatenated in index order).
    pub const MARK_AUDITED_PENDING_POSTGRES: &str = "SELECT marked, next_index, size, root_hash, checkpoint, \
         leaves_from, leaves_to, leaves FROM tlog_mark_audited_pending(:audit_key, :events, :limit)";
}

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
     response_bytes, error_code, audit_batch, audit_key, NULL AS audit_payload, intent, principal_kind, \
     principal_name, scopes, access, log_index, leaf_hash";

/// Versioned SQLite migrations (embedded mode), the twins of [`POSTGRES_MIGRATIONS`].
pub const SQLITE_MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_api_requests",
        include_str!("../migrations/sqlite/0001_api_requests.sql"),
    ),
    (
        "0002_write_ahead_and_redrive",
        include_str!("../migrations/sqlite/0002_write_ahead_and_redrive.sql"),
    ),
    (
        "0003_principals_and_api_keys",
        include_str!("../migrations/sqlite/0003_principals_and_api_keys.sql"),
    ),
    (
        "0004_transparency_log",
        include_str!("../migrations/sqlite/0004_transparency_log.sql"),
    ),
    (
        "0005_tlog_mark_pending",
        include_str!("../migrations/sqlite/0005_tlog_mark_pending.sql"),
    ),
];

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
    (
        "0003_principals_and_api_keys",
        include_str!("../migrations/postgres/0003_principals_and_api_keys.sql"),
    ),
    (
        "0004_transparency_log",
        include_str!("../migrations/postgres/0004_transparency_log.sql"),
    ),
    (
        "0005_tlog_mark_pending",
        include_str!("../migrations/postgres/0005_tlog_mark_pending.sql"),
    ),
];

/// tollgate's API keys (`api_keys`): only the SHA-256 of each secret is stored.
pub mod keys {
    /// Columns in the order every SELECT returns them.
    pub const COLUMNS: &str = "key_id, name, scopes, secret_sha256, created_at, expires_at, revoked_at";
    /// A new key.
    pub const INSERT: &str = "INSERT INTO api_keys (key_id, name, scopes, secret_sha256, created_at, expires_at, \
         revoked_at) VALUES (:key_id, :name, :scopes, :secret_sha256, :created_at, :expires_at, NULL)";
    /// One key by id.
    pub const FIND: &str = "SELECT key_id, name, scopes, secret_sha256, created_at, expires_at, revoked_at \
         FROM api_keys WHERE key_id = :key_id";
    /// Every key, oldest first.
    pub const LIST: &str = "SELECT key_id, name, scopes, secret_sha256, created_at, expires_at, revoked_at \
         FROM api_keys ORDER BY created_at, key_id";
    /// Revokes a key unless it already is; returns the key id when it was revoked now.
    pub const REVOKE: &str =
        "UPDATE api_keys SET revoked_at = :revoked_at WHERE key_id = :key_id AND revoked_at IS NULL RETURNING key_id";
    /// How many keys there are (revoked ones included): the first start makes one only in an
    /// empty table.
    pub const COUNT: &str = "SELECT count(*) AS n FROM api_keys";
}

/// Splits a migration file into statements (the Data API runs one statement per call): on `;`
/// outside string literals (`'...'`, with `''` inside), quoted identifiers (`"..."`),
/// dollar-quoted bodies (`$$...$$`, `$tag$...$tag$`), line comments (`-- ...`) and block
/// comments (`/* ... */`, nested as PostgreSQL nests them). Comments are dropped.
pub fn split_statements(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    let flush = |current: &mut String, out: &mut Vec<String>| {
        let stmt = current.trim();
        if !stmt.is_empty() {
            out.push(stmt.to_string());
        }
        current.clear();
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                // To the closing quote; a doubled quote is part of the literal.
                let mut j = i + 1;
                while j < b.len() {
                    if b[j] == c {
                        if b.get(j + 1) == Some(&c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                let end = (j + 1).min(b.len());
                current.push_str(&text[i..end]);
                i = end;
            }
            b'$' => {
                // `$tag$` opens a dollar-quoted body closed by the same tag.
                let tag_end = text[i + 1..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .map(|n| i + 1 + n);
                match tag_end {
                    Some(t) if b[t] == b'$' && !text[i + 1..t].starts_with(|ch: char| ch.is_ascii_digit()) => {
                        let tag = &text[i..=t];
                        let body_end = text[t + 1..].find(tag).map_or(b.len(), |n| t + 1 + n + tag.len());
                        current.push_str(&text[i..body_end]);
                        i = body_end;
                    }
                    _ => {
                        current.push('$');
                        i += 1;
                    }
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                current.push('\n');
                i = end + 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                current.push(' ');
            }
            b';' => {
                flush(&mut current, &mut out);
                i += 1;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                current.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    flush(&mut current, &mut out);
    out
}

/// Schema migrations: one table in both engines, and one plan ([`plan`]) that both runners
/// follow. Each applied migration's checksum (SHA-256 of its text) is recorded; a migration
/// edited after it was applied is refused.
pub mod migrations {
    use crate::ports::LogError;
    use sha2::{Digest, Sha256};

    /// The migrations table (SQLite).
    pub const TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT NOT NULL PRIMARY KEY, \
         applied_at TEXT NOT NULL, checksum TEXT)";
    /// Whether a table made before checksums were recorded lacks the column (SQLite).
    pub const HAS_CHECKSUM_SQLITE: &str =
        "SELECT count(*) FROM pragma_table_info('schema_migrations') WHERE name = 'checksum'";
    /// Adds the column to such a table (SQLite).
    pub const ADD_CHECKSUM_SQLITE: &str = "ALTER TABLE schema_migrations ADD COLUMN checksum TEXT";
    /// The migrations table (PostgreSQL).
    pub const TABLE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version VARCHAR(128) NOT NULL \
         PRIMARY KEY, applied_at TIMESTAMP NOT NULL, checksum VARCHAR(64))";
    /// Adds the column to a table made before checksums were recorded (PostgreSQL).
    pub const ADD_CHECKSUM_POSTGRES: &str =
        "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum VARCHAR(64)";
    /// Serializes concurrent migrators (two tasks starting at once); released at commit
    /// (PostgreSQL; SQLite's immediate transaction does the same).
    pub const LOCK_POSTGRES: &str = "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(745001)) AS l";
    /// What was applied, with its checksum (`NULL` when applied before checksums).
    pub const APPLIED: &str = "SELECT version, checksum FROM schema_migrations";
    /// Records an applied migration.
    pub const RECORD: &str = "INSERT INTO schema_migrations (version, applied_at, checksum) \
         VALUES (:version, :applied_at, :checksum)";
    /// Records the checksum of a migration applied before checksums were.
    pub const SET_CHECKSUM: &str =
        "UPDATE schema_migrations SET checksum = :checksum WHERE version = :version AND checksum IS NULL";

    /// Hex SHA-256 of a migration's text.
    pub fn checksum(text: &str) -> String {
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// What a runner does for one migration.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Step<'a> {
        /// Run it and record it.
        Apply {
            /// Its version.
            version: &'a str,
            /// Its text.
            text: &'a str,
            /// Its checksum.
            checksum: String,
        },
        /// Applied before checksums were recorded: record its checksum now.
        RecordChecksum {
            /// Its version.
            version: &'a str,
            /// Its checksum.
            checksum: String,
        },
    }

    /// The steps that bring a database with `applied` (version, checksum) up to `migrations`,
    /// in order. A migration whose text no longer matches the checksum recorded when it was
    /// applied is an error naming it; versions this build does not know (a newer build
    /// migrated the database) are left alone.
    pub fn plan<'a>(
        migrations: &'a [(&'a str, &'a str)],
        applied: &[(String, Option<String>)],
    ) -> Result<Vec<Step<'a>>, LogError> {
        let mut steps = Vec::new();
        for (version, text) in migrations {
            let sum = checksum(text);
            match applied.iter().find(|(v, _)| v == version) {
                None => steps.push(Step::Apply {
                    version,
                    text,
                    checksum: sum,
                }),
                Some((_, None)) => steps.push(Step::RecordChecksum { version, checksum: sum }),
                Some((_, Some(recorded))) if *recorded == sum => {}
                Some((_, Some(recorded))) => {
                    return Err(LogError::Failed(format!(
                    "migration {version} was edited after it was applied (recorded checksum {recorded}, now {sum}): \
                         add a new migration instead"
                )))
                }
            }
        }
        Ok(steps)
    }
}

/// Statements only the Data API adapter runs (PostgreSQL): whole group commits as one JSON
/// parameter, and `IN (...)` lists of request ids (`:r0, :r1, ...`).
pub mod postgres {
    /// A whole group commit in one statement (PostgreSQL runs a statement atomically): the rows
    /// are one JSON array parameter; RETURNING names the rows inserted (or intents replaced) now.
    /// The conflict rule is the shared one ([`super::ON_CONFLICT`]); a request id may appear at
    /// most once per statement (PostgreSQL refuses an `ON CONFLICT DO UPDATE` that meets a row
    /// twice).
    pub static INSERT_ROWS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO api_requests (request_id, event_id, trace_id, received_at, method, path, \
             query, route, function_name, status, latency_ms, client_ip, user_agent, principal, request_bytes, \
             response_bytes, error_code, audit_batch, audit_key, audit_payload, intent, principal_kind, \
             principal_name, scopes, access) \
             SELECT r.request_id, r.event_id, r.trace_id, r.received_at, r.method, r.path, r.query, r.route, \
             r.function_name, r.status, r.latency_ms, r.client_ip, r.user_agent, r.principal, r.request_bytes, \
             r.response_bytes, r.error_code, r.audit_batch, NULL, r.audit_payload::json, r.intent, \
             r.principal_kind, r.principal_name, r.scopes, r.access \
             FROM json_to_recordset(:rows) AS r(request_id varchar, event_id uuid, trace_id varchar, \
             received_at timestamp, method varchar, path text, query text, route text, function_name text, \
             status smallint, latency_ms float8, client_ip varchar, user_agent text, principal text, \
             request_bytes bigint, response_bytes bigint, error_code varchar, audit_batch uuid, audit_payload text, \
             intent boolean, principal_kind varchar, principal_name text, scopes text, access varchar) {} \
             RETURNING request_id",
            super::ON_CONFLICT
        )
    });

    /// The event ids of these request ids (a conflicting insert: retry or clash).
    pub fn event_ids_in(list: &str) -> String {
        format!("SELECT request_id, event_id FROM api_requests WHERE request_id IN ({list})")
    }

    /// [`super::NOTE_REDRIVE_FAILURE`] for a list of request ids.
    pub fn note_redrive_failure_in(list: &str) -> String {
        format!(
            "UPDATE api_requests SET redrive_attempts = redrive_attempts + 1 WHERE audit_key IS NULL \
             AND request_id IN ({list})"
        )
    }
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
    fn the_splitter_knows_dollar_bodies_block_comments_and_doubled_quotes() {
        let text = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\
                    /* a; /* nested; */ still; */ CREATE TABLE t (x TEXT DEFAULT 'it''s; fine');\n\
                    DO $body$ BEGIN PERFORM 1; END $body$;\nSELECT $1;";
        assert_eq!(
            split_statements(text),
            vec![
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                "CREATE TABLE t (x TEXT DEFAULT 'it''s; fine')",
                "DO $body$ BEGIN PERFORM 1; END $body$",
                "SELECT $1",
            ]
        );
        let function = split_statements(POSTGRES_MIGRATIONS[3].1);
        assert!(function
            .last()
            .is_some_and(|s| s.starts_with("CREATE FUNCTION") && s.ends_with("$$")));
        for (_, m) in POSTGRES_MIGRATIONS.iter().chain(SQLITE_MIGRATIONS) {
            // A `;` survives only inside a dollar-quoted function body.
            assert!(
                split_statements(m).iter().all(|s| !s.contains(';') || s.contains("$$")),
                "{m}"
            );
        }
    }

    #[test]
    fn an_edited_migration_is_refused_and_old_ones_get_their_checksum() {
        use migrations::{checksum, plan, Step};
        let ms: &[(&str, &str)] = &[
            ("0001_a", "CREATE TABLE a (x INT)"),
            ("0002_b", "CREATE TABLE b (x INT)"),
        ];
        let steps = plan(ms, &[]).unwrap();
        assert_eq!(steps.len(), 2);
        assert!(matches!(steps[0], Step::Apply { version: "0001_a", .. }));
        let applied = vec![
            ("0001_a".to_string(), Some(checksum(ms[0].1))),
            ("0002_b".to_string(), None),
        ];
        assert_eq!(
            plan(ms, &applied).unwrap(),
            vec![Step::RecordChecksum {
                version: "0002_b",
                checksum: checksum(ms[1].1)
            }]
        );
        let edited: &[(&str, &str)] = &[("0001_a", "CREATE TABLE a (x BIGINT)")];
        let err = plan(edited, &applied).unwrap_err().to_string();
        assert!(err.contains("0001_a") && err.contains("edited"), "{err}");
        // A version only a newer build knows is left alone.
        let newer = vec![("0009_future".to_string(), Some("f".into()))];
        assert_eq!(plan(&ms[..1], &newer).unwrap().len(), 1);
        assert_eq!(checksum("").len(), 64);
    }

    #[test]
    fn migrations_split_into_single_statements() {
        let stmts = split_statements("CREATE TABLE a (x TEXT DEFAULT ';'); -- c;\nCREATE INDEX i ON a (x);\n");
        assert_eq!(
            stmts,
            vec!["CREATE TABLE a (x TEXT DEFAULT ';')", "CREATE INDEX i ON a (x)"]
        );
        assert_eq!(split_statements(POSTGRES_MIGRATIONS[0].1).len(), 3);
        assert_eq!(
            POSTGRES_MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>(),
            SQLITE_MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>(),
            "the engines' migrations are twins"
        );
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
