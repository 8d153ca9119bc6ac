//! One request, from head to recorded response.

use crate::alb::{self, FunctionReply};
use crate::config::IngressConfig;
use crate::recorder::RecorderHandle;
use crate::routes::{RouteMatch, RouteTable};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tollgate_core::apierror::error_json;
use tollgate_core::model::{AuditError, AuditEvent, AuditRequest, AuditResponse, AuditSource, RequestRecord};
use tollgate_core::ports::{InvokeError, Invoker};
use tollgate_core::{clock, ids};

/// Longest `User-Agent` / principal kept in a record.
const MAX_META_CHARS: usize = 512;
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

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
    /// Set on SIGTERM: health checks fail so the load balancer stops sending.
    pub draining: AtomicBool,
}

/// A decision of the ingress that ends the request with an error.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    close: bool,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            close: false,
        }
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn from_invoke(e: &InvokeError) -> Self {
        match e {
            InvokeError::Function { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "function_error",
                "the function failed to handle the request",
            ),
            InvokeError::Throttled { retry_after } => {
                let mut r = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "function_throttled",
                    "the function is busy; retry later",
                );
                let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
                r.headers.push((header::RETRY_AFTER, HeaderValue::from(secs)));
                r
            }
            InvokeError::PayloadTooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request is too large for the function",
            ),
            InvokeError::UnknownFunction(_) | InvokeError::Unavailable(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "function_unavailable",
                "the function could not be reached",
            ),
        }
    }
}

/// Facts gathered about a request as it goes, for its record and audit event.
struct Exchange {
    route: Option<String>,
    function: Option<String>,
    body_read: Option<Bytes>,
    declared_len: Option<u64>,
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

fn check_head(config: &IngressConfig, parts: &http::request::Parts) -> Result<(), Rejection> {
    let (bytes, count) = head_size(parts);
    if bytes > config.limits.max_header_bytes || count > config.limits.max_headers {
        return Err(Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
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
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "the request needs exactly one valid Host header",
        )
        .closing());
    }
    // Only origin-form targets are routed: absolute-form is for proxies, `*` for OPTIONS to the server.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() || !parts.uri.path().starts_with('/') {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "only origin-form request targets are accepted",
        ));
    }
    Ok(())
}

async fn read_body(config: &IngressConfig, body: Incoming, ex: &mut Exchange) -> Result<Bytes, Rejection> {
    let limit = config.limits.max_body_bytes;
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
        .closing()
    };
    if ex.declared_len.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(ex.declared_len.unwrap_or(0).min(limit) as usize);
    let read = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read",
                )
                .closing()
            })?;
            if let Ok(data) = frame.into_data() {
                if (buf.len() + data.len()) as u64 > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(config.limits.body_timeout, read).await {
        Ok(Ok(())) => Ok(buf.freeze()),
        Ok(Err(r)) => {
            ex.declared_len = Some(buf.len() as u64).max(ex.declared_len);
            Err(r)
        }
        Err(_) => {
            ex.declared_len = Some(buf.len() as u64);
            Err(Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body was not received in time",
            )
            .closing())
        }
    }
}

async fn process(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &str,
    trace_id: &str,
    ex: &mut Exchange,
) -> Result<FunctionReply, Rejection> {
    let config = &*state.config;
    check_head(config, parts)?;
    let route = match state.routes.lookup(&parts.method, parts.uri.path()) {
        RouteMatch::Found(r) => r,
        RouteMatch::NotFound => {
            return Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "route_not_found",
                "no route for this path",
            ))
        }
        RouteMatch::MethodNotAllowed(allow) => {
            let list = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            let mut r = Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("method {} is not allowed here", truncate(parts.method.as_str(), 32)),
            );
            if let Ok(v) = HeaderValue::from_str(&list) {
                r.headers.push((header::ALLOW, v));
            }
            return Err(r);
        }
    };
    ex.route = Some(route.pattern.clone());
    ex.function = Some(route.function.clone());
    let body = read_body(config, body, ex).await?;
    ex.body_read = Some(body.clone());

    let mut headers = parts.headers.clone();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        headers.insert(X_AMZN_TRACE_ID, v);
    }
    let event = alb::request_event(
        &config.target_group_arn,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &headers,
        &body,
    );
    let invoked = tokio::time::timeout(route.timeout, state.invoker.invoke(&route.function, Bytes::from(event))).await;
    let payload = match invoked {
        Err(_) => {
            return Err(Rejection::new(
                StatusCode::GATEWAY_TIMEOUT,
                "function_timeout",
                "the function did not answer in time",
            ));
        }
        Ok(Err(e)) => {
            match &e {
                InvokeError::Function { error_type, .. } => {
                    tracing::warn!(request_id, function = %route.function, error_type = %truncate(error_type, 128), "function error")
                }
                other => tracing::warn!(request_id, function = %route.function, error = %other, "invoke failed"),
            }
            return Err(Rejection::from_invoke(&e));
        }
        Ok(Ok(p)) => p,
    };
    alb::parse_response(&payload).map_err(|why| {
        tracing::warn!(request_id, function = %route.function, why = %truncate(&why, 256), "invalid function response");
        Rejection::new(
            StatusCode::BAD_GATEWAY,
            "invalid_function_response",
            "the function returned an invalid response",
        )
    })
}

