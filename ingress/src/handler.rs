//! One request, in phases: **admit** (head checks, load and health) -> **route** -> **access**
//! (the verified caller and the route's policy: `auth.rs`) -> **read body** -> (**write ahead**: on a `record = "before"` route, a durable intent) -> **hand
//! off** (invoke the function) -> **record** (durable row and audit event) -> **answer**. Each phase reads and fills the request's [`Ctx`]; any phase may end the request
//! with a [`Rejection`] (an [`ErrorCode`] of the shared table), which is recorded like any
//! answer.
//!
//! Nothing executed escapes the record: the server runs `handle` in a future that, when hyper
//! drops it (the client went away), is moved to a task of its own and finishes there
//! (`server::Detached`), with the request's [`Signal`] fired. A client gone before the hand-off
//! is recorded as 499 and its function is not invoked; gone during or after it, the request is
//! recorded as 499 with the function's answer in the audit event (`response.delivered:
//! false`). At the drain timeout the server fires [`AppState::cutoff`]: requests still reading
//! a body or waiting for a function are answered and recorded as 503 `shutting_down`.

use crate::alb::{self, FunctionReply};
use crate::auth::Authenticator;
use crate::config::IngressConfig;
use crate::receipt::{PREFERENCE as RECEIPT_PREFERENCE, RECEIPT_HEADER};
use crate::recorder::{Recorded, RecorderHandle};
use crate::routes::{Recording, Route, RouteMatch, RouteTable};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tollgate_core::access::{Access, Principal, PRINCIPAL_HEADER};
use tollgate_core::apierror::{problem_json, ErrorCode, PROBLEM_JSON};
use tollgate_core::model::{AuditError, AuditEvent, AuditRequest, AuditResponse, AuditSource, RequestRecord};
use tollgate_core::ports::{InvokeError, Invoker};
use tollgate_core::{clock, ids};

