//! Per-request receipts (issue 15 item 4; the format is specified in
//! `docs/transparency-log.md`, "Receipts"): a signed promise, given with the answer, that the
//! request's audit event is recorded and will be in the transparency log.
//!
//! Each ingress task holds its own short-lived Ed25519 key (made from the operating system's
//! generator, in memory only), certified at start and on every rotation by the log's signer
//! (the key file in embedded mode, AWS KMS in aws mode): one log-signer call per rotation, never
//! one per commit. Once a group commit is durable, its records that asked for a receipt go to
//! the task's [`ReceiptWindow`], which signs with the task key one statement per signing window
//! (`TOLLGATE_RECEIPT_WINDOW_MS`) over the records of every commit made durable within it: the
//! RFC 6962 Merkle root of the leaf hashes of those requests' events (a leaf is
//! SHA-256(0x00 || the event's exact line), the same leaf the log sequences later), the tree's
//! size, the log's origin and the time. Each receipt carries that signed statement, its own
//! index and inclusion path in the window's small tree, its leaf hash, its request id and the
//! certificate, so it verifies offline at once, with the log's verifier key only.
//!
//! Both signed parts are C2SP signed notes (Ed25519, signature type 0x01), so any signed-note
//! implementation checks their signatures; the receipt is a text document, sent base64url
//! (RFC 4648 section 5, no padding) because a header value cannot hold newlines.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tollgate_tlog::merkle::{self, Hash, MemoryTree};
use tollgate_tlog::note::{self, Ed25519Signer, NoteSigner, VerifierKey, Verifiers};

/// The response header that carries a receipt.
pub const RECEIPT_HEADER: &str = "tollgate-receipt";
/// The RFC 7240 preference a client sends (`Prefer: tollgate-receipt`) to ask for a receipt;
/// answered with `Preference-Applied: tollgate-receipt` when one is given.
pub const PREFERENCE: &str = "tollgate-receipt";
/// The first line of a receipt document.
pub const RECEIPT_TYPE: &str = "tollgate-receipt/v1";
/// The first line of a statement (the note the task key signs, once per signing window; the
/// name is from when it was once per commit).
pub const STATEMENT_TYPE: &str = "tollgate-receipt-commit/v1";
/// The first line of a task key certificate (the note the log key signs).
pub const CERTIFICATE_TYPE: &str = "tollgate-receipt-key/v1";
/// The suffix of a task key's name: `<origin>/receipts`.
pub const TASK_KEY_SUFFIX: &str = "/receipts";
/// A certificate outlives its rotation period by this much, so that a rotation that fails once
/// (the log signer unreachable) does not stop receipts before the next attempt.
pub const ROTATION_GRACE: Duration = Duration::from_secs(600);
/// Longest wait between attempts to certify a key while the log signer fails.
const CERTIFY_RETRY_CAP: Duration = Duration::from_secs(60);
/// Most hashes in a receipt's path: a window is far smaller than 2^32 records.
const MAX_PATH: usize = 32;

/// Why a receipt could not be issued or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// No certified task key is valid now (the log signer failed at start or at every
    /// rotation since the last certificate expired).
    #[error("no certified receipt key")]
    NoKey,
    /// The log signer failed to certify a task key.
    #[error("certifying the receipt key: {0}")]
    Certify(String),
    /// The text is not a receipt (or not a certificate or statement) in the documented format.
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
    /// A signature, the path or the event does not verify.
    #[error("receipt does not verify: {0}")]
    Invalid(String),
}

fn unix_ms(t: time::OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// A certified task key: the key, and the certificate (a signed note by the log key) that
/// states its verifier key and its validity window.
pub struct TaskKey {
    signer: Ed25519Signer,
    certificate: String,
    /// The certificate in base64url, the last part of every header value it signs (encoded
    /// once per key, not per request).
    certificate_b64: String,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl std::fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TaskKey({:?}, {}..{})",
            self.signer, self.not_before_ms, self.not_after_ms
        )
    }
}

