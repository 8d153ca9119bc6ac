//! JWT access tokens (RFC 7519) signed with a key from a JWKS (RFC 7517).
//!
//! The checks follow the JWT BCP, RFC 8725:
//! - algorithms are an allow-list (RS256, ES256, EdDSA) and each key verifies only its own
//!   algorithm: `alg: none` and HMAC are refused before any key is looked at, so a public key
//!   can never be used as an HMAC secret (RFC 8725 section 2.1, 3.1, 3.2);
//! - `iss` and `aud` are required and compared exactly (RFC 8725 section 3.8, 3.9; RFC 7519
//!   section 4.1.1, 4.1.3); `exp` is required, `nbf` and `iat` are honoured with a small leeway
//!   (RFC 7519 section 4.1.4-4.1.6);
//! - a header with `crit` is refused: we understand no extension (RFC 7515 section 4.1.11);
//! - an oversized token is refused before it is parsed.
//!
//! The signature itself is checked by the `jsonwebtoken` crate (on *ring*), never here. The
//! algorithm and key-type checks above run first and must: `jsonwebtoken` 9 is only ever given
//! a key together with the one algorithm that key verifies.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::cache::{digest, VerifyCache};
use crate::error::{from_jose, AuthFailure, ConfigError};
use crate::fetch::Fetcher;

/// Where the JSON Web Key Set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, read at start and again on refresh.
    File(PathBuf),
    /// A JWKS URL (`https://`, or `http://` for loopback and tests), cached with a TTL.
    Url(String),
}

/// What a [`JwtVerifier`] accepts.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The exact `iss` required.
    pub issuer: String,
    /// The accepted audiences: `aud` must name at least one.
    pub audiences: Vec<String>,
    /// The key set.
    pub jwks: JwksSource,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (default 30 s).
    pub leeway: Duration,
    /// Tokens longer than this are refused unparsed (default 8192 bytes).
    pub max_token_bytes: usize,
    /// At most one key-set refetch per this interval (on an unknown `kid`, default 30 s).
    pub jwks_min_refresh: Duration,
    /// Key sets older than this are refetched (default 10 min).
    pub jwks_ttl: Duration,
    /// Verified tokens remembered at most (default 10 000; 0 turns the cache off).
    pub cache_capacity: usize,
    /// A remembered token is re-verified after this long at most (default 60 s).
    pub cache_ttl: Duration,
    /// Timeout of one key-set fetch (default 5 s).
    pub fetch_timeout: Duration,
}

impl JwtConfig {
    /// A configuration with the defaults for everything but issuer, audiences and key set.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, jwks: JwksSource) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks,
            leeway: Duration::from_secs(30),
            max_token_bytes: 8192,
            jwks_min_refresh: Duration::from_secs(30),
            jwks_ttl: Duration::from_secs(600),
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// The identity a verified access token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`.
    pub subject: String,
    /// `iss` (equal to the configured issuer).
    pub issuer: String,
    /// A display name: `name`, else `preferred_username`, else `email`.
    pub name: Option<String>,
    /// Granted scopes: `scope` (space-separated, RFC 8693 section 4.2) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<i64>,
    /// `jti`.
    pub token_id: Option<String>,
}

/// Verifies JWT access tokens against a JWKS (see the module docs for the rules).
pub struct JwtVerifier {
    issuer: String,
    leeway: Duration,
    max_token_bytes: usize,
    validations: [(Algorithm, Validation); 3],
    keys: KeyStore,
    cache: VerifyCache<VerifiedToken>,
}