/// Longest `User-Agent` / principal kept in a record.
const MAX_META_CHARS: usize = 512;
/// Body accounting unit of [`AppState::body_budget`] (a semaphore counts permits, not bytes).
const BUDGET_UNIT: u64 = 1024;
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
/// RFC 7240 section 3.
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// A one-way flag that can be awaited.
#[derive(Default)]
pub struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    /// Sets the flag and wakes every waiter.
    pub fn fire(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether it fired.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Waits until it fires.
    pub async fn fired(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// What every request needs.
pub struct AppState {
    /// Settings.
    pub config: Arc<IngressConfig>,
    /// Routes.
    pub routes: RouteTable,
    /// Where functions are invoked.
    pub invoker: Arc<dyn Invoker>,
    /// Where records go.
    pub recorder: RecorderHandle,
    /// Who is calling (the access phase).
    pub auth: Authenticator,
    /// Per-route, per-caller rate limits.
    pub limiter: crate::ratelimit::RateLimiter,
    /// Set on SIGTERM: health checks fail so the load balancer stops sending.
    pub draining: AtomicBool,
    /// Fired at the drain timeout: requests still reading or waiting for a function stop.
    pub cutoff: Signal,
    /// Requests past admission (`TOLLGATE_MAX_IN_FLIGHT`).
    pub in_flight: Arc<Semaphore>,
    /// Request body bytes buffered at once, in [`BUDGET_UNIT`]s (`TOLLGATE_MAX_BUFFERED_BODY_BYTES`).
    pub body_budget: Arc<Semaphore>,
}

impl AppState {
    /// The state for a configuration.
    pub fn new(
        config: Arc<IngressConfig>,
        routes: RouteTable,
        invoker: Arc<dyn Invoker>,
        recorder: RecorderHandle,
        auth: Authenticator,
    ) -> Self {
        let limits = &config.limits;
        let budget_units = (limits.max_buffered_body_bytes / BUDGET_UNIT).min(Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            body_budget: Arc::new(Semaphore::new(budget_units)),
            config,
            routes,
            invoker,
            recorder,
            auth,
            limiter: crate::ratelimit::RateLimiter::new(crate::ratelimit::DEFAULT_MAX_KEYS),
            draining: AtomicBool::new(false),
            cutoff: Signal::default(),
        }
    }
}

/// A decision of the ingress that ends the request with an error.
#[derive(Debug)]
pub struct Rejection {
    code: ErrorCode,
    message: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    close: bool,
}

impl Rejection {
    fn of(code: ErrorCode) -> Self {
        Self::new(code, code.message())
    }

    fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        let mut headers = Vec::new();
        if code.is_retryable() {
            headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        Self {
            code,
            message: message.into(),
            headers,
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn from_invoke(e: &InvokeError) -> Self {
        match e {
            InvokeError::Function { .. } => Self::of(ErrorCode::FunctionError),
            InvokeError::Throttled { retry_after } => {
                let mut r = Self::of(ErrorCode::FunctionThrottled);
                let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
                r.headers.retain(|(n, _)| n != header::RETRY_AFTER);
                r.headers.push((header::RETRY_AFTER, HeaderValue::from(secs)));
                r
            }
            InvokeError::PayloadTooLarge => {
                Self::new(ErrorCode::PayloadTooLarge, "the request is too large for the function")
            }
            InvokeError::UnknownFunction(_) | InvokeError::Unavailable(_) => Self::of(ErrorCode::FunctionUnavailable),
        }
    }

    fn reply(&self, request_id: &str) -> FunctionReply {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (n, v) in &self.headers {
            headers.insert(n.clone(), v.clone());
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        FunctionReply {
            status: StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            body: Bytes::from(problem_json(self.code, &self.message, request_id)),
        }
    }
}

/// The request's context: what the phases learn, for its record and audit event.
struct Ctx {
    received_at: OffsetDateTime,
    started: Instant,
    peer: SocketAddr,
    request_id: String,
    /// The id of the request's audit event (its write-ahead intent's too).
    event_id: String,
    client_chosen_id: bool,
    trace_id: String,
    parts: http::request::Parts,
    declared_len: Option<u64>,
    route: Option<String>,
    function: Option<String>,
    body: Option<Bytes>,
    body_seen: u64,
    invoked: bool,
    /// The verified caller (anonymous until the access phase verifies a credential).
    principal: Principal,
    /// The access decision (not evaluated until the access phase).
    access: Access,
    /// `RateLimit` and `RateLimit-Policy` of a rate-limited route, for the answer.
    rate_headers: Option<[(HeaderName, HeaderValue); 2]>,
    /// The route gives every answer a receipt (`receipt = true`).
    route_receipt: bool,
    /// Fired when the client is gone (hyper dropped the request's future).
    client_gone: Arc<Signal>,
    /// Held until the request is recorded.
    _permits: Vec<OwnedSemaphorePermit>,
}

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn hex_sha256(b: &[u8]) -> String {
    let digest = Sha256::digest(b);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The client address: the `X-Forwarded-For` entry appended by the outermost of
/// `trusted` proxies (entries before it can be forged by the client), else the peer.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: usize) -> IpAddr {
    if trusted == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    entries
        .len()
        .checked_sub(trusted)
        .and_then(|i| entries.get(i))
        .and_then(|s| s.parse().ok())
        .unwrap_or(peer)
}

fn head_size(parts: &http::request::Parts) -> (usize, usize) {
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path().len(), |pq| pq.as_str().len());
    let line = parts.method.as_str().len() + target + 12;
    let bytes = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>();
    (line + bytes, parts.headers.len())
}

/// Reserves `bytes` of the body budget, or refuses the request as overloaded.
fn reserve_body(state: &AppState, ctx: &mut Ctx, bytes: u64) -> Result<(), Rejection> {
    let units = bytes.div_ceil(BUDGET_UNIT) as u32;
    if units == 0 {
        return Ok(());
    }
    let permit = state.body_budget.clone().try_acquire_many_owned(units).map_err(|_| {
        Rejection::new(ErrorCode::Overloaded, "too many request bodies in flight; retry later").closing()
    })?;
    ctx._permits.push(permit);
    Ok(())
}

/// Phase 1: the head is acceptable, the server has room, and the request log is healthy.
fn admit(state: &AppState, ctx: &mut Ctx) -> Result<(), Rejection> {
    let config = &*state.config;
    let parts = &ctx.parts;
    let (bytes, count) = head_size(parts);
    if bytes > config.limits.max_header_bytes || count > config.limits.max_headers {
        return Err(Rejection::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "request headers exceed {} bytes or {} fields",
                config.limits.max_header_bytes, config.limits.max_headers
            ),
        )
        .closing());
    }
    // RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without exactly one Host.
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    let host_ok = match parts.version {
        Version::HTTP_10 | Version::HTTP_09 => hosts <= 1,
        _ => hosts == 1,
    } && parts
        .headers
        .get(header::HOST)
        .is_none_or(|h| h.to_str().is_ok_and(|s| s.parse::<http::uri::Authority>().is_ok()));
    if !host_ok {
        return Err(Rejection::of(ErrorCode::InvalidHost).closing());
    }
    // Only origin-form targets are routed: absolute-form is for proxies, `*` for OPTIONS to the server.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() || !parts.uri.path().starts_with('/') {
        return Err(Rejection::of(ErrorCode::InvalidTarget));
    }
    if ctx.declared_len.is_some_and(|n| n > config.limits.max_body_bytes) {
        return Err(Rejection::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {} bytes", config.limits.max_body_bytes),
        )
        .closing());
    }
    let permit = state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| Rejection::of(ErrorCode::Overloaded))?;
    ctx._permits.push(permit);
    // Fail closed before a function runs, never after: while the request log is failing, a
    // request that would execute is refused (its own record waits for the log like any other).
    if state.recorder.is_failing() {
        return Err(Rejection::of(ErrorCode::RecordingUnavailable));
    }
    if let Some(n) = ctx.declared_len {
        reserve_body(state, ctx, n)?;
    }
    Ok(())
}

