//! The access phase: who is calling (the credential the request presents, verified) and
//! whether the route lets them in. A principal is only ever what was verified here: a key
//! found in the key store with a matching secret, or a signed token checked against its
//! issuer's keys. The outcome, allowed or refused and why, goes into the request's record and
//! audit event; a refusal never reaches a function.
//!
//! Credentials: `Authorization: Bearer <token>` (RFC 6750 section 2.1) or `x-api-key: <key>`,
//! and, in ALB OIDC mode, the ALB's signed `x-amzn-oidc-data` token.
//! A token that starts with `tg_` is a tollgate API key, one with three dot-separated parts a
//! JWT. More than one credential (two `Authorization` headers, or both headers) is refused:
//! RFC 6750 section 3.1 calls it `invalid_request` ("uses more than one method for including
//! an access token"), and accepting either would let a proxy and the ingress disagree on who
//! called.

use crate::routes::{AuthPolicy, Route};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_core::access::{self, Access, ApiKeyRecord, Principal};
use tollgate_core::apierror::ErrorCode;
use tollgate_core::ports::KeyStore;

/// The realm named in every `WWW-Authenticate` challenge.
pub const REALM: &str = "tollgate";
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// The ALB's signed user-claims token (ES256, signed by the load balancer).
const X_AMZN_OIDC_DATA: HeaderName = HeaderName::from_static("x-amzn-oidc-data");
/// Longest credential looked at (a JWT over 8 KiB is refused unparsed).
pub const MAX_CREDENTIAL_BYTES: usize = 8192;
/// Keys (and unknown key ids) remembered at most; past it, expired entries are dropped and, if
/// none are, unknown ids are not remembered (found keys always are).
const MAX_CACHED_KEYS: usize = 10_000;

/// The credential a request presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// None at all.
    Nothing,
    /// A tollgate API key (`tg_...`).
    ApiKey(&'a str),
    /// A JWT (three base64url parts).
    Jwt(&'a str),
    /// The ALB's signed OIDC token (ALB OIDC mode only).
    AlbOidc(&'a str),
}

/// Why a request is refused at the access phase.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// 401 `unauthenticated`, 403 `insufficient_scope` or 503 `request_log_unavailable`.
    pub code: ErrorCode,
    /// The stable reason recorded in the access decision (`missing_credentials`, ...).
    pub reason: &'static str,
    /// The detail sent to the client.
    pub detail: String,
    /// The RFC 6750 challenge, when the answer is 401 or 403.
    pub challenge: Option<HeaderValue>,
    /// The principal that was verified before the refusal (a 403 knows who asked).
    pub principal: Principal,
}

/// What the access phase decided for an admitted request.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The verified caller (anonymous when none).
    pub principal: Principal,
    /// Allowed, and by which policy.
    pub access: Access,
}

/// RFC 6750 section 3 challenge: `Bearer realm="tollgate"` plus, for a presented credential
/// that failed, the error code and a description (quoted-string; our descriptions carry no `"`
/// or `\`), and for 403 the scopes wanted.
fn challenge(error: Option<&str>, description: Option<&str>, scope: Option<&str>) -> Option<HeaderValue> {
    let mut v = format!("Bearer realm=\"{REALM}\"");
    if let Some(e) = error {
        v.push_str(&format!(", error=\"{e}\""));
    }
    if let Some(d) = description {
        v.push_str(&format!(", error_description=\"{}\"", d.replace(['"', '\\'], "'")));
    }
    if let Some(s) = scope {
        v.push_str(&format!(", scope=\"{s}\""));
    }
    HeaderValue::from_str(&v).ok()
}

fn unauthenticated(reason: &'static str, error: Option<&str>, detail: impl Into<String>) -> Box<Refusal> {
    let detail = detail.into();
    Box::new(Refusal {
        code: ErrorCode::Unauthenticated,
        reason,
        challenge: challenge(error, error.map(|_| detail.as_str()), None),
        detail,
        principal: Principal::anonymous(),
    })
}

