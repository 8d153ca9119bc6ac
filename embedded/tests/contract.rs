//! The embedded adapters meet the port contracts (`tollgate_testkit::contract`).

fn temp(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tollgate-contract-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&p).expect("temp dir");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_request_log_meets_the_contract() {
    let dir = temp("sqlite");
    let log = tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).expect("open");
    tollgate_testkit::contract::request_log(&log).await;
    tollgate_testkit::contract::key_store(&log).await;
    let log = std::sync::Arc::new(log);
    tollgate_testkit::contract::tlog_sequencer(log.clone()).await;
    tollgate_testkit::contract::tlog_rows(&*log).await;
    tollgate_testkit::contract::tlog_mark_pending(log.clone()).await;
    let log = std::sync::Arc::try_unwrap(log).unwrap_or_else(|_| panic!("no task holds the log"));
    // Reopening applies no migration twice and keeps the rows.
    drop(log);
    let log = tollgate_embedded::sqlite::SqliteRequestLog::open(dir.join("r.db")).expect("reopen");
    assert!(tollgate_core::ports::RequestLog::get(&log, "r05")
        .await
        .expect("get")
        .is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_object_store_meets_the_contract() {
    let dir = temp("dir");
    let store = tollgate_embedded::dirstore::DirObjectStore::open(&dir).expect("open");
    tollgate_testkit::contract::object_store(&store).await;
    assert!(tollgate_core::ports::ObjectStore::get(&store, "../escape")
        .await
        .is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_record_checksums_and_an_edited_one_is_refused() {
    let dir = temp("migrations");
    let db = dir.join("r.db");
    drop(tollgate_embedded::sqlite::SqliteRequestLog::open(&db).expect("open"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sums: Vec<(String, String)> = conn
        .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<(String, String)> = tollgate_core::sql::SQLITE_MIGRATIONS
        .iter()
        .map(|(v, t)| (v.to_string(), tollgate_core::sql::migrations::checksum(t)))
        .collect();
    assert_eq!(sums, expected);

    // A table from before checksums: the column is added and the checksums recorded.
    conn.execute_batch("ALTER TABLE schema_migrations DROP COLUMN checksum")
        .unwrap();
    drop(tollgate_embedded::sqlite::SqliteRequestLog::open(&db).expect("reopen an old table"));
    let recorded: i64 = conn
        .query_row(
            "SELECT count(*) FROM schema_migrations WHERE checksum IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded as usize, expected.len());

    // A migration whose text changed after it was applied is refused, by name.
    conn.execute(
        "UPDATE schema_migrations SET checksum = '0000' WHERE version = '0001_api_requests'",
        [],
    )
    .unwrap();
    let err = tollgate_embedded::sqlite::SqliteRequestLog::open(&db)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("0001_api_requests") && err.contains("edited"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
