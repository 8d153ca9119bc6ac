//! JWT verification against a JWKS served over real HTTP on loopback and from a file: the
//! positive cases and the attack corpus of issue 14 (RFC 7519, RFC 8725, RFC 7517).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tollgate_auth::{AuthFailure, JwksSource, JwtConfig, JwtVerifier, VerifiedToken};

const ISS: &str = "https://issuer.test/";
const AUD: &str = "tollgate";

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA).unwrap()
}
fn p256() -> EncodingKey {
    EncodingKey::from_ec_pem(P256).unwrap()
}
fn ed25519() -> EncodingKey {
    EncodingKey::from_ed_pem(ED25519).unwrap()
}

/// The public JWK of a test key, with `kid` (and `alg` unless `declare_alg` is false), read
/// from the SubjectPublicKeyInfo DER of its public PEM (fixed layouts for these key types).
fn jwk(alg: Algorithm, kid: &str, declare_alg: bool) -> Value {
    let mut v = match alg {
        Algorithm::RS256 => {
            // RSA 2048, e = 65537: ... 02 82 01 01 00 <256-byte n> 02 03 01 00 01
            let spki = pem_der(RSA_PUB_PEM);
            assert_eq!(spki.len(), 294);
            assert_eq!(&spki[28..33], [0x02, 0x82, 0x01, 0x01, 0x00]);
            assert_eq!(&spki[289..], [0x02, 0x03, 0x01, 0x00, 0x01]);
            json!({"kty": "RSA", "alg": "RS256", "e": "AQAB",
                   "n": URL_SAFE_NO_PAD.encode(&spki[33..289])})
        }
        Algorithm::ES256 => {
            // P-256: ... 03 42 00 04 <32-byte x> <32-byte y>
            let spki = pem_der(P256_PUB);
            assert_eq!(spki.len(), 91);
            assert_eq!(spki[26], 0x04);
            json!({"kty": "EC", "crv": "P-256", "alg": "ES256",
                   "x": URL_SAFE_NO_PAD.encode(&spki[27..59]),
                   "y": URL_SAFE_NO_PAD.encode(&spki[59..91])})
        }
        _ => {
            // Ed25519: a 12-byte prefix, then the 32-byte public key.
            let spki = pem_der(ED25519_PUB);
            assert_eq!(spki.len(), 44);
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                   "x": URL_SAFE_NO_PAD.encode(&spki[12..])})
        }
    };
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    if !declare_alg {
        v.as_object_mut().unwrap().remove("alg");
    }
    v
}

/// The JWKS the tests serve: one key of each kind plus keys that must be skipped.
fn jwks() -> Value {
    json!({"keys": [
        jwk(Algorithm::RS256, "rsa", true),
        jwk(Algorithm::ES256, "ec", true),
        jwk(Algorithm::EdDSA, "ed", true),
        {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "hmac"},
        {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc",
         "n": jwk(Algorithm::RS256, "x", true)["n"], "e": "AQAB"},
    ]})
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "exp": now() + 300, "iat": now(),
           "preferred_username": "ada", "scope": "requests:read requests:read:own",
           "jti": "t-1"})
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn config(jwks: JwksSource) -> JwtConfig {
    JwtConfig::new(ISS, vec!["other-api".into(), AUD.into()], jwks)
}

/// A verifier over a JWKS served by a fresh loopback server (returned, with the path).
fn served(body: &Value, tweak: impl FnOnce(&mut JwtConfig)) -> (JwtVerifier, TestServer) {
    let server = TestServer::start();
    server.set("/jwks.json", 200, body.to_string());
    let mut config = config(JwksSource::Url(server.url("/jwks.json")));
    tweak(&mut config);
    (JwtVerifier::new(config).unwrap(), server)
}

fn from_file(body: &Value) -> (JwtVerifier, tempdir::TempJwks) {
    let file = tempdir::TempJwks::new(body);
    let verifier = JwtVerifier::new(config(JwksSource::File(file.path.clone()))).unwrap();
    (verifier, file)
}

