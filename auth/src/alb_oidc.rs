//! The ALB's `x-amzn-oidc-data` user-claims token.
//!
//! When an `authenticate-oidc` (or `authenticate-cognito`) listener action is in front, the ALB
//! adds `x-amzn-oidc-data`: the user claims as a JWT signed by the load balancer with ES256.
//! Its header holds `alg`, `kid`, `signer` (the load balancer's ARN), `iss`, `client` and `exp`.
//! The public key is a PEM at `https://public-keys.auth.elb.<region>.amazonaws.com/<kid>`, or in
//! AWS GovCloud (US) at
//! `https://s3-us-gov-west-1.amazonaws.com/aws-elb-public-keys-prod-us-gov-west-1/<kid>` (and the
//! same with `us-gov-east-1`). Source, "User claims encoding and signature verification":
//! <https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html#user-claims-encoding>
//!
//! The padding quirk: the same page says the token's parts are "base64 URL encoded and includes
//! padding characters at the end", and that standard JWT libraries are not compatible with that
//! padding (RFC 7515 section 2 forbids it). So the parts are decoded here with padding optional,
//! and the signature is checked by `jsonwebtoken` over the header and payload exactly as the
//! ALB sent them (the signing input of RFC 7515 section 5.2 is the transmitted text, padding
//! included); only the signature part's own padding is trimmed before it is decoded.
//!
//! The `x-amzn-oidc-identity` header is never trusted: it is not signed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::error::{AuthFailure, ConfigError};
use crate::fetch::Fetcher;
use crate::jwt::unix_now;

/// base64url, padding accepted or not (the ALB pads; RFC 7515 does not).
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Kids remembered at most (the ALB rotates its keys rarely).
const MAX_KEYS: usize = 64;

/// What an [`AlbOidcVerifier`] accepts.
#[derive(Debug, Clone)]
pub struct AlbOidcConfig {
    /// Base URL of the public-key endpoint; a key is fetched from `<key_endpoint>/<kid>`.
    pub key_endpoint: String,
    /// The ARN of this load balancer: the token's `signer` must equal it.
    pub expected_signer_arn: String,
    /// Clock skew allowed on `exp` (default 30 s).
    pub leeway: Duration,
    /// Header values longer than this are refused unparsed (default 16 KiB).
    pub max_token_bytes: usize,
    /// After a failed key fetch for a `kid`, no new fetch for it for this long (default 30 s).
    pub min_refetch: Duration,
    /// At most one key fetch (for any `kid`) per this interval, so tokens naming made-up kids
    /// cannot turn into a stream of outbound requests (default 1 s).
    pub min_fetch_interval: Duration,
    /// Timeout of one key fetch (default 5 s).
    pub fetch_timeout: Duration,
}

impl AlbOidcConfig {
    /// A configuration for a load balancer in `region`, with AWS's key endpoint for it.
    pub fn for_region(region: &str, expected_signer_arn: impl Into<String>) -> Self {
        Self::with_endpoint(Self::key_endpoint_for_region(region), expected_signer_arn)
    }

    /// A configuration with an explicit key endpoint (tests, or a region not known here).
    pub fn with_endpoint(key_endpoint: impl Into<String>, expected_signer_arn: impl Into<String>) -> Self {
        Self {
            key_endpoint: key_endpoint.into(),
            expected_signer_arn: expected_signer_arn.into(),
            leeway: Duration::from_secs(30),
            max_token_bytes: 16 * 1024,
            min_refetch: Duration::from_secs(30),
            min_fetch_interval: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(5),
        }
    }

    /// AWS's public-key endpoint for `region` (GovCloud's are S3 buckets; see the module docs).
    pub fn key_endpoint_for_region(region: &str) -> String {
        match region {
            "us-gov-west-1" | "us-gov-east-1" => {
                format!("https://s3-{region}.amazonaws.com/aws-elb-public-keys-prod-{region}")
            }
            _ => format!("https://public-keys.auth.elb.{region}.amazonaws.com"),
        }
    }
}

/// The user an ALB authenticated, from a verified `x-amzn-oidc-data` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAlbUser {
    /// `sub` of the user claims.
    pub subject: String,
    /// `name`, if the IdP's user info had one.
    pub name: Option<String>,
    /// `email`, if the IdP's user info had one.
    pub email: Option<String>,
    /// The IdP's issuer (`iss` of the header, else of the claims).
    pub issuer: String,
    /// The load balancer that signed (equal to the configured ARN).
    pub signer: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Verifies `x-amzn-oidc-data` values (see the module docs).
