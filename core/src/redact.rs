//! Redaction of secrets from headers, query strings and the URLs inside header values before
//! anything is stored or logged.
//!
//! The built-in lists always apply; configuration can only add names to them. Redacting runs on
//! every request, so a query string or header value with nothing secret in it is returned
//! borrowed, and parameter names are compared without allocating.

use crate::model::AuditHeaders;
use http::HeaderMap;
use std::borrow::Cow;
use std::ops::Range;

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
    // Behind an ALB `authenticate-oidc` action the ALB adds the user's access token and its own
    // signed claims token (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/
    // listener-authenticate-users.html#user-claims-encoding): both are bearer credentials until
    // they expire. `x-amzn-oidc-identity` (the subject alone) stays recorded: it is no secret,
    // but any client can forge it, so a record's copy of it proves nothing by itself.
    "x-amzn-oidc-accesstoken",
    "x-amzn-oidc-data",
];

/// Query parameter names that are always redacted (credentials that clients put in URLs).
/// Compared as described at [`Redactor`]: `apiKey`, `API-KEY` and `api%5Fkey` are all `api_key`.
pub const ALWAYS_REDACTED_QUERY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "access_token",
    "id_token",
    "refresh_token",
    "private_token",
    "token",
    "jwt",
    "code",
    "session",
    // Session ids that servlet containers and PHP put in URLs (`;jsessionid=` path parameters,
    // PHP's `session.use_trans_sid`): a session id is a bearer credential.
    "jsessionid",
    "phpsessid",
    "password",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// Headers whose values are URLs (or hold URLs): their query parameters and fragments are
/// redacted like a request's query string. `Referer` and `Location` carry the query of the page
/// or redirect (an OAuth `code` or a presigned URL's signature); `Link` and `Refresh` hold URLs
/// inside other syntax (RFC 8288 `<url>; rel=...`, `5; url=...`); `Destination` is WebDAV's
/// target URL (RFC 4918 section 10.3).
pub const URL_HEADERS: &[&str] = &[
    "referer",
    "location",
    "content-location",
    "link",
    "refresh",
    "destination",
];

/// Longest folded parameter name compared on the stack; longer configured names (unlikely) make
/// each name check allocate a buffer of their length.
const INLINE_NAME_BYTES: usize = 64;

/// The redaction policy: the built-in headers and query parameter names plus configured ones.
///
/// Header names compare case-insensitively with `_` equal to `-` (CGI and WSGI servers map both
/// to the same `HTTP_X_API_KEY` variable, so a function may read `x_api_key` as `x-api-key`).
///
/// A query parameter name is percent-decoded (`+` is a space), split at `[` and `]` so that
/// `token[]`, `token[0]` and `user[password]` are caught by their base name or a bracketed part,
/// and each part compared with ASCII case, `-`, `_`, `.` and whitespace ignored: frameworks spell
/// the same credential `api_key`, `apiKey` and `api-key`, and PHP turns `.` and spaces in names
/// into `_` (https://www.php.net/manual/en/language.variables.external.php).
#[derive(Clone, Debug)]
pub struct Redactor {
    /// Lowercase, `_` as `-`.
    headers: Vec<String>,
    /// Bit `n` set when some name in `headers` is `n` bytes long (`n < 64`).
    header_lengths: u64,
    /// Folded (see [`fold_param_name`]), never empty.
    query_params: Vec<Vec<u8>>,
    /// Bit `n` set when some name in `query_params` is `n` bytes long (`n < 64`): most parts of
    /// most names are rejected by this alone.
    param_lengths: u64,
    /// The longest name in `query_params`.
    longest_param: usize,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new([], [])
    }
}

