//! Signed digests and `tollgate verify` in aws mode, end to end (issue 15 items 3 and 5;
//! docs/transparency-log.md): the local AWS stack (PostgreSQL behind dataapi-local, the S3
//! stand-in with a separate trail bucket as the template deploys, cargo lambda watch, the KMS
//! stand-in holding the log's Ed25519 key). Requests go through the ingress in aws mode; the
//! audit-writer Lambda writes, sequences and integrates; the `audit-digest` Lambda, invoked over
//! the Lambda Invoke API with the schedule's event, signs the period digests through KMS; then
//! the real `tollgate verify` binary, in aws mode with the vkey `tollgate log-key` prints, checks
//! S3 and the Data API without KMS access: exit 0 with every count right (also with a kept
//! checkpoint, and bounded by `--from`), then exit 1 naming a changed audit object, a period
//! whose digest is overdue once the schedule stops (`--digest-schedule-ms`), and a deleted
//! digest.

mod common;

use common::aws::{AwsStack, BUCKET, LOG_ORIGIN, TRAIL_BUCKET};
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::Duration;

/// Short periods, so the test sees several close: the digest of a period is due `GRACE_MS` after
/// it ends.
const PERIOD_MS: u64 = 8_000;
const GRACE_MS: u64 = 500;

/// The stack's environment: every process gets what the template gives the ingress and the
/// audit-digest function (the trail bucket, the digest settings; the log key and origin come
/// with the KMS stack).
fn settings() -> [(&'static str, String); 4] {
    [
        ("TOLLGATE_TRAIL_BUCKET", TRAIL_BUCKET.to_string()),
        ("TOLLGATE_DIGEST_PERIOD_MS", PERIOD_MS.to_string()),
        ("TOLLGATE_DIGEST_GRACE_MS", GRACE_MS.to_string()),
        ("TOLLGATE_DIGEST_LOOKBACK", "48".to_string()),
    ]
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sleeps until `GRACE_MS` (plus a little) after the next period boundary: then every period
/// that holds an object written before this call is due, and the next one is a whole period
/// away, so a `verify` right after a pass sees no period due that the pass did not digest.
async fn until_just_after_a_period_closes() {
    let now = now_ms();
    let target = (now / PERIOD_MS + 1) * PERIOD_MS + GRACE_MS + 200;
    tokio::time::sleep(Duration::from_millis(target - now)).await;
}

/// One digest pass, as EventBridge runs it: the `audit-digest` function invoked through the
/// Lambda Invoke API with the schedule's event (`events/audit-digest-schedule.json`). Synchronous
/// (`RequestResponse`) here so the test reads its report; EventBridge invokes asynchronously,
/// and the function does the same either way. Panics, with the function's error, if it fails.
async fn digest_pass(stack: &AwsStack) -> serde_json::Value {
    let config = stack.lambda_config().build();
    let schedule = std::fs::read(workspace_root().join("events/audit-digest-schedule.json")).unwrap();
    let out = aws_sdk_lambda::Client::from_conf(config)
        .invoke()
        .function_name("audit-digest")
        .invocation_type(aws_sdk_lambda::types::InvocationType::RequestResponse)
        .payload(aws_sdk_lambda::primitives::Blob::new(schedule))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "invoking audit-digest failed: {e:?}\nits log:\n{}",
                stack.function_log("audit-digest")
            )
        });
    let payload = out.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
    assert!(
        out.function_error().is_none(),
        "audit-digest failed: {}\nits log:\n{}",
        String::from_utf8_lossy(&payload),
        stack.function_log("audit-digest")
    );
    serde_json::from_slice(&payload).expect("the pass's report")
}

/// Runs the `tollgate` binary in aws mode on the stack.
fn tollgate(stack: &AwsStack, args: &[&str]) -> Output {
    tollgate_cmd(stack, args).output().expect("the tollgate binary runs")
}

fn tollgate_cmd(stack: &AwsStack, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.current_dir(workspace_root())
        .args(args)
        .envs(stack.env_refs())
        .env_remove("RUST_LOG");
    cmd
}

/// How often this test's "schedule" runs the digester, for `tollgate verify`: it invokes it
/// itself just before each verify that must find no missing period.
const SCHEDULE_MS: &str = "1000";

