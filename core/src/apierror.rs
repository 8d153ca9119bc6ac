//! Every error tollgate answers with, in one table: its stable code, HTTP status and title
//! ([`ErrorCode`]), shared by the ingress and the functions, and the body every error response
//! carries: RFC 9457 problem details (`application/problem+json`), with our stable `code` and
//! the `request_id` as extension members. `docs/errors.md` is generated from the same table
//! ([`markdown_table`]; a test keeps it so).

use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:literal, $message:literal),)*) => {
        /// A stable, machine-readable error (snake_case on the wire).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = $message]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as sent (`error.code`).
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status it is answered with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The problem type's title (RFC 9457 `title`: the same for every occurrence), also
            /// the `detail` when there is nothing more specific to say (never a backend's own
            /// text).
            pub const fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $message,)* }
            }
        }
    };
}

error_codes! {
    InvalidHost = ("invalid_host", 400, "the request needs exactly one valid Host header"),
    InvalidTarget = ("invalid_target", 400, "only origin-form request targets are accepted"),
    InvalidBody = ("invalid_body", 400, "the request body could not be read"),
    MalformedRequest = ("malformed_request", 400, "the request could not be parsed as HTTP/1.1"),
    InvalidParameter = ("invalid_parameter", 400, "a query parameter is invalid"),
    Unauthenticated = ("unauthenticated", 401, "valid credentials are required"),
    InsufficientScope = ("insufficient_scope", 403, "the credentials do not grant a scope this route requires"),
    RouteNotFound = ("route_not_found", 404, "no route for this path"),
    RequestNotFound = ("request_not_found", 404, "no request with this id"),
    MethodNotAllowed = ("method_not_allowed", 405, "this method is not allowed here"),
    BodyTimeout = ("body_timeout", 408, "the request body was not received in time"),
    HeaderTimeout = ("header_timeout", 408, "the request head was not received in time"),
    ProofNotReady = ("proof_not_ready", 409, "the request's audit event is not in a signed checkpoint yet; retry later"),
    PayloadTooLarge = ("payload_too_large", 413, "the request body is too large"),
    UriTooLong = ("uri_too_long", 414, "the request target is too long"),
    RateLimited = ("rate_limited", 429, "too many requests from this caller; retry later"),
    HeadersTooLarge = ("headers_too_large", 431, "the request headers are too large"),
    ClientClosedRequest = ("client_closed_request", 499, "the client closed the connection before the answer"),
    FunctionError = ("function_error", 502, "the function failed to handle the request"),
    InvalidFunctionResponse = ("invalid_function_response", 502, "the function returned an invalid response"),
    FunctionUnavailable = ("function_unavailable", 502, "the function could not be reached"),
    FunctionThrottled = ("function_throttled", 503, "the function is busy; retry later"),
    Overloaded = ("overloaded", 503, "too many requests in flight; retry later"),
    RecordingUnavailable = ("recording_unavailable", 503, "the request could not be recorded; retry later"),
    ShuttingDown = ("shutting_down", 503, "the server stopped before the function answered"),
    CredentialsUnverifiable = ("credentials_unverifiable", 503, "the credentials could not be checked; retry later"),
    RequestLogUnavailable = ("request_log_unavailable", 503, "a backend is unavailable; retry later"),
    AuditStoreUnavailable = ("audit_store_unavailable", 503, "a backend is unavailable; retry later"),
    AuditIntegrityError = ("audit_integrity_error", 500, "the audit object does not match its record"),
    FunctionTimeout = ("function_timeout", 504, "the function did not answer in time"),
}

/// The code of a record whose request the ingress never answered: it stopped (crashed, was
/// killed, lost its task) after the write-ahead intent of a `record = "before"` route, so the
/// function may have run. Never sent to a client; the record's status is 0.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";

/// The message of an `outcome_unknown` audit event.
pub const OUTCOME_UNKNOWN_MESSAGE: &str =
    "the ingress stopped after the write-ahead intent and before the answer; the function may have run";

