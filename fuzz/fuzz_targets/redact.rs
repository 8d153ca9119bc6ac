//! The redactor: `Redactor::query`, `header_value` on the URL-bearing headers and `headers`.
//!
//! Besides not crashing on any text, the canary invariant: a secret value placed after a
//! built-in secret parameter name (in any spelling a client or framework might use) never
//! survives `query()`, nor the same query inside a `Referer`/`Location`/`Link` URL, whatever
//! text surrounds the pair; and a built-in secret header's value never survives `headers()`.
//! Both hold for the default redactor and for one configured with extra names taken from the
//! input (configuration only extends the built-ins).
//!
//! Input: any text. The text before the first `\n` is the prefix, the rest the suffix; the
//! bytes of the input also choose the name, its spelling and the separator.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate_core::redact::{Redactor, ALWAYS_REDACTED_HEADERS, ALWAYS_REDACTED_QUERY_PARAMS, URL_HEADERS};

const CANARY: &str = "CaNaRy7f3e9b";

/// Choice bytes: the input's bytes, cycled and mixed with their position.
struct Choices<'a> {
    data: &'a [u8],
    at: usize,
}

impl Choices<'_> {
    fn next(&mut self) -> usize {
        let b = if self.data.is_empty() {
            0
        } else {
            self.data[self.at % self.data.len()]
        };
        self.at += 1;
        usize::from(b ^ (self.at as u8).wrapping_mul(31))
    }
}

/// A spelling of `name` that must still be recognised: case, percent-encoding (either hex
/// case), `-`/`_`/`.` and (encoded) whitespace where they are ignored, and bracket forms.
fn disguise(c: &mut Choices, name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match c.next() % 8 {
            0 => out.push(b as char),
            1 => out.push(b.to_ascii_uppercase() as char),
            2 => out.push_str(&format!("%{b:02X}")),
            3 => out.push_str(&format!("%{b:02x}")),
            4 => out.push(if matches!(b, b'_' | b'-') { b'.' } else { b } as char),
            5 => out.push_str(&format!("+{}", b as char)),
            6 => out.push_str(&format!("%20{}", b as char)),
            _ => out.push_str(&format!("_{}", b as char)),
        }
    }
    match c.next() % 7 {
        0 => format!("{out}[]"),
        1 => format!("{out}[{}]", c.next() % 10),
        2 => format!("user[{out}]"),
        3 => format!("{out}%5B%5D"),
        4 => format!("a[b][{out}]"),
        _ => out,
    }
}

fn check(r: &Redactor, c: &mut Choices, prefix: &str, suffix: &str) {
    let name = ALWAYS_REDACTED_QUERY_PARAMS[c.next() % ALWAYS_REDACTED_QUERY_PARAMS.len()];
    let name = disguise(c, name);
    let sep = ["&", ";", "?"][c.next() % 3];
    let query = format!("{prefix}{sep}{name}={CANARY}{suffix}");
    let out = r.query(&query);
    assert!(!out.contains(CANARY), "query {query:?} -> {out:?}");
    for (header, value) in [
        ("referer", format!("https://h/p?{query}")),
        ("location", format!("https://h/cb#{query}")),
        ("link", format!("<https://h/p?{query}>; rel=\"next\"")),
    ] {
        let out = r.header_value(header, &value);
        assert!(!out.contains(CANARY), "{header}: {value:?} -> {out:?}");
    }
    // A built-in secret header, in any case and with `_` for `-`.
    let header = ALWAYS_REDACTED_HEADERS[c.next() % ALWAYS_REDACTED_HEADERS.len()];
    let spelled: String = header
        .bytes()
        .map(|b| match (b, c.next() % 3) {
            (b'-', 0) => '_',
            (b, 1) => b.to_ascii_uppercase() as char,
            (b, _) => b as char,
        })
        .collect();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("{prefix}{CANARY}{suffix}")) {
        headers.append(
            HeaderName::from_bytes(spelled.as_bytes()).expect("a header name"),
            value,
        );
        let out = format!("{:?}", r.headers(&headers));
        assert!(!out.contains(CANARY), "{spelled}: {headers:?} -> {out}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let default = Redactor::default();
    // No crash on any text, as a query and in every URL-bearing header.
    let _ = default.query(&text);
    for h in URL_HEADERS {
        let _ = default.header_value(h, &text);
    }
    let mut map = HeaderMap::new();
    for line in text.lines() {
        if let Some((n, v)) = line.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            ) {
                map.append(n, v);
            }
        }
    }
    let _ = default.headers(&map);

    if text.contains(CANARY) {
        return; // the canary must come from the placed pair alone
    }
    let (prefix, suffix) = text.split_once('\n').unwrap_or((&text, ""));
    let mut c = Choices { data, at: 0 };
    check(&default, &mut c, prefix, suffix);
    // Configured extras (from the input) only add to the built-ins.
    let extra_params: Vec<&str> = prefix.split(',').collect();
    let extra_headers: Vec<&str> = suffix.split(',').collect();
    let configured = Redactor::new(extra_headers.iter().copied(), extra_params.iter().copied());
    check(&configured, &mut c, prefix, suffix);
});