/// Phase 2: the route that takes the request.
fn route<'s>(state: &'s AppState, ctx: &mut Ctx) -> Result<&'s Route, Rejection> {
    match state.routes.lookup(&ctx.parts.method, ctx.parts.uri.path()) {
        RouteMatch::Found(r) => {
            ctx.route = Some(r.pattern.clone());
            ctx.function = Some(r.function.clone());
            ctx.route_receipt = r.receipt;
            Ok(r)
        }
        RouteMatch::NotFound => Err(Rejection::of(ErrorCode::RouteNotFound)),
        RouteMatch::MethodNotAllowed(allow) => {
            let list = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            Err(method_not_allowed(&ctx.parts.method, HeaderValue::from_str(&list).ok()))
        }
    }
}

/// Phase 2b: who is calling, and whether the route lets them in. A refusal is recorded with
/// the reason (and, for a 403, the principal that was verified) and never reaches a function.
async fn authorize(state: &AppState, ctx: &mut Ctx, route: &Route) -> Result<(), Rejection> {
    match state.auth.authorize(&ctx.parts.headers, route).await {
        Ok(verdict) => {
            ctx.principal = verdict.principal;
            ctx.access = verdict.access;
            Ok(())
        }
        Err(refusal) => {
            let refusal = *refusal;
            ctx.principal = refusal.principal;
            ctx.access = Access::refused(refusal.reason);
            let mut r = Rejection::new(refusal.code, refusal.detail);
            if let Some(c) = refusal.challenge {
                r.headers.push((header::WWW_AUTHENTICATE, c));
            }
            Err(r)
        }
    }
}

/// Phase 2c: the route's rate limit for this caller (its verified principal, else its client
/// address; an IPv6 client by its /64, which one client usually holds whole). Per task: the
/// template's WAF rule is the fleet-wide limit.
fn limit(state: &AppState, ctx: &mut Ctx, route: &Route) -> Result<(), Rejection> {
    let Some(policy) = &route.rate else {
        return Ok(());
    };
    let key = match &ctx.principal.id {
        Some(id) => Cow::Borrowed(id.as_str()),
        None => Cow::Owned(
            match client_ip(&ctx.parts.headers, ctx.peer.ip(), state.config.trusted_proxies) {
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
                v4 => v4.to_string(),
            },
        ),
    };
    let decision = state.limiter.check(route.index, &key, policy, Instant::now());
    let headers = state.limiter.headers("route", &decision);
    if decision.allowed {
        ctx.rate_headers = Some(headers);
        return Ok(());
    }
    ctx.access = Access::refused("rate_limited");
    let mut r = Rejection::new(
        ErrorCode::RateLimited,
        format!(
            "over this route's limit of {policy} per caller; retry in {} s",
            decision.retry_after_secs
        ),
    );
    r.headers.retain(|(n, _)| n != header::RETRY_AFTER);
    r.headers
        .push((header::RETRY_AFTER, HeaderValue::from(decision.retry_after_secs.max(1))));
    r.headers.extend(headers);
    Err(r)
}

/// 405 for `method`, with the methods the path takes in `Allow`.
fn method_not_allowed(method: &Method, allow: Option<HeaderValue>) -> Rejection {
    let mut r = Rejection::new(
        ErrorCode::MethodNotAllowed,
        format!("method {} is not allowed here", truncate(method.as_str(), 32)),
    );
    if let Some(v) = allow {
        r.headers.push((header::ALLOW, v));
    }
    r
}

/// The OpenAPI document of the public API (`api/openapi.json`), served at [`OPENAPI_PATH`].
pub const OPENAPI: &str = include_str!("../../api/openapi.json");
/// Where the ingress serves [`OPENAPI`]: answered by the ingress itself, and recorded like any
/// request (route `/openapi.json`, no function).
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The health check's path (GET and HEAD are answered before anything else, unrecorded).
pub const HEALTH_PATH: &str = "/healthz";

