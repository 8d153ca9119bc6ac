//! Signed digests of the audit objects (issue 15 item 3; `docs/transparency-log.md`).
//!
//! CloudTrail's log file integrity validation, for tollgate's audit objects, with what it
//! lacks added: one digest per period (an hour by default) lists every audit object of the
//! period with the SHA-256 of its uncompressed content, its event count, the log indexes of
//! its events and its first and last event time, and names the log's latest checkpoint. Each
//! digest is a C2SP signed note by the log's key, chained to the one before by the SHA-256 of
//! its bytes and by its signature, under a gap-free sequence number; an idle period still
//! gets one (so a deleted digest leaves a hole in the periods), and an object that arrives
//! after its period was digested goes into a backfill digest for that period. `tollgate
//! verify` walks the chain and finds deleted, changed and planted objects.
//!
//! The body, one field a line (every line ends in a newline, as a signed note requires):
//!
//! ```text
//! tollgate.dev/digest/v1
//! origin <the log's origin: the signing key's name>
//! sequence <n: 0, 1, 2, ... without gaps>
//! kind <period | backfill>
//! period <start> <end>                       RFC 3339 UTC; end = start + the period
//! previous <hex SHA-256 of digest n-1's bytes> <base64 of its signature> | previous none
//! checkpoint <tree size> <base64 root hash>  the log's latest checkpoint when made
//! objects <count>
//! <key> <hex SHA-256 of the uncompressed object> <events> <indexes> <first event time> <last event time>
//! ```
//!
//! `<indexes>` are the log indexes of the object's lines in line order, as comma-separated
//! runs `<first>+<count>` (an object marked in one call is one run). Digests are stored
//! create-only at `digest/v1/<sequence, 12 digits>`, so two digesters can never both write
//! digest n.

use crate::audit;
use crate::model::hex;
use crate::ports::{LogError, ObjectStore, PutOutcome, StoreError, TlogStore};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tollgate_tlog::note::NoteSigner;

/// Where digests live in the trail store.
pub const PREFIX: &str = "digest/v1/";
/// The first line of every digest body.
pub const HEADER: &str = "tollgate.dev/digest/v1";
/// Events looked up in the request log per call (bounded answers: the Data API returns at
/// most 1 MB per call).
const ROWS_PER_LOOKUP: usize = 4_000;
/// Periods digested per run at most (a run after a long outage catches up over several).
const MAX_PERIODS_PER_RUN: usize = 168;

/// Why a digest is malformed, or a run failed.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The body does not follow the format.
    #[error("digest format: {0}")]
    Format(String),
    /// The request log's database.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The object store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing or note syntax.
    #[error("digest: {0}")]
    Tlog(#[from] tollgate_tlog::Error),
    /// An audit object that cannot be read as one.
    #[error("audit object {key}: {reason}")]
    Object {
        /// The object's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another digester wrote the same sequence number first.
    #[error("digest {0} was written by another digester")]
    Raced(u64),
}

/// A regular period's digest, or a backfill of objects that arrived late for a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The period's own digest (exactly one per period).
    Period,
    /// Objects of a period that arrived after its digest.
    Backfill,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Period => "period",
            Kind::Backfill => "backfill",
        }
    }
}

/// The link to the previous digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// SHA-256 of the previous digest's bytes (the whole signed note).
    pub sha256: [u8; 32],
    /// Its signature line's base64 (key id and signature), as written in the note.
    pub signature: String,
}

/// One audit object, as a digest lists it (its manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The object's key.
    pub key: String,
    /// SHA-256 of its uncompressed content (the NDJSON text).
    pub sha256: [u8; 32],
    /// Its lines.
    pub events: u64,
    /// The log indexes of its lines, in line order, as runs (first, count).
    pub indexes: Vec<(u64, u64)>,
    /// The earliest `event_time` of its events.
    pub first_event: OffsetDateTime,
    /// The latest `event_time` of its events.
    pub last_event: OffsetDateTime,
}

