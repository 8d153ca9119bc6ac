//! The RDS Data API's REST-JSON operations over PostgreSQL.

use crate::metadata;
use crate::pgvalue::{self, Options, Raw};
use crate::sqltext::{self, SqlTextError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// Largest request the service accepts: 4 MiB, headers and JSON included.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest `records` response: 1 MiB.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Largest `formattedRecords` string: 10 MB.
pub const MAX_FORMATTED_BYTES: usize = 10 * 1000 * 1000;
/// Longest `sql` accepted, in characters. The API reference gives the `sql` member of
/// ExecuteStatement and of BatchExecuteStatement "Length Constraints: Minimum length of 0.
/// Maximum length of 65536."
/// (<https://docs.aws.amazon.com/rdsdataservice/latest/APIReference/API_ExecuteStatement.html>,
/// `API_BatchExecuteStatement.html`; the SDK models' `SqlStatement` shape, `"max": 65536`).
/// Smithy counts a string's length in Unicode scalar values: characters, not bytes.
pub const MAX_SQL_CHARS: usize = 65_536;
/// Transactions end (rolled back) after this long without a call.
pub const DEFAULT_TX_IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// What the stand-in connects to.
#[derive(Clone, Debug)]
pub struct Config {
    /// PostgreSQL host.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// PostgreSQL user.
    pub user: String,
    /// Database used when a call names none.
    pub default_database: String,
    /// Idle time after which a transaction is rolled back.
    pub tx_idle_timeout: Duration,
    /// Emulates an auto-paused Aurora Serverless v2 cluster: for this long after the first
    /// call, every call is answered `DatabaseResumingException` (zero: never paused).
    pub resume_delay: Duration,
}

/// An error answered the way the service answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Error type (`x-amzn-ErrorType`).
    pub kind: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
    fn validation(m: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", m)
    }
    fn database(m: impl Into<String>) -> Self {
        Self::new(400, "DatabaseErrorException", m)
    }
    fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, "BadRequestException", m)
    }
    fn unavailable(m: impl Into<String>) -> Self {
        Self::new(504, "DatabaseUnavailableException", m)
    }
    fn tx_not_found(id: &str) -> Self {
        Self::new(
            404,
            "TransactionNotFoundException",
            format!("Transaction {id} is not found"),
        )
    }
}

fn pg_error(e: &tokio_postgres::Error) -> ApiError {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("ERROR: {}", db.message());
            if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
                m.push_str(&format!("\n  Position: {p}"));
            }
            ApiError::database(format!("{m}; SQLState: {}", db.code().code()))
        }
        None if e.is_closed() => ApiError::unavailable("The database connection was closed"),
        None => ApiError::unavailable(format!("Communications link failure: {e}")),
    }
}

/// A parameter value, bound in binary with the type declared for it.
#[derive(Clone, Debug)]
enum Param {
    Null,
    Text(String),
    Long(i64),
    Double(f64),
    Bool(bool),
    Blob(Vec<u8>),
}

impl ToSql for Param {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => return Ok(IsNull::Yes),
            Param::Text(s) => out.extend_from_slice(s.as_bytes()),
            Param::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
            Param::Double(v) => out.extend_from_slice(&v.to_be_bytes()),
            Param::Bool(v) => out.extend_from_slice(&[u8::from(*v)]),
            Param::Blob(v) => out.extend_from_slice(v),
        }
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

impl Param {
    /// The type declared for the parameter. Strings are VARCHAR: like the real service, a
    /// string meets a uuid or timestamp column only through a `typeHint`.
    fn declared_type(&self) -> Type {
        match self {
            // oid 0: "unspecified", the server infers it.
            Param::Null => Type::new("unspecified".into(), 0, Kind::Simple, "pg_catalog".into()),
            Param::Text(_) => Type::VARCHAR,
            Param::Long(_) => Type::INT8,
            Param::Double(_) => Type::FLOAT8,
            Param::Bool(_) => Type::BOOL,
            Param::Blob(_) => Type::BYTEA,
        }
    }
}

struct Parsed {
    value: Param,
    hint: Option<&'static str>,
}

