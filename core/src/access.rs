//! Who is calling: the verified principal of a request, the access decision taken on it, and
//! tollgate's own API keys (their format, their stored form and the constant-time check).
//!
//! A principal is only ever what was verified: an API key found in the key store, a signed
//! token checked against its issuer's keys, or the ALB's signed OIDC token. Nothing a client
//! can set by itself (a plain header) makes a principal.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// How a principal was verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// No credential was presented (or the request was refused before one was looked at).
    #[default]
    Anonymous,
    /// A tollgate API key (`tg_<key id>_<secret>`), found in the key store.
    ApiKey,
    /// A JWT access token, verified against its issuer's JWKS.
    Jwt,
    /// The ALB's signed `x-amzn-oidc-data` token (the ALB authenticated the user).
    AlbOidc,
}

impl PrincipalKind {
    /// The kind as stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::AlbOidc => "alb_oidc",
        }
    }

    /// The kind of its stored name (an unknown name reads as anonymous: it grants nothing).
    pub fn from_stored(s: &str) -> Self {
        match s {
            "api_key" => Self::ApiKey,
            "jwt" => Self::Jwt,
            "alb_oidc" => Self::AlbOidc,
            _ => Self::Anonymous,
        }
    }
}

/// A verified caller: who it is and what it may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// How it was verified.
    pub kind: PrincipalKind,
    /// Its stable id: the key id (`api_key`), `<iss>#<sub>` (`jwt`), the `sub` (`alb_oidc`);
    /// `None` for anonymous.
    pub id: Option<String>,
    /// A display name (the key's name, the token's `name`/`email`), if any.
    pub name: Option<String>,
    /// The scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl Principal {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Whether any of `wanted` is granted (an empty `wanted` is always granted).
    pub fn has_any_scope(&self, wanted: &[String]) -> bool {
        wanted.is_empty() || wanted.iter().any(|w| self.scopes.iter().any(|s| s == w))
    }

    /// Whether `scope` is granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The access decision taken on a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The route's policy let it through.
    Allowed,
    /// The route's policy refused it (401, 403 or 429).
    Refused,
    /// It ended before its access was evaluated (a bad head, no route): no policy applied.
    #[default]
    NotEvaluated,
}

impl Decision {
    /// The decision as stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
            Self::NotEvaluated => "not_evaluated",
        }
    }
}

/// The decision with its reason: what an auditor reads in every record and audit event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The decision.
    pub decision: Decision,
    /// Why it was refused (a stable reason such as `missing_credentials`, `unknown_key`,
    /// `revoked_key`, `expired`, `insufficient_scope`, `rate_limited`), or which policy let it
    /// through (`auth=none`, `scope=requests:read`).
    pub reason: Option<String>,
}

impl Access {
    /// Allowed, by `reason`.
    pub fn allowed(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Allowed,
            reason: Some(reason.into()),
        }
    }

    /// Refused, for `reason`.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Refused,
            reason: Some(reason.into()),
        }
    }

    /// The record's `access` column: the decision, then `:` and the reason when there is one.
    pub fn stored(&self) -> String {
        match &self.reason {
            Some(r) => format!("{}:{r}", self.decision.as_str()),
            None => self.decision.as_str().to_string(),
        }
    }
}

/// What an API key's secret starts with (so secret scanners and people can tell it).
pub const API_KEY_PREFIX: &str = "tg_";
/// Random bytes in a key id (hex in the key: 16 characters).
const KEY_ID_BYTES: usize = 8;
/// Random bytes in a key's secret: 256 bits from the operating system.
const SECRET_BYTES: usize = 32;

/// A freshly made API key: the whole token is shown once, only its hash is kept.
pub struct IssuedApiKey {
    /// The key id (public: it names the key in records and `keys list`).
    pub key_id: String,
    /// `tg_<key id>_<secret>`: what the client sends. Never stored, never logged.
    pub token: String,
    /// Hex SHA-256 of the secret part: what is stored.
    pub secret_sha256: String,
}

impl std::fmt::Debug for IssuedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedApiKey")
            .field("key_id", &self.key_id)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// Why an API key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomUnavailable(String);

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Makes a new API key from the operating system's random source.
pub fn issue_api_key() -> Result<IssuedApiKey, RandomUnavailable> {
    use base64::Engine;
    let mut id = [0u8; KEY_ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut id).map_err(|e| RandomUnavailable(e.to_string()))?;
    getrandom::fill(&mut secret).map_err(|e| RandomUnavailable(e.to_string()))?;
    let key_id = hex(&id);
    // base64url: no `_`-free guarantee, so the key id (hex, never `_`) is split off first.
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    Ok(IssuedApiKey {
        token: format!("{API_KEY_PREFIX}{key_id}_{secret}"),
        secret_sha256: secret_hash(&secret),
        key_id,
    })
}

