//! A fault-injecting HTTP/1.1 proxy for tests: it stands between an AWS SDK client and a real
//! stand-in (dataapi-local, moto, a Lambda emulator) and, per request, passes it through or
//! answers with a fault: a canned error, a slow answer, a dropped connection, an endpoint that
//! is down, or one that never answers.
//!
//! It speaks HTTP/1.1 with keep-alive, as the SDKs do: per client connection it reads one
//! request at a time (the head up to CRLFCRLF, the body by `Content-Length` or chunked
//! transfer coding), asks the policy what to do, then forwards it over that connection's own
//! upstream connection (reopened when the upstream closed it) and relays the whole answer
//! (`Content-Length`, chunked, or read to close), or answers with the fault. Requests and
//! answers are forwarded byte for byte, except that an `Expect: 100-continue` is answered by
//! the proxy and not forwarded. Plain HTTP only; std threads, one per connection.
//!
//! ```no_run
//! use tollgate_testkit::faults::{Action, FaultProxy};
//! let proxy = FaultProxy::start("http://127.0.0.1:4566");
//! // Point the client at proxy.endpoint(), then:
//! proxy.set(Action::aws_rest_json_error(429, "ThrottlingException", "Rate exceeded"));
//! proxy.set_rule(|r| if r.seq == 2 { Action::Reset } else { Action::Pass });
//! proxy.clear();
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request or response head read (start line and headers).
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// How often waiting threads (accept loop, delays, hangs) look at the proxy's state.
const POLL: Duration = Duration::from_millis(5);
/// Connecting to the upstream.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy does with one request (every variant but `Refuse` acts after the whole
/// request has been read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward it and relay the answer.
    Pass,
    /// Wait this long, then forward it: a slow answer.
    Delay(Duration),
    /// Answer this, without forwarding the request (the connection stays open).
    Respond {
        /// HTTP status.
        status: u16,
        /// Headers (`Content-Length` is computed and any given one is ignored).
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Close the client connection without answering.
    Reset,
    /// The endpoint is down. Set with [`FaultProxy::set`]: the listener is closed (connecting
    /// is refused) and open connections are closed at once, until the policy changes. From a
    /// rule, which sees one request of an open connection: that connection is closed at once,
    /// like `Reset`.
    Refuse,
    /// Never answer: the connection stays open, silent, until the policy changes (then it is
    /// closed, still unanswered) or the proxy is dropped.
    Hang,
}

impl Action {
    /// A canned answer.
    pub fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Self {
        Self::Respond {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.into(),
        }
    }

    /// An error of an AWS REST-JSON service (RDS Data API, Lambda): the code in
    /// `x-amzn-ErrorType` and `{"message": ...}` as the body, the shape the SDKs' REST-JSON
    /// error parser reads (aws-smithy's `parse_error_metadata` takes the code from the
    /// `x-amzn-errortype` header first, else from the body's `code` or `__type`, and the
    /// message from `message`, `Message` or `errorMessage`).
    pub fn aws_rest_json_error(status: u16, code: &str, message: &str) -> Self {
        let request_id = uuid::Uuid::new_v4().to_string();
        Self::respond(
            status,
            &[
                ("Content-Type", "application/json"),
                ("x-amzn-ErrorType", code),
                ("x-amzn-RequestId", &request_id),
            ],
            format!("{{\"message\":{}}}", json_string(message)),
        )
    }

    /// An S3 error: the REST-XML `<Error><Code>..</Code><Message>..</Message></Error>` body
    /// (not wrapped; the SDK reads `Code` and `Message` under the root element), e.g.
    /// `s3_error(503, "SlowDown", "Please reduce your request rate.")`.
    pub fn s3_error(status: u16, code: &str, message: &str) -> Self {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
            xml_text(code),
            xml_text(message),
            request_id
        );
        Self::respond(
            status,
            &[("Content-Type", "application/xml"), ("x-amz-request-id", &request_id)],
            body,
        )
    }
}

/// One request as the policy sees it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Its number through this proxy, from 1, in the order requests were read.
    pub seq: u64,
    /// Method (`POST`).
    pub method: String,
    /// Path and query as sent (`/Execute`, `/bucket/key?x-id=PutObject`).
    pub path: String,
    /// Headers in order, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (decoded from the chunked coding when it was chunked).
    pub body: Vec<u8>,
}

