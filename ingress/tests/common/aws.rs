//! A local AWS stack for aws mode: a private PostgreSQL behind `dataapi-local` (RDS Data
//! API), an S3-compatible server with the audit bucket, and `cargo lambda watch` serving the
//! Lambda Invoke API with the function binaries attached as runtimes. S3 is reached through a
//! fault-injecting proxy (`s3_faults`). Everything is stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_testkit::{free_port, Postgres, S3Server};

pub const CLUSTER_ARN: &str = "arn:aws:rds:us-east-1:000000000000:cluster:tollgate-local";
pub const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:tollgate-local";
pub const BUCKET: &str = "tollgate-audit-local";
/// The trail bucket (tiles, checkpoints, digests) of a stack started with a separate one, as
/// the template deploys ([`AwsStack::start_with_kms_log_and`] with `TOLLGATE_TRAIL_BUCKET`).
pub const TRAIL_BUCKET: &str = "tollgate-trail-local";
/// The functions the Lambda emulator runs: the registry's `local_stack` ones.
pub fn functions() -> Vec<String> {
    tollgate_ingress::registry::functions()
        .into_iter()
        .filter(|f| f.local_stack)
        .map(|f| f.name)
        .collect()
}

fn bin_dir() -> PathBuf {
    PathBuf::from(super::binary()).parent().unwrap().to_path_buf()
}

