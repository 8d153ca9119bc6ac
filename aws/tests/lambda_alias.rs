//! A function with an alias (`TOLLGATE_FUNCTION_ALIASES`, the stack's `echo=live`) is invoked
//! through it: the real SDK client puts `Qualifier=live` on the Invoke call, a function without
//! one is invoked unqualified. Seen on the wire by the fault proxy, which answers as Lambda does.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tollgate_aws::lambda::LambdaInvoker;
use tollgate_core::ports::Invoker;
use tollgate_core::settings::SettingsReader;
use tollgate_testkit::faults::{Action, FaultProxy};

#[tokio::test]
async fn aliased_functions_are_invoked_through_their_alias() {
    // Nothing listens upstream: every request is answered by the rule.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(&format!("http://{closed}"));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    proxy.set_rule(move |r| {
        log.lock().unwrap().push(r.path.clone());
        Action::respond(
            200,
            &[("Content-Type", "application/json"), ("X-Amz-Executed-Version", "7")],
            "{}",
        )
    });

    // The settings as the stack writes them.
    let env = vec![
        ("TOLLGATE_MODE".to_string(), "aws".to_string()),
        (
            "TOLLGATE_DB_CLUSTER_ARN".into(),
            "arn:aws:rds:us-east-1:123456789012:cluster:c".into(),
        ),
        (
            "TOLLGATE_DB_SECRET_ARN".into(),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:s".into(),
        ),
        ("TOLLGATE_AUDIT_BUCKET".into(), "b".into()),
        ("TOLLGATE_FUNCTION_PREFIX".into(), "tollgate-dev-".into()),
        ("TOLLGATE_FUNCTION_ALIASES".into(), "echo=live,requests-api=live".into()),
    ];
    let mut reader = SettingsReader::new(env, Vec::new());
    let mode = tollgate_aws::backends::ModeSettings::read(&mut reader);
    reader.finish().unwrap();
    let aws = mode.aws.unwrap();
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new("k", "s", None, None, "test"))
        .endpoint_url(proxy.endpoint());
    let invoker = LambdaInvoker::from_config(config)
        .with_function_prefix(aws.function_prefix.clone())
        .with_aliases(aws.function_aliases.iter().cloned());

    invoker.invoke("echo", Bytes::from_static(b"{}")).await.unwrap();
    invoker
        .invoke_event("audit-writer", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "/2015-03-31/functions/tollgate-dev-echo/invocations?Qualifier=live".to_string(),
            "/2015-03-31/functions/tollgate-dev-audit-writer/invocations".to_string(),
        ]
    );
}

#[test]
fn a_malformed_alias_is_a_settings_error() {
    for bad in ["echo", "echo=", "=live", "echo=live:1"] {
        let env = vec![("TOLLGATE_FUNCTION_ALIASES".to_string(), bad.to_string())];
        let mut reader = SettingsReader::new(env, Vec::new());
        let _ = tollgate_aws::backends::ModeSettings::read(&mut reader);
        let err = reader.finish().unwrap_err().to_string();
        assert!(err.contains("TOLLGATE_FUNCTION_ALIASES"), "{bad}: {err}");
    }
}