impl RequestInfo {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the body holds `needle` (as UTF-8 text).
    pub fn body_contains(&self, needle: &str) -> bool {
        let needle = needle.as_bytes();
        needle.is_empty() || self.body.windows(needle.len()).any(|w| w == needle)
    }
}

/// The proxy's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests read from clients.
    pub seen: u64,
    /// Requests sent upstream (delayed ones included).
    pub forwarded: u64,
    /// Requests met with a fault: answered by the proxy, dropped, refused or left hanging.
    pub faulted: u64,
}

type Rule = Arc<dyn Fn(&RequestInfo) -> Action + Send + Sync>;

enum Policy {
    Uniform(Action),
    Rule(Rule),
}

struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    policy: RwLock<Policy>,
    /// Bumped at every policy change: what ends a `Hang`.
    generation: AtomicU64,
    stopped: AtomicBool,
    seq: AtomicU64,
    forwarded: AtomicU64,
    faulted: AtomicU64,
    /// Every open socket (client and upstream side), to close them all on `Refuse` or drop.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_socket: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// The proxy: listens on 127.0.0.1, forwards to one upstream. Stopped when dropped: the
/// listener closes, every connection is closed and every thread ends before `drop` returns.
pub struct FaultProxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, a trailing path ignored, or
    /// `host:port`) on a free port of 127.0.0.1, passing everything through. Panics with the
    /// reason if the upstream cannot be resolved or no port can be bound.
    pub fn start(upstream: &str) -> Self {
        let upstream = resolve(upstream);
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("fault proxy: cannot bind 127.0.0.1:0: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("fault proxy: cannot make the listener non-blocking: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fault proxy: no local address: {e}"));
        let shared = Arc::new(Shared {
            addr,
            upstream,
            listener: Mutex::new(Some(listener)),
            policy: RwLock::new(Policy::Uniform(Action::Pass)),
            generation: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fault-proxy-{}", addr.port()))
                .spawn(move || accept_loop(&shared))
                .unwrap_or_else(|e| panic!("fault proxy: cannot spawn its thread: {e}"))
        };
        Self {
            shared,
            accept: Some(accept),
        }
    }

    /// Its endpoint, `http://127.0.0.1:PORT`, for a client's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// The address of the upstream it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Meets every request from now on with `action` (`Action::Refuse` takes the endpoint
    /// down at once).
    pub fn set(&self, action: Action) {
        let down = action == Action::Refuse;
        self.replace(Policy::Uniform(action));
        if down {
            self.shared
                .listener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            self.shared.close_all();
        } else {
            self.shared.listen();
        }
    }

    /// Decides per request from now on: `rule` is called once per request, on the proxy's
    /// connection thread, with the whole request read.
    pub fn set_rule(&self, rule: impl Fn(&RequestInfo) -> Action + Send + Sync + 'static) {
        self.replace(Policy::Rule(Arc::new(rule)));
        self.shared.listen();
    }

    /// Passes everything through again (hanging requests are closed unanswered).
    pub fn clear(&self) {
        self.set(Action::Pass);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            seen: self.shared.seq.load(Ordering::SeqCst),
            forwarded: self.shared.forwarded.load(Ordering::SeqCst),
            faulted: self.shared.faulted.load(Ordering::SeqCst),
        }
    }

    fn replace(&self, policy: Policy) {
        *self.shared.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.stopped.store(true, Ordering::SeqCst);
        shared.listener.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // The accept loop has ended: no connection thread starts after this.
        shared.close_all();
        let workers = std::mem::take(&mut *shared.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Binds the listener again if `Refuse` closed it (same address: std sets `SO_REUSEADDR`).
    fn listen(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if listener.is_some() || self.stopped() {
            return;
        }
        let bound = TcpListener::bind(self.addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .unwrap_or_else(|e| panic!("fault proxy: cannot listen on {} again: {e}", self.addr));
        *listener = Some(bound);
    }

    fn decide(&self, info: &RequestInfo) -> Action {
        let rule = match &*self.policy.read().unwrap_or_else(PoisonError::into_inner) {
            Policy::Uniform(action) => return action.clone(),
            Policy::Rule(rule) => rule.clone(),
        };
        rule(info)
    }

    /// Keeps a handle on a socket so that `Refuse` and drop can close it; `None` (and the
    /// socket closed) when the proxy is stopping.
    fn register(&self, socket: &TcpStream) -> Option<u64> {
        let id = self.next_socket.fetch_add(1, Ordering::SeqCst);
        let handle = socket.try_clone().ok()?;
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock drop takes to close everything: a socket registered after
        // that sees `stopped`.
        if self.stopped() {
            let _ = socket.shutdown(Shutdown::Both);
            return None;
        }
        sockets.insert(id, handle);
        Some(id)
    }

    fn unregister(&self, id: u64) {
        if let Some(s) = self.sockets.lock().unwrap_or_else(PoisonError::into_inner).remove(&id) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn close_all(&self) {
        for (_, s) in self.sockets.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Sleeps `d`, or less if the proxy stops; whether it is still running.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(POLL));
        }
        false
    }
}

fn accept_loop(shared: &Arc<Shared>) {
    while !shared.stopped() {
        let accepted = match &*shared.listener.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(listener) => listener.accept().ok(),
            None => None,
        };
        let Some((stream, _)) = accepted else {
            std::thread::sleep(POLL);
            continue;
        };
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fault-proxy-{}-conn", shared.addr.port()))
                .spawn(move || serve(&shared, stream))
        };
        let mut workers = shared.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.retain(|w| !w.is_finished());
        if let Ok(worker) = worker {
            workers.push(worker);
        }
    }
}

