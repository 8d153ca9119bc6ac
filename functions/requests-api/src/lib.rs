//! `requests-api`: reads the request log.
//!
//! - `GET /v1/requests`: filters `since`, `until` (RFC 3339; since inclusive, until
//!   exclusive), `status`, `method`, `path_prefix`, `principal`; `limit` 1-1000 (default
//!   100); opaque `cursor`; newest first.
//! - `GET /v1/requests/{request_id}`: the record, and its audit event: from the outbox while
//!   pending, from its audit object once written.
//!
//! Who may read what: the caller is the principal the ingress verified and passed in
//! `x-tollgate-principal` (the ingress drops any copy a client sends). `requests:read` reads
//! every record; `requests:read:own` only records whose principal is the caller's, whatever
//! filter it passes (another principal's record is "not found", so its existence does not
//! leak); without either, or without a verified caller, nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use std::convert::Infallible;
use std::sync::Arc;
use tollgate_core::access::{Principal, PRINCIPAL_HEADER};
use tollgate_core::apierror::{problem_json, ErrorCode, PROBLEM_JSON};
use tollgate_core::model::{RecordQuery, RequestRecord, StoredRecord};
use tollgate_core::ports::{ObjectStore, RequestLog};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;
/// Query parameters `GET /v1/requests` accepts; any other is a 400 (typos should not
/// silently widen a query).
pub const LIST_PARAMS: &[&str] = &[
    "since",
    "until",
    "status",
    "method",
    "path_prefix",
    "principal",
    "limit",
    "cursor",
];

/// The scope that reads every record.
pub const SCOPE_READ_ALL: &str = "requests:read";
/// The scope that reads the caller's own records only.
pub const SCOPE_READ_OWN: &str = "requests:read:own";

/// Whose records a caller may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Every record (`requests:read`; the operator commands).
    All,
    /// Only records whose principal is this id (`requests:read:own`).
    Own(String),
}

impl Reader {
    /// The reader for the principal the ingress passed, or why it may read nothing.
    pub fn of(header: Option<&[u8]>) -> Result<Self, ApiError> {
        let refused = |why: &str| ApiError::new(ErrorCode::InsufficientScope, why.to_string());
        let header =
            header.ok_or_else(|| refused("no verified caller: this function answers through the tollgate ingress"))?;
        let principal: Principal =
            serde_json::from_slice(header).map_err(|_| refused("the caller could not be read"))?;
        if principal.has_scope(SCOPE_READ_ALL) {
            Ok(Self::All)
        } else if principal.has_scope(SCOPE_READ_OWN) {
            principal
                .id
                .map(Self::Own)
                .ok_or_else(|| refused("an anonymous caller has no records of its own"))
        } else {
            Err(refused(
                "reading the request log needs requests:read or requests:read:own",
            ))
        }
    }

    /// The query narrowed to what this reader may see; `None` when it can see nothing (a
    /// `requests:read:own` caller asking for another principal's records).
    pub fn narrow(&self, mut q: RecordQuery) -> Option<RecordQuery> {
        match self {
            Self::All => Some(q),
            Self::Own(id) => match &q.principal {
                Some(asked) if asked != id => None,
                _ => {
                    q.principal = Some(id.clone());
                    Some(q)
                }
            },
        }
    }

    /// Whether this reader may see a record.
    pub fn may_read(&self, record: &RequestRecord) -> bool {
        match self {
            Self::All => true,
            Self::Own(id) => record.principal.as_deref() == Some(id.as_str()),
        }
    }
}

/// The function, over its two ports.
#[derive(Clone)]
pub struct RequestsApi {
    log: Arc<dyn RequestLog>,
    store: Arc<dyn ObjectStore>,
    tlog: Option<(Arc<dyn tollgate_core::TlogStore>, Arc<dyn ObjectStore>)>,
}