impl TaskKey {
    /// Makes a new random task key and has the log's signer certify it, valid from now for
    /// `validity`. The key name is `<origin>/receipts` (the origin is the log signer's name).
    pub async fn certify(log_signer: &dyn NoteSigner, validity: Duration) -> Result<Self, ReceiptError> {
        let origin = log_signer.name();
        let signer = Ed25519Signer::generate(&format!("{origin}{TASK_KEY_SUFFIX}"))
            .map_err(|e| ReceiptError::Certify(e.to_string()))?;
        let not_before_ms = unix_ms(tollgate_core::clock::now());
        let not_after_ms = not_before_ms.saturating_add(validity.as_millis() as u64);
        let body = format!(
            "{CERTIFICATE_TYPE}\norigin {origin}\nkey {}\nnot-before {not_before_ms}\nnot-after {not_after_ms}\n",
            signer.verifier_key()
        );
        let certificate = note::sign_note(&body, &[log_signer])
            .await
            .map_err(|e| ReceiptError::Certify(e.to_string()))?;
        Ok(Self {
            signer,
            certificate_b64: B64URL.encode(certificate.as_bytes()),
            certificate,
            not_before_ms,
            not_after_ms,
        })
    }

    /// The certificate (a C2SP signed note by the log key).
    pub fn certificate(&self) -> &str {
        &self.certificate
    }

    /// The task key's verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        self.signer.verifier_key()
    }

    /// Whether the certificate covers `now_ms`.
    fn valid_at(&self, now_ms: u64) -> bool {
        (self.not_before_ms..=self.not_after_ms).contains(&now_ms)
    }
}

/// One durable event that wants a receipt: its request id and its exact audit line.
#[derive(Clone, Copy, Debug)]
pub struct ReceiptEntry<'a> {
    /// The id the request is recorded under.
    pub request_id: &'a str,
    /// The event's JSON line, the bytes the audit writer puts in the audit object.
    pub line: &'a [u8],
}

/// Issues receipts with the task's current certified key (rotated in the background).
pub struct ReceiptIssuer {
    origin: String,
    current: RwLock<Option<Arc<TaskKey>>>,
}

impl std::fmt::Debug for ReceiptIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptIssuer({})", self.origin)
    }
}

impl ReceiptIssuer {
    /// An issuer with no key yet for the log `origin` (see [`ReceiptIssuer::start`]).
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            current: RwLock::new(None),
        }
    }

    /// An issuer that signs with `key` (tests and benchmarks; the ingress uses [`Self::start`]).
    pub fn with_key(origin: &str, key: TaskKey) -> Self {
        let issuer = Self::new(origin);
        issuer.install(key);
        issuer
    }

    fn install(&self, key: TaskKey) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Some(Arc::new(key));
    }

    /// Certifies a first key (waiting for it) and starts the task that rotates it every
    /// `rotate`. If the log signer fails, the ingress still serves: receipts are not given
    /// until a key is certified (retried with backoff), and records are never held up.
    pub async fn start(log_signer: Arc<dyn NoteSigner>, rotate: Duration) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let issuer = Arc::new(Self::new(log_signer.name()));
        let validity = rotate + ROTATION_GRACE;
        let first = TaskKey::certify(&*log_signer, validity).await;
        let mut wait = match first {
            Ok(key) => {
                tracing::info!(key = %key.verifier_key(), valid_ms = validity.as_millis() as u64, "receipt key certified");
                issuer.install(key);
                rotate
            }
            Err(e) => {
                tracing::error!(error = %e, "receipt key not certified; no receipts until it is (retrying)");
                Duration::from_secs(1)
            }
        };
        let task = {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    tokio::time::sleep(wait).await;
                    match TaskKey::certify(&*log_signer, validity).await {
                        Ok(key) => {
                            tracing::info!(key = %key.verifier_key(), "receipt key rotated");
                            issuer.install(key);
                            failures = 0;
                            wait = rotate;
                        }
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            wait = tollgate_core::backoff::full_jitter(
                                failures,
                                Duration::from_secs(1),
                                CERTIFY_RETRY_CAP,
                            )
                            .max(Duration::from_secs(1));
                            tracing::error!(error = %e, retry_ms = wait.as_millis() as u64,
                                "receipt key rotation failed; the current key serves until its certificate expires");
                        }
                    }
                }
            })
        };
        (issuer, task)
    }

    /// The log origin receipts name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The current key, if one is certified and valid now.
    pub fn current_key(&self) -> Option<Arc<TaskKey>> {
        let key = self.current.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        key.valid_at(unix_ms(tollgate_core::clock::now())).then_some(key)
    }

    /// The receipts of durable receipted events (one window's), in order: one signature for all
    /// of them, then each one's path. Returns the header values (base64url receipt documents).
    pub fn issue(&self, entries: &[ReceiptEntry<'_>]) -> Result<Vec<String>, ReceiptError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.current_key().ok_or(ReceiptError::NoKey)?;
        let now_ms = unix_ms(tollgate_core::clock::now());
        issue_with(&key, &self.origin, now_ms, entries)
    }
}

