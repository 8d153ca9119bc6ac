//! Credential parsing: the ingress's `presented(&HeaderMap)`, the API key shape
//! (`tollgate_core::access::parse_api_key`), and the two token verifiers of `tollgate-auth`
//! run offline: a `JwtVerifier` over a JWKS *file* (fuzz/jwks.json, the test keys of
//! auth/tests/keys, written to a temp dir at start) and an `AlbOidcVerifier` whose key
//! endpoint is a loopback server in this process serving the P-256 test key as `alb-kid-1`.
//! Every header value is tried as an API key, a JWT and an ALB `x-amzn-oidc-data` token, so
//! signature checks are reached with keys they can verify (the seeds are validly signed).
//!
//! Input: a header block, `name: value` per line. With `TOLLGATE_FUZZ_TRACE=1` each
//! verification's result is printed (`fuzz/target/.../credentials <file>` to see one input's).
#![no_main]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate_auth::{AlbOidcConfig, AlbOidcVerifier, AuthFailure, JwksSource, JwtConfig, JwtVerifier};
use tollgate_core::access::{parse_api_key, API_KEY_PREFIX};
use tollgate_ingress::auth::{presented, Presented, MAX_CREDENTIAL_BYTES};

const ISSUER: &str = "https://issuer.fuzz.invalid/";
const AUDIENCE: &str = "tollgate";
const ALB_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/tollgate/0123456789abcdef";
const ALB_KID: &str = "alb-kid-1";
const ALB_KEY_PEM: &str = include_str!("../../auth/tests/keys/p256.pub.pem");

struct Verifiers {
    runtime: tokio::runtime::Runtime,
    jwt: JwtVerifier,
    alb: AlbOidcVerifier,
}

/// Serves `/<ALB_KID>` with the test public key and 404 for anything else.
fn key_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split(' ').nth(1).unwrap_or("/");
            let (status, body) = if path == format!("/{ALB_KID}") {
                ("200 OK", ALB_KEY_PEM)
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("tollgate-fuzz-credentials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, include_str!("../jwks.json")).expect("write the JWKS file");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let jwt = JwtVerifier::new(JwtConfig::new(ISSUER, vec![AUDIENCE.into()], JwksSource::File(jwks)))
        .expect("a verifier over the JWKS file");
    let alb = {
        let _guard = runtime.enter();
        AlbOidcVerifier::new(AlbOidcConfig::with_endpoint(key_server(), ALB_ARN)).expect("an ALB verifier")
    };
    Verifiers { runtime, jwt, alb }
});

fn headers(text: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim_start().as_bytes()),
        ) {
            map.append(n, v);
        }
    }
    map
}

fn check_api_key(token: &str) {
    if let Some((id, secret)) = parse_api_key(token) {
        assert_eq!(format!("{API_KEY_PREFIX}{id}_{secret}"), token);
        assert!(
            id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{token:?}"
        );
        assert!(!secret.is_empty() && !secret.contains(['.', ' ']), "{token:?}");
    }
}

fn verify(v: &Verifiers, token: &str) {
    let trace = std::env::var_os("TOLLGATE_FUZZ_TRACE").is_some();
    v.runtime.block_on(async {
        let jwt = v.jwt.verify(token).await;
        if trace {
            eprintln!("jwt: {jwt:?}");
        }
        match jwt {
            Ok(t) => {
                assert_eq!(t.issuer, ISSUER);
                assert!(token.len() <= 8192);
            }
            Err(AuthFailure::TooLarge) => assert!(token.len() > 8192),
            Err(_) => {}
        }
        let alb = v.alb.verify(token).await;
        if trace {
            eprintln!("alb: {alb:?}");
        }
        if let Ok(user) = alb {
            assert_eq!(user.signer, ALB_ARN);
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let v = &*VERIFIERS;
    let text = String::from_utf8_lossy(data);
    let map = headers(&text);
    // Both modes: without ALB OIDC the ALB's header is ignored; with it, it is a credential.
    for alb_oidc in [false, true] {
        match presented(&map, alb_oidc) {
            Ok(Presented::Nothing) => {
                assert!(!map.contains_key("authorization") && !map.contains_key("x-api-key"));
                assert!(!alb_oidc || !map.contains_key("x-amzn-oidc-data"));
            }
            Ok(Presented::ApiKey(token)) => {
                assert!(token.starts_with(API_KEY_PREFIX) && token.len() <= MAX_CREDENTIAL_BYTES);
                check_api_key(token);
            }
            Ok(Presented::Jwt(token)) => {
                assert!(token.split('.').count() == 3 && token.len() <= MAX_CREDENTIAL_BYTES);
                verify(v, token);
            }
            Ok(Presented::AlbOidc(token)) => {
                assert!(alb_oidc, "the ALB's header counts only in ALB OIDC mode");
                assert!(!map.contains_key("authorization") && !map.contains_key("x-api-key"));
                verify(v, token);
            }
            Err(refusal) => {
                assert_eq!(refusal.code.status(), 401, "{}", refusal.reason);
                let challenge = refusal.challenge.expect("a 401 carries a challenge");
                assert!(challenge
                    .to_str()
                    .is_ok_and(|c| c.starts_with("Bearer realm=\"tollgate\"")));
            }
        }
    }
    for value in map.values() {
        if let Ok(value) = value.to_str() {
            check_api_key(value);
            if value.len() <= 16 * 1024 && value.contains('.') {
                verify(v, value);
            }
        }
    }
});