/// An error answer: a code of the shared table, with a message of its own where it helps.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn of(code: ErrorCode) -> Self {
        Self::new(code, code.message())
    }

    fn bad_param(name: &str, why: &str) -> Self {
        Self::new(
            ErrorCode::InvalidParameter,
            format!("invalid query parameter {name}: {why}"),
        )
    }

    /// The code of the shared table it answers with.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The problem body it answers with (RFC 9457), for `request_id`.
    pub fn problem(&self, request_id: &str) -> Vec<u8> {
        problem_json(self.code, &self.message, request_id)
    }
}

/// A row as the API shows it.
#[derive(Serialize)]
struct RecordView<'a> {
    #[serde(flatten)]
    record: &'a RequestRecord,
    audit_key: Option<&'a str>,
}

#[derive(Serialize)]
struct ListBody<'a> {
    requests: Vec<RecordView<'a>>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct AuditView<'a> {
    state: &'static str,
    object_key: Option<&'a str>,
    event: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct GetBody<'a> {
    request: RecordView<'a>,
    audit: AuditView<'a>,
}

fn encode_cursor(r: &RequestRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        tollgate_core::clock::format(r.received_at),
        r.request_id
    ))
}

fn decode_cursor(text: &str) -> Option<(time::OffsetDateTime, String)> {
    let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some((tollgate_core::clock::parse_stored(at)?, id.to_string()))
}

/// Parses the list query parameters (already percent-decoded, as `lambda_http` gives them).
pub fn parse_list_query(params: &[(String, String)]) -> Result<RecordQuery, ApiError> {
    let mut q = RecordQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in params {
        let name = name.as_str();
        if !LIST_PARAMS.contains(&name) {
            return Err(ApiError::bad_param(name, "unknown parameter"));
        }
        if seen.contains(&name) {
            return Err(ApiError::bad_param(name, "given more than once"));
        }
        seen.push(name);
        match name {
            "since" | "until" => {
                let t = tollgate_core::clock::parse_rfc3339(value)
                    .ok_or_else(|| ApiError::bad_param(name, "expected an RFC 3339 timestamp"))?;
                if name == "since" {
                    q.since = Some(t);
                } else {
                    q.until = Some(t);
                }
            }
            "status" => {
                let s: u16 = value
                    .parse()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| ApiError::bad_param(name, "expected an HTTP status 100-599"))?;
                q.status = Some(s);
            }
            "method" => {
                if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(ApiError::bad_param(name, "expected an HTTP method"));
                }
                q.method = Some(value.to_ascii_uppercase());
            }
            "path_prefix" => {
                if !value.starts_with('/') || value.len() > 2048 {
                    return Err(ApiError::bad_param(name, "expected a path starting with /"));
                }
                q.path_prefix = Some(value.clone());
            }
            "principal" => {
                if value.is_empty() || value.len() > 512 {
                    return Err(ApiError::bad_param(name, "expected 1-512 characters"));
                }
                q.principal = Some(value.clone());
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| ApiError::bad_param(name, "expected a whole number 1-1000"))?;
            }
            "cursor" => {
                q.after =
                    Some(decode_cursor(value).ok_or_else(|| ApiError::bad_param(name, "not a cursor we issued"))?);
            }
            _ => unreachable!("checked against LIST_PARAMS"),
        }
    }
    if let (Some(since), Some(until)) = (q.since, q.until) {
        if since >= until {
            return Err(ApiError::bad_param("until", "must be after since"));
        }
    }
    Ok(q)
}

fn json_response(status: u16, body: Vec<u8>, request_id: &str) -> Response<Body> {
    response(status, "application/json", body, request_id)
}

fn response(status: u16, content_type: &str, body: Vec<u8>, request_id: &str) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store");
    if !request_id.is_empty() {
        b = b.header("x-request-id", request_id);
    }
    // Status and headers are valid by construction.
    b.body(Body::Text(String::from_utf8(body).unwrap_or_default()))
        .unwrap_or_default()
}

