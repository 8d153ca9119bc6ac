//! Redaction of secrets from headers and query strings before anything is stored or logged.

use crate::model::AuditHeaders;
use http::HeaderMap;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Headers that are always redacted, whatever the configuration says.
pub const ALWAYS_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-amz-security-token",
];

/// Query parameters redacted by default (credentials that clients put in URLs).
pub const DEFAULT_REDACTED_QUERY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "password",
    "secret",
    "client_secret",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// The redaction policy: header names and query parameter names, lowercase.
#[derive(Clone, Debug)]
pub struct Redactor {
    headers: Vec<String>,
    query_params: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(&[], DEFAULT_REDACTED_QUERY_PARAMS.iter().copied())
    }
}

impl Redactor {
    /// A policy redacting the built-in headers plus `extra_headers`, and `query_params`.
    pub fn new<'a>(extra_headers: &[String], query_params: impl IntoIterator<Item = &'a str>) -> Self {
        let mut headers: Vec<String> = ALWAYS_REDACTED_HEADERS.iter().map(|h| h.to_string()).collect();
        headers.extend(extra_headers.iter().map(|h| h.trim().to_ascii_lowercase()));
        headers.sort();
        headers.dedup();
        let mut query_params: Vec<String> = query_params.into_iter().map(|p| p.to_ascii_lowercase()).collect();
        query_params.sort();
        query_params.dedup();
        Self { headers, query_params }
    }

    /// Whether a header (any case) is redacted.
    pub fn is_secret_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Headers as an audit map, secret values replaced.
    pub fn headers(&self, headers: &HeaderMap) -> AuditHeaders {
        let mut out = AuditHeaders::new();
        for (name, value) in headers {
            let value = if self.is_secret_header(name.as_str()) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            out.entry(name.as_str().to_string()).or_default().push(value);
        }
        out
    }

    /// A raw query string with the values of secret parameters replaced. Names are compared
    /// after percent-decoding, so `api%5Fkey=` is caught too.
    pub fn query(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            out.push_str(name);
            if let Some(value) = value {
                out.push('=');
                if self.is_secret_param(name) {
                    out.push_str(REDACTED);
                } else {
                    out.push_str(value);
                }
            }
        }
        out
    }

    fn is_secret_param(&self, raw_name: &str) -> bool {
        let decoded = percent_decode(raw_name);
        self.query_params.iter().any(|p| p.eq_ignore_ascii_case(&decoded))
    }
}

/// Percent-decodes (and turns `+` into space) leniently: invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn secret_headers_are_replaced_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer s3cr3t"));
        h.append("cookie", HeaderValue::from_static("a=s3cr3t"));
        h.append("x-custom-token", HeaderValue::from_static("s3cr3t"));
        h.append("accept", HeaderValue::from_static("*/*"));
        let r = Redactor::new(
            &["X-Custom-Token".to_string()],
            DEFAULT_REDACTED_QUERY_PARAMS.iter().copied(),
        );
        let out = r.headers(&h);
        assert_eq!(out["authorization"], vec![REDACTED]);
        assert_eq!(out["cookie"], vec![REDACTED]);
        assert_eq!(out["x-custom-token"], vec![REDACTED]);
        assert_eq!(out["accept"], vec!["*/*"]);
        assert!(!format!("{out:?}").contains("s3cr3t"));
    }

    #[test]
    fn secret_query_params_are_replaced() {
        let r = Redactor::default();
        assert_eq!(r.query("a=1&api_key=s3cr3t&b"), "a=1&api_key=[REDACTED]&b");
        assert_eq!(r.query("API%5FKEY=s3cr3t"), "API%5FKEY=[REDACTED]");
        assert_eq!(r.query("token=x&token=y"), "token=[REDACTED]&token=[REDACTED]");
        assert_eq!(r.query(""), "");
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
