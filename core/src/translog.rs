//! The transparency log over the ports (issue 15; `docs/transparency-log.md`): integration of
//! sequenced leaves into C2SP tlog-tiles with a signed C2SP checkpoint, and C2SP tlog-proofs of
//! inclusion served from those tiles. The formats and the hashing are `tollgate_tlog`'s; this
//! module only moves hashes between the request log's database and the object store.
//!
//! Sequencing happens at marking ([`crate::RequestLog::mark_audited`]), so indexes have no
//! holes; integration reads the leaves past the integrated size, extends the tree, writes the
//! new tiles (create-only: full and partial tiles have distinct paths, and the same tile always
//! holds the same bytes), signs a checkpoint, writes it to `log/checkpoint/<size>` and advances
//! the state row by compare-and-set. Ed25519 signatures are deterministic (RFC 8032 section
//! 5.1.6), so two integrations of the same size produce byte-identical checkpoints: the log can
//! never sign two different checkpoints of one size, even if two integrators race.

use crate::model::{StoredRecord, TlogState};
use crate::ports::{LogError, ObjectStore, PutOutcome, StoreError, TlogPending, TlogStore};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tollgate_tlog::merkle::{self, Hash, HashReader};
use tollgate_tlog::note::NoteSigner;
use tollgate_tlog::tile::{self, Tile, TileHashReader, TileReader};
use tollgate_tlog::{Checkpoint, TlogProof};

/// Where the log lives in the object store: `log/tile/...` (C2SP tlog-tiles paths) and
/// `log/checkpoint/<size>`.
pub const PREFIX: &str = "log/";
/// C2SP tlog-tiles height.
pub const HEIGHT: u8 = tile::TILE_HEIGHT;
/// Leaves integrated per round (an integration loops until caught up).
pub const MAX_LEAVES_PER_ROUND: usize = 1 << 16;
/// The signing key file in the embedded data directory.
pub const KEY_FILE: &str = "log-key";

