//! The route table: method + path pattern -> function name and timeout, from a TOML file.

use http::Method;
use serde::Deserialize;
use std::time::Duration;

/// Methods `ANY` stands for (the ones a function may be routed; others always get 405).
pub const ANY_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];
/// Longest route timeout accepted (Lambda's own maximum is 15 minutes).
pub const MAX_TIMEOUT_MS: u64 = 900_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    routes: Vec<RouteSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    path: String,
    methods: Vec<String>,
    function: String,
    timeout_ms: u64,
    #[serde(default)]
    record: Recording,
    /// Required: a route without it is a start-up error (no route is open by accident).
    auth: Option<AuthPolicy>,
    #[serde(default)]
    scopes: Vec<String>,
    rate: Option<String>,
    burst: Option<i64>,
    /// Every answer carries a receipt (`crate::receipt`); clients may also ask per request.
    #[serde(default)]
    receipt: bool,
}

/// Which credentials a route accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPolicy {
    /// Anonymous callers are let through; a credential that is presented is still verified
    /// (a bad one is refused: a client that sends a key expects it to count).
    None,
    /// A tollgate API key.
    ApiKey,
    /// A JWT access token (or, behind an ALB that authenticates, its signed OIDC token).
    Jwt,
    /// Either.
    Any,
}

impl AuthPolicy {
    /// The policy as written in `routes.toml`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Any => "any",
        }
    }
}

/// When a route's request is first made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recording {
    /// Once answered, before the answer is released (one commit per request).
    #[default]
    After,
    /// Also before the function is invoked: a write-ahead intent, replaced by the record once
    /// answered, so that even an ingress killed while the function runs leaves a row (the
    /// reconciler finalizes it as `outcome_unknown`). One more commit per request.
    Before,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Literal(String),
    Param,
    Rest,
}

/// One route.
#[derive(Clone, Debug)]
pub struct Route {
    /// The pattern as written (recorded as the request's `route`).
    pub pattern: String,
    segments: Vec<Segment>,
    /// Methods allowed.
    pub methods: Vec<Method>,
    /// Function that answers.
    pub function: String,
    /// How long to wait for the function.
    pub timeout: Duration,
    /// When the request is first made durable.
    pub record: Recording,
    /// Which credentials it accepts.
    pub auth: AuthPolicy,
    /// Scopes of which the caller needs at least one (empty: none needed).
    pub scopes: Vec<String>,
    /// Its rate limit per caller (principal, else client IP), if any.
    pub rate: Option<crate::ratelimit::RatePolicy>,
    /// Its position in the table (the rate limiter's route key).
    pub index: usize,
    /// Whether every answer carries a receipt (`receipt = true`), not only those a client
    /// asked for with `Prefer: tollgate-receipt`.
    pub receipt: bool,
}

/// The result of matching a request.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// A route takes it.
    Found(&'a Route),
    /// The path is known but not with this method.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// All routes, in file order.
#[derive(Clone, Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
}

fn parse_pattern(path: &str) -> Result<Vec<Segment>, String> {
    let rest = path.strip_prefix('/').ok_or("must start with /")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let seg = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if let Some(name) = inner.strip_prefix('*') {
                if i + 1 != parts.len() {
                    return Err(format!("{{*{name}}} must be the last segment"));
                }
                Segment::Rest
            } else {
                Segment::Param
            }
        } else if part.contains(['{', '}']) {
            return Err(format!("bad segment {part:?}"));
        } else {
            Segment::Literal(part.to_string())
        };
        segments.push(seg);
    }
    Ok(segments)
}

fn matches(segments: &[Segment], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = rest.split('/');
    for seg in segments {
        match seg {
            Segment::Rest => return true,
            Segment::Literal(l) => {
                if parts.next() != Some(l.as_str()) {
                    return false;
                }
            }
            Segment::Param => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
        }
    }
    parts.next().is_none()
}