/// Finds the request's credential; more than one, or a malformed one, is refused. With
/// `alb_oidc` (ALB OIDC mode) the ALB's `x-amzn-oidc-data` counts as one; otherwise it is
/// ignored (recorded, redacted, never trusted).
pub fn presented(headers: &HeaderMap, alb_oidc: bool) -> Result<Presented<'_>, Box<Refusal>> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let mut keys = headers.get_all(X_API_KEY).iter();
    let (a1, a2, k1, k2) = (auth.next(), auth.next(), keys.next(), keys.next());
    let alb = if alb_oidc {
        let mut all = headers.get_all(X_AMZN_OIDC_DATA).iter();
        match (all.next(), all.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v),
            (Some(_), Some(_)) => {
                return Err(unauthenticated(
                    "multiple_credentials",
                    Some("invalid_request"),
                    "more than one x-amzn-oidc-data header",
                ))
            }
        }
    } else {
        None
    };
    if let Some(v) = alb {
        if a1.is_some() || k1.is_some() {
            return Err(unauthenticated(
                "multiple_credentials",
                Some("invalid_request"),
                "send exactly one credential: the load balancer's sign-in, or a key or token",
            ));
        }
        let text = v.to_str().map_err(|_| {
            unauthenticated(
                "malformed_credentials",
                Some("invalid_token"),
                "x-amzn-oidc-data is not ASCII",
            )
        })?;
        return Ok(Presented::AlbOidc(text));
    }
    if a2.is_some() || k2.is_some() || (a1.is_some() && k1.is_some()) {
        return Err(unauthenticated(
            "multiple_credentials",
            Some("invalid_request"),
            "send exactly one credential: one Authorization header or one x-api-key header",
        ));
    }
    let token = match (a1, k1) {
        (None, None) => return Ok(Presented::Nothing),
        (Some(v), None) => {
            let text = v.to_str().map_err(|_| {
                unauthenticated(
                    "malformed_credentials",
                    Some("invalid_request"),
                    "the Authorization header is not ASCII",
                )
            })?;
            // RFC 7235 section 2.1: the scheme is case-insensitive; RFC 6750: `Bearer <token>`.
            match text.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => {
                    return Err(unauthenticated(
                        "unsupported_scheme",
                        Some("invalid_request"),
                        "use Authorization: Bearer <token>",
                    ))
                }
            }
        }
        (None, Some(v)) => v
            .to_str()
            .map_err(|_| {
                unauthenticated(
                    "malformed_credentials",
                    Some("invalid_request"),
                    "the x-api-key header is not ASCII",
                )
            })?
            .trim(),
        (Some(_), Some(_)) => unreachable!("refused above"),
    };
    if token.len() > MAX_CREDENTIAL_BYTES {
        return Err(unauthenticated(
            "credentials_too_large",
            Some("invalid_token"),
            format!("the credential is over {MAX_CREDENTIAL_BYTES} bytes"),
        ));
    }
    if token.starts_with(access::API_KEY_PREFIX) {
        Ok(Presented::ApiKey(token))
    } else if token.split('.').count() == 3 && k1.is_none() {
        Ok(Presented::Jwt(token))
    } else {
        Err(unauthenticated(
            "malformed_credentials",
            Some("invalid_token"),
            "the credential is neither a tollgate API key nor a JWT",
        ))
    }
}

/// A key store lookup remembered for the cache time.
struct Cached {
    key: Option<Arc<ApiKeyRecord>>,
    at: Instant,
}

/// Verifies credentials against a route's policy. API key lookups are cached for
/// `cache_ttl`, so a revocation takes effect within it.
pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    jwt: Option<tollgate_auth::JwtVerifier>,
    alb: Option<(tollgate_auth::AlbOidcVerifier, Vec<String>)>,
}

impl Authenticator {
    /// An authenticator over a key store, caching lookups for `cache_ttl`, accepting API keys
    /// only.
    pub fn new(keys: Arc<dyn KeyStore>, cache_ttl: Duration) -> Self {
        Self {
            keys,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            jwt: None,
            alb: None,
        }
    }

    /// The authenticator of a configuration: API keys, and JWTs and the ALB's OIDC token when
    /// configured.
    pub fn from_config(keys: Arc<dyn KeyStore>, config: &crate::config::IngressConfig) -> Result<Self, String> {
        let mut auth = Self::new(keys, config.auth_cache);
        if let Some(jwt) = &config.jwt {
            auth.jwt = Some(tollgate_auth::JwtVerifier::new(jwt.clone()).map_err(|e| format!("JWT settings: {e}"))?);
        }
        if let Some(alb) = &config.alb_oidc {
            let verifier = tollgate_auth::AlbOidcVerifier::new(alb.verifier.clone())
                .map_err(|e| format!("ALB OIDC settings: {e}"))?;
            auth.alb = Some((verifier, alb.scopes.clone()));
        }
        Ok(auth)
    }

    /// Fetches the JWT issuer's keys now (at start-up), so the first token does not wait.
    pub async fn warm(&self) {
        if let Some(jwt) = &self.jwt {
            match jwt.refresh_keys().await {
                Ok(n) => tracing::info!(keys = n, "JWT issuer keys loaded"),
                Err(e) => tracing::warn!(
                    reason = e.reason(),
                    "JWT issuer keys not loaded yet; retried on the first token"
                ),
            }
        }
    }

