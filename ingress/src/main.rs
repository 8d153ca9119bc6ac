//! `tollgate`: the ingress. `cargo run` starts it in embedded mode on 127.0.0.1:8080.
//!
//! `tollgate migrate` applies the request log's schema migrations (SQLite in embedded mode,
//! Aurora through the Data API in aws mode) and exits; `tollgate requests list|get` and
//! `tollgate export` read the request log; `tollgate help` lists them all (see `cli.rs`).

use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use tollgate_core::backends::Mode;
use tollgate_core::settings::SettingsReader;
use tollgate_ingress::app;
use tollgate_ingress::cli::{self, Command, KeysCommand, RequestsCommand};
use tollgate_ingress::config::IngressConfig;
use tollgate_ingress::ops;
use tollgate_ingress::routes::RouteTable;

// mimalloc: the request path allocates per request (JSON, headers, records); glibc malloc
// showed up at ~10% of the load benchmark's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os()) {
        Ok(i) => i,
        // --help, --version, help <command>, and clap's own usage errors (exit code 2).
        Err(e) => e.exit(),
    };
    if let Command::Completions { shell } = invocation.command {
        cli::completions(shell, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let mut reader = SettingsReader::new(std::env::vars(), invocation.setting_args);
    let config = IngressConfig::read(&mut reader);
    let config = match (config, reader.finish()) {
        (Ok(c), Ok(_)) => c,
        (Err(e), _) | (_, Err(e)) => {
            eprint!("tollgate: {e}");
            return ExitCode::from(2);
        }
    };
    let serving = matches!(invocation.command, Command::Serve);
    // The operator commands print their results on stdout: their logs go to stderr.
    let logs = if serving {
        tollgate_core::logging::init_json_logs()
    } else {
        tollgate_core::logging::init_json_logs_to_stderr()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tollgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match invocation.command {
        Command::Serve => {
            let routes = RouteTable::load(&config.routes_file).and_then(|routes| {
                let problems = routes.write_ahead_problems(config.reconcile.intent_grace, config.recorder.commit_retry);
                if problems.is_empty() {
                    Ok(routes)
                } else {
                    Err(problems)
                }
            });
            match routes {
                Ok(routes) => runtime.block_on(run(config, routes)),
                Err(errors) => {
                    eprintln!("tollgate: invalid route table:");
                    for e in errors {
                        eprintln!("  - {e}");
                    }
                    return ExitCode::from(2);
                }
            }
        }
        Command::Migrate => runtime.block_on(migrate(config)),
        Command::Requests(RequestsCommand::List(args)) => {
            runtime.block_on(ops::list(&config, &args, &mut std::io::stdout()))
        }
        Command::Requests(RequestsCommand::Get { request_id }) => {
            runtime.block_on(ops::get(&config, &request_id, &mut std::io::stdout()))
        }
        Command::Export(args) => runtime
            .block_on(ops::export(&config, &args, &mut std::io::stdout()))
            .map(|n| eprintln!("tollgate: exported {n} record(s)")),
        Command::Keys(KeysCommand::Create {
            name,
            scopes,
            expires_in,
        }) => runtime.block_on(ops::keys_create(
            &config,
            &name,
            &scopes,
            expires_in.as_deref(),
            &mut std::io::stdout(),
        )),
        Command::Keys(KeysCommand::List) => runtime.block_on(ops::keys_list(&config, &mut std::io::stdout())),
        Command::Keys(KeysCommand::Revoke { key_id }) => {
            runtime.block_on(ops::keys_revoke(&config, &key_id, &mut std::io::stdout()))
        }
        Command::Prove {
            request_id: Some(request_id),
            ..
        } => runtime.block_on(ops::prove(&config, &request_id, &mut std::io::stdout())),
        Command::Prove {
            receipt: Some(receipt), ..
        } => runtime.block_on(ops::prove_receipt(&config, &receipt, &mut std::io::stdout())),
        Command::Prove { .. } => unreachable!("clap requires a request id or --receipt"),
        Command::VerifyReceipt { file, vkey, event } => {
            ops::verify_receipt(&file, &vkey, event.as_deref(), &mut std::io::stdout())
        }
        Command::VerifyProof { file, vkey, event } => {
            ops::verify_proof(&file, &vkey, event.as_deref(), &mut std::io::stdout())
        }
        Command::LogKey => runtime.block_on(ops::log_key(&config, &mut std::io::stdout())),
        // 0 verified, 1 findings, 2 the check could not run (as for usage errors).
        Command::Verify(args) => match runtime.block_on(ops::verify(&config, &args, &mut std::io::stdout())) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => {
                eprintln!("tollgate: verify: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Completions { .. } => unreachable!("handled before the settings"),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "tollgate failed");
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    };
    drop(logs);
    code
}

async fn migrate(config: IngressConfig) -> anyhow::Result<()> {
    let backends = tollgate_ingress::backends::open(&config.mode)
        .await
        .map_err(anyhow::Error::msg)?;
    let applied = backends.log.migrate().await.context("applying migrations")?;
    tracing::info!(mode = %config.mode.storage.mode, applied = ?applied, "migrations applied");
    println!("applied {} migration(s): {}", applied.len(), applied.join(", "));
    Ok(())
}

async fn run(config: IngressConfig, routes: RouteTable) -> anyhow::Result<()> {
    // The port first: in use, it is reported before any store is opened or created.
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "{} is already in use: set TOLLGATE_LISTEN (or --listen) to another address, e.g. --listen 127.0.0.1:8081",
                config.listen
            )
        } else {
            anyhow::Error::new(e).context(format!("listening on {}", config.listen))
        }
    })?;
    let backends = tollgate_ingress::backends::open(&config.mode)
        .await
        .map_err(anyhow::Error::msg)
        .context("opening the request log and object store")?;
    let mode = config.mode.storage.mode;
    // Embedded mode: one integrator for the audit writer and the digest timer (its lock
    // serializes them in-process).
    let integrator = (mode == Mode::Embedded)
        .then(|| app::log_integrator(&backends))
        .flatten();
    if mode == Mode::Embedded {
        let functions = app::embedded_functions_sharing(&backends, integrator.clone());
        let missing: Vec<&str> = routes
            .functions()
            .into_iter()
            .chain([config.recorder.audit_function.as_str()])
            .filter(|f| !functions.contains_key(*f))
            .collect();
        anyhow::ensure!(missing.is_empty(), "no embedded function named {}", missing.join(", "));
    }
    let invoker = tollgate_ingress::backends::invoker(&config.mode, || {
        app::embedded_functions_sharing(&backends, integrator.clone())
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let listen = config.listen;
    let data_dir = config.mode.storage.data_dir.clone();
    if mode == Mode::Embedded {
        ops::first_start_admin_key(&*backends.keys, &data_dir)
            .await
            .context("creating the first API key")?;
    }
    // Embedded mode: the in-process timer of the `audit-digest` function (integration when idle,
    // the signed digests). In AWS the scheduled function does it.
    let digests = integrator
        .clone()
        .zip(backends.log_signer.clone())
        .map(|(integrator, signer)| {
            let digester = Arc::new(tollgate_core::digest::Digester::new(
                backends.tlog.clone(),
                backends.store.clone(),
                backends.trail.clone(),
                signer,
                config.digest.clone(),
            ));
            tollgate_audit_digest::spawn_timer(integrator, digester)
        });
    let running = app::start_on_with_receipts(
        listener,
        config,
        routes,
        backends.log.clone(),
        backends.keys.clone(),
        invoker,
        backends.log_signer.clone(),
    )
    .await
    .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(listen = %running.local_addr, mode = %mode, data_dir = %data_dir.display(), "tollgate ready");
    wait_for_signal().await?;
    tracing::info!("shutdown signal received; draining");
    running.shutdown();
    running.wait().await;
    if let Some(timer) = digests {
        timer.abort();
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