impl ObjectEntry {
    /// The log index of each line, in line order.
    pub fn line_indexes(&self) -> impl Iterator<Item = u64> + '_ {
        self.indexes.iter().flat_map(|&(first, n)| first..first + n)
    }
}

/// A digest's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// The log's origin (the key's name).
    pub origin: String,
    /// Position in the chain, from 0.
    pub sequence: u64,
    /// Regular or backfill.
    pub kind: Kind,
    /// The period's start (inclusive).
    pub start: OffsetDateTime,
    /// The period's end (exclusive).
    pub end: OffsetDateTime,
    /// The previous digest (`None` only for sequence 0).
    pub previous: Option<Link>,
    /// The log's latest checkpoint when the digest was made: (tree size, root hash).
    pub checkpoint: (u64, Option<[u8; 32]>),
    /// The period's objects, sorted by key.
    pub objects: Vec<ObjectEntry>,
}

/// The key of digest `sequence`.
pub fn key(sequence: u64) -> String {
    format!("{PREFIX}{sequence:012}")
}

/// The sequence number of a digest key (`None` for other keys under the prefix).
pub fn sequence_of(key: &str) -> Option<u64> {
    let rest = key.strip_prefix(PREFIX)?;
    (rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

fn time_text(t: OffsetDateTime) -> String {
    crate::clock::format(t)
}

fn parse_time(s: &str) -> Result<OffsetDateTime, DigestError> {
    crate::clock::parse_rfc3339(s).ok_or_else(|| DigestError::Format(format!("bad time {s:?}")))
}

fn parse_hash(s: &str) -> Result<[u8; 32], DigestError> {
    let bad = || DigestError::Format(format!("bad SHA-256 {s:?}"));
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

impl Digest {
    /// The note body (the signed text).
    pub fn to_body(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(256 + self.objects.len() * 200);
        let _ = writeln!(s, "{HEADER}");
        let _ = writeln!(s, "origin {}", self.origin);
        let _ = writeln!(s, "sequence {}", self.sequence);
        let _ = writeln!(s, "kind {}", self.kind.as_str());
        let _ = writeln!(s, "period {} {}", time_text(self.start), time_text(self.end));
        match &self.previous {
            Some(l) => {
                let _ = writeln!(s, "previous {} {}", hex(&l.sha256), l.signature);
            }
            None => s.push_str("previous none\n"),
        }
        match self.checkpoint {
            (size, Some(root)) => {
                let _ = writeln!(s, "checkpoint {size} {}", B64.encode(root));
            }
            (size, None) => {
                let _ = writeln!(s, "checkpoint {size} none");
            }
        }
        let _ = writeln!(s, "objects {}", self.objects.len());
        for o in &self.objects {
            let runs: Vec<String> = o.indexes.iter().map(|(f, n)| format!("{f}+{n}")).collect();
            let _ = writeln!(
                s,
                "{} {} {} {} {} {}",
                o.key,
                hex(&o.sha256),
                o.events,
                runs.join(","),
                time_text(o.first_event),
                time_text(o.last_event)
            );
        }
        s
    }

    /// Parses a note body (already opened: its signature checked by the caller).
    pub fn parse_body(text: &str) -> Result<Self, DigestError> {
        let bad = |what: &str| DigestError::Format(what.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the body does not end in a newline"))?;
        let mut lines = body.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("not a tollgate digest (first line)"));
        }
        let mut next = |name: &str| -> Result<String, DigestError> {
            let line = lines.next().ok_or_else(|| bad(&format!("no {name} line")))?;
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("expected {name}, found {line:?}")))
        };
        let origin = next("origin")?;
        let sequence: u64 = next("sequence")?.parse().map_err(|_| bad("bad sequence"))?;
        let kind = match next("kind")?.as_str() {
            "period" => Kind::Period,
            "backfill" => Kind::Backfill,
            k => return Err(bad(&format!("unknown kind {k:?}"))),
        };
        let period = next("period")?;
        let (start, end) = period.split_once(' ').ok_or_else(|| bad("bad period"))?;
        let (start, end) = (parse_time(start)?, parse_time(end)?);
        if end <= start {
            return Err(bad("the period ends before it starts"));
        }
        let previous = match next("previous")?.as_str() {
            "none" => None,
            p => {
                let (h, sig) = p.split_once(' ').ok_or_else(|| bad("bad previous"))?;
                if B64.decode(sig).is_err() || sig.contains(' ') {
                    return Err(bad("bad previous signature"));
                }
                Some(Link {
                    sha256: parse_hash(h)?,
                    signature: sig.to_string(),
                })
            }
        };
        let cp = next("checkpoint")?;
        let (size, root) = cp.split_once(' ').ok_or_else(|| bad("bad checkpoint"))?;
        let size: u64 = size.parse().map_err(|_| bad("bad checkpoint size"))?;
        let root = match root {
            "none" if size == 0 => None,
            r => {
                let raw = B64.decode(r).map_err(|_| bad("bad checkpoint root"))?;
                Some(<[u8; 32]>::try_from(raw.as_slice()).map_err(|_| bad("bad checkpoint root"))?)
            }
        };
        let count: usize = next("objects")?.parse().map_err(|_| bad("bad object count"))?;
        let mut objects = Vec::with_capacity(count.min(1 << 16));
        for line in lines.by_ref() {
            let f: Vec<&str> = line.split(' ').collect();
            let [key, sha, events, runs, first, last] = f[..] else {
                return Err(bad(&format!("bad object line {line:?}")));
            };
            let events: u64 = events.parse().map_err(|_| bad("bad event count"))?;
            let mut indexes = Vec::new();
            for run in runs.split(',') {
                let (a, n) = run.split_once('+').ok_or_else(|| bad("bad index run"))?;
                let a: u64 = a.parse().map_err(|_| bad("bad index run"))?;
                let n: u64 = n.parse().map_err(|_| bad("bad index run"))?;
                if n == 0 || a.checked_add(n).is_none() {
                    return Err(bad("bad index run"));
                }
                indexes.push((a, n));
            }
            if indexes.iter().map(|r| r.1).sum::<u64>() != events {
                return Err(bad(&format!("{key}: the index runs do not cover its {events} events")));
            }
            objects.push(ObjectEntry {
                key: key.to_string(),
                sha256: parse_hash(sha)?,
                events,
                indexes,
                first_event: parse_time(first)?,
                last_event: parse_time(last)?,
            });
        }
        if objects.len() != count {
            return Err(bad(&format!("says {count} objects, lists {}", objects.len())));
        }
        if !objects.windows(2).all(|w| w[0].key < w[1].key) {
            return Err(bad("objects are not sorted by key (or one is listed twice)"));
        }
        Ok(Self {
            origin,
            sequence,
            kind,
            start,
            end,
            previous,
            checkpoint: (size, root),
            objects,
        })
    }
}