impl Redactor {
    /// A policy redacting the built-in headers and parameters plus `extra_headers` and
    /// `extra_query_params`. Blank names are ignored: nothing can switch a built-in off.
    pub fn new<'a>(
        extra_headers: impl IntoIterator<Item = &'a str>,
        extra_query_params: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut headers: Vec<String> = ALWAYS_REDACTED_HEADERS
            .iter()
            .copied()
            .chain(extra_headers)
            .map(|h| {
                h.trim()
                    .bytes()
                    .map(|b| fold_header_byte(b) as char)
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .collect();
        headers.sort();
        headers.dedup();
        let mut query_params: Vec<Vec<u8>> = ALWAYS_REDACTED_QUERY_PARAMS
            .iter()
            .copied()
            .chain(extra_query_params)
            .map(fold_param_name)
            .filter(|p| !p.is_empty())
            .collect();
        query_params.sort();
        query_params.dedup();
        let header_lengths = lengths(headers.iter().map(String::len));
        let param_lengths = lengths(query_params.iter().map(Vec::len));
        let longest_param = query_params.iter().map(Vec::len).max().unwrap_or(0);
        Self {
            headers,
            header_lengths,
            query_params,
            param_lengths,
            longest_param,
        }
    }

    /// Whether a header (any case, `_` or `-`) is redacted.
    pub fn is_secret_header(&self, name: &str) -> bool {
        // Every header of a request is checked: most are rejected by their length alone.
        if name.len() < 64 && self.header_lengths & (1 << name.len()) == 0 {
            return false;
        }
        self.headers
            .iter()
            .any(|h| h.len() == name.len() && h.bytes().zip(name.bytes()).all(|(a, b)| a == fold_header_byte(b)))
    }

    /// Headers as an audit map, secret values replaced, and the query parameters of URLs in
    /// [`URL_HEADERS`] redacted.
    pub fn headers(&self, headers: &HeaderMap) -> AuditHeaders {
        let mut out = AuditHeaders::new();
        for (name, value) in headers {
            let text = String::from_utf8_lossy(value.as_bytes());
            let value = self.header_value(name.as_str(), &text).into_owned();
            out.entry(name.as_str().to_string()).or_default().push(value);
        }
        out
    }

    /// One header's value as it may be recorded: [`REDACTED`] for a secret header, URL query
    /// parameters redacted for a URL-bearing one, otherwise unchanged (and borrowed).
    pub fn header_value<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_secret_header(name) {
            Cow::Borrowed(REDACTED)
        } else if URL_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            self.redact_params(value, Syntax::HeaderUrl)
        } else {
            Cow::Borrowed(value)
        }
    }

    /// A raw query string with the values of secret parameters replaced (see
    /// [`Redactor::redact_query`]).
    pub fn query(&self, query: &str) -> String {
        self.redact_query(query).into_owned()
    }

    /// A raw query string with the values of secret parameters replaced, borrowed when nothing
    /// is secret. Pairs are separated by `&` and by `;` (the HTML 4 recommendation, appendix
    /// B.2.2, which some servers still follow, e.g. Python before 3.9.2, CVE-2021-23336), and
    /// `?` starts a pair too (a URL unencoded in a value). Separators are kept. Because a server
    /// that splits at `&` alone reads `token=a;b=c` as the token `a;b=c`, a secret value runs to
    /// the next `&`: that pair's `;b=c` is redacted with it rather than risk keeping part of a
    /// secret. Empty values stay empty.
    pub fn redact_query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        self.redact_params(query, Syntax::Query)
    }

    fn redact_params<'a>(&self, text: &'a str, syntax: Syntax) -> Cow<'a, str> {
        // No `=`, no value to redact: many header values and queries end here.
        if !text.contains('=') {
            return Cow::Borrowed(text);
        }
        let mut secrets = SecretValues {
            redactor: self,
            text: text.as_bytes(),
            at: 0,
            syntax,
        };
        let Some(first) = secrets.next() else {
            return Cow::Borrowed(text);
        };
        let mut out = String::with_capacity(text.len() + REDACTED.len());
        let mut copied = 0;
        // Every range starts after an ASCII `=` and ends at an ASCII separator or the end, so
        // both ends are char boundaries.
        for value in std::iter::once(first).chain(secrets) {
            out.push_str(&text[copied..value.start]);
            out.push_str(REDACTED);
            copied = value.end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Whether a raw (still percent-encoded) parameter name is secret.
    fn is_secret_param(&self, raw_name: &[u8]) -> bool {
        if self.longest_param <= INLINE_NAME_BYTES {
            self.any_part_secret(raw_name, &mut [0u8; INLINE_NAME_BYTES])
        } else {
            self.any_part_secret(raw_name, &mut vec![0u8; self.longest_param])
        }
    }

    /// Decodes `raw_name` once, folding each part between brackets into `part`; a part longer
    /// than `part` is longer than every name, so it is skipped instead of stored.
    fn any_part_secret(&self, raw_name: &[u8], part: &mut [u8]) -> bool {
        let mut len = 0;
        let mut too_long = false;
        for b in PercentDecoded::new(raw_name) {
            match b {
                b'[' | b']' => {
                    if !too_long && self.is_secret_folded(&part[..len]) {
                        return true;
                    }
                    len = 0;
                    too_long = false;
                }
                b if is_ignored_in_param_name(b) => {}
                b if len < part.len() => {
                    part[len] = b.to_ascii_lowercase();
                    len += 1;
                }
                _ => too_long = true,
            }
        }
        !too_long && self.is_secret_folded(&part[..len])
    }

    fn is_secret_folded(&self, name: &[u8]) -> bool {
        let n = name.len();
        if n == 0 || (n < 64 && self.param_lengths & (1 << n) == 0) {
            return false;
        }
        self.query_params.iter().any(|p| p.as_slice() == name)
    }
}