impl RouteTable {
    /// Parses a route file; every problem is reported.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let file: RouteFile = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        for (i, spec) in file.routes.into_iter().enumerate() {
            let at = format!("route {} ({})", i + 1, spec.path);
            let segments = parse_pattern(&spec.path).map_err(|e| errors.push(format!("{at}: path {e}")));
            let mut methods = Vec::new();
            for m in &spec.methods {
                if m == "ANY" {
                    methods.extend(ANY_METHODS.iter().cloned());
                } else if let Some(known) = ANY_METHODS.iter().find(|k| k.as_str() == m) {
                    methods.push(known.clone());
                } else {
                    errors.push(format!("{at}: unknown method {m:?}"));
                }
            }
            methods.dedup();
            if methods.is_empty() {
                errors.push(format!("{at}: no methods"));
            }
            if spec.function.is_empty() {
                errors.push(format!("{at}: empty function"));
            }
            if !(1..=MAX_TIMEOUT_MS).contains(&spec.timeout_ms) {
                errors.push(format!("{at}: timeout_ms must be 1-{MAX_TIMEOUT_MS}"));
            }
            let auth = match spec.auth {
                Some(a) => a,
                None => {
                    errors.push(format!(
                        "{at}: no auth (none, api_key, jwt or any): every route says who may call it"
                    ));
                    AuthPolicy::None
                }
            };
            for scope in &spec.scopes {
                if !tollgate_core::access::valid_scope(scope) {
                    errors.push(format!("{at}: invalid scope {scope:?}"));
                }
            }
            if auth == AuthPolicy::None && !spec.scopes.is_empty() {
                errors.push(format!(
                    "{at}: scopes need credentials: auth = \"none\" lets anonymous callers in"
                ));
            }
            let rate = match (&spec.rate, spec.burst) {
                (None, None) => None,
                (None, Some(_)) => {
                    errors.push(format!("{at}: burst without rate"));
                    None
                }
                (Some(rate), burst) => {
                    // Without a burst: one second's worth (at least 1).
                    let burst = burst.unwrap_or_else(|| {
                        crate::ratelimit::RatePolicy::parse_rate(rate).map_or(1, |r| r.ceil().max(1.0) as i64)
                    });
                    crate::ratelimit::RatePolicy::parse(rate, burst)
                        .map_err(|e| errors.push(format!("{at}: {e}")))
                        .ok()
                }
            };
            if let Ok(segments) = segments {
                routes.push(Route {
                    pattern: spec.path,
                    segments,
                    methods,
                    function: spec.function,
                    timeout: Duration::from_millis(spec.timeout_ms),
                    record: spec.record,
                    auth,
                    scopes: spec.scopes,
                    rate,
                    index: i,
                    receipt: spec.receipt,
                });
            }
        }
        if routes.is_empty() && errors.is_empty() {
            errors.push("no routes".into());
        }
        if errors.is_empty() {
            Ok(Self { routes })
        } else {
            Err(errors)
        }
    }

    /// Reads and parses a route file.
    pub fn load(path: &std::path::Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        Self::parse(&text).map_err(|errs| errs.into_iter().map(|e| format!("{}: {e}", path.display())).collect())
    }

    /// Write-ahead routes whose requests could still be running when the reconciler finalizes
    /// their intents as `outcome_unknown`: the route timeout plus the commit budget plus a
    /// minute of margin must stay under the intent grace (`TOLLGATE_INTENT_GRACE_MS`).
    pub fn write_ahead_problems(&self, intent_grace: Duration, commit_budget: Duration) -> Vec<String> {
        let margin = Duration::from_secs(60);
        self.routes
            .iter()
            .filter(|r| r.record == Recording::Before && r.timeout + commit_budget + margin >= intent_grace)
            .map(|r| {
                format!(
                    "route {}: record = \"before\" needs timeout_ms ({}) + TOLLGATE_COMMIT_RETRY_MS ({}) + 60000 < TOLLGATE_INTENT_GRACE_MS ({})",
                    r.pattern,
                    r.timeout.as_millis(),
                    commit_budget.as_millis(),
                    intent_grace.as_millis()
                )
            })
            .collect()
    }

    /// The routes, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Functions the table routes to.
    pub fn functions(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self.routes.iter().map(|r| r.function.as_str()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// Matches a request (path as received, without query).
    pub fn lookup(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let mut allow: Vec<Method> = Vec::new();
        for route in &self.routes {
            if matches(&route.segments, path) {
                if route.methods.contains(method) {
                    return RouteMatch::Found(route);
                }
                for m in &route.methods {
                    if !allow.contains(m) {
                        allow.push(m.clone());
                    }
                }
            }
        }
        if allow.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed(allow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::parse(include_str!("../../routes.toml")).unwrap()
    }

    #[test]
    fn the_shipped_table_routes_the_design_surface() {
        let t = table();
        let found = |m: Method, p: &str| match t.lookup(&m, p) {
            RouteMatch::Found(r) => Some(r.function.clone()),
            _ => None,
        };
        assert_eq!(found(Method::POST, "/v1/echo").as_deref(), Some("echo"));
        assert_eq!(found(Method::DELETE, "/v1/echo/a/b/").as_deref(), Some("echo"));
        assert_eq!(found(Method::GET, "/v1/requests").as_deref(), Some("requests-api"));
        assert_eq!(found(Method::GET, "/v1/requests/abc").as_deref(), Some("requests-api"));
        assert!(matches!(t.lookup(&Method::GET, "/v1/requests/"), RouteMatch::NotFound));
        assert!(matches!(
            t.lookup(&Method::GET, "/v1/requests/a/b"),
            RouteMatch::NotFound
        ));
        assert!(matches!(t.lookup(&Method::GET, "/nope"), RouteMatch::NotFound));
        match t.lookup(&Method::POST, "/v1/requests") {
            RouteMatch::MethodNotAllowed(allow) => assert_eq!(allow, vec![Method::GET, Method::HEAD]),
            other => panic!("{other:?}"),
        }
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert!(matches!(t.lookup(&odd, "/v1/echo"), RouteMatch::MethodNotAllowed(_)));
        assert_eq!(t.functions(), vec!["echo", "requests-api"]);
    }

    #[test]
    fn receipts_are_off_unless_a_route_turns_them_on() {
        assert!(table().routes().iter().all(|r| !r.receipt));
        let route = |extra: &str| {
            RouteTable::parse(&format!(
                "[[routes]]\npath = \"/r\"\nmethods = [\"GET\"]\nfunction = \"echo\"\ntimeout_ms = 10\nauth = \"none\"\n{extra}"
            ))
        };
        assert!(route("receipt = true").unwrap().routes()[0].receipt);
        assert!(!route("receipt = false").unwrap().routes()[0].receipt);
        assert!(route("receipt = \"yes\"").is_err());
    }

    #[test]
    fn bad_files_report_every_problem() {
        let errs = RouteTable::parse(
            r#"
            [[routes]]
            path = "v1"
            methods = ["FETCH"]
            function = ""
            timeout_ms = 0
            [[routes]]
            path = "/a/{*x}/b"
            methods = ["GET"]
            function = "f"
            timeout_ms = 5
            "#,
        )
        .unwrap_err();
        // 5 in the first route, the {*x} in the second, and neither says who may call it.
        assert_eq!(errs.len(), 8, "{errs:?}");
        assert_eq!(errs.iter().filter(|e| e.contains("no auth")).count(), 2, "{errs:?}");
        assert!(RouteTable::parse("routes = 3").is_err());
        let bad = RouteTable::parse(
            "[[routes]]\npath = \"/a\"\nmethods = [\"GET\"]\nfunction = \"f\"\ntimeout_ms = 5\nrecord = \"sometimes\"\n",
        );
        assert!(bad.is_err(), "record is after or before");
    }

    #[test]
    fn every_route_says_who_may_call_it() {
        let route = |extra: &str| {
            RouteTable::parse(&format!(
                "[[routes]]\npath = \"/a\"\nmethods = [\"GET\"]\nfunction = \"f\"\ntimeout_ms = 5\n{extra}"
            ))
        };
        assert!(route("").unwrap_err()[0].contains("no auth"));
        assert!(route("auth = \"open\"\n").is_err());
        assert!(route("auth = \"none\"\nscopes = [\"a\"]\n").unwrap_err()[0].contains("scopes need credentials"));
        assert!(route("auth = \"api_key\"\nscopes = [\"a b\"]\n").unwrap_err()[0].contains("invalid scope"));
        let t = route("auth = \"any\"\nscopes = [\"r:read\"]\n").unwrap();
        assert_eq!(t.routes()[0].auth, AuthPolicy::Any);
        assert_eq!(t.routes()[0].scopes, vec!["r:read".to_string()]);
        // The shipped table: echo is open (a demo), the request log needs a read scope.
        for r in table().routes() {
            if r.function == "requests-api" {
                assert_eq!(r.auth, AuthPolicy::Any, "{}", r.pattern);
                assert_eq!(
                    r.scopes,
                    vec!["requests:read".to_string(), "requests:read:own".to_string()]
                );
            }
        }
    }

    #[test]
    fn write_ahead_routes_must_finish_inside_the_intent_grace() {
        let t = RouteTable::parse(
            r#"
            [[routes]]
            path = "/a"
            methods = ["POST"]
            function = "f"
            timeout_ms = 600000
            record = "before"
            auth = "none"
            [[routes]]
            path = "/b"
            methods = ["POST"]
            function = "f"
            timeout_ms = 900000
            auth = "none"
            "#,
        )
        .unwrap();
        assert_eq!(t.routes()[0].record, Recording::Before);
        assert_eq!(t.routes()[1].record, Recording::After, "after is the default");
        let grace = tollgate_core::reconcile::INTENT_GRACE.default;
        assert!(t.write_ahead_problems(grace, Duration::from_secs(2)).is_empty());
        let problems = t.write_ahead_problems(Duration::from_secs(600), Duration::from_secs(2));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("/a"), "only the write-ahead route: {problems:?}");
    }
}
