//! HTTP/1.1 front of the service.

use crate::service::DataApi;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, api: Arc<DataApi>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let api = api.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let limit = crate::service::MAX_REQUEST_BYTES + 1;
                    let body = match Limited::new(body, limit).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => Bytes::from(vec![0u8; limit]),
                    };
                    let (status, kind, value) = api.handle(&parts.method, parts.uri.path(), body).await;
                    let mut resp = Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string());
                    if let Some(kind) = kind {
                        resp = resp.header("x-amzn-errortype", kind);
                    }
                    let body = Full::new(Bytes::from(serde_json::to_vec(&value).unwrap_or_default()));
                    Ok::<_, Infallible>(resp.body(body).unwrap_or_default())
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Binds and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, api: Arc<DataApi>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, api));
    Ok(local)
}

/// A Data API on a free loopback port over the PostgreSQL at `127.0.0.1:pg_port` (user
/// `postgres`), with the service's defaults but `tx_idle_timeout`: what tests and local
/// stacks start. Returns its endpoint URL.
pub async fn spawn_local(pg_port: u16, tx_idle_timeout: std::time::Duration) -> std::io::Result<String> {
    let api = DataApi::new(crate::service::Config {
        host: "127.0.0.1".into(),
        port: pg_port,
        user: "postgres".into(),
        default_database: "postgres".into(),
        tx_idle_timeout,
        resume_delay: std::time::Duration::ZERO,
    });
    let addr = spawn(([127, 0, 0, 1], 0).into(), api).await?;
    Ok(format!("http://{addr}"))
}
