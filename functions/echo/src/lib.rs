//! `echo`: the sample business function. Answers with what it was given (method, path,
//! query, headers with secrets redacted, body), as JSON.

use base64::Engine;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use tollgate_core::redact::Redactor;

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
    }
}

/// The Lambda handler.
pub async fn handle(req: Request) -> Result<Response<Body>, Infallible> {
    let body = serde_json::to_string(&echo(&req)).unwrap_or_else(|_| "{}".into());
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .unwrap_or_default())
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
    }
}