impl JwtVerifier {
    /// A verifier; a file key set is read now (and must hold a usable key), a URL is fetched
    /// on first use (or by [`JwtVerifier::refresh_keys`]).
    pub fn new(config: JwtConfig) -> Result<Self, ConfigError> {
        if config.issuer.is_empty() {
            return Err(ConfigError("the JWT issuer is empty".into()));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
            return Err(ConfigError("the JWT audiences are empty".into()));
        }
        let fetcher = match &config.jwks {
            JwksSource::Url(url) => Some(Fetcher::new(url, config.fetch_timeout)?),
            JwksSource::File(_) => None,
        };
        let issuer = config.issuer.clone();
        let validation = |alg| {
            let mut v = Validation::new(alg);
            v.leeway = config.leeway.as_secs();
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_issuer(&[&issuer]);
            v.set_audience(&config.audiences);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            (alg, v)
        };
        let keys = KeyStore {
            source: config.jwks.clone(),
            fetcher,
            ttl: config.jwks_ttl,
            min_refresh: config.jwks_min_refresh,
            state: Mutex::new(KeyState::default()),
            refresh: tokio::sync::Mutex::new(()),
        };
        if let JwksSource::File(path) = &config.jwks {
            let set = read_file(path).map_err(ConfigError)?;
            if set.keys.is_empty() {
                return Err(ConfigError(format!(
                    "the JWKS file {} has no usable key (RS256, ES256 or EdDSA)",
                    path.display()
                )));
            }
            keys.store(Ok(set));
        }
        Ok(Self {
            issuer: config.issuer,
            leeway: config.leeway,
            max_token_bytes: config.max_token_bytes,
            validations: [
                validation(Algorithm::RS256),
                validation(Algorithm::ES256),
                validation(Algorithm::EdDSA),
            ],
            keys,
            cache: VerifyCache::new(config.cache_capacity, config.cache_ttl),
        })
    }

    /// Fetches (or rereads) the key set now, ignoring the rate limit: the count of usable keys.
    pub async fn refresh_keys(&self) -> Result<usize, AuthFailure> {
        let _one = self.keys.refresh.lock().await;
        let result = self.keys.load().await;
        let ok = result.is_ok();
        self.keys.store(result);
        match self.keys.snapshot().set {
            Some(set) if ok => Ok(set.keys.len()),
            _ => Err(AuthFailure::JwksUnavailable),
        }
    }

    /// Verifies `token` (the bearer credential, without `Bearer `): its identity, or why not.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthFailure> {
        if token.len() > self.max_token_bytes {
            return Err(AuthFailure::TooLarge);
        }
        let key = digest(token);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let header = parse_header(token)?;
        let mut set = self.keys.current().await?;
        if find_key(&set, header.kid.as_deref()).is_none() {
            if header.kid.is_none() {
                return Err(AuthFailure::UnknownKey);
            }
            // RFC 7517 section 4.5 / OIDC Core 10.1.1: an unknown kid may mean the issuer
            // rotated keys; refetch, at most once per `jwks_min_refresh`.
            set = self.keys.refresh_after_miss(&set).await?;
        }
        let entry = find_key(&set, header.kid.as_deref()).ok_or(AuthFailure::UnknownKey)?;
        if entry.alg != header.alg {
            return Err(AuthFailure::AlgorithmNotAllowed);
        }
        let validation = &self
            .validations
            .iter()
            .find(|(alg, _)| *alg == entry.alg)
            .ok_or(AuthFailure::AlgorithmNotAllowed)?
            .1;
        let data = jsonwebtoken::decode::<Claims>(token, &entry.key, validation).map_err(|e| from_jose(&e))?;
        let claims = data.claims;
        let now = unix_now();
        let leeway = self.leeway.as_secs() as i64;
        if let Some(iat) = claims.iat.as_ref().map(numeric_date).transpose()? {
            if iat > now + leeway {
                return Err(AuthFailure::NotYetValid);
            }
        }
        let exp = claims
            .exp
            .as_ref()
            .map(numeric_date)
            .transpose()?
            .ok_or(AuthFailure::MissingClaim("exp"))?;
        let verified = VerifiedToken {
            subject: claims.sub.ok_or(AuthFailure::MissingClaim("sub"))?,
            issuer: claims.iss.unwrap_or_else(|| self.issuer.clone()),
            name: claims.name.or(claims.preferred_username).or(claims.email),
            scopes: scopes(claims.scope, claims.scp),
            expires_at: Some(exp),
            token_id: claims.jti,
        };
        let remaining = exp.saturating_add(leeway).saturating_sub(now).max(0) as u64;
        self.cache.insert(key, verified.clone(), Duration::from_secs(remaining));
        Ok(verified)
    }
}

/// The claims read from a verified token (all optional here; presence is checked above or by
/// `jsonwebtoken`'s required claims).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    exp: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    name: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    scope: Option<String>,
    scp: Option<Scp>,
    jti: Option<String>,
}

/// `scp`: an array of scopes (Azure AD, Okta) or one space-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    List(Vec<String>),
    One(String),
}

