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
            if let Ok(segments) = segments {
                routes.push(Route {
                    pattern: spec.path,
                    segments,
                    methods,
                    function: spec.function,
                    timeout: Duration::from_millis(spec.timeout_ms),
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
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert!(RouteTable::parse("routes = 3").is_err());
    }
}
