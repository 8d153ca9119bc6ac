//! Test harness: an ingress in-process or as the real binary, a small HTTP client, and
//! counters over what was stored.
#![allow(dead_code)]

pub mod aws;
pub mod blocks;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tollgate_core::backends::{Backends, StorageSettings};
use tollgate_core::local::{LocalFunction, LocalInvoker};
use tollgate_core::model::{InsertOutcome, NewRecord, PendingAudit, RecordQuery, StoredRecord};
use tollgate_core::ports::{BoxFuture, InvokeError, LogError, ObjectStore, RequestLog};
use tollgate_embedded::{DB_FILE, OBJECTS_DIR};
use tollgate_ingress::app::{self, Running};
use tollgate_ingress::config::IngressConfig;
use tollgate_ingress::routes::RouteTable;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tollgate-test-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The route the tests add to the shipped table: a `fault` function that misbehaves on request.
pub const FAULT_ROUTE: &str = r#"
[[routes]]
path = "/v1/fault/{kind}"
methods = ["GET", "POST"]
function = "fault"
timeout_ms = 300
auth = "none"
"#;

/// A write-ahead route the tests add: echo, with a durable intent before each invocation.
pub const WRITE_AHEAD_ROUTE: &str = r#"
[[routes]]
path = "/v1/wa/{*rest}"
methods = ["POST"]
function = "echo"
timeout_ms = 10000
record = "before"
auth = "none"
"#;

/// A rate-limited route the tests add: echo, 5 requests a second per caller, bursts of 10.
pub const LIMITED_ROUTE: &str = r#"
[[routes]]
path = "/v1/limited/{*rest}"
methods = ["GET"]
function = "echo"
timeout_ms = 10000
auth = "none"
rate = "5/s"
burst = 10
"#;

/// A route the tests add whose every answer carries a receipt: echo, `receipt = true`.
pub const RECEIPT_ROUTE: &str = r#"
[[routes]]
path = "/v1/receipted/{*rest}"
methods = ["GET", "POST"]
function = "echo"
timeout_ms = 10000
auth = "none"
receipt = true
"#;

/// The shipped routes plus the fault route, the write-ahead route, the rate-limited route and
/// the receipt route.
pub fn test_routes() -> String {
    format!(
        "{}\n{FAULT_ROUTE}\n{WRITE_AHEAD_ROUTE}\n{LIMITED_ROUTE}\n{RECEIPT_ROUTE}",
        include_str!("../../../routes.toml")
    )
}

