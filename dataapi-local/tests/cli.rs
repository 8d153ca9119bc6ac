//! `dataapi-local` driven by an independent client: the AWS CLI (`aws rds-data ...
//! --endpoint-url`), which is botocore, not the Rust SDK. Same calls, same answers the
//! service gives for the same SQL.

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use tollgate_testkit::Postgres;

const ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster:local";
const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:local";

fn aws(endpoint: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(tollgate_testkit::tool("aws"))
        .args([
            "rds-data",
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the AWS CLI ({e})"));
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn exec(endpoint: &str, sql: &str, extra: &[&str]) -> Result<Value, String> {
    let mut args = vec![
        "execute-statement",
        "--resource-arn",
        ARN,
        "--secret-arn",
        SECRET,
        "--database",
        "app",
        "--sql",
        sql,
    ];
    args.extend_from_slice(extra);
    aws(endpoint, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_gets_the_services_answers() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    let ep = dataapi_local::server::spawn_local(pg.port, Duration::from_secs(180))
        .await
        .unwrap();
    let ep = ep.as_str();
    let run = |f: Box<dyn FnOnce() -> Result<Value, String> + Send>| tokio::task::spawn_blocking(f);

    let created = run(Box::new({
        let ep = ep.to_string();
        move || {
            exec(
                &ep,
                "CREATE TABLE items (id UUID PRIMARY KEY, name TEXT NOT NULL, qty INT, at TIMESTAMP)",
                &[],
            )
        }
    }))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(created["numberOfRecordsUpdated"], 0);

    let params = json!([
        {"name": "id", "value": {"stringValue": "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"}, "typeHint": "UUID"},
        {"name": "name", "value": {"stringValue": "widget"}},
        {"name": "qty", "value": {"longValue": 3}},
        {"name": "at", "value": {"stringValue": "2026-11-25 22:10:04"}, "typeHint": "TIMESTAMP"}
    ])
    .to_string();
    let ep2 = ep.to_string();
    let inserted = tokio::task::spawn_blocking(move || {
        exec(
            &ep2,
            "INSERT INTO items VALUES (:id, :name, :qty, :at)",
            &["--parameters", &params],
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(inserted["numberOfRecordsUpdated"], 1);
    assert_eq!(inserted["generatedFields"], json!([]));

    let ep2 = ep.to_string();
    let selected = tokio::task::spawn_blocking(move || {
        exec(
            &ep2,
            "SELECT id, name, qty, at FROM items",
            &["--include-result-metadata"],
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        selected["records"],
        json!([[
            {"stringValue": "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"},
            {"stringValue": "widget"},
            {"longValue": 3},
            {"stringValue": "2026-11-25 22:10:04"}
        ]])
    );
    assert_eq!(selected["columnMetadata"][0]["typeName"], "uuid");
    assert_eq!(selected["numberOfRecordsUpdated"], 0);

    let ep2 = ep.to_string();
    let formatted = tokio::task::spawn_blocking(move || {
        exec(&ep2, "SELECT name, qty FROM items", &["--format-records-as", "JSON"])
    })
    .await
    .unwrap()
    .unwrap();
    let rows: Value = serde_json::from_str(formatted["formattedRecords"].as_str().unwrap()).unwrap();
    assert_eq!(rows, json!([{"name": "widget", "qty": 3}]));

    // Transactions and batch execution.
    let ep2 = ep.to_string();
    let tx = tokio::task::spawn_blocking(move || {
        aws(
            &ep2,
            &[
                "begin-transaction",
                "--resource-arn",
                ARN,
                "--secret-arn",
                SECRET,
                "--database",
                "app",
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let id = tx["transactionId"].as_str().unwrap().to_string();
    let sets = json!([
        [{"name": "id", "value": {"stringValue": "0192b3a4-5c6d-7e8f-9a0b-000000000001"}, "typeHint": "UUID"}, {"name": "n", "value": {"stringValue": "a"}}],
        [{"name": "id", "value": {"stringValue": "0192b3a4-5c6d-7e8f-9a0b-000000000002"}, "typeHint": "UUID"}, {"name": "n", "value": {"stringValue": "b"}}]
    ])
    .to_string();
    let (ep2, id2) = (ep.to_string(), id.clone());
    let batch = tokio::task::spawn_blocking(move || {
        aws(
            &ep2,
            &[
                "batch-execute-statement",
                "--resource-arn",
                ARN,
                "--secret-arn",
                SECRET,
                "--database",
                "app",
                "--sql",
                "INSERT INTO items (id, name) VALUES (:id, :n)",
                "--parameter-sets",
                &sets,
                "--transaction-id",
                &id2,
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(batch["updateResults"].as_array().unwrap().len(), 2);
    let (ep2, id2) = (ep.to_string(), id.clone());
    let committed = tokio::task::spawn_blocking(move || {
        aws(
            &ep2,
            &[
                "commit-transaction",
                "--resource-arn",
                ARN,
                "--secret-arn",
                SECRET,
                "--transaction-id",
                &id2,
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(committed["transactionStatus"], "Transaction Committed");
    let ep2 = ep.to_string();
    let rolled = tokio::task::spawn_blocking(move || {
        aws(
            &ep2,
            &[
                "rollback-transaction",
                "--resource-arn",
                ARN,
                "--secret-arn",
                SECRET,
                "--transaction-id",
                &id,
            ],
        )
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(rolled.contains("TransactionNotFoundException"), "{rolled}");

    // Errors come back typed.
    let ep2 = ep.to_string();
    let err = tokio::task::spawn_blocking(move || exec(&ep2, "SELECT * FROM nowhere", &[]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.contains("DatabaseErrorException") && err.contains("does not exist"),
        "{err}"
    );
    let count = pg.psql("app", "SELECT count(*) FROM items");
    assert_eq!(count.trim(), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_sees_the_services_refusals_and_column_metadata() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE app");
    pg.psql(
        "app",
        "CREATE TABLE t (id SERIAL PRIMARY KEY, name VARCHAR(40) NOT NULL, amount NUMERIC(10,2))",
    );
    let ep = dataapi_local::server::spawn_local(pg.port, Duration::from_secs(180))
        .await
        .unwrap();
    let call = |sql: String, extra: &[&str]| {
        let ep = ep.clone();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            exec(&ep, &sql, &extra)
        })
    };

    // Duplicate labels under formatRecordsAs JSON.
    let err = call("SELECT 1 AS n, 2 AS n".into(), &["--format-records-as", "JSON"])
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("BadRequestException"), "{err}");

    // Two statements in one call; one with a trailing `;` is fine.
    let err = call("SELECT 1; SELECT 2".into(), &[]).await.unwrap().unwrap_err();
    assert!(
        err.contains("ValidationException") && err.contains("Multistatements aren't supported."),
        "{err}"
    );
    let one = call("SELECT ';' AS s;".into(), &[]).await.unwrap().unwrap();
    assert_eq!(one["records"], json!([[{"stringValue": ";"}]]));

    // SQL over 65,536 characters.
    let long = format!("SELECT 1 {}", " ".repeat(dataapi_local::service::MAX_SQL_CHARS));
    let err = call(long, &[]).await.unwrap().unwrap_err();
    assert!(err.contains("ValidationException") && err.contains("65536"), "{err}");

    // Column metadata.
    let out = call(
        "SELECT id, name, amount, 1 AS one FROM t".into(),
        &["--include-result-metadata"],
    )
    .await
    .unwrap()
    .unwrap();
    let m = &out["columnMetadata"];
    let pick = |c: &Value| {
        json!([
            c["typeName"],
            c["nullable"],
            c["precision"],
            c["scale"],
            c["isAutoIncrement"],
            c["tableName"]
        ])
    };
    assert_eq!(pick(&m[0]), json!(["serial", 0, 10, 0, true, "t"]));
    assert_eq!(pick(&m[1]), json!(["varchar", 0, 40, 0, false, "t"]));
    assert_eq!(pick(&m[2]), json!(["numeric", 1, 10, 2, false, "t"]));
    assert_eq!(pick(&m[3]), json!(["int4", 1, 10, 0, false, ""]));
}
