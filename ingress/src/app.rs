//! Wiring: the embedded functions, the pipeline, the server and the reconciler timer.

use crate::config::IngressConfig;
use crate::handler::AppState;
use crate::recorder;
use crate::routes::RouteTable;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_core::backends::Backends;
use tollgate_core::http_fn::http_function;
use tollgate_core::local::LocalFunction;
use tollgate_core::ports::{Invoker, KeyStore, RequestLog};
use tollgate_core::reconcile::reconcile_once;
use tollgate_core::translog::Integrator;

/// The functions linked into the process in embedded mode, by function name: the registry's
/// `embedded` ones (`functions.toml`).
pub fn embedded_functions(backends: &Backends) -> HashMap<String, Arc<dyn LocalFunction>> {
    embedded_functions_sharing(backends, log_integrator(backends))
}

/// The transparency log's integrator of a process: `None` without a log signer.
pub fn log_integrator(backends: &Backends) -> Option<Arc<Integrator>> {
    backends
        .log_signer
        .clone()
        .map(|signer| Arc::new(Integrator::new(backends.tlog.clone(), backends.trail.clone(), signer)))
}

/// [`embedded_functions`] whose audit writer integrates with `integrator`: the one the
/// process's digest timer uses too, so that their integrations take turns on its lock instead
/// of racing through the database's compare-and-set (a lost race costs a read and a round).
pub fn embedded_functions_sharing(
    backends: &Backends,
    integrator: Option<Arc<Integrator>>,
) -> HashMap<String, Arc<dyn LocalFunction>> {
    crate::registry::functions()
        .into_iter()
        .filter(|f| f.embedded)
        .map(|f| {
            let handler = embedded_function(&f.name, backends, &integrator).unwrap_or_else(|| {
                panic!(
                    "functions.toml: {} is embedded but the ingress links no such function (add it to app::embedded_function)",
                    f.name
                )
            });
            (f.name, handler)
        })
        .collect()
}

/// The in-process handler of an embedded function.
fn embedded_function(
    name: &str,
    backends: &Backends,
    integrator: &Option<Arc<Integrator>>,
) -> Option<Arc<dyn LocalFunction>> {
    Some(match name {
        "echo" => http_function(tollgate_echo::handle),
        "requests-api" => {
            let api = Arc::new(
                tollgate_requests_api::RequestsApi::new(backends.log.clone(), backends.store.clone())
                    .with_tlog(backends.tlog.clone(), backends.trail.clone()),
            );
            http_function(move |req| {
                let api = api.clone();
                async move { api.handle(req).await }
            })
        }
        "audit-writer" => tollgate_audit_writer::local_function_with_log(
            backends.log.clone(),
            backends.store.clone(),
            integrator.clone(),
        ),
        _ => return None,
    })
}

/// A running ingress.
pub struct Running {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts a graceful shutdown (as SIGTERM does).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until drained and flushed.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the listener and starts serving.
pub async fn start(
    config: IngressConfig,
    routes: RouteTable,
    log: Arc<dyn RequestLog>,
    keys: Arc<dyn KeyStore>,
    invoker: Arc<dyn Invoker>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    start_on(listener, config, routes, log, keys, invoker).await
}

/// [`start`] on a listener bound already (the binary binds before it opens any store, so that a
/// port in use is reported before anything is created on disk).
pub async fn start_on(
    listener: TcpListener,
    config: IngressConfig,
    routes: RouteTable,
    log: Arc<dyn RequestLog>,
    keys: Arc<dyn KeyStore>,
    invoker: Arc<dyn Invoker>,
) -> std::io::Result<Running> {
    start_on_with_receipts(listener, config, routes, log, keys, invoker, None).await
}

/// [`start`] with receipts: `log_signer` (the transparency log's signer, `Backends::log_signer`)
/// certifies the task's receipt key at start and on every rotation (`crate::receipt`).
pub async fn start_with_receipts(
    config: IngressConfig,
    routes: RouteTable,
    log: Arc<dyn RequestLog>,
    keys: Arc<dyn KeyStore>,
    invoker: Arc<dyn Invoker>,
    log_signer: Option<Arc<dyn tollgate_tlog::NoteSigner>>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    start_on_with_receipts(listener, config, routes, log, keys, invoker, log_signer).await
}

/// [`start_on`] with receipts (see [`start_with_receipts`]). Without a log signer (aws mode
/// until its KMS signer is configured) requests are answered without receipts.
pub async fn start_on_with_receipts(
    listener: TcpListener,
    config: IngressConfig,
    routes: RouteTable,
    log: Arc<dyn RequestLog>,
    keys: Arc<dyn KeyStore>,
    invoker: Arc<dyn Invoker>,
    log_signer: Option<Arc<dyn tollgate_tlog::NoteSigner>>,
) -> std::io::Result<Running> {
    let local_addr = listener.local_addr()?;
    let config = Arc::new(config);
    let (receipts, rotation) = match log_signer {
        Some(signer) => {
            let (issuer, task) = crate::receipt::ReceiptIssuer::start(signer, config.receipt_key_rotate).await;
            (Some(issuer), Some(task))
        }
        None => (None, None),
    };
    let (recorder, recorder_task) =
        recorder::start_with_receipts(config.recorder.clone(), log.clone(), invoker.clone(), receipts);
    let auth = crate::auth::Authenticator::from_config(keys, &config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    auth.warm().await;
    let state = Arc::new(AppState::new(config.clone(), routes, invoker.clone(), recorder, auth));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let reconciler = {
        let (log, invoker, config) = (log.clone(), invoker.clone(), config.clone());
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            if config.reconcile_interval.is_zero() {
                return;
            }
            let mut tick = tokio::time::interval(config.reconcile_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        match reconcile_once(&*log, &*invoker, &config.reconcile).await {
                            Ok(r) if r.pending > 0 => tracing::info!(pending = r.pending, batches = r.batches,
                                failed = r.failed_batches, "reconciler pass"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "reconciler pass failed"),
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        })
    };

    let mut stop = shutdown_rx.clone();
    let drain = config.drain_timeout;
    let task = tokio::spawn(async move {
        let server_state = state.clone();
        let draining = async move {
            let _ = stop.changed().await;
            state.draining.store(true, Ordering::Relaxed);
        };
        let (_, ()) = tokio::join!(
            draining,
            crate::server::serve(listener, server_state, shutdown_rx, drain)
        );
        // Every connection is gone, and with them the last recorder handles: the pipeline
        // commits what is queued, sends its last batches, and ends.
        let _ = recorder_task.await;
        if let Some(rotation) = rotation {
            rotation.abort();
        }
        let _ = reconciler.await;
        invoker.drain().await;
        tracing::info!("ingress stopped; every answered request is recorded");
    });
    Ok(Running {
        local_addr,
        shutdown: shutdown_tx,
        task,
    })
}
