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

/// An ExecuteStatement call on the stack's cluster and database, ready for more options.
fn statement(
    s: &Stack,
    sql: &str,
) -> aws_sdk_rdsdata::operation::execute_statement::builders::ExecuteStatementFluentBuilder {
    s.client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql(sql)
}

async fn exec(
    s: &Stack,
    sql: &str,
    params: Vec<SqlParameter>,
) -> aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementOutput {
    statement(s, sql)
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
    let send = |sql: &str, params: Vec<SqlParameter>| statement(&s, sql).set_parameters(Some(params)).send();
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
        statement(&s, "INSERT INTO k VALUES (:v)")
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

fn error_message<E: aws_sdk_rdsdata::error::ProvideErrorMetadata>(e: &E) -> String {
    e.message().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_records_refuse_duplicate_column_labels() {
    let s = stack(Duration::from_secs(180)).await;
    exec(&s, "CREATE TABLE a (id BIGINT, v TEXT)", vec![]).await;
    exec(&s, "CREATE TABLE b (id BIGINT, v TEXT)", vec![]).await;
    exec(&s, "INSERT INTO a VALUES (1, 'x')", vec![]).await;
    exec(&s, "INSERT INTO b VALUES (1, 'y')", vec![]).await;
    let json = |sql: &str| statement(&s, sql).format_records_as(RecordsFormatType::Json).send();
    // Two columns labelled alike, by alias or by a join: an error, not one key silently won.
    for sql in [
        "SELECT 1 AS n, 2 AS n",
        "SELECT a.id, b.id FROM a JOIN b USING (id)",
        "SELECT a.v, b.v FROM a JOIN b USING (id) WHERE false",
    ] {
        let e = json(sql).await.unwrap_err().into_service_error();
        assert!(e.is_bad_request_exception(), "{sql}: {e:?}");
        assert!(error_message(&e).contains("more than one column"), "{sql}: {e:?}");
    }
    // Labels differing in case are distinct JSON keys.
    let out = json("SELECT 1 AS \"N\", 2 AS n").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(out.formatted_records().unwrap()).unwrap();
    assert_eq!(v, serde_json::json!([{"N": 1, "n": 2}]));
    // Without JSON the same result set is fine: records are positional.
    let out = exec(&s, "SELECT a.id, b.id FROM a JOIN b USING (id)", vec![]).await;
    assert_eq!(out.records()[0], vec![Field::LongValue(1), Field::LongValue(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_sql_is_a_validation_error() {
    let s = stack(Duration::from_secs(180)).await;
    exec(&s, "CREATE TABLE m (v TEXT)", vec![]).await;
    let send = |sql: &str| statement(&s, sql).send();
    for sql in [
        "SELECT 1; SELECT 2",
        "INSERT INTO m VALUES ('a');INSERT INTO m VALUES ('b')",
        "INSERT INTO m VALUES (';'); -- the second one:\n DELETE FROM m",
    ] {
        let e = send(sql).await.unwrap_err().into_service_error();
        assert_eq!(error_code(&e), "ValidationException", "{sql}: {e:?}");
        assert_eq!(error_message(&e), "Multistatements aren't supported.", "{sql}");
    }
    let n = exec(&s, "SELECT count(*) FROM m", vec![]).await;
    assert_eq!(n.records()[0][0], Field::LongValue(0), "nothing of a refused call ran");

    // One statement, with a trailing `;` or `;` inside literals, comments and bodies.
    exec(&s, "INSERT INTO m VALUES ('a;b');", vec![]).await;
    exec(&s, "INSERT INTO m VALUES ($$c;d$$) /* ; */ ; -- ;\n", vec![]).await;
    exec(
        &s,
        "CREATE FUNCTION two() RETURNS bigint AS $body$ SELECT 1; SELECT 2::bigint $body$ LANGUAGE sql;",
        vec![],
    )
    .await;
    let out = exec(&s, "SELECT two(), \";\" FROM (SELECT 1 AS \";\") q;", vec![]).await;
    assert_eq!(out.records()[0], vec![Field::LongValue(2), Field::LongValue(1)]);
    let n = exec(&s, "SELECT count(*) FROM m", vec![]).await;
    assert_eq!(n.records()[0][0], Field::LongValue(2));

    // BatchExecuteStatement: one API call, one statement.
    let e = s
        .client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql("INSERT INTO m VALUES (:v); DELETE FROM m")
        .set_parameter_sets(Some(vec![vec![p("v", Field::StringValue("e".into()))]]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error_code(&e), "ValidationException", "{e:?}");
    assert_eq!(error_message(&e), "Multistatements aren't supported.");
    let n = exec(&s, "SELECT count(*) FROM m", vec![]).await;
    assert_eq!(n.records()[0][0], Field::LongValue(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_longer_than_65536_characters_is_refused() {
    let s = stack(Duration::from_secs(180)).await;
    // `SELECT '<é x n>'` is 9 + n characters, twice as many bytes past the first 9.
    let select = |chars: usize| format!("SELECT '{}'", "é".repeat(chars - 9));
    let at_limit = select(dataapi_local::service::MAX_SQL_CHARS);
    assert!(at_limit.len() > 65_536, "the limit counts characters, not bytes");
    let out = exec(&s, &at_limit, vec![]).await;
    assert_eq!(out.records().len(), 1);

    let over = select(dataapi_local::service::MAX_SQL_CHARS + 1);
    let e = s
        .client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql(&over)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error_code(&e), "ValidationException", "{e:?}");
    assert!(
        error_message(&e).contains("Member must have length less than or equal to 65536"),
        "{e:?}"
    );
    let e = s
        .client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql(&over)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error_code(&e), "ValidationException", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_metadata_reports_nullability_precision_and_source() {
    let s = stack(Duration::from_secs(180)).await;
    exec(
        &s,
        "CREATE TABLE item (id SERIAL PRIMARY KEY, seq BIGINT GENERATED ALWAYS AS IDENTITY, \
         name VARCHAR(40) NOT NULL, code CHAR(3), amount NUMERIC(10,2), note TEXT, \
         at TIMESTAMPTZ, ok BOOLEAN NOT NULL DEFAULT true, tags TEXT[], ref UUID)",
        vec![],
    )
    .await;
    let out = s
        .client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .sql("SELECT id, seq, name AS label, code, amount, note, at, ok, tags, ref, amount * 2 AS twice FROM item")
        .include_result_metadata(true)
        .send()
        .await
        .unwrap();
    let m = out.column_metadata();
    assert_eq!(m.len(), 11);
    let by = |i: usize| &m[i];
    // (typeName, type, nullable, precision, scale, isAutoIncrement, isSigned, isCaseSensitive)
    let expected = [
        ("serial", 4, 0, 10, 0, true, true, false),
        // pgJDBC names an identity bigint as it names a bigserial.
        ("bigserial", -5, 0, 19, 0, true, true, false),
        ("varchar", 12, 0, 40, 0, false, false, true),
        ("bpchar", 1, 1, 3, 0, false, false, true),
        ("numeric", 2, 1, 10, 2, false, true, false),
        ("text", 12, 1, i32::MAX, 0, false, false, true),
        ("timestamptz", 93, 1, 35, 6, false, false, false),
        ("bool", -7, 0, 1, 0, false, false, false),
        ("_text", 2003, 1, i32::MAX, 0, false, false, true),
        ("uuid", 1111, 1, i32::MAX, 0, false, false, true),
        ("numeric", 2, 1, 0, 0, false, true, false),
    ];
    for (i, e) in expected.iter().enumerate() {
        let c = by(i);
        let got = (
            c.type_name().unwrap_or_default(),
            c.r#type(),
            c.nullable(),
            c.precision(),
            c.scale(),
            c.is_auto_increment(),
            c.is_signed(),
            c.is_case_sensitive(),
        );
        assert_eq!(got, *e, "column {i}: {c:?}");
        assert!(!c.is_currency());
        assert_eq!(
            c.schema_name(),
            Some(""),
            "pgJDBC and the service leave schemaName empty"
        );
    }
    assert_eq!((by(2).name(), by(2).label()), (Some("label"), Some("label")));
    assert_eq!(by(2).table_name(), Some("item"));
    assert_eq!(by(10).table_name(), Some(""), "an expression has no table");
    assert_eq!(by(8).array_base_column_type(), 12);
    assert_eq!(by(0).array_base_column_type(), 0);

    // Same answers inside a transaction, and for a view's columns.
    exec(&s, "CREATE VIEW item_v AS SELECT name, amount FROM item", vec![]).await;
    let tx = s
        .client
        .begin_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .send()
        .await
        .unwrap()
        .transaction_id
        .unwrap();
    let out = s
        .client
        .execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .database("app")
        .transaction_id(&tx)
        .sql("SELECT name, amount FROM item_v")
        .include_result_metadata(true)
        .send()
        .await
        .unwrap();
    let m = out.column_metadata();
    assert_eq!(
        (m[0].table_name(), m[0].nullable(), m[0].precision()),
        (Some("item_v"), 1, 40)
    );
    assert_eq!((m[1].precision(), m[1].scale()), (10, 2));
}
