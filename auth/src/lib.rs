//! Verifiers for the bearer credentials tollgate accepts that are signed tokens.
//!
//! - [`JwtVerifier`]: OAuth 2 / OIDC access tokens (JWT, RFC 7519) signed with RS256, ES256 or
//!   EdDSA by a key from a JWKS (RFC 7517), checked as the JWT BCP (RFC 8725) asks.
//! - [`AlbOidcVerifier`]: the `x-amzn-oidc-data` user-claims token an ALB `authenticate-oidc`
//!   action adds (ES256, key by `kid` from the regional ELB key endpoint).
//!
//! Both answer with a verified identity or an [`AuthFailure`] whose [`AuthFailure::reason`] is
//! a stable machine reason. This crate knows nothing of HTTP routing or storage; it fetches keys
//! over HTTP(S) (rustls with the *ring* provider: no aws-lc, no AWS SDK).

#![warn(missing_docs)]

mod alb_oidc;
mod cache;
mod error;
mod fetch;
mod jwt;

pub use alb_oidc::{AlbOidcConfig, AlbOidcVerifier, VerifiedAlbUser};
pub use error::{AuthFailure, ConfigError};
pub use jwt::{JwksSource, JwtConfig, JwtVerifier, VerifiedToken};
