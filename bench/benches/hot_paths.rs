//! Micro-benchmarks of the request path's hot spots: request -> ALB event, ALB response ->
//! HTTP response, redaction of a request's headers and query, a rate-limit check, audit batch
//! encode + gzip, one group commit of 256 records, and the CPU per request of receipts.
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
    // The same level (1, `Compression::fast`) with miniz_oxide, flate2's backend before
    // zlib-rs: the baseline of the writer's path.
    let text: Vec<u8> = events
        .iter()
        .flat_map(|e| e.bytes().chain(std::iter::once(b'\n')))
        .collect();
    g.bench_function("deflate_1000_events_miniz_oxide", |b| {
        b.iter(|| miniz_oxide::deflate::compress_to_vec(black_box(&text), 1))
    });
    // Decoding, what `tollgate verify` does for every object: flate2 (zlib-rs) on the gzip
    // object, miniz_oxide on the same object's deflate stream (the gzip header is 10 bytes
    // with no name, mtime 0; the trailer 8).
    let object = tollgate_core::audit::encode(events.iter().map(String::as_str));
    let mut out = Vec::with_capacity(text.len());
    g.bench_function("gunzip_1000_events", |b| {
        b.iter(|| {
            use std::io::Read;
            out.clear();
            flate2::read::GzDecoder::new(black_box(&object[..]))
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out.len(), text.len());
        })
    });
    let deflated = &object[10..object.len() - 8];
    g.bench_function("inflate_1000_events_miniz_oxide", |b| {
        b.iter(|| {
            let got = miniz_oxide::inflate::decompress_to_vec(black_box(deflated)).unwrap();
            assert_eq!(got.len(), text.len());
        })
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

/// The access phase per request, beside the unauthenticated path: an API key with a warm
/// cache, a repeated ES256 JWT (the verification cache), and first-seen ES256 JWTs (the cache
/// off, so every one is verified). Targets (issue 14): <= 2 us, <= 3 us, <= 100 us.
fn access(c: &mut Criterion) {
    use base64::Engine as _;
    use tollgate_ingress::auth::Authenticator;
    let dir = std::env::temp_dir().join(format!("tollgate-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).unwrap();
    let keys: std::sync::Arc<dyn tollgate_core::ports::KeyStore> = std::sync::Arc::new(log);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = rt
        .block_on(tollgate_ingress::ops::create_key(
            &*keys,
            "bench",
            &["requests:read".into()],
            None,
        ))
        .unwrap();
    // The ES256 test key of tollgate-auth and its JWKS.
    let pem = include_bytes!("../../auth/tests/keys/p256.pem");
    let pub_pem = std::str::from_utf8(include_bytes!("../../auth/tests/keys/p256.pub.pem")).unwrap();
    let b64: String = pub_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let spki = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "ec",
        "x": url.encode(&spki[27..59]), "y": url.encode(&spki[59..91])}]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    let env = |cache: &str| {
        vec![
            ("TOLLGATE_JWT_ISSUER".to_string(), "https://issuer.test/".to_string()),
            ("TOLLGATE_JWT_AUDIENCES".to_string(), "tollgate".to_string()),
            (
                "TOLLGATE_JWT_JWKS_FILE".to_string(),
                dir.join("jwks.json").display().to_string(),
            ),
            ("TOLLGATE_MODE".to_string(), cache.to_string()),
        ]
    };
    let config = |cache_tokens: bool| {
        let (mut c, _) = tollgate_ingress::config::IngressConfig::from_sources(env("embedded"), Vec::new()).unwrap();
        if !cache_tokens {
            c.jwt.as_mut().unwrap().cache_capacity = 0;
        }
        c
    };
    let cached = Authenticator::from_config(keys.clone(), &config(true)).unwrap();
    let uncached = Authenticator::from_config(keys.clone(), &config(false)).unwrap();
    let routes = tollgate_ingress::routes::RouteTable::parse(
        "[[routes]]\npath = \"/open\"\nmethods = [\"GET\"]\nfunction = \"f\"\ntimeout_ms = 5\nauth = \"none\"\n\
         [[routes]]\npath = \"/read\"\nmethods = [\"GET\"]\nfunction = \"f\"\ntimeout_ms = 5\nauth = \"any\"\n\
         scopes = [\"requests:read\", \"requests:read:own\"]\n",
    )
    .unwrap();
    let (open, read) = (&routes.routes()[0], &routes.routes()[1]);
    let token = |i: u64| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({"iss": "https://issuer.test/", "aud": "tollgate", "sub": format!("user-{i}"),
            "exp": now + 3600, "iat": now, "scope": "requests:read"});
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("ec".into());
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(pem).unwrap()).unwrap()
    };
    let bearer = |t: &str| {
        let mut h = typical_headers();
        h.insert("authorization", HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        h
    };
    let mut anonymous = typical_headers();
    anonymous.remove("authorization");
    let key_headers = bearer(&key.token);
    let jwt_headers = bearer(&token(0));
    let fresh: Vec<HeaderMap> = (1..=2000).map(|i| bearer(&token(i))).collect();
    for (a, h, r) in [
        (&cached, &key_headers, read),
        (&cached, &jwt_headers, read),
        (&cached, &anonymous, open),
    ] {
        assert!(
            rt.block_on(a.authorize(h, r)).is_ok(),
            "the bench's credentials are good"
        );
    }
    // The targets are CPU per request: each sample is this thread's CPU time
    // (CLOCK_THREAD_CPUTIME_ID), so other processes on the 2 cores do not count against it.
    let mut g = c.benchmark_group("access_cpu");
    g.throughput(Throughput::Elements(1));
    let cpu = |iters: u64, f: &mut dyn FnMut()| {
        let start = thread_cpu();
        for _ in 0..iters {
            f();
        }
        thread_cpu() - start
    };
    g.bench_function("anonymous_open_route", |b| {
        b.iter_custom(|n| {
            cpu(n, &mut || {
                assert!(rt.block_on(cached.authorize(black_box(&anonymous), open)).is_ok())
            })
        })
    });
    g.bench_function("api_key_warm_cache", |b| {
        b.iter_custom(|n| {
            cpu(n, &mut || {
                assert!(rt.block_on(cached.authorize(black_box(&key_headers), read)).is_ok())
            })
        })
    });
    g.bench_function("jwt_es256_repeated", |b| {
        b.iter_custom(|n| {
            cpu(n, &mut || {
                assert!(rt.block_on(cached.authorize(black_box(&jwt_headers), read)).is_ok())
            })
        })
    });
    let mut i = 0;
    g.bench_function("jwt_es256_first_seen", |b| {
        b.iter_custom(|n| {
            cpu(n, &mut || {
                i = (i + 1) % fresh.len();
                assert!(rt.block_on(uncached.authorize(black_box(&fresh[i]), read)).is_ok())
            })
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU per request of receipts (issue 15 item 4), amortized over one signature for 1, 8, 10, 20,
/// 64 and 256 receipted requests (10 and 20: what a 10 or 20 ms signing window holds at 1,000
/// receipted requests/s), beside the default path in the same run. The default path is the
/// per-request work the recorder does for every record whether or not it is receipted: the audit
/// event serialized to its JSON line. The receipt path adds, per commit: each line's RFC 6962
/// leaf hash, the commit's tree, one Ed25519 signature of the statement, each request's path
/// and its header value (document, base64url, `HeaderValue`). Each sample is this thread's CPU
/// time divided by the commit size, so criterion's times are per request.
fn receipt_cpu(c: &mut Criterion) {
    use tollgate_core::access::{Access, Principal};
    use tollgate_core::model::{AuditEvent, AuditRequest, AuditResponse, AuditSource};
    use tollgate_ingress::receipt::{issue_with, ReceiptEntry, TaskKey};
    let origin = "tollgate.local/0123456789abcdef";
    let log_key = tollgate_tlog::Ed25519Signer::generate(origin).unwrap();
    let task_key = tollgate_tlog::note::now_or_never(TaskKey::certify(&log_key, std::time::Duration::from_secs(3600)))
        .unwrap()
        .unwrap();
    let headers = typical_headers();
    let redactor = tollgate_core::redact::Redactor::new(std::iter::empty(), std::iter::empty());
    let event = |i: usize| AuditEvent {
        event_version: tollgate_core::model::AUDIT_EVENT_VERSION.to_string(),
        event_id: format!("0192b3a4-5c6d-7e8f-9a0b-{i:012}"),
        event_time: tollgate_core::clock::now(),
        request_id: format!("0192b3a4-5c6d-7e8f-9a0c-{i:012}"),
        trace_id: Some("Root=1-67891233-abcdef012345678912345678".into()),
        source: AuditSource {
            ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)".into()),
        },
        principal: Principal::anonymous(),
        access: Access::allowed("auth=none"),
        request: AuditRequest {
            method: "POST".into(),
            path: "/v1/echo/orders".into(),
            query: Some("page=2&sort=desc".into()),
            headers: redactor.headers(&headers),
            body_sha256: Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()),
            body_bytes: 74,
        },
        route: Some("/v1/echo/{*rest}".into()),
        function_name: Some("echo".into()),
        invoked: true,
        response: AuditResponse {
            status: 200,
            headers: [("content-type".to_string(), vec!["application/json".to_string()])].into(),
            body_sha256: "71290fa35bdb9fe6c38464ab13fbe7cde6cab7f913086ffda49eb4ea5061aca3".into(),
            body_bytes: 300,
            delivered: true,
        },
        latency_ms: 0.8,
        error: None,
    };
    let events: Vec<AuditEvent> = (0..256).map(event).collect();
    let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let mut g = c.benchmark_group("receipt_cpu");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 8, 10, 20, 64, 256] {
        let per_request = |iters: u64, f: &mut dyn FnMut()| {
            let start = thread_cpu();
            for _ in 0..iters {
                f();
            }
            (thread_cpu() - start) / n as u32
        };
        let default = |events: &[AuditEvent]| -> Vec<String> {
            events
                .iter()
                .map(|e| serde_json::to_string(black_box(e)).unwrap())
                .collect()
        };
        let receipts = |lines: &[String]| {
            let entries: Vec<ReceiptEntry> = lines
                .iter()
                .zip(&events)
                .map(|(l, e)| ReceiptEntry {
                    request_id: &e.request_id,
                    line: l.as_bytes(),
                })
                .collect();
            let now_ms = 1_796_000_000_000;
            let values = issue_with(&task_key, origin, now_ms, black_box(&entries)).unwrap();
            values
                .into_iter()
                .map(|v| http::HeaderValue::from_str(&v).unwrap())
                .collect::<Vec<_>>()
        };
        g.bench_function(format!("default/{n}"), |b| {
            b.iter_custom(|iters| per_request(iters, &mut || drop(black_box(default(&events[..n])))))
        });
        g.bench_function(format!("receipt_only/{n}"), |b| {
            b.iter_custom(|iters| per_request(iters, &mut || drop(black_box(receipts(&lines[..n])))))
        });
        g.bench_function(format!("default_with_receipt/{n}"), |b| {
            b.iter_custom(|iters| {
                per_request(iters, &mut || {
                    let lines = default(&events[..n]);
                    drop(black_box(receipts(&lines)))
                })
            })
        });
    }
    g.finish();
}

/// This thread's CPU time so far.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

criterion_group!(
    benches,
    alb_paths,
    redact,
    rate_limit,
    access,
    audit_encode,
    group_commit,
    receipt_cpu
);
criterion_main!(benches);