/// A request read from a client.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// The bytes to forward: the head (less any `Expect`) and the body as received.
    raw: Vec<u8>,
    body: Vec<u8>,
    /// The client asked to close after the answer.
    close: bool,
}

/// One connection to the upstream.
struct Upstream {
    id: u64,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Upstream {
    fn open(shared: &Shared) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&shared.upstream, UPSTREAM_CONNECT_TIMEOUT)?;
        let _ = stream.set_nodelay(true);
        let id = shared
            .register(&stream)
            .ok_or_else(|| io::Error::other("fault proxy stopped"))?;
        Ok(Self {
            id,
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Whether the upstream has kept the connection open (nothing unread, no EOF).
    fn usable(&self) -> bool {
        if !self.reader.buffer().is_empty() || self.writer.set_nonblocking(true).is_err() {
            return false;
        }
        let peek = self.writer.peek(&mut [0u8; 1]);
        let back = self.writer.set_nonblocking(false).is_ok();
        back && matches!(peek, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

fn serve(shared: &Shared, client: TcpStream) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let Some(client_id) = shared.register(&client) else {
        return;
    };
    let mut upstream: Option<Upstream> = None;
    if let Ok(read_half) = client.try_clone() {
        let mut reader = BufReader::new(read_half);
        let mut writer = client;
        while let Ok(Some(request)) = read_request(&mut reader, &mut writer) {
            if shared.stopped() || !handle(shared, request, &mut writer, &mut upstream) {
                break;
            }
        }
    }
    if let Some(u) = upstream {
        shared.unregister(u.id);
    }
    shared.unregister(client_id);
}

/// Acts on one request; whether the client connection stays open.
fn handle(shared: &Shared, request: Request, client: &mut TcpStream, upstream: &mut Option<Upstream>) -> bool {
    let info = RequestInfo {
        seq: shared.seq.fetch_add(1, Ordering::SeqCst) + 1,
        method: request.method.clone(),
        path: request.path.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
    };
    let generation = shared.generation.load(Ordering::SeqCst);
    let action = shared.decide(&info);
    let fault = || shared.faulted.fetch_add(1, Ordering::SeqCst);
    match action {
        Action::Pass => forward(shared, &request, client, upstream),
        Action::Delay(d) => shared.sleep(d) && forward(shared, &request, client, upstream),
        Action::Respond { status, headers, body } => {
            fault();
            let body = if request.method.eq_ignore_ascii_case("HEAD") {
                &[][..]
            } else {
                &body[..]
            };
            write_answer(client, status, &headers, body, request.close).is_ok() && !request.close
        }
        Action::Reset | Action::Refuse => {
            fault();
            false
        }
        Action::Hang => {
            fault();
            while !shared.stopped() && shared.generation.load(Ordering::SeqCst) == generation {
                std::thread::sleep(POLL);
            }
            false
        }
    }
}

/// Forwards a request and relays its answer; whether the client connection stays open.
fn forward(shared: &Shared, request: &Request, client: &mut TcpStream, upstream: &mut Option<Upstream>) -> bool {
    if upstream.as_ref().is_some_and(|u| !u.usable()) {
        if let Some(u) = upstream.take() {
            shared.unregister(u.id);
        }
    }
    if upstream.is_none() {
        // An upstream that cannot be reached looks like it to the client: no answer.
        match Upstream::open(shared) {
            Ok(u) => *upstream = Some(u),
            Err(_) => return false,
        }
    }
    let Some(u) = upstream.as_mut() else {
        return false;
    };
    if u.writer
        .write_all(&request.raw)
        .and_then(|()| u.writer.flush())
        .is_err()
    {
        return false;
    }
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    match relay_answer(&mut u.reader, client, &request.method) {
        Ok(true) => !request.close,
        Ok(false) | Err(_) => {
            if let Some(u) = upstream.take() {
                shared.unregister(u.id);
            }
            false
        }
    }
}

/// Copies one answer (interim 1xx answers included) from the upstream to the client;
/// whether both connections may stay open.
fn relay_answer(upstream: &mut BufReader<TcpStream>, client: &mut TcpStream, method: &str) -> io::Result<bool> {
    loop {
        let head = read_head(upstream)?.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        client.write_all(&head.raw())?;
        let status: u16 = head
            .start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {:?}", head.start)))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let framing = if method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            match body_framing(&head.headers) {
                Framing::None => Framing::UntilClose,
                f => f,
            }
        };
        copy_body(upstream, &framing, client, None)?;
        client.flush()?;
        let version_1_0 = head.start.starts_with("HTTP/1.0");
        return Ok(framing != Framing::UntilClose && status != 101 && !wants_close(&head.headers, version_1_0));
    }
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>, client: &mut TcpStream) -> io::Result<Option<Request>> {
    let Some(head) = read_head(reader)? else {
        return Ok(None);
    };
    let mut parts = head.start.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {:?}", head.start)));
    };
    let expect_continue = header(&head.headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let mut raw = if expect_continue {
        // The proxy reads the whole body before deciding: it asks for it itself.
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        head.raw_without("expect")
    } else {
        head.raw()
    };
    let mut body = Vec::new();
    copy_body(reader, &body_framing(&head.headers), &mut raw, Some(&mut body))?;
    Ok(Some(Request {
        method: method.to_string(),
        path: origin_form(target),
        close: wants_close(&head.headers, version == "HTTP/1.0"),
        headers: head.headers,
        raw,
        body,
    }))
}

/// A message head as read.
struct Head {
    start: String,
    /// Names in lowercase.
    headers: Vec<(String, String)>,
    /// Each line as received, CRLF included; the blank line last.
    lines: Vec<Vec<u8>>,
}

impl Head {
    fn raw(&self) -> Vec<u8> {
        self.lines.concat()
    }

    /// The head less the header lines named `name`.
    fn raw_without(&self, name: &str) -> Vec<u8> {
        let mut out = self.lines[0].clone();
        for (line, (n, _)) in self.lines[1..].iter().zip(&self.headers) {
            if !n.eq_ignore_ascii_case(name) {
                out.extend_from_slice(line);
            }
        }
        out.extend_from_slice(self.lines.last().map_or(&b"\r\n"[..], |l| &l[..]));
        out
    }
}

/// Reads a head up to its blank line; `None` at EOF before any byte (blank lines before a
/// request are skipped, as RFC 9112 allows).
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut read = 0u64;
    loop {
        let mut line = Vec::new();
        let n = r.by_ref().take(MAX_HEAD_BYTES - read).read_until(b'\n', &mut line)?;
        if n == 0 {
            return match (lines.is_empty(), read == MAX_HEAD_BYTES) {
                (_, true) => Err(invalid("head too large".into())),
                (true, false) => Ok(None),
                (false, false) => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        read += n as u64;
        if !line.ends_with(b"\n") {
            return Err(invalid("head too large".into()));
        }
        let blank = trim_eol(&line).is_empty();
        if blank && lines.is_empty() {
            continue;
        }
        lines.push(line);
        if blank {
            break;
        }
    }
    let text = |l: &[u8]| String::from_utf8_lossy(trim_eol(l)).into_owned();
    let start = text(&lines[0]);
    let mut headers = Vec::new();
    for line in &lines[1..lines.len() - 1] {
        let line = text(line);
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(Head { start, headers, lines }))
}

/// How a body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// No body (a request with neither `Content-Length` nor `Transfer-Encoding`).
    None,
    Length(u64),
    Chunked,
    /// To the end of the connection (an answer with no length).
    UntilClose,
}

fn body_framing(headers: &[(String, String)]) -> Framing {
    if let Some(te) = header(headers, "transfer-encoding") {
        // RFC 9112 6.3: chunked must be the last coding; otherwise the body runs to close.
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
    }
    match header(headers, "content-length").map(|v| v.trim().parse::<u64>()) {
        Some(Ok(n)) => Framing::Length(n),
        Some(Err(_)) | None => Framing::None,
    }
}

/// Copies a body as received to `raw`, and its decoded bytes to `decoded`.
fn copy_body(
    r: &mut impl BufRead,
    framing: &Framing,
    raw: &mut impl Write,
    mut decoded: Option<&mut Vec<u8>>,
) -> io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => copy_exact(r, *n, raw, decoded),
        Framing::UntilClose => {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                raw.write_all(&buf[..n])?;
                if let Some(d) = decoded.as_deref_mut() {
                    d.extend_from_slice(&buf[..n]);
                }
            }
        }
        Framing::Chunked => loop {
            let line = read_line(r)?;
            raw.write_all(&line)?;
            let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            let size = text.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {text:?}")))?;
            if size == 0 {
                // Trailer fields, then the blank line.
                loop {
                    let line = read_line(r)?;
                    raw.write_all(&line)?;
                    if trim_eol(&line).is_empty() {
                        return Ok(());
                    }
                }
            }
            copy_exact(r, size, raw, decoded.as_deref_mut())?;
            let end = read_line(r)?;
            if !trim_eol(&end).is_empty() {
                return Err(invalid("chunk not followed by CRLF".into()));
            }
            raw.write_all(&end)?;
        },
    }
}

