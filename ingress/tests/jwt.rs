//! JWT bearer tokens at the ingress, end to end: a configured issuer's ES256 token reads the
//! request log with its scopes and names its caller `<iss>#<sub>`; the attack corpus is
//! refused with 401, each recorded with its reason and none reaching the function. The keys are
//! the tollgate-auth test keys (`auth/tests/keys/`); the JWKS is a file the test writes.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

const ISS: &str = "https://issuer.test/";
const AUD: &str = "tollgate";
const P256: &[u8] = include_bytes!("../../auth/tests/keys/p256.pem");
const P256_PUB: &[u8] = include_bytes!("../../auth/tests/keys/p256.pub.pem");
const P256_OTHER: &[u8] = include_bytes!("../../auth/tests/keys/p256-other.pem");
const RSA_PUB_PEM: &[u8] = include_bytes!("../../auth/tests/keys/rsa.pub.pem");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn der(pem: &[u8]) -> Vec<u8> {
    let b64: String = std::str::from_utf8(pem)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    STANDARD.decode(b64).unwrap()
}

/// The JWKS: the P-256 test key as `ec`.
fn jwks() -> Value {
    let spki = der(P256_PUB);
    assert_eq!((spki.len(), spki[26]), (91, 0x04), "uncompressed P-256 SPKI");
    json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "ec",
        "x": URL_SAFE_NO_PAD.encode(&spki[27..59]), "y": URL_SAFE_NO_PAD.encode(&spki[59..91])}]})
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "name": "User One", "exp": now() + 300,
        "iat": now(), "scope": "requests:read:own openid"})
}

fn es256(claims: &Value, kid: &str, key: &[u8]) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_pem(key).unwrap()).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token made by hand (for the algorithm attacks jsonwebtoken will not produce).
fn raw(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(&header), b64(claims), URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_issuers_tokens_read_and_the_attack_corpus_is_refused_and_recorded() {
    let dir = TempDir::new("jwks");
    let jwks_file = dir.0.join("jwks.json");
    std::fs::write(&jwks_file, jwks().to_string()).unwrap();
    let path = jwks_file.to_str().unwrap().to_string();
    let mut ing = InProcess::start(
        &[
            ("TOLLGATE_JWT_ISSUER", ISS),
            ("TOLLGATE_JWT_AUDIENCES", AUD),
            ("TOLLGATE_JWT_JWKS_FILE", &path),
        ],
        |_| {},
    )
    .await;
    let read = |token: String| async move {
        Client::anonymous(ing.addr)
            .await
            .send(
                "GET",
                "/v1/requests?limit=5",
                &[("authorization", &format!("Bearer {token}"))],
                "",
            )
            .await
            .unwrap()
    };

    // A good token: the caller is `<iss>#<sub>`, with its scopes; it reads its own records.
    let good = es256(&claims(), "ec", P256);
    let r = read(good.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let stored = ing.backends.log.get(&r.request_id()).await.unwrap();
    let stored = match stored {
        Some(s) => s,
        None => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ing.backends.log.get(&r.request_id()).await.unwrap().expect("row")
        }
    };
    assert_eq!(stored.record.principal.as_deref(), Some("https://issuer.test/#user-1"));
    assert_eq!(stored.record.principal_kind, tollgate_core::access::PrincipalKind::Jwt);
    assert_eq!(stored.record.principal_name.as_deref(), Some("User One"));
    assert_eq!(stored.record.access, "allowed:scope=requests:read:own");

    let c = claims();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = c.clone();
        f(&mut v);
        v
    };
    let rsa_pub = RSA_PUB_PEM.to_vec();
    // HS256 "signed" with the RSA public key as the HMAC secret (RFC 8725 section 2.1).
    let hs = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("ec".into());
        jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(&rsa_pub)).unwrap()
    };
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut claims = claims();
        claims["scope"] = json!("requests:read");
        format!("{}.{}.{}", parts[0], b64(&claims), parts[2])
    };
    let oversized = es256(&with(&|v| v["pad"] = json!("x".repeat(9000))), "ec", P256);
    let corpus: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            raw(json!({"alg": "none", "typ": "JWT"}), &c, b""),
            "algorithm_not_allowed",
        ),
        ("HS256 with the public key", hs, "algorithm_not_allowed"),
        ("unknown key", es256(&c, "ec", P256_OTHER), "bad_signature"),
        ("unknown kid", es256(&c, "nope", P256), "unknown_key"),
        (
            "wrong iss",
            es256(&with(&|v| v["iss"] = json!("https://evil.test/")), "ec", P256),
            "wrong_issuer",
        ),
        (
            "wrong aud",
            es256(&with(&|v| v["aud"] = json!("someone-else")), "ec", P256),
            "wrong_audience",
        ),
        (
            "expired",
            es256(&with(&|v| v["exp"] = json!(now() - 3600)), "ec", P256),
            "expired",
        ),
        (
            "not yet valid",
            es256(&with(&|v| v["nbf"] = json!(now() + 3600)), "ec", P256),
            "not_yet_valid",
        ),
        ("tampered payload", tampered, "bad_signature"),
        ("oversized", oversized, "credentials_too_large"),
        ("malformed header", format!("!!!.{}.sig", b64(&c)), "malformed"),
    ];
    for (name, token, reason) in corpus {
        let r = read(token).await;
        r.assert_error(401, "unauthenticated");
        let www = r.headers["www-authenticate"].to_str().unwrap().to_string();
        assert!(www.contains("error=\"invalid_token\""), "{name}: {www}");
        let row = loop {
            if let Some(row) = ing.backends.log.get(&r.request_id()).await.unwrap() {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(row.record.access, format!("refused:{reason}"), "{name}");
        assert_eq!(row.record.status, 401, "{name}");
        let event: Value = serde_json::from_str(row.audit_payload.as_deref().unwrap()).unwrap();
        assert_eq!(event["invoked"], false, "{name} reached the function");
        assert_eq!(event["principal"]["kind"], "anonymous", "{name}");
    }
    // A duplicated Authorization header.
    let auth = format!("Bearer {good}");
    let r = Client::anonymous(ing.addr)
        .await
        .send(
            "GET",
            "/v1/requests",
            &[("authorization", &auth), ("authorization", &auth)],
            "",
        )
        .await
        .unwrap();
    r.assert_error(401, "unauthenticated");
    // The token's own scope decides: requests:read:own cannot list another's records.
    let other = ing.token.clone();
    let r = Client::anonymous(ing.addr)
        .await
        .send(
            "GET",
            "/v1/requests?limit=1000",
            &[("authorization", &format!("Bearer {good}"))],
            "",
        )
        .await
        .unwrap();
    for row in r.json()["requests"].as_array().unwrap() {
        assert_eq!(row["principal"], "https://issuer.test/#user-1");
    }
    assert!(!r.body.is_empty() && !other.is_empty());
    ing.stop().await;
}

const ALB_ARN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/tollgate/50dc6c495c0c9188";
const ALB_KID: &str = "8b2c3d4e-1111-2222-3333-444455556666";

/// Serves the ALB's public key at `/<kid>` as the regional ELB key endpoint does; counts hits.
fn key_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, body) = if path == format!("/{ALB_KID}") {
                ("200 OK", P256_PUB.to_vec())
            } else {
                ("404 Not Found", b"no such key".to_vec())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (base, hits)
}