impl ErrorCode {
    /// Whether a client should retry later (429, 503 and `proof_not_ready`: these carry
    /// `Retry-After`).
    pub const fn is_retryable(self) -> bool {
        matches!(self.status(), 429 | 503) || matches!(self, ErrorCode::ProofNotReady)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The media type of every error body (RFC 9457 section 3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the problem types live: `type` is `/problems/<code>`, a relative reference with the full
/// path (the form RFC 9457 section 3.1.1 recommends for relative type URIs). The ingress answers
/// it with the type's description ([`problem_type_json`]); `docs/errors.md` lists them all.
pub const PROBLEM_TYPE_PREFIX: &str = "/problems/";

/// The request log's path for one request: a problem's `instance` (the occurrence, which a
/// caller with the scope can look up).
pub const INSTANCE_PREFIX: &str = "/v1/requests/";

/// An RFC 9457 problem details object with tollgate's extension members.
#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The problem type's summary ([`ErrorCode::message`]).
    pub title: &'static str,
    /// The HTTP status of the response (the same as the response's own).
    pub status: u16,
    /// This occurrence: what exactly was wrong (never a backend's own text).
    pub detail: &'a str,
    /// `/v1/requests/<request id>`: this occurrence's record in the request log (absent only
    /// when a function is called without a request id, outside the ingress).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension: the stable, machine-readable code (snake_case).
    pub code: &'static str,
    /// Extension: the request id, also in the `x-request-id` header.
    pub request_id: &'a str,
}

impl<'a> Problem<'a> {
    /// The problem for `code`, with `detail` and the request's id.
    pub fn new(code: ErrorCode, detail: &'a str, request_id: &'a str) -> Self {
        Problem {
            type_uri: format!("{PROBLEM_TYPE_PREFIX}{}", code.as_str()),
            title: code.message(),
            status: code.status(),
            detail,
            instance: (!request_id.is_empty()).then(|| format!("{INSTANCE_PREFIX}{request_id}")),
            code: code.as_str(),
            request_id,
        }
    }
}

/// Serializes the problem body (`application/problem+json`).
pub fn problem_json(code: ErrorCode, detail: &str, request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&Problem::new(code, detail, request_id))
        .unwrap_or_else(|_| br#"{"type":"about:blank","title":"Internal Server Error","status":500}"#.to_vec())
}

impl ErrorCode {
    /// The code named `name` (as sent in `code`), if it is one of the table's.
    pub fn from_code(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

/// The code a problem type URI (`/problems/<code>`) names, if it is one of the table's.
pub fn code_of_type(path: &str) -> Option<ErrorCode> {
    ErrorCode::from_code(path.strip_prefix(PROBLEM_TYPE_PREFIX)?)
}

/// What a problem type URI resolves to: the type's description (RFC 9457 encourages resolvable
/// type URIs), in JSON.
pub fn problem_type_json(code: ErrorCode) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": format!("{PROBLEM_TYPE_PREFIX}{}", code.as_str()),
        "code": code.as_str(),
        "title": code.message(),
        "status": code.status(),
        "retry_after": code.is_retryable(),
    }))
    .unwrap_or_default()
}

/// `docs/errors.md`'s table, generated from [`ErrorCode::ALL`].
pub fn markdown_table() -> String {
    let mut out = String::from("| `code` | status | `type` | title | retry |\n|---|---|---|---|---|\n");
    for c in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | `{PROBLEM_TYPE_PREFIX}{}` | {} | {} |\n",
            c.as_str(),
            c.status(),
            c.as_str(),
            c.message(),
            if c.is_retryable() { "`Retry-After`" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&problem_json(ErrorCode::RequestNotFound, "no \"x\"", "r1")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "/problems/request_not_found",
                "title": "no request with this id",
                "status": 404,
                "detail": "no \"x\"",
                "instance": "/v1/requests/r1",
                "code": "request_not_found",
                "request_id": "r1",
            })
        );
    }

    #[test]
    fn errors_doc_is_the_table() {
        let doc = include_str!("../../docs/errors.md");
        let table = markdown_table();
        assert!(
            doc.contains(&table),
            "docs/errors.md does not hold the error table as the code has it; paste this:\n\n{table}"
        );
    }

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
            assert!((400..600).contains(&c.status()), "{c}");
            assert!(!c.message().is_empty());
        }
    }
}
