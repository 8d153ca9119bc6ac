//! The ALB target-group Lambda contract, as the ingress speaks it: requests become the event
//! an ALB sends (multi-value form, query left percent-encoded as the ALB leaves it, binary
//! bodies base64) and the function's ALB response becomes the HTTP response.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Elb<'a> {
    target_group_arn: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    elb: Elb<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlbRequest<'a> {
    request_context: RequestContext<'a>,
    http_method: &'a str,
    path: &'a str,
    multi_value_query_string_parameters: BTreeMap<&'a str, Vec<&'a str>>,
    multi_value_headers: BTreeMap<&'a str, Vec<&'a str>>,
    is_base64_encoded: bool,
    body: &'a str,
}

/// Serializes the ALB event for a request. `headers` are sent as received except that
/// non-UTF-8 values are dropped (the ALB contract carries strings).
pub fn request_event(
    target_group_arn: &str,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let mut params: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(k).or_default().push(v);
        }
    }
    let mut hdrs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            hdrs.entry(name.as_str()).or_default().push(v);
        }
    }
    let encoded;
    let (is_base64_encoded, body) = match std::str::from_utf8(body) {
        Ok(text) => (false, text),
        Err(_) => {
            encoded = STANDARD.encode(body);
            (true, encoded.as_str())
        }
    };
    let event = AlbRequest {
        request_context: RequestContext {
            elb: Elb { target_group_arn },
        },
        http_method: method,
        path,
        multi_value_query_string_parameters: params,
        multi_value_headers: hdrs,
        is_base64_encoded,
        body,
    };
    serde_json::to_vec(&event).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlbResponse {
    status_code: u16,
    #[serde(default)]
    headers: Option<HashMap<String, String>>,
    #[serde(default)]
    multi_value_headers: Option<HashMap<String, Vec<String>>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
}

/// A function's answer, ready to send.
#[derive(Debug)]
pub struct FunctionReply {
    /// Status.
    pub status: StatusCode,
    /// Headers (hop-by-hop and framing headers removed).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Headers a function may not set: connection management and framing are the ingress's.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "x-request-id",
];

fn add_header(out: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
    if HOP_BY_HOP.contains(&name.as_str()) {
        return Ok(());
    }
    let value = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    out.append(name, value);
    Ok(())
}

/// Parses a function's ALB response; any malformation is an error (-> 502).
pub fn parse_response(payload: &[u8]) -> Result<FunctionReply, String> {
    let r: AlbResponse = serde_json::from_slice(payload).map_err(|e| format!("not an ALB response: {e}"))?;
    // A final response needs a final status; 1xx would confuse the client's framing.
    if !(200..=599).contains(&r.status_code) {
        return Err(format!("invalid status {}", r.status_code));
    }
    let status = StatusCode::from_u16(r.status_code).map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    // lambda_http fills both maps; an ALB uses the one its target group is set to. We send
    // multi-value events, so multi-value headers win and single ones are the fallback.
    match (r.multi_value_headers, r.headers) {
        (Some(multi), _) if !multi.is_empty() => {
            for (name, values) in &multi {
                for v in values {
                    add_header(&mut headers, name, v)?;
                }
            }
        }
        (_, Some(single)) => {
            for (name, v) in &single {
                add_header(&mut headers, name, v)?;
            }
        }
        _ => {}
    }
    let body = match (r.body, r.is_base64_encoded.unwrap_or(false)) {
        (None, _) => Bytes::new(),
        (Some(b), false) => Bytes::from(b),
        (Some(b), true) => Bytes::from(
            STANDARD
                .decode(b.as_bytes())
                .map_err(|_| "invalid base64 body".to_string())?,
        ),
    };
    Ok(FunctionReply { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_what_aws_lambda_events_and_lambda_http_read() {
        let mut h = HeaderMap::new();
        h.append("accept", HeaderValue::from_static("a"));
        h.append("accept", HeaderValue::from_static("b"));
        h.insert("host", HeaderValue::from_static("example.com"));
        let ev = request_event(
            "arn:tg",
            "PUT",
            "/v1/echo/x%20y",
            Some("a=1&a=2&b=%20&c"),
            &h,
            &[0xff, 0],
        );
        let parsed: aws_lambda_events::alb::AlbTargetGroupRequest = serde_json::from_slice(&ev).unwrap();
        assert_eq!(parsed.http_method, http::Method::PUT);
        assert_eq!(parsed.path.as_deref(), Some("/v1/echo/x%20y"));
        assert_eq!(
            parsed.multi_value_query_string_parameters.all("a"),
            Some(vec!["1", "2"])
        );
        assert_eq!(parsed.multi_value_query_string_parameters.first("b"), Some("%20"));
        assert_eq!(parsed.multi_value_headers.get_all("accept").iter().count(), 2);
        assert!(parsed.is_base64_encoded);
        assert_eq!(parsed.body.as_deref(), Some("/wA="));
        let req = tollgate_core::lambda_http::request::from_str(std::str::from_utf8(&ev).unwrap()).unwrap();
        assert_eq!(req.body().as_ref(), &[0xff, 0]);
    }

    #[test]
    fn responses_map_back_with_their_headers_and_bodies() {
        let r = parse_response(
            br#"{"statusCode":201,"headers":{"x-a":"single"},"multiValueHeaders":{"x-a":["1","2"],"connection":["close"]},
                "body":"aGk=","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.headers.get_all("x-a").iter().count(), 2);
        assert!(r.headers.get("connection").is_none());
        assert_eq!(r.body, "hi");
        let r = parse_response(br#"{"statusCode":200,"headers":{"x-a":"single"},"body":"plain"}"#).unwrap();
        assert_eq!(r.headers.get("x-a").unwrap(), "single");
        assert_eq!(r.body, "plain");
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b"not json"[..],
            br#"{"statusCode":99}"#,
            br#"{"statusCode":600}"#,
            br#"{"statusCode":"x"}"#,
            br#"{"statusCode":200,"body":"***","isBase64Encoded":true}"#,
            br#"{"statusCode":200,"headers":{"bad name":"v"}}"#,
            br#"{"statusCode":200,"headers":{"x":"line\nbreak"}}"#,
        ] {
            assert!(parse_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
