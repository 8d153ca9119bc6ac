//! The ingress's settings: every one an environment variable with a flag mirror, parsed up
//! front, all problems reported together (see `tollgate_core::settings`).

use crate::backends::ModeSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_core::reconcile::ReconcileSettings;
use tollgate_core::redact::Redactor;
use tollgate_core::settings::{Millis, SettingDoc, SettingsError, SettingsReader, Whole};

/// Default listen address (the container sets `0.0.0.0:8080`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default route file.
pub const DEFAULT_ROUTES: &str = "routes.toml";

/// Largest request body: 5 MiB.
pub const MAX_BODY_BYTES: Whole = Whole {
    env: "TOLLGATE_MAX_BODY_BYTES",
    default: 5 * 1024 * 1024,
    min: 0,
    max: 1 << 30,
    help: "largest request body; larger -> 413 without reading it",
};

/// Largest request head (request line + headers) we accept before answering 431.
pub const MAX_HEADER_BYTES: Whole = Whole {
    env: "TOLLGATE_MAX_HEADER_BYTES",
    default: 32 * 1024,
    min: 1024,
    max: 1 << 20,
    help: "largest request head (line + headers); larger -> 431",
};

/// Most header fields we accept before answering 431.
pub const MAX_HEADERS: Whole = Whole {
    env: "TOLLGATE_MAX_HEADERS",
    default: 100,
    min: 8,
    max: 1000,
    help: "most header fields; more -> 431",
};

/// Time allowed from a request's first byte to the end of its headers (slow-header guard).
pub const HEADER_TIMEOUT: Millis = Millis {
    env: "TOLLGATE_HEADER_TIMEOUT_MS",
    default: Duration::from_secs(10),
    min: Duration::from_millis(100),
    max: Duration::from_secs(600),
    help: "time from a request's first byte to the end of its headers; then the connection is closed",
};

/// Time allowed to read a request body.
pub const BODY_TIMEOUT: Millis = Millis {
    env: "TOLLGATE_BODY_TIMEOUT_MS",
    default: Duration::from_secs(30),
    min: Duration::from_millis(100),
    max: Duration::from_secs(600),
    help: "time to read a request body; then 408 and close",
};

/// Idle keep-alive time: the ALB's idle timeout defaults to 60 s and the target must keep
/// connections open longer than the load balancer, or the ALB may reuse a connection we are
/// closing and answer 502.
pub const KEEPALIVE_IDLE: Millis = Millis {
    env: "TOLLGATE_KEEPALIVE_IDLE_MS",
    default: Duration::from_secs(75),
    min: Duration::from_millis(100),
    max: Duration::from_secs(3600),
    help: "idle keep-alive time (must exceed the ALB idle timeout, 60 s by default)",
};

/// Most open connections: past it the server stops accepting (the kernel's backlog holds the
/// rest) until one closes.
pub const MAX_CONNECTIONS: Whole = Whole {
    env: "TOLLGATE_MAX_CONNECTIONS",
    default: 10_000,
    min: 1,
    max: 1_000_000,
    help: "most open connections; past it new ones wait in the listen backlog",
};

/// Most requests past admission at once; more are answered 503 `overloaded` (recorded).
pub const MAX_IN_FLIGHT: Whole = Whole {
    env: "TOLLGATE_MAX_IN_FLIGHT",
    default: 1_024,
    min: 1,
    max: 1_000_000,
    help: "most requests being handled at once; more get 503 overloaded (recorded)",
};

/// Most request body bytes buffered at once over all requests (a declared `Content-Length`
/// is reserved up front); past it, 503 `overloaded`. 128 MiB: 25 bodies of the 5 MiB limit.
pub const MAX_BUFFERED_BODY_BYTES: Whole = Whole {
    env: "TOLLGATE_MAX_BUFFERED_BODY_BYTES",
    default: 128 * 1024 * 1024,
    min: 0,
    max: 1 << 40,
    help: "most request body bytes held in memory at once over all requests; more get 503 overloaded",
};

/// Time in-flight requests get after SIGTERM: ECS's default stop timeout is 30 s, so drain
/// and flush must be done well before SIGKILL.
pub const DRAIN_TIMEOUT: Millis = Millis {
    env: "TOLLGATE_DRAIN_TIMEOUT_MS",
    default: Duration::from_secs(20),
    min: Duration::ZERO,
    max: Duration::from_secs(600),
    help: "time in-flight requests get after SIGTERM/SIGINT",
};

