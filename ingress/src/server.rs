//! The accept loop and connections (after hyper-util's `server_graceful` example; accept
//! errors are logged and backed off, as axum's `serve` does).
//!
//! hyper's own `header_read_timeout` starts when hyper begins waiting for a request head,
//! which includes the idle time between keep-alive requests: one knob cannot give both a
//! short slow-header guard and a keep-alive longer than the ALB's 60 s idle timeout. So it is
//! off, and each connection has a watchdog that tells the two apart: the read side marks
//! when the first byte of a new request arrives, the service marks when a head is complete.

use crate::handler::{self, AppState, Signal};
use crate::recorder::sleep_until;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;
/// Time a connection gets to finish after it was asked to close (and cut-off requests to send
/// their answers at the drain timeout).
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Where a connection is in its request cycle, shared by its reader, service and watchdog.
struct Activity {
    epoch: Instant,
    state: AtomicU8,
    since_ms: AtomicU64,
    changed: Notify,
    /// Bytes read since the current request's first byte (for a head hyper refuses).
    head_bytes: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(0),
            changed: Notify::new(),
            head_bytes: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn set(&self, state: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Release);
        self.state.store(state, Ordering::Release);
        // The watchdog may be sleeping on a deadline of the previous state (or on none).
        self.changed.notify_one();
    }

    fn bytes_arrived(&self, n: usize) {
        if self
            .state
            .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.head_bytes.store(0, Ordering::Relaxed);
            self.since_ms.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
        self.head_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// When the current state runs out, if it can.
    fn deadline(&self, header_timeout: Duration, idle: Duration) -> Option<Instant> {
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        match self.state.load(Ordering::Acquire) {
            IDLE => Some(since + idle),
            HEAD => Some(since + header_timeout),
            _ => None,
        }
    }
}

/// A TCP stream that reports incoming bytes to its connection's watchdog.
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived(buf.filled().len() - before);
        }
        res
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>> + Send>>;

/// A request's future that hyper cannot cancel: hyper drops the service future when the
/// client goes away (or the drain timeout aborts the connection); this one then fires the
/// request's `client_gone` signal and moves the unfinished work, boxed and so pinned in place,
/// to a task of its own, where it runs to its record. The normal path spawns nothing.
struct Detached {
    fut: Option<ResponseFuture>,
    client_gone: Arc<Signal>,
}

impl Future for Detached {
    type Output = hyper::Response<http_body_util::Full<bytes::Bytes>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Pending; // polled after completion: never by hyper
        };
        let out = fut.as_mut().poll(cx);
        if out.is_ready() {
            self.fut = None;
        }
        out
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            self.client_gone.fire();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(fut);
                }
                Err(_) => tracing::error!("runtime gone: a request's record is lost"),
            }
        }
    }
}

/// Marks the connection idle again when a request's handling ends, however it ends.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(IDLE);
    }
}

fn builder(state: &AppState) -> http1::Builder {
    let limits = &state.config.limits;
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // Ours is the watchdog above (see the module docs).
        .header_read_timeout(None)
        .keep_alive(true)
        // hyper's own limits are a backstop at twice ours: up to them, our handler answers
        // 431 with a JSON body and records the request; past them hyper answers 431 itself.
        .max_buf_size((limits.max_header_bytes * 2).max(8192))
        .max_headers(limits.max_headers * 2);
    b
}