/// A set of lengths below 64 as bits (longer ones are not recorded: callers compare those).
fn lengths(lengths: impl Iterator<Item = usize>) -> u64 {
    lengths.filter(|&n| n < 64).fold(0, |bits, n| bits | 1 << n)
}

/// A parameter name as compared: lowercase, without `-`, `_`, `.` and whitespace.
fn fold_param_name(name: &str) -> Vec<u8> {
    name.bytes()
        .filter(|&b| !is_ignored_in_param_name(b))
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

fn is_ignored_in_param_name(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.') || b.is_ascii_whitespace()
}

fn fold_header_byte(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// Where parameters are found.
#[derive(Clone, Copy, Debug)]
enum Syntax {
    /// A request's raw query string.
    Query,
    /// A header value holding URLs: `?` and `#` start parameters, and a URL ends at whitespace
    /// or `>` (RFC 3986 allows neither in a URL; `Link` encloses URLs in `<>`).
    HeaderUrl,
}

impl Syntax {
    /// Ends a pair; a secret value runs on past it (see [`Redactor::redact_query`]).
    fn ends_pair(self, b: u8) -> bool {
        matches!(b, b';' | b'?')
    }

    /// Ends a pair and a secret value.
    fn ends_value(self, b: u8) -> bool {
        match self {
            Syntax::Query => b == b'&',
            Syntax::HeaderUrl => matches!(b, b'&' | b'#' | b'>') || b.is_ascii_whitespace(),
        }
    }
}

/// The byte ranges of the non-empty values of secret parameters in a text, in order.
struct SecretValues<'r, 't> {
    redactor: &'r Redactor,
    text: &'t [u8],
    at: usize,
    syntax: Syntax,
}

impl Iterator for SecretValues<'_, '_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let syntax = self.syntax;
        while self.at < self.text.len() {
            let start = self.at;
            let name_end = find(self.text, start, |b| {
                b == b'=' || syntax.ends_pair(b) || syntax.ends_value(b)
            });
            if self.text.get(name_end) != Some(&b'=') {
                self.at = name_end + 1;
                continue;
            }
            let value_start = name_end + 1;
            let secret = self.redactor.is_secret_param(&self.text[start..name_end]);
            let value_end = find(self.text, value_start, |b| {
                syntax.ends_value(b) || (!secret && syntax.ends_pair(b))
            });
            self.at = value_end + 1;
            if secret && value_end > value_start {
                return Some(value_start..value_end);
            }
        }
        None
    }
}

/// The index of the first byte from `from` matching `stop`, or the text's length.
fn find(text: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    text[from..]
        .iter()
        .position(|&b| stop(b))
        .map_or(text.len(), |i| from + i)
}

/// Percent-decoded bytes (`+` as a space), leniently: invalid escapes stay as they are.
struct PercentDecoded<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> PercentDecoded<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
}

impl Iterator for PercentDecoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        if b == b'%' {
            let hex = |i: usize| self.bytes.get(i).and_then(|&d| (d as char).to_digit(16));
            if let (Some(high), Some(low)) = (hex(self.at + 1), hex(self.at + 2)) {
                self.at += 3;
                return Some((high * 16 + low) as u8);
            }
        }
        self.at += 1;
        Some(if b == b'+' { b' ' } else { b })
    }
}