fn scopes(scope: Option<String>, scp: Option<Scp>) -> Vec<String> {
    let split = |s: &str| {
        s.split(' ')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    match (scope, scp) {
        (Some(s), _) => split(&s),
        (None, Some(Scp::List(list))) => list.into_iter().filter(|s| !s.is_empty()).collect(),
        (None, Some(Scp::One(s))) => split(&s),
        (None, None) => Vec::new(),
    }
}

/// A NumericDate (RFC 7519 section 2): seconds, possibly fractional.
fn numeric_date(v: &serde_json::Value) -> Result<i64, AuthFailure> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .ok_or(AuthFailure::Malformed)
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The JOSE header fields we act on, read before any key is chosen.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// Structure and header checks: three base64url segments (RFC 7515 section 7.1, no padding),
/// a JSON header with an allowed `alg`, no `crit`.
fn parse_header(token: &str) -> Result<TokenHeader, AuthFailure> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthFailure::Malformed)?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| AuthFailure::Malformed)?;
    let alg = match raw.alg.as_deref() {
        Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        // `none`, HS256/384/512, PS*, ES384 and anything else (RFC 8725 section 3.1).
        Some(_) => return Err(AuthFailure::AlgorithmNotAllowed),
        None => return Err(AuthFailure::Malformed),
    };
    if raw.crit.is_some() || payload.is_empty() || signature.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(TokenHeader { alg, kid: raw.kid })
}

/// One usable verification key: the algorithm it verifies (declared, or implied by its type).
struct KeyEntry {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<KeyEntry>,
}

/// The key for `kid`; without a `kid`, the key set's only key (RFC 7515 section 4.1.4: the kid
/// is needed to choose among several).
fn find_key<'a>(set: &'a KeySet, kid: Option<&str>) -> Option<&'a KeyEntry> {
    match kid {
        Some(kid) => set.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// Parses a JWKS document (RFC 7517 section 5), keeping the keys we can use: signature keys
/// (`use` absent or `sig`) of type RSA, EC P-256 or OKP Ed25519, whose `alg` (when declared)
/// is the one their type implies. Others are skipped and logged at debug, never fatal.
fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for (i, value) in doc.keys.into_iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::debug!(index = i, error = %e, "JWKS key skipped: unsupported kty or fields");
                continue;
            }
        };
        let kid = jwk.common.key_id.clone();
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            tracing::debug!(index = i, ?kid, "JWKS key skipped: not a signature key (use)");
            continue;
        }
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
            _ => {
                tracing::debug!(index = i, ?kid, "JWKS key skipped: unsupported key type or curve");
                continue;
            }
        };
        let declared_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => implied == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => implied == Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) => implied == Algorithm::EdDSA,
            Some(_) => false,
        };
        if !declared_ok {
            tracing::debug!(
                index = i,
                ?kid,
                "JWKS key skipped: its alg is not allowed or does not fit its type"
            );
            continue;
        }
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(KeyEntry { kid, alg: implied, key }),
            Err(e) => {
                tracing::debug!(index = i, ?kid, error = %e, "JWKS key skipped: unusable key");
            }
        }
    }
    Ok(KeySet { keys })
}

fn read_file(path: &std::path::Path) -> Result<KeySet, String> {
    let body = std::fs::read(path).map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
    parse_jwks(&body)
}

#[derive(Default, Clone)]
struct KeyState {
    set: Option<Arc<KeySet>>,
    loaded_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Fetch attempts so far: a waiter that sees it move knows another task just fetched.
    attempts: u64,
}

/// The cached key set with its refresh rules: TTL, a rate limit on refetches, one fetch at a
/// time (concurrent misses share it), and a failed fetch keeps the keys we had.
struct KeyStore {
    source: JwksSource,
    fetcher: Option<Fetcher>,
    ttl: Duration,
    min_refresh: Duration,
    state: Mutex<KeyState>,
    refresh: tokio::sync::Mutex<()>,
}

impl KeyStore {
    fn snapshot(&self) -> KeyState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn load(&self) -> Result<KeySet, String> {
        match (&self.source, &self.fetcher) {
            (JwksSource::Url(url), Some(fetcher)) => parse_jwks(&fetcher.get(url).await?),
            (JwksSource::File(path), _) => read_file(path),
            (JwksSource::Url(_), None) => Err("no HTTP client".into()),
        }
    }

