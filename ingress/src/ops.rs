//! The operator commands that read the request log: `tollgate requests list|get` and
//! `tollgate export`. They open the mode's store (SQLite and the directory, or the Data API and
//! S3) and answer through the requests-api function's own code, so a filter, a cursor or an
//! error means the same thing here as on `GET /v1/requests`. They read; they never write.

use crate::cli::{ExportArgs, ListArgs};
use crate::config::IngressConfig;
use anyhow::Context;
use std::io::Write;
use tollgate_requests_api::{parse_list_query, ApiError, RequestsApi};

async fn api(config: &IngressConfig) -> anyhow::Result<RequestsApi> {
    let backends = crate::backends::open(&config.mode)
        .await
        .map_err(anyhow::Error::msg)
        .context("opening the request log and object store")?;
    Ok(RequestsApi::new(backends.log, backends.store).with_tlog(backends.tlog, backends.trail))
}

/// An API error as the command's error: its RFC 9457 body, as the route would answer.
fn failed(e: &ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", String::from_utf8_lossy(&e.problem("")))
}

/// `tollgate requests list`: one page, as `GET /v1/requests` answers it.
pub async fn list(config: &IngressConfig, args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let query = parse_list_query(&args.params()).map_err(|e| failed(&e))?;
    let (_, body) = api(config).await?.list(&query).await.map_err(|e| failed(&e))?;
    out.write_all(&body)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `tollgate requests get ID`: the record and its audit event.
pub async fn get(config: &IngressConfig, request_id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    if !tollgate_core::ids::is_valid_request_id(request_id) {
        anyhow::bail!("{request_id:?} is not a request id");
    }
    let (_, body) = api(config).await?.get(request_id).await.map_err(|e| failed(&e))?;
    out.write_all(&body)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `tollgate prove ID`: the C2SP tlog-proof of the request's audit event, from the store.
pub async fn prove(config: &IngressConfig, request_id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    if !tollgate_core::ids::is_valid_request_id(request_id) {
        anyhow::bail!("{request_id:?} is not a request id");
    }
    let proof = api(config)
        .await?
        .proof_as(request_id, &tollgate_requests_api::Reader::All)
        .await
        .map_err(|e| failed(&e))?;
    out.write_all(proof.as_bytes())?;
    Ok(())
}

/// `tollgate verify-proof FILE --vkey KEY [--event FILE]`: checks the proof with
/// `tollgate_tlog::verify_proof` and nothing else (no store, no network). The event is its
/// exact line in the audit object; one trailing newline is not part of it.
pub fn verify_proof(
    file: &std::path::Path,
    vkey: &str,
    event: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::io::Read;
    let proof = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let verifiers = log_verifiers(vkey)?;
    let mut line = Vec::new();
    match event {
        Some(p) => line = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            std::io::stdin()
                .read_to_end(&mut line)
                .context("reading the event from stdin")?;
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    let (index, size) = tollgate_tlog::verify_proof(&proof, &line, &verifiers).context("the proof does not verify")?;
    writeln!(out, "ok: the event is entry {index} of the log's tree of size {size}")?;
    Ok(())
}

/// The log's verifier key, given inline or as a file holding it.
fn log_verifiers(vkey: &str) -> anyhow::Result<tollgate_tlog::Verifiers> {
    let vkey = match std::fs::read_to_string(vkey) {
        Ok(text) => text.trim().to_string(),
        Err(_) => vkey.trim().to_string(),
    };
    tollgate_tlog::Verifiers::parse(&[vkey]).context("the verifier key")
}

/// Reads a receipt file: the header value (base64url) or its decoded document.
fn read_receipt(file: &std::path::Path) -> anyhow::Result<crate::receipt::Receipt> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    crate::receipt::Receipt::parse_any(&text).context("the receipt")
}

/// `tollgate verify-receipt FILE --vkey KEY [--event FILE]`: checks the receipt offline with
/// [`crate::receipt::Receipt::verify`] (no store, no network). The event, when given, is its
/// exact line in the audit object; one trailing newline is not part of it.
pub fn verify_receipt(
    file: &std::path::Path,
    vkey: &str,
    event: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let receipt = read_receipt(file)?;
    let verifiers = log_verifiers(vkey)?;
    let line = match event {
        Some(p) => {
            let mut line = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            Some(line)
        }
        None => None,
    };
    let v = receipt
        .verify(&verifiers, line.as_deref())
        .context("the receipt does not verify")?;
    writeln!(
        out,
        "ok: request {} is entry {} of a commit of {} signed at {} ms by {} (certified by {}){}",
        v.request_id,
        v.index,
        v.size,
        v.time_ms,
        v.task_key,
        v.origin,
        if line.is_some() { "; the event matches" } else { "" }
    )?;
    Ok(())
}

/// `tollgate prove --receipt FILE`: the C2SP tlog-proof of a receipt's event once it is
/// sequenced, after checking that the entry the log holds for the request is the receipt's
/// leaf (its inclusion path, from the receipt's leaf hash, leads to the checkpoint's root).
pub async fn prove_receipt(config: &IngressConfig, file: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let receipt = read_receipt(file)?;
    let proof = api(config)
        .await?
        .proof_as(&receipt.request_id, &tollgate_requests_api::Reader::All)
        .await
        .map_err(|e| failed(&e))?;
    let parsed = tollgate_tlog::TlogProof::parse(&proof).context("the log's proof")?;
    let note = tollgate_tlog::note::parse_unverified(parsed.checkpoint.as_bytes()).context("the proof's checkpoint")?;
    let checkpoint = tollgate_tlog::Checkpoint::parse(&note.text).context("the proof's checkpoint")?;
    tollgate_tlog::merkle::verify_inclusion(
        &receipt.leaf,
        parsed.index,
        checkpoint.size,
        &parsed.path,
        &checkpoint.root,
    )
    .map_err(|_| {
        anyhow::anyhow!(
            "the log's entry for request {} is not the receipt's event (its leaf hash differs)",
            receipt.request_id
        )
    })?;
    out.write_all(proof.as_bytes())?;
    Ok(())
}

/// `tollgate log-key`: the transparency log's verifier key in the note `vkey` format: of the key
/// file in embedded mode (made on first start, so this makes it if nothing has run yet), of the
/// KMS key `TOLLGATE_LOG_KMS_KEY_ID` in aws mode (its public key, read with `GetPublicKey`).
pub async fn log_key(config: &IngressConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let storage = &config.mode.storage;
    if storage.mode != tollgate_core::backends::Mode::Embedded {
        return aws_log_key(config, out).await;
    }
    std::fs::create_dir_all(&storage.data_dir).with_context(|| format!("creating {}", storage.data_dir.display()))?;
    let signer = tollgate_core::translog::load_or_create_key(
        &storage.data_dir.join(tollgate_core::translog::KEY_FILE),
        storage.log_origin.as_deref(),
        &tollgate_embedded::default_origin(&storage.data_dir),
    )
    .map_err(anyhow::Error::msg)?;
    writeln!(out, "{}", signer.verifier_key())?;
    Ok(())
}

#[cfg(feature = "aws")]
async fn aws_log_key(config: &IngressConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let aws = config.mode.aws.as_ref().context("aws mode without AWS settings")?;
    let key_id = aws
        .log_kms_key_id
        .as_deref()
        .context("TOLLGATE_LOG_KMS_KEY_ID is not set: this log signs no checkpoints, so it has no key")?;
    let origin = config
        .mode
        .storage
        .log_origin
        .as_deref()
        .context("TOLLGATE_LOG_KMS_KEY_ID needs TOLLGATE_LOG_ORIGIN")?;
    let sdk = tollgate_aws::sdk::config().await;
    let vkey = tollgate_aws::kms::verifier_key(tollgate_aws::kms::client(&sdk), key_id, origin).await?;
    writeln!(out, "{vkey}")?;
    Ok(())
}

#[cfg(not(feature = "aws"))]
async fn aws_log_key(_: &IngressConfig, _: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("aws mode needs a tollgate built with the aws feature")
}

/// `tollgate export`: every record received in [since, until), page by page (newest first, as
/// the log is indexed), one JSON object a line. Returns once the last page is written.
pub async fn export(config: &IngressConfig, args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<u64> {
    let api = api(config).await?;
    let mut list = ListArgs {
        since: args.since.clone(),
        until: args.until.clone(),
        limit: args.page_size.clone(),
        ..ListArgs::default()
    };
    let mut written = 0u64;
    let mut out = std::io::BufWriter::new(out);
    loop {
        let query = parse_list_query(&list.params()).map_err(|e| failed(&e))?;
        let (_, body) = api.list(&query).await.map_err(|e| failed(&e))?;
        let page: serde_json::Value = serde_json::from_slice(&body).context("reading a page")?;
        for record in page["requests"].as_array().into_iter().flatten() {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => list.cursor = Some(c.to_string()),
            None => break,
        }
    }
    out.flush()?;
    Ok(written)
}

/// The key store of the mode (the request log's database).
async fn key_store(config: &IngressConfig) -> anyhow::Result<std::sync::Arc<dyn tollgate_core::KeyStore>> {
    let backends = crate::backends::open(&config.mode)
        .await
        .map_err(anyhow::Error::msg)
        .context("opening the request log")?;
    Ok(backends.keys)
}

/// Makes and stores a key; the returned token is the only copy of its secret.
pub async fn create_key(
    keys: &dyn tollgate_core::KeyStore,
    name: &str,
    scopes: &[String],
    expires_in: Option<std::time::Duration>,
) -> anyhow::Result<tollgate_core::access::IssuedApiKey> {
    anyhow::ensure!(!name.trim().is_empty(), "a key needs a name");
    let scopes: Vec<String> = scopes
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    anyhow::ensure!(!scopes.is_empty(), "a key needs at least one scope");
    if let Some(bad) = scopes.iter().find(|s| !tollgate_core::access::valid_scope(s)) {
        anyhow::bail!("{bad:?} is not a valid scope (printable ASCII, no spaces or quotes)");
    }
    let issued = tollgate_core::access::issue_api_key()?;
    let now = tollgate_core::clock::now();
    let record = tollgate_core::access::ApiKeyRecord {
        key_id: issued.key_id.clone(),
        name: name.trim().to_string(),
        scopes,
        secret_sha256: issued.secret_sha256.clone(),
        created_at: now,
        expires_at: expires_in.map(|d| now + d),
        revoked_at: None,
    };
    keys.create_key(&record).await.context("storing the key")?;
    Ok(issued)
}

/// `tollgate keys create`: prints the key (the only time its secret is shown).
pub async fn keys_create(
    config: &IngressConfig,
    name: &str,
    scopes: &[String],
    expires_in: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let expires_in = expires_in
        .map(crate::cli::parse_expiry)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let keys = key_store(config).await?;
    let issued = create_key(&*keys, name, scopes, expires_in).await?;
    writeln!(out, "{}", issued.token)?;
    eprintln!(
        "tollgate: key {} created; the line above is its only copy (send it as Authorization: Bearer <key>)",
        issued.key_id
    );
    Ok(())
}

/// `tollgate keys list`: every key, one JSON object a line, never a secret.
pub async fn keys_list(config: &IngressConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let keys = key_store(config).await?;
    for key in keys.list_keys().await.context("listing keys")? {
        serde_json::to_writer(&mut *out, &key)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `tollgate keys revoke ID`.
pub async fn keys_revoke(config: &IngressConfig, key_id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let keys = key_store(config).await?;
    if keys
        .revoke_key(key_id, tollgate_core::clock::now())
        .await
        .context("revoking the key")?
    {
        writeln!(
            out,
            "revoked {key_id}; running ingresses refuse it within their key cache time (TOLLGATE_AUTH_CACHE_MS)"
        )?;
        Ok(())
    } else {
        anyhow::bail!("no unrevoked key {key_id}")
    }
}

/// The embedded first start: with no key at all, one `requests:read` key is made so that the
/// request log can be read at once, written to `<data dir>/admin-key` (mode 0600, created only
/// if absent) and shown on the terminal only (never in the logs). Returns the file written.
pub async fn first_start_admin_key(
    keys: &dyn tollgate_core::KeyStore,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    if keys.count_keys().await.context("counting keys")? > 0 {
        return Ok(None);
    }
    let path = data_dir.join(ADMIN_KEY_FILE);
    // The file first: if it cannot be made (it exists, say), no key is stored that nobody holds.
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?
    };
    let issued = match create_key(keys, "admin (first start)", &["requests:read".to_string()], None).await {
        Ok(k) => k,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    writeln!(file, "{}", issued.token)?;
    file.sync_all()?;
    tracing::info!(key_id = %issued.key_id, file = %path.display(), scopes = "requests:read", "first start: API key created");
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!(
            "\ntollgate: first start: an API key with scope requests:read (shown once; also in {}):\n\n    {}\n",
            path.display(),
            issued.token
        );
    }
    Ok(Some(path))
}

/// Where the embedded first start writes its key, inside the data directory.
pub const ADMIN_KEY_FILE: &str = "admin-key";

/// A progress bar on stderr for `tollgate verify` (drawn only when stderr is a terminal).
struct Bar(indicatif::ProgressBar);

impl tollgate_verify::Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        self.0.reset();
        self.0.set_length(total);
        self.0.set_message(phase.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// `tollgate verify`: checks the whole trail of the mode's stores and prints the report;
/// `Ok(false)` when something was found wrong.
pub async fn verify(
    config: &IngressConfig,
    args: &crate::cli::VerifyArgs,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    let time = |what: &str, v: &Option<String>| -> anyhow::Result<Option<time::OffsetDateTime>> {
        v.as_deref()
            .map(|s| {
                tollgate_core::clock::parse_rfc3339(s)
                    .with_context(|| format!("--{what} {s:?} is not an RFC 3339 time"))
            })
            .transpose()
    };
    let (from, to) = (time("from", &args.from)?, time("to", &args.to)?);
    let storage = &config.mode.storage;
    let vkey = match &args.vkey {
        Some(k) => match std::fs::read_to_string(k) {
            Ok(text) => text.trim().to_string(),
            Err(_) => k.trim().to_string(),
        },
        None if storage.mode == tollgate_core::backends::Mode::Embedded => {
            let path = storage.data_dir.join(tollgate_core::translog::KEY_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("no --vkey and no log key at {}", path.display()))?;
            tollgate_tlog::Ed25519Signer::parse(text.trim())
                .with_context(|| format!("{}", path.display()))?
                .verifier_key()
                .to_string()
        }
        None => anyhow::bail!("aws mode: pass the log's verifier key with --vkey (a stack output)"),
    };
    let verifier = tollgate_tlog::VerifierKey::parse(&vkey).context("the verifier key")?;
    let auditor_checkpoint = args
        .checkpoint
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let backends = crate::backends::open(&config.mode)
        .await
        .map_err(anyhow::Error::msg)
        .context("opening the request log and the stores")?;
    let digest = &config.digest;
    let options = tollgate_verify::Options {
        verifier,
        from,
        to,
        auditor_checkpoint,
        now: tollgate_core::clock::now(),
        // The digest of a period is due once its grace is over and the digester has run
        // (twice, for a pass that was running at that moment): the in-process timer in embedded
        // mode, the function's schedule in aws mode (15 minutes by default: with the timer's
        // tick there, every verify run in the minutes before the next scheduled run found the
        // newest period missing).
        settle: digest.grace
            + 2 * match storage.mode {
                tollgate_core::backends::Mode::Embedded => tollgate_audit_digest::tick_interval(digest.period),
                tollgate_core::backends::Mode::Aws => std::time::Duration::from_millis(args.digest_schedule_ms),
            },
        period: digest.period,
        concurrency: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
    };
    let sources = tollgate_verify::Sources {
        audit: backends.store,
        trail: backends.trail,
        tlog: backends.tlog,
        log: backends.log,
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = tollgate_verify::verify(&sources, &options, &Bar(bar)).await?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(report.to_text().as_bytes())?;
    }
    out.flush()?;
    Ok(report.ok())
}