/// Hex SHA-256 of a key's secret part. A fast hash is the right one here: the secret is 256
/// random bits, so there is nothing for a slow password hash to protect against guessing.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The key id and secret of a presented API key token, if it has the key's shape.
pub fn parse_api_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == KEY_ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let secret_ok = (40..=64).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// Whether `secret` hashes to `stored_sha256`, in time independent of where they differ.
pub fn secret_matches(secret: &str, stored_sha256: &str) -> bool {
    let presented = secret_hash(secret);
    presented.as_bytes().ct_eq(stored_sha256.as_bytes()).into()
}

/// An API key as stored (`api_keys`): never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key id.
    pub key_id: String,
    /// Its name (who or what it is for).
    pub name: String,
    /// Scopes it grants.
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the secret.
    #[serde(skip_serializing)]
    pub secret_sha256: String,
    /// When it was made.
    #[serde(with = "crate::clock::serde_ts")]
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever.
    #[serde(with = "crate::clock::serde_ts_opt")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was.
    #[serde(with = "crate::clock::serde_ts_opt")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKeyRecord {
    /// Why the key cannot be used at `now`, if it cannot.
    pub fn unusable_at(&self, now: OffsetDateTime) -> Option<&'static str> {
        if self.revoked_at.is_some_and(|t| t <= now) {
            Some("revoked_key")
        } else if self.expires_at.is_some_and(|t| t <= now) {
            Some("expired_key")
        } else {
            None
        }
    }

    /// The principal this key stands for.
    pub fn principal(&self) -> Principal {
        Principal {
            kind: PrincipalKind::ApiKey,
            id: Some(self.key_id.clone()),
            name: Some(self.name.clone()),
            scopes: self.scopes.clone(),
        }
    }
}

/// Scopes as stored: space-separated, as OAuth 2 writes them (RFC 6749 section 3.3).
pub fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Scopes from their stored form.
pub fn split_scopes(text: &str) -> Vec<String> {
    text.split_ascii_whitespace().map(String::from).collect()
}

/// Whether a scope name is acceptable (RFC 6749 section 3.3: printable ASCII but space, `"`
/// and `\`).
pub fn valid_scope(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// The header through which the ingress tells a function who called (JSON of [`Principal`]).
/// The ingress removes any copy a client sent, so a function invoked by the ingress can trust
/// it; a function reachable by other paths must not.
pub const PRINCIPAL_HEADER: &str = "x-tollgate-principal";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_back_and_match_only_their_hash() {
        let k = issue_api_key().unwrap();
        let (id, secret) = parse_api_key(&k.token).unwrap();
        assert_eq!(id, k.key_id);
        assert!(secret_matches(secret, &k.secret_sha256));
        assert!(!secret_matches(&format!("{secret}x"), &k.secret_sha256));
        // 256 bits: 43 base64url characters.
        assert_eq!(secret.len(), 43);
        assert!(!format!("{k:?}").contains(secret), "Debug shows no secret");
        let other = issue_api_key().unwrap();
        assert_ne!(other.token, k.token);
    }

    #[test]
    fn only_the_key_shape_parses() {
        let good = format!("tg_0123456789abcdef_{}", "A".repeat(43));
        assert!(parse_api_key(&good).is_some());
        for bad in [
            "".to_string(),
            "tg_".into(),
            format!("tg_0123456789ABCDEF_{}", "A".repeat(43)),
            format!("tg_0123456789abcde_{}", "A".repeat(43)),
            format!("tg_0123456789abcdef_{}", "A".repeat(10)),
            format!("tg_0123456789abcdef_{}!", "A".repeat(43)),
            format!("xx_0123456789abcdef_{}", "A".repeat(43)),
            "eyJhbGciOiJub25lIn0.e30.".into(),
        ] {
            assert!(parse_api_key(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_checked_exactly() {
        let p = Principal {
            scopes: vec!["requests:read:own".into()],
            ..Default::default()
        };
        assert!(p.has_any_scope(&["requests:read".into(), "requests:read:own".into()]));
        assert!(!p.has_any_scope(&["requests:read".into()]));
        assert!(!p.has_scope("requests:read"));
        assert!(Principal::anonymous().has_any_scope(&[]));
        assert!(valid_scope("requests:read") && !valid_scope("a b") && !valid_scope("a\"b"));
        assert_eq!(split_scopes(&join_scopes(&p.scopes)), p.scopes);
    }

    #[test]
    fn access_is_stored_with_its_reason() {
        assert_eq!(Access::refused("unknown_key").stored(), "refused:unknown_key");
        assert_eq!(Access::default().stored(), "not_evaluated");
        assert_eq!(
            PrincipalKind::from_stored(PrincipalKind::AlbOidc.as_str()),
            PrincipalKind::AlbOidc
        );
    }
}