mod tempdir {
    pub struct TempJwks {
        pub path: std::path::PathBuf,
    }
    impl TempJwks {
        pub fn new(body: &serde_json::Value) -> Self {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("tollgate-auth-{}-{n}.json", std::process::id()));
            std::fs::write(&path, body.to_string()).unwrap();
            Self { path }
        }
    }
    impl Drop for TempJwks {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn refused(verifier: &JwtVerifier, token: &str) -> &'static str {
    match verifier.verify(token).await {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => {
            let text = e.to_string();
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!text.contains(part), "the message shows token bytes: {text}");
            }
            e.reason()
        }
    }
}

#[tokio::test]
async fn rs256_with_scope_over_http() {
    let (verifier, server) = served(&jwks(), |_| {});
    let c = claims();
    let token = sign(Algorithm::RS256, &rsa(), Some("rsa"), &c);
    let v = verifier.verify(&token).await.unwrap();
    assert_eq!(
        v,
        VerifiedToken {
            subject: "user-1".into(),
            issuer: ISS.into(),
            name: Some("ada".into()),
            scopes: vec!["requests:read".into(), "requests:read:own".into()],
            expires_at: c["exp"].as_i64(),
            token_id: Some("t-1".into()),
        }
    );
    // Again: the verification cache answers, and the JWKS was fetched once.
    assert_eq!(verifier.verify(&token).await.unwrap(), v);
    assert_eq!(server.hits("/jwks.json"), 1);
}

#[tokio::test]
async fn es256_with_scp_array_from_file() {
    let (verifier, _file) = from_file(&jwks());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["requests:read", "admin"]);
    c["aud"] = json!(["unrelated", AUD]);
    c["name"] = json!("Ada Lovelace");
    let v = verifier
        .verify(&sign(Algorithm::ES256, &p256(), Some("ec"), &c))
        .await
        .unwrap();
    assert_eq!(v.scopes, ["requests:read", "admin"]);
    assert_eq!(v.name.as_deref(), Some("Ada Lovelace"));
}

#[tokio::test]
async fn eddsa_with_scp_string() {
    let (verifier, _server) = served(&jwks(), |_| {});
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c.as_object_mut().unwrap().remove("preferred_username");
    c["scp"] = json!("requests:read:own");
    c["email"] = json!("ada@example.test");
    let v = verifier
        .verify(&sign(Algorithm::EdDSA, &ed25519(), Some("ed"), &c))
        .await
        .unwrap();
    assert_eq!(v.scopes, ["requests:read:own"]);
    assert_eq!(v.name.as_deref(), Some("ada@example.test"));
}

#[tokio::test]
async fn a_single_key_set_needs_no_kid_and_undeclared_alg_follows_the_key_type() {
    let (verifier, _file) = from_file(&json!({"keys": [jwk(Algorithm::ES256, "only", false)]}));
    let token = sign(Algorithm::ES256, &p256(), None, &claims());
    assert!(verifier.verify(&token).await.is_ok());
    let rsa_header = sign(Algorithm::RS256, &rsa(), None, &claims());
    assert_eq!(refused(&verifier, &rsa_header).await, "algorithm_not_allowed");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (verifier, _server) = served(&jwks(), |_| {});
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "none", "kid": "rsa"}),
        json!({"alg": "None"}),
    ] {
        let unsigned = format!("{}.{}.", b64(&header), b64(&claims()));
        assert_eq!(refused(&verifier, &unsigned).await, "algorithm_not_allowed");
        // With a signature part copied from a real token: still refused.
        let real = sign(Algorithm::RS256, &rsa(), Some("rsa"), &claims());
        let sig = real.rsplit('.').next().unwrap();
        assert_eq!(
            refused(&verifier, &format!("{unsigned}{sig}")).await,
            "algorithm_not_allowed"
        );
    }
}

#[tokio::test]
async fn hs256_with_the_rsa_public_key_as_secret_is_refused() {
    // RFC 8725 section 2.1: the key-confusion attack, with the PEM text and the DER bytes.
    let (verifier, _server) = served(&jwks(), |_| {});
    for secret in [RSA_PUB_PEM, RSA_PUB_DER, &pem_der(RSA_PUB_PEM)[..]] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &EncodingKey::from_secret(secret), Some("rsa"), &claims());
            assert_eq!(refused(&verifier, &token).await, "algorithm_not_allowed");
        }
    }
    // Not even the JWKS's own HMAC key is usable: it was skipped.
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"secret"),
        Some("hmac"),
        &claims(),
    );
    assert_eq!(refused(&verifier, &token).await, "algorithm_not_allowed");
}

