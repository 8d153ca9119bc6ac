//! `dataapi-local` driven by the real `aws-sdk-rdsdata` client over HTTP, against a private
//! PostgreSQL started by the test.

use aws_sdk_rdsdata::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_rdsdata::types::{Field, RecordsFormatType, SqlParameter, TypeHint};
use aws_sdk_rdsdata::Client;
use std::time::Duration;
use tollgate_testkit::Postgres;

const ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster:local";
const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:local";

struct Stack {
    _pg: Postgres,
    client: Client,
}

async fn stack(tx_idle: Duration) -> Stack {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    let endpoint = dataapi_local::server::spawn_local(pg.port, tx_idle).await.unwrap();
    let conf = aws_sdk_rdsdata::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    Stack {
        _pg: pg,
        client: Client::from_conf(conf),
    }
}

fn p(name: &str, value: Field) -> SqlParameter {
    SqlParameter::builder().name(name).value(value).build()
}

fn hinted(name: &str, value: &str, hint: TypeHint) -> SqlParameter {
    SqlParameter::builder()
        .name(name)
        .value(Field::StringValue(value.into()))
        .type_hint(hint)
        .build()
}

async fn exec(
    s: &Stack,
    sql: &str,
    params: Vec<SqlParameter>,
) -> aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementOutput {
    s.client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql(sql)
        .set_parameters(Some(params))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {:?}", e.into_service_error()))
}

