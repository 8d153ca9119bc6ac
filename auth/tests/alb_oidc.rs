//! ALB `x-amzn-oidc-data` verification against a local key endpoint serving P-256 public-key
//! PEMs at `/<kid>`, as `public-keys.auth.elb.<region>.amazonaws.com` does:
//! https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html#user-claims-encoding

mod common;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tollgate_auth::{AlbOidcConfig, AlbOidcVerifier, AuthFailure};

const ARN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/tollgate/50dc6c495c0c9188";
const KID: &str = "8b2c3d4e-1111-2222-3333-444455556666";

fn alb_key() -> EncodingKey {
    EncodingKey::from_ec_pem(P256).unwrap()
}

/// A token as the ALB makes it; `padded` keeps the `=` padding the ALB sends.
fn alb_token(key: &EncodingKey, alg: &str, signer: &str, exp: i64, claims: &Value, padded: bool) -> String {
    let header = json!({"alg": alg, "kid": KID, "signer": signer, "iss": "https://idp.test",
                        "client": "client-1", "exp": exp, "typ": "JWT"});
    let enc = |v: &Value| {
        if padded {
            URL_SAFE.encode(v.to_string())
        } else {
            URL_SAFE_NO_PAD.encode(v.to_string())
        }
    };
    let message = format!("{}.{}", enc(&header), enc(claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::ES256).unwrap();
    let sig = if padded {
        URL_SAFE.encode(URL_SAFE_NO_PAD.decode(sig).unwrap())
    } else {
        sig
    };
    format!("{message}.{sig}")
}

fn user(exp: i64) -> Value {
    // The length makes the base64 of the payload need padding.
    json!({"sub": "a1b2c3", "email": "ada@example.test", "name": "Ada", "exp": exp, "iss": "https://idp.test", "x": "y"})
}

fn setup() -> (AlbOidcVerifier, TestServer) {
    let server = TestServer::start();
    server.set(&format!("/{KID}"), 200, P256_PUB);
    let verifier = AlbOidcVerifier::new(AlbOidcConfig::with_endpoint(server.base.clone(), ARN)).unwrap();
    (verifier, server)
}

async fn refused(verifier: &AlbOidcVerifier, token: &str) -> AuthFailure {
    verifier.verify(token).await.expect_err("accepted")
}

#[tokio::test]
async fn a_correct_token_is_accepted_with_or_without_padding() {
    let (verifier, server) = setup();
    let exp = now() + 60;
    let padded = alb_token(&alb_key(), "ES256", ARN, exp, &user(exp), true);
    let parts: Vec<&str> = padded.split('.').collect();
    assert!(
        parts[1].ends_with('=') && parts[2].ends_with('='),
        "the test token is padded"
    );
    let user_ = verifier.verify(&padded).await.unwrap();
    assert_eq!(user_.subject, "a1b2c3");
    assert_eq!(user_.email.as_deref(), Some("ada@example.test"));
    assert_eq!(user_.name.as_deref(), Some("Ada"));
    assert_eq!(user_.issuer, "https://idp.test");
    assert_eq!(user_.signer, ARN);
    assert_eq!(user_.expires_at, exp);
    let unpadded = alb_token(&alb_key(), "ES256", ARN, exp, &user(exp), false);
    assert!(!unpadded.contains('='));
    assert_eq!(verifier.verify(&unpadded).await.unwrap(), user_);
    // The key was fetched once for its kid.
    assert_eq!(server.hits(&format!("/{KID}")), 1);
}

#[tokio::test]
async fn the_padding_is_part_of_the_signed_input() {
    // Stripping the padding from a padded token changes the signing input: refused.
    let (verifier, _server) = setup();
    let exp = now() + 60;
    let padded = alb_token(&alb_key(), "ES256", ARN, exp, &user(exp), true);
    let stripped: Vec<&str> = padded.split('.').map(|p| p.trim_end_matches('=')).collect();
    assert_eq!(refused(&verifier, &stripped.join(".")).await, AuthFailure::BadSignature);
}

#[tokio::test]
async fn a_wrong_signer_is_refused_without_a_key_fetch() {
    let (verifier, server) = setup();
    let exp = now() + 60;
    let other = ARN.replace("tollgate", "someone-else");
    let token = alb_token(&alb_key(), "ES256", &other, exp, &user(exp), true);
    assert_eq!(refused(&verifier, &token).await, AuthFailure::WrongSigner);
    assert_eq!(server.hits(&format!("/{KID}")), 0);
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let (verifier, _server) = setup();
    let exp = now() + 60;
    let other = EncodingKey::from_ec_pem(P256_OTHER).unwrap();
    let token = alb_token(&other, "ES256", ARN, exp, &user(exp), true);
    assert_eq!(refused(&verifier, &token).await, AuthFailure::BadSignature);
    // And a tampered payload.
    let good = alb_token(&alb_key(), "ES256", ARN, exp, &user(exp), true);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = user(exp);
    claims["sub"] = json!("admin");
    parts[1] = URL_SAFE.encode(claims.to_string());
    assert_eq!(refused(&verifier, &parts.join(".")).await, AuthFailure::BadSignature);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (verifier, _server) = setup();
    let past = now() - 120;
    let token = alb_token(&alb_key(), "ES256", ARN, past, &user(past), true);
    assert_eq!(refused(&verifier, &token).await, AuthFailure::Expired);
    // The header's exp counts even when the claims' is later.
    let token = alb_token(&alb_key(), "ES256", ARN, past, &user(now() + 600), true);
    assert_eq!(refused(&verifier, &token).await, AuthFailure::Expired);
}

#[tokio::test]
async fn other_algorithms_and_malformed_values_are_refused() {
    let (verifier, _server) = setup();
    let exp = now() + 60;
    for alg in ["ES384", "HS256", "none", "RS256"] {
        let token = alb_token(&alb_key(), alg, ARN, exp, &user(exp), true);
        assert_eq!(
            refused(&verifier, &token).await,
            AuthFailure::AlgorithmNotAllowed,
            "{alg}"
        );
    }
    for token in ["", "a.b", "a.b.c.d", "!!.x.y", "e30.e30.e30"] {
        assert_eq!(refused(&verifier, token).await, AuthFailure::Malformed, "{token}");
    }
    assert_eq!(refused(&verifier, &"a".repeat(20_000)).await, AuthFailure::TooLarge);
}

#[tokio::test]
async fn an_unreachable_key_is_jwks_unavailable_and_not_refetched_at_once() {
    let server = TestServer::start(); // serves nothing: 404 for every kid
    let verifier = AlbOidcVerifier::new(AlbOidcConfig::with_endpoint(server.base.clone(), ARN)).unwrap();
    let exp = now() + 60;
    let token = alb_token(&alb_key(), "ES256", ARN, exp, &user(exp), true);
    assert_eq!(refused(&verifier, &token).await, AuthFailure::JwksUnavailable);
    assert_eq!(refused(&verifier, &token).await, AuthFailure::JwksUnavailable);
    assert_eq!(server.hits(&format!("/{KID}")), 1);
    // Another made-up kid right after: no fetch at all (at most one per `min_fetch_interval`).
    let header = json!({"alg": "ES256", "kid": "made-up", "signer": ARN, "exp": exp});
    let token = format!("{}.e30.e30", URL_SAFE_NO_PAD.encode(header.to_string()));
    assert_eq!(refused(&verifier, &token).await, AuthFailure::JwksUnavailable);
    assert_eq!(server.hits("/made-up"), 0);
    // A kid that is not a plain identifier never reaches a URL.
    let header = json!({"alg": "ES256", "kid": "../../etc", "signer": ARN, "exp": exp});
    let token = format!("{}.e30.e30", URL_SAFE_NO_PAD.encode(header.to_string()));
    assert_eq!(refused(&verifier, &token).await, AuthFailure::Malformed);
}

#[test]
fn regional_endpoints() {
    let config = AlbOidcConfig::for_region("eu-west-1", ARN);
    assert_eq!(
        config.key_endpoint,
        "https://public-keys.auth.elb.eu-west-1.amazonaws.com"
    );
    assert!(AlbOidcVerifier::new(AlbOidcConfig::with_endpoint("http://127.0.0.1:1", "")).is_err());
}