/// A durable record waiting for its receipt in a [`ReceiptWindow`]: its request id, its exact
/// audit line, and what answers its request once the receipt is signed (`None`: no receipt,
/// the task has no certified key; the record is kept all the same).
pub struct WaitingReceipt {
    /// The id the request is recorded under.
    pub request_id: String,
    /// The event's JSON line.
    pub line: String,
    /// Answers the request with its receipt.
    pub answer: Box<dyn FnOnce(Option<String>) + Send>,
}

impl std::fmt::Debug for WaitingReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WaitingReceipt({})", self.request_id)
    }
}

/// The receipt signer of an ingress task: it takes the receipted records of every commit once
/// it is durable and signs one statement over all that arrived within a signing window, then
/// answers each with its path in that tree. A signature is made at most once per window: the
/// first records after a quiet window are signed at once, later ones wait for the window since
/// the last signature to end. So a lone request waits at most the window after its commit, and
/// under load many commits share one signature (one Ed25519 signature is ~15 us of CPU; see
/// `docs/benchmarks.md`, "receipt_cpu"). A zero window signs each commit's records alone.
#[derive(Clone, Debug)]
pub struct ReceiptWindow {
    tx: tokio::sync::mpsc::UnboundedSender<Vec<WaitingReceipt>>,
}

impl ReceiptWindow {
    /// Starts the signer task. It ends, after signing what it holds, when every handle is
    /// dropped.
    pub fn start(issuer: Arc<ReceiptIssuer>, window: Duration) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self { tx }, tokio::spawn(run_window(issuer, window, rx)))
    }

    /// Hands over one durable commit's receipted records. If the signer has stopped they are
    /// answered at once without receipts.
    pub fn submit(&self, records: Vec<WaitingReceipt>) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.tx.send(records) {
            tracing::warn!(
                records = e.0.len(),
                "receipt signer stopped; answering without receipts"
            );
            for w in e.0 {
                (w.answer)(None);
            }
        }
    }
}

async fn run_window(
    issuer: Arc<ReceiptIssuer>,
    window: Duration,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<WaitingReceipt>>,
) {
    let mut last_signed: Option<tokio::time::Instant> = None;
    while let Some(first) = rx.recv().await {
        let mut waiting = first;
        if !window.is_zero() {
            // At most one signature per window: collect until a window has passed since the
            // last one (at once if it has), then take whatever else is already queued.
            if let Some(until) = last_signed
                .map(|t| t + window)
                .filter(|&u| u > tokio::time::Instant::now())
            {
                let sleep = tokio::time::sleep_until(until);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        more = rx.recv() => match more {
                            Some(more) => waiting.extend(more),
                            None => break,
                        },
                        () = &mut sleep => break,
                    }
                }
            }
            while let Ok(more) = rx.try_recv() {
                waiting.extend(more);
            }
        }
        sign_window(&issuer, waiting);
        last_signed = Some(tokio::time::Instant::now());
    }
}

