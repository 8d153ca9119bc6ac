//! `tollgate verify` (issue 15 item 5; `docs/transparency-log.md`, "Verifying the whole
//! trail"): checks the audit trail over the ports, so the same code runs against the data
//! directory (embedded mode) and against S3 and the Data API (aws mode).
//!
//! What it checks, in order:
//! 1. **Checkpoints** (`log/checkpoint/<size>`): each opens with the log's verifier key, its
//!    origin is the key's name and its size is its key's.
//! 2. **The digest chain** (`digest/v1/<sequence>`): every digest opens with the verifier key,
//!    sits at its own sequence's key, the sequence has no gap, each links to the previous one
//!    by the SHA-256 of its bytes and its signature, regular periods are contiguous up to the
//!    last one that must be digested by now, backfills are of digested periods, and the
//!    checkpoint each names is the stored one.
//! 3. **Audit objects** (`audit/v1/`): every listed object exists and has the listed SHA-256
//!    (of its uncompressed NDJSON) and event count; every object is listed exactly once
//!    (objects of periods not digested yet are pending, mapped to their indexes through the
//!    request log).
//! 4. **The Merkle log**: the RFC 6962 tree recomputed from the events (leaf = each line, at the
//!    index its digest gives it) must have each checkpoint's root at its size (which also proves
//!    every two checkpoints consistent), every stored tile must hold the recomputed hashes, the
//!    tiles each integration writes must exist, and an auditor's own earlier checkpoint must be
//!    in the log (not larger than it: truncation; not another root: a fork).
//! 5. **The request log**: every sequenced row agrees with the line at its index (request id,
//!    audit key, leaf hash) and every event in the log has its row.
//!
//! A bounded run (`from`/`to`) checks the whole chain but only the objects of the periods in
//! range; their leaves are checked against the stored tiles authenticated against the newest
//! checkpoint (not recomputed from every event), and each checkpoint's root against the same
//! tiles (consistency with the newest). See [`Options`].

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tollgate_core::audit;
use tollgate_core::digest::{self, Digest, Kind, ObjectEntry};
use tollgate_core::ports::{LogError, ObjectStore, RequestLog, StoreError, TlogStore};
use tollgate_core::translog::{self, FetchedTiles};
use tollgate_tlog::merkle::{self, Hash, HashReader, MemoryTree};
use tollgate_tlog::note::{open_note, parse_unverified};
use tollgate_tlog::tile::{self, Tile, TileHashReader};
use tollgate_tlog::{Checkpoint, VerifierKey, Verifiers};

/// Rows read from the request log per call.
const ROW_PAGE: usize = 10_000;
/// Unlisted objects looked up in the request log per call.
const KEYS_PER_LOOKUP: usize = 200;
/// Findings of one kind reported one by one; past that they are summed up in one line (a
/// rewritten object can disagree with thousands of rows).
const MAX_FINDINGS_PER_CODE: usize = 200;

/// Where the trail is read from.
#[derive(Clone)]
pub struct Sources {
    /// The audit objects (`audit/v1/`).
    pub audit: Arc<dyn ObjectStore>,
    /// The trail store: `log/` (tiles, checkpoints) and `digest/v1/`.
    pub trail: Arc<dyn ObjectStore>,
    /// The request log's sequenced rows.
    pub tlog: Arc<dyn TlogStore>,
    /// The request log's records (whether an unlisted object's events await their marking).
    pub log: Arc<dyn RequestLog>,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct Options {
    /// The log's verifier key: checkpoints and digests must be signed by it.
    pub verifier: VerifierKey,
    /// Check only the periods ending after this (a bounded run).
    pub from: Option<OffsetDateTime>,
    /// Check only the periods starting before this (a bounded run).
    pub to: Option<OffsetDateTime>,
    /// A signed checkpoint the auditor kept from an earlier look at the log.
    pub auditor_checkpoint: Option<Vec<u8>>,
    /// The time of the check: periods that ended `settle` before it must have their digest.
    pub now: OffsetDateTime,
    /// How long after a period ends its digest must exist: the digester's grace plus its
    /// timer's interval (`TOLLGATE_DIGEST_GRACE_MS` + up to a minute).
    pub settle: Duration,
    /// The period when no digest says it yet (`TOLLGATE_DIGEST_PERIOD_MS`).
    pub period: Duration,
    /// Objects read and hashed at once.
    pub concurrency: usize,
}

impl Options {
    fn bounded(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    fn in_range(&self, start: OffsetDateTime, end: OffsetDateTime) -> bool {
        self.from.is_none_or(|f| end > f) && self.to.is_none_or(|t| start < t)
    }
}

/// One thing found wrong: what (a stable code) and where (a key, a sequence, an index, a
/// request id), in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable, snake_case: `object_hash`, `digest_missing`, `checkpoint_root`, ...
    pub code: &'static str,
    /// Where: an object or digest key, `index <n>`, `request <id>`.
    pub at: String,
    /// What is wrong, in a sentence.
    pub detail: String,
}

/// Checked and valid counts of one kind of thing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Looked at.
    pub checked: u64,
    /// Found valid.
    pub valid: u64,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.checked += 1;
        self.valid += u64::from(ok);
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The log's origin (the verifier key's name).
    pub origin: String,
    /// The range asked for (RFC 3339), if bounded.
    pub requested: (Option<String>, Option<String>),
    /// The first and last period of the digests found in range.
    pub found: Option<(String, String)>,
    /// Signed digests.
    pub digests: Tally,
    /// Audit objects.
    pub objects: Tally,
    /// Events (lines of the objects checked that are in a checkpoint).
    pub events: Tally,
    /// Signed checkpoints.
    pub checkpoints: Tally,
    /// Stored tiles compared with the recomputed tree (unbounded runs).
    pub tiles: Tally,
    /// Sequenced rows of the request log.
    pub rows: Tally,
    /// The newest checkpoint's size: the events checked are those below it.
    pub tree_size: u64,
    /// Objects of periods not digested yet (checked, listed later).
    pub pending_objects: u64,
    /// Everything found wrong; empty means the trail verified.
    pub findings: Vec<Finding>,
    /// Seconds each phase took (checkpoints, digests, objects, tree, rows), for the benchmark.
    pub phase_seconds: Vec<(&'static str, f64)>,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The findings with this code.
    pub fn with_code(&self, code: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.code == code).collect()
    }

    /// The report as text, in the style of `aws cloudtrail validate-logs`: the range, the
    /// counts, then one line per finding.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let any = |t: &Option<String>| t.clone().unwrap_or_else(|| "*".into());
        let _ = writeln!(
            s,
            "Validating the audit trail of {} between {} and {}",
            self.origin,
            any(&self.requested.0),
            any(&self.requested.1)
        );
        match &self.found {
            Some((a, b)) => {
                let _ = writeln!(s, "Results found for {a} to {b}:");
            }
            None => s.push_str("Results found: no digest in range\n"),
        }
        for (tally, what) in [
            (self.digests, "digests"),
            (self.objects, "audit objects"),
            (self.events, "events"),
            (self.checkpoints, "checkpoints"),
            (self.tiles, "tiles"),
            (self.rows, "request log rows"),
        ] {
            let _ = writeln!(s, "{}/{} {what} valid", tally.valid, tally.checked);
        }
        let _ = writeln!(
            s,
            "log size {} (newest checkpoint); {} object(s) of periods not digested yet",
            self.tree_size, self.pending_objects
        );
        for f in &self.findings {
            let _ = writeln!(s, "INVALID {} {}: {}", f.code, f.at, f.detail);
        }
        let _ = writeln!(
            s,
            "{}",
            if self.ok() {
                "OK: no findings".to_string()
            } else {
                format!("FAILED: {} finding(s)", self.findings.len())
            }
        );
        s
    }

    fn find(&mut self, code: &'static str, at: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            code,
            at: at.into(),
            detail: detail.into(),
        });
    }
}