    async fn verify_jwt(&self, token: &str) -> Result<Principal, Box<Refusal>> {
        let Some(jwt) = &self.jwt else {
            return Err(unauthenticated(
                "jwt_not_configured",
                Some("invalid_token"),
                "this server accepts no JWT issuer",
            ));
        };
        let t = jwt.verify(token).await.map_err(token_refusal)?;
        Ok(Principal {
            kind: access::PrincipalKind::Jwt,
            // `<iss>#<sub>`: a subject is unique only within its issuer (OIDC Core 1.0 section 2).
            id: Some(format!("{}#{}", t.issuer, t.subject)),
            name: t.name,
            scopes: t.scopes,
        })
    }

    async fn verify_alb(&self, token: &str) -> Result<Principal, Box<Refusal>> {
        let Some((alb, scopes)) = &self.alb else {
            return Err(unauthenticated(
                "alb_oidc_not_configured",
                Some("invalid_token"),
                "no ALB sign-in here",
            ));
        };
        let u = alb.verify(token).await.map_err(token_refusal)?;
        Ok(Principal {
            kind: access::PrincipalKind::AlbOidc,
            id: Some(format!("{}#{}", u.issuer, u.subject)),
            name: u.name.or(u.email),
            scopes: scopes.clone(),
        })
    }

    /// The key with this id: from the cache while fresh, else from the store.
    async fn key(&self, key_id: &str) -> Result<Option<Arc<ApiKeyRecord>>, Box<Refusal>> {
        let now = Instant::now();
        if let Ok(cache) = self.cache.lock() {
            if let Some(c) = cache.get(key_id) {
                if now.duration_since(c.at) < self.cache_ttl {
                    return Ok(c.key.clone());
                }
            }
        }
        let found = self.keys.find_key(key_id).await.map_err(|e| {
            tracing::warn!(error = %e, "key store lookup failed");
            Box::new(Refusal {
                code: ErrorCode::CredentialsUnverifiable,
                reason: "key_store_unavailable",
                detail: ErrorCode::CredentialsUnverifiable.message().to_string(),
                challenge: None,
                principal: Principal::anonymous(),
            })
        })?;
        let found = found.map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED_KEYS {
                let ttl = self.cache_ttl;
                cache.retain(|_, c| now.duration_since(c.at) < ttl);
            }
            if found.is_some() || cache.len() < MAX_CACHED_KEYS {
                cache.insert(
                    key_id.to_string(),
                    Cached {
                        key: found.clone(),
                        at: now,
                    },
                );
            }
        }
        Ok(found)
    }

    async fn verify_api_key(&self, token: &str) -> Result<Principal, Box<Refusal>> {
        let invalid = |reason, detail: &str| unauthenticated(reason, Some("invalid_token"), detail);
        let (key_id, secret) =
            access::parse_api_key(token).ok_or_else(|| invalid("malformed_credentials", "the API key is malformed"))?;
        let key = self
            .key(key_id)
            .await?
            .ok_or_else(|| invalid("unknown_key", "the API key is not valid"))?;
        // Compared in constant time; an unknown id and a wrong secret read the same to a client.
        if !access::secret_matches(secret, &key.secret_sha256) {
            return Err(invalid("wrong_secret", "the API key is not valid"));
        }
        if let Some(why) = key.unusable_at(tollgate_core::clock::now()) {
            let detail = if why == "revoked_key" {
                "the API key was revoked"
            } else {
                "the API key has expired"
            };
            return Err(invalid(why, detail));
        }
        Ok(key.principal())
    }

    /// The access phase for `route`: the verified principal and the decision, or the refusal.
    pub async fn authorize(&self, headers: &HeaderMap, route: &Route) -> Result<Verdict, Box<Refusal>> {
        let credential = presented(headers, self.alb.is_some())?;
        let principal = match (credential, route.auth) {
            (Presented::Nothing, AuthPolicy::None) => {
                return Ok(Verdict {
                    principal: Principal::anonymous(),
                    access: Access::allowed("auth=none"),
                })
            }
            (Presented::Nothing, _) => {
                return Err(unauthenticated(
                    "missing_credentials",
                    None,
                    format!("this route needs credentials ({})", accepted(route.auth)),
                ))
            }
            (Presented::ApiKey(_), AuthPolicy::Jwt)
            | (Presented::Jwt(_), AuthPolicy::ApiKey)
            | (Presented::AlbOidc(_), AuthPolicy::ApiKey) => {
                return Err(unauthenticated(
                    "credential_kind_not_accepted",
                    Some("invalid_token"),
                    format!("this route accepts {}", accepted(route.auth)),
                ))
            }
            (Presented::ApiKey(token), _) => self.verify_api_key(token).await?,
            (Presented::Jwt(token), _) => self.verify_jwt(token).await?,
            (Presented::AlbOidc(token), _) => self.verify_alb(token).await?,
        };
        if !principal.has_any_scope(&route.scopes) {
            let wanted = route.scopes.join(" ");
            return Err(Box::new(Refusal {
                code: ErrorCode::InsufficientScope,
                reason: "insufficient_scope",
                detail: format!("this route needs one of the scopes: {wanted}"),
                challenge: challenge(
                    Some("insufficient_scope"),
                    Some("the credentials do not grant a scope this route requires"),
                    Some(&wanted),
                ),
                principal,
            }));
        }
        let policy = match route.scopes.iter().find(|s| principal.has_scope(s)) {
            Some(s) => format!("scope={s}"),
            None => format!("auth={}", route.auth.as_str()),
        };
        Ok(Verdict {
            principal,
            access: Access::allowed(policy),
        })
    }
}

