//! Which adapters a process uses, chosen by `TOLLGATE_MODE`.

use crate::ports::{KeyStore, ObjectStore, RequestLog};
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
        Self {
            mode,
            data_dir: PathBuf::from(data_dir),
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
    /// The API keys (in the request log's database).
    pub keys: Arc<dyn KeyStore>,
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
}