fn error_response(e: &ApiError, request_id: &str) -> Response<Body> {
    let body = e.problem(request_id);
    let mut resp = response(e.code.status(), PROBLEM_JSON, body, request_id);
    if e.code.is_retryable() {
        resp.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
    }
    resp
}

impl RequestsApi {
    /// The function over a request log and the audit object store.
    pub fn new(log: Arc<dyn RequestLog>, store: Arc<dyn ObjectStore>) -> Self {
        Self { log, store, tlog: None }
    }

    /// With the transparency log's state and the trail store holding its tiles, for
    /// `GET /v1/requests/{id}/proof` (without them every proof is `proof_not_ready`).
    pub fn with_tlog(mut self, tlog: Arc<dyn tollgate_core::TlogStore>, trail: Arc<dyn ObjectStore>) -> Self {
        self.tlog = Some((tlog, trail));
        self
    }

    /// The Lambda handler.
    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Infallible> {
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let outcome = self.route(&req).await;
        Ok(match outcome {
            Ok((status, body)) if body.starts_with(tollgate_tlog::proof::HEADER.as_bytes()) => {
                response(status, "text/plain; charset=utf-8", body, &request_id)
            }
            Ok((status, body)) => json_response(status, body, &request_id),
            Err(e) => error_response(&e, &request_id),
        })
    }