#[tokio::test]
async fn a_valid_signature_from_an_unknown_key_is_refused() {
    let (verifier, _server) = served(&jwks(), |_| {});
    let other = EncodingKey::from_rsa_pem(RSA_OTHER).unwrap();
    // Claiming a known kid: the signature does not verify with that key.
    let token = sign(Algorithm::RS256, &other, Some("rsa"), &claims());
    assert_eq!(refused(&verifier, &token).await, "bad_signature");
    // Without a kid, in a set of several keys: no key is chosen.
    let token = sign(Algorithm::RS256, &other, None, &claims());
    assert_eq!(refused(&verifier, &token).await, "unknown_key");
    // A kid of a skipped (encryption) key is unknown.
    let token = sign(Algorithm::RS256, &other, Some("enc"), &claims());
    assert_eq!(refused(&verifier, &token).await, "unknown_key");
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let (verifier, _file) = from_file(&jwks());
    let token = sign(Algorithm::ES256, &p256(), Some("nope"), &claims());
    assert_eq!(refused(&verifier, &token).await, "unknown_key");
}

#[tokio::test]
async fn issuer_audience_and_times() {
    let (verifier, _server) = served(&jwks(), |_| {});
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        sign(Algorithm::ES256, &p256(), Some("ec"), &c)
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(k);
        sign(Algorithm::ES256, &p256(), Some("ec"), &c)
    };
    assert_eq!(
        refused(&verifier, &with("iss", json!("https://evil.test/"))).await,
        "wrong_issuer"
    );
    assert_eq!(
        refused(&verifier, &with("iss", json!("https://issuer.test"))).await,
        "wrong_issuer"
    );
    assert_eq!(
        refused(&verifier, &with("aud", json!("someone-else"))).await,
        "wrong_audience"
    );
    assert_eq!(
        refused(&verifier, &with("aud", json!(["a", "b"]))).await,
        "wrong_audience"
    );
    assert_eq!(refused(&verifier, &with("exp", json!(now() - 120))).await, "expired");
    assert_eq!(
        refused(&verifier, &with("nbf", json!(now() + 300))).await,
        "not_yet_valid"
    );
    assert_eq!(
        refused(&verifier, &with("iat", json!(now() + 300))).await,
        "not_yet_valid"
    );
    for claim in ["exp", "iss", "aud", "sub"] {
        assert_eq!(refused(&verifier, &without(claim)).await, "missing_claim", "{claim}");
    }
    // Within the 30 s leeway: accepted.
    assert!(verifier.verify(&with("exp", json!(now() - 10))).await.is_ok());
    assert!(verifier.verify(&with("nbf", json!(now() + 10))).await.is_ok());
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let (verifier, _server) = served(&jwks(), |_| {});
    for (alg, key, kid) in [
        (Algorithm::RS256, rsa(), "rsa"),
        (Algorithm::ES256, p256(), "ec"),
        (Algorithm::EdDSA, ed25519(), "ed"),
    ] {
        let token = sign(alg, &key, Some(kid), &claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        parts[1] = b64(&c);
        assert_eq!(refused(&verifier, &parts.join(".")).await, "bad_signature");
        // A flipped signature byte, too.
        let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        sig[5] ^= 1;
        parts[1] = token.split('.').nth(1).unwrap().to_owned();
        parts[2] = URL_SAFE_NO_PAD.encode(sig);
        assert_eq!(refused(&verifier, &parts.join(".")).await, "bad_signature");
    }
}

#[tokio::test]
async fn an_oversized_token_is_refused_before_parsing() {
    let (verifier, server) = served(&jwks(), |_| {});
    let mut c = claims();
    c["padding"] = json!("x".repeat(9000));
    let token = sign(Algorithm::ES256, &p256(), Some("ec"), &c);
    assert!(token.len() > 8192);
    assert_eq!(refused(&verifier, &token).await, "too_large");
    assert_eq!(refused(&verifier, &"a".repeat(100_000)).await, "too_large");
    assert_eq!(server.hits("/jwks.json"), 0, "nothing fetched for an oversized token");
}