/// Progress of a long run (a progress bar in the CLI).
pub trait Progress: Send + Sync {
    /// A phase starts with `total` steps.
    fn start(&self, phase: &str, total: u64);
    /// `n` more steps are done.
    fn advance(&self, n: u64);
    /// The phase is over.
    fn finish(&self);
}

/// No progress shown.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Why a run could not check the trail (as opposed to finding something wrong in it).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An internal task failed.
    #[error("verify: {0}")]
    Task(String),
}

/// An index of the log, as the events place it.
#[derive(Clone, Copy)]
struct Slot {
    leaf: Hash,
    /// Fingerprint of the line's request id (SipHash: a collision only hides a mismatch that
    /// the leaf hash comparison catches anyway, since the line holds the request id).
    id: u64,
    object: u32,
    line: u32,
    flags: u8,
}

const SET: u8 = 1;
/// The object holding it failed its own check: row disagreements are not reported one by one.
const DAMAGED: u8 = 2;
const HAS_ROW: u8 = 4;
/// Something was found wrong at this index.
const BAD: u8 = 8;
/// Filled from the stored tiles: no event holds this index.
const FROM_TILES: u8 = 16;
/// The index of a listed object that is missing (its finding names it already).
const MISSING: u8 = 32;

const EMPTY: Slot = Slot {
    leaf: [0; 32],
    id: 0,
    object: u32::MAX,
    line: 0,
    flags: 0,
};

/// The indexes being checked: `[base, base + slots.len())`.
struct Table {
    base: u64,
    slots: Vec<Slot>,
}

impl Table {
    fn get_mut(&mut self, index: u64) -> Option<&mut Slot> {
        let i = usize::try_from(index.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }
}

/// What reading one object gave.
struct ObjectRead {
    sha256: [u8; 32],
    /// Per line: leaf hash, request-id fingerprint, request id (kept only when asked).
    lines: Vec<(Hash, u64, Option<String>)>,
}

fn fingerprint(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id)
}

/// The request id of an event line (a borrowed parse: only the field is copied when kept).
fn request_id_of(line: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        request_id: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Head<'_>>(line).ok().map(|h| h.request_id)
}

/// Decodes and hashes one object: SHA-256 of the uncompressed content, and per line its RFC
/// 6962 leaf hash and request id. CPU only (run on a blocking thread).
fn read_object(object: &[u8], keep_ids: bool) -> Result<ObjectRead, String> {
    thread_local! {
        // One decompression buffer per blocking thread, reused: a fresh megabyte per object
        // showed up as page faults (system time) over a million events.
        static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    TEXT.with(|buf| {
        let mut text = buf.borrow_mut();
        text.clear();
        let out = read_object_into(object, keep_ids, &mut text);
        // Keep at most a few objects' worth between calls.
        if text.capacity() > 16 << 20 {
            *text = Vec::new();
        }
        out
    })
}

fn read_object_into(object: &[u8], keep_ids: bool, text: &mut Vec<u8>) -> Result<ObjectRead, String> {
    flate2::read::GzDecoder::new(object)
        .take(audit::MAX_OBJECT_BYTES + 1)
        .read_to_end(text)
        .map_err(|e| format!("not gzip: {e}"))?;
    if text.len() as u64 > audit::MAX_OBJECT_BYTES {
        return Err(format!("larger than {} bytes uncompressed", audit::MAX_OBJECT_BYTES));
    }
    let sha256: [u8; 32] = Sha256::digest(&text[..]).into();
    let body = text.strip_suffix(b"\n").unwrap_or(&text[..]);
    let mut hasher = merkle::Hasher::new();
    let mut lines = Vec::with_capacity(body.len() / 512 + 1);
    if !body.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            let leaf = hasher.leaf(line);
            let id = request_id_of(line);
            let fp = id.as_deref().map_or(0, fingerprint);
            lines.push((leaf, fp, if keep_ids { id.map(|i| i.into_owned()) } else { None }));
        }
    }
    Ok(ObjectRead { sha256, lines })
}

/// A listed object: the digest that lists it and its entry.
struct Listed {
    sequence: u64,
    entry: ObjectEntry,
    in_range: bool,
}

/// RFC 3339, with a fraction only when there is one (period bounds are whole seconds).
fn time_text(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| tollgate_core::clock::format(t))
}

