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
    let store = dirstore::DirObjectStore::open(settings.data_dir.join(OBJECTS_DIR))?;
    Ok(Backends {
        keys: Arc::new(log.clone()),
        log: Arc::new(log),
        store: Arc::new(store),
    })
}