    fn store(&self, result: Result<KeySet, String>) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.attempts += 1;
        state.last_attempt = Some(now);
        match result {
            Ok(set) => {
                tracing::debug!(keys = set.keys.len(), "JWKS loaded");
                state.set = Some(Arc::new(set));
                state.loaded_at = Some(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, kept = state.set.is_some(), "JWKS fetch failed; keeping the keys we had");
            }
        }
    }

    /// True when a fetch was tried less than `min_refresh` ago.
    fn rate_limited(state: &KeyState, min_refresh: Duration) -> bool {
        state.last_attempt.is_some_and(|t| t.elapsed() < min_refresh)
    }

    /// The key set to use now: loaded on first use, refetched when older than the TTL.
    async fn current(&self) -> Result<Arc<KeySet>, AuthFailure> {
        let state = self.snapshot();
        let stale = state.loaded_at.is_none_or(|t| t.elapsed() >= self.ttl);
        match state.set {
            Some(set) if !stale || Self::rate_limited(&state, self.min_refresh) => Ok(set),
            _ if state.set.is_none() && state.attempts > 0 && Self::rate_limited(&state, self.min_refresh) => {
                Err(AuthFailure::JwksUnavailable)
            }
            _ => self.fetch_once(state.attempts).await,
        }
    }

    /// After a `kid` miss on `seen`: refetch unless one was tried within `min_refresh`.
    async fn refresh_after_miss(&self, seen: &Arc<KeySet>) -> Result<Arc<KeySet>, AuthFailure> {
        let state = self.snapshot();
        if let Some(set) = &state.set {
            if !Arc::ptr_eq(set, seen) {
                return Ok(set.clone()); // another task refreshed meanwhile
            }
        }
        if Self::rate_limited(&state, self.min_refresh) {
            return state.set.ok_or(AuthFailure::JwksUnavailable);
        }
        self.fetch_once(state.attempts).await
    }

    /// One fetch for all the tasks that saw attempt count `seen`: the first to take the lock
    /// fetches, the others find the count moved and use its result.
    async fn fetch_once(&self, seen: u64) -> Result<Arc<KeySet>, AuthFailure> {
        let _one = self.refresh.lock().await;
        if self.snapshot().attempts == seen {
            let result = self.load().await;
            self.store(result);
        }
        self.snapshot().set.ok_or(AuthFailure::JwksUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_scope_or_scp() {
        assert_eq!(scopes(Some("a  b".into()), None), ["a", "b"]);
        assert_eq!(scopes(None, Some(Scp::List(vec!["x".into(), "".into()]))), ["x"]);
        assert_eq!(scopes(None, Some(Scp::One("x y".into()))), ["x", "y"]);
        assert!(scopes(None, None).is_empty());
    }

    #[test]
    fn header_checks() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let tok = |h: &str| format!("{}.{}.c2ln", enc(h), enc("{}"));
        assert_eq!(
            parse_header(&tok(r#"{"alg":"none"}"#)).err(),
            Some(AuthFailure::AlgorithmNotAllowed)
        );
        assert_eq!(
            parse_header(&tok(r#"{"alg":"HS256"}"#)).err(),
            Some(AuthFailure::AlgorithmNotAllowed)
        );
        assert_eq!(
            parse_header(&tok(r#"{"alg":"ES256","crit":["b64"]}"#)).err(),
            Some(AuthFailure::Malformed)
        );
        assert_eq!(parse_header(&tok(r#"{"kid":"a"}"#)).err(), Some(AuthFailure::Malformed));
        assert!(parse_header(&tok(r#"{"alg":"ES256","kid":"a"}"#)).is_ok());
        assert_eq!(
            parse_header(&format!("{}.e30.", enc(r#"{"alg":"ES256"}"#))).err(),
            Some(AuthFailure::Malformed)
        );
    }

    #[test]
    fn jwks_skips_what_it_cannot_use() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"h"},
            {"kty":"RSA","use":"enc","alg":"RSA-OAEP","n":"AQAB","e":"AQAB","kid":"e"},
            {"kty":"EC","crv":"P-384","x":"AA","y":"AA","kid":"p384"},
            {"kty":"XYZ","kid":"x"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
            {"kty":"OKP","crv":"Ed25519","alg":"ES256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"lies"}
        ]}"#;
        let set = parse_jwks(doc).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["ed"]);
        assert_eq!(set.keys[0].alg, Algorithm::EdDSA);
        assert!(parse_jwks(b"{}").is_err());
    }
}