/// The route of the problem types (`type` of every problem), answered by the ingress.
pub const PROBLEMS_ROUTE: &str = "/problems/{code}";

/// Phase 2, for what the ingress answers itself (each recorded like any request): the OpenAPI
/// document, the problem types, and a 405 for any other method on them or on the health check.
/// `None` for the rest.
fn builtin(ctx: &mut Ctx) -> Option<Result<FunctionReply, Rejection>> {
    let path = ctx.parts.uri.path();
    let problem = path.starts_with(tollgate_core::apierror::PROBLEM_TYPE_PREFIX);
    if path != OPENAPI_PATH && path != HEALTH_PATH && !problem {
        return None;
    }
    ctx.route = Some(if problem {
        PROBLEMS_ROUTE.to_string()
    } else {
        path.to_string()
    });
    // The contract and the problem types are public documents.
    ctx.access = Access::allowed("public");
    if ctx.parts.method != Method::GET && ctx.parts.method != Method::HEAD {
        return Some(Err(method_not_allowed(
            &ctx.parts.method,
            Some(HeaderValue::from_static("GET, HEAD")),
        )));
    }
    let body = if problem {
        match tollgate_core::apierror::code_of_type(path) {
            Some(code) => Bytes::from(tollgate_core::apierror::problem_type_json(code)),
            None => {
                return Some(Err(Rejection::new(
                    ErrorCode::RouteNotFound,
                    "no problem type by this name",
                )))
            }
        }
    } else {
        Bytes::from_static(OPENAPI.as_bytes())
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Some(Ok(FunctionReply {
        status: StatusCode::OK,
        headers,
        body,
    }))
}

/// Phase 3: the body, within its size limit, time limit and the shared body budget. The
/// buffer grows with the bytes that arrive (a declared `Content-Length` reserves budget but
/// allocates nothing).
async fn read_body(state: &AppState, ctx: &mut Ctx, body: Incoming) -> Result<Bytes, Rejection> {
    let limit = state.config.limits.max_body_bytes;
    let too_large = || {
        Rejection::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
        .closing()
    };
    let declared = ctx.declared_len;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut seen: u64 = 0;
    let mut reserved = declared.unwrap_or(0);
    let read = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Rejection::of(ErrorCode::InvalidBody).closing())?;
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > limit {
                    return Err(too_large());
                }
                if seen > reserved {
                    // A chunked body (or one longer than declared: hyper refuses that) takes
                    // budget as it grows.
                    let more = (seen - reserved).max(64 * BUDGET_UNIT);
                    reserve_body(state, ctx, more)?;
                    reserved += more;
                }
                chunks.push(data);
            }
        }
        Ok(())
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(state.config.limits.body_timeout, read) => r,
        _ = state.cutoff.fired() => Ok(Err(Rejection::of(ErrorCode::ShuttingDown).closing())),
    };
    ctx.body_seen = seen;
    match outcome {
        Ok(Ok(())) => {
            let body = match chunks.len() {
                0 => Bytes::new(),
                1 => chunks.pop().unwrap_or_default(),
                _ => {
                    let mut buf = BytesMut::with_capacity(seen as usize);
                    for c in &chunks {
                        buf.extend_from_slice(c);
                    }
                    buf.freeze()
                }
            };
            ctx.body = Some(body.clone());
            Ok(body)
        }
        // A body cut short because the client left is the client's doing, not a bad body.
        Ok(Err(r)) if r.code == ErrorCode::InvalidBody && client_left(ctx) => {
            Err(Rejection::of(ErrorCode::ClientClosedRequest).closing())
        }
        Ok(Err(r)) => Err(r),
        Err(_) => Err(Rejection::of(ErrorCode::BodyTimeout).closing()),
    }
}

/// Whether the client is gone: hyper dropped the request (or its body ended early, which hyper
/// reports before it drops the request).
fn client_left(ctx: &Ctx) -> bool {
    ctx.client_gone.is_set() || ctx.declared_len.is_some_and(|n| ctx.body_seen < n)
}