/// The signature line's base64 of a signed note by `name` (the chain's link to it).
pub fn signature_of(signed: &[u8], name: &str) -> Result<String, DigestError> {
    let note = tollgate_tlog::note::parse_unverified(signed)?;
    note.unverified
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.base64)
        .ok_or_else(|| DigestError::Format(format!("no signature by {name}")))
}

/// The start of the period holding `t` (periods are aligned to the Unix epoch).
pub fn period_start(t: OffsetDateTime, period: Duration) -> OffsetDateTime {
    let p = period.as_nanos().max(1) as i128;
    let n = t.unix_timestamp_nanos();
    let start = n.div_euclid(p) * p;
    OffsetDateTime::from_unix_timestamp_nanos(start).unwrap_or(t)
}

/// The time of an audit object: its batch id's (the key's file name without the part suffix).
pub fn object_time(key: &str) -> Option<OffsetDateTime> {
    let name = key.rsplit('/').next()?.strip_suffix(".ndjson.gz")?;
    // `<uuid>` or `<uuid>-<part>`: a hyphenated UUID is 36 characters.
    audit::batch_time(name.get(..36)?).ok()
}

/// The `audit/v1/YYYY/MM/DD/HH/` prefixes of the hours a period touches.
fn hour_prefixes(start: OffsetDateTime, end: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = period_start(start, Duration::from_secs(3600));
    while t < end {
        out.push(format!(
            "{}{:04}/{:02}/{:02}/{:02}/",
            audit::KEY_PREFIX,
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        ));
        t += time::Duration::hours(1);
    }
    out
}

