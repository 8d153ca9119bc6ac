//! `api/openapi.json` is kept true: it is OpenAPI 3.1, it describes exactly the routes of
//! `routes.toml` (each pattern, each method) plus what the ingress answers itself, every error
//! response is a problem, and the live ingress serves it at `/openapi.json` (recorded). The
//! answers themselves are checked against it by schemathesis (`scripts/schemathesis.sh`, in the
//! test command); here, the record and problem shapes are checked against its schemas.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use tollgate_ingress::handler::{OPENAPI, OPENAPI_PATH, PROBLEMS_ROUTE};
use tollgate_ingress::routes::RouteTable;

/// What the ingress answers itself, besides the routes.
const BUILTIN: [(&str, &[&str]); 3] = [
    ("/healthz", &["get"]),
    (OPENAPI_PATH, &["get"]),
    (PROBLEMS_ROUTE, &["get"]),
];

/// The OpenAPI path of a route pattern: `{*rest}` (the rest of the path) is `{rest}`.
fn openapi_path(pattern: &str) -> String {
    pattern.replace("{*", "{")
}

/// Every way `spec` and the route table disagree, each naming the route or path.
fn problems(routes_toml: &str, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if spec["openapi"].as_str().is_none_or(|v| !v.starts_with("3.1.")) {
        out.push(format!("openapi is {}, not 3.1.x", spec["openapi"]));
    }
    let routes = RouteTable::parse(routes_toml).expect("routes.toml parses");
    let paths = spec["paths"].as_object().cloned().unwrap_or_default();
    let mut described = BTreeSet::new();
    for route in routes.routes() {
        let path = openapi_path(&route.pattern);
        described.insert(path.clone());
        let Some(item) = paths.get(&path) else {
            out.push(format!(
                "route {} has no path {path} in api/openapi.json",
                route.pattern
            ));
            continue;
        };
        for m in &route.methods {
            // HEAD is GET without the body (OpenAPI describes it with GET).
            let m = m.as_str().to_ascii_lowercase();
            let m = if m == "head" { "get".to_string() } else { m };
            if item.get(&m).is_none() {
                out.push(format!(
                    "route {} method {} is not described in api/openapi.json",
                    route.pattern, m
                ));
            }
        }
        for (m, _) in item.as_object().into_iter().flatten() {
            let allowed = route.methods.iter().any(|r| r.as_str().eq_ignore_ascii_case(m));
            if m != "parameters" && !allowed {
                out.push(format!(
                    "{path} describes {m}, which route {} does not take",
                    route.pattern
                ));
            }
        }
    }
    for (path, methods) in BUILTIN {
        described.insert(path.to_string());
        for m in methods {
            if paths.get(path).and_then(|p| p.get(*m)).is_none() {
                out.push(format!("{path} {m} (answered by the ingress) is not described"));
            }
        }
    }
    for path in paths.keys() {
        if !described.contains(path) {
            out.push(format!("{path} is described but is no route"));
        }
    }
    // Every error response is an RFC 9457 problem with the request id, every 503 says when to retry.
    for (path, item) in &paths {
        for (m, op) in item.as_object().into_iter().flatten() {
            for (status, resp) in op["responses"].as_object().into_iter().flatten() {
                let resp = resolve(spec, resp);
                let code: u16 = status.parse().unwrap_or(0);
                if code >= 400 && path != "/healthz" {
                    if resp["content"]["application/problem+json"]["schema"]["$ref"] != "#/components/schemas/Problem" {
                        out.push(format!("{m} {path} {status} is not a problem"));
                    }
                    if (code == 503 || code == 429) && resp["headers"].get("Retry-After").is_none() {
                        out.push(format!("{m} {path} {code} has no Retry-After"));
                    }
                }
            }
        }
    }
    out
}

/// Follows a local `$ref`.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix("#")) {
        Some(pointer) => spec.pointer(pointer).unwrap_or(&Value::Null),
        None => v,
    }
}

fn spec() -> Value {
    serde_json::from_str(OPENAPI).expect("api/openapi.json is JSON")
}

