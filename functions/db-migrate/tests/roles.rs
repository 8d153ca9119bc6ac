//! db-migrate's least-privilege roles against a real PostgreSQL, through the Data API stand-in:
//! after the custom resource ran, each component's role can do what its component does, and
//! nothing more (the reader cannot write, the writer cannot DROP, CREATE, DELETE or touch keys).

use aws_sdk_rdsdata::config::{BehaviorVersion, Credentials, Region};
use std::sync::Arc;
use std::time::Duration;
use tollgate_aws::dataapi::{DataApiRequestLog, DataApiSettings};
use tollgate_core::model::RecordQuery;
use tollgate_core::ports::{KeyStore, RequestLog, SqlStep, TlogStore};
use tollgate_db_migrate::{CustomResourceEvent, SchemaProperties};
use tollgate_testkit::Postgres;

/// A Data API over the test's PostgreSQL that logs in as `user` (trust auth: the stand-in
/// ignores the secret; what is under test is the role's privileges).
async fn log_as(pg: &Postgres, user: &str) -> Arc<DataApiRequestLog> {
    let api = dataapi_local::service::DataApi::new(dataapi_local::service::Config {
        host: "127.0.0.1".into(),
        port: pg.port,
        user: user.into(),
        default_database: "tollgate".into(),
        tx_idle_timeout: Duration::from_secs(180),
        resume_delay: Duration::ZERO,
    });
    let addr = dataapi_local::server::spawn(([127, 0, 0, 1], 0).into(), api)
        .await
        .unwrap();
    let conf = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    Arc::new(DataApiRequestLog::new(
        aws_sdk_rdsdata::Client::from_conf(conf),
        DataApiSettings {
            cluster_arn: "arn:aws:rds:us-east-1:123456789012:cluster:tollgate".into(),
            secret_arn: format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{user}"),
            database: "tollgate".into(),
        },
    ))
}

fn event(reader_password: &str, writer_password: &str) -> CustomResourceEvent {
    serde_json::from_value(serde_json::json!({
        "RequestType": "Update",
        "ResponseURL": "http://127.0.0.1:1/unused",
        "StackId": "stack",
        "RequestId": "req",
        "LogicalResourceId": "DatabaseSchema",
        "PhysicalResourceId": "tollgate-request-log-schema",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:db-migrate",
            "DatabaseName": "tollgate",
            "ReaderUsername": "tollgate_reader",
            "ReaderPassword": reader_password,
            "WriterUsername": "tollgate_writer",
            "WriterPassword": writer_password,
        }
    }))
    .unwrap()
}

fn step(sql: &str) -> Vec<SqlStep> {
    vec![SqlStep {
        sql: sql.into(),
        params: Vec::new(),
    }]
}

/// Refused for want of a privilege (not for a typo in the statement).
fn refused(err: &str) -> bool {
    err.contains("permission denied") || err.contains("must be owner") || err.contains("must have CREATEROLE")
}

