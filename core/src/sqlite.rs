//! Embedded `RequestLog`: SQLite in WAL mode with `synchronous=FULL`, so a committed
//! batch survives a crash or power loss before the response is released.

use crate::model::{InsertOutcome, NewRecord, PendingAudit, RecordQuery, RequestRecord, StoredRecord};
use crate::ports::{BoxFuture, LogError, RequestLog};
use crate::sql::{self, SqlValue};
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, ToSql};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Versioned migrations, applied in order and recorded in `schema_migrations`.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_api_requests",
    include_str!("../migrations/sqlite/0001_api_requests.sql"),
)];

/// How long a statement waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

/// The SQLite request log.
#[derive(Clone)]
pub struct SqliteRequestLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Owned(Value::Null),
            SqlValue::Text(t) => ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(t.as_bytes())),
            SqlValue::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            SqlValue::Real(r) => ToSqlOutput::Owned(Value::Real(*r)),
            SqlValue::Timestamp(t) => ToSqlOutput::Owned(Value::Text(crate::clock::format(*t))),
        })
    }
}

fn map_err(e: rusqlite::Error) -> LogError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen) => {
            LogError::Unavailable(e.to_string())
        }
        _ => LogError::Failed(e.to_string()),
    }
}

fn open(path: &Path) -> Result<Connection, LogError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    // WAL lets readers run beside the writer; FULL makes each commit durable (fsync of the WAL).
    conn.pragma_update(None, "journal_mode", "WAL").map_err(map_err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(map_err)?;
    Ok(conn)
}

impl SqliteRequestLog {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LogError> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LogError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let writer = open(&path)?;
        let log = Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        };
        log.migrate_blocking()?;
        Ok(log)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn migrate_blocking(&self) -> Result<Vec<String>, LogError> {
        let mut conn = self
            .inner
            .writer
            .lock()
            .map_err(|_| LogError::Failed("writer poisoned".into()))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map_err)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .map_err(map_err)?;
        let mut applied = Vec::new();
        for (version, sql_text) in MIGRATIONS {
            let done: Option<String> = tx
                .query_row(
                    "SELECT version FROM schema_migrations WHERE version = ?1",
                    [version],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            if done.is_none() {
                tx.execute_batch(sql_text).map_err(map_err)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    [*version, &crate::clock::format(crate::clock::now())],
                )
                .map_err(map_err)?;
                applied.push(version.to_string());
            }
        }
        tx.commit().map_err(map_err)?;
        Ok(applied)
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| LogError::Failed("writer poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| LogError::Failed(format!("writer task: {e}")))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open(&inner.path)?,
            };
            let out = f(&conn);
            if let Ok(mut readers) = inner.readers.lock() {
                if readers.len() < MAX_IDLE_READERS {
                    readers.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| LogError::Failed(format!("reader task: {e}")))?
    }
}

fn insert_params(row: &NewRecord) -> [(&'static str, SqlValue); 19] {
    let r = &row.record;
    [
        ("request_id", SqlValue::Text(r.request_id.clone())),
        ("event_id", SqlValue::Text(r.event_id.clone())),
        ("trace_id", r.trace_id.clone().into()),
        ("received_at", SqlValue::Timestamp(r.received_at)),
        ("method", SqlValue::Text(r.method.clone())),
        ("path", SqlValue::Text(r.path.clone())),
        ("query", r.query.clone().into()),
        ("route", r.route.clone().into()),
        ("function_name", r.function_name.clone().into()),
        ("status", SqlValue::Int(r.status.into())),
        ("latency_ms", SqlValue::Real(r.latency_ms)),
        ("client_ip", r.client_ip.clone().into()),
        ("user_agent", r.user_agent.clone().into()),
        ("principal", r.principal.clone().into()),
        ("request_bytes", SqlValue::Int(r.request_bytes as i64)),
        ("response_bytes", SqlValue::Int(r.response_bytes as i64)),
        ("error_code", r.error_code.clone().into()),
        ("audit_batch", SqlValue::Text(row.audit_batch.clone())),
        ("audit_payload", SqlValue::Text(row.audit_payload.clone())),
    ]
}

fn named<'a>(params: &'a [(&'static str, SqlValue)]) -> Vec<(String, &'a dyn ToSql)> {
    params.iter().map(|(n, v)| (format!(":{n}"), v as &dyn ToSql)).collect()
}

fn bind<'a>(params: &'a [(String, &'a dyn ToSql)]) -> Vec<(&'a str, &'a dyn ToSql)> {
    params.iter().map(|(n, v)| (n.as_str(), *v)).collect()
}

fn row_to_record(row: &Row<'_>) -> rusqlite::Result<StoredRecord> {
    let received: String = row.get(3)?;
    let received_at = crate::clock::parse_stored(&received).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, "bad received_at".into())
    })?;
    Ok(StoredRecord {
        record: RequestRecord {
            request_id: row.get(0)?,
            event_id: row.get(1)?,
            trace_id: row.get(2)?,
            received_at,
            method: row.get(4)?,
            path: row.get(5)?,
            query: row.get(6)?,
            route: row.get(7)?,
            function_name: row.get(8)?,
            status: row.get(9)?,
            latency_ms: row.get(10)?,
            client_ip: row.get(11)?,
            user_agent: row.get(12)?,
            principal: row.get(13)?,
            request_bytes: row.get::<_, i64>(14)? as u64,
            response_bytes: row.get::<_, i64>(15)? as u64,
            error_code: row.get(16)?,
        },
        audit_batch: row.get(17)?,
        audit_key: row.get(18)?,
        audit_payload: row.get(19)?,
    })
}