fn copy_exact(r: &mut impl Read, n: u64, raw: &mut impl Write, mut decoded: Option<&mut Vec<u8>>) -> io::Result<()> {
    let mut left = n;
    let mut buf = [0u8; 16 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.write_all(&buf[..got])?;
        if let Some(d) = decoded.as_deref_mut() {
            d.extend_from_slice(&buf[..got]);
        }
        left -= got as u64;
    }
    Ok(())
}

fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.by_ref().take(MAX_HEAD_BYTES).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

fn write_answer(
    w: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("transfer-encoding") {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    w.write_all(&bytes)?;
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// `Connection: close`, or an HTTP/1.0 message without `Connection: keep-alive`.
fn wants_close(headers: &[(String, String)], version_1_0: bool) -> bool {
    let has = |token: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has("close") || (version_1_0 && !has("keep-alive"))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The path and query of a request target (an absolute-form target loses its authority).
fn origin_form(target: &str) -> String {
    match target.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        },
        None => target.to_string(),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn resolve(upstream: &str) -> SocketAddr {
    let rest = match upstream.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => panic!("fault proxy: upstream {upstream:?}: only http is supported, not {scheme}"),
        None => upstream,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("fault proxy: cannot resolve upstream {upstream:?} (want http://host:port)"))
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` escaped for XML text.
fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_chunked_bodies_parse_and_round_trip() {
        let wire = b"\r\nPOST /x?y=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
        let mut r = BufReader::new(&wire[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.start, "POST /x?y=1 HTTP/1.1");
        assert_eq!(header(&head.headers, "TRANSFER-ENCODING"), Some("chunked"));
        assert_eq!(body_framing(&head.headers), Framing::Chunked);
        assert_eq!(
            head.raw_without("expect"),
            b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
        );
        let (mut raw, mut body) = (Vec::new(), Vec::new());
        copy_body(&mut r, &Framing::Chunked, &mut raw, Some(&mut body)).unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(raw, b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\n".to_vec());
        assert!(read_head(&mut r).unwrap().is_none(), "a clean end");
    }

    #[test]
    fn framing_close_and_targets() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        assert_eq!(body_framing(&h(&[("content-length", "12")])), Framing::Length(12));
        assert_eq!(body_framing(&h(&[])), Framing::None);
        assert_eq!(body_framing(&h(&[("transfer-encoding", "gzip")])), Framing::UntilClose);
        assert!(wants_close(&h(&[("connection", "keep-alive, close")]), false));
        assert!(wants_close(&h(&[]), true));
        assert!(!wants_close(&h(&[("connection", "keep-alive")]), true));
        assert_eq!(origin_form("http://h:1/a?b"), "/a?b");
        assert_eq!(origin_form("/a"), "/a");
        assert_eq!(json_string("a\"b\\\u{1}"), "\"a\\\"b\\\\\\u0001\"");
        assert_eq!(xml_text("<a&'>"), "&lt;a&amp;&apos;&gt;");
    }
}