/// An `x-amzn-oidc-data` token as the ALB makes it (ES256, `signer` and `kid` in the header,
/// base64url with padding as AWS documents).
fn alb_token(signer: &str, key: &[u8], exp: i64) -> String {
    use base64::engine::general_purpose::URL_SAFE;
    let header = json!({"alg": "ES256", "kid": ALB_KID, "signer": signer, "iss": "https://idp.test",
        "client": "client-1", "exp": exp, "typ": "JWT"});
    let claims = json!({"sub": "a1b2c3", "email": "ada@example.test", "exp": exp, "iss": "https://idp.test"});
    let message = format!(
        "{}.{}",
        URL_SAFE.encode(header.to_string()),
        URL_SAFE.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_ec_pem(key).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    format!("{message}.{}", URL_SAFE.encode(URL_SAFE_NO_PAD.decode(sig).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_authenticating_alb_the_signed_token_names_the_caller_and_the_plain_header_does_not() {
    let (endpoint, hits) = key_endpoint();
    let mut ing = InProcess::start(
        &[
            ("TOLLGATE_ALB_OIDC_SIGNER_ARN", ALB_ARN),
            ("TOLLGATE_ALB_OIDC_KEY_ENDPOINT", &endpoint),
        ],
        |_| {},
    )
    .await;
    let addr = ing.addr;
    let send = |headers: Vec<(&'static str, String)>, path: &'static str| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Client::anonymous(addr).await.send("GET", path, &h, "").await.unwrap()
    };
    let log = ing.backends.log.clone();
    let row = |id: String| {
        let log = log.clone();
        async move {
            loop {
                if let Some(r) = log.get(&id).await.unwrap() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Signed by this load balancer: the caller is the user, with the ALB users' scope.
    let good = alb_token(ALB_ARN, P256, now() + 600);
    let r = send(
        vec![
            ("x-amzn-oidc-data", good.clone()),
            ("x-amzn-oidc-identity", "a1b2c3".into()),
        ],
        "/v1/requests",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let stored = row(r.request_id()).await;
    assert_eq!(stored.record.principal.as_deref(), Some("https://idp.test#a1b2c3"));
    assert_eq!(
        stored.record.principal_kind,
        tollgate_core::access::PrincipalKind::AlbOidc
    );
    assert_eq!(stored.record.principal_name.as_deref(), Some("ada@example.test"));
    assert_eq!(stored.record.access, "allowed:scope=requests:read:own");
    // The token is a secret: it is redacted in the audit event.
    let event: Value = serde_json::from_str(stored.audit_payload.as_deref().unwrap()).unwrap();
    assert!(
        !event.to_string().contains(&good[..40]),
        "the ALB token reached the audit event"
    );
    // The plain identity header alone is nobody.
    let forged = send(vec![("x-amzn-oidc-identity", "admin@corp".into())], "/v1/echo/x").await;
    assert_eq!(forged.status, 200);
    let stored = row(forged.request_id()).await;
    assert_eq!(stored.record.principal, None);
    assert_eq!(
        stored.record.principal_kind,
        tollgate_core::access::PrincipalKind::Anonymous
    );
    // Another load balancer's token, a token signed by another key, an expired one: refused.
    for (name, token, reason) in [
        (
            "another ALB",
            alb_token(&ALB_ARN.replace("tollgate", "other"), P256, now() + 600),
            "wrong_signer",
        ),
        (
            "another key",
            alb_token(ALB_ARN, P256_OTHER, now() + 600),
            "bad_signature",
        ),
        ("expired", alb_token(ALB_ARN, P256, now() - 600), "expired"),
    ] {
        let r = send(vec![("x-amzn-oidc-data", token)], "/v1/echo/y").await;
        r.assert_error(401, "unauthenticated");
        assert_eq!(
            row(r.request_id()).await.record.access,
            format!("refused:{reason}"),
            "{name}"
        );
    }
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the key was fetched from the endpoint"
    );
    ing.stop().await;
}
