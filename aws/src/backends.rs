//! The adapters a process uses, by `TOLLGATE_MODE`: embedded, or the AWS SDK adapters.

use crate::dataapi::{DataApiRequestLog, DataApiSettings};
use crate::lambda::LambdaInvoker;
use crate::s3::{S3ObjectStore, S3Settings};
use crate::sdk;
use std::sync::Arc;
use tollgate_core::backends::{Backends, Mode, StorageSettings};
use tollgate_core::settings::SettingsReader;

/// The AWS settings (aws mode); every one is required there.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// Data API target.
    pub data_api: DataApiSettings,
    /// Audit bucket.
    pub s3: S3Settings,
    /// Trail bucket (tiles, checkpoints, digests); the audit bucket when unset.
    pub trail: S3Settings,
    /// Path-style S3 addressing (S3-compatible stand-ins on loopback).
    pub s3_force_path_style: bool,
    /// Prefix of the deployed Lambda function names (`<stack>-`).
    pub function_prefix: String,
    /// The alias each function is invoked through (`echo` -> `live`); the others unqualified.
    pub function_aliases: Vec<(String, String)>,
    /// The KMS key that signs the transparency log's checkpoints (`TOLLGATE_LOG_KMS_KEY_ID`: key
    /// id, key ARN, alias name or alias ARN); `None`: events are sequenced, not integrated.
    pub log_kms_key_id: Option<String>,
}