fn rejection_response(r: &Rejection, request_id: &str) -> FunctionReply {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (n, v) in &r.headers {
        headers.insert(n.clone(), v.clone());
    }
    if r.close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    FunctionReply {
        status: r.status,
        headers,
        body: Bytes::from(error_json(r.code, &r.message, request_id)),
    }
}

fn health(state: &AppState, request_id: &str) -> Response<Full<Bytes>> {
    let draining = state.draining.load(Ordering::Relaxed);
    let (status, body) = if draining {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
    } else {
        (StatusCode::OK, r#"{"status":"ok"}"#)
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    resp
}

/// Handles one request: route, hand off, record, answer.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let received_at = clock::now();
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let client_id = header_str(&parts.headers, &X_REQUEST_ID)
        .filter(|id| ids::is_valid_request_id(id))
        .map(String::from);
    let client_chosen_id = client_id.is_some();
    let request_id = client_id.unwrap_or_else(ids::new_request_id);
    if parts.uri.path() == "/healthz" && (parts.method == Method::GET || parts.method == Method::HEAD) {
        return health(&state, &request_id);
    }
    let trace_id = header_str(&parts.headers, &X_AMZN_TRACE_ID)
        .filter(|t| ids::is_valid_trace_id(t))
        .map(String::from)
        .unwrap_or_else(ids::new_trace_id);
    let declared_len = header_str(&parts.headers, &header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let mut ex = Exchange {
        route: None,
        function: None,
        body_read: None,
        declared_len,
    };
    let outcome = process(&state, &parts, body, &request_id, &trace_id, &mut ex).await;
    let (mut reply, error) = match outcome {
        Ok(reply) => (reply, None),
        Err(r) => {
            let reply = rejection_response(&r, &request_id);
            (
                reply,
                Some(AuditError {
                    code: r.code.to_string(),
                    message: r.message,
                }),
            )
        }
    };
    // An unread body (a rejection before or while reading) leaves the connection unusable.
    let body_pending = ex.body_read.is_none()
        && (ex.declared_len.unwrap_or(0) > 0 || parts.headers.contains_key(header::TRANSFER_ENCODING));
    if body_pending {
        reply
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;

    let config = &*state.config;
    let redactor = &config.redactor;
    let ip = client_ip(&parts.headers, peer.ip(), config.trusted_proxies).to_string();
    let user_agent = header_str(&parts.headers, &header::USER_AGENT).map(|s| truncate(s, MAX_META_CHARS));
    let principal = config
        .principal_header
        .as_ref()
        .and_then(|h| header_str(&parts.headers, h))
        .filter(|p| !p.is_empty())
        .map(|s| truncate(s, MAX_META_CHARS));
    let query = parts.uri.query().map(|q| redactor.query(q));
    let request_bytes = ex
        .body_read
        .as_ref()
        .map_or(ex.declared_len.unwrap_or(0), |b| b.len() as u64);
    let record = RequestRecord {
        request_id: request_id.clone(),
        event_id: ids::new_request_id(),
        trace_id: Some(trace_id.clone()),
        received_at,
        method: truncate(parts.method.as_str(), 32),
        path: truncate(parts.uri.path(), 2048),
        query: query.clone(),
        route: ex.route.clone(),
        function_name: ex.function.clone(),
        status: reply.status.as_u16(),
        latency_ms,
        client_ip: Some(ip.clone()),
        user_agent: user_agent.clone(),
        principal: principal.clone(),
        request_bytes,
        response_bytes: reply.body.len() as u64,
        error_code: error.as_ref().map(|e| e.code.clone()),
    };
    let event = AuditEvent {
        event_version: tollgate_core::model::AUDIT_EVENT_VERSION.to_string(),
        event_id: record.event_id.clone(),
        event_time: received_at,
        request_id: request_id.clone(),
        trace_id: Some(trace_id),
        source: AuditSource {
            ip: Some(ip),
            user_agent,
        },
        principal,
        request: AuditRequest {
            method: record.method.clone(),
            path: record.path.clone(),
            query,
            headers: redactor.headers(&parts.headers),
            body_sha256: ex.body_read.as_deref().map(hex_sha256),
            body_bytes: request_bytes,
        },
        route: ex.route,
        function_name: ex.function,
        response: AuditResponse {
            status: reply.status.as_u16(),
            headers: redactor.headers(&reply.headers),
            body_sha256: hex_sha256(&reply.body),
            body_bytes: reply.body.len() as u64,
        },
        latency_ms,
        error,
    };
    let (status, route) = (record.status, record.route.clone());
    let final_id = match state.recorder.record(record, event, client_chosen_id).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(request_id = %request_id, error = %e, "request could not be recorded; answering 503");
            let r = Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "recording_unavailable",
                "the request could not be recorded; retry later",
            );
            reply = rejection_response(&r, &request_id);
            request_id.clone()
        }
    };
    tracing::info!(
        target: "tollgate::access",
        request_id = %final_id,
        method = %truncate(parts.method.as_str(), 32),
        path = %truncate(parts.uri.path(), 256),
        route = route.as_deref().unwrap_or("-"),
        status = reply.status.as_u16(),
        recorded_status = status,
        latency_ms = (started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
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
}
