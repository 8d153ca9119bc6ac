//! Per-request receipts end to end (issue 15 item 4; docs/transparency-log.md, "Receipts"):
//! many clients at once over real HTTP on loopback against an in-process embedded ingress, a
//! mix of requests asking with `Prefer: tollgate-receipt`, on a `receipt = true` route, both,
//! and neither. Receipts come only on the requests that asked; every one verifies offline at
//! once against the log's verifier key (and with `tollgate verify-receipt`); its leaf is the
//! event's exact line in its audit object; once sequenced, `tollgate prove --receipt` gives
//! the C2SP tlog-proof, which verifies; tampered receipts are refused; records and audit
//! events are the same with or without a receipt.

mod common;

use base64::Engine;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;
use tollgate_ingress::receipt::{Receipt, ReceiptEntry, ReceiptIssuer, TaskKey};

const CONNECTIONS: usize = 16;
const PER_CONNECTION: usize = 25;

/// How a request asks for a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// `Prefer: tollgate-receipt` on a route without the option.
    Prefer,
    /// The `receipt = true` route, no header.
    Route,
    /// Both, with another preference in the same field.
    Both,
    /// Neither.
    Neither,
    /// Another preference only.
    OtherPreference,
}

impl Ask {
    fn of(i: usize) -> Self {
        [
            Self::Prefer,
            Self::Route,
            Self::Both,
            Self::Neither,
            Self::OtherPreference,
        ][i % 5]
    }

    fn wants(self) -> bool {
        matches!(self, Self::Prefer | Self::Route | Self::Both)
    }

    fn prefers(self) -> bool {
        matches!(self, Self::Prefer | Self::Both)
    }
}

struct Answer {
    ask: Ask,
    id: String,
    receipt: Option<String>,
    applied: Option<String>,
    vary: Vec<String>,
}