async fn serve_connection(
    state: Arc<AppState>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo {
        inner: stream,
        activity: activity.clone(),
    });
    let svc_state = state.clone();
    let svc_activity = activity.clone();
    let service = service_fn(move |req| {
        let state = svc_state.clone();
        let activity = svc_activity.clone();
        activity.set(BUSY);
        let client_gone = Arc::new(Signal::default());
        let gone = client_gone.clone();
        // Boxed: the request's state machine is large, and hyper keeps the service future
        // inline in each connection's task, so an idle keep-alive connection would hold that
        // much memory for its whole life (measured: ~40 KiB per idle connection). The box is
        // also what lets `Detached` move an abandoned request to a task without moving it.
        let fut: ResponseFuture = Box::pin(async move {
            let _guard = BusyGuard(activity);
            handler::handle(state, req, peer, gone).await
        });
        let detached = Detached {
            fut: Some(fut),
            client_gone,
        };
        async move { Ok::<_, Infallible>(detached.await) }
    });
    let conn = builder(&state).serve_connection(io, service);
    tokio::pin!(conn);
    let limits = state.config.limits.clone();
    let mut closing_by: Option<Instant> = None;
    loop {
        let deadline = match closing_by {
            Some(t) => Some(t),
            None => activity.deadline(limits.header_timeout, limits.keepalive_idle),
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                    // A head hyper refused (and answered itself) never reached the handler:
                    // it is recorded here, so an attack on the front door is in its trail.
                    if activity.state.load(Ordering::Acquire) == HEAD {
                        if let Some(code) = protocol_error(&e) {
                            let bytes = activity.head_bytes.load(Ordering::Relaxed);
                            handler::record_connection_event(&state, peer, code, &e.to_string(), bytes).await;
                        }
                    }
                }
                return;
            }
            _ = shutdown.changed(), if closing_by.is_none() => {
                // The in-flight request (if any) finishes, then the connection closes; the
                // server's drain timeout bounds the wait.
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
                return;
            }
            _ = activity.changed.notified() => continue,
            _ = sleep_until(deadline) => {
                if closing_by.is_some() {
                    return; // did not close in time: drop it
                }
                let now = Instant::now();
                match activity.deadline(limits.header_timeout, limits.keepalive_idle) {
                    Some(d) if d <= now => {
                        if activity.state.load(Ordering::Acquire) == HEAD {
                            tracing::info!(%peer, "request headers too slow; closing connection");
                            let bytes = activity.head_bytes.load(Ordering::Relaxed);
                            handler::record_connection_event(
                                &state,
                                peer,
                                tollgate_core::apierror::ErrorCode::HeaderTimeout,
                                "request head not complete within the header timeout; connection closed",
                                bytes,
                            )
                            .await;
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        closing_by = Some(now + CLOSE_GRACE);
                    }
                    _ => continue,
                }
            }
        }
    }
}

/// What hyper refused a request head for, as the code it is recorded under; `None` for
/// errors that are not about a request (the connection just closed).
fn protocol_error(e: &hyper::Error) -> Option<tollgate_core::apierror::ErrorCode> {
    use tollgate_core::apierror::ErrorCode;
    if e.is_parse_too_large() {
        // hyper answers 414 to an over-long target and 431 to an over-large head.
        return Some(if e.to_string().contains("uri") {
            ErrorCode::UriTooLong
        } else {
            ErrorCode::HeadersTooLarge
        });
    }
    if e.is_parse() || e.is_incomplete_message() {
        return Some(ErrorCode::MalformedRequest);
    }
    None
}

/// Whether an accept error is about this one connection (retry at once) rather than the
/// process (back off): the same split as axum's `serve`.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves until `shutdown` flips, then stops accepting, asks every connection to close after
/// its in-flight request, and waits up to `drain` for them.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut shutdown: watch::Receiver<bool>, drain: Duration) {
    let (conn_shutdown_tx, conn_shutdown_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let slots = Arc::new(Semaphore::new(state.config.limits.max_connections));
    loop {
        // A connection slot first: at the limit, new connections wait in the listen backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = shutdown.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let conn = serve_connection(state.clone(), stream, peer, conn_shutdown_rx.clone());
                    conns.spawn(async move {
                        conn.await;
                        drop(slot);
                    });
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = conn_shutdown_tx.send(true);
    let in_flight = conns.len();
    tracing::info!(connections = in_flight, "draining");
    let drained = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "drain timeout; cutting off the requests still in flight"
        );
        // Requests still reading a body or waiting for a function answer 503 shutting_down
        // and are recorded; their connections get a moment to send that, then are closed (a
        // request still running then finishes, and is recorded, in a task of its own).
        state.cutoff.fire();
        let _ = tokio::time::timeout(CLOSE_GRACE, async { while conns.join_next().await.is_some() {} }).await;
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}