/// Builds the function binaries unless `cargo test --workspace` already did (it builds them
/// for the functions' own integration tests).
pub fn build_functions() {
    let functions = functions();
    if functions.iter().all(|f| bin_dir().join(f).exists()) {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(super::workspace_root()).arg("build");
    for f in tollgate_ingress::registry::functions().iter().filter(|f| f.local_stack) {
        let manifest = super::workspace_root().join(&f.package).join("Cargo.toml");
        let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        cmd.args(["-p", manifest["package"]["name"].as_str().unwrap()]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building the function binaries failed");
}

/// `cargo lambda watch --only-lambda-apis` plus one process per function, each function's
/// output appended to `<logs>/<function>.log`.
pub struct LambdaEmulator {
    port: u16,
    env: Vec<(String, String)>,
    children: Vec<Child>,
    logs: PathBuf,
}

impl LambdaEmulator {
    /// Starts the emulator on `port`; `None` when the port turned out to be taken.
    pub fn start(port: u16, env: Vec<(String, String)>, logs: PathBuf) -> Option<Self> {
        let mut e = Self {
            port,
            env,
            children: Vec::new(),
            logs,
        };
        e.try_up().then_some(e)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the emulator and the functions.
    pub fn up(&mut self) {
        assert!(
            self.try_up(),
            "port {} was taken while the emulator was down",
            self.port
        );
    }

    /// Starts the emulator and the functions; false if the emulator could not bind its port
    /// (another process took it after `free_port`).
    fn try_up(&mut self) -> bool {
        // cargo-lambda as cargo runs a subcommand: `cargo-lambda lambda watch ...`.
        let mut watch = Command::new(tollgate_testkit::tool("cargo-lambda"))
            .current_dir(super::workspace_root())
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `cargo lambda watch` ({e})"));
        if !tollgate_testkit::wait_until_serving(&mut watch, self.port, Duration::from_secs(60), "cargo lambda watch") {
            return false; // the port is someone else's
        }
        self.children.push(watch);
        for f in functions() {
            let f = f.as_str();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.logs.join(format!("{f}.log")))
                .expect("function log file");
            let child = Command::new(bin_dir().join(f))
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("AWS_LAMBDA_FUNCTION_NAME", f)
                .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
                .env(
                    "AWS_LAMBDA_RUNTIME_API",
                    format!("http://127.0.0.1:{}/.rt/{f}", self.port),
                )
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start function {f} ({e})"));
            self.children.push(child);
        }
        true
    }

    /// Stops the emulator and the functions: the Lambda endpoint becomes unreachable.
    pub fn down(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // cargo lambda watch leaves no children with --only-lambda-apis, but make sure the
        // port is free before a restart.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        self.down();
    }
}

/// The whole stack.
pub struct AwsStack {
    /// The functions' output (`<function>.log`).
    pub logs: super::TempDir,
    pub pg: Postgres,
    pub s3: S3Server,
    /// Between every process of the stack and S3 (passes through unless a test sets a fault).
    pub s3_faults: tollgate_testkit::faults::FaultProxy,
    pub dataapi: String,
    pub lambda: LambdaEmulator,
    /// Environment of an aws-mode process (ingress or function).
    pub env: Vec<(String, String)>,
    /// The KMS stand-in holding the transparency log's key, when the stack signs checkpoints
    /// ([`AwsStack::start_with_kms_log`]).
    pub kms: Option<tollgate_testkit::kms_local::KmsServer>,
}

/// The transparency log's key in the KMS stand-in, and the log's origin.
pub const LOG_KEY_ALIAS: &str = "alias/tollgate-log";
pub const LOG_ORIGIN: &str = "tollgate.local/aws-stack";

impl AwsStack {
    /// The stack with the transparency log off (events sequenced, not integrated).
    pub async fn start() -> Self {
        Self::start_inner(false, &[]).await
    }

    /// The stack with the transparency log on: a KMS stand-in (on this test's runtime) holding
    /// an Ed25519 key, and `AWS_ENDPOINT_URL_KMS`, `TOLLGATE_LOG_KMS_KEY_ID` and
    /// `TOLLGATE_LOG_ORIGIN` in every process's environment, so the audit-writer integrates.
    pub async fn start_with_kms_log() -> Self {
        Self::start_inner(true, &[]).await
    }

    /// [`AwsStack::start_with_kms_log`] with more settings for every process of the stack (the
    /// ingress, the functions, the CLI), as the template gives them (e.g. the digest period).
    /// A `TOLLGATE_TRAIL_BUCKET` among them is created beside the audit bucket.
    pub async fn start_with_kms_log_and(extra: &[(&str, &str)]) -> Self {
        Self::start_inner(true, extra).await
    }

    async fn start_inner(with_kms: bool, extra: &[(&str, &str)]) -> Self {
        if !cfg!(feature = "aws") {
            panic!(
                "the aws-mode tests run the ingress binary in aws mode: build it with its aws feature \
                 (`cargo test --workspace` does; alone: cargo test -p tollgate-ingress --features aws)"
            );
        }
        build_functions();
        let pg = Postgres::start();
        pg.psql("postgres", "CREATE DATABASE tollgate");
        let dataapi = dataapi_local::server::spawn_local(pg.port, Duration::from_secs(180))
            .await
            .unwrap();
        let s3 = S3Server::start();
        let s3_faults = tollgate_testkit::faults::FaultProxy::start(&s3.endpoint);
        let logs = super::TempDir::new("lambda-logs");
        let kms = if with_kms {
            let kms = tollgate_testkit::kms_local::KmsServer::start().await;
            let arn = kms.kms.create_ed25519_key("tollgate transparency log (test stack)");
            kms.kms.create_alias(LOG_KEY_ALIAS, &arn).expect("alias the log key");
            Some(kms)
        } else {
            None
        };
        let mut attempts = 0;
        let (lambda, env) = loop {
            attempts += 1;
            let lambda_port = free_port();
            let mut env = Self::environment(&dataapi, &s3_faults.endpoint(), lambda_port);
            if let Some(kms) = &kms {
                env.extend(
                    [
                        ("AWS_ENDPOINT_URL_KMS", kms.endpoint.clone()),
                        ("TOLLGATE_LOG_KMS_KEY_ID", LOG_KEY_ALIAS.to_string()),
                        ("TOLLGATE_LOG_ORIGIN", LOG_ORIGIN.to_string()),
                    ]
                    .map(|(k, v)| (k.to_string(), v)),
                );
            }
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            if let Some(lambda) = LambdaEmulator::start(lambda_port, env.clone(), logs.0.clone()) {
                break (lambda, env);
            }
            assert!(
                attempts < 5,
                "cargo lambda watch could not bind a free port in 5 attempts"
            );
        };
        let client = s3_client(&env);
        client
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("create the audit bucket");
        if let Some((_, trail)) = env.iter().find(|(k, _)| k == "TOLLGATE_TRAIL_BUCKET") {
            client
                .create_bucket()
                .bucket(trail)
                .send()
                .await
                .expect("create the trail bucket");
        }
        Self {
            logs,
            pg,
            s3,
            s3_faults,
            dataapi,
            lambda,
            env,
            kms,
        }
    }

    /// The rows in PostgreSQL: request id -> (status, error code, intent).
    pub fn rows_by_id(&self) -> std::collections::BTreeMap<String, (u16, String, bool)> {
        self.pg
            .psql(
                "tollgate",
                "SELECT request_id || '|' || status || '|' || coalesce(error_code, '') || '|' || intent FROM api_requests",
            )
            .lines()
            .filter_map(|l| {
                let mut p = l.split('|');
                Some((
                    p.next()?.to_string(),
                    (p.next()?.parse().ok()?, p.next()?.to_string(), matches!(p.next()?, "t" | "true")),
                ))
            })
            .collect()
    }

    /// What a function wrote (its JSON log lines), across restarts.
    pub fn function_log(&self, function: &str) -> String {
        std::fs::read_to_string(self.logs.0.join(format!("{function}.log"))).unwrap_or_default()
    }

    /// The request ids `echo` was invoked for, from its log (one line per invocation), with
    /// how many times each.
    pub fn echo_invocations(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for line in self.function_log("echo").lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if v["fields"]["message"] == "echo invoked" || v["message"] == "echo invoked" {
                let id = v["fields"]["request_id"]
                    .as_str()
                    .or_else(|| v["request_id"].as_str())
                    .unwrap_or_default();
                *out.entry(id.to_string()).or_default() += 1;
            }
        }
        out
    }

    /// Runs the scheduled reconciler (the deployed function, invoked with the schedule's event)
    /// until no row is unaudited, or `limit` passes; false if rows are left.
    pub async fn reconcile_until_caught_up(&self, limit: std::time::Duration) -> bool {
        use tollgate_core::ports::Invoker;
        let reconciler = self.lambda_invoker();
        let schedule = std::fs::read(super::workspace_root().join("events/audit-reconciler-schedule.json")).unwrap();
        super::eventually(limit, || async {
            let _ = reconciler.invoke("audit-reconciler", schedule.clone().into()).await;
            self.rows().1 == 0
        })
        .await
    }

    /// The Lambda client configuration of the emulator (its endpoint, test credentials).
    pub fn lambda_config(&self) -> aws_sdk_lambda::config::Builder {
        let endpoint = self
            .env
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL_LAMBDA")
            .unwrap()
            .1
            .clone();
        aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "local", "local", None, None, "test",
            ))
            .endpoint_url(endpoint)
    }

    /// A Lambda client on the emulator (one attempt per call), as the ingress makes.
    pub fn lambda_invoker(&self) -> tollgate_aws::lambda::LambdaInvoker {
        tollgate_aws::lambda::LambdaInvoker::from_config(self.lambda_config())
    }

    /// The environment of an aws-mode process on this stack.
    fn environment(dataapi: &str, s3: &str, lambda_port: u16) -> Vec<(String, String)> {
        [
            ("TOLLGATE_MODE", "aws".to_string()),
            ("TOLLGATE_DB_CLUSTER_ARN", CLUSTER_ARN.into()),
            ("TOLLGATE_DB_SECRET_ARN", SECRET_ARN.into()),
            ("TOLLGATE_DB_NAME", "tollgate".into()),
            ("TOLLGATE_AUDIT_BUCKET", BUCKET.into()),
            ("TOLLGATE_S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "local".into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL_RDS_DATA", dataapi.to_string()),
            ("AWS_ENDPOINT_URL_S3", s3.to_string()),
            ("AWS_ENDPOINT_URL_LAMBDA", format!("http://127.0.0.1:{lambda_port}")),
            // The reconciler (the scheduled function, as deployed) re-drives rows older than this.
            ("TOLLGATE_RECONCILE_GRACE_MS", "3000".into()),
            // ... and finalizes write-ahead intents older than this (the ingress, which checks
            // its routes against its own value, is given the default).
            ("TOLLGATE_INTENT_GRACE_MS", "2000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Migrates, then starts the ingress in aws mode on this stack as the template runs it: no
    /// reconciling in the task (the scheduled function does it), no trusted proxy, and audit
    /// batches that close after `batch_max_age_ms`.
    pub fn ingress(&self, root: &Path, batch_max_age_ms: &str) -> super::Proc {
        self.migrate(root);
        let mut env = self.env_refs();
        env.extend([
            ("TOLLGATE_TRUSTED_PROXIES", "0"),
            ("TOLLGATE_RECONCILE_INTERVAL_MS", "0"),
            ("TOLLGATE_AUDIT_BATCH_MAX_AGE_MS", batch_max_age_ms),
        ]);
        super::Proc::spawn(root, &env)
    }

    /// The log's verifier key as `tollgate log-key` prints it in aws mode (the KMS key's public
    /// key, named as the origin); the command must succeed.
    pub fn log_key(&self, cwd: &Path) -> String {
        let out = Command::new(super::binary())
            .current_dir(cwd)
            .arg("log-key")
            .envs(self.env_refs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tollgate log-key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs `tollgate migrate` in aws mode.
    pub fn migrate(&self, cwd: &Path) {
        let out = Command::new(super::binary())
            .current_dir(cwd)
            .arg("migrate")
            .envs(self.env_refs())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tollgate migrate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Request ids of the rows in PostgreSQL, and how many are still unaudited.
    pub fn rows(&self) -> (Vec<String>, usize) {
        let ids = self
            .pg
            .psql("tollgate", "SELECT request_id FROM api_requests ORDER BY request_id");
        let open = self
            .pg
            .psql("tollgate", "SELECT count(*) FROM api_requests WHERE audit_key IS NULL");
        (ids.lines().map(String::from).collect(), open.trim().parse().unwrap())
    }

    /// How many times each request id appears across the audit objects in S3.
    pub async fn audit_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let store = tollgate_aws::s3::S3ObjectStore::new(
            s3_client(&self.env),
            tollgate_aws::s3::S3Settings {
                bucket: BUCKET.into(),
                kms_key_id: None,
            },
        );
        super::audit_counts(&store).await
    }
}

pub fn s3_client(env: &[(String, String)]) -> aws_sdk_s3::Client {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(get("AWS_ENDPOINT_URL_S3"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