fn header(reply: &Reply, name: &str) -> Option<String> {
    reply.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

fn run(args: &[&std::ffi::OsStr], data: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env("TOLLGATE_DATA_DIR", data)
        .env_remove("RUST_LOG")
        .output()
        .expect("run tollgate")
}

/// A receipt document with one byte of its statement's signature changed.
fn with_bad_statement_signature(r: &Receipt) -> Receipt {
    let mut r = r.clone();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (text, sigs) = r.statement.split_once("\n\n").unwrap();
    let (prefix, sig) = sigs.trim_end().rsplit_once(' ').unwrap();
    let mut raw = b64.decode(sig).unwrap();
    raw[20] ^= 0x01;
    r.statement = format!("{text}\n\n{prefix} {}\n", b64.encode(raw));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_at_once_and_prove_once_sequenced() {
    // A short linger so that concurrent requests share commits (and so a receipt tree).
    let mut ing = InProcess::start(&[("TOLLGATE_COMMIT_LINGER_MS", "3")], |_| {}).await;
    let (addr, data) = (ing.addr, ing.dir.0.clone());
    let vkey_out = run(&["log-key".as_ref()], &data);
    assert!(
        vkey_out.status.success(),
        "{}",
        String::from_utf8_lossy(&vkey_out.stderr)
    );
    let vkey = String::from_utf8(vkey_out.stdout).unwrap().trim().to_string();
    let verifiers = tollgate_tlog::Verifiers::parse(&[vkey.as_str()]).unwrap();

    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut out = Vec::new();
            for i in 0..PER_CONNECTION {
                let ask = Ask::of(c + i);
                let (method, path, headers): (&str, String, Vec<(&str, &str)>) = match ask {
                    Ask::Prefer => ("GET", format!("/v1/echo/{c}/{i}"), vec![("prefer", "tollgate-receipt")]),
                    Ask::Route => ("GET", format!("/v1/receipted/{c}/{i}"), vec![]),
                    Ask::Both => (
                        "POST",
                        format!("/v1/receipted/{c}/{i}"),
                        vec![("prefer", "return=minimal, Tollgate-Receipt")],
                    ),
                    Ask::Neither => ("GET", format!("/v1/echo/{c}/{i}"), vec![]),
                    Ask::OtherPreference => ("GET", format!("/v1/echo/{c}/{i}"), vec![("prefer", "return=minimal")]),
                };
                let body = if method == "POST" { "body" } else { "" };
                let reply = client.send(method, &path, &headers, body).await.unwrap();
                assert_eq!(reply.status, 200, "{path}");
                out.push(Answer {
                    ask,
                    id: reply.request_id(),
                    receipt: header(&reply, "tollgate-receipt"),
                    applied: header(&reply, "preference-applied"),
                    vary: reply
                        .headers
                        .get_all("vary")
                        .iter()
                        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
                        .collect(),
                });
            }
            out
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    // A refusal is recorded like any answer: a client that asks gets its receipt too.
    let refused = request(addr, "GET", "/nope", &[("prefer", "tollgate-receipt")], "").await;
    refused.assert_error(404, "route_not_found");
    let refused_id = refused.request_id();
    answers.push(Answer {
        ask: Ask::Prefer,
        id: refused.request_id(),
        receipt: header(&refused, "tollgate-receipt"),
        applied: header(&refused, "preference-applied"),
        vary: vec!["prefer".into()],
    });

    // Receipts on exactly the requests that asked; Preference-Applied only where Prefer asked.
    let mut commits: BTreeMap<String, u64> = BTreeMap::new();
    let mut receipts: BTreeMap<String, Receipt> = BTreeMap::new();
    for a in &answers {
        assert_eq!(a.receipt.is_some(), a.ask.wants(), "{:?} {}", a.ask, a.id);
        let applied = a.applied.as_deref().map(str::to_ascii_lowercase);
        assert_eq!(
            applied.as_deref(),
            a.ask.prefers().then_some("tollgate-receipt"),
            "{:?}",
            a.ask
        );
        let Some(h) = &a.receipt else { continue };
        assert!(
            a.vary.iter().any(|v| v.contains("prefer")),
            "Vary: Prefer with a receipt"
        );
        // Offline, at once: the certificate, the statement, the path.
        let r = Receipt::from_header(h).unwrap();
        let v = r.verify(&verifiers, None).unwrap_or_else(|e| panic!("{}: {e}", a.id));
        assert_eq!(v.request_id, a.id);
        commits.insert(r.statement.clone(), v.size);
        receipts.insert(a.id.clone(), r);
    }
    let wanted = answers.iter().filter(|a| a.ask.wants()).count();
    assert_eq!(receipts.len(), wanted);
    let sizes: Vec<u64> = commits.values().copied().collect();
    println!(
        "receipts: {} over {} signed commits; commit sizes (receipted events) max {}, mean {:.1}",
        receipts.len(),
        commits.len(),
        sizes.iter().max().unwrap(),
        receipts.len() as f64 / commits.len() as f64
    );
    assert!(
        sizes.iter().any(|&s| s > 1),
        "concurrent requests shared no signed commit"
    );
    assert!(
        commits.len() < receipts.len(),
        "one signature per commit, not per request"
    );

    // Once sequenced and integrated, every receipt's event proves.
    let (log, tlog) = (ing.backends.log.clone(), ing.backends.tlog.clone());
    let ids: Vec<String> = receipts.keys().cloned().collect();
    assert!(
        eventually(Duration::from_secs(60), || {
            let (log, tlog, ids) = (log.clone(), tlog.clone(), ids.clone());
            async move {
                let size = tlog.tlog_state().await.unwrap().size;
                for id in &ids {
                    let row = log.get(id).await.unwrap();
                    if row.and_then(|r| r.log_index).is_none_or(|i| i >= size) {
                        return false;
                    }
                }
                true
            }
        })
        .await,
        "every receipted event is in a signed checkpoint"
    );
    ing.stop().await;
    let every_id: Vec<String> = answers.iter().map(|a| a.id.clone()).collect();
    assert_exactly_once(&data, &every_id).await;

    // The events' exact lines, from the audit objects.
    let store = dir_store(&data);
    let mut line_of: BTreeMap<String, String> = BTreeMap::new();
    for key in tollgate_core::ports::ObjectStore::list(&store, "audit/v1/")
        .await
        .unwrap()
    {
        let object = tollgate_core::ports::ObjectStore::get(&store, &key)
            .await
            .unwrap()
            .unwrap();
        for line in tollgate_core::audit::decode(&object).unwrap() {
            line_of.insert(tollgate_core::audit::event_request_id(&line).unwrap(), line);
        }
    }
    // The receipt changed nothing recorded: no receipt header in any event, and the events of
    // requests with and without receipts have the same fields.
    let fields = |line: &str| -> BTreeSet<String> {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    let plain = answers.iter().find(|a| a.ask == Ask::Neither).unwrap();
    for a in &answers {
        let line = &line_of[&a.id];
        assert!(!line.to_ascii_lowercase().contains("tollgate-receipt\":"), "{line}");
        assert!(!line.contains("preference-applied"), "{line}");
        if a.id != refused_id {
            assert_eq!(fields(line), fields(&line_of[&plain.id]));
        }
    }

    let config = config_for(&data, &[]);
    let tmp = TempDir::new("receipts");
    for (n, (id, r)) in receipts.iter().enumerate() {
        let line = line_of[id].as_bytes();
        // The leaf is the event's line as the audit writer wrote it.
        r.verify(&verifiers, Some(line)).unwrap();
        let file = tmp.0.join("r");
        // Both encodings are read: the header value and the decoded document.
        let text = if n % 2 == 0 {
            answers_header(&answers, id)
        } else {
            r.to_text()
        };
        std::fs::write(&file, text).unwrap();
        let mut proof = Vec::new();
        tollgate_ingress::ops::prove_receipt(&config, &file, &mut proof)
            .await
            .unwrap();
        let proof = String::from_utf8(proof).unwrap();
        let (index, size) = tollgate_tlog::verify_proof(&proof, line, &verifiers).unwrap();
        assert!(index < size);
    }

    // The commands, on a sample: verify-receipt (with and without the event), prove --receipt,
    // and verify-proof of what it printed.
    let file = tmp.0.join("receipt");
    let event = tmp.0.join("event");
    let proof_file = tmp.0.join("proof");
    for id in ids.iter().step_by(ids.len() / 3) {
        std::fs::write(&file, answers_header(&answers, id)).unwrap();
        std::fs::write(&event, format!("{}\n", line_of[id])).unwrap();
        for args in [
            vec![
                "verify-receipt".as_ref(),
                file.as_os_str(),
                "--vkey".as_ref(),
                vkey.as_ref(),
            ],
            vec![
                "verify-receipt".as_ref(),
                file.as_os_str(),
                "--vkey".as_ref(),
                vkey.as_ref(),
                "--event".as_ref(),
                event.as_os_str(),
            ],
        ] {
            let out = run(&args, &data);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("ok: request {id}")));
        }
        let out = run(&["prove".as_ref(), "--receipt".as_ref(), file.as_os_str()], &data);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&proof_file, &out.stdout).unwrap();
        let out = run(
            &[
                "verify-proof".as_ref(),
                proof_file.as_os_str(),
                "--vkey".as_ref(),
                vkey.as_ref(),
                "--event".as_ref(),
                event.as_os_str(),
            ],
            &data,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // Tampered receipts are refused by `tollgate verify-receipt`.
    let (id, good) = receipts.iter().nth(1).unwrap();
    let other_id = receipts.keys().next().unwrap();
    let origin = verifiers_name(&vkey);
    let mut bad_path = good.clone();
    if let Some(h) = bad_path.path.first_mut() {
        h[0] ^= 1;
    } else {
        bad_path.leaf[0] ^= 1;
    }
    let mut moved = good.clone();
    moved.index += 1;
    // A log key of the same name that is not the log's: its certificate, and a receipt of a
    // task key it certified.
    let rogue_log = tollgate_tlog::Ed25519Signer::generate(&origin).unwrap();
    let rogue_key = TaskKey::certify(&rogue_log, Duration::from_secs(600)).await.unwrap();
    let mut foreign_cert = good.clone();
    foreign_cert.certificate = rogue_key.certificate().to_string();
    let rogue = ReceiptIssuer::with_key(&origin, rogue_key);
    let forged = Receipt::from_header(
        &rogue
            .issue(&[ReceiptEntry {
                request_id: id,
                line: line_of[id].as_bytes(),
            }])
            .unwrap()[0],
    )
    .unwrap();
    let mut forged_with_real_cert = forged.clone();
    forged_with_real_cert.certificate = good.certificate.clone();
    let cases: Vec<(&str, Receipt, Option<&str>)> = vec![
        ("a path hash changed", bad_path, None),
        ("another index", moved, None),
        (
            "the statement's signature changed",
            with_bad_statement_signature(good),
            None,
        ),
        ("a certificate by another key", foreign_cert, None),
        ("a statement by an uncertified key", forged, None),
        (
            "an uncertified key with the real certificate",
            forged_with_real_cert,
            None,
        ),
        ("another request's event", good.clone(), Some(other_id.as_str())),
    ];
    for (what, r, event_of) in cases {
        std::fs::write(&file, r.to_text()).unwrap();
        let mut args = vec![
            "verify-receipt".as_ref(),
            file.as_os_str(),
            "--vkey".as_ref(),
            vkey.as_ref(),
        ];
        if let Some(other) = event_of {
            std::fs::write(&event, &line_of[other]).unwrap();
            args.extend(["--event".as_ref(), event.as_os_str()]);
        }
        let out = run(&args, &data);
        assert!(!out.status.success(), "{what}: verified");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("receipt"),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `prove --receipt` refuses a receipt whose leaf is not the event the log holds.
    let mut other_leaf = good.clone();
    other_leaf.leaf = tollgate_tlog::merkle::leaf_hash(line_of[other_id].as_bytes());
    std::fs::write(&file, other_leaf.to_text()).unwrap();
    let out = run(&["prove".as_ref(), "--receipt".as_ref(), file.as_os_str()], &data);
    assert!(!out.status.success(), "a receipt of another event proved");
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaf hash differs"));
}

/// The receipt header value an answer carried.
fn answers_header(answers: &[Answer], id: &str) -> String {
    answers
        .iter()
        .find(|a| a.id == id)
        .and_then(|a| a.receipt.clone())
        .unwrap()
}

/// The key name (the log's origin) of a verifier key string.
fn verifiers_name(vkey: &str) -> String {
    vkey.split('+').next().unwrap().to_string()
}

/// The log's key, but refusing to sign while `failing` is set (a KMS outage).
struct FlakySigner {
    inner: tollgate_tlog::Ed25519Signer,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl tollgate_tlog::NoteSigner for FlakySigner {
    fn name(&self) -> &str {
        tollgate_tlog::NoteSigner::name(&self.inner)
    }

    fn key_hash(&self) -> u32 {
        tollgate_tlog::NoteSigner::key_hash(&self.inner)
    }

    fn sign<'a>(&'a self, msg: &'a [u8]) -> tollgate_tlog::note::SignFuture<'a> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(tollgate_tlog::Error::Sign(
                "signer unavailable".into(),
            ))));
        }
        self.inner.sign(msg)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_log_signer_costs_receipts_never_records_and_keys_rotate() {
    let dir = TempDir::new("receipt-signer");
    let backends = tollgate_embedded::open(&tollgate_core::backends::StorageSettings {
        mode: tollgate_core::backends::Mode::Embedded,
        data_dir: dir.0.clone(),
        log_origin: None,
    })
    .unwrap();
    let log_key = tollgate_tlog::Ed25519Signer::generate("tollgate.test/receipts").unwrap();
    let verifiers = tollgate_tlog::Verifiers::new(vec![log_key.verifier_key()]);
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let signer = std::sync::Arc::new(FlakySigner {
        inner: log_key,
        failing: failing.clone(),
    });
    let config = config_for(&dir.0, &[("TOLLGATE_RECEIPT_KEY_ROTATE_MS", "1000")]);
    let running = tollgate_ingress::app::start_with_receipts(
        config,
        tollgate_ingress::routes::RouteTable::parse(&test_routes()).unwrap(),
        backends.log.clone(),
        backends.keys.clone(),
        std::sync::Arc::new(tollgate_core::local::LocalInvoker::new(
            tollgate_ingress::app::embedded_functions(&backends),
        )),
        Some(signer),
    )
    .await
    .unwrap();
    let addr = running.local_addr;
    let prefer = [("prefer", "tollgate-receipt")];

    // No certified key: answered and recorded as always, without a receipt or Preference-Applied.
    let mut unreceipted = Vec::new();
    for path in ["/v1/echo/a", "/v1/receipted/b"] {
        let r = request(addr, "GET", path, &prefer, "").await;
        assert_eq!(r.status, 200);
        assert!(header(&r, "tollgate-receipt").is_none());
        assert!(header(&r, "preference-applied").is_none());
        unreceipted.push(r.request_id());
    }
    for id in &unreceipted {
        assert_eq!(
            backends.log.get(id).await.unwrap().unwrap().record.status,
            200,
            "recorded"
        );
    }

    // The signer is back: the retry certifies a key, and receipts come.
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut first = None;
    for _ in 0..100 {
        let r = request(addr, "GET", "/v1/echo/c", &prefer, "").await;
        first = header(&r, "tollgate-receipt");
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first.is_some(), "receipts once the log signer is back");
    let first = Receipt::from_header(&first.unwrap())
        .unwrap()
        .verify(&verifiers, None)
        .unwrap();
    // Rotation (every second here): a new task key, certified by the same log key.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = request(addr, "GET", "/v1/receipted/d", &[], "").await;
    let later = Receipt::from_header(&header(&r, "tollgate-receipt").unwrap())
        .unwrap()
        .verify(&verifiers, None)
        .unwrap();
    assert_ne!(first.task_key, later.task_key, "the key rotated");
    running.shutdown();
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .unwrap();
}

/// The signing window (`TOLLGATE_RECEIPT_WINDOW_MS`): records of several commits made durable
/// within one window share one signed statement, a signature is made at most once per window,
/// and a lone request after a quiet window is signed at once (it never waits a whole window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_within_a_window_share_one_signature() {
    const WINDOW: Duration = Duration::from_millis(1000);
    let ing = InProcess::start(&[("TOLLGATE_RECEIPT_WINDOW_MS", "1000")], |_| {}).await;
    let addr = ing.addr;
    let data = ing.dir.0.clone();
    let vkey_out = run(&["log-key".as_ref()], &data);
    assert!(vkey_out.status.success());
    let vkey = String::from_utf8(vkey_out.stdout).unwrap().trim().to_string();
    let verifiers = tollgate_tlog::Verifiers::parse(&[vkey.as_str()]).unwrap();
    let prefer = [("prefer", "tollgate-receipt")];
    let receipt_of = |reply: &Reply| {
        let r = Receipt::from_header(&header(reply, "tollgate-receipt").expect("a receipt")).unwrap();
        let v = r.verify(&verifiers, None).unwrap();
        assert_eq!(v.request_id, reply.request_id());
        (r.statement, v.size, v.index)
    };

    // A lone request on a quiet ingress: signed at once, well within the window.
    let sent = std::time::Instant::now();
    let w = request(addr, "GET", "/v1/echo/w", &prefer, "").await;
    let lone_wait = sent.elapsed();
    let (w_statement, w_size, _) = receipt_of(&w);
    assert_eq!(w_size, 1);
    assert!(lone_wait < WINDOW, "a lone request waited {lone_wait:?}");

    // Right after that signature: A is made durable by its own commit (it is in the request
    // log before B is sent), then B by another; both wait for the window since W's signature
    // to end, and share one statement.
    let a_id = tollgate_core::ids::new_request_id();
    let a = {
        let a_id = a_id.clone();
        tokio::spawn(async move {
            let headers = [("prefer", "tollgate-receipt"), ("x-request-id", a_id.as_str())];
            let r = request(addr, "GET", "/v1/echo/a", &headers, "").await;
            (r, std::time::Instant::now())
        })
    };
    let mut durable = false;
    for _ in 0..200 {
        if ing.backends.log.get(&a_id).await.unwrap().is_some() {
            durable = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(durable, "A's commit was not durable within 1 s");
    assert!(
        !a.is_finished(),
        "A was answered before the window since W's signature ended"
    );
    let b = request(addr, "GET", "/v1/echo/b", &prefer, "").await;
    let b_done = std::time::Instant::now();
    let (a, a_done) = a.await.unwrap();
    assert_eq!(a.request_id(), a_id);
    let (a_statement, a_size, a_index) = receipt_of(&a);
    let (b_statement, b_size, b_index) = receipt_of(&b);
    assert_eq!(
        a_statement, b_statement,
        "two commits in one window share one statement"
    );
    assert_ne!(a_statement, w_statement);
    assert_eq!((a_size, b_size), (2, 2));
    assert_eq!((a_index, b_index), (0, 1));
    // At most one signature per window: not before a window after W's (signed after W was sent).
    assert!(a_done.min(b_done) - sent >= WINDOW, "signed again within the window");

    // Many clients at once, after a quiet window: one signature for the first commit, then
    // one for everything else within the next window; distinct statements are far fewer than
    // receipts.
    tokio::time::sleep(WINDOW).await;
    let mut burst = Vec::new();
    for i in 0..16 {
        burst.push(tokio::spawn(async move {
            request(
                addr,
                "GET",
                &format!("/v1/echo/burst/{i}"),
                &[("prefer", "tollgate-receipt")],
                "",
            )
            .await
        }));
    }
    let mut statements = BTreeSet::new();
    for t in burst {
        statements.insert(receipt_of(&t.await.unwrap()).0);
    }
    println!(
        "16 concurrent receipted requests: {} signed statements",
        statements.len()
    );
    assert!(
        statements.len() <= 2,
        "{} statements for 16 receipts in one window",
        statements.len()
    );

    // A lone request after a quiet window again gets its receipt at once.
    tokio::time::sleep(WINDOW).await;
    let sent = std::time::Instant::now();
    let l = request(addr, "GET", "/v1/echo/lone", &prefer, "").await;
    let lone_wait = sent.elapsed();
    assert_eq!(receipt_of(&l).1, 1);
    assert!(lone_wait < WINDOW, "a lone request waited {lone_wait:?}");
}