/// A function that fails in the way its path names: error, panic, garbage, badstatus, sleep.
pub fn fault_function() -> Arc<dyn LocalFunction> {
    Arc::new(|payload: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
        Box::pin(async move {
            let event: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            let path = event["path"].as_str().unwrap_or_default().to_string();
            match path.rsplit('/').next().unwrap_or_default() {
                "error" => Err(InvokeError::Function {
                    error_type: "Boom".into(),
                    message: "internal detail that must not leak".into(),
                }),
                "panic" => panic!("fault function panics on purpose"),
                "garbage" => Ok(Bytes::from_static(b"<html>not json</html>")),
                "badstatus" => Ok(Bytes::from_static(br#"{"statusCode":42,"body":"x"}"#)),
                "sleep" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(Bytes::from_static(br#"{"statusCode":200}"#))
                }
                _ => Ok(Bytes::from_static(br#"{"statusCode":200,"body":"fine"}"#)),
            }
        })
    })
}

/// A new `requests:read` key in these backends: its token.
pub async fn admin_token(backends: &Backends) -> String {
    tollgate_ingress::ops::create_key(&*backends.keys, "tests", &["requests:read".to_string()], None)
        .await
        .unwrap()
        .token
}

/// An in-process ingress over a temporary data dir.
pub struct InProcess {
    pub addr: SocketAddr,
    /// A `requests:read` API key (`Authorization: Bearer <token>`).
    pub token: String,
    pub backends: Backends,
    pub running: Option<Running>,
    pub dir: TempDir,
}

pub fn config_for(data_dir: &Path, extra: &[(&str, &str)]) -> IngressConfig {
    let mut env: Vec<(String, String)> = vec![
        ("TOLLGATE_LISTEN".into(), "127.0.0.1:0".into()),
        ("TOLLGATE_DATA_DIR".into(), data_dir.display().to_string()),
        ("TOLLGATE_TRUSTED_PROXIES".into(), "0".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    IngressConfig::from_sources(env, Vec::new()).expect("test config").0
}

impl InProcess {
    /// Starts with the embedded functions plus `fault`; `wrap` may replace any function.
    pub async fn start(
        extra: &[(&str, &str)],
        wrap: impl FnOnce(&mut HashMap<String, Arc<dyn LocalFunction>>),
    ) -> Self {
        let dir = TempDir::new("inproc");
        let config = config_for(&dir.0, extra);
        let backends = tollgate_embedded::open(&StorageSettings {
            mode: tollgate_core::backends::Mode::Embedded,
            data_dir: dir.0.clone(),
            log_origin: None,
        })
        .unwrap();
        let mut functions = app::embedded_functions(&backends);
        functions.insert("fault".into(), fault_function());
        wrap(&mut functions);
        let routes = RouteTable::parse(&test_routes()).unwrap();
        let token = admin_token(&backends).await;
        let running = app::start_with_receipts(
            config,
            routes,
            backends.log.clone(),
            backends.keys.clone(),
            Arc::new(LocalInvoker::new(functions)),
            backends.log_signer.clone(),
        )
        .await
        .unwrap();
        register_token(running.local_addr, token.clone());
        Self {
            addr: running.local_addr,
            token,
            backends,
            running: Some(running),
            dir,
        }
    }

    /// SIGTERM-equivalent: drain, flush, stop.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            tokio::time::timeout(Duration::from_secs(30), r.wait())
                .await
                .expect("ingress stops");
        }
    }
}

/// The real `tollgate` binary, with its stdout and stderr captured line by line.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

/// The workspace root (where `routes.toml` is).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

impl Proc {
    /// Starts the binary in `cwd` with `env`, on a free port, and waits until it is ready.
    pub fn spawn(cwd: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(binary());
        cmd.current_dir(cwd)
            .env_remove("RUST_LOG")
            .env("TOLLGATE_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start tollgate");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("tollgate ready") {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                        if let Some(addr) = v["listen"].as_str() {
                            let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                        }
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("tollgate did not become ready: {:?}", lines.lock().unwrap());
            }
        };
        // Its request log is read with a key: the embedded first start wrote one; in aws mode
        // one is made through the CLI over the same stores.
        let env_of = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        let token = if env_of("TOLLGATE_MODE").as_deref() == Some("aws") {
            let mut cmd = Command::new(binary());
            cmd.current_dir(cwd)
                .args(["keys", "create", "--name", "tests", "--scopes", "requests:read"]);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let out = cmd.output().expect("tollgate keys create");
            assert!(
                out.status.success(),
                "keys create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            let dir = env_of("TOLLGATE_DATA_DIR").map_or_else(|| cwd.join(".tollgate"), |d| cwd.join(d));
            std::fs::read_to_string(dir.join("admin-key"))
                .ok()
                .map(|t| t.trim().to_string())
        };
        if let Some(t) = token {
            register_token(addr, t);
        }
        Self { child, addr, lines }
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit; returns the exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("tollgate did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn request_id(&self) -> String {
        self.headers
            .get("x-request-id")
            .expect("every response has x-request-id")
            .to_str()
            .unwrap()
            .to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the RFC 9457 problem (its media type and shape) and that it carries the header's
    /// request id.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some(tollgate_core::apierror::PROBLEM_JSON)
        );
        if tollgate_core::apierror::ErrorCode::from_code(code).is_some_and(|c| c.is_retryable()) {
            assert!(self.headers.contains_key("retry-after"), "{code} without Retry-After");
        }
        tollgate_testkit::assert_problem(&self.json(), status, code, &self.request_id());
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    anonymous: bool,
}

/// The `requests:read` key of each running ingress under test, by address: requests to
/// `/v1/requests*` carry it unless they bring their own credential or the client is anonymous.
static TOKENS: std::sync::LazyLock<Mutex<HashMap<SocketAddr, String>>> = std::sync::LazyLock::new(Default::default);

/// Registers the key requests to `addr` read the request log with.
pub fn register_token(addr: SocketAddr, token: String) {
    TOKENS.lock().unwrap().insert(addr, token);
}

/// The key registered for `addr`.
pub fn token_for(addr: SocketAddr) -> Option<String> {
    TOKENS.lock().unwrap().get(&addr).cloned()
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Self {
            sender,
            addr,
            anonymous: false,
        }
    }

    /// A client that never adds the registered key (the access tests).
    pub async fn anonymous(addr: SocketAddr) -> Self {
        Self {
            anonymous: true,
            ..Self::connect(addr).await
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, hyper::Error> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let own_credential = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("x-api-key"));
        if !self.anonymous && !own_credential && path.starts_with("/v1/requests") {
            if let Some(t) = token_for(self.addr) {
                b = b.header("authorization", format!("Bearer {t}"));
            }
        }
        let req = b.body(Full::new(body.into())).unwrap();
        // A hung server must fail the test, not hang it.
        let exchange = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} {path} within 60 s"))?;
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// One request on a fresh connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    Client::connect(addr)
        .await
        .send(method, path, headers, body.to_string())
        .await
        .expect("request")
}

/// `per_connection` echo requests on each of `connections` keep-alive connections at once, to
/// `{prefix}/{connection}/{i}`; every one must be answered 200. Their request ids.
pub async fn echo_burst(addr: SocketAddr, prefix: &str, connections: usize, per_connection: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut ids = Vec::new();
            for i in 0..per_connection {
                let r = client
                    .send("POST", &format!("{prefix}/{c}/{i}"), &[], format!("{c} {i}"))
                    .await
                    .expect("answered");
                assert_eq!(r.status, 200, "{:?}", r.body);
                ids.push(r.request_id());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

/// Rows per request id, read straight from the SQLite file.
pub fn rows_by_id(data_dir: &Path) -> BTreeMap<String, (u16, Option<String>)> {
    let conn = rusqlite::Connection::open(data_dir.join(DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare("SELECT request_id, status, audit_key FROM api_requests")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, u16>(1)?, r.get::<_, Option<String>>(2)?),
            ))
        })
        .unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let (id, v) = row.unwrap();
        assert!(out.insert(id.clone(), v).is_none(), "request id {id} twice");
    }
    out
}

/// How many times each request id appears across all audit objects.
pub async fn audit_counts(store: &dyn ObjectStore) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in store.list("audit/v1/").await.unwrap() {
        let object = store.get(&key).await.unwrap().unwrap();
        for line in tollgate_core::audit::decode(&object).unwrap() {
            let id = tollgate_core::audit::event_request_id(&line).unwrap();
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

/// The audit objects of a data dir.
pub fn dir_store(data_dir: &Path) -> tollgate_embedded::dirstore::DirObjectStore {
    tollgate_embedded::dirstore::DirObjectStore::open(data_dir.join(OBJECTS_DIR)).unwrap()
}

/// Polls `check` until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Asserts every answered id has exactly one row and exactly one audit event, and that
/// nothing else was stored.
pub async fn assert_exactly_once(data_dir: &Path, answered: &[String]) {
    let rows = rows_by_id(data_dir);
    let audits = audit_counts(&dir_store(data_dir)).await;
    let mut missing_rows = 0;
    let mut missing_audits = 0;
    for id in answered {
        if !rows.contains_key(id) {
            missing_rows += 1;
        }
        match audits.get(id) {
            None => missing_audits += 1,
            Some(1) => {}
            Some(n) => panic!("request {id} has {n} audit events"),
        }
    }
    assert_eq!(missing_rows, 0, "answered requests without a row");
    assert_eq!(missing_audits, 0, "answered requests without an audit event");
    assert_eq!(rows.len(), answered.len(), "rows for requests nobody saw answered");
    assert_eq!(
        audits.len(),
        answered.len(),
        "audit events for requests nobody saw answered"
    );
    assert!(rows.values().all(|(_, key)| key.is_some()), "rows left unaudited");
}

/// Sends raw bytes, then reads until the server closes or `wait` passes.
pub async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Status, x-request-id and JSON body of a raw response.
pub fn parse_raw(text: &str) -> (u16, String, serde_json::Value) {
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no x-request-id in {text:?}"))
        .trim()
        .to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        id,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:?}")),
    )
}

/// The embedded request log with its inserts failing while `down` is set.
pub struct FlakyLog {
    pub inner: Arc<dyn RequestLog>,
    pub down: std::sync::atomic::AtomicBool,
}

impl RequestLog for FlakyLog {
    fn migrate(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        self.inner.migrate()
    }
    fn insert_batch<'a>(&'a self, rows: &'a [NewRecord]) -> BoxFuture<'a, Result<Vec<InsertOutcome>, LogError>> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(LogError::Unavailable("injected outage".into())) });
        }
        self.inner.insert_batch(rows)
    }
    fn mark_audited<'a>(
        &'a self,
        key: &'a str,
        ids: &'a [tollgate_core::model::AuditedEvent],
    ) -> BoxFuture<'a, Result<u64, LogError>> {
        self.inner.mark_audited(key, ids)
    }
    fn pending_audits(
        &self,
        before: time::OffsetDateTime,
        max_attempts: u32,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<PendingAudit>, LogError>> {
        self.inner.pending_audits(before, max_attempts, limit)
    }
    fn note_redrive_failure<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64, LogError>> {
        self.inner.note_redrive_failure(ids)
    }
    fn count_set_aside(&self, max_attempts: u32) -> BoxFuture<'_, Result<u64, LogError>> {
        self.inner.count_set_aside(max_attempts)
    }
    fn finalize_intents(
        &self,
        before: time::OffsetDateTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        self.inner.finalize_intents(before, limit)
    }
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<StoredRecord>, LogError>> {
        self.inner.get(id)
    }
    fn query<'a>(&'a self, q: &'a RecordQuery) -> BoxFuture<'a, Result<Vec<StoredRecord>, LogError>> {
        self.inner.query(q)
    }
}

