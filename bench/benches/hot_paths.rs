//! Micro-benchmarks of the request path's hot spots: request -> ALB event, ALB response ->
//! HTTP response, redaction of a request's headers and query, a rate-limit check, audit batch
//! encode + gzip, and one group commit of 256 records.
//! `cargo bench -p tollgate-bench`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use std::hint::black_box;
use tollgate_core::model::{NewRecord, RequestRecord};
use tollgate_core::ports::RequestLog;
use tollgate_ingress::alb;

fn typical_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        ),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
        ),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("x-amzn-trace-id", "Root=1-67891233-abcdef012345678912345678"),
        ("x-request-id", "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn alb_paths(c: &mut Criterion) {
    let headers = typical_headers();
    let body = br#"{"order_id":12345,"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}"#;
    let mut g = c.benchmark_group("alb");
    g.throughput(Throughput::Elements(1));
    g.bench_function("request_to_event", |b| {
        b.iter(|| {
            alb::request_event(
                black_box("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1"),
                "POST",
                "/v1/echo/orders",
                Some("page=2&sort=desc"),
                &headers,
                body,
            )
        })
    });
    let response = br#"{"statusCode":200,"statusDescription":"200 OK","headers":{"content-type":"application/json"},"multiValueHeaders":{"content-type":["application/json"],"x-trace":["a","b"]},"body":"{\"ok\":true,\"order_id\":12345}","isBase64Encoded":false}"#;
    g.bench_function("response_to_http", |b| {
        b.iter(|| alb::parse_response(black_box(response)).unwrap())
    });
    g.finish();
}

fn sample_event(i: usize) -> String {
    format!(
        r#"{{"event_version":"1","event_id":"0192b3a4-5c6d-7e8f-9a0b-{i:012}","event_time":"2026-11-25T22:10:04.123456Z","request_id":"0192b3a4-5c6d-7e8f-9a0b-{i:012}","trace_id":"Root=1-67891233-abcdef012345678912345678","source":{{"ip":"203.0.113.7","user_agent":"Mozilla/5.0"}},"principal":null,"request":{{"method":"POST","path":"/v1/echo/orders","query":"page=2","headers":{{"accept":["application/json"],"authorization":["[REDACTED]"],"host":["api.example.com"],"x-forwarded-for":["203.0.113.7"]}},"body_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","body_bytes":74}},"route":"/v1/echo/{{*rest}}","function_name":"echo","response":{{"status":200,"headers":{{"content-type":["application/json"]}},"body_sha256":"71290fa35bdb9fe6c38464ab13fbe7cde6cab7f913086ffda49eb4ea5061aca3","body_bytes":300}},"latency_ms":0.8{i},"error":null}}"#
    )
}

fn audit_encode(c: &mut Criterion) {
    let events: Vec<String> = (0..1000).map(sample_event).collect();
    let bytes: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("encode_gzip_1000_events", |b| {
        b.iter(|| tollgate_core::audit::encode(events.iter().map(String::as_str)))
    });
    g.finish();
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-bench-commit-{}", std::process::id()));
    let log = tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).unwrap();
    let mut n = 0u64;
    let mut batch = move || -> Vec<NewRecord> {
        (0..256)
            .map(|_| {
                n += 1;
                NewRecord {
                    record: RequestRecord {
                        request_id: format!("0192b3a4-5c6d-7e8f-9a0b-{n:012}"),
                        event_id: format!("ev-{n}"),
                        trace_id: Some("Root=1-67891233-abcdef012345678912345678".into()),
                        received_at: tollgate_core::clock::now(),
                        method: "POST".into(),
                        path: "/v1/echo/orders".into(),
                        query: Some("page=2".into()),
                        route: Some("/v1/echo/{*rest}".into()),
                        function_name: Some("echo".into()),
                        status: 200,
                        latency_ms: 0.8,
                        client_ip: Some("203.0.113.7".into()),
                        user_agent: Some("Mozilla/5.0".into()),
                        principal: None,
                        principal_kind: Default::default(),
                        principal_name: None,
                        scopes: Vec::new(),
                        access: "allowed:auth=none".into(),
                        request_bytes: 74,
                        response_bytes: 300,
                        error_code: None,
                    },
                    audit_batch: "0192b3a4-5c6d-7e8f-9a0b-000000000000".into(),
                    audit_payload: sample_event(n as usize),
                    client_chosen_id: false,
                    intent: false,
                }
            })
            .collect()
    };
    let mut g = c.benchmark_group("request_log");
    g.throughput(Throughput::Elements(256));
    g.sample_size(30);
    g.bench_function("sqlite_group_commit_256", |b| {
        b.iter_batched(
            &mut batch,
            |rows| rt.block_on(log.insert_batch(&rows)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

fn redact(c: &mut Criterion) {
    let mut headers = typical_headers();
    headers.insert(
        "referer",
        HeaderValue::from_static("https://app.example.com/orders?page=2&sort=desc"),
    );
    let redactor = tollgate_core::redact::Redactor::default();
    let clean = "page=2&limit=50&sort=created_at&filter%5Bstatus%5D=open&q=hello+world";
    let secret = "page=2&limit=50&api_key=abcdef0123456789&sort=created_at&q=hello+world";
    let mut g = c.benchmark_group("redact");
    g.throughput(Throughput::Elements(1));
    g.bench_function("query_nothing_secret", |b| b.iter(|| redactor.query(black_box(clean))));
    g.bench_function("query_one_secret", |b| b.iter(|| redactor.query(black_box(secret))));
    g.bench_function("headers_11", |b| b.iter(|| redactor.headers(black_box(&headers))));
    g.finish();
}

fn rate_limit(c: &mut Criterion) {
    use tollgate_ingress::ratelimit::{RateLimiter, RatePolicy};
    let limiter = RateLimiter::new(100_000);
    let policy = RatePolicy::parse("1000000/s", 1000).unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("203.0.113.{i}")).collect();
    let mut g = c.benchmark_group("ratelimit");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("check_existing_key", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            limiter.check(0, black_box(&keys[i]), &policy, std::time::Instant::now())
        })
    });
    g.finish();
}

criterion_group!(benches, alb_paths, redact, rate_limit, audit_encode, group_commit);
criterion_main!(benches);