/// Proxies in front that append to `X-Forwarded-For` (the ALB).
pub const TRUSTED_PROXIES: Whole = Whole {
    env: "TOLLGATE_TRUSTED_PROXIES",
    default: 1,
    min: 0,
    max: 10,
    help: "proxies in front that append to X-Forwarded-For (client_ip is the entry the outermost one appended)",
};

/// Most records per group commit.
pub const COMMIT_MAX_BATCH: Whole = Whole {
    env: "TOLLGATE_COMMIT_MAX_BATCH",
    default: 256,
    min: 1,
    max: 10_000,
    help: "most records per group commit",
};

/// Group commits in flight at once (SQLite has one writer; the Data API takes several).
pub const COMMIT_MAX_INFLIGHT: Whole = Whole {
    env: "TOLLGATE_COMMIT_MAX_INFLIGHT",
    default: 1,
    min: 1,
    max: 64,
    help: "group commits in flight at once",
};

/// How long a failing commit is retried before its requests are answered 503.
pub const COMMIT_RETRY: Millis = Millis {
    env: "TOLLGATE_COMMIT_RETRY_MS",
    default: Duration::from_secs(5),
    min: Duration::ZERO,
    max: Duration::from_secs(60),
    help: "how long a failing commit is retried before its requests get 503",
};

/// The receipt signing window: the receipted records of every commit that became durable
/// within it share one signature (0: one signature per commit). A request waits at most this
/// long for its receipt after its commit (a lone one after a quiet window not at all); under
/// load it bounds the signatures to one per window (`crate::receipt::ReceiptWindow`). 20 ms: about 21 receipts per signature at 1,000
/// receipted requests/s, which keeps a receipt under issue 15's 3 us of CPU (docs/benchmarks.md).
pub const RECEIPT_WINDOW: Millis = Millis {
    env: "TOLLGATE_RECEIPT_WINDOW_MS",
    default: Duration::from_millis(20),
    min: Duration::ZERO,
    max: Duration::from_secs(1),
    help: "the receipt signing window: the receipts of every commit made durable within it share one signature (0: one signature per commit)",
};

/// How long a commit waits for more records when a slot is free (0: commit at once).
pub const COMMIT_LINGER: Millis = Millis {
    env: "TOLLGATE_COMMIT_LINGER_MS",
    default: Duration::ZERO,
    min: Duration::ZERO,
    max: Duration::from_secs(10),
    help: "how long a commit waits for more records (trades latency for fewer, larger commits: Data API calls)",
};

/// Longest an audit batch stays open.
pub const AUDIT_BATCH_MAX_AGE: Millis = Millis {
    env: "TOLLGATE_AUDIT_BATCH_MAX_AGE_MS",
    default: Duration::from_millis(500),
    min: Duration::from_millis(1),
    max: Duration::from_secs(60),
    help: "longest an audit batch stays open before it is sent",
};

/// Reconciler period.
pub const RECONCILE_INTERVAL: Millis = Millis {
    env: "TOLLGATE_RECONCILE_INTERVAL_MS",
    default: Duration::from_secs(60),
    min: Duration::ZERO,
    max: Duration::from_secs(86400),
    help: "period of the in-process reconciler that re-drives unaudited rows (0: off, as when the scheduled audit-reconciler function runs)",
};

/// How long an ingress task signs receipts with one key before it makes and certifies the
/// next (one log-signer call, a KMS `Sign` in aws mode, per rotation; never one per commit).
pub const RECEIPT_KEY_ROTATE: Millis = Millis {
    env: "TOLLGATE_RECEIPT_KEY_ROTATE_MS",
    default: Duration::from_secs(4 * 3600),
    min: Duration::from_secs(1),
    max: Duration::from_secs(7 * 86400),
    help: "how long a receipt key signs before the task makes a new one and has the log key certify it (each certificate is valid this long plus 10 minutes)",
};

/// How long an API key lookup is trusted: a revoked key stops working within this time.
pub const AUTH_CACHE: Millis = Millis {
    env: "TOLLGATE_AUTH_CACHE_MS",
    default: Duration::from_secs(10),
    min: Duration::ZERO,
    max: Duration::from_secs(300),
    help: "how long an API key lookup is cached; a revocation takes effect within it (0: every request reads the key store)",
};