pub struct AlbOidcVerifier {
    config: AlbOidcConfig,
    fetcher: Fetcher,
    keys: Mutex<HashMap<String, DecodingKey>>,
    failed: Mutex<HashMap<String, Instant>>,
    /// Held while fetching; holds the time of the last fetch.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct AlbHeader {
    alg: Option<String>,
    kid: Option<String>,
    signer: Option<String>,
    iss: Option<String>,
    exp: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct AlbClaims {
    sub: Option<String>,
    name: Option<String>,
    email: Option<String>,
    iss: Option<String>,
    exp: Option<serde_json::Value>,
}

impl AlbOidcVerifier {
    /// A verifier; keys are fetched on first use of each `kid`.
    pub fn new(config: AlbOidcConfig) -> Result<Self, ConfigError> {
        if config.expected_signer_arn.is_empty() {
            return Err(ConfigError("the expected ALB signer ARN is empty".into()));
        }
        let fetcher = Fetcher::new(&config.key_endpoint, config.fetch_timeout)?;
        Ok(Self {
            config,
            fetcher,
            keys: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// Verifies an `x-amzn-oidc-data` header value: the user, or why not.
    pub async fn verify(&self, header_value: &str) -> Result<VerifiedAlbUser, AuthFailure> {
        if header_value.len() > self.config.max_token_bytes {
            return Err(AuthFailure::TooLarge);
        }
        let mut parts = header_value.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthFailure::Malformed);
        };
        let header: AlbHeader = decode_json(h64)?;
        match header.alg.as_deref() {
            Some("ES256") => {}
            Some(_) => return Err(AuthFailure::AlgorithmNotAllowed),
            None => return Err(AuthFailure::Malformed),
        }
        // Checked before any key fetch, so junk tokens cannot make us fetch; it is checked
        // again in effect by the signature, which covers the header.
        if header.signer.as_deref() != Some(self.config.expected_signer_arn.as_str()) {
            return Err(AuthFailure::WrongSigner);
        }
        let kid = header.kid.as_deref().ok_or(AuthFailure::Malformed)?;
        if kid.is_empty()
            || kid.len() > 128
            || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthFailure::Malformed); // it goes into a URL path
        }
        let key = self.key(kid).await?;
        // The signing input is the header and payload as transmitted (padding included).
        let message = &header_value[..h64.len() + 1 + p64.len()];
        let valid = jsonwebtoken::crypto::verify(s64.trim_end_matches('='), message.as_bytes(), &key, Algorithm::ES256)
            .map_err(|_| AuthFailure::BadSignature)?;
        if !valid {
            return Err(AuthFailure::BadSignature);
        }
        let claims: AlbClaims = decode_json(p64)?;
        let exp = match (header.exp.as_ref(), claims.exp.as_ref()) {
            (Some(h), Some(c)) => number(h)?.min(number(c)?),
            (Some(h), None) => number(h)?,
            (None, Some(c)) => number(c)?,
            (None, None) => return Err(AuthFailure::MissingClaim("exp")),
        };
        if unix_now() > exp.saturating_add(self.config.leeway.as_secs() as i64) {
            return Err(AuthFailure::Expired);
        }
        Ok(VerifiedAlbUser {
            subject: claims.sub.ok_or(AuthFailure::MissingClaim("sub"))?,
            name: claims.name,
            email: claims.email,
            issuer: header.iss.or(claims.iss).ok_or(AuthFailure::MissingClaim("iss"))?,
            signer: self.config.expected_signer_arn.clone(),
            expires_at: exp,
        })
    }

    /// The public key for `kid`: cached, else fetched once (concurrent misses wait for one
    /// fetch); a failed fetch is not retried for `min_refetch`, and no two fetches start
    /// within `min_fetch_interval`.
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthFailure> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut last_fetch = self.fetching.lock().await;
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        {
            let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            if failed.get(kid).is_some_and(|t| t.elapsed() < self.config.min_refetch) {
                return Err(AuthFailure::JwksUnavailable);
            }
        }
        if last_fetch.is_some_and(|t| t.elapsed() < self.config.min_fetch_interval) {
            return Err(AuthFailure::JwksUnavailable);
        }
        *last_fetch = Some(Instant::now());
        let url = format!("{}/{kid}", self.config.key_endpoint.trim_end_matches('/'));
        let fetched = self.fetcher.get(&url).await.and_then(|pem| {
            DecodingKey::from_ec_pem(&pem).map_err(|e| format!("{url}: not an EC public key PEM: {e}"))
        });
        match fetched {
            Ok(key) => {
                let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                if keys.len() >= MAX_KEYS {
                    keys.clear();
                }
                keys.insert(kid.to_owned(), key.clone());
                self.failed.lock().unwrap_or_else(|e| e.into_inner()).remove(kid);
                Ok(key)
            }
            Err(e) => {
                tracing::warn!(error = %e, kid, "ALB public key fetch failed");
                let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                if failed.len() >= MAX_KEYS {
                    failed.clear();
                }
                failed.insert(kid.to_owned(), Instant::now());
                Err(AuthFailure::JwksUnavailable)
            }
        }
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(kid).cloned()
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, AuthFailure> {
    let bytes = LENIENT_URL_SAFE.decode(part).map_err(|_| AuthFailure::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthFailure::Malformed)
}

fn number(v: &serde_json::Value) -> Result<i64, AuthFailure> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .ok_or(AuthFailure::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            AlbOidcConfig::key_endpoint_for_region("eu-west-1"),
            "https://public-keys.auth.elb.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            AlbOidcConfig::key_endpoint_for_region("us-gov-west-1"),
            "https://s3-us-gov-west-1.amazonaws.com/aws-elb-public-keys-prod-us-gov-west-1"
        );
    }

    #[test]
    fn lenient_base64() {
        assert_eq!(LENIENT_URL_SAFE.decode("eyJhIjoxfQ==").unwrap(), br#"{"a":1}"#);
        assert_eq!(LENIENT_URL_SAFE.decode("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
    }
}
