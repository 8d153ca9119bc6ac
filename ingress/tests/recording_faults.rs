//! Fail closed before, never after: a request log that goes down refuses new requests before
//! their functions run, keeps the records of requests that ran (answered 503), and writes them
//! when it is back; and the commit budget is the real bound on a failing commit, against the
//! Data API stand-in emulating a cluster that is resuming.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::backends::StorageSettings;
use tollgate_core::local::LocalInvoker;
use tollgate_core::ports::RequestLog;
use tollgate_ingress::app;
use tollgate_ingress::routes::RouteTable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_refuses_before_the_function_and_keeps_what_already_ran() {
    let dir = TempDir::new("outage");
    let ing = Faulty::start(&dir.0, &[("TOLLGATE_COMMIT_RETRY_MS", "500")]).await;
    let (running, flaky) = (ing.running, ing.flaky.clone());
    let addr = running.local_addr;
    let ok = request(addr, "GET", "/v1/echo/before", &[("x-request-id", "before")], "").await;
    assert_eq!(ok.status, 200);

    flaky.down.store(true, Ordering::SeqCst);
    // The log fails while this request's function runs: its answer is a 503, its record kept.
    let started = Instant::now();
    let r = request(addr, "GET", "/v1/echo/ran?delay_ms=50", &[("x-request-id", "ran")], "").await;
    r.assert_error(503, "recording_unavailable");
    assert!(r.headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_millis(500 + 50 + 1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ing.executed.lock().unwrap().len(), 2);
    // Now the log is known to be failing: refused before the function, quickly; unhealthy.
    for id in ["refused-1", "refused-2"] {
        let started = Instant::now();
        let r = request(addr, "GET", "/v1/echo/refused", &[("x-request-id", id)], "").await;
        r.assert_error(503, "recording_unavailable");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        ing.executed.lock().unwrap().len(),
        2,
        "no function ran while the log was down"
    );
    let health = request(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(health.status, 503);
    assert!(
        health.headers.contains_key("retry-after"),
        "every 503 says when to retry"
    );

    flaky.down.store(false, Ordering::SeqCst);
    let all = ["before", "ran", "refused-1", "refused-2"];
    let back = eventually(Duration::from_secs(15), || async {
        let rows = rows_by_id(&dir.0);
        all.iter().all(|id| rows.get(*id).is_some_and(|r| r.1.is_some()))
    })
    .await;
    assert!(back, "kept records written and audited: {:?}", rows_by_id(&dir.0));
    assert_eq!(request(addr, "GET", "/healthz", &[], "").await.status, 200);

    let v = request(addr, "GET", "/v1/requests/ran", &[], "").await.json();
    assert_eq!(
        v["request"]["status"], 503,
        "the record says what the client was told: {v}"
    );
    assert_eq!(v["request"]["error_code"], "recording_unavailable");
    let event = &v["audit"]["event"];
    assert_eq!(event["invoked"], true);
    assert_eq!(
        event["response"]["status"], 200,
        "the function's answer that was not delivered"
    );
    assert_eq!(event["response"]["delivered"], false);
    for id in ["refused-1", "refused-2"] {
        let v = request(addr, "GET", &format!("/v1/requests/{id}"), &[], "")
            .await
            .json();
        assert_eq!(v["request"]["status"], 503);
        assert_eq!(v["audit"]["event"]["invoked"], false);
    }
    running.shutdown();
    running.wait().await;
    let audits = audit_counts(&dir_store(&dir.0)).await;
    for id in all {
        assert_eq!(audits.get(id), Some(&1), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_cluster_gets_its_503_within_the_commit_budget() {
    let pg = tollgate_testkit::Postgres::start();
    pg.psql("postgres", "CREATE DATABASE tollgate");
    let settings = tollgate_aws::dataapi::DataApiSettings {
        cluster_arn: "arn:aws:rds:us-east-1:123456789012:cluster:tollgate".into(),
        secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate".into(),
        database: "tollgate".into(),
    };
    let client = |endpoint: String| {
        tollgate_aws::sdk::rds_data_from(
            aws_sdk_rdsdata::Config::builder()
                .behavior_version(aws_sdk_rdsdata::config::BehaviorVersion::latest())
                .region(aws_sdk_rdsdata::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_rdsdata::config::Credentials::new("t", "t", None, None, "t"))
                .endpoint_url(endpoint),
        )
    };
    // The schema through a normal stand-in; the ingress talks to one whose cluster resumes
    // for a minute (every call answered DatabaseResumingException).
    let normal = dataapi_local::server::spawn_local(pg.port, Duration::from_secs(180))
        .await
        .unwrap();
    let log = tollgate_aws::dataapi::DataApiRequestLog::new(client(normal), settings.clone());
    log.migrate().await.unwrap();
    let api = dataapi_local::service::DataApi::new(dataapi_local::service::Config {
        host: "127.0.0.1".into(),
        port: pg.port,
        user: "postgres".into(),
        default_database: "postgres".into(),
        tx_idle_timeout: Duration::from_secs(180),
        resume_delay: Duration::from_secs(60),
    });
    let addr = dataapi_local::server::spawn(([127, 0, 0, 1], 0).into(), api)
        .await
        .unwrap();
    let resuming = Arc::new(tollgate_aws::dataapi::DataApiRequestLog::new(
        client(format!("http://{addr}")),
        settings,
    ));

    let dir = TempDir::new("resuming");
    let budget = Duration::from_millis(1500);
    let config = config_for(&dir.0, &[("TOLLGATE_COMMIT_RETRY_MS", "1500")]);
    let backends = tollgate_embedded::open(&StorageSettings {
        mode: tollgate_core::backends::Mode::Embedded,
        data_dir: dir.0.clone(),
        log_origin: None,
    })
    .unwrap();
    let running = app::start(
        config,
        RouteTable::parse(&test_routes()).unwrap(),
        resuming,
        backends.keys.clone(),
        Arc::new(LocalInvoker::new(app::embedded_functions(&backends))),
    )
    .await
    .unwrap();
    register_token(running.local_addr, admin_token(&backends).await);
    let started = Instant::now();
    let r = request(running.local_addr, "GET", "/v1/echo/x", &[], "").await;
    let took = started.elapsed();
    r.assert_error(503, "recording_unavailable");
    let bound = budget + tollgate_aws::sdk::RDS_DATA_ATTEMPT_TIMEOUT;
    println!("503 after {took:?} (budget {budget:?}, bound {bound:?})");
    assert!(
        took >= budget.mul_f64(0.5),
        "the commit was retried within its budget ({took:?})"
    );
    assert!(took <= bound, "{took:?} > budget + one attempt timeout ({bound:?})");
    assert!(
        took < budget + Duration::from_millis(700),
        "resuming answers come at once: {took:?}"
    );
}

/// A size-limited tmpfs (a disk that fills up), unmounted when dropped. Mounting needs root,
/// which CI has; elsewhere the test fails saying so.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tollgate-tmpfs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs for the full-disk test needs root (mount -t tmpfs)"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_that_ran_and_recovers_when_space_returns() {
    let disk = Tmpfs::mount("6m");
    let data = disk.0.join("data");
    let extra = [
        ("TOLLGATE_COMMIT_RETRY_MS", "300"),
        ("TOLLGATE_RECONCILE_INTERVAL_MS", "500"),
        ("TOLLGATE_RECONCILE_GRACE_MS", "1000"),
    ];
    let ing = Faulty::start(&data, &extra).await;
    let running = ing.running;
    let addr = running.local_addr;
    assert_eq!(
        request(addr, "GET", "/v1/echo/warm", &[("x-request-id", "warm")], "")
            .await
            .status,
        200
    );
    // Fill the disk but for a few hundred KiB.
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {
        written += chunk.len();
    }
    drop(f);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len((written - 384 * 1024) as u64)
        .unwrap();

    let body = "b".repeat(2048);
    let mut ids = vec!["warm".to_string()];
    let (mut ok, mut unavailable) = (0, 0);
    for i in 0..300 {
        let id = format!("full-{i}");
        let r = request(addr, "POST", "/v1/echo/full", &[("x-request-id", &id)], &body).await;
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                r.assert_error(503, "recording_unavailable");
                unavailable += 1;
            }
            other => panic!("{id}: {other} {:?}", r.body),
        }
        ids.push(id);
    }
    println!(
        "disk full: {ok} answered 200, {unavailable} answered 503, {} invocations",
        ing.executed.lock().unwrap().len()
    );
    assert!(unavailable > 0, "the disk never filled ({ok} fit)");

    std::fs::remove_file(&filler).unwrap();
    let dir = data.clone();
    let settled = eventually(Duration::from_secs(40), || {
        let (dir, ids) = (dir.clone(), ids.clone());
        async move {
            let rows = rows_by_id(&dir);
            ids.iter().all(|id| rows.get(id).is_some_and(|r| r.1.is_some()))
        }
    })
    .await;
    let rows = rows_by_id(&data);
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| rows.get(*id).is_none_or(|r| r.1.is_none()))
        .collect();
    assert!(
        settled,
        "{} of {} requests not recorded and audited: {missing:?}",
        missing.len(),
        ids.len()
    );
    running.shutdown();
    running.wait().await;
    let audits = audit_counts(&dir_store(&data)).await;
    for id in &ids {
        assert_eq!(audits.get(id), Some(&1), "{id}");
    }
    assert_eq!(rows.len(), ids.len());
}