/// Phase 4: the function, unless the client has already gone. Once invoked, the function's
/// answer is awaited even if the client leaves (it is recorded); only the route timeout and
/// the drain cut-off end the wait.
async fn hand_off(state: &AppState, ctx: &mut Ctx, route: &Route, body: &Bytes) -> Result<FunctionReply, Rejection> {
    if ctx.client_gone.is_set() {
        return Err(Rejection::of(ErrorCode::ClientClosedRequest));
    }
    let mut headers = ctx.parts.headers.clone();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    // The function learns who called from the ingress only: a client's own copy is dropped
    // (it stays in the audit event's request headers, as evidence of the attempt).
    headers.remove(PRINCIPAL_HEADER);
    let principal = serde_json::to_string(&ctx.principal).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&principal) {
        headers.insert(HeaderName::from_static(PRINCIPAL_HEADER), v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.trace_id) {
        headers.insert(X_AMZN_TRACE_ID, v);
    }
    let event = alb::request_event(
        &state.config.target_group_arn,
        ctx.parts.method.as_str(),
        ctx.parts.uri.path(),
        ctx.parts.uri.query(),
        &headers,
        body,
    );
    ctx.invoked = true;
    let invoke = tokio::time::timeout(route.timeout, state.invoker.invoke(&route.function, Bytes::from(event)));
    let invoked = tokio::select! {
        r = invoke => r,
        _ = state.cutoff.fired() => {
            tracing::warn!(request_id = %ctx.request_id, function = %route.function, "drain timeout while the function ran");
            return Err(Rejection::of(ErrorCode::ShuttingDown));
        }
    };
    let request_id = &ctx.request_id;
    let payload = match invoked {
        Err(_) => return Err(Rejection::of(ErrorCode::FunctionTimeout)),
        Ok(Err(e)) => {
            match &e {
                InvokeError::Function { error_type, .. } => {
                    tracing::warn!(%request_id, function = %route.function, error_type = %truncate(error_type, 128), "function error")
                }
                other => tracing::warn!(%request_id, function = %route.function, error = %other, "invoke failed"),
            }
            return Err(Rejection::from_invoke(&e));
        }
        Ok(Ok(p)) => p,
    };
    alb::parse_response(&payload).map_err(|why| {
        tracing::warn!(%request_id, function = %route.function, why = %truncate(&why, 256), "invalid function response");
        Rejection::of(ErrorCode::InvalidFunctionResponse)
    })
}

/// The error code of a function's own error answer (an RFC 9457 problem with a `code`, as
/// tollgate's functions answer), for the record.
fn function_error_code(reply: &FunctionReply) -> Option<String> {
    if reply.status.as_u16() < 400 {
        return None;
    }
    // An RFC 9457 problem with our `code` extension member.
    #[derive(serde::Deserialize)]
    struct Problem<'a> {
        #[serde(borrow)]
        code: Cow<'a, str>,
    }
    serde_json::from_slice::<Problem>(&reply.body)
        .ok()
        .map(|b| truncate(&b.code, 64))
        .filter(|c| !c.is_empty())
}

/// What a record and its audit event say about a request, whatever its answer: one builder
/// for answered requests, write-ahead intents and connection-level events.
struct Facts {
    request_id: String,
    event_id: String,
    trace_id: Option<String>,
    received_at: OffsetDateTime,
    method: String,
    path: String,
    query: Option<String>,
    headers: tollgate_core::model::AuditHeaders,
    route: Option<String>,
    function: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    principal: Principal,
    access: Access,
    body_sha256: Option<String>,
    request_bytes: u64,
    latency_ms: f64,
    invoked: bool,
}

/// The answer half: what the record says was answered, and what the audit event says.
struct Answer {
    /// The status recorded (what the client got; 499 if it left, 0 if never answered).
    status: u16,
    error_code: Option<String>,
    /// Body bytes the client got.
    response_bytes: u64,
    response: AuditResponse,
    error: Option<AuditError>,
}

impl Facts {
    /// The facts of a request that reached the handler.
    fn of(state: &AppState, ctx: &Ctx) -> Self {
        let config = &*state.config;
        let parts = &ctx.parts;
        let request_bytes = ctx
            .body
            .as_ref()
            .map_or(ctx.declared_len.unwrap_or(ctx.body_seen).max(ctx.body_seen), |b| {
                b.len() as u64
            });
        Self {
            request_id: ctx.request_id.clone(),
            event_id: ctx.event_id.clone(),
            trace_id: Some(ctx.trace_id.clone()),
            received_at: ctx.received_at,
            method: truncate(parts.method.as_str(), 32),
            path: truncate(parts.uri.path(), 2048),
            query: parts.uri.query().map(|q| config.redactor.query(q)),
            headers: config.redactor.headers(&parts.headers),
            route: ctx.route.clone(),
            function: ctx.function.clone(),
            client_ip: Some(client_ip(&parts.headers, ctx.peer.ip(), config.trusted_proxies).to_string()),
            user_agent: header_str(&parts.headers, &header::USER_AGENT).map(|s| truncate(s, MAX_META_CHARS)),
            principal: ctx.principal.clone(),
            access: ctx.access.clone(),
            body_sha256: ctx.body.as_deref().map(hex_sha256),
            request_bytes,
            latency_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
            invoked: ctx.invoked,
        }
    }