/// Verifies the trail; see the crate documentation for what is checked.
pub async fn verify(src: &Sources, opt: &Options, progress: &dyn Progress) -> Result<Report, VerifyError> {
    let origin = opt.verifier.name().to_string();
    let verifiers = Verifiers::new(vec![opt.verifier.clone()]);
    let t = time_text;
    let mut r = Report {
        origin: origin.clone(),
        requested: (opt.from.map(t), opt.to.map(t)),
        ..Report::default()
    };

    let mut clock = std::time::Instant::now();
    let mut lap = |r: &mut Report, phase: &'static str| {
        r.phase_seconds.push((phase, clock.elapsed().as_secs_f64()));
        clock = std::time::Instant::now();
    };
    // 1. Checkpoints first: the newest one bounds what must exist (anything written after
    //    this listing is newer than it, so a live log causes no false alarm).
    let checkpoints = load_checkpoints(src, &verifiers, &origin, &mut r, progress).await?;
    let (top_size, top_root) = checkpoints
        .last_key_value()
        .map(|(s, c)| (*s, c.root))
        .unwrap_or((0, merkle::EMPTY_ROOT));
    r.tree_size = top_size;
    let state = src.tlog.tlog_state().await?;
    // The request log's rows below the newest checkpoint, read while the objects are.
    let prefetch = (!opt.bounded()).then(|| tokio::spawn(fetch_rows(src.tlog.clone(), 0, top_size)));

    lap(&mut r, "checkpoints");
    // 2. The digest chain.
    let chain = walk_chain(src, opt, &verifiers, &origin, &checkpoints, &mut r, progress).await?;
    lap(&mut r, "digests");

    // 3. The objects: the listed ones in range and every stored one in range.
    let step = chain.step.unwrap_or(opt.period);
    let step_t = time::Duration::try_from(step).unwrap_or(time::Duration::HOUR);
    let stored: Vec<String> = match (opt.bounded(), &chain.found) {
        (false, _) => src.audit.list(audit::KEY_PREFIX).await?,
        (true, _) => {
            let from = digest::period_start(opt.from.unwrap_or(OffsetDateTime::UNIX_EPOCH), step);
            let to = opt.to.unwrap_or(opt.now);
            let to = digest::period_start(to, step) + step_t;
            digest::objects_in(&*src.audit, from, to).await?
        }
    };
    let stored_set: HashSet<&str> = stored.iter().map(String::as_str).collect();
    let closed_before = opt.now - time::Duration::try_from(opt.settle).unwrap_or(time::Duration::ZERO);
    let mut keys: Vec<String> = Vec::new();
    let mut unlisted: Vec<String> = Vec::new();
    let mut closed_unlisted: Vec<(String, OffsetDateTime)> = Vec::new();
    for (key, l) in &chain.listed {
        if l.in_range {
            keys.push(key.clone());
            if !stored_set.contains(key.as_str()) {
                r.find(
                    "object_missing",
                    key.clone(),
                    format!("listed in digest {} but not in the store (deleted)", l.sequence),
                );
            }
        }
    }
    for key in &stored {
        if chain.listed.contains_key(key) {
            continue;
        }
        match digest::object_time(key) {
            None => {
                r.objects.add(false);
                r.find(
                    "object_unexpected",
                    key.clone(),
                    "a file under audit/v1/ whose name is not an audit object's (planted)",
                );
                continue;
            }
            Some(at) if digest::period_start(at, step) + step_t <= closed_before => {
                closed_unlisted.push((key.clone(), digest::period_start(at, step)));
            }
            Some(_) => r.pending_objects += 1,
        }
        keys.push(key.clone());
        unlisted.push(key.clone());
    }
    keys.sort();
    // Objects no digest places: their lines' indexes come from the request log.
    let mut row_index: HashMap<(String, String), u64> = HashMap::new();
    for chunk in unlisted.chunks(KEYS_PER_LOOKUP) {
        for (key, id, index) in src.tlog.tlog_object_rows(chunk).await? {
            if let Some(i) = index {
                row_index.insert((key, id), i);
            }
        }
    }
    let unlisted: HashSet<String> = unlisted.into_iter().collect();
    // An unlisted object of a closed period is planted, or its digest was deleted, unless
    // its events all await their marking (its writer died between the put and the marking:
    // the digester defers it until the reconciler's re-drive marks it).
    let marked: HashSet<&str> = row_index.keys().map(|(k, _)| k.as_str()).collect();
    for (key, period) in closed_unlisted {
        if !marked.contains(key.as_str()) && awaits_marking(src, &key).await? {
            r.pending_objects += 1;
            continue;
        }
        r.find(
            "object_unlisted",
            key,
            format!(
                "its period ({}) is closed but no digest lists it (planted, or its digest was deleted)",
                t(period)
            ),
        );
    }

    // The indexes checked: everything below the newest checkpoint, or in a bounded run the
    // span of the objects in range.
    let (base, end) = if opt.bounded() {
        let idx = chain
            .listed
            .values()
            .filter(|l| l.in_range)
            .flat_map(|l| l.entry.indexes.iter().map(|&(a, n)| (a, a.saturating_add(n))))
            .chain(row_index.values().map(|&i| (i, i + 1)));
        let (lo, hi) = idx.fold((u64::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
        if lo >= hi {
            (0, 0)
        } else {
            (lo.min(top_size), hi.min(top_size))
        }
    } else {
        (0, top_size)
    };
    let mut table = Table {
        base,
        slots: vec![EMPTY; usize::try_from(end - base).map_err(|e| VerifyError::Task(e.to_string()))?],
    };

    read_objects(
        src,
        opt,
        &keys,
        &chain.listed,
        &unlisted,
        &row_index,
        &state,
        &mut table,
        &mut r,
        progress,
    )
    .await?;
    lap(&mut r, "objects");

    // 4. The tree.
    let mut log = PublishedLog {
        trail: &*src.trail,
        checkpoints: &checkpoints,
        top_size,
        top_root,
        tiles: FetchedTiles::default(),
    };
    if opt.bounded() {
        check_bounded_tree(&mut log, &mut table, &keys, &mut r).await?;
    } else {
        check_tree(&mut log, &mut table, &mut r).await?;
    }
    check_auditor_checkpoint(&mut log, opt, &verifiers, &mut r).await?;

    lap(&mut r, "tree");

    // 5. The request log.
    let rows = match prefetch {
        Some(task) => task.await.map_err(|e| VerifyError::Task(e.to_string()))??,
        None => fetch_rows(src.tlog.clone(), table.base, table.base + table.slots.len() as u64).await?,
    };
    check_rows(src, opt.bounded(), &state, &mut table, &keys, rows, &mut r, progress).await?;
    lap(&mut r, "rows");

    // Events: the lines at the indexes checked.
    for s in &table.slots {
        if s.flags & SET != 0 {
            r.events.add(s.flags & (BAD | DAMAGED) == 0);
        }
    }
    r.found = chain.found.map(|(a, b)| (t(a), t(b)));
    cap_findings(&mut r);
    Ok(r)
}

/// Whether every event of an object is a request log row not yet marked audited.
async fn awaits_marking(src: &Sources, key: &str) -> Result<bool, VerifyError> {
    let Some(bytes) = src.audit.get(key).await? else {
        return Ok(false);
    };
    let Ok(read) = read_object(&bytes, true) else {
        return Ok(false);
    };
    if read.lines.is_empty() {
        return Ok(false);
    }
    for (_, _, id) in read.lines {
        let Some(id) = id else { return Ok(false) };
        match src.log.get(&id).await? {
            Some(row) if row.audit_key.is_none() => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Sums up findings past [`MAX_FINDINGS_PER_CODE`] of one code in one line.
fn cap_findings(r: &mut Report) {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    let mut kept = Vec::with_capacity(r.findings.len());
    for f in std::mem::take(&mut r.findings) {
        let n = seen.entry(f.code).or_default();
        *n += 1;
        if *n <= MAX_FINDINGS_PER_CODE {
            kept.push(f);
        }
    }
    let mut over: Vec<(&'static str, usize)> = seen.into_iter().filter(|(_, n)| *n > MAX_FINDINGS_PER_CODE).collect();
    over.sort();
    for (code, n) in over {
        kept.push(Finding {
            code,
            at: "(more)".into(),
            detail: format!("{} more {code} findings not shown", n - MAX_FINDINGS_PER_CODE),
        });
    }
    r.findings = kept;
}

async fn load_checkpoints(
    src: &Sources,
    verifiers: &Verifiers,
    origin: &str,
    r: &mut Report,
    progress: &dyn Progress,
) -> Result<BTreeMap<u64, Checkpoint>, VerifyError> {
    let prefix = format!("{}checkpoint/", translog::PREFIX);
    let keys = src.trail.list(&prefix).await?;
    progress.start("checkpoints", keys.len() as u64);
    let log_key = format!("the log key {origin}");
    let mut out = BTreeMap::new();
    for key in keys {
        progress.advance(1);
        let Some(size) = key
            .strip_prefix(&prefix)
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| translog::checkpoint_key(*s) == key)
        else {
            r.checkpoints.add(false);
            r.find(
                "checkpoint_unexpected",
                key,
                "a file under log/checkpoint/ that is not a checkpoint",
            );
            continue;
        };
        let Some(bytes) = src.trail.get(&key).await? else {
            continue;
        };
        let Some(c) = open_checkpoint(&bytes, verifiers, &log_key, "checkpoint_signature", &key, r) else {
            r.checkpoints.add(false);
            continue;
        };
        if c.origin != origin || c.size != size {
            r.checkpoints.add(false);
            r.find(
                "checkpoint_misplaced",
                key,
                format!("holds the checkpoint of {} at size {}", c.origin, c.size),
            );
            continue;
        }
        out.insert(size, c);
    }
    progress.finish();
    Ok(out)
}

/// Opens a checkpoint signed by the log's key; when it does not verify, a finding `code` at
/// `at` saying so (naming the key as `log_key`), and `None`.
fn open_checkpoint(
    bytes: &[u8],
    verifiers: &Verifiers,
    log_key: &str,
    code: &'static str,
    at: &str,
    r: &mut Report,
) -> Option<Checkpoint> {
    match Checkpoint::open(bytes, verifiers) {
        Ok(c) => Some(c),
        Err(e) => {
            r.find(code, at, format!("does not verify with {log_key}: {e}"));
            None
        }
    }
}

/// What the chain walk found.
struct Chain {
    listed: BTreeMap<String, Listed>,
    step: Option<Duration>,
    found: Option<(OffsetDateTime, OffsetDateTime)>,
}

async fn walk_chain(
    src: &Sources,
    opt: &Options,
    verifiers: &Verifiers,
    origin: &str,
    checkpoints: &BTreeMap<u64, Checkpoint>,
    r: &mut Report,
    progress: &dyn Progress,
) -> Result<Chain, VerifyError> {
    let t = time_text;
    let keys = src.trail.list(digest::PREFIX).await?;
    progress.start("digests", keys.len() as u64);
    let mut chain = Chain {
        listed: BTreeMap::new(),
        step: None,
        found: None,
    };
    let mut expected = 0u64;
    let mut prev: Option<(u64, Bytes)> = None;
    let mut last_end: Option<OffsetDateTime> = None;
    let mut digested: HashSet<OffsetDateTime> = HashSet::new();
    for key in keys {
        progress.advance(1);
        let Some(seq) = digest::sequence_of(&key) else {
            r.digests.add(false);
            r.find("digest_unexpected", key, "a file under digest/v1/ that is not a digest");
            continue;
        };
        let Some(bytes) = src.trail.get(&key).await? else {
            continue;
        };
        if seq > expected {
            let at = if seq == expected + 1 {
                digest::key(expected)
            } else {
                format!("{} .. {}", digest::key(expected), digest::key(seq - 1))
            };
            r.find(
                "digest_missing",
                at,
                format!(
                    "digest(s) {expected} to {} are missing: the chain has a hole (deleted)",
                    seq - 1
                ),
            );
        }
        expected = seq + 1;
        let mut valid = true;
        let text = match open_note(&bytes, verifiers) {
            Ok(n) => n.text,
            Err(e) => {
                valid = false;
                r.find(
                    "digest_signature",
                    key.clone(),
                    format!("digest {seq} does not verify with the log key {origin} ({e}): modified, or signed by another key"),
                );
                match parse_unverified(&bytes) {
                    Ok(n) => n.text,
                    Err(_) => {
                        r.digests.add(false);
                        prev = Some((seq, bytes));
                        continue;
                    }
                }
            }
        };
        let d = match Digest::parse_body(&text) {
            Ok(d) => d,
            Err(e) => {
                r.digests.add(false);
                r.find("digest_malformed", key, format!("digest {seq}: {e}"));
                prev = Some((seq, bytes));
                continue;
            }
        };
        if d.sequence != seq {
            valid = false;
            r.find(
                "digest_misplaced",
                key.clone(),
                format!(
                    "holds digest {} (period {}): replaced by another digest",
                    d.sequence,
                    t(d.start)
                ),
            );
        }
        if d.origin != origin {
            valid = false;
            r.find("digest_origin", key.clone(), format!("made for the log {}", d.origin));
        }
        // The link to the previous digest.
        match (&d.previous, &prev) {
            (None, _) if seq == 0 => {}
            (Some(_), _) if seq == 0 => {
                valid = false;
                r.find("digest_link", key.clone(), "digest 0 links to a previous digest");
            }
            (None, _) => {
                valid = false;
                r.find(
                    "digest_link",
                    key.clone(),
                    format!("digest {seq} has no link to digest {}", seq - 1),
                );
            }
            (Some(link), Some((p, pbytes))) if *p + 1 == seq => {
                let sha: [u8; 32] = Sha256::digest(pbytes).into();
                let sig = digest::signature_of(pbytes, origin).ok();
                if link.sha256 != sha || sig.as_deref() != Some(link.signature.as_str()) {
                    valid = false;
                    r.find(
                        "digest_link",
                        key.clone(),
                        format!(
                            "digest {seq}'s link does not match the SHA-256 and signature of {} (that one was changed or replaced)",
                            digest::key(seq - 1)
                        ),
                    );
                }
            }
            // The previous digest is missing: its hole is a finding already.
            (Some(_), _) => {}
        }
        // Periods.
        let len = (d.end - d.start).unsigned_abs();
        match chain.step {
            None => chain.step = Some(len),
            Some(s) if s != len => {
                valid = false;
                r.find(
                    "digest_period",
                    key.clone(),
                    format!("its period is {len:?} long, the chain's are {s:?}"),
                );
            }
            Some(_) => {}
        }
        match d.kind {
            Kind::Period => {
                if let Some(end) = last_end {
                    if d.start > end {
                        r.find(
                            "period_missing",
                            format!("periods {} .. {}", t(end), t(d.start)),
                            format!("no digest for the periods from {} to {} (deleted)", t(end), t(d.start)),
                        );
                    } else if d.start < end {
                        valid = false;
                        r.find(
                            "period_repeated",
                            key.clone(),
                            format!("period {} is digested again, or out of order", t(d.start)),
                        );
                    }
                }
                last_end = Some(last_end.map_or(d.end, |e| e.max(d.end)));
                digested.insert(d.start);
            }
            Kind::Backfill => {
                if !digested.contains(&d.start) {
                    valid = false;
                    r.find(
                        "digest_backfill",
                        key.clone(),
                        format!(
                            "a backfill of period {}, which has no period digest before it",
                            t(d.start)
                        ),
                    );
                }
            }
        }
        // The checkpoint it names is the stored one.
        if let (size, Some(root)) = d.checkpoint {
            match checkpoints.get(&size) {
                Some(c) if c.root == root => {}
                Some(_) => {
                    valid = false;
                    r.find(
                        "checkpoint_fork",
                        translog::checkpoint_key(size),
                        format!("digest {seq} names another root for size {size} than the stored checkpoint: two different checkpoints of one size (a fork)"),
                    );
                }
                None => {
                    valid = false;
                    r.find(
                        "checkpoint_missing",
                        translog::checkpoint_key(size),
                        format!(
                            "digest {seq} names the checkpoint of size {size}, which is not in the store (deleted)"
                        ),
                    );
                }
            }
        }
        let in_range = opt.in_range(d.start, d.end);
        if in_range {
            chain.found = Some(match chain.found {
                None => (d.start, d.end),
                Some((a, b)) => (a.min(d.start), b.max(d.end)),
            });
        }
        for o in d.objects {
            if digest::object_time(&o.key).is_none_or(|at| at < d.start || at >= d.end) {
                valid = false;
                r.find(
                    "object_period",
                    o.key.clone(),
                    format!("listed in digest {seq}, but its name's time is not in that period"),
                );
            }
            if let Some(first) = chain.listed.get(&o.key) {
                valid = false;
                r.find(
                    "object_listed_twice",
                    o.key.clone(),
                    format!("listed in digests {} and {seq}", first.sequence),
                );
                continue;
            }
            chain.listed.insert(
                o.key.clone(),
                Listed {
                    sequence: seq,
                    entry: o,
                    in_range,
                },
            );
        }
        r.digests.add(valid);
        prev = Some((seq, bytes));
    }
    progress.finish();
    // Every period closed by now must have its digest.
    if let (Some(end), Some(step)) = (last_end, chain.step) {
        let closed = opt.now - time::Duration::try_from(opt.settle).unwrap_or(time::Duration::ZERO);
        let due = digest::period_start(closed, step);
        if end < due {
            r.find(
                "period_missing",
                format!("periods {} .. {}", t(end), t(due)),
                format!(
                    "no digest for the periods from {} to {}, closed by now (the newest digests deleted, or the digester is not running)",
                    t(end),
                    t(due)
                ),
            );
        }
    }
    Ok(chain)
}

#[allow(clippy::too_many_arguments)]
async fn read_objects(
    src: &Sources,
    opt: &Options,
    keys: &[String],
    listed: &BTreeMap<String, Listed>,
    unlisted: &HashSet<String>,
    row_index: &HashMap<(String, String), u64>,
    state: &tollgate_core::model::TlogState,
    table: &mut Table,
    r: &mut Report,
    progress: &dyn Progress,
) -> Result<(), VerifyError> {
    progress.start("objects", keys.len() as u64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let concurrency = opt.concurrency.max(1);
    let mut results: Vec<Option<Result<Option<ObjectRead>, String>>> = Vec::new();
    results.resize_with(keys.len(), || None);
    let mut done = 0usize;
    // Objects are read and hashed `concurrency` at a time; results are applied in key order.
    let mut applied = 0usize;
    while done < keys.len() {
        while next < keys.len() && tasks.len() < concurrency {
            let (store, key, i) = (src.audit.clone(), keys[next].clone(), next);
            let keep_ids = unlisted.contains(&key);
            tasks.spawn(async move {
                let got = store.get(&key).await;
                let out = match got {
                    Err(e) => Err(Err(e)),
                    Ok(None) => Ok(Ok(None)),
                    Ok(Some(bytes)) => tokio::task::spawn_blocking(move || read_object(&bytes, keep_ids).map(Some))
                        .await
                        .map_err(|e| Ok(e.to_string())),
                };
                (i, out)
            });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (i, out) = joined.map_err(|e| VerifyError::Task(e.to_string()))?;
        let res = match out {
            Ok(v) => v,
            Err(Err(e)) => return Err(e.into()),
            Err(Ok(e)) => return Err(VerifyError::Task(e)),
        };
        results[i] = Some(res);
        done += 1;
        progress.advance(1);
        while applied < keys.len() {
            let Some(res) = results[applied].take() else { break };
            apply_object(&keys[applied], applied as u32, res, listed, row_index, state, table, r);
            applied += 1;
        }
    }
    progress.finish();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply_object(
    key: &str,
    object: u32,
    res: Result<Option<ObjectRead>, String>,
    listed: &BTreeMap<String, Listed>,
    row_index: &HashMap<(String, String), u64>,
    state: &tollgate_core::model::TlogState,
    table: &mut Table,
    r: &mut Report,
) {
    let entry = listed.get(key).map(|l| &l.entry);
    let read = match res {
        Ok(Some(read)) => read,
        Ok(None) => {
            // Listed and gone: its "object_missing" finding was made from the listing.
            r.objects.add(false);
            if let Some(e) = entry {
                for i in e.line_indexes() {
                    if let Some(s) = table.get_mut(i) {
                        s.flags |= MISSING;
                    }
                }
            }
            return;
        }
        Err(reason) => {
            r.objects.add(false);
            r.find("object_unreadable", key, reason);
            // Its indexes are named by this finding: no separate "event_missing" for them.
            if let Some(e) = entry {
                for i in e.line_indexes() {
                    if let Some(s) = table.get_mut(i) {
                        s.flags |= MISSING;
                    }
                }
            }
            return;
        }
    };
    let mut ok = true;
    let indexes: Vec<Option<u64>> = match entry {
        Some(e) => {
            if read.sha256 != e.sha256 {
                ok = false;
                r.find(
                    "object_hash",
                    key,
                    "the SHA-256 of its content is not the one its digest lists (changed or replaced)",
                );
            }
            if read.lines.len() as u64 != e.events {
                ok = false;
                r.find(
                    "object_events",
                    key,
                    format!("holds {} events, its digest lists {}", read.lines.len(), e.events),
                );
            }
            let mut idx: Vec<Option<u64>> = e.line_indexes().map(Some).collect();
            idx.resize(read.lines.len(), None);
            idx
        }
        None => read
            .lines
            .iter()
            .map(|(_, _, id)| {
                id.as_ref()
                    .and_then(|id| row_index.get(&(key.to_string(), id.clone())).copied())
            })
            .collect(),
    };
    r.objects.add(ok);
    for (line, ((leaf, id, _), index)) in read.lines.iter().zip(indexes).enumerate() {
        let Some(index) = index else {
            continue;
        };
        if index >= state.next_index.max(r.tree_size) {
            r.find(
                "index_out_of_log",
                format!("{key} line {}", line + 1),
                format!("placed at index {index}, past every index the sequencer handed out"),
            );
            continue;
        }
        let Some(slot) = table.get_mut(index) else {
            // Above the newest checkpoint (not in the log yet), or outside a bounded run.
            continue;
        };
        if slot.flags & SET != 0 {
            slot.flags |= BAD;
            let at = format!("index {index}");
            r.find(
                "index_twice",
                at,
                format!("both object #{} and {key} line {} claim it", slot.object, line + 1),
            );
            continue;
        }
        *slot = Slot {
            leaf: *leaf,
            id: *id,
            object,
            line: line as u32,
            flags: SET | if ok { 0 } else { DAMAGED },
        };
    }
}

/// The log as the tree checks read it: the trail store, the checkpoints that verified, and the
/// tiles authenticated against the newest one (fetched once, shared by the checks).
struct PublishedLog<'a> {
    trail: &'a dyn ObjectStore,
    checkpoints: &'a BTreeMap<u64, Checkpoint>,
    top_size: u64,
    top_root: Hash,
    tiles: FetchedTiles,
}

impl PublishedLog<'_> {
    /// Runs `f` over the stored tiles authenticated against the newest checkpoint; `Err`
    /// inside names a missing tile or the inconsistency.
    async fn read<T>(
        &mut self,
        f: impl Fn(&TileHashReader<'_, FetchedTiles>) -> Result<T, tollgate_tlog::Error>,
    ) -> Result<Result<T, String>, StoreError> {
        self.tiles.with(self.trail, self.top_size, self.top_root, f).await
    }
}

/// The unbounded tree check: recompute the tree from the events, compare every checkpoint's
/// root and every stored tile, and find missing tiles.
async fn check_tree(log: &mut PublishedLog<'_>, table: &mut Table, r: &mut Report) -> Result<(), VerifyError> {
    let (checkpoints, top_size) = (log.checkpoints, log.top_size);
    // Holes (indexes no event holds) are reported, then filled from the stored tiles
    // authenticated against the newest checkpoint, so the rest of the log is still checked.
    let holes: Vec<u64> = (0..table.slots.len() as u64)
        .filter(|&i| table.slots[i as usize].flags & SET == 0)
        .collect();
    let mut filled = true;
    if !holes.is_empty() {
        report_ranges(&holes, table, r);
        let stored: Vec<u64> = holes.iter().map(|&i| merkle::stored_hash_index(0, i)).collect();
        match log.read(|reader| reader.read_hashes(&stored)).await? {
            Ok(hashes) => {
                for (&i, h) in holes.iter().zip(hashes) {
                    let s = &mut table.slots[i as usize];
                    s.leaf = h;
                    s.flags |= FROM_TILES;
                }
            }
            Err(e) => {
                filled = false;
                r.find(
                    "tiles_inconsistent",
                    format!("log/checkpoint/{top_size}"),
                    format!("the missing events cannot be filled in from the tiles ({e}): checkpoints past index {} are not checked", holes[0]),
                );
            }
        }
    }
    let size = if filled { table.slots.len() } else { holes[0] as usize };
    let mut tree = MemoryTree::with_capacity(size);
    for s in &table.slots[..size] {
        tree.append_hash(s.leaf);
    }
    for (&n, c) in checkpoints {
        if n > size as u64 {
            r.checkpoints.add(false);
            continue;
        }
        let root = tree.root(n).unwrap_or(merkle::EMPTY_ROOT);
        let ok = root == c.root;
        r.checkpoints.add(ok);
        if !ok {
            r.find(
                "checkpoint_root",
                translog::checkpoint_key(n),
                format!("its root is not the root of the log's first {n} events: a second, different checkpoint of size {n} (a fork), or rewritten events"),
            );
        }
    }
    // Tiles: every stored one holds the recomputed hashes; every one an integration wrote exists.
    let stored = log.trail.list(&format!("{}tile/", translog::PREFIX)).await?;
    let mut present: HashSet<Tile> = HashSet::new();
    for key in stored {
        let path = key.strip_prefix(translog::PREFIX).unwrap_or(&key);
        if path.starts_with("tile/entries/") {
            continue;
        }
        let Ok(t) = Tile::parse_path(path, translog::HEIGHT) else {
            r.tiles.add(false);
            r.find("tile_unexpected", key, "a file under log/tile/ that is not a tile");
            continue;
        };
        present.insert(t);
        let (start, full_end) = t.entry_range();
        let span = (full_end - start) / 256;
        if start + span * u64::from(t.width) > tree.size() {
            continue; // past the checked tree (newer than the newest checkpoint)
        }
        let Some(data) = log.trail.get(&key).await? else {
            continue;
        };
        let ok = tile::read_tile_data(&t, &tree).is_ok_and(|want| want == data.as_ref());
        r.tiles.add(ok);
        if !ok {
            r.find(
                "tile_mismatch",
                key,
                "does not hold the hashes of the tree recomputed from the events",
            );
        }
    }
    let mut prev = 0u64;
    for &n in checkpoints.keys() {
        if n > tree.size() {
            break;
        }
        for t in tile::new_tiles(translog::HEIGHT, prev, n) {
            if !present.contains(&t) {
                r.tiles.add(false);
                r.find(
                    "tile_missing",
                    format!("log/{}", t.path()),
                    format!("written when the log grew from {prev} to {n} entries, now gone"),
                );
            }
        }
        prev = n;
    }
    Ok(())
}

/// Reports indexes no event holds (merged into ranges); those of missing listed objects are
/// named by their object's finding already.
fn report_ranges(holes: &[u64], table: &mut Table, r: &mut Report) {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &i in holes {
        let s = &mut table.slots[i as usize];
        s.flags |= BAD;
        if s.flags & MISSING != 0 {
            continue;
        }
        let at = table.base + i;
        match runs.last_mut() {
            Some((a, n)) if *a + *n == at => *n += 1,
            _ => runs.push((at, 1)),
        }
    }
    for (a, n) in runs {
        r.find(
            "event_missing",
            format!(
                "index {a}{}",
                if n > 1 {
                    format!(" .. {}", a + n - 1)
                } else {
                    String::new()
                }
            ),
            format!(
                "{n} index(es) in the log's checkpoints that no audit object holds (an object deleted or unlisted)"
            ),
        );
    }
}

/// The bounded tree check: each event in range against the stored tiles authenticated against
/// the newest checkpoint, and each checkpoint's root against the same tiles.
async fn check_bounded_tree(
    log: &mut PublishedLog<'_>,
    table: &mut Table,
    keys: &[String],
    r: &mut Report,
) -> Result<(), VerifyError> {
    let (checkpoints, top_size) = (log.checkpoints, log.top_size);
    if top_size == 0 {
        return Ok(());
    }
    let set: Vec<u64> = (0..table.slots.len() as u64)
        .filter(|&i| table.slots[i as usize].flags & SET != 0)
        .collect();
    for chunk in set.chunks(4096) {
        let stored: Vec<u64> = chunk
            .iter()
            .map(|&i| merkle::stored_hash_index(0, table.base + i))
            .collect();
        match log.read(|reader| reader.read_hashes(&stored)).await? {
            Ok(hashes) => {
                for (&i, h) in chunk.iter().zip(hashes) {
                    let s = &mut table.slots[i as usize];
                    if s.leaf != h {
                        s.flags |= BAD;
                        let key = keys.get(s.object as usize).map_or("?", String::as_str);
                        r.find(
                            "event_leaf",
                            format!("index {} ({key} line {})", table.base + i, s.line + 1),
                            "the event is not the log's entry at its index (per the tiles of the newest checkpoint)",
                        );
                    }
                }
            }
            Err(e) => {
                r.find("tiles_inconsistent", format!("log/checkpoint/{top_size}"), e);
                break;
            }
        }
    }
    for (&n, c) in checkpoints {
        let got = log.read(|reader| merkle::tree_hash(n, reader)).await?;
        let ok = got.as_ref().is_ok_and(|root| *root == c.root);
        r.checkpoints.add(ok);
        if !ok {
            r.find(
                "checkpoint_root",
                translog::checkpoint_key(n),
                format!("not consistent with the newest checkpoint (size {top_size}): a fork or rewritten history"),
            );
        }
    }
    Ok(())
}

async fn check_auditor_checkpoint(
    log: &mut PublishedLog<'_>,
    opt: &Options,
    verifiers: &Verifiers,
    r: &mut Report,
) -> Result<(), VerifyError> {
    let Some(bytes) = &opt.auditor_checkpoint else {
        return Ok(());
    };
    let at = "auditor's checkpoint";
    let Some(c) = open_checkpoint(bytes, verifiers, "the log key", "auditor_checkpoint", at, r) else {
        return Ok(());
    };
    let top_size = log.top_size;
    let n = c.size;
    if n > top_size {
        r.find(
            "log_truncated",
            format!("{at} (size {n})"),
            format!("the log's newest checkpoint has {top_size} entries, the auditor's has {n}: entries and checkpoints were removed"),
        );
        return Ok(());
    }
    if let Some(stored) = log.checkpoints.get(&n) {
        if stored.root != c.root {
            r.find(
                "checkpoint_fork",
                translog::checkpoint_key(n),
                format!("two different checkpoints of size {n} signed by the log key: the stored one and the auditor's (a fork)"),
            );
            return Ok(());
        }
    }
    // The log's root at the auditor's size, from the tiles authenticated against the newest
    // checkpoint (in an unbounded run the tiles were checked against the events already).
    let got = log.read(|reader| merkle::tree_hash(n, reader)).await?;
    match got {
        Ok(root) if root == c.root => {}
        Ok(_) => r.find(
            "checkpoint_fork",
            format!("{at} (size {n})"),
            format!("the log's tree of size {n} has another root than the auditor's checkpoint: the log forked (history rewritten)"),
        ),
        Err(e) => r.find("tiles_inconsistent", format!("{at} (size {n})"), e),
    }
    Ok(())
}

/// A sequenced row as the check needs it: fingerprints instead of text, so a million rows
/// fit in 64 MB (the text of a row found wrong is read again for its finding).
struct SeenRow {
    index: u64,
    id: u64,
    key: u64,
    leaf: Option<Hash>,
}

/// Reads the sequenced rows of `[from, end)` in index order (run beside the object reading:
/// the request log and the object store are read at once).
async fn fetch_rows(tlog: Arc<dyn TlogStore>, from: u64, end: u64) -> Result<Vec<SeenRow>, LogError> {
    let mut out = Vec::with_capacity(usize::try_from((end - from).min(1 << 24)).unwrap_or(0));
    let mut at = from;
    while at < end {
        let rows = tlog.tlog_rows(at, ROW_PAGE).await?;
        let Some(last) = rows.last() else { break };
        at = last.log_index + 1;
        for row in rows {
            if row.log_index >= end {
                break;
            }
            out.push(SeenRow {
                index: row.log_index,
                id: fingerprint(&row.request_id),
                key: row.audit_key.as_deref().map_or(0, fingerprint),
                leaf: row.leaf_hash.as_deref().and_then(tollgate_core::model::parse_hash_hex),
            });
        }
    }
    Ok(out)
}

/// The request log's text of the row at an index: "request <id> (index <n>)" and its audit key.
async fn row_text(src: &Sources, index: u64) -> Result<(String, String), VerifyError> {
    let row = src.tlog.tlog_rows(index, 1).await?.into_iter().next();
    Ok(match row {
        Some(row) if row.log_index == index => (
            format!("request {} (index {index})", row.request_id),
            row.audit_key.unwrap_or_else(|| "null".into()),
        ),
        _ => (format!("index {index}"), "?".into()),
    })
}

/// Checks the sequenced rows over the indexes checked against the events there.
#[allow(clippy::too_many_arguments)]
async fn check_rows(
    src: &Sources,
    bounded: bool,
    state: &tollgate_core::model::TlogState,
    table: &mut Table,
    keys: &[String],
    rows: Vec<SeenRow>,
    r: &mut Report,
    progress: &dyn Progress,
) -> Result<(), VerifyError> {
    let end = table.base + table.slots.len() as u64;
    progress.start("request log", rows.len() as u64);
    let key_fps: Vec<u64> = keys.iter().map(|k| fingerprint(k)).collect();
    // (index, code, what is wrong), resolved to text afterwards (a bounded number of them).
    let mut wrong_rows: Vec<(u64, &'static str, &'static str)> = Vec::new();
    for row in rows {
        progress.advance(1);
        let Some(s) = table.get_mut(row.index) else { continue };
        // A bounded run's span also holds indexes of objects out of range (backfills
        // interleave): a row there cannot be judged.
        if bounded && s.flags & SET == 0 {
            continue;
        }
        if s.flags & SET == 0 {
            r.rows.add(false);
            if s.flags & (FROM_TILES | MISSING) == 0 {
                wrong_rows.push((row.index, "row_without_event", ""));
            }
            continue;
        }
        if s.flags & HAS_ROW != 0 {
            s.flags |= BAD;
            r.rows.add(false);
            wrong_rows.push((row.index, "row_twice", ""));
            continue;
        }
        s.flags |= HAS_ROW;
        let key_ok = key_fps.get(s.object as usize) == Some(&row.key);
        let id_ok = row.id == s.id;
        let leaf_ok = row.leaf == Some(s.leaf);
        let ok = key_ok && id_ok && leaf_ok;
        r.rows.add(ok);
        if !ok {
            s.flags |= BAD;
            // A damaged object disagrees with all its rows: its own finding says why.
            if s.flags & DAMAGED == 0 {
                let what = match (id_ok, key_ok, leaf_ok) {
                    (false, _, _) => "the line at its index is another request's",
                    (true, false, _) => "its audit_key is not the object that holds its event",
                    _ => "its leaf_hash is not the hash of the line at its index",
                };
                wrong_rows.push((row.index, "row_mismatch", what));
            }
        }
    }
    progress.finish();
    let mut shown: HashMap<&'static str, usize> = HashMap::new();
    for (index, code, what) in wrong_rows {
        let n = shown.entry(code).or_default();
        *n += 1;
        let (at, audit_key) = if *n <= MAX_FINDINGS_PER_CODE {
            row_text(src, index).await?
        } else {
            (format!("index {index}"), String::new())
        };
        let detail = match code {
            "row_without_event" => {
                "the request log puts its event at this index, where the log has no event".to_string()
            }
            "row_twice" => "a second row at the same index".to_string(),
            _ => {
                let held = table
                    .get_mut(index)
                    .and_then(|s| keys.get(s.object as usize))
                    .map_or("?", String::as_str);
                format!("{what} (its audit_key is {audit_key}; the event at its index is in {held})")
            }
        };
        r.find(code, at, detail);
    }
    // Rows the sequencer never handed out (an index altered past the log).
    for row in src.tlog.tlog_rows(state.next_index.max(end), 100).await? {
        r.rows.add(false);
        r.find(
            "row_beyond_log",
            format!("request {} (index {})", row.request_id, row.log_index),
            format!(
                "its index is past every index the sequencer handed out ({})",
                state.next_index
            ),
        );
    }
    // Events without their row.
    let mut orphans: Vec<(u64, u32, u32)> = Vec::new();
    for (i, s) in table.slots.iter_mut().enumerate() {
        if s.flags & SET != 0 && s.flags & HAS_ROW == 0 {
            s.flags |= BAD;
            if s.flags & DAMAGED == 0 {
                orphans.push((table.base + i as u64, s.object, s.line));
            }
        }
    }
    for (index, object, line) in orphans.into_iter().take(MAX_FINDINGS_PER_CODE + 1) {
        let key = keys.get(object as usize).map_or("?", String::as_str);
        // Name the request: its id is in the line.
        let id = match src.audit.get(key).await? {
            Some(b) => read_object(&b, true)
                .ok()
                .and_then(|o| o.lines.into_iter().nth(line as usize))
                .and_then(|l| l.2),
            None => None,
        };
        r.find(
            "event_without_row",
            format!("request {} (index {index}, {key} line {})", id.as_deref().unwrap_or("?"), line + 1),
            "an event in the log that no request log row has at this index (a row deleted, or its index or audit key altered)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_hashed_line_by_line() {
        let lines = [r#"{"request_id":"a","x":1}"#, r#"{"request_id":"b"}"#];
        let object = audit::encode(lines.iter().copied());
        let read = read_object(&object, true).unwrap();
        let text = format!("{}\n{}\n", lines[0], lines[1]);
        assert_eq!(read.sha256, <[u8; 32]>::from(Sha256::digest(text.as_bytes())));
        assert_eq!(read.lines.len(), 2);
        assert_eq!(read.lines[0].0, merkle::leaf_hash(lines[0].as_bytes()));
        assert_eq!(read.lines[1].2.as_deref(), Some("b"));
        assert_eq!(read.lines[1].1, fingerprint("b"));
        assert!(read_object(b"not gzip", false).is_err());
        assert!(read_object(&audit::encode([]), false).unwrap().lines.is_empty());
    }

    #[test]
    fn findings_past_the_cap_are_summed_up() {
        let mut r = Report::default();
        for i in 0..MAX_FINDINGS_PER_CODE + 5 {
            r.find("row_mismatch", format!("{i}"), "x");
        }
        r.find("object_hash", "k", "y");
        cap_findings(&mut r);
        assert_eq!(r.with_code("row_mismatch").len(), MAX_FINDINGS_PER_CODE + 1);
        assert!(r.findings.last().unwrap().detail.starts_with("5 more"));
        assert!(r.to_text().contains("INVALID object_hash k: y"));
        assert!(!r.ok());
    }
}