impl AwsSettings {
    /// Reads the AWS settings; in aws mode a missing one is an error naming it.
    pub fn read(r: &mut SettingsReader, mode: Mode) -> Option<Self> {
        let cluster = r.optional::<String>(
            "TOLLGATE_DB_CLUSTER_ARN",
            "aws mode: Aurora cluster ARN for the Data API",
        );
        let secret = r.optional::<String>(
            "TOLLGATE_DB_SECRET_ARN",
            "aws mode: Secrets Manager ARN of the database credentials",
        );
        let database: String = r.parse("TOLLGATE_DB_NAME", "tollgate".to_string(), "aws mode: database name");
        let bucket = r.optional::<String>("TOLLGATE_AUDIT_BUCKET", "aws mode: S3 bucket of the audit objects");
        let kms_key_id = r.optional::<String>(
            "TOLLGATE_AUDIT_KMS_KEY_ID",
            "aws mode: KMS key for SSE-KMS (SSE-S3 when unset)",
        );
        let trail_bucket = r.optional::<String>(
            "TOLLGATE_TRAIL_BUCKET",
            "aws mode: S3 bucket of the transparency log's tiles, checkpoints and digests (Object Lock); the audit bucket when unset",
        );
        let s3_force_path_style = r.parse(
            "TOLLGATE_S3_FORCE_PATH_STYLE",
            false,
            "aws mode: path-style S3 requests (for S3-compatible servers on loopback)",
        );
        let function_prefix: String = r.parse(
            "TOLLGATE_FUNCTION_PREFIX",
            String::new(),
            "aws mode: prefix of the deployed Lambda function names (the stack sets `<stack>-`)",
        );
        let log_kms_key_id = r.optional::<String>(
            "TOLLGATE_LOG_KMS_KEY_ID",
            "aws mode: the AWS KMS key (ECC_NIST_EDWARDS25519, SIGN_VERIFY) that signs the transparency log's checkpoints: key id, ARN or alias/<name>; needs TOLLGATE_LOG_ORIGIN; unset: events are sequenced but not integrated",
        );
        let mut function_aliases = Vec::new();
        for pair in r.list(
            "TOLLGATE_FUNCTION_ALIASES",
            "aws mode: function=alias pairs; each is invoked through that alias (the stack sets echo=live,requests-api=live)",
        ) {
            match pair.split_once('=') {
                Some((f, a)) if !f.is_empty() && !a.is_empty() && !a.contains(':') => {
                    function_aliases.push((f.to_string(), a.to_string()))
                }
                _ => r.error(format!("TOLLGATE_FUNCTION_ALIASES: {pair:?} is not function=alias")),
            }
        }
        if mode != Mode::Aws {
            return None;
        }
        let mut missing = Vec::new();
        for (name, v) in [
            ("TOLLGATE_DB_CLUSTER_ARN", &cluster),
            ("TOLLGATE_DB_SECRET_ARN", &secret),
            ("TOLLGATE_AUDIT_BUCKET", &bucket),
        ] {
            if v.is_none() {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            r.error(format!("TOLLGATE_MODE=aws needs {}", missing.join(", ")));
            return None;
        }
        Some(Self {
            data_api: DataApiSettings {
                cluster_arn: cluster.unwrap_or_default(),
                secret_arn: secret.unwrap_or_default(),
                database,
            },
            trail: S3Settings {
                bucket: trail_bucket.or_else(|| bucket.clone()).unwrap_or_default(),
                kms_key_id: kms_key_id.clone(),
            },
            s3: S3Settings {
                bucket: bucket.unwrap_or_default(),
                kms_key_id,
            },
            s3_force_path_style,
            function_prefix,
            function_aliases,
            log_kms_key_id: log_kms_key_id.filter(|k| !k.is_empty()),
        })
    }
}

/// Storage and AWS settings together.
#[derive(Clone, Debug)]
pub struct ModeSettings {
    /// Mode and embedded data dir.
    pub storage: StorageSettings,
    /// AWS settings (aws mode only).
    pub aws: Option<AwsSettings>,
}

impl ModeSettings {
    /// Reads `TOLLGATE_MODE` and what the mode needs.
    pub fn read(r: &mut SettingsReader) -> Self {
        let storage = StorageSettings::read(r);
        let aws = AwsSettings::read(r, storage.mode);
        Self { storage, aws }
    }
}

/// Opens the request log and object store for the mode.
pub async fn open(settings: &ModeSettings) -> Result<Backends, String> {
    match (&settings.storage.mode, &settings.aws) {
        (Mode::Aws, Some(aws)) => {
            let sdk = sdk::config().await;
            let log = DataApiRequestLog::new(sdk::rds_data(&sdk), aws.data_api.clone());
            let log_signer = log_signer(&sdk, settings).await?;
            Ok(Backends {
                keys: Arc::new(log.clone()),
                tlog: Arc::new(log.clone()),
                log_signer,
                log: Arc::new(log),
                store: Arc::new(S3ObjectStore::new(
                    sdk::s3(&sdk, aws.s3_force_path_style),
                    aws.s3.clone(),
                )),
                trail: Arc::new(S3ObjectStore::new(
                    sdk::s3(&sdk, aws.s3_force_path_style),
                    aws.trail.clone(),
                )),
            })
        }
        (Mode::Aws, None) => Err("aws mode without AWS settings".into()),
        (Mode::Embedded, _) => open_embedded(&settings.storage),
    }
}

/// The checkpoint signer of aws mode: the KMS key of `TOLLGATE_LOG_KMS_KEY_ID` under
/// `TOLLGATE_LOG_ORIGIN` (checked once with `GetPublicKey`), or `None` when no key is set.
pub async fn log_signer(
    sdk: &aws_config::SdkConfig,
    settings: &ModeSettings,
) -> Result<Option<Arc<dyn tollgate_tlog::NoteSigner>>, String> {
    let Some(key_id) = settings.aws.as_ref().and_then(|a| a.log_kms_key_id.as_deref()) else {
        return Ok(None);
    };
    // The checkpoints' origin is their key's name, and a KMS key has none of its own: the
    // operator names the log once, and every checkpoint and the vkey carry that name. (Checked
    // here, at open, rather than with the other settings: the template sets the origin through a
    // condition that its tests evaluate to the empty parameter.)
    let origin = settings.storage.log_origin.as_deref().ok_or(
        "TOLLGATE_LOG_KMS_KEY_ID needs TOLLGATE_LOG_ORIGIN (the log's name: its checkpoints' origin line and the key name in its vkey)",
    )?;
    let signer = crate::kms::KmsNoteSigner::connect(crate::kms::client(sdk), key_id, origin)
        .await
        .map_err(|e| format!("the transparency log's signing key: {e}"))?;
    tracing::info!(vkey = %signer.verifier_key(), "tlog: checkpoints are signed by the KMS key");
    Ok(Some(Arc::new(signer)))
}

#[cfg(feature = "embedded")]
fn open_embedded(storage: &StorageSettings) -> Result<Backends, String> {
    tollgate_embedded::open(storage).map_err(|e| e.to_string())
}

#[cfg(not(feature = "embedded"))]
fn open_embedded(_: &StorageSettings) -> Result<Backends, String> {
    Err("TOLLGATE_MODE=embedded: this build has no embedded adapters (an AWS build); build it with `--features embedded` (e.g. `cargo lambda watch --features embedded`)".into())
}

/// The invoker for the mode: Lambda (aws mode), or the in-process functions `embedded` builds
/// (embedded mode). The one place the choice is made, for the ingress and the reconciler.
pub async fn invoker(
    settings: &ModeSettings,
    embedded: impl FnOnce() -> std::collections::HashMap<String, Arc<dyn tollgate_core::local::LocalFunction>>,
) -> Result<Arc<dyn tollgate_core::ports::Invoker>, String> {
    match (&settings.storage.mode, &settings.aws) {
        (Mode::Aws, Some(aws)) => Ok(Arc::new(lambda_invoker(aws).await)),
        (Mode::Aws, None) => Err("aws mode without AWS settings".into()),
        (Mode::Embedded, _) => Ok(Arc::new(tollgate_core::local::LocalInvoker::new(embedded()))),
    }
}

/// The Lambda invoker from the environment's SDK configuration.
pub async fn lambda_invoker(settings: &AwsSettings) -> LambdaInvoker {
    LambdaInvoker::from_config(sdk::lambda(&sdk::config().await))
        .with_function_prefix(settings.function_prefix.clone())
        .with_aliases(settings.function_aliases.iter().cloned())
}

/// Reads the mode's settings from this process's environment and arguments and opens its
/// backends: what every function binary does first.
pub async fn open_from_process() -> Result<Backends, String> {
    let mut reader = SettingsReader::from_process();
    let mode = ModeSettings::read(&mut reader);
    reader.finish().map_err(|e| e.to_string())?;
    open(&mode).await
}