    /// The record and audit event of these facts with this answer.
    fn entry(self, answer: Answer) -> (RequestRecord, AuditEvent) {
        let event = AuditEvent {
            event_version: tollgate_core::model::AUDIT_EVENT_VERSION.to_string(),
            event_id: self.event_id.clone(),
            event_time: self.received_at,
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            source: AuditSource {
                ip: self.client_ip.clone(),
                user_agent: self.user_agent.clone(),
            },
            principal: self.principal.clone(),
            access: self.access.clone(),
            request: AuditRequest {
                method: self.method.clone(),
                path: self.path.clone(),
                query: self.query.clone(),
                headers: self.headers,
                body_sha256: self.body_sha256,
                body_bytes: self.request_bytes,
            },
            route: self.route.clone(),
            function_name: self.function.clone(),
            invoked: self.invoked,
            response: answer.response,
            latency_ms: self.latency_ms,
            error: answer.error,
        };
        let record = RequestRecord {
            request_id: self.request_id,
            event_id: self.event_id,
            trace_id: self.trace_id,
            received_at: self.received_at,
            method: self.method,
            path: self.path,
            query: self.query,
            route: self.route,
            function_name: self.function,
            status: answer.status,
            latency_ms: self.latency_ms,
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            principal_kind: self.principal.kind,
            principal_name: self.principal.name.map(|n| truncate(&n, MAX_META_CHARS)),
            principal: self.principal.id,
            scopes: self.principal.scopes,
            access: self.access.stored(),
            request_bytes: self.request_bytes,
            response_bytes: answer.response_bytes,
            error_code: answer.error_code,
        };
        (record, event)
    }
}

fn audit_error(code: ErrorCode, message: &str) -> AuditError {
    AuditError {
        code: code.as_str().to_string(),
        message: message.to_string(),
    }
}

/// Phase 5: the record and audit event of the answer, durable before the answer is released.
/// Returns the id the request is recorded under (and its receipt, when the route or the client
/// asked for one), or that recording failed. A receipt changes neither the record nor the
/// audit event: it is asked of the recorder, not written into them.
async fn record(
    state: &AppState,
    ctx: &Ctx,
    reply: &FunctionReply,
    error: Option<AuditError>,
    wants_receipt: bool,
) -> Result<Recorded, ()> {
    let delivered = !ctx.client_gone.is_set();
    let gone = ErrorCode::ClientClosedRequest;
    let answer = Answer {
        status: if delivered {
            reply.status.as_u16()
        } else {
            gone.status()
        },
        error_code: if delivered {
            error
                .as_ref()
                .map(|e| e.code.clone())
                .or_else(|| function_error_code(reply))
        } else {
            Some(gone.as_str().to_string())
        },
        response_bytes: if delivered { reply.body.len() as u64 } else { 0 },
        response: AuditResponse {
            status: reply.status.as_u16(),
            headers: state.config.redactor.headers(&reply.headers),
            body_sha256: hex_sha256(&reply.body),
            body_bytes: reply.body.len() as u64,
            delivered,
        },
        error: match error {
            None if !delivered => Some(audit_error(gone, gone.message())),
            e => e,
        },
    };
    let (record, event) = Facts::of(state, ctx).entry(answer);
    let recorded = if wants_receipt {
        state
            .recorder
            .record_with_receipt(record, event, ctx.client_chosen_id)
            .await
    } else {
        state
            .recorder
            .record(record, event, ctx.client_chosen_id)
            .await
            .map(|request_id| Recorded {
                request_id,
                receipt: None,
            })
    };
    recorded.map_err(|e| {
        tracing::error!(request_id = %ctx.request_id, error = %e, "request could not be recorded; answering 503");
    })
}

