//! The embedded adapters, the default mode (`cargo run` and nothing else): the request log in
//! SQLite ([`sqlite`]) and the audit objects in a directory ([`dirstore`]), under one data
//! directory. The ingress links them always; a function links them only with its `embedded`
//! feature (for `cargo lambda watch --features embedded` on a developer's machine), so an AWS
//! Lambda build carries neither SQLite nor the directory store.

pub mod dirstore;
pub mod sqlite;

use std::sync::Arc;
use tollgate_core::backends::{Backends, OpenError, StorageSettings};

/// SQLite database file inside the data directory.
pub const DB_FILE: &str = "requests.db";
/// Object store root inside the data directory.
pub const OBJECTS_DIR: &str = "objects";

/// Opens the embedded request log and object store in the settings' data directory.
pub fn open(settings: &StorageSettings) -> Result<Backends, OpenError> {
    let log = sqlite::SqliteRequestLog::open(settings.data_dir.join(DB_FILE))?;
    let store = Arc::new(dirstore::DirObjectStore::open(settings.data_dir.join(OBJECTS_DIR))?);
    let signer = tollgate_core::translog::load_or_create_key(
        &settings.data_dir.join(tollgate_core::translog::KEY_FILE),
        settings.log_origin.as_deref(),
        &default_origin(&settings.data_dir),
    )
    .map_err(OpenError::LogKey)?;
    Ok(Backends {
        keys: Arc::new(log.clone()),
        tlog: Arc::new(log.clone()),
        log: Arc::new(log),
        trail: store.clone(),
        store,
        log_signer: Some(Arc::new(signer)),
    })
}

/// `tollgate.local/<first 8 bytes of SHA-256 of the data directory's absolute path, hex>`: one
/// origin per data directory, so two local logs never share a name.
pub fn default_origin(data_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let abs = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(abs.to_string_lossy().as_bytes());
    format!("tollgate.local/{}", tollgate_core::model::hex(&digest[..8]))
}
