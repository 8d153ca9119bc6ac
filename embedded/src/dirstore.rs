//! Embedded `ObjectStore`: a directory. Create-only puts are atomic: the body is written and
//! fsynced under a temporary name, then hard-linked to its key (`link` fails if the key
//! exists, so an object is never overwritten and never seen half-written).
//!
//! A put reports success only once the object is durable: every directory it created is
//! fsynced into its parent, the key's directory entry is fsynced, and a failed fsync fails
//! the put (the audit writer then leaves the outbox as it is, and a retry finds the object
//! and makes it durable before counting it). An object found already there is fsynced too.

use bytes::Bytes;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tollgate_core::ports::{BoxFuture, ObjectStore, PutOutcome, StoreError};

/// Objects under a root directory, one file per key.
#[derive(Clone, Debug)]
pub struct DirObjectStore {
    root: Arc<PathBuf>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl DirObjectStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io)?;
        Ok(Self { root: Arc::new(root) })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let safe = !key.is_empty()
            && !key.ends_with('/')
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && !key.contains(".tmp-");
        if !safe {
            return Err(StoreError::Failed(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(rel))
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// `create_dir_all` that fsyncs each directory it creates into its parent.
fn create_dirs_durably(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .ok_or_else(|| StoreError::Failed(format!("no parent for {}", dir.display())))?;
    create_dirs_durably(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

fn put_blocking(path: &Path, body: &[u8]) -> Result<PutOutcome, StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::Failed("key has no parent".into()))?;
    if path.exists() {
        // There from an earlier attempt, whose fsyncs may have failed: make it durable now.
        std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io)?;
        sync_dir(dir)?;
        return Ok(PutOutcome::AlreadyExists);
    }
    create_dirs_durably(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("object");
    let tmp = dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create_new(&tmp).map_err(io)?;
        f.write_all(body).map_err(io)?;
        f.sync_all().map_err(io)?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io)?;
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(io(e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    // The new directory entry (and the temporary name's removal) durable, or the put failed.
    result.and_then(|outcome| sync_dir(dir).map(|()| outcome))
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io)?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let Ok(rel) = path.strip_prefix(root) else { continue };
                let key = rel.to_string_lossy().replace('\\', "/");
                let hidden = rel
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                if !hidden && key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
    }
    keys.sort();
    Ok(keys)
}

impl ObjectStore for DirObjectStore {
    fn put_if_absent<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            tokio::task::spawn_blocking(move || put_blocking(&path, &body))
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))?
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            match tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))?
            {
                Ok(b) => Ok(Some(Bytes::from(b))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(e)),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || list_blocking(&root, &prefix))
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))?
        })
    }
}
