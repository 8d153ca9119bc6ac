//! `dataapi-local`: the RDS Data API over PostgreSQL, on loopback.

use dataapi_local::service::{Config, DataApi, DEFAULT_TX_IDLE_TIMEOUT};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_core::settings::SettingsReader;

#[tokio::main]
async fn main() -> ExitCode {
    let mut r = SettingsReader::from_process();
    let listen: SocketAddr = r.parse(
        "TOLLGATE_DATAAPI_LISTEN",
        "127.0.0.1:8082".parse().expect("valid"),
        "address dataapi-local listens on",
    );
    let host: String = r.parse("TOLLGATE_DATAAPI_PG_HOST", "127.0.0.1".to_string(), "PostgreSQL host");
    let port: u16 = r.parse("TOLLGATE_DATAAPI_PG_PORT", 5432, "PostgreSQL port");
    let user: String = r.parse(
        "TOLLGATE_DATAAPI_PG_USER",
        "postgres".to_string(),
        "PostgreSQL user (trust or peer auth)",
    );
    let database: String = r.parse(
        "TOLLGATE_DATAAPI_PG_DATABASE",
        "postgres".to_string(),
        "database used when a call names none",
    );
    let idle = r.range(
        "TOLLGATE_DATAAPI_TX_IDLE_TIMEOUT_MS",
        DEFAULT_TX_IDLE_TIMEOUT.as_millis() as u64,
        100,
        86_400_000,
        "transactions idle this long are rolled back (the service: 3 minutes)",
    );
    let resume = r.range(
        "TOLLGATE_DATAAPI_RESUME_DELAY_MS",
        0,
        0,
        600_000,
        "emulate an auto-paused cluster: calls in the first N ms answer DatabaseResumingException",
    );
    if r.help_requested() {
        print!("{}", r.help_text("dataapi-local"));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = r.finish() {
        eprint!("dataapi-local: {e}");
        return ExitCode::from(2);
    }
    let _logs = tollgate_core::logging::init_json_logs();
    let api = DataApi::new(Config {
        host,
        port,
        user,
        default_database: database,
        tx_idle_timeout: Duration::from_millis(idle),
        resume_delay: Duration::from_millis(resume),
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dataapi-local: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    // One plain line for scripts waiting on start-up, then JSON logs.
    println!("dataapi-local listening on {local}");
    tokio::select! {
        _ = dataapi_local::server::serve(listener, api) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => { s.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => {}
    }
    ExitCode::SUCCESS
}
