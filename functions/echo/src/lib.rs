//! `echo`: the sample business function. Answers with what it was given (method, path,
//! query, headers with secrets redacted, body), as JSON.
//!
//! `?delay_ms=N` makes it wait N milliseconds first (0 to [`MAX_DELAY_MS`]), so that slow
//! functions, timeouts and clients that leave early can be shown on the shipped system; any other
//! value is a 400. Every invocation is counted ([`invocations`]; logged by
//! the Lambda binary), which is how the fault soak counts what was executed.

use base64::Engine;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tollgate_core::apierror;
use tollgate_core::redact::Redactor;

/// Longest `delay_ms` accepted (larger is a 400): half the shipped echo routes' 10 s timeout, so
/// that a valid delay never ends in a 504 (`api/openapi.json` says the same).
pub const MAX_DELAY_MS: u64 = 5_000;

static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

/// How many times this process has run the handler.
pub fn invocations() -> u64 {
    INVOCATIONS.load(Ordering::Relaxed)
}

/// What `echo` answers.
#[derive(Debug, Serialize)]
pub struct Echo {
    /// HTTP method.
    pub method: String,
    /// Path as received (percent-encoded).
    pub path: String,
    /// Query parameters, decoded, each with all its values.
    pub query: BTreeMap<String, Vec<String>>,
    /// Headers, secret ones redacted.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body: text, or base64 when it is not UTF-8.
    pub body: String,
    /// Whether `body` is base64.
    pub is_base64_encoded: bool,
    /// Body size in bytes.
    pub body_bytes: usize,
    /// How long it waited before answering (`delay_ms`, capped).
    pub delayed_ms: u64,
}

/// Builds the echo of a request.
pub fn echo(req: &Request) -> Echo {
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let params = req.query_string_parameters();
    for (name, _) in params.iter() {
        if !query.contains_key(name) {
            let values = params
                .all(name)
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect();
            query.insert(name.to_string(), values);
        }
    }
    let raw = req.raw_http_path();
    let path = if raw.is_empty() {
        req.uri().path().to_string()
    } else {
        raw.to_string()
    };
    let bytes: &[u8] = req.body().as_ref();
    let (body, is_base64_encoded) = match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(bytes), true),
    };
    Echo {
        method: req.method().to_string(),
        path,
        query,
        headers: Redactor::default().headers(req.headers()),
        body,
        is_base64_encoded,
        body_bytes: bytes.len(),
        delayed_ms: 0,
    }
}

/// `delay_ms`: absent is 0; present must be a whole number of milliseconds up to
/// [`MAX_DELAY_MS`].
pub fn delay(value: Option<&str>) -> Result<Duration, String> {
    match value {
        None => Ok(Duration::ZERO),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= MAX_DELAY_MS)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("delay_ms must be a whole number of milliseconds from 0 to {MAX_DELAY_MS}")),
    }
}

fn json(status: u16, content_type: &'static str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::Text(body))
        .unwrap_or_default()
}

/// The request id the ingress gave the request (`x-request-id`), or empty outside it.
pub fn request_id(req: &Request) -> &str {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The Lambda handler. It logs nothing itself: in embedded mode it runs inside the ingress,
/// whose access log already has a line per request (a second line per request cost 14% CPU
/// per request at 64 connections); the Lambda binary logs each invocation (`main.rs`).
pub async fn handle(req: Request) -> Result<Response<Body>, Infallible> {
    INVOCATIONS.fetch_add(1, Ordering::Relaxed);
    let request_id = request_id(&req);
    let wait = match delay(req.query_string_parameters().first("delay_ms")) {
        Ok(d) => d,
        Err(message) => {
            let body = apierror::problem_json(apierror::ErrorCode::InvalidParameter, &message, request_id);
            return Ok(json(
                400,
                apierror::PROBLEM_JSON,
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let mut out = echo(&req);
    out.delayed_ms = wait.as_millis() as u64;
    Ok(json(
        200,
        "application/json",
        serde_json::to_string(&out).unwrap_or_else(|_| "{}".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::http_fn::call_http;

    const EVENT: &str = r#"{
      "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1"}},
      "httpMethod": "POST",
      "path": "/v1/echo/a%20b",
      "multiValueQueryStringParameters": {"x": ["1", "2"], "y": ["a%20b"]},
      "multiValueHeaders": {"content-type": ["text/plain"], "authorization": ["Bearer canary"], "host": ["h"]},
      "isBase64Encoded": true,
      "body": "/wA="
    }"#;

    #[tokio::test]
    async fn echoes_through_the_alb_contract() {
        let out = call_http(&handle, EVENT.as_bytes()).await.unwrap();
        let resp: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(resp["statusCode"], 200);
        assert_eq!(resp["isBase64Encoded"], false);
        let echo: serde_json::Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/v1/echo/a%20b");
        assert_eq!(echo["query"]["x"], serde_json::json!(["1", "2"]));
        assert_eq!(echo["query"]["y"], serde_json::json!(["a b"]));
        assert_eq!(echo["body"], "/wA=");
        assert_eq!(echo["is_base64_encoded"], true);
        assert_eq!(echo["body_bytes"], 2);
        assert_eq!(echo["headers"]["authorization"], serde_json::json!(["[REDACTED]"]));
        assert!(!out.windows(6).any(|w| w == b"canary"));
        assert_eq!(echo["delayed_ms"], 0);
    }

    fn with_query(q: &str) -> String {
        EVENT.replace(r#"{"x": ["1", "2"], "y": ["a%20b"]}"#, q)
    }

    #[test]
    fn delay_ms_is_a_whole_number_up_to_the_maximum() {
        assert_eq!(delay(None), Ok(Duration::ZERO));
        assert_eq!(delay(Some("250")), Ok(Duration::from_millis(250)));
        assert_eq!(delay(Some("5000")), Ok(Duration::from_millis(MAX_DELAY_MS)));
        for bad in ["-1", "1.5", "", "ten", "5001", "999999", "18446744073709551616"] {
            assert!(delay(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn delay_ms_waits_and_a_bad_value_is_a_400() {
        let before = invocations();
        let started = std::time::Instant::now();
        let out = call_http(&handle, with_query(r#"{"delay_ms": ["250"]}"#).as_bytes())
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        let resp: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let echo: serde_json::Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        assert_eq!(echo["delayed_ms"], 250);

        let out = call_http(&handle, with_query(r#"{"delay_ms": ["-1"]}"#).as_bytes())
            .await
            .unwrap();
        let resp: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(resp["statusCode"], 400);
        let err: serde_json::Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
        assert_eq!(resp["headers"]["content-type"], "application/problem+json");
        assert_eq!(err["code"], "invalid_parameter");
        assert_eq!(err["type"], "/problems/invalid_parameter");
        assert!(invocations() >= before + 2);
    }
}
