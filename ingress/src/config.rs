//! The ingress's settings: every one an environment variable with a flag mirror, parsed up
//! front, all problems reported together (see `tollgate_core::settings`).

use http::HeaderName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_aws::backends::ModeSettings;
use tollgate_core::reconcile::ReconcileSettings;
use tollgate_core::redact::{Redactor, DEFAULT_REDACTED_QUERY_PARAMS};
use tollgate_core::settings::{SettingDoc, SettingsError, SettingsReader};

/// Default listen address (the container sets `0.0.0.0:8080`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default route file.
pub const DEFAULT_ROUTES: &str = "routes.toml";
/// Largest request body: 5 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 5 * 1024 * 1024;
/// Largest request head (request line + headers) we accept before answering 431.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 32 * 1024;
/// Most header fields we accept before answering 431.
pub const DEFAULT_MAX_HEADERS: u64 = 100;
/// Time allowed from a request's first byte to the end of its headers (slow-header guard).
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Time allowed to read a request body.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Idle keep-alive time: the ALB's idle timeout defaults to 60 s and the target must keep
/// connections open longer than the load balancer, or the ALB may reuse a connection we are
/// closing and answer 502.
pub const DEFAULT_KEEPALIVE_IDLE_MS: u64 = 75_000;
/// Time in-flight requests get after SIGTERM: ECS's default stop timeout is 30 s, so drain
/// and flush must be done well before SIGKILL.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 20_000;
/// Most open connections: past it the server stops accepting (the kernel's backlog holds the
/// rest) until one closes.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// Most requests past admission at once; more are answered 503 `overloaded` (recorded).
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1_024;
/// Most request body bytes buffered at once over all requests (a declared `Content-Length`
/// is reserved up front); past it, 503 `overloaded`. 128 MiB: 25 bodies of the 5 MiB limit.
pub const DEFAULT_MAX_BUFFERED_BODY_BYTES: u64 = 128 * 1024 * 1024;
/// Proxies in front that append to `X-Forwarded-For` (the ALB).
pub const DEFAULT_TRUSTED_PROXIES: u64 = 1;
/// Most records per group commit.
pub const DEFAULT_COMMIT_MAX_BATCH: u64 = 256;
/// Group commits in flight at once (SQLite has one writer; the Data API takes several).
pub const DEFAULT_COMMIT_MAX_INFLIGHT: u64 = 1;
/// How long a commit waits for more records when a slot is free (0: commit at once).
pub const DEFAULT_COMMIT_LINGER_MS: u64 = 0;
/// How long a failing commit is retried before its requests are answered 503.
pub const DEFAULT_COMMIT_RETRY_MS: u64 = 5_000;
/// Longest an audit batch stays open.
pub const DEFAULT_AUDIT_BATCH_MAX_AGE_MS: u64 = 500;
/// Reconciler period.
pub const DEFAULT_RECONCILE_INTERVAL_MS: u64 = 60_000;
/// What the ALB event names as its target group when no ALB is involved.
pub const DEFAULT_TARGET_GROUP_ARN: &str =
    "arn:aws:elasticloadbalancing:local:000000000000:targetgroup/tollgate/ingress";

/// Limits on requests and connections.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest body.
    pub max_body_bytes: u64,
    /// Largest head.
    pub max_header_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Slow-header guard.
    pub header_timeout: Duration,
    /// Body read limit.
    pub body_timeout: Duration,
    /// Idle keep-alive.
    pub keepalive_idle: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Most requests in flight.
    pub max_in_flight: usize,
    /// Most body bytes buffered at once.
    pub max_buffered_body_bytes: u64,
}

/// Recording pipeline settings.
#[derive(Clone, Debug)]
pub struct RecorderSettings {
    /// Most records per commit.
    pub commit_max_batch: usize,
    /// Commits in flight.
    pub commit_max_inflight: usize,
    /// Retry budget of a commit.
    pub commit_retry: Duration,
    /// Wait for more records before a commit.
    pub commit_linger: Duration,
    /// Most events per audit batch.
    pub audit_max_events: usize,
    /// Largest audit batch payload.
    pub audit_max_bytes: usize,
    /// Longest an audit batch stays open.
    pub audit_max_age: Duration,
    /// The audit writer.
    pub audit_function: String,
}