    async fn route(&self, req: &Request) -> Result<(u16, Vec<u8>), ApiError> {
        let raw = req.raw_http_path();
        let path = if raw.is_empty() { req.uri().path() } else { raw };
        let rest = path
            .strip_prefix("/v1/requests")
            .ok_or_else(|| ApiError::of(ErrorCode::RouteNotFound))?;
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return Err(ApiError::new(ErrorCode::MethodNotAllowed, "only GET is allowed"));
        }
        let reader = Reader::of(req.headers().get(PRINCIPAL_HEADER).map(|v| v.as_bytes()))?;
        match rest {
            "" | "/" => {
                let params = req.query_string_parameters();
                let mut pairs = Vec::new();
                for (name, _) in params.iter() {
                    for v in params.all(name).unwrap_or_default() {
                        pairs.push((name.to_string(), v.to_string()));
                    }
                }
                pairs.dedup();
                match reader.narrow(parse_list_query(&pairs)?) {
                    Some(q) => self.list(&q).await,
                    None => Ok((200, br#"{"requests":[],"next_cursor":null}"#.to_vec())),
                }
            }
            id => {
                let id = id.trim_start_matches('/');
                if let Some(id) = id.strip_suffix("/proof") {
                    if !tollgate_core::ids::is_valid_request_id(id) {
                        return Err(ApiError::of(ErrorCode::RequestNotFound));
                    }
                    return Ok((200, self.proof_as(id, &reader).await?.into_bytes()));
                }
                if !tollgate_core::ids::is_valid_request_id(id) {
                    return Err(ApiError::of(ErrorCode::RequestNotFound));
                }
                self.get_as(id, &reader).await
            }
        }
    }

    /// `GET /v1/requests`: one page of records, newest first, and the cursor of the next page.
    pub async fn list(&self, q: &RecordQuery) -> Result<(u16, Vec<u8>), ApiError> {
        let rows = self.log.query(q).await.map_err(|e| log_failure(&e))?;
        let next_cursor = (rows.len() == q.limit)
            .then(|| rows.last().map(|r| encode_cursor(&r.record)))
            .flatten();
        let body = ListBody {
            requests: rows
                .iter()
                .map(|r| RecordView {
                    record: &r.record,
                    audit_key: r.audit_key.as_deref(),
                })
                .collect(),
            next_cursor,
        };
        Ok((200, serde_json::to_vec(&body).unwrap_or_default()))
    }

    /// `GET /v1/requests/{id}`: the record and its audit event (from its object once written).
    pub async fn get(&self, id: &str) -> Result<(u16, Vec<u8>), ApiError> {
        self.get_as(id, &Reader::All).await
    }

    /// The row of `id` if this reader may see it; another principal's record is not found, so
    /// its existence does not leak.
    async fn readable_row(&self, id: &str, reader: &Reader) -> Result<StoredRecord, ApiError> {
        self.log
            .get(id)
            .await
            .map_err(|e| log_failure(&e))?
            .filter(|r| reader.may_read(&r.record))
            .ok_or_else(|| ApiError::of(ErrorCode::RequestNotFound))
    }

    /// [`Self::get`] for a reader: another principal's record is not found.
    pub async fn get_as(&self, id: &str, reader: &Reader) -> Result<(u16, Vec<u8>), ApiError> {
        let row = self.readable_row(id, reader).await?;
        let event_text: Option<String> = match (&row.audit_key, &row.audit_payload) {
            (Some(key), _) => Some(self.event_from_object(key, id).await?),
            (None, Some(payload)) => Some(payload.clone()),
            (None, None) => None,
        };
        let event: Option<Box<RawValue>> = event_text.and_then(|t| RawValue::from_string(t).ok());
        let body = GetBody {
            request: RecordView {
                record: &row.record,
                audit_key: row.audit_key.as_deref(),
            },
            audit: AuditView {
                state: if row.audit_key.is_some() { "written" } else { "pending" },
                object_key: row.audit_key.as_deref(),
                event: event.as_deref(),
            },
        };
        Ok((200, serde_json::to_vec(&body).unwrap_or_default()))
    }

    /// `GET /v1/requests/{id}/proof`: the C2SP tlog-proof of the request's audit event
    /// (`docs/transparency-log.md`); another principal's record is not found, and an event not
    /// yet in a signed checkpoint is `proof_not_ready` (retry: the writer integrates after
    /// each batch).
    pub async fn proof_as(&self, id: &str, reader: &Reader) -> Result<String, ApiError> {
        let row = self.readable_row(id, reader).await?;
        let Some((tlog, trail)) = &self.tlog else {
            return Err(ApiError::of(ErrorCode::ProofNotReady));
        };
        use tollgate_core::translog::{prove, ProofOutcome, TlogError};
        match prove(&**tlog, &**trail, &row).await {
            Ok(ProofOutcome::Ready(proof)) => Ok(proof),
            Ok(ProofOutcome::NotSequenced) if row.audit_key.is_some() => Err(ApiError::new(
                ErrorCode::RequestNotFound,
                "this request was audited before the transparency log existed: it has no proof",
            )),
            Ok(ProofOutcome::NotSequenced) => Err(ApiError::new(
                ErrorCode::ProofNotReady,
                "the request's audit event is not written yet; retry later",
            )),
            Ok(ProofOutcome::NotIntegrated(_)) => Err(ApiError::of(ErrorCode::ProofNotReady)),
            Err(TlogError::Log(e)) => Err(log_failure(&e)),
            Err(TlogError::Store(e)) => {
                tracing::error!(error = %e, "tile read failed");
                Err(ApiError::of(ErrorCode::AuditStoreUnavailable))
            }
            Err(e) => {
                tracing::error!(request_id = id, error = %e, "proof failed");
                Err(ApiError::new(
                    ErrorCode::AuditIntegrityError,
                    "the transparency log's tiles do not match its checkpoint",
                ))
            }
        }
    }

    async fn event_from_object(&self, key: &str, request_id: &str) -> Result<String, ApiError> {
        let object = self.store.get(key).await.map_err(|e| {
            tracing::error!(key, error = %e, "audit object read failed");
            ApiError::of(ErrorCode::AuditStoreUnavailable)
        })?;
        let integrity = || {
            ApiError::new(
                ErrorCode::AuditIntegrityError,
                "the audit object does not hold this request's event",
            )
        };
        let object = object.ok_or_else(|| {
            tracing::error!(key, request_id, "audit object missing");
            integrity()
        })?;
        let lines = tollgate_core::audit::decode(&object).map_err(|e| {
            tracing::error!(key, error = %e, "audit object unreadable");
            integrity()
        })?;
        lines
            .into_iter()
            .find(|l| tollgate_core::audit::event_request_id(l).ok().as_deref() == Some(request_id))
            .ok_or_else(integrity)
    }
}

fn log_failure(e: &tollgate_core::LogError) -> ApiError {
    tracing::error!(error = %e, "request log read failed");
    ApiError::of(ErrorCode::RequestLogUnavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn list_parameters_are_validated_and_named() {
        let q = parse_list_query(&p(&[("status", "404"), ("method", "post"), ("limit", "7")])).unwrap();
        assert_eq!(q.status, Some(404));
        assert_eq!(q.method.as_deref(), Some("POST"));
        assert_eq!(q.limit, 7);
        for (name, value) in [
            ("limit", "0"),
            ("limit", "1001"),
            ("status", "abc"),
            ("since", "yesterday"),
            ("path_prefix", "v1"),
            ("cursor", "!!"),
            ("bogus", "1"),
        ] {
            let e = parse_list_query(&p(&[(name, value)])).unwrap_err();
            assert_eq!(e.code.status(), 400);
            assert!(e.message.contains(name), "{e:?}");
        }
        let e = parse_list_query(&p(&[
            ("since", "2026-01-02T00:00:00Z"),
            ("until", "2026-01-01T00:00:00Z"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("until"));
    }

    #[test]
    fn readers_see_only_what_their_scope_grants() {
        let p = |scopes: &[&str], id: Option<&str>| {
            serde_json::to_vec(&Principal {
                kind: tollgate_core::access::PrincipalKind::ApiKey,
                id: id.map(String::from),
                name: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            })
            .unwrap()
        };
        assert_eq!(
            Reader::of(Some(&p(&["requests:read", "x"], Some("k1")))).unwrap(),
            Reader::All
        );
        let own = Reader::of(Some(&p(&["requests:read:own"], Some("k1")))).unwrap();
        assert_eq!(own, Reader::Own("k1".into()));
        for refused in [
            Reader::of(None),
            Reader::of(Some(b"not json")),
            Reader::of(Some(&p(&["other"], Some("k1")))),
            Reader::of(Some(&p(&["requests:read:own"], None))),
        ] {
            assert_eq!(refused.unwrap_err().code(), ErrorCode::InsufficientScope);
        }
        let q = own.narrow(RecordQuery::default()).unwrap();
        assert_eq!(q.principal.as_deref(), Some("k1"));
        let asked_own = RecordQuery {
            principal: Some("k1".into()),
            ..Default::default()
        };
        assert!(own.narrow(asked_own).is_some());
        let asked_other = RecordQuery {
            principal: Some("k2".into()),
            ..Default::default()
        };
        assert!(own.narrow(asked_other.clone()).is_none());
        assert_eq!(
            Reader::All.narrow(asked_other).unwrap().principal.as_deref(),
            Some("k2")
        );
    }

    /// Found by the `cursor` fuzz target (fuzz/): a timestamp whose UTC time falls past year
    /// 9999 panicked the function (`time`'s `to_offset`); it is a 400 like any bad value.
    #[test]
    fn timestamps_past_year_9999_in_utc_are_a_400_not_a_panic() {
        let late = "9999-12-31T23:59:59-01:00";
        let cursor = URL_SAFE_NO_PAD.encode(format!("{late}|abc"));
        for (name, value) in [("since", late), ("until", late), ("cursor", cursor.as_str())] {
            let e = parse_list_query(&p(&[(name, value)])).unwrap_err();
            assert_eq!(e.code.status(), 400, "{name}");
            assert!(e.message.contains(name), "{e:?}");
        }
    }

    #[test]
    fn cursors_round_trip() {
        let at = tollgate_core::clock::parse_rfc3339("2026-11-25T22:10:04.123456Z").unwrap();
        let text = URL_SAFE_NO_PAD.encode(format!("{}|abc", tollgate_core::clock::format(at)));
        assert_eq!(decode_cursor(&text), Some((at, "abc".to_string())));
    }
}
