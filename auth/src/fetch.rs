//! The one HTTP(S) GET the verifiers need (a JWKS document, an ALB public key).
//!
//! hyper-util's client over hyper-rustls with the *ring* provider and the system's roots: no
//! aws-lc, no AWS SDK (the ingress that `cargo run` builds links this). Plain `http://` is
//! accepted too (tests, a sidecar on loopback); the caller decides which URLs to allow.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls_ring::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::error::ConfigError;

/// A body larger than this is refused (a JWKS of a few keys is a few KiB).
const MAX_BODY: usize = 256 * 1024;

pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl Fetcher {
    /// A client for `url`'s scheme: https needs the system's root certificates.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, ConfigError> {
        let uri: http::Uri = url.parse().map_err(|_| ConfigError(format!("not a URL: {url}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match uri.scheme_str() {
            Some("https") => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| ConfigError(format!("no TLS root certificates for {url}: {e}")))?,
            Some("http") => {
                // No TLS will be spoken: an empty root store, so a machine without a CA bundle
                // can still fetch over plain http.
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ConfigError(format!("TLS setup: {e}")))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(tls)
            }
            _ => return Err(ConfigError(format!("the URL must be http or https: {url}"))),
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, timeout })
    }

    /// GET `url`: the body of a 200 answer, or why not (for the log; never shown to clients).
    pub(crate) async fn get(&self, url: &str) -> Result<Bytes, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("not a URL: {url}"))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json, application/x-pem-file, */*")
            .header(http::header::USER_AGENT, "tollgate-auth")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = response.status();
            if status != http::StatusCode::OK {
                return Err(format!("GET {url}: status {status}"));
            }
            Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("GET {url}: body: {e}"))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("GET {url}: timed out after {:?}", self.timeout))?
    }
}