/// Everything the ingress reads at start-up.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Route file.
    pub routes_file: PathBuf,
    /// Adapters: mode, embedded data dir, AWS settings.
    pub mode: ModeSettings,
    /// Request limits.
    pub limits: Limits,
    /// Drain budget after SIGTERM.
    pub drain_timeout: Duration,
    /// Proxies appending to `X-Forwarded-For`.
    pub trusted_proxies: usize,
    /// Header carrying the authenticated principal.
    pub principal_header: Option<HeaderName>,
    /// Redaction policy.
    pub redactor: Redactor,
    /// Recording pipeline.
    pub recorder: RecorderSettings,
    /// Reconciler.
    pub reconcile: ReconcileSettings,
    /// Reconciler period (embedded mode timer).
    pub reconcile_interval: Duration,
    /// Target group ARN put in ALB events.
    pub target_group_arn: String,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl IngressConfig {
    /// Reads every setting; returns all problems at once.
    pub fn read(r: &mut SettingsReader) -> Result<Self, SettingsError> {
        let listen = r.parse(
            "TOLLGATE_LISTEN",
            DEFAULT_LISTEN.parse::<SocketAddr>().expect("valid default"),
            "address the ingress listens on",
        );
        let routes_file: String = r.parse("TOLLGATE_ROUTES", DEFAULT_ROUTES.to_string(), "route table file (TOML)");
        let mode = ModeSettings::read(r);
        let limits = Limits {
            max_body_bytes: r.range(
                "TOLLGATE_MAX_BODY_BYTES",
                DEFAULT_MAX_BODY_BYTES,
                0,
                1 << 30,
                "largest request body; larger -> 413 without reading it",
            ),
            max_header_bytes: r.range(
                "TOLLGATE_MAX_HEADER_BYTES",
                DEFAULT_MAX_HEADER_BYTES,
                1024,
                1 << 20,
                "largest request head (line + headers); larger -> 431",
            ) as usize,
            max_headers: r.range(
                "TOLLGATE_MAX_HEADERS",
                DEFAULT_MAX_HEADERS,
                8,
                1000,
                "most header fields; more -> 431",
            ) as usize,
            header_timeout: ms(r.range(
                "TOLLGATE_HEADER_TIMEOUT_MS",
                DEFAULT_HEADER_TIMEOUT_MS,
                100,
                600_000,
                "time from a request's first byte to the end of its headers; then the connection is closed",
            )),
            body_timeout: ms(r.range(
                "TOLLGATE_BODY_TIMEOUT_MS",
                DEFAULT_BODY_TIMEOUT_MS,
                100,
                600_000,
                "time to read a request body; then 408 and close",
            )),
            keepalive_idle: ms(r.range(
                "TOLLGATE_KEEPALIVE_IDLE_MS",
                DEFAULT_KEEPALIVE_IDLE_MS,
                100,
                3_600_000,
                "idle keep-alive time (must exceed the ALB idle timeout, 60 s by default)",
            )),
            max_connections: r.range(
                "TOLLGATE_MAX_CONNECTIONS",
                DEFAULT_MAX_CONNECTIONS,
                1,
                1_000_000,
                "most open connections; past it new ones wait in the listen backlog",
            ) as usize,
            max_in_flight: r.range(
                "TOLLGATE_MAX_IN_FLIGHT",
                DEFAULT_MAX_IN_FLIGHT,
                1,
                1_000_000,
                "most requests being handled at once; more get 503 overloaded (recorded)",
            ) as usize,
            max_buffered_body_bytes: r.range(
                "TOLLGATE_MAX_BUFFERED_BODY_BYTES",
                DEFAULT_MAX_BUFFERED_BODY_BYTES,
                0,
                1 << 40,
                "most request body bytes held in memory at once over all requests; more get 503 overloaded",
            ),
        };
        let drain_timeout = ms(r.range(
            "TOLLGATE_DRAIN_TIMEOUT_MS",
            DEFAULT_DRAIN_TIMEOUT_MS,
            0,
            600_000,
            "time in-flight requests get after SIGTERM/SIGINT",
        ));
        let trusted_proxies = r.range(
            "TOLLGATE_TRUSTED_PROXIES",
            DEFAULT_TRUSTED_PROXIES,
            0,
            10,
            "proxies in front that append to X-Forwarded-For (client_ip is the entry the outermost one appended)",
        ) as usize;
        let principal_header = r.optional_with(
            "TOLLGATE_PRINCIPAL_HEADER",
            "header holding the authenticated principal, set by a trusted proxy (e.g. x-amzn-oidc-identity)",
            |v| HeaderName::from_bytes(v.trim().to_ascii_lowercase().as_bytes()).map_err(|e| e.to_string()),
        );
        let extra_headers = r.list("TOLLGATE_REDACT_HEADERS",
            "headers redacted in records, audit events and logs, besides authorization, proxy-authorization, cookie, set-cookie, x-api-key, x-amz-security-token");
        let query_params = r.optional_with("TOLLGATE_REDACT_QUERY_PARAMS",
            "query parameters redacted (default: api_key, apikey, access_token, token, password, secret, signature, ...)",
            |v| Ok(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>()));
        let redactor = match &query_params {
            Some(list) => Redactor::new(&extra_headers, list.iter().map(String::as_str)),
            None => Redactor::new(&extra_headers, DEFAULT_REDACTED_QUERY_PARAMS.iter().copied()),
        };
        if let Some(p) = &principal_header {
            if redactor.is_secret_header(p.as_str()) {
                r.error(format!(
                    "TOLLGATE_PRINCIPAL_HEADER={p}: a redacted header cannot be the principal"
                ));
            }
        }
        // The audit writer and batch limits are shared with the reconciler (same settings
        // in the scheduled `audit-reconciler` function).
        let reconcile = ReconcileSettings::read(r);
        let recorder = RecorderSettings {
            commit_max_batch: r.range(
                "TOLLGATE_COMMIT_MAX_BATCH",
                DEFAULT_COMMIT_MAX_BATCH,
                1,
                10_000,
                "most records per group commit",
            ) as usize,
            commit_max_inflight: r.range(
                "TOLLGATE_COMMIT_MAX_INFLIGHT",
                DEFAULT_COMMIT_MAX_INFLIGHT,
                1,
                64,
                "group commits in flight at once",
            ) as usize,
            commit_retry: ms(r.range(
                "TOLLGATE_COMMIT_RETRY_MS",
                DEFAULT_COMMIT_RETRY_MS,
                0,
                60_000,
                "how long a failing commit is retried before its requests get 503",
            )),
            commit_linger: ms(r.range(
                "TOLLGATE_COMMIT_LINGER_MS",
                DEFAULT_COMMIT_LINGER_MS,
                0,
                10_000,
                "how long a commit waits for more records (trades latency for fewer, larger commits: Data API calls)",
            )),
            audit_max_events: reconcile.max_batch_events,
            audit_max_bytes: reconcile.max_batch_bytes,
            audit_max_age: ms(r.range(
                "TOLLGATE_AUDIT_BATCH_MAX_AGE_MS",
                DEFAULT_AUDIT_BATCH_MAX_AGE_MS,
                1,
                60_000,
                "longest an audit batch stays open before it is sent",
            )),
            audit_function: reconcile.audit_function.clone(),
        };
        let reconcile_interval = ms(r.range(
            "TOLLGATE_RECONCILE_INTERVAL_MS",
            DEFAULT_RECONCILE_INTERVAL_MS,
            0,
            86_400_000,
            "period of the in-process reconciler that re-drives unaudited rows (0: off, as when the scheduled audit-reconciler function runs)",
        ));
        let target_group_arn = r.parse(
            "TOLLGATE_TARGET_GROUP_ARN",
            DEFAULT_TARGET_GROUP_ARN.to_string(),
            "target group ARN named in the ALB events sent to functions",
        );
        Ok(Self {
            listen,
            routes_file: PathBuf::from(routes_file),
            mode,
            limits,
            drain_timeout,
            trusted_proxies,
            principal_header,
            redactor,
            recorder,
            reconcile,
            reconcile_interval,
            target_group_arn,
        })
    }

    /// Reads the settings from a map and arguments (tests) and finishes the reader.
    pub fn from_sources(
        env: impl IntoIterator<Item = (String, String)>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<(Self, Vec<SettingDoc>), SettingsError> {
        let mut r = SettingsReader::new(env, args);
        let config = Self::read(&mut r)?;
        let docs = r.finish()?;
        Ok((config, docs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn defaults_hold_without_settings() {
        let (c, docs) = IngressConfig::from_sources(env(&[]), Vec::new()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.limits.max_body_bytes, 5 * 1024 * 1024);
        assert!(c.limits.keepalive_idle > Duration::from_secs(60));
        assert!(c.drain_timeout < Duration::from_secs(30));
        assert!(docs.iter().any(|d| d.env == "TOLLGATE_LISTEN" && d.flag == "--listen"));
    }

    #[test]
    fn invalid_values_name_their_setting_all_at_once() {
        let err = IngressConfig::from_sources(
            env(&[("TOLLGATE_LISTEN", "nowhere"), ("TOLLGATE_MAX_BODY_BYTES", "-1")]),
            vec!["--keepalive-idle-ms=abc".to_string()],
        )
        .unwrap_err()
        .to_string();
        for name in ["TOLLGATE_LISTEN", "TOLLGATE_MAX_BODY_BYTES", "--keepalive-idle-ms"] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
    }

    #[test]
    fn a_redacted_header_cannot_be_the_principal() {
        let err = IngressConfig::from_sources(env(&[("TOLLGATE_PRINCIPAL_HEADER", "Authorization")]), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOLLGATE_PRINCIPAL_HEADER"), "{err}");
    }
}