#[tokio::test]
async fn malformed_headers_are_refused() {
    let (verifier, _server) = served(&jwks(), |_| {});
    let good = sign(Algorithm::ES256, &p256(), Some("ec"), &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        format!("!!notbase64!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), parts[1], parts[2]),
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("[1,2]"), parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!(
            "{}.{}.{}",
            b64(&json!({"alg": "ES256", "kid": "ec", "crit": ["exp"]})),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", b64(&json!({"kid": "ec"})), parts[1], parts[2]),
        String::new(),
        "..".into(),
    ];
    for token in &cases {
        assert_eq!(refused(&verifier, token).await, "malformed", "{token}");
    }
}

#[tokio::test]
async fn an_es256_header_on_an_rsa_key_is_refused() {
    for declare in [true, false] {
        let set = json!({"keys": [jwk(Algorithm::RS256, "rsa", declare), jwk(Algorithm::ES256, "ec", declare)]});
        let (verifier, _file) = from_file(&set);
        let token = sign(Algorithm::ES256, &p256(), Some("rsa"), &claims());
        assert_eq!(refused(&verifier, &token).await, "algorithm_not_allowed");
        let token = sign(Algorithm::RS256, &rsa(), Some("ec"), &claims());
        assert_eq!(refused(&verifier, &token).await, "algorithm_not_allowed");
        let token = sign(Algorithm::EdDSA, &ed25519(), Some("ec"), &claims());
        assert_eq!(refused(&verifier, &token).await, "algorithm_not_allowed");
    }
    // A JWK whose declared alg does not fit its type is skipped, not trusted.
    let mut lying = jwk(Algorithm::RS256, "rsa", true);
    lying["alg"] = json!("ES256");
    let (verifier, _file) = from_file(&json!({"keys": [lying, jwk(Algorithm::ES256, "ec", true)]}));
    let token = sign(Algorithm::RS256, &rsa(), Some("rsa"), &claims());
    assert_eq!(refused(&verifier, &token).await, "unknown_key");
}

#[tokio::test]
async fn kid_rotation_refetches_once_per_window() {
    let first = json!({"keys": [jwk(Algorithm::RS256, "rsa", true)]});
    let (verifier, server) = served(&first, |c| c.jwks_min_refresh = Duration::from_millis(300));
    let path = "/jwks.json";
    let rsa_token = sign(Algorithm::RS256, &rsa(), Some("rsa"), &claims());
    assert!(verifier.verify(&rsa_token).await.is_ok());
    assert_eq!(server.hits(path), 1);

    // The issuer rotates in the EC key; past the window, its unknown kid triggers one refetch.
    tokio::time::sleep(Duration::from_millis(350)).await;
    server.set(
        path,
        200,
        json!({"keys": [jwk(Algorithm::RS256, "rsa", true), jwk(Algorithm::ES256, "ec", true)]}).to_string(),
    );
    let ec_token = sign(Algorithm::ES256, &p256(), Some("ec"), &claims());
    assert!(verifier.verify(&ec_token).await.is_ok());
    assert_eq!(server.hits(path), 2);

    // A second unknown kid within the window: refused without a fetch.
    let stray = sign(Algorithm::ES256, &p256(), Some("stray"), &claims());
    assert_eq!(refused(&verifier, &stray).await, "unknown_key");
    assert_eq!(server.hits(path), 2);

    // Past the window, concurrent misses share one fetch.
    tokio::time::sleep(Duration::from_millis(350)).await;
    server.set_delay(Duration::from_millis(200));
    let verifier = Arc::new(verifier);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let verifier = verifier.clone();
            let token = sign(Algorithm::ES256, &p256(), Some(&format!("new-{i}")), &claims());
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), AuthFailure::UnknownKey);
    }
    assert_eq!(server.hits(path), 3);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_old_keys() {
    let (verifier, server) = served(&jwks(), |c| {
        c.jwks_ttl = Duration::from_millis(100);
        c.jwks_min_refresh = Duration::from_millis(50);
    });
    let token = |jti: &str| {
        let mut c = claims();
        c["jti"] = json!(jti);
        sign(Algorithm::ES256, &p256(), Some("ec"), &c)
    };
    assert!(verifier.verify(&token("a")).await.is_ok());
    server.set("/jwks.json", 500, "down");
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Stale: a refetch is tried, fails, and the keys we had still verify.
    assert!(verifier.verify(&token("b")).await.is_ok());
    assert_eq!(server.hits("/jwks.json"), 2);
    server.set("/jwks.json", 200, "not json");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(verifier.verify(&token("c")).await.is_ok());
    assert_eq!(server.hits("/jwks.json"), 3);
}