fn parse_param(p: &Value) -> Result<(String, Parsed), ApiError> {
    let name = p["name"]
        .as_str()
        .ok_or_else(|| ApiError::validation("Parameter name is required"))?
        .to_string();
    let value = p
        .get("value")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::validation(format!("Parameter {name} has no value")))?;
    if value.len() != 1 {
        return Err(ApiError::validation(format!(
            "Parameter {name}: exactly one Field member must be set"
        )));
    }
    let (kind, v) = value.iter().next().expect("one member");
    let bad = || ApiError::validation(format!("Parameter {name}: invalid {kind}"));
    let value = match kind.as_str() {
        "isNull" => Param::Null,
        "stringValue" => Param::Text(v.as_str().ok_or_else(bad)?.to_string()),
        "longValue" => Param::Long(v.as_i64().ok_or_else(bad)?),
        "doubleValue" => Param::Double(v.as_f64().ok_or_else(bad)?),
        "booleanValue" => Param::Bool(v.as_bool().ok_or_else(bad)?),
        "blobValue" => Param::Blob(STANDARD.decode(v.as_str().ok_or_else(bad)?).map_err(|_| bad())?),
        "arrayValue" => return Err(ApiError::validation("Array parameters are not supported.")),
        other => {
            return Err(ApiError::validation(format!(
                "Parameter {name}: unknown Field member {other}"
            )))
        }
    };
    let hint = match p.get("typeHint").and_then(Value::as_str) {
        None => None,
        Some(h) => {
            let cast = match h {
                "DATE" => "date",
                "DECIMAL" => "numeric",
                "JSON" => "json",
                "TIME" => "time",
                "TIMESTAMP" => "timestamp",
                "UUID" => "uuid",
                other => {
                    return Err(ApiError::validation(format!(
                        "Parameter {name}: invalid typeHint {other}"
                    )))
                }
            };
            if !matches!(value, Param::Text(_)) {
                return Err(ApiError::validation(format!(
                    "Parameter {name}: typeHint {h} needs a stringValue"
                )));
            }
            Some(cast)
        }
    };
    Ok((name, Parsed { value, hint }))
}

struct Prepared {
    sql: String,
    names: Vec<String>,
}

fn prepare_text(sql: &str, params: &HashMap<String, Parsed>) -> Result<Prepared, ApiError> {
    let t = sqltext::translate(sql, |n| params.get(n).and_then(|p| p.hint)).map_err(|e| match e {
        // "Multi-statements are not supported in the Data API for Aurora Serverless v2 and
        // provisioned clusters. Attempting to execute multiple statements in a single API call
        // results in this error." (Troubleshooting Amazon RDS Data API,
        // https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api.troubleshooting.html)
        // and "Attempting to execute multiple statements in a single API call returns “An error
        // occurred (ValidationException) when calling the ExecuteStatement operation:
        // Multistatements aren't supported.”" (Comparing Amazon RDS Data API behaviors,
        // https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api.differences.html).
        // "A single API call": BatchExecuteStatement's one statement too. The same page's
        // separate calls end in `;` (`--sql "SELECT * FROM your_table;"`): a trailing `;` is
        // one statement.
        SqlTextError::MultipleStatements => ApiError::validation(e.to_string()),
        SqlTextError::Unterminated(_) => ApiError::database(format!("ERROR: syntax error: {e}; SQLState: 42601")),
    })?;
    for n in &t.names {
        if !params.contains_key(n) {
            return Err(ApiError::database(format!(
                "ERROR: No value specified for parameter: {n}; SQLState: 42P02"
            )));
        }
    }
    Ok(Prepared {
        sql: t.sql,
        names: t.names,
    })
}

fn param_map(list: Option<&Value>) -> Result<HashMap<String, Parsed>, ApiError> {
    let mut out = HashMap::new();
    if let Some(list) = list {
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::validation("parameters must be a list"))?;
        for p in list {
            let (name, parsed) = parse_param(p)?;
            out.insert(name, parsed);
        }
    }
    Ok(out)
}

struct Tx {
    database: String,
    client: tokio::sync::Mutex<Option<Client>>,
    last_used: Mutex<Instant>,
}