fn error_code<E: aws_sdk_rdsdata::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_kind_round_trips_with_hints_and_metadata() {
    let s = stack(Duration::from_secs(180)).await;
    exec(
        &s,
        "CREATE TABLE t (id UUID PRIMARY KEY, at TIMESTAMP, d DATE, tm TIME, amount NUMERIC(12,3), doc JSON, \
         n BIGINT, small INT, f DOUBLE PRECISION, ok BOOLEAN, data BYTEA, label TEXT, tags TEXT[], nums INT[])",
        vec![],
    )
    .await;
    let out = exec(
        &s,
        "INSERT INTO t VALUES (:id, :at, :d, :tm, :amount, :doc, :n, :small, :f, :ok, :data, :label, ARRAY['a','b'], ARRAY[1,2,3])",
        vec![
            hinted("id", "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", TypeHint::Uuid),
            hinted("at", "2026-11-25 22:10:04.5", TypeHint::Timestamp),
            hinted("d", "2026-11-25", TypeHint::Date),
            hinted("tm", "22:10:04", TypeHint::Time),
            hinted("amount", "12345.678", TypeHint::Decimal),
            hinted("doc", r#"{"k": [1, 2]}"#, TypeHint::Json),
            p("n", Field::LongValue(9_007_199_254_740_993)),
            p("small", Field::LongValue(-7)),
            p("f", Field::DoubleValue(1.25)),
            p("ok", Field::BooleanValue(true)),
            p("data", Field::BlobValue(aws_sdk_rdsdata::primitives::Blob::new(vec![0u8, 255, 7]))),
            p("label", Field::IsNull(true)),
        ],
    )
    .await;
    assert_eq!(out.number_of_records_updated, 1);
    assert!(out.generated_fields().is_empty(), "PostgreSQL fills no generatedFields");

    let out = s
        .client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql("SELECT * FROM t WHERE id = :id")
        .parameters(hinted("id", "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", TypeHint::Uuid))
        .include_result_metadata(true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.number_of_records_updated, 0);
    let row = &out.records()[0];
    assert_eq!(
        row[0],
        Field::StringValue("0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b".into())
    );
    assert_eq!(row[1], Field::StringValue("2026-11-25 22:10:04.5".into()));
    assert_eq!(row[2], Field::StringValue("2026-11-25".into()));
    assert_eq!(row[3], Field::StringValue("22:10:04".into()));
    assert_eq!(row[4], Field::StringValue("12345.678".into()));
    assert_eq!(row[5], Field::StringValue(r#"{"k": [1, 2]}"#.into()));
    assert_eq!(row[6], Field::LongValue(9_007_199_254_740_993));
    assert_eq!(row[7], Field::LongValue(-7));
    assert_eq!(row[8], Field::DoubleValue(1.25));
    assert_eq!(row[9], Field::BooleanValue(true));
    assert_eq!(
        row[10],
        Field::BlobValue(aws_sdk_rdsdata::primitives::Blob::new(vec![0u8, 255, 7]))
    );
    assert_eq!(row[11], Field::IsNull(true));
    match &row[12] {
        Field::ArrayValue(aws_sdk_rdsdata::types::ArrayValue::StringValues(v)) => {
            assert_eq!(v, &vec![Some("a".to_string()), Some("b".into())])
        }
        other => panic!("{other:?}"),
    }
    match &row[13] {
        Field::ArrayValue(aws_sdk_rdsdata::types::ArrayValue::LongValues(v)) => {
            assert_eq!(v, &vec![Some(1), Some(2), Some(3)])
        }
        other => panic!("{other:?}"),
    }
    let meta = out.column_metadata();
    assert_eq!(meta.len(), 14);
    assert_eq!(meta[0].name(), Some("id"));
    assert_eq!(meta[0].type_name(), Some("uuid"));
    assert_eq!(meta[6].r#type(), -5);

    // formatRecordsAs JSON: no records, a JSON string instead.
    let out = s
        .client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql("SELECT n, ok, label, amount FROM t")
        .format_records_as(RecordsFormatType::Json)
        .send()
        .await
        .unwrap();
    assert!(out.records().is_empty());
    let v: serde_json::Value = serde_json::from_str(out.formatted_records().unwrap()).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"n": 9_007_199_254_740_993i64, "ok": true, "label": null, "amount": "12345.678"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strictness_and_rejections_match_the_service() {
    let s = stack(Duration::from_secs(180)).await;
    exec(&s, "CREATE TABLE u (id UUID PRIMARY KEY)", vec![]).await;
    let send = |sql: &str, params: Vec<SqlParameter>| {
        s.client
            .execute_statement()
            .resource_arn(ARN)
            .secret_arn(SECRET)
            .database("app")
            .sql(sql)
            .set_parameters(Some(params))
            .send()
    };
    // A string is not silently a uuid.
    let e = send(
        "INSERT INTO u VALUES (:id)",
        vec![p(
            "id",
            Field::StringValue("0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b".into()),
        )],
    )
    .await
    .unwrap_err()
    .into_service_error();
    assert!(e.is_database_error_exception(), "{e:?}");
    assert!(format!("{e:?}").contains("uuid"), "{e:?}");
    // SQL errors carry PostgreSQL's message.
    let e = send("SELECT * FROM missing", vec![])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_database_error_exception());
    assert!(
        e.to_string().contains("relation \"missing\" does not exist") || format!("{e:?}").contains("does not exist"),
        "{e:?}"
    );
    // Multi-statement SQL.
    let e = send("SELECT 1; SELECT 2", vec![])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_database_error_exception(), "{e:?}");
    // Array parameters.
    let arr = Field::ArrayValue(aws_sdk_rdsdata::types::ArrayValue::LongValues(vec![Some(1)]));
    let e = send("SELECT :a", vec![p("a", arr)])
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error_code(&e), "ValidationException");
    // Results over 1 MiB.
    let e = send("SELECT repeat('x', 4096) FROM generate_series(1, 400)", vec![])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_database_error_exception(), "{e:?}");
    // Unsupported result types.
    let e = send("SELECT '(1,2)'::point", vec![])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_unsupported_result_exception(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_roll_back_and_expire() {
    let s = stack(Duration::from_millis(1500)).await;
    exec(&s, "CREATE TABLE k (v BIGINT)", vec![]).await;
    let count = || async { exec(&s, "SELECT count(*) FROM k", vec![]).await.records()[0][0].clone() };
    let begin = || async {
        s.client
            .begin_transaction()
            .resource_arn(ARN)
            .secret_arn(SECRET)
            .database("app")
            .send()
            .await
            .unwrap()
            .transaction_id
            .unwrap()
    };
    let insert = |tx: String| {
        s.client
            .execute_statement()
            .resource_arn(ARN)
            .secret_arn(SECRET)
            .database("app")
            .sql("INSERT INTO k VALUES (:v)")
            .parameters(p("v", Field::LongValue(1)))
            .transaction_id(tx)
            .send()
    };
    let tx = begin().await;
    insert(tx.clone()).await.unwrap();
    assert_eq!(count().await, Field::LongValue(0), "uncommitted rows are invisible");
    let out = s
        .client
        .rollback_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .unwrap();
    assert_eq!(out.transaction_status(), Some("Rollback Complete"));
    assert_eq!(count().await, Field::LongValue(0));

    let tx = begin().await;
    insert(tx.clone()).await.unwrap();
    let out = s
        .client
        .commit_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .unwrap();
    assert_eq!(out.transaction_status(), Some("Transaction Committed"));
    assert_eq!(count().await, Field::LongValue(1));
    let e = s
        .client
        .commit_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_transaction_not_found_exception());

    // Idle transactions end.
    let tx = begin().await;
    insert(tx.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = insert(tx.clone()).await.unwrap_err().into_service_error();
    assert!(e.is_transaction_not_found_exception(), "{e:?}");
    assert_eq!(
        count().await,
        Field::LongValue(1),
        "the expired transaction was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_execute_is_all_or_nothing() {
    let s = stack(Duration::from_secs(180)).await;
    exec(
        &s,
        "CREATE TABLE b (id BIGINT PRIMARY KEY, at TIMESTAMP NOT NULL)",
        vec![],
    )
    .await;
    let set = |id: i64| {
        vec![
            p("id", Field::LongValue(id)),
            hinted("at", "2026-01-01 00:00:00", TypeHint::Timestamp),
        ]
    };
    let out = s
        .client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql("INSERT INTO b (id, at) VALUES (:id, :at)")
        .set_parameter_sets(Some(vec![set(1), set(2), set(3)]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.update_results().len(), 3);
    // A failing set (duplicate key) leaves nothing of its batch behind.
    let e = s
        .client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql("INSERT INTO b (id, at) VALUES (:id, :at)")
        .set_parameter_sets(Some(vec![set(4), set(1)]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_database_error_exception(), "{e:?}");
    let n = exec(&s, "SELECT count(*) FROM b", vec![]).await;
    assert_eq!(n.records()[0][0], Field::LongValue(3));
}
