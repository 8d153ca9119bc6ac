//! Why a credential was refused, in words safe to show a client.

use std::fmt;

/// Why a token was refused: a stable machine reason ([`AuthFailure::reason`]) and a client-safe text.
///
/// Neither the reason nor the Display text ever holds key material or token bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Not a compact JWS: wrong segment count, bad base64url, bad JSON, `crit` present.
    #[error("the token is malformed")]
    Malformed,
    /// Longer than the configured maximum (refused before any parsing).
    #[error("the token is too large")]
    TooLarge,
    /// `alg` is `none`, an HMAC algorithm, not allowed here, or not the key's algorithm.
    #[error("the token's signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No key in the key set matches the token's `kid` (or a `kid` is needed and absent).
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify with the token's key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// An ALB token's `signer` is not the configured load balancer.
    #[error("the token was signed by another load balancer")]
    WrongSigner,
    /// A required claim is absent (the claim's name, e.g. `exp`).
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    /// The keys could not be fetched or read (a server-side condition, not the client's fault).
    #[error("the signing keys are unavailable")]
    JwksUnavailable,
}

impl AuthFailure {
    /// The stable machine reason, e.g. `bad_signature` (for records, metrics and error bodies).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Malformed => "malformed",
            AuthFailure::TooLarge => "too_large",
            AuthFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::WrongSigner => "wrong_signer",
            AuthFailure::MissingClaim(_) => "missing_claim",
            AuthFailure::JwksUnavailable => "jwks_unavailable",
        }
    }

    /// Every reason, for documentation and exhaustive tests.
    pub const REASONS: [&'static str; 12] = [
        "malformed",
        "too_large",
        "algorithm_not_allowed",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "wrong_signer",
        "missing_claim",
        "jwks_unavailable",
    ];
}

/// A verifier's configuration cannot work (bad URL, unreadable or empty key set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Maps a `jsonwebtoken` error to the reason a client may see.
pub(crate) fn from_jose(e: &jsonwebtoken::errors::Error) -> AuthFailure {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat | K::Crypto(_) => {
            AuthFailure::BadSignature
        }
        K::ExpiredSignature => AuthFailure::Expired,
        K::ImmatureSignature => AuthFailure::NotYetValid,
        K::InvalidIssuer => AuthFailure::WrongIssuer,
        K::InvalidAudience => AuthFailure::WrongAudience,
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => AuthFailure::AlgorithmNotAllowed,
        K::MissingRequiredClaim(claim) => AuthFailure::MissingClaim(static_claim(claim)),
        _ => AuthFailure::Malformed,
    }
}

/// The claim names `jsonwebtoken` can report missing, as `'static` strings.
pub(crate) fn static_claim(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        "nbf" => "nbf",
        _ => "claim",
    }
}