/// Signs one tree over `waiting` and answers each request with its receipt (or none, logged).
fn sign_window(issuer: &ReceiptIssuer, waiting: Vec<WaitingReceipt>) {
    let entries: Vec<ReceiptEntry<'_>> = waiting
        .iter()
        .map(|w| ReceiptEntry {
            request_id: &w.request_id,
            line: w.line.as_bytes(),
        })
        .collect();
    let receipts = match issuer.issue(&entries) {
        Ok(receipts) => receipts.into_iter().map(Some).collect(),
        Err(e) => {
            tracing::warn!(error = %e, records = waiting.len(),
                "receipts not issued for a window; its records are kept and answered without them");
            vec![None; waiting.len()]
        }
    };
    drop(entries);
    for (w, r) in waiting.into_iter().zip(receipts) {
        (w.answer)(r);
    }
}

/// [`ReceiptIssuer::issue`] with a given key and time (what the benchmark times).
pub fn issue_with(
    key: &TaskKey,
    origin: &str,
    now_ms: u64,
    entries: &[ReceiptEntry<'_>],
) -> Result<Vec<String>, ReceiptError> {
    let mut hasher = merkle::Hasher::new();
    let mut tree = MemoryTree::with_capacity(entries.len());
    let mut leaves = Vec::with_capacity(entries.len());
    for e in entries {
        let leaf = hasher.leaf(e.line);
        tree.append_hash(leaf);
        leaves.push(leaf);
    }
    let size = entries.len() as u64;
    let root = tree.root(size).map_err(|e| ReceiptError::Invalid(e.to_string()))?;
    let statement_text = format!(
        "{STATEMENT_TYPE}\norigin {origin}\nsize {size}\nroot {}\ntime {now_ms}\n",
        B64.encode(root)
    );
    // A local key signs at once (no I/O): the signature is made here, not awaited elsewhere.
    let statement = note::now_or_never(note::sign_note(&statement_text, &[&key.signer]))
        .ok_or(ReceiptError::Invalid("the task key did not sign at once".into()))?
        .map_err(|e| ReceiptError::Invalid(e.to_string()))?;
    // The header value is three base64url parts (see [`Receipt::from_header`]): the statement's
    // and the certificate's are the same for the whole window, so they are encoded once.
    let statement_b64 = B64URL.encode(statement.as_bytes());
    let mut out = Vec::with_capacity(entries.len());
    let mut head = String::with_capacity(128 + 45 * MAX_PATH);
    for (i, (e, leaf)) in entries.iter().zip(&leaves).enumerate() {
        let path = merkle::prove_inclusion(i as u64, size, &tree).map_err(|e| ReceiptError::Invalid(e.to_string()))?;
        head.clear();
        encode_head(&mut head, e.request_id, i as u64, leaf, &path);
        let mut value =
            String::with_capacity(head.len() * 4 / 3 + 4 + statement_b64.len() + key.certificate_b64.len() + 2);
        B64URL.encode_string(head.as_bytes(), &mut value);
        value.push('.');
        value.push_str(&statement_b64);
        value.push('.');
        value.push_str(&key.certificate_b64);
        out.push(value);
    }
    Ok(out)
}

/// The receipt's own lines: the type, request, index, leaf and path lines, each ending in a
/// newline (the document's first part, before its blank line).
fn encode_head(doc: &mut String, request_id: &str, index: u64, leaf: &Hash, path: &[Hash]) {
    use std::fmt::Write;
    let _ = write!(doc, "{RECEIPT_TYPE}\nrequest {request_id}\nindex {index}\nleaf ");
    B64.encode_string(leaf, doc);
    doc.push('\n');
    for h in path {
        B64.encode_string(h, doc);
        doc.push('\n');
    }
}

fn encode_document(
    doc: &mut String,
    request_id: &str,
    index: u64,
    leaf: &Hash,
    path: &[Hash],
    statement: &str,
    certificate: &str,
) {
    encode_head(doc, request_id, index, leaf, path);
    doc.push('\n');
    doc.push_str(statement);
    doc.push('\n');
    doc.push_str(certificate);
}

/// A receipt document's parts (parsed, nothing verified yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The request id it was given for (bound to the event, whose line holds it: checked when
    /// the event is given).
    pub request_id: String,
    /// The event's index in its window's tree.
    pub index: u64,
    /// The event's RFC 6962 leaf hash.
    pub leaf: Hash,
    /// The inclusion path of the leaf in the window's tree.
    pub path: Vec<Hash>,
    /// The statement: a signed note by the task key.
    pub statement: String,
    /// The task key's certificate: a signed note by the log key.
    pub certificate: String,
}