/// Calls served per operation (for the benchmark's calls-per-request figures).
#[derive(Default)]
pub struct Counters {
    /// ExecuteStatement calls.
    pub execute: AtomicU64,
    /// BatchExecuteStatement calls.
    pub batch_execute: AtomicU64,
    /// BeginTransaction calls.
    pub begin: AtomicU64,
    /// CommitTransaction calls.
    pub commit: AtomicU64,
    /// RollbackTransaction calls.
    pub rollback: AtomicU64,
    /// ExecuteStatement and BatchExecuteStatement calls by statement (its text with runs of
    /// whitespace made one space), so that a benchmark can tell what the calls were for.
    pub statements: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counters {
    /// Counts one call of `sql`.
    fn statement(&self, sql: &str) {
        let key = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Ok(mut m) = self.statements.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }
}

/// The service.
pub struct DataApi {
    cfg: Config,
    pools: Mutex<HashMap<String, Vec<Client>>>,
    txs: Mutex<HashMap<String, Arc<Tx>>>,
    /// When the emulated resume ends (set by the first call).
    resumed_at: Mutex<Option<Instant>>,
    /// Calls served.
    pub counters: Counters,
}

fn required<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::validation(format!("{field} is required")))
}

/// The call's `sql`, within the model's length constraint. Constraint violations are the
/// common `ValidationException` ("The input fails to satisfy the constraints specified by an
/// AWS service.", HTTP 400, the API reference's Common Errors), worded as AWS services word
/// a `@length` violation.
fn statement_sql(body: &Value) -> Result<String, ApiError> {
    let sql = required(body, "sql")?;
    if sql.chars().count() > MAX_SQL_CHARS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'sql' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_SQL_CHARS}"
        )));
    }
    Ok(sql.to_string())
}

/// The first column label that occurs twice, if any.
fn duplicate_label(columns: &[tokio_postgres::Column]) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    columns.iter().map(|c| c.name()).find(|&n| !seen.insert(n))
}