/// `tollgate verify --json` with the vkey and `args`: the exit code and the report.
fn verify_with(stack: &AwsStack, vkey: &str, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["verify", "--vkey", vkey, "--json"];
    all.extend_from_slice(args);
    // An auditor needs read access to the stores and the vkey, not the signing key: no KMS.
    let out = tollgate_cmd(stack, &all)
        .env_remove("TOLLGATE_LOG_KMS_KEY_ID")
        .env_remove("AWS_ENDPOINT_URL_KMS")
        .output()
        .expect("the tollgate binary runs");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tollgate verify printed no JSON report ({e}; exit {:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// `tollgate verify --json` on this test's schedule.
fn verify(stack: &AwsStack, vkey: &str) -> (Option<i32>, serde_json::Value) {
    verify_with(stack, vkey, &["--digest-schedule-ms", SCHEDULE_MS])
}

/// The keys under `prefix` in `bucket`.
async fn keys(stack: &AwsStack, bucket: &str, prefix: &str) -> Vec<String> {
    let store = tollgate_aws::s3::S3ObjectStore::new(
        common::aws::s3_client(&stack.env),
        tollgate_aws::s3::S3Settings {
            bucket: bucket.into(),
            kms_key_id: None,
        },
    );
    tollgate_core::ports::ObjectStore::list(&store, prefix).await.unwrap()
}

async fn get(stack: &AwsStack, bucket: &str, key: &str) -> Vec<u8> {
    let out = common::aws::s3_client(&stack.env)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Overwrites an object, as anyone with write access to the bucket could (no `If-None-Match`).
async fn put(stack: &AwsStack, bucket: &str, key: &str, body: Vec<u8>) {
    common::aws::s3_client(&stack.env)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key}: {e:?}"));
}

/// The findings of a report with `code`, as (at, detail).
fn findings(report: &serde_json::Value, code: &str) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == code)
        .map(|f| {
            (
                f["at"].as_str().unwrap_or_default().to_string(),
                f["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `checked` and `valid` of one count of the report.
fn tally(report: &serde_json::Value, what: &str) -> (u64, u64) {
    (
        report[what]["checked"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what} in {report}")),
        report[what]["valid"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what} in {report}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_mode_digests_verify_and_tampering_is_named() {
    let extra = settings();
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stack = AwsStack::start_with_kms_log_and(&extra).await;
    let root = workspace_root();
    let mut proc = stack.ingress(&root, "100");
    let addr = proc.addr;

    // Two bursts in two periods, each written (and sequenced, and integrated) by the
    // audit-writer Lambda before the next step.
    let all_audited = || async { stack.rows().1 == 0 };
    let mut ids = echo_burst(addr, "/v1/echo/digest/a", 4, 5).await;
    assert!(
        eventually(Duration::from_secs(30), all_audited).await,
        "events not audited"
    );
    until_just_after_a_period_closes().await;
    let second_burst = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    ids.extend(echo_burst(addr, "/v1/echo/digest/b", 4, 5).await);
    assert!(
        eventually(Duration::from_secs(30), all_audited).await,
        "events not audited"
    );
    let (rows, _) = stack.rows();
    assert_eq!(rows.len(), ids.len(), "one row per request");

    // The trail is in its own bucket, as deployed: nothing of it in the audit bucket.
    assert!(keys(&stack, BUCKET, "log/").await.is_empty());
    assert!(!keys(&stack, TRAIL_BUCKET, "log/checkpoint/").await.is_empty());

    // The pass: every sequenced event integrated, every closed period digested.
    until_just_after_a_period_closes().await;
    let report = digest_pass(&stack).await;
    let objects = keys(&stack, BUCKET, "audit/v1/").await;
    let digests = keys(&stack, TRAIL_BUCKET, "digest/v1/").await;
    assert_eq!(report["tree_size"], rows.len() as u64, "{report}");
    assert_eq!(report["objects"], objects.len() as u64, "{report}");
    assert_eq!(report["deferred"], 0, "{report}");
    assert!(report["periods"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(
        digests.len() as u64,
        report["periods"].as_u64().unwrap() + report["backfills"].as_u64().unwrap()
    );

    // The verifier key, as the stack output gives it: the KMS key's public key under the origin.
    let vkey = stack.log_key(&root);
    assert!(vkey.starts_with(&format!("{LOG_ORIGIN}+")), "{vkey}");

    // A clean trail: exit 0, every count what the stores hold, no finding.
    let (code, clean) = verify(&stack, &vkey);
    assert_eq!(code, Some(0), "{clean:#}");
    assert_eq!(clean["findings"], serde_json::json!([]), "{clean:#}");
    assert_eq!(clean["origin"], LOG_ORIGIN);
    let checkpoints = keys(&stack, TRAIL_BUCKET, "log/checkpoint/").await;
    for (what, n) in [
        ("digests", digests.len()),
        ("objects", objects.len()),
        ("events", rows.len()),
        ("rows", rows.len()),
        ("checkpoints", checkpoints.len()),
    ] {
        assert_eq!(tally(&clean, what), (n as u64, n as u64), "{what}: {clean:#}");
    }
    let (tiles, valid_tiles) = tally(&clean, "tiles");
    assert!(tiles > 0 && tiles == valid_tiles, "{clean:#}");
    assert_eq!(clean["tree_size"], rows.len() as u64);
    assert_eq!(clean["pending_objects"], 0);
    // With the newest checkpoint an auditor kept (read from the trail bucket): still clean.
    let newest = checkpoints
        .iter()
        .max_by_key(|k| k.rsplit('/').next().unwrap().parse::<u64>().unwrap())
        .unwrap();
    let kept_dir = TempDir::new("aws-digest-checkpoint");
    let kept = kept_dir.0.join("kept.checkpoint");
    std::fs::write(&kept, get(&stack, TRAIL_BUCKET, newest).await).unwrap();
    let (code, with_kept) = verify_with(
        &stack,
        &vkey,
        &[
            "--digest-schedule-ms",
            SCHEDULE_MS,
            "--checkpoint",
            kept.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{with_kept:#}");
    // A bounded run (the second burst's periods on): the chain whole, fewer objects read, the
    // leaves checked against the tiles in S3.
    let (code, bounded) = verify_with(
        &stack,
        &vkey,
        &["--digest-schedule-ms", SCHEDULE_MS, "--from", &second_burst],
    );
    assert_eq!(code, Some(0), "{bounded:#}");
    assert_eq!(tally(&bounded, "digests"), tally(&clean, "digests"), "{bounded:#}");
    let (read, valid) = tally(&bounded, "objects");
    assert!(read == valid && read >= 1 && read < objects.len() as u64, "{bounded:#}");
    // The text report too.
    let out = tollgate(
        &stack,
        &["verify", "--vkey", &vkey, "--digest-schedule-ms", SCHEDULE_MS],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("OK: no findings"), "{text}");

    // A byte of an audit object changed (its content re-gzipped, so it still reads): exit 1,
    // and the finding names the object.
    let victim = objects[0].clone();
    let original = get(&stack, BUCKET, &victim).await;
    let mut content = Vec::new();
    flate2::read::GzDecoder::new(original.as_slice())
        .read_to_end(&mut content)
        .unwrap();
    let at = content
        .windows(b"/v1/echo/digest/".len())
        .position(|w| w == b"/v1/echo/digest/")
        .expect("an echo path in the object");
    content[at + "/v1/echo/".len()] = b'D';
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&content).unwrap();
    put(&stack, BUCKET, &victim, gz.finish().unwrap()).await;
    let (code, changed) = verify(&stack, &vkey);
    assert_eq!(code, Some(1), "{changed:#}");
    assert!(
        findings(&changed, "object_hash").iter().any(|(at, _)| at == &victim),
        "no object_hash finding names {victim}: {changed:#}"
    );

    // Put back, the trail verifies again (after the schedule's next pass).
    put(&stack, BUCKET, &victim, original).await;
    until_just_after_a_period_closes().await;
    digest_pass(&stack).await;
    let (code, restored) = verify(&stack, &vkey);
    assert_eq!(code, Some(0), "{restored:#}");

    // The schedule stops: once the next period has closed and its grace and two runs of the
    // schedule have passed, its digest is missing (`period_missing`)...
    until_just_after_a_period_closes().await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let (code, late) = verify(&stack, &vkey);
    assert_eq!(code, Some(1), "{late:#}");
    assert_eq!(findings(&late, "period_missing").len(), 1, "{late:#}");
    // ... but not on the stack's default schedule (every 15 minutes): the next run is not due.
    let (code, on_time) = verify_with(&stack, &vkey, &[]);
    assert_eq!(code, Some(0), "{on_time:#}");

    // A digest deleted (the first: it lists the first burst's objects): exit 1, the hole named,
    // and the objects it listed found unlisted.
    let first = "digest/v1/000000000000";
    let listed = String::from_utf8(get(&stack, TRAIL_BUCKET, first).await).unwrap();
    let listed: Vec<&str> = objects
        .iter()
        .map(String::as_str)
        .filter(|k| listed.contains(k))
        .collect();
    assert!(!listed.is_empty(), "the first digest lists no object");
    common::aws::s3_client(&stack.env)
        .delete_object()
        .bucket(TRAIL_BUCKET)
        .key(first)
        .send()
        .await
        .unwrap();
    let (code, deleted) = verify(&stack, &vkey);
    assert_eq!(code, Some(1), "{deleted:#}");
    assert!(
        findings(&deleted, "digest_missing").iter().any(|(at, _)| at == first),
        "no digest_missing finding names {first}: {deleted:#}"
    );
    let unlisted = findings(&deleted, "object_unlisted");
    for key in &listed {
        assert!(
            unlisted.iter().any(|(at, _)| at == key),
            "{key} is not found unlisted: {deleted:#}"
        );
    }
    eprintln!(
        "aws digest: {} requests, {} objects, {} digests, {} checkpoints; clean run phases {}",
        ids.len(),
        objects.len(),
        digests.len(),
        checkpoints.len(),
        clean["phase_seconds"]
    );

    proc.sigterm();
    let code = tokio::task::spawn_blocking(move || proc.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