/// What a verified receipt says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The request id.
    pub request_id: String,
    /// The log origin.
    pub origin: String,
    /// The event's index in its window's tree.
    pub index: u64,
    /// The tree's size (receipted events signed in its window).
    pub size: u64,
    /// When the statement was signed (Unix milliseconds).
    pub time_ms: u64,
    /// The task key that signed it.
    pub task_key: String,
    /// The event's leaf hash.
    pub leaf: Hash,
}

fn decode_hash(s: &str) -> Result<Hash, ReceiptError> {
    let bad = ReceiptError::Malformed("hash");
    // Canonical base64 only: one encoding per hash.
    let raw = B64.decode(s).map_err(|_| bad.clone())?;
    let hash: Hash = raw.try_into().map_err(|_| bad.clone())?;
    if B64.encode(hash) != s {
        return Err(bad);
    }
    Ok(hash)
}

fn decimal(s: &str, what: &'static str) -> Result<u64, ReceiptError> {
    // Decimal without sign or leading zeros, as C2SP tlog-checkpoint writes sizes.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(ReceiptError::Malformed(what));
    }
    s.parse().map_err(|_| ReceiptError::Malformed(what))
}

fn field<'a>(line: Option<&'a str>, name: &str, what: &'static str) -> Result<&'a str, ReceiptError> {
    line.and_then(|l| l.strip_prefix(name))
        .and_then(|l| l.strip_prefix(' '))
        .ok_or(ReceiptError::Malformed(what))
}

impl Receipt {
    /// Decodes a header value and parses the document. The value is three parts joined by
    /// `.`, each base64url without padding (RFC 4648 section 5): the receipt's own lines, the
    /// signed statement, the signed certificate; the document is the three decoded, joined by a
    /// newline (a blank line after each of the first two). Three parts, so that the ingress
    /// encodes a window's statement and a key's certificate once, not once per request.
    pub fn from_header(value: &str) -> Result<Self, ReceiptError> {
        let mut text = String::new();
        for (i, part) in value.trim().split('.').enumerate() {
            if i > 2 {
                return Err(ReceiptError::Malformed("more than three parts"));
            }
            let raw = B64URL
                .decode(part)
                .map_err(|_| ReceiptError::Malformed("not base64url"))?;
            if i > 0 {
                text.push('\n');
            }
            text.push_str(std::str::from_utf8(&raw).map_err(|_| ReceiptError::Malformed("not UTF-8"))?);
        }
        Self::parse(&text)
    }

    /// Parses a receipt document, or a header value holding one (what `verify-receipt` reads).
    pub fn parse_any(text: &str) -> Result<Self, ReceiptError> {
        if text.starts_with(RECEIPT_TYPE) {
            Self::parse(text)
        } else {
            Self::from_header(text)
        }
    }