/// Phase 3b, on a `record = "before"` route: the write-ahead intent, durable before the
/// function is invoked. It already is the record an ingress that dies before the answer leaves
/// behind (status 0, `outcome_unknown`, the function possibly run); the answer's record replaces
/// it. If it cannot be written the request is refused and its function not invoked.
async fn write_ahead(state: &AppState, ctx: &mut Ctx) -> Result<(), Rejection> {
    if ctx.client_gone.is_set() {
        return Err(Rejection::of(ErrorCode::ClientClosedRequest));
    }
    let mut facts = Facts::of(state, ctx);
    facts.invoked = true;
    let (record, event) = facts.entry(Answer {
        status: 0,
        error_code: Some(tollgate_core::apierror::OUTCOME_UNKNOWN.to_string()),
        response_bytes: 0,
        response: AuditResponse {
            status: 0,
            headers: Default::default(),
            body_sha256: hex_sha256(b""),
            body_bytes: 0,
            delivered: false,
        },
        error: Some(AuditError {
            code: tollgate_core::apierror::OUTCOME_UNKNOWN.to_string(),
            message: tollgate_core::apierror::OUTCOME_UNKNOWN_MESSAGE.to_string(),
        }),
    });
    match state.recorder.record_intent(record, event, ctx.client_chosen_id).await {
        Ok(id) => {
            if id != ctx.request_id {
                // The client's id was another request's: the intent, and so the record, has a new one.
                ctx.request_id = id;
                ctx.client_chosen_id = false;
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "write-ahead intent not durable; refusing the request");
            Err(Rejection::of(ErrorCode::RecordingUnavailable))
        }
    }
}