/// Wraps `echo` so that every invocation is recorded by the request id it carries.
pub fn echo_counted_by_id(functions: &mut HashMap<String, Arc<dyn LocalFunction>>, seen: Arc<Mutex<Vec<String>>>) {
    let inner = functions["echo"].clone();
    let f = move |payload: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
        let event: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let id = event["multiValueHeaders"]["x-request-id"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        seen.lock().unwrap().push(id);
        inner.call(payload)
    };
    functions.insert("echo".into(), Arc::new(f));
}

/// An in-process ingress whose request log can be switched down ([`FlakyLog`]) and whose
/// `echo` invocations are recorded by request id (plus the `fault` function).
pub struct Faulty {
    pub running: Running,
    pub flaky: Arc<FlakyLog>,
    pub executed: Arc<Mutex<Vec<String>>>,
}

impl Faulty {
    pub async fn start(data_dir: &Path, extra: &[(&str, &str)]) -> Self {
        let backends = tollgate_embedded::open(&StorageSettings {
            mode: tollgate_core::backends::Mode::Embedded,
            data_dir: data_dir.to_path_buf(),
            log_origin: None,
        })
        .unwrap();
        let executed: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut functions = app::embedded_functions(&backends);
        functions.insert("fault".into(), fault_function());
        echo_counted_by_id(&mut functions, executed.clone());
        let flaky = Arc::new(FlakyLog {
            inner: backends.log.clone(),
            down: std::sync::atomic::AtomicBool::new(false),
        });
        let token = admin_token(&backends).await;
        let running = app::start(
            config_for(data_dir, extra),
            RouteTable::parse(&test_routes()).unwrap(),
            flaky.clone(),
            backends.keys.clone(),
            Arc::new(LocalInvoker::new(functions)),
        )
        .await
        .unwrap();
        register_token(running.local_addr, token);
        Self {
            running,
            flaky,
            executed,
        }
    }
}
