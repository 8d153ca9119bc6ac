//! The KMS checkpoint signer against the KMS stand-in (`tollgate_testkit::kms_local`), through
//! the real `aws-sdk-kms` client made as aws mode makes it (`tollgate_aws::kms::client`, the
//! SDK's standard retry): a checkpoint signed through KMS opens with `tollgate_tlog` and the
//! vkey; keys that cannot sign Ed25519 are refused at connect; an answer that does not verify
//! (corrupted, another key's, truncated) never becomes a signature; transient faults are
//! retried, the others are not.

use std::sync::Arc;
use tollgate_aws::kms::{KmsError, KmsNoteSigner};
use tollgate_testkit::kms_local::{KmsFault, KmsServer, Misbehave};
use tollgate_tlog::{Checkpoint, NoteSigner, Verifiers};

const ORIGIN: &str = "tollgate.test/kms";

/// A KMS client on the stand-in, configured as `tollgate_aws::backends::open` configures it.
async fn client(kms: &KmsServer) -> aws_sdk_kms::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(&kms.endpoint)
        .load()
        .await;
    tollgate_aws::kms::client(&sdk)
}

fn checkpoint_text(size: u64) -> String {
    Checkpoint::new(ORIGIN, size, [size as u8; 32]).to_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_through_kms_opens_with_the_vkey() {
    let kms = KmsServer::start().await;
    let arn = kms.kms.create_ed25519_key("log");
    kms.kms.create_alias("alias/tollgate-log", &arn).unwrap();
    let key_id = arn.rsplit('/').next().unwrap().to_string();
    let signer = KmsNoteSigner::connect(client(&kms).await, "alias/tollgate-log", ORIGIN)
        .await
        .expect("connect");
    let vkey = signer.verifier_key().to_string();
    assert!(vkey.starts_with(&format!("{ORIGIN}+")), "{vkey}");
    assert_eq!(signer.name(), ORIGIN);
    assert_eq!(
        signer.vkey().map(|k| k.to_string()),
        Some(vkey.clone()),
        "the custom resource's vkey"
    );
    // The key id, key ARN, alias name and alias ARN all name the same key.
    for id in [
        key_id.as_str(),
        arn.as_str(),
        "alias/tollgate-log",
        "arn:aws:kms:us-east-1:000000000000:alias/tollgate-log",
    ] {
        let v = tollgate_aws::kms::verifier_key(client(&kms).await, id, ORIGIN)
            .await
            .expect("vkey");
        assert_eq!(v, vkey, "{id}");
    }

    let text = checkpoint_text(42);
    let signer: Arc<dyn NoteSigner> = Arc::new(signer);
    let signed = tollgate_tlog::note::sign_note(&text, &[&*signer]).await.expect("sign");
    let verifiers = Verifiers::parse(&[vkey.as_str()]).unwrap();
    let opened = Checkpoint::open(signed.as_bytes(), &verifiers).expect("the checkpoint opens with the vkey");
    assert_eq!((opened.origin.as_str(), opened.size), (ORIGIN, 42));
    // Ed25519 is deterministic (RFC 8032 5.1.6): the same text signs to the same note, which is
    // what lets two integrators of one size write the same checkpoint.
    assert_eq!(
        tollgate_tlog::note::sign_note(&text, &[&*signer]).await.unwrap(),
        signed
    );
    // Another key of the same name does not open it.
    let other = KmsNoteSigner::connect(client(&kms).await, &kms.kms.create_ed25519_key("other"), ORIGIN)
        .await
        .unwrap();
    let wrong = Verifiers::parse(&[other.verifier_key().to_string()]).unwrap();
    assert!(Checkpoint::open(signed.as_bytes(), &wrong).is_err());
    assert_eq!(kms.kms.calls()["Sign"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_cannot_sign_ed25519_are_refused_at_connect() {
    let kms = KmsServer::start().await;
    // A symmetric key (CreateKey's default): KMS has no public key for it.
    let sdk_client = client(&kms).await;
    let symmetric = sdk_client.create_key().send().await.expect("create a symmetric key");
    let symmetric = symmetric.key_metadata().unwrap().arn().unwrap().to_string();
    match KmsNoteSigner::connect(sdk_client.clone(), &symmetric, ORIGIN).await {
        Err(KmsError::Unavailable { operation, detail }) => {
            assert_eq!(operation, "GetPublicKey");
            assert!(detail.contains("UnsupportedOperationException"), "{detail}");
        }
        other => panic!("a symmetric key must be refused: {other:?}"),
    }
    match KmsNoteSigner::connect(sdk_client.clone(), "alias/no-such-key", ORIGIN).await {
        Err(e) => assert!(e.to_string().contains("NotFoundException"), "{e}"),
        Ok(_) => panic!("an unknown key must be refused"),
    }
    let good = kms.kms.create_ed25519_key("log");
    match KmsNoteSigner::connect(sdk_client.clone(), &good, "bad origin").await {
        Err(KmsError::BadOrigin(_)) => {}
        other => panic!("an origin with a space is no key name: {other:?}"),
    }
    // The SDK's own Ed25519 key through CreateKey works the same as the helper's.
    let created = sdk_client
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistEdwards25519)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("create an Ed25519 key");
    let arn = created.key_metadata().unwrap().arn().unwrap().to_string();
    KmsNoteSigner::connect(sdk_client, &arn, ORIGIN)
        .await
        .expect("an Ed25519 key connects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_does_not_verify_never_becomes_a_signature() {
    let kms = KmsServer::start().await;
    let arn = kms.kms.create_ed25519_key("log");
    let signer = KmsNoteSigner::connect(client(&kms).await, &arn, ORIGIN).await.unwrap();
    let text = checkpoint_text(7);
    for (how, says) in [
        (Misbehave::CorruptSignature, "does not verify"),
        (Misbehave::OtherKey, "does not verify"),
        (Misbehave::ShortSignature, "63 signature bytes"),
    ] {
        kms.kms.misbehave(how);
        let e = tollgate_tlog::note::sign_note(&text, &[&signer])
            .await
            .expect_err("a bad answer must not sign");
        assert!(e.to_string().contains(says), "{how:?}: {e}");
    }
    kms.kms.clear();
    tollgate_tlog::note::sign_note(&text, &[&signer])
        .await
        .expect("signs again once KMS answers right");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_the_rest_are_not() {
    let kms = KmsServer::start().await;
    let arn = kms.kms.create_ed25519_key("log");
    let signer = KmsNoteSigner::connect(client(&kms).await, &arn, ORIGIN).await.unwrap();
    let text = checkpoint_text(9);
    let sign_calls = || kms.kms.calls().get("Sign").copied().unwrap_or(0);

    // Two internal errors, then an answer: the SDK's third attempt signs.
    kms.kms.fail(KmsFault::internal(), 2);
    let before = sign_calls();
    tollgate_tlog::note::sign_note(&text, &[&signer])
        .await
        .expect("retried past two KMSInternalExceptions");
    assert_eq!(sign_calls() - before, 3);

    // Throttled throughout: three attempts, then an error that names it.
    kms.kms.fail(KmsFault::throttling(), u64::MAX);
    let before = sign_calls();
    let e = tollgate_tlog::note::sign_note(&text, &[&signer]).await.unwrap_err();
    assert!(e.to_string().contains("ThrottlingException"), "{e}");
    assert_eq!(sign_calls() - before, tollgate_aws::sdk::KMS_MAX_ATTEMPTS as u64);

    // A denial is final: one attempt.
    kms.kms.fail(KmsFault::access_denied(), u64::MAX);
    let before = sign_calls();
    let e = tollgate_tlog::note::sign_note(&text, &[&signer]).await.unwrap_err();
    assert!(e.to_string().contains("AccessDeniedException"), "{e}");
    assert_eq!(sign_calls() - before, 1);
    kms.kms.clear();

    // KMS unreachable: a clear error, no panic.
    let endpoint = kms.endpoint.clone();
    drop(kms);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    let e = tollgate_aws::kms::verifier_key(tollgate_aws::kms::client(&sdk), &arn, ORIGIN)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            KmsError::Unavailable {
                operation: "GetPublicKey",
                ..
            }
        ),
        "{e}"
    );
}