impl RequestLog for SqliteRequestLog {
    fn migrate(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.migrate_blocking())
                .await
                .map_err(|e| LogError::Failed(e.to_string()))?
        })
    }

    fn insert_batch<'a>(&'a self, rows: &'a [NewRecord]) -> BoxFuture<'a, Result<Vec<InsertOutcome>, LogError>> {
        let params: Vec<_> = rows.iter().map(insert_params).collect();
        Box::pin(self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let mut outcomes = Vec::with_capacity(params.len());
            {
                let mut insert = tx.prepare_cached(sql::INSERT).map_err(map_err)?;
                let mut event_of = tx.prepare_cached(sql::EVENT_ID_OF).map_err(map_err)?;
                for p in &params {
                    let n = named(p);
                    let changed = insert.execute(bind(&n).as_slice()).map_err(map_err)?;
                    if changed == 1 {
                        outcomes.push(InsertOutcome::Inserted);
                        continue;
                    }
                    let existing: Option<String> = event_of
                        .query_row(&[(":request_id", &p[0].1 as &dyn ToSql)][..], |r| r.get(0))
                        .optional()
                        .map_err(map_err)?;
                    let ours = match &p[1].1 {
                        SqlValue::Text(t) => Some(t.as_str()),
                        _ => None,
                    };
                    outcomes.push(if existing.as_deref() == ours {
                        InsertOutcome::AlreadyPresent
                    } else {
                        InsertOutcome::IdConflict
                    });
                }
            }
            tx.commit().map_err(map_err)?;
            Ok(outcomes)
        }))
    }

    fn mark_audited<'a>(&'a self, key: &'a str, request_ids: &'a [String]) -> BoxFuture<'a, Result<u64, LogError>> {
        let key = key.to_string();
        let ids = request_ids.to_vec();
        Box::pin(self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let mut changed = 0u64;
            {
                let mut stmt = tx.prepare_cached(sql::MARK_AUDITED).map_err(map_err)?;
                for id in &ids {
                    changed += stmt
                        .execute(&[(":audit_key", &key as &dyn ToSql), (":request_id", id as &dyn ToSql)][..])
                        .map_err(map_err)? as u64;
                }
            }
            tx.commit().map_err(map_err)?;
            Ok(changed)
        }))
    }

    fn pending_audits(
        &self,
        received_before: OffsetDateTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingAudit>, LogError>> {
        Box::pin(self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql::PENDING_AUDITS).map_err(map_err)?;
            let before = SqlValue::Timestamp(received_before);
            let limit = limit as i64;
            let rows = stmt
                .query_map(
                    &[(":before", &before as &dyn ToSql), (":limit", &limit as &dyn ToSql)][..],
                    |r| {
                        Ok(PendingAudit {
                            request_id: r.get(0)?,
                            audit_batch: r.get(1)?,
                            audit_payload: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        })
                    },
                )
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn get<'a>(&'a self, request_id: &'a str) -> BoxFuture<'a, Result<Option<StoredRecord>, LogError>> {
        let id = request_id.to_string();
        Box::pin(self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql::select_one()).map_err(map_err)?;
            stmt.query_row(&[(":request_id", &id as &dyn ToSql)][..], row_to_record)
                .optional()
                .map_err(map_err)
        }))
    }

    fn query<'a>(&'a self, query: &'a RecordQuery) -> BoxFuture<'a, Result<Vec<StoredRecord>, LogError>> {
        let (text, params) = sql::select_query(query);
        Box::pin(self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&text).map_err(map_err)?;
            let n = named(&params);
            let rows = stmt.query_map(bind(&n).as_slice(), row_to_record).map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }
}