    /// Parses a receipt document: the header lines, a blank line, the statement note, a blank
    /// line, the certificate note.
    pub fn parse(text: &str) -> Result<Self, ReceiptError> {
        let (head, rest) = text
            .split_once("\n\n")
            .ok_or(ReceiptError::Malformed("no blank line after the header"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(RECEIPT_TYPE) {
            return Err(ReceiptError::Malformed("not a tollgate-receipt/v1"));
        }
        let request_id = field(lines.next(), "request", "request line")?.to_owned();
        if !tollgate_core::ids::is_valid_request_id(&request_id) {
            return Err(ReceiptError::Malformed("request id"));
        }
        let index = decimal(field(lines.next(), "index", "index line")?, "index")?;
        let leaf = decode_hash(field(lines.next(), "leaf", "leaf line")?)?;
        let path = lines.map(decode_hash).collect::<Result<Vec<_>, _>>()?;
        if path.len() > MAX_PATH {
            return Err(ReceiptError::Malformed("path too long"));
        }
        // The statement's text has no blank line: its note ends at the second blank line.
        let text_end = rest.find("\n\n").ok_or(ReceiptError::Malformed("statement"))?;
        let sigs_end = rest[text_end + 2..]
            .find("\n\n")
            .map(|i| text_end + 2 + i)
            .ok_or(ReceiptError::Malformed("no certificate"))?;
        let statement = rest[..sigs_end + 1].to_owned();
        let certificate = rest[sigs_end + 2..].to_owned();
        Ok(Self {
            request_id,
            index,
            leaf,
            path,
            statement,
            certificate,
        })
    }

    /// The document's text (what [`Receipt::parse`] reads).
    pub fn to_text(&self) -> String {
        let mut doc = String::new();
        encode_document(
            &mut doc,
            &self.request_id,
            self.index,
            &self.leaf,
            &self.path,
            &self.statement,
            &self.certificate,
        );
        doc
    }

    /// Verifies the receipt offline: the certificate against the log's verifier keys, the
    /// statement against the certified task key within its validity window, the path from the
    /// leaf to the statement's root, and, when given, the event's exact line (its leaf hash
    /// and its request id).
    pub fn verify(&self, log_keys: &Verifiers, event_line: Option<&[u8]>) -> Result<VerifiedReceipt, ReceiptError> {
        let invalid = |what: &str, e: tollgate_tlog::Error| ReceiptError::Invalid(format!("{what}: {e}"));
        // 1. The certificate, signed by the log key, names the task key and its window.
        let cert = note::open_note(self.certificate.as_bytes(), log_keys).map_err(|e| invalid("certificate", e))?;
        let log_key_name = &cert.verified[0].name;
        let mut lines = cert.text.strip_suffix('\n').unwrap_or_default().split('\n');
        if lines.next() != Some(CERTIFICATE_TYPE) {
            return Err(ReceiptError::Malformed("certificate type"));
        }
        let origin = field(lines.next(), "origin", "certificate origin")?.to_owned();
        let task_key = field(lines.next(), "key", "certificate key")?;
        let not_before = decimal(field(lines.next(), "not-before", "not-before")?, "not-before")?;
        let not_after = decimal(field(lines.next(), "not-after", "not-after")?, "not-after")?;
        if lines.next().is_some() {
            return Err(ReceiptError::Malformed("certificate has extra lines"));
        }
        // The log key's name is the origin (docs/transparency-log.md "The key and the origin").
        if &origin != log_key_name {
            return Err(ReceiptError::Invalid(format!(
                "certificate origin {origin:?} is not the log key's name {log_key_name:?}"
            )));
        }
        let task = VerifierKey::parse(task_key).map_err(|e| invalid("certified key", e))?;
        if task.name() != format!("{origin}{TASK_KEY_SUFFIX}") {
            return Err(ReceiptError::Invalid(format!(
                "certified key name {:?} is not {origin}{TASK_KEY_SUFFIX}",
                task.name()
            )));
        }
        // 2. The statement, signed by the certified task key, within the window.
        let statement = note::open_note(self.statement.as_bytes(), &Verifiers::new(vec![task.clone()]))
            .map_err(|e| invalid("statement", e))?;
        let mut lines = statement.text.strip_suffix('\n').unwrap_or_default().split('\n');
        if lines.next() != Some(STATEMENT_TYPE) {
            return Err(ReceiptError::Malformed("statement type"));
        }
        if field(lines.next(), "origin", "statement origin")? != origin {
            return Err(ReceiptError::Invalid("the statement names another origin".into()));
        }
        let size = decimal(field(lines.next(), "size", "statement size")?, "size")?;
        let root = decode_hash(field(lines.next(), "root", "statement root")?)?;
        let time_ms = decimal(field(lines.next(), "time", "statement time")?, "time")?;
        if lines.next().is_some() {
            return Err(ReceiptError::Malformed("statement has extra lines"));
        }
        if !(not_before..=not_after).contains(&time_ms) {
            return Err(ReceiptError::Invalid(format!(
                "statement time {time_ms} outside the key's window {not_before}..{not_after}"
            )));
        }
        // 3. The path: the leaf is at `index` of the window's tree (RFC 9162 section 2.1.3.2).
        merkle::verify_inclusion(&self.leaf, self.index, size, &self.path, &root).map_err(|e| invalid("path", e))?;
        // 4. The event, when given: its line hashes to the leaf and names the request.
        if let Some(line) = event_line {
            if merkle::leaf_hash(line) != self.leaf {
                return Err(ReceiptError::Invalid(
                    "the event's line does not hash to the receipt's leaf".into(),
                ));
            }
            let id = std::str::from_utf8(line)
                .ok()
                .and_then(|l| tollgate_core::audit::event_request_id(l).ok());
            if id.as_deref() != Some(self.request_id.as_str()) {
                return Err(ReceiptError::Invalid(
                    "the event is not of the receipt's request".into(),
                ));
            }
        }
        Ok(VerifiedReceipt {
            request_id: self.request_id.clone(),
            origin,
            index: self.index,
            size,
            time_ms,
            task_key: task.to_string(),
            leaf: self.leaf,
        })
    }
}

/// Whether a request's `Prefer` header fields ask for a receipt (RFC 7240 section 2: fields
/// are comma-separated lists of preferences, `token [= value] *(; parameter)`, token names
/// compared case-insensitively; a value or parameters do not change this preference).
pub fn prefers_receipt(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|pref| {
            let token = pref.split([';', '=']).next().unwrap_or_default().trim();
            token.eq_ignore_ascii_case(PREFERENCE)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, n: usize) -> String {
        format!(r#"{{"event_version":"2","request_id":"{id}","n":{n}}}"#)
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|_| tollgate_core::ids::new_request_id()).collect()
    }

    #[tokio::test]
    async fn receipts_of_every_commit_size_verify_and_name_their_event() {
        let log = Ed25519Signer::generate("tollgate.test/abc").unwrap();
        let vkeys = Verifiers::new(vec![log.verifier_key()]);
        let issuer = ReceiptIssuer::with_key(
            "tollgate.test/abc",
            TaskKey::certify(&log, Duration::from_secs(60)).await.unwrap(),
        );
        for n in [1, 2, 3, 7, 8, 9, 64] {
            let ids = ids(n);
            let lines: Vec<String> = ids.iter().enumerate().map(|(i, id)| line(id, i)).collect();
            let entries: Vec<ReceiptEntry> = ids
                .iter()
                .zip(&lines)
                .map(|(id, l)| ReceiptEntry {
                    request_id: id,
                    line: l.as_bytes(),
                })
                .collect();
            let headers = issuer.issue(&entries).unwrap();
            assert_eq!(headers.len(), n);
            for (i, h) in headers.iter().enumerate() {
                assert!(h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
                assert_eq!(h.split('.').count(), 3);
                let r = Receipt::from_header(h).unwrap();
                assert_eq!(Receipt::parse(&r.to_text()).unwrap(), r);
                let v = r.verify(&vkeys, Some(lines[i].as_bytes())).unwrap();
                assert_eq!(
                    (v.index, v.size, v.request_id.as_str()),
                    (i as u64, n as u64, ids[i].as_str())
                );
                // Another event, or another request's, is refused.
                assert!(r.verify(&vkeys, Some(lines[(i + 1) % n].as_bytes())).is_err() || n == 1);
                let forged = line(&ids[i], 999);
                assert!(r.verify(&vkeys, Some(forged.as_bytes())).is_err());
            }
        }
    }

    #[tokio::test]
    async fn tampered_receipts_are_refused() {
        let log = Ed25519Signer::generate("tollgate.test/abc").unwrap();
        let vkeys = Verifiers::new(vec![log.verifier_key()]);
        let key = TaskKey::certify(&log, Duration::from_secs(60)).await.unwrap();
        let ids = ids(5);
        let lines: Vec<String> = ids.iter().enumerate().map(|(i, id)| line(id, i)).collect();
        let entries: Vec<ReceiptEntry> = ids
            .iter()
            .zip(&lines)
            .map(|(id, l)| ReceiptEntry {
                request_id: id,
                line: l.as_bytes(),
            })
            .collect();
        let good = Receipt::from_header(
            &issue_with(
                &key,
                "tollgate.test/abc",
                unix_ms(tollgate_core::clock::now()),
                &entries,
            )
            .unwrap()[2],
        )
        .unwrap();
        good.verify(&vkeys, None).unwrap();
        // A path hash changed; the index changed; the leaf changed.
        let mut r = good.clone();
        r.path[0][0] ^= 1;
        assert!(r.verify(&vkeys, None).is_err());
        let mut r = good.clone();
        r.index = 3;
        assert!(r.verify(&vkeys, None).is_err());
        let mut r = good.clone();
        r.leaf[5] ^= 1;
        assert!(r.verify(&vkeys, None).is_err());
        // The statement's size or root changed (its signature then fails).
        let mut r = good.clone();
        r.statement = r.statement.replacen("size 5", "size 6", 1);
        assert!(matches!(r.verify(&vkeys, None), Err(ReceiptError::Invalid(_))));
        // The certificate's window widened; a certificate from another log key; a statement
        // signed by an uncertified key of the right name.
        let mut r = good.clone();
        r.certificate = r.certificate.replacen("not-after ", "not-after 9", 1);
        assert!(r.verify(&vkeys, None).is_err());
        let other_log = Ed25519Signer::generate("tollgate.test/abc").unwrap();
        let other = TaskKey::certify(&other_log, Duration::from_secs(60)).await.unwrap();
        let mut r = good.clone();
        r.certificate = other.certificate().to_owned();
        assert!(r.verify(&vkeys, None).is_err());
        let rogue = Receipt::from_header(
            &issue_with(
                &other,
                "tollgate.test/abc",
                unix_ms(tollgate_core::clock::now()),
                &entries,
            )
            .unwrap()[2],
        )
        .unwrap();
        let mut r = rogue.clone();
        r.certificate = good.certificate.clone();
        assert!(r.verify(&vkeys, None).is_err());
        // A statement outside the key's window.
        let late =
            Receipt::from_header(&issue_with(&key, "tollgate.test/abc", key.not_after_ms + 1, &entries).unwrap()[2])
                .unwrap();
        assert!(late.verify(&vkeys, None).is_err());
        // The log key signing the statement directly is not a certified task key.
        assert!(rogue
            .verify(&Verifiers::new(vec![other_log.verifier_key()]), None)
            .is_ok());
        assert!(rogue.verify(&vkeys, None).is_err());
    }

    #[test]
    fn the_prefer_header_is_read_as_rfc_7240_says() {
        let mut h = http::HeaderMap::new();
        assert!(!prefers_receipt(&h));
        for v in [
            "tollgate-receipt",
            "respond-async, Tollgate-Receipt",
            "return=minimal,tollgate-receipt; x=1",
            " TOLLGATE-RECEIPT=yes",
        ] {
            h.insert("prefer", http::HeaderValue::from_str(v).unwrap());
            assert!(prefers_receipt(&h), "{v}");
        }
        h.insert("prefer", http::HeaderValue::from_static("return=minimal"));
        assert!(!prefers_receipt(&h));
        h.append("prefer", http::HeaderValue::from_static("tollgate-receipt"));
        assert!(prefers_receipt(&h));
        h.insert(
            "prefer",
            http::HeaderValue::from_static("tollgate-receipts, x-tollgate-receipt"),
        );
        assert!(!prefers_receipt(&h));
    }
}