fn password_hash(pg: &Postgres, role: &str) -> String {
    pg.psql(
        "tollgate",
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
    )
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_what_its_component_does_and_nothing_more() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE tollgate");
    let master = log_as(&pg, "postgres").await;

    let first = tollgate_db_migrate::outcome(
        &event("reader-password-0123456789", "writer-password-0123456789"),
        &*master,
    )
    .await;
    assert_eq!(first.status, "SUCCESS", "{}", first.reason);
    assert!(first.reason.contains("2 database roles kept"), "{}", first.reason);
    assert!(!first.reason.contains("password-0123"), "{}", first.reason);
    let (reader_hash, writer_hash) = (
        password_hash(&pg, "tollgate_reader"),
        password_hash(&pg, "tollgate_writer"),
    );
    assert!(reader_hash.starts_with("SCRAM-SHA-256$"), "{reader_hash}");
    assert!(writer_hash.starts_with("SCRAM-SHA-256$"), "{writer_hash}");
    // Again, with a changed (rotated) secret: idempotent, and the new password is set.
    let again = tollgate_db_migrate::outcome(
        &event("reader-password-rotated-01", "writer-password-rotated-01"),
        &*master,
    )
    .await;
    assert_eq!(again.status, "SUCCESS", "{}", again.reason);
    assert_ne!(password_hash(&pg, "tollgate_reader"), reader_hash);
    assert_ne!(password_hash(&pg, "tollgate_writer"), writer_hash);
    // Neither role is more than a login.
    assert_eq!(
        pg.psql(
            "tollgate",
            "SELECT string_agg(rolname || ':' || rolsuper || rolcreaterole || rolcreatedb || rolreplication || rolbypassrls || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'tollgate_%'"
        )
        .trim(),
        "tollgate_reader:falsefalsefalsefalsefalsetrue,tollgate_writer:falsefalsefalsefalsefalsetrue"
    );

    // The writer: what the ingress, the audit writer and the reconciler do.
    let writer = log_as(&pg, "tollgate_writer").await;
    let batch = "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
    let rows: Vec<_> = (0..3)
        .map(|i| tollgate_testkit::contract::sample_record(&format!("role-{i}"), batch))
        .collect();
    assert_eq!(writer.insert_batch(&rows).await.unwrap().len(), 3);
    assert_eq!(
        writer.insert_batch(&rows).await.unwrap().len(),
        3,
        "re-insert (ON CONFLICT)"
    );
    let far = tollgate_core::clock::now() + time::Duration::hours(1);
    let pending = writer.pending_audits(far, 5, 100).await.unwrap();
    assert_eq!(pending.len(), 3);
    writer.note_redrive_failure(&["role-0".to_string()]).await.unwrap();
    writer.count_set_aside(5).await.unwrap();
    writer.finalize_intents(far, 100).await.unwrap();
    assert_eq!(
        writer.mark_audited("audit/v1/k", &[audited("role-1")]).await.unwrap(),
        1
    );
    // Marking sequenced it into the transparency log (tlog_mark_audited, as the writer).
    let state = writer.tlog_state().await.expect("the writer reads the log state");
    assert_eq!(state.next_index, 1, "{state:?}");
    assert_eq!(writer.tlog_leaves(0, 10).await.unwrap().len(), 1);
    // The marking that answers the integration's read (migration 0005's function, as the writer).
    let m = writer
        .mark_audited_pending("audit/v1/k2", &[audited("role-2")], 100)
        .await
        .expect("the writer marks with the pending read");
    let (state, leaves) = m.pending.expect("the log's state and pending leaves");
    assert_eq!((m.marked, state.next_index, state.size, leaves.len()), (1, 2, 0, 2));
    assert!(writer.find_key("nokey").await.unwrap().is_none(), "key lookups");
    assert!(writer.get("role-1").await.unwrap().is_some());
    for forbidden in [
        "DROP TABLE api_requests",
        "CREATE TABLE role_probe (a int)",
        "DELETE FROM api_requests",
        "TRUNCATE api_requests",
        "UPDATE api_keys SET name = 'x'",
        "INSERT INTO schema_migrations (version, checksum) VALUES ('x', 'y')",
        "ALTER TABLE api_requests ADD COLUMN probe int",
        "CREATE ROLE probe",
    ] {
        let err = writer
            .execute_script(&step(forbidden))
            .await
            .expect_err(forbidden)
            .to_string();
        assert!(refused(&err), "{forbidden}: {err}");
    }
    assert!(writer.list_keys().await.is_ok(), "SELECT on api_keys");

    // The reader: what requests-api does (query and get), and no write, no keys.
    let reader = log_as(&pg, "tollgate_reader").await;
    let all = RecordQuery {
        limit: 100,
        ..RecordQuery::default()
    };
    assert_eq!(reader.query(&all).await.unwrap().len(), 3);
    assert!(reader.tlog_state().await.is_ok(), "the proof route reads the log state");
    assert!(reader.get("role-2").await.unwrap().is_some());
    let more = vec![tollgate_testkit::contract::sample_record("role-9", batch)];
    let err = reader
        .insert_batch(&more)
        .await
        .expect_err("the reader may INSERT")
        .to_string();
    assert!(refused(&err), "{err}");
    let err = reader
        .mark_audited("audit/v1/k", &[audited("role-2")])
        .await
        .expect_err("the reader may UPDATE")
        .to_string();
    assert!(refused(&err), "{err}");
    let err = reader
        .find_key("nokey")
        .await
        .expect_err("the reader may read api_keys")
        .to_string();
    assert!(refused(&err), "{err}");
    for forbidden in [
        "INSERT INTO api_requests (request_id) VALUES ('probe')",
        "UPDATE api_requests SET redrive_attempts = 0",
        "SELECT count(*) FROM api_keys",
        "DROP TABLE api_requests",
        "CREATE TABLE role_probe (a int)",
        "DELETE FROM api_requests",
    ] {
        let err = reader
            .execute_script(&step(forbidden))
            .await
            .expect_err(forbidden)
            .to_string();
        assert!(refused(&err), "{forbidden}: {err}");
    }
}

#[test]
fn partial_credentials_are_refused_and_passwords_never_shown() {
    let props: SchemaProperties = serde_json::from_value(serde_json::json!({
        "ReaderUsername": "tollgate_reader",
        "ReaderPassword": "reader-password-0123456789"
    }))
    .unwrap();
    assert!(props.roles().is_err());
    assert!(!format!("{props:?}").contains("password-0123"));
    let none: SchemaProperties = serde_json::from_value(serde_json::json!({})).unwrap();
    assert!(none.roles().unwrap().is_empty());
}

/// A row to mark, with a leaf hash as the audit writer computes it.
fn audited(request_id: &str) -> tollgate_core::model::AuditedEvent {
    tollgate_core::model::AuditedEvent {
        request_id: request_id.to_string(),
        leaf_hash: [request_id.len() as u8; 32],
    }
}