fn health(state: &AppState, request_id: &str) -> Response<Full<Bytes>> {
    let (status, body) = if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
    } else if state.recorder.is_failing() {
        // The load balancer sends elsewhere while this task cannot record.
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"recording_unavailable"}"#)
    } else {
        (StatusCode::OK, r#"{"status":"ok"}"#)
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    resp
}

/// Records a request that never reached the handler: a head hyper refused (bad framing,
/// invalid bytes, an oversized head, a smuggling attempt: hyper answers those itself) or one
/// that did not arrive within the header timeout. No request id was ever assigned: it gets
/// one, and the record carries the peer, the kind of error and the bytes seen.
pub async fn record_connection_event(
    state: &AppState,
    peer: SocketAddr,
    code: ErrorCode,
    detail: &str,
    bytes_seen: u64,
) {
    let now = clock::now();
    let request_id = ids::new_request_id();
    let facts = Facts {
        request_id: request_id.clone(),
        event_id: ids::new_request_id(),
        trace_id: None,
        received_at: now,
        method: "-".into(),
        path: "-".into(),
        query: None,
        headers: Default::default(),
        route: None,
        function: None,
        client_ip: Some(peer.ip().to_string()),
        user_agent: None,
        principal: Principal::anonymous(),
        access: Access::default(),
        body_sha256: None,
        request_bytes: bytes_seen,
        latency_ms: 0.0,
        invoked: false,
    };
    let (record, event) = facts.entry(Answer {
        status: code.status(),
        error_code: Some(code.as_str().to_string()),
        response_bytes: 0,
        response: AuditResponse {
            status: code.status(),
            headers: Default::default(),
            body_sha256: hex_sha256(b""),
            body_bytes: 0,
            delivered: code != ErrorCode::HeaderTimeout,
        },
        // hyper's own description of what it refused (no request bytes in it).
        error: Some(audit_error(code, &truncate(detail, 200))),
    });
    let recorded = state.recorder.record(record, event, false).await;
    tracing::info!(
        target: "tollgate::access",
        request_id = %request_id,
        peer = %peer,
        status = code.status(),
        error_code = code.as_str(),
        bytes_seen,
        recorded = recorded.is_ok(),
        "connection-level request"
    );
}

/// Handles one request through its phases. `client_gone` is fired by the server when hyper
/// drops this future (see the module docs).
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    client_gone: Arc<Signal>,
) -> Response<Full<Bytes>> {
    let received_at = clock::now();
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let client_id = header_str(&parts.headers, &X_REQUEST_ID)
        .filter(|id| ids::is_valid_request_id(id))
        .map(String::from);
    let client_chosen_id = client_id.is_some();
    let request_id = client_id.unwrap_or_else(ids::new_request_id);
    if parts.uri.path() == HEALTH_PATH && (parts.method == Method::GET || parts.method == Method::HEAD) {
        return health(&state, &request_id);
    }
    let trace_id = header_str(&parts.headers, &X_AMZN_TRACE_ID)
        .filter(|t| ids::is_valid_trace_id(t))
        .map(String::from)
        .unwrap_or_else(ids::new_trace_id);
    let declared_len = header_str(&parts.headers, &header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let mut ctx = Ctx {
        received_at,
        started,
        peer,
        request_id,
        event_id: ids::new_request_id(),
        client_chosen_id,
        trace_id,
        parts,
        declared_len,
        route: None,
        function: None,
        body: None,
        body_seen: 0,
        invoked: false,
        principal: Principal::anonymous(),
        access: Access::default(),
        rate_headers: None,
        route_receipt: false,
        client_gone,
        _permits: Vec::new(),
    };

    let outcome = async {
        admit(&state, &mut ctx)?;
        if let Some(answer) = builtin(&mut ctx) {
            return answer;
        }
        let route = route(&state, &mut ctx)?;
        authorize(&state, &mut ctx, route).await?;
        limit(&state, &mut ctx, route)?;
        let body = read_body(&state, &mut ctx, body).await?;
        if route.record == Recording::Before {
            write_ahead(&state, &mut ctx).await?;
        }
        hand_off(&state, &mut ctx, route, &body).await
    }
    .await;
    let (mut reply, error) = match outcome {
        Ok(reply) => (reply, None),
        Err(r) => (
            r.reply(&ctx.request_id),
            Some(AuditError {
                code: r.code.as_str().to_string(),
                message: r.message.into_owned(),
            }),
        ),
    };
    if let Some(headers) = ctx.rate_headers.take() {
        for (n, v) in headers {
            reply.headers.insert(n, v);
        }
    }
    // An unread body (a rejection before or while reading) leaves the connection unusable.
    let body_pending = ctx.body.is_none()
        && (ctx.declared_len.unwrap_or(0) > 0 || ctx.parts.headers.contains_key(header::TRANSFER_ENCODING));
    if body_pending {
        reply
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let prefers_receipt = crate::receipt::prefers_receipt(&ctx.parts.headers);
    let recorded = record(&state, &ctx, &reply, error, prefers_receipt || ctx.route_receipt).await;
    let recorded_status = reply.status.as_u16();
    let final_id = match recorded {
        Ok(recorded) => {
            if let Some(receipt) = recorded.receipt.and_then(|r| HeaderValue::from_str(&r).ok()) {
                reply.headers.insert(HeaderName::from_static(RECEIPT_HEADER), receipt);
                if prefers_receipt {
                    // RFC 7240 section 3: the preferences honoured.
                    reply
                        .headers
                        .insert(PREFERENCE_APPLIED, HeaderValue::from_static(RECEIPT_PREFERENCE));
                }
                // RFC 7240 section 2: a response that applying a preference may change lists
                // Prefer in Vary (a receipt belongs to one request: no cache should reuse it).
                reply.headers.append(header::VARY, HeaderValue::from_static("prefer"));
            }
            recorded.request_id
        }
        Err(()) => {
            reply = Rejection::of(ErrorCode::RecordingUnavailable).reply(&ctx.request_id);
            ctx.request_id.clone()
        }
    };
    drop(ctx._permits);
    let delivered = !ctx.client_gone.is_set();
    tracing::info!(
        target: "tollgate::access",
        request_id = %final_id,
        method = %truncate(ctx.parts.method.as_str(), 32),
        path = %truncate(ctx.parts.uri.path(), 256),
        route = ctx.route.as_deref().unwrap_or("-"),
        status = if delivered { reply.status.as_u16() } else { ErrorCode::ClientClosedRequest.status() },
        recorded_status,
        invoked = ctx.invoked,
        delivered,
        latency_ms = (started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );

    // Phase 6: the answer.
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = reply.headers;
    if let Ok(v) = HeaderValue::from_str(&final_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_is_the_entry_the_trusted_proxy_appended() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 1.2.3.4"));
        assert_eq!(client_ip(&h, peer, 1).to_string(), "1.2.3.4");
        assert_eq!(client_ip(&h, peer, 2).to_string(), "6.6.6.6");
        assert_eq!(client_ip(&h, peer, 3), peer);
        assert_eq!(client_ip(&h, peer, 0), peer);
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(&h, peer, 1), peer);
        assert_eq!(client_ip(&HeaderMap::new(), peer, 1), peer);
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            hex_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_functions_error_answer_names_its_code() {
        let reply = |status: u16, body: &[u8]| FunctionReply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::copy_from_slice(body),
        };
        let e = tollgate_core::apierror::problem_json(ErrorCode::InvalidParameter, "m", "r");
        assert_eq!(
            function_error_code(&reply(400, &e)).as_deref(),
            Some("invalid_parameter")
        );
        assert_eq!(function_error_code(&reply(200, &e)), None);
        assert_eq!(function_error_code(&reply(500, b"plain text")), None);
    }

    #[tokio::test]
    async fn a_signal_wakes_waiters_that_came_before_and_after() {
        let s = Arc::new(Signal::default());
        let early = tokio::spawn({
            let s = s.clone();
            async move { s.fired().await }
        });
        tokio::task::yield_now().await;
        s.fire();
        early.await.unwrap();
        s.fired().await;
        assert!(s.is_set());
    }
}
