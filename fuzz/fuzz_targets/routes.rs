//! The route matcher: `RouteTable::parse` on arbitrary TOML text, and `lookup(method, path)`
//! on the shipped `routes.toml` and on any table that parses.
//!
//! Input: the first line is `METHOD /path` (the request), the rest is a route file.
#![no_main]

use std::sync::LazyLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use tollgate_ingress::routes::{AuthPolicy, RouteMatch, RouteTable, MAX_TIMEOUT_MS};

static SHIPPED: LazyLock<RouteTable> =
    LazyLock::new(|| RouteTable::parse(include_str!("../../routes.toml")).expect("the shipped routes.toml parses"));

/// Looks the request up and checks the answer is consistent with the table.
fn check_lookup(table: &RouteTable, method: &Method, path: &str) {
    match table.lookup(method, path) {
        RouteMatch::Found(route) => {
            assert!(
                route.methods.contains(method),
                "{method} {path} routed to {}",
                route.pattern
            );
            // A pattern without parameters matches only itself.
            if !route.pattern.contains('{') {
                assert_eq!(route.pattern, path, "{method} {path}");
            }
        }
        RouteMatch::MethodNotAllowed(allow) => {
            assert!(!allow.is_empty(), "{method} {path}: 405 with no Allow");
            assert!(!allow.contains(method), "{method} {path}: 405 but {method} is allowed");
        }
        RouteMatch::NotFound => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (request, file) = text.split_once('\n').unwrap_or((&text, ""));
    let (method, path) = request.split_once(' ').unwrap_or(("GET", request));
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    check_lookup(&SHIPPED, &method, path);
    // The shipped table's promises: /v1/requests* is never anonymous.
    if let RouteMatch::Found(route) = SHIPPED.lookup(&method, path) {
        if route.function == "requests-api" {
            assert_ne!(route.auth, AuthPolicy::None, "{method} {path} is open");
            assert!(!route.scopes.is_empty());
        }
    }
    if let Ok(table) = RouteTable::parse(file) {
        assert!(!table.routes().is_empty());
        for route in table.routes() {
            assert!(route.pattern.starts_with('/'));
            assert!(!route.methods.is_empty() && !route.function.is_empty());
            assert!(route.timeout.as_millis() >= 1 && route.timeout.as_millis() <= u128::from(MAX_TIMEOUT_MS));
            assert!(route.auth != AuthPolicy::None || route.scopes.is_empty());
            // Each route's own pattern, taken literally, is routed somewhere.
            check_lookup(&table, &route.methods[0], &route.pattern);
        }
        let _ = table.functions();
        let _ = table.write_ahead_problems(std::time::Duration::from_secs(900), std::time::Duration::from_secs(5));
        check_lookup(&table, &method, path);
    }
});