/// The audit objects whose batch time is in `[start, end)`, sorted.
pub async fn objects_in(
    audit_store: &dyn ObjectStore,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for prefix in hour_prefixes(start, end) {
        for key in audit_store.list(&prefix).await? {
            if object_time(&key).is_some_and(|t| t >= start && t < end) {
                out.push(key);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What a digester run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Period digests written.
    pub periods: u64,
    /// Backfill digests written.
    pub backfills: u64,
    /// Objects listed in them.
    pub objects: u64,
    /// Objects seen but not listed yet (their events not all sequenced): a later run takes them.
    pub deferred: u64,
}

/// Digest settings.
#[derive(Clone, Debug)]
pub struct DigestSettings {
    /// The period (`TOLLGATE_DIGEST_PERIOD_MS`, an hour by default).
    pub period: Duration,
    /// How long after a period ends its digest is made (`TOLLGATE_DIGEST_GRACE_MS`): objects
    /// written by then are in the period's digest, later ones in a backfill.
    pub grace: Duration,
    /// Digested periods checked for late objects on every run (`TOLLGATE_DIGEST_LOOKBACK`).
    pub lookback: u32,
}

impl DigestSettings {
    /// Reads the settings.
    pub fn read(r: &mut crate::settings::SettingsReader) -> Self {
        let period: u64 = r.parse(
            "TOLLGATE_DIGEST_PERIOD_MS",
            3_600_000,
            "signed digest period in milliseconds (an hour by default)",
        );
        let grace: u64 = r.parse(
            "TOLLGATE_DIGEST_GRACE_MS",
            120_000,
            "how long after a period ends its digest is made; objects later than that go into a backfill digest",
        );
        let lookback: u32 = r.parse(
            "TOLLGATE_DIGEST_LOOKBACK",
            48,
            "digested periods checked for late objects on every run",
        );
        if period < 1_000 {
            r.error("TOLLGATE_DIGEST_PERIOD_MS must be at least 1000");
        }
        Self {
            period: Duration::from_millis(period.max(1_000)),
            grace: Duration::from_millis(grace),
            lookback,
        }
    }
}

/// Makes the digests: the periods closed since the last digest, and backfills of late objects.
pub struct Digester {
    log: Arc<dyn TlogStore>,
    audit: Arc<dyn ObjectStore>,
    trail: Arc<dyn ObjectStore>,
    signer: Arc<dyn NoteSigner>,
    settings: DigestSettings,
    lock: tokio::sync::Mutex<()>,
}

/// The newest digest and its bytes.
struct Head {
    digest: Digest,
    bytes: Bytes,
}

impl Digester {
    /// A digester signing with the log's key.
    pub fn new(
        log: Arc<dyn TlogStore>,
        audit: Arc<dyn ObjectStore>,
        trail: Arc<dyn ObjectStore>,
        signer: Arc<dyn NoteSigner>,
        settings: DigestSettings,
    ) -> Self {
        Self {
            log,
            audit,
            trail,
            signer,
            settings,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &DigestSettings {
        &self.settings
    }

    /// One run at `now`: digests every period that closed (its end plus the grace is past)
    /// since the newest digest, then backfills late objects of the last `lookback` periods.
    pub async fn run(&self, now: OffsetDateTime) -> Result<RunReport, DigestError> {
        let _one = self.lock.lock().await;
        let mut report = RunReport::default();
        let keys: Vec<String> = self
            .trail
            .list(PREFIX)
            .await?
            .into_iter()
            .filter(|k| sequence_of(k).is_some())
            .collect();
        let mut head = match keys.last() {
            Some(k) => Some(self.read(k).await?),
            None => None,
        };
        let period = self.settings.period;
        let step = time::Duration::try_from(period).unwrap_or(time::Duration::HOUR);
        let closed_before = now - time::Duration::try_from(self.settings.grace).unwrap_or(time::Duration::ZERO);
        // The first period: the earliest audit object's, or the last closed one on a new log.
        let mut next = match &head {
            Some(h) => self.next_period_after(&keys, h).await?,
            None => {
                let earliest = self
                    .audit
                    .list(audit::KEY_PREFIX)
                    .await?
                    .iter()
                    .filter_map(|k| object_time(k))
                    .min();
                let last_closed = period_start(closed_before, period) - step;
                period_start(earliest.unwrap_or(last_closed), period)
            }
        };
        // Periods digested by this run: nothing of theirs is late yet.
        let mut fresh: HashSet<OffsetDateTime> = HashSet::new();
        for _ in 0..MAX_PERIODS_PER_RUN {
            if next + step > closed_before {
                break;
            }
            let objects = objects_in(&*self.audit, next, next + step).await?;
            let (entries, deferred) = self.entries(&objects).await?;
            report.deferred += deferred;
            report.objects += entries.len() as u64;
            head = Some(self.append(head, Kind::Period, next, next + step, entries).await?);
            report.periods += 1;
            fresh.insert(next);
            next += step;
        }
        // Backfills: late objects of recently digested periods.
        if let Some(h) = &head {
            let oldest = h.digest.start - step * i32::try_from(self.settings.lookback).unwrap_or(i32::MAX);
            let mut listed: BTreeMap<OffsetDateTime, HashSet<String>> = BTreeMap::new();
            let mut keys = self.trail.list(PREFIX).await?;
            keys.retain(|k| sequence_of(k).is_some());
            for k in keys.iter().rev() {
                let d = self.read(k).await?.digest;
                // Regular digests come in period order; backfills of old periods sit among
                // them, so only a regular one ends the walk.
                if d.start < oldest {
                    if d.kind == Kind::Period {
                        break;
                    }
                    continue;
                }
                if fresh.contains(&d.start) {
                    continue;
                }
                listed
                    .entry(d.start)
                    .or_default()
                    .extend(d.objects.into_iter().map(|o| o.key));
            }
            for (start, seen) in listed {
                let objects = objects_in(&*self.audit, start, start + step).await?;
                let late: Vec<String> = objects.into_iter().filter(|k| !seen.contains(k)).collect();
                if late.is_empty() {
                    continue;
                }
                let (entries, deferred) = self.entries(&late).await?;
                report.deferred += deferred;
                if entries.is_empty() {
                    continue;
                }
                report.objects += entries.len() as u64;
                head = Some(self.append(head, Kind::Backfill, start, start + step, entries).await?);
                report.backfills += 1;
            }
        }
        Ok(report)
    }

    /// The period after the newest regular digest (a backfill's period is an older one).
    async fn next_period_after(&self, keys: &[String], head: &Head) -> Result<OffsetDateTime, DigestError> {
        if head.digest.kind == Kind::Period {
            return Ok(head.digest.end);
        }
        for k in keys.iter().rev() {
            let d = self.read(k).await?.digest;
            if d.kind == Kind::Period {
                return Ok(d.end);
            }
        }
        Err(DigestError::Format(
            "a chain of backfills without a period digest".into(),
        ))
    }

    async fn read(&self, key: &str) -> Result<Head, DigestError> {
        let bytes = self
            .trail
            .get(key)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("{key} is listed but cannot be read yet")))?;
        let note = tollgate_tlog::note::parse_unverified(&bytes)?;
        Ok(Head {
            digest: Digest::parse_body(&note.text)?,
            bytes,
        })
    }

    /// Signs and stores the next digest of the chain.
    async fn append(
        &self,
        head: Option<Head>,
        kind: Kind,
        start: OffsetDateTime,
        end: OffsetDateTime,
        objects: Vec<ObjectEntry>,
    ) -> Result<Head, DigestError> {
        let state = self.log.tlog_state().await?;
        let (sequence, previous) = match &head {
            Some(h) => (
                h.digest.sequence + 1,
                Some(Link {
                    sha256: Sha256::digest(&h.bytes).into(),
                    signature: signature_of(&h.bytes, self.signer.name())?,
                }),
            ),
            None => (0, None),
        };
        let digest = Digest {
            origin: self.signer.name().to_string(),
            sequence,
            kind,
            start,
            end,
            previous,
            checkpoint: (state.size, state.root_hash),
            objects,
        };
        let signed = tollgate_tlog::note::sign_note(&digest.to_body(), &[&*self.signer]).await?;
        let bytes = Bytes::from(signed);
        if self.trail.put_if_absent(&key(sequence), bytes.clone()).await? == PutOutcome::AlreadyExists {
            return Err(DigestError::Raced(sequence));
        }
        tracing::info!(sequence, kind = kind.as_str(), start = %time_text(start), objects = digest.objects.len(), "digest signed");
        Ok(Head { digest, bytes })
    }

    /// The entries of objects whose events are all sequenced; the count of the others.
    async fn entries(&self, keys: &[String]) -> Result<(Vec<ObjectEntry>, u64), DigestError> {
        struct Read {
            key: String,
            sha256: [u8; 32],
            ids: Vec<String>,
            first: OffsetDateTime,
            last: OffsetDateTime,
        }
        let mut read = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(object) = self.audit.get(key).await? else {
                continue;
            };
            let lines = audit::decode(&object).map_err(|e| DigestError::Object {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            let mut h = Sha256::new();
            let mut ids = Vec::with_capacity(lines.len());
            let (mut first, mut last) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
            for line in &lines {
                h.update(line.as_bytes());
                h.update(b"\n");
                let (id, t) = event_id_and_time(line).map_err(|reason| DigestError::Object {
                    key: key.clone(),
                    reason,
                })?;
                ids.push(id);
                first = Some(first.map_or(t, |f| f.min(t)));
                last = Some(last.map_or(t, |l| l.max(t)));
            }
            let (Some(first), Some(last)) = (first, last) else {
                return Err(DigestError::Object {
                    key: key.clone(),
                    reason: "no events".into(),
                });
            };
            read.push(Read {
                key: key.clone(),
                sha256: h.finalize().into(),
                ids,
                first,
                last,
            });
        }
        // The rows' indexes, a bounded number of rows per call.
        let mut indexes: HashMap<(String, String), Option<u64>> = HashMap::new();
        let mut batch: Vec<String> = Vec::new();
        let mut rows = 0usize;
        for (i, r) in read.iter().enumerate() {
            batch.push(r.key.clone());
            rows += r.ids.len();
            if rows >= ROWS_PER_LOOKUP || i + 1 == read.len() {
                for (key, id, index) in self.log.tlog_object_rows(&batch).await? {
                    indexes.insert((key, id), index);
                }
                batch.clear();
                rows = 0;
            }
        }
        let mut out = Vec::with_capacity(read.len());
        let mut deferred = 0;
        'objects: for r in read {
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for id in &r.ids {
                let Some(Some(index)) = indexes.get(&(r.key.clone(), id.clone())) else {
                    // Not marked (or not sequenced) yet: the writer or the reconciler will.
                    deferred += 1;
                    continue 'objects;
                };
                match runs.last_mut() {
                    Some((first, n)) if *first + *n == *index => *n += 1,
                    _ => runs.push((*index, 1)),
                }
            }
            out.push(ObjectEntry {
                key: r.key,
                sha256: r.sha256,
                events: r.ids.len() as u64,
                indexes: runs,
                first_event: r.first,
                last_event: r.last,
            });
        }
        Ok((out, deferred))
    }
}

/// An event line's `request_id` and `event_time`.
pub fn event_id_and_time(line: &str) -> Result<(String, OffsetDateTime), String> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        request_id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        event_time: std::borrow::Cow<'a, str>,
    }
    let h: Head<'_> = serde_json::from_str(line).map_err(|e| format!("event line: {e}"))?;
    let t = crate::clock::parse_stored(&h.event_time).ok_or_else(|| format!("bad event_time {:?}", h.event_time))?;
    Ok((h.request_id.into_owned(), t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Digest {
        let t = |s| crate::clock::parse_rfc3339(s).unwrap();
        Digest {
            origin: "tollgate.local/0011223344556677".into(),
            sequence: 7,
            kind: Kind::Backfill,
            start: t("2026-12-03T10:00:00Z"),
            end: t("2026-12-03T11:00:00Z"),
            previous: Some(Link {
                sha256: [7; 32],
                signature: "AAECAw==".into(),
            }),
            checkpoint: (12, Some([9; 32])),
            objects: vec![
                ObjectEntry {
                    key: "audit/v1/2026/12/03/10/a.ndjson.gz".into(),
                    sha256: [1; 32],
                    events: 3,
                    indexes: vec![(4, 2), (9, 1)],
                    first_event: t("2026-12-03T10:00:01.5Z"),
                    last_event: t("2026-12-03T10:00:02Z"),
                },
                ObjectEntry {
                    key: "audit/v1/2026/12/03/10/b.ndjson.gz".into(),
                    sha256: [2; 32],
                    events: 1,
                    indexes: vec![(10, 1)],
                    first_event: t("2026-12-03T10:30:00Z"),
                    last_event: t("2026-12-03T10:30:00Z"),
                },
            ],
        }
    }

    #[test]
    fn bodies_round_trip() {
        let d = sample();
        let body = d.to_body();
        assert_eq!(Digest::parse_body(&body).unwrap(), d);
        let empty = Digest {
            previous: None,
            objects: vec![],
            checkpoint: (0, None),
            kind: Kind::Period,
            ..d
        };
        assert_eq!(Digest::parse_body(&empty.to_body()).unwrap(), empty);
        assert_eq!(d.objects[0].line_indexes().collect::<Vec<_>>(), vec![4, 5, 9]);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let body = sample().to_body();
        for (from, to) in [
            ("tollgate.dev/digest/v1", "tollgate.dev/digest/v2"),
            ("objects 2", "objects 3"),
            ("4+2,9+1", "4+2"),
            ("4+2,9+1", "4+0,9+3"),
            ("kind backfill", "kind other"),
            ("sequence 7", "sequence -7"),
            ("a.ndjson.gz", "c.ndjson.gz"),
        ] {
            let bad = body.replacen(from, to, 1);
            assert!(Digest::parse_body(&bad).is_err(), "{from} -> {to} was accepted");
        }
        assert!(Digest::parse_body(body.trim_end()).is_err());
    }

    #[test]
    fn keys_and_periods() {
        assert_eq!(key(42), "digest/v1/000000000042");
        assert_eq!(sequence_of(&key(42)), Some(42));
        assert_eq!(sequence_of("digest/v1/42"), None);
        let t = crate::clock::parse_rfc3339("2026-12-03T10:17:42.5Z").unwrap();
        assert_eq!(
            period_start(t, Duration::from_secs(3600)),
            crate::clock::parse_rfc3339("2026-12-03T10:00:00Z").unwrap()
        );
        let start = crate::clock::parse_rfc3339("2026-12-03T10:30:00Z").unwrap();
        assert_eq!(
            hour_prefixes(start, start + time::Duration::minutes(61)),
            vec!["audit/v1/2026/12/03/10/", "audit/v1/2026/12/03/11/"]
        );
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let k = audit::object_key(&id, 3).unwrap();
        assert_eq!(object_time(&k).unwrap(), audit::batch_time(&id).unwrap());
    }
}