#[tokio::test]
async fn an_unreachable_key_set_is_jwks_unavailable() {
    let server = TestServer::start();
    server.set("/jwks.json", 503, "down");
    let verifier = JwtVerifier::new(config(JwksSource::Url(server.url("/jwks.json")))).unwrap();
    let token = sign(Algorithm::ES256, &p256(), Some("ec"), &claims());
    assert_eq!(refused(&verifier, &token).await, "jwks_unavailable");
    assert_eq!(verifier.refresh_keys().await, Err(AuthFailure::JwksUnavailable));
    // Rate-limited: a second request within the window does not fetch again.
    assert_eq!(refused(&verifier, &token).await, "jwks_unavailable");
    assert_eq!(server.hits("/jwks.json"), 2);
    server.set("/jwks.json", 200, jwks().to_string());
    assert_eq!(verifier.refresh_keys().await, Ok(3));
    assert!(verifier.verify(&token).await.is_ok());
}

#[test]
fn configuration_errors() {
    let missing = JwksSource::File("/nonexistent/jwks.json".into());
    assert!(JwtVerifier::new(config(missing)).is_err());
    let empty = tempdir::TempJwks::new(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}));
    assert!(JwtVerifier::new(config(JwksSource::File(empty.path.clone()))).is_err());
    assert!(JwtVerifier::new(config(JwksSource::Url("ftp://x/jwks".into()))).is_err());
    assert!(JwtVerifier::new(JwtConfig::new(
        "",
        vec![AUD.into()],
        JwksSource::Url("http://127.0.0.1:1/".into())
    ))
    .is_err());
    assert!(JwtVerifier::new(JwtConfig::new(
        ISS,
        vec![],
        JwksSource::Url("http://127.0.0.1:1/".into())
    ))
    .is_err());
}

#[test]
fn reasons_are_stable_and_distinct() {
    let all = [
        AuthFailure::Malformed,
        AuthFailure::TooLarge,
        AuthFailure::AlgorithmNotAllowed,
        AuthFailure::UnknownKey,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::WrongIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::WrongSigner,
        AuthFailure::MissingClaim("exp"),
        AuthFailure::JwksUnavailable,
    ];
    let reasons: Vec<_> = all.iter().map(AuthFailure::reason).collect();
    assert_eq!(reasons, AuthFailure::REASONS);
    assert_eq!(
        AuthFailure::MissingClaim("exp").to_string(),
        "the token lacks the required claim `exp`"
    );
}

/// Timing of one verification, first-seen (signature checked) and repeated (cache):
/// `cargo test -p tollgate-auth --release --test jwt -- --ignored --nocapture timing`.
#[tokio::test]
#[ignore = "a measurement; run with --release"]
async fn timing() {
    let (verifier, _file) = from_file(&jwks());
    for (name, alg, key, kid) in [
        ("ES256", Algorithm::ES256, p256(), "ec"),
        ("RS256", Algorithm::RS256, rsa(), "rsa"),
        ("EdDSA", Algorithm::EdDSA, ed25519(), "ed"),
    ] {
        // Best of 3 rounds (wall clock on a shared machine), fresh tokens each round.
        let n = 1000;
        let (mut first, mut cached) = (Duration::MAX, Duration::MAX);
        for round in 0..3 {
            let tokens: Vec<String> = (0..n)
                .map(|i| {
                    let mut c = claims();
                    c["jti"] = json!(format!("{name}-{round}-{i}"));
                    sign(alg, &key, Some(kid), &c)
                })
                .collect();
            let started = Instant::now();
            for t in &tokens {
                verifier.verify(t).await.unwrap();
            }
            first = first.min(started.elapsed() / n);
            let started = Instant::now();
            for _ in 0..10 {
                for t in &tokens {
                    verifier.verify(t).await.unwrap();
                }
            }
            cached = cached.min(started.elapsed() / (n * 10));
        }
        println!("{name}: first-seen {first:?} per token, cached {cached:?} per token");
    }
}