/// ALB OIDC mode: the ALB's `authenticate-oidc` action signs the user's claims into
/// `x-amzn-oidc-data`; the ingress verifies that token (never the plain identity header).
#[derive(Clone, Debug)]
pub struct AlbOidcSettings {
    /// The verifier's configuration (the signer ARN, the key endpoint).
    pub verifier: tollgate_auth::AlbOidcConfig,
    /// Scopes granted to every user the ALB authenticated (the IdP decided they may sign in).
    pub scopes: Vec<String>,
}

fn read_jwt(r: &mut SettingsReader) -> Option<tollgate_auth::JwtConfig> {
    let issuer = r.optional::<String>(
        "TOLLGATE_JWT_ISSUER",
        "JWT access tokens: the issuer (`iss`) accepted; unset, no JWT is accepted",
    );
    let audiences = r.list(
        "TOLLGATE_JWT_AUDIENCES",
        "JWT access tokens: the audiences (`aud`) accepted, comma-separated (required with an issuer)",
    );
    let url = r.optional::<String>(
        "TOLLGATE_JWT_JWKS_URL",
        "JWT access tokens: the issuer's JWKS URL (https; cached, refetched on an unknown kid at most every 30 s)",
    );
    let file = r.optional::<String>(
        "TOLLGATE_JWT_JWKS_FILE",
        "JWT access tokens: a JWKS file instead of a URL",
    );
    let leeway = r.millis(&JWT_LEEWAY);
    let issuer = match issuer {
        Some(i) => i,
        None => {
            if !audiences.is_empty() || url.is_some() || file.is_some() {
                r.error(
                    "TOLLGATE_JWT_AUDIENCES, TOLLGATE_JWT_JWKS_URL and TOLLGATE_JWT_JWKS_FILE need TOLLGATE_JWT_ISSUER",
                );
            }
            return None;
        }
    };
    if audiences.is_empty() {
        r.error("TOLLGATE_JWT_ISSUER needs TOLLGATE_JWT_AUDIENCES: a token for another audience is not for us");
    }
    let jwks = match (url, file) {
        (Some(u), None) => tollgate_auth::JwksSource::Url(u),
        (None, Some(f)) => tollgate_auth::JwksSource::File(PathBuf::from(f)),
        _ => {
            r.error("TOLLGATE_JWT_ISSUER needs exactly one of TOLLGATE_JWT_JWKS_URL and TOLLGATE_JWT_JWKS_FILE");
            return None;
        }
    };
    let mut config = tollgate_auth::JwtConfig::new(issuer, audiences, jwks);
    config.leeway = leeway;
    Some(config)
}

fn read_alb_oidc(r: &mut SettingsReader) -> Option<AlbOidcSettings> {
    let signer = r.optional::<String>(
        "TOLLGATE_ALB_OIDC_SIGNER_ARN",
        "ALB OIDC mode: this load balancer's ARN; its signed x-amzn-oidc-data token is then verified (ES256) and names the caller",
    );
    let endpoint = r.optional::<String>(
        "TOLLGATE_ALB_OIDC_KEY_ENDPOINT",
        "ALB OIDC mode: the ELB public-key endpoint (default: the one of the ARN's region)",
    );
    let scopes = r.list(
        "TOLLGATE_ALB_OIDC_SCOPES",
        "ALB OIDC mode: scopes granted to every user the ALB authenticated (default requests:read:own)",
    );
    let signer = signer?;
    // arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>
    let parts: Vec<&str> = signer.split(':').collect();
    if parts.len() < 6 || parts[2] != "elasticloadbalancing" || !parts[5].starts_with("loadbalancer/app/") {
        r.error(format!(
            "TOLLGATE_ALB_OIDC_SIGNER_ARN={signer}: not an Application Load Balancer ARN"
        ));
        return None;
    }
    let verifier = match endpoint {
        Some(e) => tollgate_auth::AlbOidcConfig::with_endpoint(e, signer.clone()),
        None => tollgate_auth::AlbOidcConfig::for_region(parts[3], signer.clone()),
    };
    let scopes = if scopes.is_empty() {
        vec!["requests:read:own".to_string()]
    } else {
        scopes
    };
    if let Some(bad) = scopes.iter().find(|s| !tollgate_core::access::valid_scope(s)) {
        r.error(format!("TOLLGATE_ALB_OIDC_SCOPES: {bad:?} is not a valid scope"));
    }
    Some(AlbOidcSettings { verifier, scopes })
}