/// A token the verifier refused: 401 with its reason, or 503 when the issuer's keys could not
/// be fetched (the token may be good; the client should retry, not discard it).
fn token_refusal(f: tollgate_auth::AuthFailure) -> Box<Refusal> {
    if f == tollgate_auth::AuthFailure::JwksUnavailable {
        return Box::new(Refusal {
            code: ErrorCode::CredentialsUnverifiable,
            reason: "jwks_unavailable",
            detail: ErrorCode::CredentialsUnverifiable.message().to_string(),
            challenge: None,
            principal: Principal::anonymous(),
        });
    }
    unauthenticated(f.reason(), Some("invalid_token"), f.to_string())
}

fn accepted(policy: AuthPolicy) -> &'static str {
    match policy {
        AuthPolicy::None | AuthPolicy::Any => "a tollgate API key or a JWT bearer token",
        AuthPolicy::ApiKey => "a tollgate API key",
        AuthPolicy::Jwt => "a JWT bearer token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn presented_(h: &HeaderMap) -> Result<Presented<'_>, Box<Refusal>> {
        presented(h, false)
    }

    #[test]
    fn the_alb_token_counts_only_in_alb_mode_and_alone() {
        let h = headers(&[("x-amzn-oidc-data", "a.b.c")]);
        assert_eq!(presented(&h, false).unwrap(), Presented::Nothing);
        assert_eq!(presented(&h, true).unwrap(), Presented::AlbOidc("a.b.c"));
        let both = headers(&[("x-amzn-oidc-data", "a.b.c"), ("x-api-key", "tg_x")]);
        assert_eq!(presented(&both, true).unwrap_err().reason, "multiple_credentials");
        let twice = headers(&[("x-amzn-oidc-data", "a.b.c"), ("x-amzn-oidc-data", "d.e.f")]);
        assert_eq!(presented(&twice, true).unwrap_err().reason, "multiple_credentials");
    }

    #[test]
    fn credentials_are_found_once_or_refused() {
        let key = format!("tg_0123456789abcdef_{}", "A".repeat(43));
        assert_eq!(presented_(&headers(&[])).unwrap(), Presented::Nothing);
        assert_eq!(
            presented_(&headers(&[("authorization", &format!("bearer {key}"))])).unwrap(),
            Presented::ApiKey(&key)
        );
        assert_eq!(
            presented_(&headers(&[("x-api-key", &key)])).unwrap(),
            Presented::ApiKey(&key)
        );
        assert_eq!(
            presented_(&headers(&[("authorization", "Bearer a.b.c")])).unwrap(),
            Presented::Jwt("a.b.c")
        );
        for (bad, reason) in [
            (
                vec![("authorization", "Bearer a.b.c"), ("authorization", "Bearer a.b.c")],
                "multiple_credentials",
            ),
            (
                vec![("authorization", "Bearer a.b.c"), ("x-api-key", key.as_str())],
                "multiple_credentials",
            ),
            (vec![("authorization", "Basic dTpw")], "unsupported_scheme"),
            (vec![("authorization", "Bearer nonsense")], "malformed_credentials"),
            (vec![("x-api-key", "a.b.c")], "malformed_credentials"),
        ] {
            let r = presented_(&headers(&bad)).unwrap_err();
            assert_eq!(r.reason, reason, "{bad:?}");
            assert_eq!(r.code, ErrorCode::Unauthenticated);
            assert!(r
                .challenge
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"tollgate\""));
        }
        let huge = format!("Bearer {}.{}.x", "a".repeat(5000), "b".repeat(5000));
        assert_eq!(
            presented_(&headers(&[("authorization", &huge)])).unwrap_err().reason,
            "credentials_too_large"
        );
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(challenge(None, None, None).unwrap(), "Bearer realm=\"tollgate\"");
        assert_eq!(
            challenge(Some("insufficient_scope"), Some("say \"no\""), Some("a b")).unwrap(),
            "Bearer realm=\"tollgate\", error=\"insufficient_scope\", error_description=\"say 'no'\", scope=\"a b\""
        );
    }
}