/// Percent-decodes (and turns `+` into space) leniently: invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes: Vec<u8> = PercentDecoded::new(text.as_bytes()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
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
        let r = Redactor::new([" X-Custom-Token "], []);
        let out = r.headers(&h);
        assert_eq!(out["authorization"], vec![REDACTED]);
        assert_eq!(out["cookie"], vec![REDACTED]);
        assert_eq!(out["x-custom-token"], vec![REDACTED]);
        assert_eq!(out["accept"], vec!["*/*"]);
        assert!(!format!("{out:?}").contains("s3cr3t"));
    }

    #[test]
    fn underscored_spellings_of_secret_headers_are_redacted() {
        let r = Redactor::default();
        assert!(r.is_secret_header("x_api_key"));
        assert!(r.is_secret_header("X-Amz-Security_Token"));
        assert!(!r.is_secret_header("x-api-keys"));
        // Names of 64 bytes or more are not in the length filter and are compared in full.
        let long = format!("x-{}", "l".repeat(70));
        let r = Redactor::new([long.as_str()], []);
        assert!(r.is_secret_header(&long.to_ascii_uppercase()));
        assert!(!r.is_secret_header(&format!("{long}x")));
    }

    #[test]
    fn alb_oidc_tokens_are_redacted_and_the_identity_is_not() {
        let mut h = HeaderMap::new();
        h.insert("x-amzn-oidc-accesstoken", HeaderValue::from_static("eyJ.access.s3cr3t"));
        h.insert("x-amzn-oidc-data", HeaderValue::from_static("eyJ.claims.s3cr3t"));
        h.insert("x-amzn-oidc-identity", HeaderValue::from_static("alice"));
        let out = Redactor::default().headers(&h);
        assert_eq!(out["x-amzn-oidc-accesstoken"], vec![REDACTED]);
        assert_eq!(out["x-amzn-oidc-data"], vec![REDACTED]);
        assert_eq!(out["x-amzn-oidc-identity"], vec!["alice"]);
    }

    #[test]
    fn configuration_extends_the_built_in_lists_and_blank_names_do_nothing() {
        let r = Redactor::new(["", " "], ["", " ", "-", "tenant_pin"]);
        assert!(r.is_secret_header("authorization"));
        assert_eq!(
            r.query("token=s3cr3t&TenantPin=1234&page=2"),
            "token=[REDACTED]&TenantPin=[REDACTED]&page=2"
        );
        // A blank or separator-only name must not match the empty name.
        assert_eq!(r.query("=v&[]=w&-=x"), "=v&[]=w&-=x");
    }

    #[test]
    fn secret_query_params_are_replaced() {
        let r = Redactor::default();
        assert_eq!(r.query("a=1&api_key=s3cr3t&b"), "a=1&api_key=[REDACTED]&b");
        assert_eq!(r.query("API%5FKEY=s3cr3t"), "API%5FKEY=[REDACTED]");
        assert_eq!(r.query("token=x&token=y"), "token=[REDACTED]&token=[REDACTED]");
        assert_eq!(r.query("token=&a=1"), "token=&a=1");
        assert_eq!(r.query("token==x"), "token=[REDACTED]");
        assert_eq!(r.query(""), "");
    }

    #[test]
    fn the_new_built_in_names_are_redacted() {
        let r = Redactor::default();
        for name in [
            "key",
            "sig",
            "code",
            "session",
            "jwt",
            "private_token",
            "api-key",
            "jsessionid",
        ] {
            assert_eq!(r.query(&format!("{name}=s3cr3t&a=1")), format!("{name}=[REDACTED]&a=1"));
        }
        // Not a prefix or substring match: these are ordinary parameters.
        assert_eq!(r.query("keyword=x&codec=y&tokens=z"), "keyword=x&codec=y&tokens=z");
    }

    #[test]
    fn names_match_decoded_in_any_case_and_spelling() {
        let r = Redactor::default();
        for name in [
            "%74oken",
            "TOKEN",
            "%54oKeN",
            "apiKey",
            "API-KEY",
            "api.key",
            "api+key",
            "x-amz-Signature",
            "accessToken",
            "tok%65n",
        ] {
            assert_eq!(
                r.query(&format!("{name}=s3cr3t")),
                format!("{name}=[REDACTED]"),
                "{name}"
            );
        }
    }

    #[test]
    fn bracketed_names_match_on_the_base_or_a_bracketed_part() {
        let r = Redactor::default();
        for name in [
            "token[]",
            "token[0]",
            "user[password]",
            "a[b][api_key]",
            "token%5B%5D",
            "user%5Bpassword%5D",
            "token[",
        ] {
            assert_eq!(
                r.query(&format!("{name}=s3cr3t&a=1")),
                format!("{name}=[REDACTED]&a=1"),
                "{name}"
            );
        }
        assert_eq!(r.query("user[name]=bob&filter[0]=x"), "user[name]=bob&filter[0]=x");
    }

    #[test]
    fn semicolons_separate_pairs_and_are_kept() {
        let r = Redactor::default();
        assert_eq!(r.query("a=1;token=s3cr3t&b=2"), "a=1;token=[REDACTED]&b=2");
        assert_eq!(r.query("a=1;b=2&c=3;password=p"), "a=1;b=2&c=3;password=[REDACTED]");
        assert_eq!(r.query("x;token=s3cr3t"), "x;token=[REDACTED]");
        // Read as `&`-separated, the token is `s3;cr3t`: all of it goes, `;` and what follows.
        assert_eq!(r.query("token=s3;cr3t&b=2"), "token=[REDACTED]&b=2");
        assert_eq!(r.query("a=1;b=2"), "a=1;b=2");
    }

    #[test]
    fn a_url_unencoded_in_a_value_has_its_parameters_redacted() {
        let r = Redactor::default();
        assert_eq!(
            r.query("next=https://h/cb?code=s3cr3t&a=1"),
            "next=https://h/cb?code=[REDACTED]&a=1"
        );
    }

    #[test]
    fn urls_in_url_headers_have_their_queries_redacted() {
        let r = Redactor::default();
        let cases = [
            (
                "referer",
                "https://h/p?q=1&token=s3cr3t",
                "https://h/p?q=1&token=[REDACTED]",
            ),
            (
                "location",
                "https://h/cb?code=s3cr3t&state=xyz#top",
                "https://h/cb?code=[REDACTED]&state=xyz#top",
            ),
            // OAuth 2 implicit grant answers in the fragment (RFC 6749 section 4.2.2).
            (
                "location",
                "https://h/cb#access_token=s3cr3t&state=xyz",
                "https://h/cb#access_token=[REDACTED]&state=xyz",
            ),
            (
                "content-location",
                "/r;jsessionid=s3cr3t&a=1",
                "/r;jsessionid=[REDACTED]&a=1",
            ),
            // A query value may hold `?` (RFC 3986 section 3.4), so a secret runs past it.
            (
                "content-location",
                "/r;jsessionid=s3cr3t?a=1",
                "/r;jsessionid=[REDACTED]",
            ),
            (
                "link",
                "<https://h/p?page=2&sig=s3cr3t>; rel=\"next\", <https://h/p?page=1>; rel=\"prev\"",
                "<https://h/p?page=2&sig=[REDACTED]>; rel=\"next\", <https://h/p?page=1>; rel=\"prev\"",
            ),
            (
                "refresh",
                "5; url=https://h/?key=s3cr3t",
                "5; url=https://h/?key=[REDACTED]",
            ),
            ("Referer", "https://h/p?a=1", "https://h/p?a=1"),
        ];
        for (name, value, expected) in cases {
            assert_eq!(r.header_value(name, value), expected, "{name}: {value}");
        }
        // Other headers are not parsed as URLs.
        assert_eq!(r.header_value("x-note", "token=abc"), "token=abc");
        let mut h = HeaderMap::new();
        h.insert("referer", HeaderValue::from_static("https://h/?session=s3cr3t"));
        assert_eq!(
            Redactor::default().headers(&h)["referer"],
            vec!["https://h/?session=[REDACTED]"]
        );
    }

    #[test]
    fn nothing_secret_is_returned_borrowed() {
        let r = Redactor::default();
        for text in [
            "",
            "a=1&b=2;c=3",
            "token",
            "token=",
            "tokens=1&keyword=2",
            "user[name]=x",
        ] {
            assert!(matches!(r.redact_query(text), Cow::Borrowed(_)), "{text}");
        }
        assert!(matches!(r.header_value("referer", "https://h/p?a=1"), Cow::Borrowed(_)));
        assert!(matches!(r.redact_query("token=x"), Cow::Owned(_)));
    }

    #[test]
    fn names_longer_than_the_inline_buffer_still_match() {
        let long = "a".repeat(INLINE_NAME_BYTES + 10);
        let r = Redactor::new([], [long.as_str()]);
        assert_eq!(
            r.query(&format!("{long}=s3cr3t&token=t")),
            format!("{long}=[REDACTED]&token=[REDACTED]")
        );
        let longer = "a".repeat(INLINE_NAME_BYTES + 11);
        assert_eq!(r.query(&format!("{longer}=v")), format!("{longer}=v"));
        // A long name with a secret bracketed part is still caught with the default buffer.
        let r = Redactor::default();
        assert_eq!(
            r.query(&format!("{longer}[token]=s3cr3t")),
            format!("{longer}[token]=[REDACTED]")
        );
    }

    #[test]
    fn non_ascii_and_invalid_escapes_are_left_alone() {
        let r = Redactor::default();
        assert_eq!(r.query("q=%E2%82%AC&n=%zz&é=ü"), "q=%E2%82%AC&n=%zz&é=ü");
        assert_eq!(r.query("é=1&token=ü€"), "é=1&token=[REDACTED]");
        assert_eq!(
            r.header_value("referer", "https://h/ü?token=€"),
            "https://h/ü?token=[REDACTED]"
        );
    }

    /// A small deterministic generator (xorshift64*), so a failure reproduces from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// A spelling of `name` a client or framework might send: random case, some bytes
    /// percent-encoded (upper or lower hex), `_` swapped for `-`, and bracket forms.
    fn disguise(rng: &mut Rng, name: &str) -> String {
        let mut out = String::new();
        for b in name.bytes() {
            let b = match (b, rng.below(4)) {
                (b'_', 0) => b'-',
                (b, 1) => b.to_ascii_uppercase(),
                (b, _) => b,
            };
            match rng.below(5) {
                0 => out.push_str(&format!("%{b:02X}")),
                1 => out.push_str(&format!("%{b:02x}")),
                _ => out.push(b as char),
            }
        }
        match rng.below(6) {
            0 => format!("{out}[]"),
            1 => format!("{out}[{}]", rng.below(10)),
            2 => format!("user[{out}]"),
            3 => format!("{out}%5B%5D"),
            _ => out,
        }
    }

    #[test]
    fn a_canary_in_any_position_separator_and_spelling_never_survives() {
        const CANARY: &str = "CANARY-9d2e41-secret";
        let r = Redactor::default();
        let benign_names = ["page", "q", "sort", "tokens", "keyword", "user[name]", "a%20b", "x"];
        let benign_values = ["1", "", "abc", "a%26b", "https%3A%2F%2Fh%2F", "x=y"];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let pairs = rng.below(6);
            let at = rng.below(pairs + 1);
            let mut query = String::new();
            let mut kept = Vec::new();
            for i in 0..=pairs {
                if i > 0 {
                    query.push_str(rng.pick(&["&", ";"]));
                }
                if i == at {
                    let secret_name = rng_name(&mut rng);
                    let name = disguise(&mut rng, secret_name);
                    query.push_str(&format!("{name}={CANARY}"));
                } else {
                    let pair = format!("{}={}", rng.pick(&benign_names), rng.pick(&benign_values));
                    if i < at {
                        kept.push(pair.clone());
                    }
                    query.push_str(&pair);
                }
            }
            let out = r.query(&query);
            assert!(!out.contains(CANARY), "round {round}: {query} -> {out}");
            for pair in &kept {
                assert!(
                    out.contains(pair.as_str()),
                    "round {round}: {pair} lost from {query} -> {out}"
                );
            }
            assert_eq!(out.matches('&').count(), query.matches('&').count(), "{query} -> {out}");
            // The same query inside URL-bearing headers.
            for (name, value) in [
                ("referer", format!("https://h/p?{query}")),
                ("location", format!("https://h/cb?{query}#frag")),
                ("location", format!("https://h/cb#{query}")),
                ("link", format!("<https://h/p?{query}>; rel=\"next\"")),
            ] {
                let out = r.header_value(name, &value);
                assert!(!out.contains(CANARY), "round {round}: {name}: {value} -> {out}");
            }
        }
    }

    fn rng_name(rng: &mut Rng) -> &'static str {
        ALWAYS_REDACTED_QUERY_PARAMS[rng.below(ALWAYS_REDACTED_QUERY_PARAMS.len())]
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41%4"), "A%4");
    }
}