#[test]
fn the_spec_describes_exactly_the_routes() {
    let routes = std::fs::read_to_string(workspace_root().join("routes.toml")).unwrap();
    let problems = problems(&routes, &spec());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_spec_lists_every_error_code() {
    let spec = spec();
    let listed: Vec<&str> = spec["components"]["schemas"]["ProblemCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let table: Vec<&str> = tollgate_core::apierror::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(
        listed, table,
        "components.schemas.ProblemCode.enum vs core/src/apierror.rs"
    );
}

#[test]
fn a_route_added_without_its_spec_is_named() {
    let mut routes = std::fs::read_to_string(workspace_root().join("routes.toml")).unwrap();
    routes.push_str("\n[[routes]]\npath = \"/v1/orders/{id}\"\nmethods = [\"GET\", \"DELETE\"]\nfunction = \"echo\"\ntimeout_ms = 1000\nauth = \"none\"\n");
    let found = problems(&routes, &spec());
    assert_eq!(
        found,
        vec!["route /v1/orders/{id} has no path /v1/orders/{id} in api/openapi.json".to_string()]
    );
    // A method added to a route, and a path left behind when a route goes.
    let routes = std::fs::read_to_string(workspace_root().join("routes.toml"))
        .unwrap()
        .replace(
            "methods = [\"GET\", \"HEAD\"]\nfunction = \"requests-api\"",
            "methods = [\"GET\", \"HEAD\", \"DELETE\"]\nfunction = \"requests-api\"",
        );
    let found = problems(&routes, &spec());
    assert!(
        found.iter().any(|p| p.contains("method delete is not described")),
        "{found:?}"
    );
    let mut spec = spec();
    spec["paths"]["/v1/gone"] = serde_json::json!({"get": {"responses": {}}});
    let routes = std::fs::read_to_string(workspace_root().join("routes.toml")).unwrap();
    assert_eq!(
        problems(&routes, &spec),
        vec!["/v1/gone is described but is no route".to_string()]
    );
}

/// The properties a schema of the spec names, and which of them it requires.
fn schema_fields(name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let spec = spec();
    let s = &spec["components"]["schemas"][name];
    let props = s["properties"].as_object().unwrap().keys().cloned().collect();
    let required = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (props, required)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_serves_the_spec_records_it_and_answers_as_it_says() {
    let mut ing = InProcess::start(&[], |_| {}).await;
    let r = request(ing.addr, "GET", OPENAPI_PATH, &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), spec());
    let spec_id = r.request_id();
    let r = request(ing.addr, "POST", OPENAPI_PATH, &[], "x").await;
    r.assert_error(405, "method_not_allowed");

    // A record as the API shows it has exactly the fields the schema names, all required.
    let echo = request(ing.addr, "GET", "/v1/echo?delay_ms=1", &[], "").await;
    assert_eq!(echo.status, 200);
    let (props, required) = schema_fields("Echo");
    let got: BTreeSet<String> = echo.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(got, props, "Echo schema vs the echo answer");
    assert_eq!(required, props);
    let mut page = serde_json::Value::Null;
    for _ in 0..200 {
        let r = request(ing.addr, "GET", "/v1/requests?limit=10", &[], "").await;
        page = r.json();
        if page["requests"].as_array().is_some_and(|a| a.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (props, required) = schema_fields("RequestRecord");
    for row in page["requests"].as_array().unwrap() {
        let got: BTreeSet<String> = row.as_object().unwrap().keys().cloned().collect();
        assert_eq!(got, props, "RequestRecord schema vs a listed record");
        assert_eq!(required, props);
    }
    // The spec's own answer is in the request log, under the built-in route.
    let rec = request(ing.addr, "GET", &format!("/v1/requests/{spec_id}"), &[], "").await;
    assert_eq!(rec.status, 200, "{:?}", rec.body);
    assert_eq!(rec.json()["request"]["route"], OPENAPI_PATH);
    assert_eq!(rec.json()["request"]["function_name"], Value::Null);
    // Every problem's type resolves, here, to its description; an unknown one is a 404.
    let t = request(ing.addr, "GET", "/problems/invalid_parameter", &[], "").await;
    assert_eq!(t.status, 200);
    assert_eq!(t.json()["status"], 400);
    assert_eq!(t.json()["type"], "/problems/invalid_parameter");
    let (props, _) = schema_fields("ProblemType");
    let got: BTreeSet<String> = t.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(got, props, "ProblemType schema vs the answer");
    request(ing.addr, "GET", "/problems/no_such_thing", &[], "")
        .await
        .assert_error(404, "route_not_found");
    let (props, _) = schema_fields("Problem");
    let problem = request(ing.addr, "GET", "/v1/requests?limit=0", &[], "").await;
    problem.assert_error(400, "invalid_parameter");
    let got: BTreeSet<String> = problem.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(got, props, "Problem schema vs an answered problem");
    ing.stop().await;
}