/// Why integration or a proof failed.
#[derive(Debug, thiserror::Error)]
pub enum TlogError {
    /// The request log's database.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The object store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing, tiles, signing.
    #[error("tlog: {0}")]
    Tlog(#[from] tollgate_tlog::Error),
    /// Stored state that contradicts itself (a tile or checkpoint that does not match).
    #[error("tlog inconsistent: {0}")]
    Inconsistent(String),
}

/// The key of a tile in the object store.
pub fn tile_key(t: &Tile) -> String {
    format!("{PREFIX}{}", t.path())
}

/// The key of the checkpoint of a tree size.
pub fn checkpoint_key(size: u64) -> String {
    format!("{PREFIX}checkpoint/{size}")
}

/// Serves the hashes integration needs: the right edge of the old tree from its partial tiles
/// (every hash a new leaf or a new tile needs from the old tree lies in the last, partial,
/// tile of some level), and the hashes computed now.
struct EdgeReader {
    old: HashMap<(u8, u64), (Tile, Bytes)>,
    new: BTreeMap<u64, Hash>,
}

impl HashReader for EdgeReader {
    fn read_hashes(&self, stored: &[u64]) -> Result<Vec<Hash>, tollgate_tlog::Error> {
        stored
            .iter()
            .map(|&x| {
                if let Some(h) = self.new.get(&x) {
                    return Ok(*h);
                }
                let t = tile::tile_for_index(HEIGHT, x);
                let (tile, data) = self
                    .old
                    .get(&(t.level, t.n))
                    .ok_or_else(|| tollgate_tlog::Error::Storage(format!("hash {x} is in no tile read")))?;
                tile::hash_from_tile(tile, data, x)
            })
            .collect()
    }
}

/// The partial tiles of a tree of `size` leaves: the last tile of each level, where it is not full.
fn edge_tiles(size: u64) -> Vec<Tile> {
    let h = u32::from(HEIGHT);
    let mut out = Vec::new();
    let mut level = 0u32;
    while h * level < 64 && size >> (h * level) > 0 {
        let row = size >> (h * level);
        let width = row & ((1 << h) - 1);
        if width > 0 {
            out.push(Tile {
                height: HEIGHT,
                level: level as u8,
                n: row >> h,
                width: width as u16,
            });
        }
        level += 1;
    }
    out
}

/// Integrates sequenced leaves into tiles and a signed checkpoint. One per process (the lock:
/// share it, so that the writer's integrations and the digest timer's take turns instead of
/// racing); across processes the state row's compare-and-set keeps it single-writer.
pub struct Integrator {
    log: Arc<dyn TlogStore>,
    store: Arc<dyn ObjectStore>,
    signer: Arc<dyn NoteSigner>,
    origin: String,
    /// Held for a whole integration; it keeps the last state this integrator read or advanced
    /// the log to, so that a read made before another integration of this process advanced
    /// the log (a marking's, waiting for the lock) is not taken for the current state.
    lock: tokio::sync::Mutex<Option<TlogState>>,
}

impl Integrator {
    /// An integrator signing checkpoints of `origin` (the signer's key name: C2SP tlog-checkpoint
    /// verifiers look for a signature by a key named as the origin).
    pub fn new(log: Arc<dyn TlogStore>, store: Arc<dyn ObjectStore>, signer: Arc<dyn NoteSigner>) -> Self {
        let origin = signer.name().to_string();
        Self {
            log,
            store,
            signer,
            origin,
            lock: tokio::sync::Mutex::new(None),
        }
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Integrates everything sequenced before it started; returns the state after. A round
    /// costs two calls of the database: one read of the state with the pending leaves
    /// ([`TlogStore::tlog_pending`]) and the compare-and-set ([`TlogStore::tlog_advance`]).
    /// Leaves sequenced after the read are the next integration's (every writer batch
    /// integrates after its own marking), so no third call checks for them. The digest
    /// function, its timer and an idle log use this; a writer that just marked has the read
    /// in hand ([`Integrator::integrate_from`]).
    pub async fn integrate(&self) -> Result<TlogState, TlogError> {
        let mut last = self.lock.lock().await;
        self.catch_up(&mut last).await
    }

    /// Integrates everything sequenced before `pending` was read: the state and leaves a
    /// marking answered ([`crate::RequestLog::mark_audited_pending`]), so the first round
    /// costs one call of the database, the compare-and-set, and no read. It reads again
    /// ([`TlogStore::tlog_pending`]) only when the compare-and-set loses (another process
    /// integrated first) or when more is pending than `pending` holds. When this integrator
    /// already advanced the log past `pending`'s state (another batch's integration held the
    /// lock meanwhile), it goes on from there, and when that covers every leaf of `pending`
    /// it costs nothing.
    pub async fn integrate_from(&self, pending: TlogPending) -> Result<TlogState, TlogError> {
        let mut last = self.lock.lock().await;
        let (mut state, mut leaves) = pending;
        let next_index = state.next_index;
        if let Some(known) = last.as_ref().filter(|k| k.size > state.size) {
            if known.size >= next_index {
                return Ok(TlogState {
                    next_index: next_index.max(known.next_index),
                    ..known.clone()
                });
            }
            // Leaves are fixed once sequenced: those of `pending` past the known size extend
            // the known tree (the compare-and-set from its size tells whether it still is the
            // stored one).
            let skip = (known.size - state.size) as usize;
            leaves.drain(..skip.min(leaves.len()));
            state = TlogState {
                next_index,
                ..known.clone()
            };
        }
        if state.size >= next_index {
            return Ok(state);
        }
        if !leaves.is_empty() {
            if let Some(after) = self.extend(&state, &leaves).await? {
                *last = Some(after.clone());
                if after.size >= next_index {
                    return Ok(after);
                }
            }
        }
        self.catch_up(&mut last).await
    }

    /// Read-extend rounds until the log is integrated up to what the read found sequenced.
    async fn catch_up(&self, last: &mut Option<TlogState>) -> Result<TlogState, TlogError> {
        loop {
            let (state, leaves) = self.log.tlog_pending(MAX_LEAVES_PER_ROUND).await?;
            if state.size >= state.next_index {
                *last = Some(state.clone());
                return Ok(state);
            }
            if leaves.is_empty() {
                return Err(TlogError::Inconsistent(format!(
                    "sequenced up to {} but no leaf at {}",
                    state.next_index, state.size
                )));
            }
            if let Some(after) = self.extend(&state, &leaves).await? {
                *last = Some(after.clone());
                if after.size >= state.next_index {
                    return Ok(after);
                }
            }
        }
    }

    /// Extends the tree of `state` by `leaves`: the state after, or `None` when another
    /// integrator advanced the log first (read it again).
    async fn extend(&self, state: &TlogState, leaves: &[Hash]) -> Result<Option<TlogState>, TlogError> {
        let old_size = state.size;
        let mut reader = EdgeReader {
            old: HashMap::new(),
            new: BTreeMap::new(),
        };
        for t in edge_tiles(old_size) {
            let data =
                self.store.get(&tile_key(&t)).await?.ok_or_else(|| {
                    TlogError::Inconsistent(format!("tile {} of size {old_size} is missing", t.path()))
                })?;
            reader.old.insert((t.level, t.n), (t, data));
        }
        // The stored right edge must hash to the root the state row holds.
        if old_size > 0 {
            let root = merkle::tree_hash(old_size, &reader)?;
            if Some(root) != state.root_hash {
                return Err(TlogError::Inconsistent(format!(
                    "the tiles of size {old_size} do not hash to the stored root"
                )));
            }
        }
        for (i, leaf) in leaves.iter().enumerate() {
            let index = old_size + i as u64;
            let hashes = merkle::stored_hashes_for_leaf(index, *leaf, &reader)?;
            let base = merkle::stored_hash_index(0, index);
            for (j, h) in hashes.into_iter().enumerate() {
                reader.new.insert(base + j as u64, h);
            }
        }
        let new_size = old_size + leaves.len() as u64;
        let root = merkle::tree_hash(new_size, &reader)?;
        for t in tile::new_tiles(HEIGHT, old_size, new_size) {
            let data = tile::read_tile_data(&t, &reader)?;
            // Create-only: a tile already there (an integration that died before advancing the
            // state) holds the same bytes, since its hashes are fixed by the leaves.
            self.store.put_if_absent(&tile_key(&t), Bytes::from(data)).await?;
        }
        let text = Checkpoint::new(&self.origin, new_size, root).to_text();
        let signed = tollgate_tlog::note::sign_note(&text, &[&*self.signer]).await?;
        let key = checkpoint_key(new_size);
        if self.store.put_if_absent(&key, Bytes::from(signed.clone())).await? == PutOutcome::AlreadyExists {
            let existing = self.store.get(&key).await?;
            if existing.as_deref() != Some(signed.as_bytes()) {
                return Err(TlogError::Inconsistent(format!(
                    "{key} holds a different checkpoint (a second key, or a fork): not advancing"
                )));
            }
        }
        if !self.log.tlog_advance(old_size, new_size, &root, &signed).await? {
            tracing::info!(old_size, new_size, "tlog: another integrator advanced the log first");
            return Ok(None);
        }
        Ok(Some(TlogState {
            next_index: state.next_index,
            size: new_size,
            root_hash: Some(root),
            checkpoint: Some(signed),
        }))
    }
}

/// Tiles fetched from the trail store on demand, for [`TileHashReader`] (which is sync): a
/// read that lacks tiles records them, the caller fetches them and tries again.
#[derive(Default)]
pub struct FetchedTiles {
    tiles: HashMap<Tile, Bytes>,
    missing: Mutex<Vec<Tile>>,
}

impl TileReader for FetchedTiles {
    fn height(&self) -> u8 {
        HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tollgate_tlog::Error> {
        let mut out = Vec::with_capacity(tiles.len());
        let mut missing = Vec::new();
        for t in tiles {
            match self.tiles.get(t) {
                Some(d) => out.push(d.to_vec()),
                None => missing.push(*t),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        if let Ok(mut m) = self.missing.lock() {
            m.extend(missing);
        }
        Err(tollgate_tlog::Error::Storage("tiles not fetched yet".into()))
    }
}

impl FetchedTiles {
    /// Runs `f` over the tiles authenticated against the tree (`size`, `root`), fetching what
    /// it lacks; `Err` names a missing tile or the inconsistency.
    pub async fn with<T>(
        &mut self,
        trail: &dyn ObjectStore,
        size: u64,
        root: Hash,
        f: impl Fn(&TileHashReader<'_, FetchedTiles>) -> Result<T, tollgate_tlog::Error>,
    ) -> Result<Result<T, String>, StoreError> {
        for _ in 0..16 {
            let result = f(&TileHashReader::new(size, root, &*self));
            let missing: Vec<Tile> = self
                .missing
                .lock()
                .map(|mut m| std::mem::take(&mut *m))
                .unwrap_or_default();
            match result {
                Ok(v) => return Ok(Ok(v)),
                Err(_) if !missing.is_empty() => {
                    for t in missing {
                        // The exact partial tile, else the full one (a reader may serve wider data).
                        let mut data = trail.get(&tile_key(&t)).await?;
                        if data.is_none() && !t.is_full() {
                            let full = Tile { width: 256, ..t };
                            data = trail.get(&tile_key(&full)).await?;
                        }
                        match data {
                            Some(d) => {
                                self.tiles.insert(t, d);
                            }
                            None => return Ok(Err(format!("tile log/{} is missing", t.path()))),
                        }
                    }
                }
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        Ok(Err("the tiles kept changing".into()))
    }
}

/// Whether a record's event can be proven yet.
#[derive(Debug)]
pub enum ProofOutcome {
    /// The C2SP tlog-proof text.
    Ready(String),
    /// The event is not audited (or was audited before the log existed, with no index).
    NotSequenced,
    /// Sequenced at this index, not yet in a checkpoint.
    NotIntegrated(u64),
}

/// The C2SP tlog-proof of a record's event against the latest checkpoint, read from the tiles
/// (each one authenticated against the checkpoint's root by [`TileHashReader`]).
pub async fn prove(
    log: &dyn TlogStore,
    store: &dyn ObjectStore,
    record: &StoredRecord,
) -> Result<ProofOutcome, TlogError> {
    let Some(index) = record.log_index else {
        return Ok(ProofOutcome::NotSequenced);
    };
    let state = log.tlog_state().await?;
    let (Some(root), Some(checkpoint)) = (state.root_hash, state.checkpoint) else {
        return Ok(ProofOutcome::NotIntegrated(index));
    };
    if index >= state.size {
        return Ok(ProofOutcome::NotIntegrated(index));
    }
    let mut fetched = FetchedTiles::default();
    let path = fetched
        .with(store, state.size, root, |reader| {
            merkle::prove_inclusion(index, state.size, reader)
        })
        .await?
        .map_err(TlogError::Inconsistent)?;
    Ok(ProofOutcome::Ready(
        TlogProof {
            extra: None,
            index,
            path,
            checkpoint,
        }
        .encode(),
    ))
}

/// Loads the log's Ed25519 signing key from `path` (a C2SP signer key string), creating it on
/// first start (mode 0600, create-only) under `origin`. A key whose name differs from a
/// configured origin is refused: a checkpoint's origin must be its key's name.
pub fn load_or_create_key(
    path: &std::path::Path,
    origin: Option<&str>,
    default_origin: &str,
) -> Result<tollgate_tlog::Ed25519Signer, String> {
    use std::io::Write;
    let read = |path: &std::path::Path| -> Result<tollgate_tlog::Ed25519Signer, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        tollgate_tlog::Ed25519Signer::parse(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
    };
    let signer = if path.exists() {
        read(path)?
    } else {
        let name = origin.unwrap_or(default_origin);
        let signer = tollgate_tlog::Ed25519Signer::generate(name).map_err(|e| format!("log key {name:?}: {e}"))?;
        let created = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
        };
        match created {
            Ok(mut f) => {
                writeln!(f, "{}", signer.to_signer_key_string())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                tracing::info!(file = %path.display(), vkey = %signer.verifier_key(), "first start: log signing key created");
                signer
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path)?,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    };
    if let Some(o) = origin {
        if signer.verifier_key().name() != o {
            return Err(format!(
                "TOLLGATE_LOG_ORIGIN is {o:?} but the key in {} is named {:?}: a checkpoint's origin is its key's name",
                path.display(),
                signer.verifier_key().name()
            ));
        }
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_tiles_are_the_partial_last_tile_of_each_level() {
        assert!(edge_tiles(0).is_empty());
        assert!(edge_tiles(256).iter().all(|t| t.level == 1 && t.width == 1));
        let e = edge_tiles(256 * 256 + 257);
        let shape: Vec<(u8, u64, u16)> = e.iter().map(|t| (t.level, t.n, t.width)).collect();
        assert_eq!(shape, vec![(0, 257, 1), (1, 1, 1), (2, 0, 1)]);
    }
}
