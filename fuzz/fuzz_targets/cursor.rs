//! The cursor decoder, through its one entry point `parse_list_query` (the `cursor` parameter
//! is decoded there), and the other list parameters with it.
//!
//! Input: a query string as `lambda_http` hands it over (already percent-decoded), split at `&`
//! and the first `=` of each pair; the whole input is also tried as a bare cursor and as a
//! `since`/`until` value.
//! Invariant: an accepted cursor re-encoded the way the API issues them
//! (base64url of `<stored timestamp>|<request id>`) decodes to the same position.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use tollgate_core::clock;
use tollgate_requests_api::parse_list_query;

fn check_cursor(value: &str) {
    let Ok(q) = parse_list_query(&[("cursor".to_string(), value.to_string())]) else {
        return;
    };
    let (at, id) = q.after.expect("an accepted cursor sets the position");
    let issued = URL_SAFE_NO_PAD.encode(format!("{}|{id}", clock::format(at)));
    let again = parse_list_query(&[("cursor".to_string(), issued.clone())])
        .unwrap_or_else(|e| panic!("{value:?} -> {issued:?} is refused: {e:?}"))
        .after
        .expect("re-issued cursor");
    assert_eq!(again.1, id, "{value:?}");
    assert_eq!(clock::format(again.0), clock::format(at), "{value:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_cursor(&text);
    // The input as a timestamp filter too (cursors hold timestamps; base64 hides them from
    // the mutator).
    for name in ["since", "until"] {
        if let Ok(q) = parse_list_query(&[(name.to_string(), text.to_string())]) {
            let t = q.since.or(q.until).expect("an accepted timestamp is set");
            assert!(t.offset().is_utc(), "{text:?}");
        }
    }
    let params: Vec<(String, String)> = text
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    if let Ok(q) = parse_list_query(&params) {
        assert!((1..=tollgate_requests_api::MAX_LIMIT).contains(&q.limit));
        if let (Some(since), Some(until)) = (q.since, q.until) {
            assert!(since < until);
        }
    }
    for (name, value) in &params {
        if name == "cursor" {
            check_cursor(value);
        }
    }
});