impl DataApi {
    /// A service over the configured PostgreSQL server.
    pub fn new(cfg: Config) -> Arc<Self> {
        let api = Arc::new(Self {
            cfg,
            pools: Mutex::new(HashMap::new()),
            txs: Mutex::new(HashMap::new()),
            resumed_at: Mutex::new(None),
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&api);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(api) = weak.upgrade() else { return };
                api.expire_transactions();
            }
        });
        api
    }

    fn expire_transactions(&self) {
        let limit = self.cfg.tx_idle_timeout;
        let mut txs = self.txs.lock().expect("txs");
        txs.retain(|id, tx| {
            let idle = tx.last_used.lock().map(|t| t.elapsed()).unwrap_or_default();
            let busy = tx.client.try_lock().is_err();
            let keep = busy || idle < limit;
            if !keep {
                tracing::info!(transaction_id = %id, "transaction expired; rolled back");
            }
            keep
        });
    }

    async fn connect(&self, database: &str) -> Result<Client, ApiError> {
        if let Some(c) = self.pools.lock().expect("pools").get_mut(database).and_then(Vec::pop) {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.cfg.host)
            .port(self.cfg.port)
            .user(&self.cfg.user)
            .dbname(database);
        let (client, conn) = cfg.connect(NoTls).await.map_err(|e| match e.as_db_error() {
            Some(db) if db.code().code() == "3D000" => {
                ApiError::new(404, "DatabaseNotFoundException", db.message().to_string())
            }
            _ => ApiError::unavailable(format!("Communications link failure: {e}")),
        })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    fn release(&self, database: &str, client: Client) {
        if !client.is_closed() {
            let mut pools = self.pools.lock().expect("pools");
            let pool = pools.entry(database.to_string()).or_default();
            if pool.len() < 16 {
                pool.push(client);
            }
        }
    }

    fn database(&self, body: &Value) -> String {
        body.get("database")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.cfg.default_database)
            .to_string()
    }

    fn transaction(&self, id: &str) -> Result<Arc<Tx>, ApiError> {
        let tx = self
            .txs
            .lock()
            .expect("txs")
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::tx_not_found(id))?;
        if let Ok(mut t) = tx.last_used.lock() {
            *t = Instant::now();
        }
        Ok(tx)
    }

    fn common(&self, body: &Value) -> Result<(), ApiError> {
        if !self.cfg.resume_delay.is_zero() {
            let mut at = self.resumed_at.lock().expect("resume state");
            let until = *at.get_or_insert_with(|| Instant::now() + self.cfg.resume_delay);
            if Instant::now() < until {
                return Err(ApiError::new(
                    400,
                    "DatabaseResumingException",
                    "The database is resuming after being auto-paused. Please wait a few seconds and try again.",
                ));
            }
        }
        required(body, "resourceArn")?;
        required(body, "secretArn")?;
        if body
            .get("schema")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::validation("The schema parameter isn't supported."));
        }
        Ok(())
    }

    /// Runs `f` on the transaction's connection, or on a pooled one.
    async fn with_client<T>(
        &self,
        body: &Value,
        f: impl for<'c> FnOnce(
            &'c Client,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ApiError>> + Send + 'c>>,
    ) -> Result<T, ApiError> {
        match body
            .get("transactionId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(id) => {
                let tx = self.transaction(id)?;
                let guard = tx
                    .client
                    .try_lock()
                    .map_err(|_| ApiError::database("Transaction is still running a query"))?;
                let client = guard.as_ref().ok_or_else(|| ApiError::tx_not_found(id))?;
                let out = f(client).await;
                if let Ok(mut t) = tx.last_used.lock() {
                    *t = Instant::now();
                }
                out
            }
            None => {
                let database = self.database(body);
                let client = self.connect(&database).await?;
                let out = f(&client).await;
                self.release(&database, client);
                out
            }
        }
    }

    /// `POST /Execute`.
    pub async fn execute(&self, body: Value) -> Result<Value, ApiError> {
        self.counters.execute.fetch_add(1, Ordering::Relaxed);
        let sql = statement_sql(&body)?;
        self.counters.statement(&sql);
        self.common(&body)?;
        let params = param_map(body.get("parameters"))?;
        let prepared = prepare_text(&sql, &params)?;
        let values: Vec<Param> = prepared.names.iter().map(|n| params[n].value.clone()).collect();
        let types: Vec<Type> = values.iter().map(Param::declared_type).collect();
        let opts = body.get("resultSetOptions");
        let options = Options {
            decimal_as_number: opts.and_then(|o| o["decimalReturnType"].as_str()) == Some("DOUBLE_OR_LONG"),
            long_as_string: opts.and_then(|o| o["longReturnType"].as_str()) == Some("STRING"),
        };
        let as_json = match body.get("formatRecordsAs").and_then(Value::as_str) {
            None | Some("NONE") => false,
            Some("JSON") => true,
            Some(other) => return Err(ApiError::validation(format!("invalid formatRecordsAs {other}"))),
        };
        let include_metadata = body
            .get("includeResultMetadata")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let is_query = sqltext::is_query(&sql);
        self.with_client(&body, move |client| {
            Box::pin(async move {
                let stmt = client
                    .prepare_typed(&prepared.sql, &types)
                    .await
                    .map_err(|e| pg_error(&e))?;
                let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                if stmt.columns().is_empty() {
                    let n = client.execute(&stmt, &refs).await.map_err(|e| pg_error(&e))?;
                    return Ok(json!({ "numberOfRecordsUpdated": n, "generatedFields": [] }));
                }
                let rows = client.query(&stmt, &refs).await.map_err(|e| pg_error(&e))?;
                let columns = stmt.columns();
                if as_json {
                    // "Although with SQL you can use column aliases to produce a result set
                    // having more than one column with the same name, duplicate key names
                    // aren't allowed in JSON. The RDS Data API returns an error if you request
                    // the result set in JSON format and more than one column has the same
                    // name." (Processing Amazon RDS Data API query results in JSON format,
                    // Troubleshooting,
                    // https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api-json.html).
                    // The page names no type for this error; the one it names for JSON
                    // results (over 10 MB) is BadRequestException. The message is ours.
                    if let Some(label) = duplicate_label(columns) {
                        return Err(ApiError::bad_request(format!(
                            "The result set has more than one column named {label}; \
                             column labels must be unique when formatRecordsAs is JSON"
                        )));
                    }
                }
                let mut records = Vec::with_capacity(rows.len());
                let mut formatted = Vec::with_capacity(rows.len());
                for row in &rows {
                    let mut fields = Vec::with_capacity(columns.len());
                    let mut object = Map::new();
                    for (i, col) in columns.iter().enumerate() {
                        let raw: Raw = row.try_get(i).map_err(|e| pg_error(&e))?;
                        let (field, value) = pgvalue::decode(col.type_(), &raw, options).map_err(|u| {
                            ApiError::new(
                                400,
                                "UnsupportedResultException",
                                format!("The result contains the unsupported data type {}.", u.0),
                            )
                        })?;
                        fields.push(field);
                        object.insert(col.name().to_string(), value);
                    }
                    records.push(Value::Array(fields));
                    formatted.push(Value::Object(object));
                }
                let updated = if is_query { 0 } else { rows.len() as u64 };
                let mut out = json!({ "numberOfRecordsUpdated": updated, "generatedFields": [] });
                if as_json {
                    let text = serde_json::to_string(&formatted).unwrap_or_default();
                    if text.len() > MAX_FORMATTED_BYTES {
                        return Err(ApiError::database(
                            "Database returned more than the allowed response size limit",
                        ));
                    }
                    out["formattedRecords"] = Value::String(text);
                } else {
                    out["records"] = Value::Array(records);
                    if include_metadata {
                        let described = metadata::describe_all(client, columns)
                            .await
                            .map_err(|e| pg_error(&e))?;
                        out["columnMetadata"] = Value::Array(described);
                    }
                    if serde_json::to_vec(&out).map(|v| v.len()).unwrap_or(0) > MAX_RESPONSE_BYTES {
                        return Err(ApiError::database(
                            "Database returned more than the allowed response size limit",
                        ));
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    /// `POST /BatchExecute`.
    pub async fn batch_execute(&self, body: Value) -> Result<Value, ApiError> {
        self.counters.batch_execute.fetch_add(1, Ordering::Relaxed);
        let sql = statement_sql(&body)?;
        self.counters.statement(&sql);
        self.common(&body)?;
        let sets: Vec<HashMap<String, Parsed>> = match body.get("parameterSets") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .ok_or_else(|| ApiError::validation("parameterSets must be a list"))?
                .iter()
                .map(|s| param_map(Some(s)))
                .collect::<Result<_, _>>()?,
        };
        let empty = HashMap::new();
        let prepared = prepare_text(&sql, sets.first().unwrap_or(&empty))?;
        let mut rows: Vec<Vec<Param>> = Vec::with_capacity(sets.len());
        for set in &sets {
            let mut values = Vec::with_capacity(prepared.names.len());
            for n in &prepared.names {
                let p = set.get(n).ok_or_else(|| {
                    ApiError::database(format!("ERROR: No value specified for parameter: {n}; SQLState: 42P02"))
                })?;
                values.push(p.value.clone());
            }
            rows.push(values);
        }
        let types: Vec<Type> = rows
            .first()
            .map(|r| r.iter().map(Param::declared_type).collect())
            .unwrap_or_default();
        let in_tx = body
            .get("transactionId")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        let count = rows.len();
        self.with_client(&body, move |client| {
            Box::pin(async move {
                // Outside a transaction the batch commits as a whole (autocommit of one call).
                if !in_tx {
                    client.batch_execute("BEGIN").await.map_err(|e| pg_error(&e))?;
                }
                let run = async {
                    let stmt = client.prepare_typed(&prepared.sql, &types).await?;
                    for values in &rows {
                        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                        client.execute(&stmt, &refs).await?;
                    }
                    Ok::<(), tokio_postgres::Error>(())
                }
                .await;
                match run {
                    Ok(()) => {
                        if !in_tx {
                            client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e))?;
                        }
                    }
                    Err(e) => {
                        if !in_tx {
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                        return Err(pg_error(&e));
                    }
                }
                let results: Vec<Value> = (0..count).map(|_| json!({ "generatedFields": [] })).collect();
                Ok(json!({ "updateResults": results }))
            })
        })
        .await
    }

    /// `POST /BeginTransaction`.
    pub async fn begin(&self, body: Value) -> Result<Value, ApiError> {
        self.counters.begin.fetch_add(1, Ordering::Relaxed);
        self.common(&body)?;
        let database = self.database(&body);
        let client = self.connect(&database).await?;
        client.batch_execute("BEGIN").await.map_err(|e| pg_error(&e))?;
        let id = STANDARD.encode(
            [
                uuid::Uuid::new_v4().as_bytes().as_slice(),
                uuid::Uuid::new_v4().as_bytes(),
            ]
            .concat(),
        );
        self.txs.lock().expect("txs").insert(
            id.clone(),
            Arc::new(Tx {
                database,
                client: tokio::sync::Mutex::new(Some(client)),
                last_used: Mutex::new(Instant::now()),
            }),
        );
        Ok(json!({ "transactionId": id }))
    }

    async fn end(&self, body: Value, commit: bool) -> Result<Value, ApiError> {
        required(&body, "resourceArn")?;
        required(&body, "secretArn")?;
        let id = required(&body, "transactionId")?.to_string();
        let tx = self.transaction(&id)?;
        let mut guard = tx
            .client
            .try_lock()
            .map_err(|_| ApiError::database("Transaction is still running a query"))?;
        let client = guard.take().ok_or_else(|| ApiError::tx_not_found(&id))?;
        self.txs.lock().expect("txs").remove(&id);
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        client.batch_execute(sql).await.map_err(|e| pg_error(&e))?;
        self.release(&tx.database, client);
        Ok(if commit {
            json!({ "transactionStatus": "Transaction Committed" })
        } else {
            json!({ "transactionStatus": "Rollback Complete" })
        })
    }

    /// `POST /CommitTransaction`.
    pub async fn commit(&self, body: Value) -> Result<Value, ApiError> {
        self.counters.commit.fetch_add(1, Ordering::Relaxed);
        self.end(body, true).await
    }

    /// `POST /RollbackTransaction`.
    pub async fn rollback(&self, body: Value) -> Result<Value, ApiError> {
        self.counters.rollback.fetch_add(1, Ordering::Relaxed);
        self.end(body, false).await
    }

    /// Calls served so far.
    pub fn stats(&self) -> Value {
        let c = &self.counters;
        json!({
            "ExecuteStatement": c.execute.load(Ordering::Relaxed),
            "BatchExecuteStatement": c.batch_execute.load(Ordering::Relaxed),
            "BeginTransaction": c.begin.load(Ordering::Relaxed),
            "CommitTransaction": c.commit.load(Ordering::Relaxed),
            "RollbackTransaction": c.rollback.load(Ordering::Relaxed),
        })
    }

    /// ExecuteStatement and BatchExecuteStatement calls served so far, by statement text
    /// (whitespace runs made one space).
    pub fn statement_stats(&self) -> Value {
        self.counters
            .statements
            .lock()
            .map(|m| json!(*m))
            .unwrap_or(Value::Null)
    }

    /// Routes one HTTP request: `(status, error type, body)`.
    pub async fn handle(&self, method: &http::Method, path: &str, body: Bytes) -> (u16, Option<&'static str>, Value) {
        if method == http::Method::GET && path == "/_dataapi-local/stats" {
            return (200, None, self.stats());
        }
        if method == http::Method::GET && path == "/_dataapi-local/stats/statements" {
            return (200, None, self.statement_stats());
        }
        if method != http::Method::POST {
            return (
                404,
                Some("UnknownOperationException"),
                json!({ "message": "Unknown operation" }),
            );
        }
        if body.len() > MAX_REQUEST_BYTES {
            let e = ApiError::new(400, "BadRequestException", "Request size exceeded the 4 MiB limit");
            return (e.status, Some(e.kind), json!({ "message": e.message }));
        }
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let e = ApiError::validation("The request body is not a JSON object");
                return (e.status, Some(e.kind), json!({ "message": e.message }));
            }
        };
        let result = match path {
            "/Execute" => self.execute(parsed).await,
            "/BatchExecute" => self.batch_execute(parsed).await,
            "/BeginTransaction" => self.begin(parsed).await,
            "/CommitTransaction" => self.commit(parsed).await,
            "/RollbackTransaction" => self.rollback(parsed).await,
            _ => Err(ApiError::new(404, "UnknownOperationException", "Unknown operation")),
        };
        match result {
            Ok(v) => (200, None, v),
            Err(e) => (e.status, Some(e.kind), json!({ "message": e.message })),
        }
    }
}
