//! Which adapters a process uses, chosen by `TOLLGATE_MODE`.

use crate::ports::{KeyStore, ObjectStore, RequestLog, TlogStore};
use crate::settings::SettingsReader;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// Default of `TOLLGATE_DATA_DIR`.
pub const DEFAULT_DATA_DIR: &str = "./.tollgate";

/// Where the ports lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SQLite, a directory, functions in-process.
    Embedded,
    /// The AWS SDK adapters.
    Aws,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Embedded => "embedded",
            Mode::Aws => "aws",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Mode::Embedded),
            "aws" => Ok(Mode::Aws),
            _ => Err("must be embedded or aws".into()),
        }
    }
}

/// Storage settings shared by the ingress and the functions.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// Adapter family.
    pub mode: Mode,
    /// Embedded data directory.
    pub data_dir: PathBuf,
    /// The transparency log's origin (`TOLLGATE_LOG_ORIGIN`), the name of its signing key;
    /// `None`: `tollgate.local/<id of the data directory>` when the key is first made.
    pub log_origin: Option<String>,
}

impl StorageSettings {
    /// Reads `TOLLGATE_MODE` and `TOLLGATE_DATA_DIR`.
    pub fn read(r: &mut SettingsReader) -> Self {
        let mode = r.parse(
            "TOLLGATE_MODE",
            Mode::Embedded,
            "adapters: embedded (SQLite, directory, in-process) or aws",
        );
        let data_dir: String = r.parse(
            "TOLLGATE_DATA_DIR",
            DEFAULT_DATA_DIR.to_string(),
            "embedded mode: directory of the SQLite request log and the audit objects",
        );
        let log_origin: String = r.parse(
            "TOLLGATE_LOG_ORIGIN",
            String::new(),
            "transparency log origin (its checkpoints' first line and its key's name); empty: tollgate.local/<data dir id>",
        );
        Self {
            mode,
            data_dir: PathBuf::from(data_dir),
            log_origin: (!log_origin.is_empty()).then_some(log_origin),
        }
    }
}

/// The request log and the object store a process uses.
#[derive(Clone)]
pub struct Backends {
    /// The request log.
    pub log: Arc<dyn RequestLog>,
    /// The audit object store.
    pub store: Arc<dyn ObjectStore>,
    /// The trail store: the transparency log's tiles and checkpoints (`log/`) and the signed
    /// digests (`digest/`). Embedded: the audit object directory. AWS: `TOLLGATE_TRAIL_BUCKET`
    /// (a bucket of its own with Object Lock in the template), else the audit bucket.
    pub trail: Arc<dyn ObjectStore>,
    /// The API keys (in the request log's database).
    pub keys: Arc<dyn KeyStore>,
    /// The transparency log's state (in the request log's database).
    pub tlog: Arc<dyn TlogStore>,
    /// The checkpoint signer: the key file in embedded mode; `None` in aws mode until the KMS
    /// signer exists (sequencing runs, integration is off).
    pub log_signer: Option<Arc<dyn tollgate_tlog::NoteSigner>>,
}

/// Why the backends could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The request log.
    #[error(transparent)]
    Log(#[from] crate::ports::LogError),
    /// The object store.
    #[error(transparent)]
    Store(#[from] crate::ports::StoreError),
    /// The transparency log's signing key.
    #[error("log key: {0}")]
    LogKey(String),
}
