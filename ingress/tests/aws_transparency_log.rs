//! The transparency log in aws mode, end to end (issue 15; docs/transparency-log.md): the
//! `tollgate` binary and the function binaries with the AWS SDK adapters, against the local AWS
//! stack (PostgreSQL behind dataapi-local, an S3-compatible server, cargo lambda watch) plus the
//! KMS stand-in holding an `ECC_NIST_EDWARDS25519` key. Requests go through the ingress; the
//! audit-writer Lambda marks, sequences and integrates, signing checkpoints through KMS; then
//! `GET /v1/requests/{id}/proof` answers C2SP tlog-proofs that `tollgate_tlog::verify_proof`
//! accepts with the vkey `tollgate log-key` prints, over the events' exact lines in S3.

mod common;

use common::aws::{AwsStack, LOG_KEY_ALIAS, LOG_ORIGIN};
use common::*;
use std::time::Duration;

/// The event line of `id` in its audit object in S3.
async fn event_line(stack: &AwsStack, object_key: &str, id: &str) -> String {
    let store = tollgate_aws::s3::S3ObjectStore::new(
        common::aws::s3_client(&stack.env),
        tollgate_aws::s3::S3Settings {
            bucket: common::aws::BUCKET.into(),
            kms_key_id: None,
        },
    );
    let object = tollgate_core::ports::ObjectStore::get(&store, object_key)
        .await
        .unwrap()
        .expect("the audit object");
    tollgate_core::audit::decode(&object)
        .unwrap()
        .into_iter()
        .find(|l| tollgate_core::audit::event_request_id(l).unwrap() == id)
        .expect("the event in its object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_mode_signs_checkpoints_with_kms_and_serves_verifiable_proofs() {
    let stack = AwsStack::start_with_kms_log().await;
    let root = workspace_root();
    let mut proc = stack.ingress(&root, "100");
    let addr = proc.addr;

    // Concurrent requests: several writer batches, each integrated after it is marked.
    let ids = echo_burst(addr, "/v1/echo/tlog", 8, 15).await;

    // The vkey, as `tollgate log-key` prints it in aws mode: the KMS key's public key, named
    // as the origin; the same as the library's `verifier_key` gives.
    let vkey = stack.log_key(&root);
    assert!(vkey.starts_with(&format!("{LOG_ORIGIN}+")), "{vkey}");
    let kms = stack.kms.as_ref().unwrap();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(&kms.endpoint)
        .load()
        .await;
    let direct = tollgate_aws::kms::verifier_key(tollgate_aws::kms::client(&sdk), LOG_KEY_ALIAS, LOG_ORIGIN)
        .await
        .unwrap();
    assert_eq!(vkey, direct);
    let verifiers = tollgate_tlog::Verifiers::parse(&[vkey.as_str()]).unwrap();

    // Every request's proof, through the API (the requests-api Lambda reading the Data API and
    // the trail in S3), verifies over the event's exact line.
    let mut sizes = std::collections::BTreeSet::new();
    let mut indexes = std::collections::BTreeSet::new();
    for id in ids.iter().step_by(3) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let proof = loop {
            let r = request(addr, "GET", &format!("/v1/requests/{id}/proof"), &[], "").await;
            if r.status == 200 {
                break r.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no proof of {id}: {} {:?}",
                r.status,
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let record = request(addr, "GET", &format!("/v1/requests/{id}"), &[], "")
            .await
            .json();
        let key = record["audit"]["object_key"].as_str().expect("audited").to_string();
        let line = event_line(&stack, &key, id).await;
        let proof = String::from_utf8(proof.to_vec()).unwrap();
        let (index, size) = tollgate_tlog::verify_proof(&proof, line.as_bytes(), &verifiers)
            .unwrap_or_else(|e| panic!("the proof of {id} does not verify: {e}\n{proof}"));
        assert!(index < size);
        assert!(indexes.insert(index), "index {index} twice");
        sizes.insert(size);
        // A changed line does not verify.
        assert!(tollgate_tlog::verify_proof(&proof, line.replacen('{', "{ ", 1).as_bytes(), &verifiers).is_err());
    }

    // The checkpoints in the trail (the audit bucket here) open with the vkey; the latest
    // covers every request sent.
    let trail = tollgate_aws::s3::S3ObjectStore::new(
        common::aws::s3_client(&stack.env),
        tollgate_aws::s3::S3Settings {
            bucket: common::aws::BUCKET.into(),
            kms_key_id: None,
        },
    );
    let keys = tollgate_core::ports::ObjectStore::list(&trail, "log/checkpoint/")
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no checkpoint in the trail");
    let mut largest = 0;
    for k in &keys {
        let body = tollgate_core::ports::ObjectStore::get(&trail, k)
            .await
            .unwrap()
            .unwrap();
        let c = tollgate_tlog::Checkpoint::open(&body, &verifiers).expect("a checkpoint opens with the KMS vkey");
        assert_eq!(c.origin, LOG_ORIGIN);
        assert_eq!(k, &format!("log/checkpoint/{}", c.size));
        largest = largest.max(c.size);
    }
    assert!(
        largest >= ids.len() as u64,
        "the latest checkpoint covers {largest} < {} sent",
        ids.len()
    );
    let signs = kms.kms.calls().get("Sign").copied().unwrap_or(0);
    assert!(
        signs >= keys.len() as u64,
        "{signs} KMS signatures for {} checkpoints",
        keys.len()
    );
    eprintln!(
        "aws tlog: {} requests, {} checkpoints (largest {largest}), {} KMS Sign calls, proofs against sizes {sizes:?}",
        ids.len(),
        keys.len(),
        signs
    );

    proc.sigterm();
    let code = tokio::task::spawn_blocking(move || proc.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