/// Clock skew allowed on a JWT's `exp`, `nbf` and `iat`.
pub const JWT_LEEWAY: Millis = Millis {
    env: "TOLLGATE_JWT_LEEWAY_MS",
    default: Duration::from_secs(30),
    min: Duration::ZERO,
    max: Duration::from_secs(300),
    help: "JWT access tokens: clock skew allowed on exp, nbf and iat",
};

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
    /// The receipt signing window (`TOLLGATE_RECEIPT_WINDOW_MS`; 0: one signature per commit).
    pub receipt_window: Duration,
}

/// Everything the ingress reads at start-up.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// Embedded mode: the signed digests' period, grace and lookback (its in-process timer).
    pub digest: tollgate_core::digest::DigestSettings,
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
    /// How long an API key lookup is cached.
    pub auth_cache: Duration,
    /// JWT access tokens: accepted when an issuer is configured.
    pub jwt: Option<tollgate_auth::JwtConfig>,
    /// The ALB's signed OIDC token: verified when the load balancer's ARN is configured.
    pub alb_oidc: Option<AlbOidcSettings>,
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
    /// How often the task's receipt key is replaced (`TOLLGATE_RECEIPT_KEY_ROTATE_MS`).
    pub receipt_key_rotate: Duration,
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
            max_body_bytes: r.whole(&MAX_BODY_BYTES),
            max_header_bytes: r.whole(&MAX_HEADER_BYTES) as usize,
            max_headers: r.whole(&MAX_HEADERS) as usize,
            header_timeout: r.millis(&HEADER_TIMEOUT),
            body_timeout: r.millis(&BODY_TIMEOUT),
            keepalive_idle: r.millis(&KEEPALIVE_IDLE),
            max_connections: r.whole(&MAX_CONNECTIONS) as usize,
            max_in_flight: r.whole(&MAX_IN_FLIGHT) as usize,
            max_buffered_body_bytes: r.whole(&MAX_BUFFERED_BODY_BYTES),
        };
        let drain_timeout = r.millis(&DRAIN_TIMEOUT);
        let trusted_proxies = r.whole(&TRUSTED_PROXIES) as usize;
        let auth_cache = r.millis(&AUTH_CACHE);
        let jwt = read_jwt(r);
        let alb_oidc = read_alb_oidc(r);
        r.removed(
            "TOLLGATE_PRINCIPAL_HEADER",
            "a header any client can set is never a principal; callers are verified by API key, JWT or the ALB's signed OIDC token (docs/configuration.md)",
        );
        // Both lists add to the built-in ones (`tollgate_core::redact`): no value, empty included,
        // can switch a built-in off.
        let extra_headers = r.list("TOLLGATE_REDACT_HEADERS",
            "more headers redacted in records, audit events and logs; always redacted: authorization, proxy-authorization, cookie, set-cookie, x-api-key, x-amz-security-token, x-amzn-oidc-accesstoken, x-amzn-oidc-data");
        let extra_query_params = r.list("TOLLGATE_REDACT_QUERY_PARAMS",
            "more query parameter names whose values are redacted, in the request and in URLs in referer, location, content-location, link, refresh and destination headers; always redacted: api_key, apikey, api-key, key, access_token, id_token, refresh_token, private_token, token, jwt, code, session, jsessionid, phpsessid, password, secret, client_secret, signature, sig, x-amz-signature, x-amz-credential, x-amz-security-token");
        let redactor = Redactor::new(
            extra_headers.iter().map(String::as_str),
            extra_query_params.iter().map(String::as_str),
        );
        // The audit writer and batch limits are shared with the reconciler (same settings
        // in the scheduled `audit-reconciler` function).
        let reconcile = ReconcileSettings::read(r);
        let recorder = RecorderSettings {
            commit_max_batch: r.whole(&COMMIT_MAX_BATCH) as usize,
            commit_max_inflight: r.whole(&COMMIT_MAX_INFLIGHT) as usize,
            commit_retry: r.millis(&COMMIT_RETRY),
            commit_linger: r.millis(&COMMIT_LINGER),
            audit_max_events: reconcile.max_batch_events,
            audit_max_bytes: reconcile.max_batch_bytes,
            audit_max_age: r.millis(&AUDIT_BATCH_MAX_AGE),
            audit_function: reconcile.audit_function.clone(),
            receipt_window: r.millis(&RECEIPT_WINDOW),
        };
        let reconcile_interval = r.millis(&RECONCILE_INTERVAL);
        let digest = tollgate_core::digest::DigestSettings::read(r);
        let receipt_key_rotate = r.millis(&RECEIPT_KEY_ROTATE);
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
            auth_cache,
            jwt,
            alb_oidc,
            redactor,
            recorder,
            reconcile,
            reconcile_interval,
            digest,
            target_group_arn,
            receipt_key_rotate,
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
    fn the_principal_is_never_taken_from_a_header() {
        // TOLLGATE_PRINCIPAL_HEADER is gone: a principal is only what the access phase verified.
        let err = IngressConfig::from_sources(
            env(&[("TOLLGATE_PRINCIPAL_HEADER", "x-amzn-oidc-identity")]),
            Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("TOLLGATE_PRINCIPAL_HEADER"), "{err}");
    }

    #[test]
    fn redaction_settings_extend_the_built_in_lists() {
        let (c, _) = IngressConfig::from_sources(
            env(&[
                ("TOLLGATE_REDACT_HEADERS", "x-tenant-secret"),
                ("TOLLGATE_REDACT_QUERY_PARAMS", "pin"),
            ]),
            Vec::new(),
        )
        .unwrap();
        assert!(c.redactor.is_secret_header("x-tenant-secret"));
        assert!(c.redactor.is_secret_header("authorization"));
        assert_eq!(
            c.redactor.query("pin=1&token=t&a=1"),
            "pin=[REDACTED]&token=[REDACTED]&a=1"
        );
    }

    #[test]
    fn empty_redaction_settings_cannot_switch_redaction_off() {
        for args in [
            vec!["--redact-headers=".to_string(), "--redact-query-params=".to_string()],
            vec![
                "--redact-headers=,".to_string(),
                "--redact-query-params= , ".to_string(),
            ],
        ] {
            let (c, _) = IngressConfig::from_sources(env(&[]), args).unwrap();
            assert!(c.redactor.is_secret_header("authorization"));
            assert!(c.redactor.is_secret_header("x-amzn-oidc-data"));
            assert_eq!(c.redactor.query("api_key=k&a=1"), "api_key=[REDACTED]&a=1");
        }
    }

    #[test]
    fn redaction_settings_and_their_docs_name_every_built_in() {
        use tollgate_core::redact::{ALWAYS_REDACTED_HEADERS, ALWAYS_REDACTED_QUERY_PARAMS, URL_HEADERS};
        let (_, docs) = IngressConfig::from_sources(env(&[]), Vec::new()).unwrap();
        let help = |env: &str| docs.iter().find(|d| d.env == env).map(|d| d.help).unwrap_or_default();
        let table = include_str!("../../docs/configuration.md");
        let row = |env: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| `{env}`")))
                .unwrap_or_default()
        };
        for h in ALWAYS_REDACTED_HEADERS {
            assert!(help("TOLLGATE_REDACT_HEADERS").contains(h), "setting help lacks {h}");
            assert!(
                row("TOLLGATE_REDACT_HEADERS").contains(&format!("`{h}`")),
                "docs lack {h}"
            );
        }
        for p in ALWAYS_REDACTED_QUERY_PARAMS {
            assert!(
                help("TOLLGATE_REDACT_QUERY_PARAMS").contains(p),
                "setting help lacks {p}"
            );
            assert!(
                row("TOLLGATE_REDACT_QUERY_PARAMS").contains(&format!("`{p}`")),
                "docs lack {p}"
            );
        }
        for h in URL_HEADERS {
            assert!(
                help("TOLLGATE_REDACT_QUERY_PARAMS").contains(h),
                "setting help lacks {h}"
            );
            assert!(
                row("TOLLGATE_REDACT_QUERY_PARAMS").to_ascii_lowercase().contains(h),
                "docs lack {h}"
            );
        }
    }
}
