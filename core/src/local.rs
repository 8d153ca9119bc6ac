//! Embedded `Invoker`: functions linked into the process, called through the same JSON
//! payloads Lambda would carry. A panicking function is caught and reported as a function
//! error (as Lambda reports a crashed runtime), and the process goes on.

use crate::ports::{BoxFuture, InvokeError, Invoker};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// A function that can be called in-process: JSON payload in, JSON payload out.
pub trait LocalFunction: Send + Sync + 'static {
    /// Runs the function on a payload.
    fn call(&self, payload: Bytes) -> BoxFuture<'static, Result<Bytes, InvokeError>>;
}

impl<F> LocalFunction for F
where
    F: Fn(Bytes) -> BoxFuture<'static, Result<Bytes, InvokeError>> + Send + Sync + 'static,
{
    fn call(&self, payload: Bytes) -> BoxFuture<'static, Result<Bytes, InvokeError>> {
        self(payload)
    }
}

/// Error type reported when a function panicked (Lambda reports a runtime error).
pub const PANIC_ERROR: &str = "Runtime.Panic";

/// The in-process invoker.
#[derive(Clone, Default)]
pub struct LocalInvoker {
    functions: Arc<HashMap<String, Arc<dyn LocalFunction>>>,
    in_flight: Arc<(AtomicUsize, Notify)>,
}

impl LocalInvoker {
    /// An invoker over the given functions.
    pub fn new(functions: HashMap<String, Arc<dyn LocalFunction>>) -> Self {
        Self {
            functions: Arc::new(functions),
            in_flight: Arc::default(),
        }
    }

    fn function(&self, name: &str) -> Result<Arc<dyn LocalFunction>, InvokeError> {
        self.functions
            .get(name)
            .cloned()
            .ok_or_else(|| InvokeError::UnknownFunction(name.to_string()))
    }
}

/// Polls a future, turning a panic into an error. Running the function inline (rather than in
/// a task of its own) saves a spawn and a cross-thread wake-up per request; dropping the
/// future (a route timeout) cancels the function.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

async fn run(function: Arc<dyn LocalFunction>, payload: Bytes) -> Result<Bytes, InvokeError> {
    let call = std::panic::catch_unwind(AssertUnwindSafe(|| function.call(payload)));
    let outcome = match call {
        Ok(fut) => CatchUnwind(Box::pin(fut)).await,
        Err(_) => Err(()),
    };
    outcome.unwrap_or_else(|()| {
        Err(InvokeError::Function {
            error_type: PANIC_ERROR.into(),
            message: "function panicked".into(),
        })
    })
}

impl Invoker for LocalInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Result<Bytes, InvokeError>> {
        Box::pin(async move { run(self.function(function)?, payload).await })
    }

    fn invoke_event<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Result<(), InvokeError>> {
        Box::pin(async move {
            let f = self.function(function)?;
            let counter = self.in_flight.clone();
            counter.0.fetch_add(1, Ordering::SeqCst);
            let name = function.to_string();
            tokio::spawn(async move {
                // Like Lambda's async invocations, the outcome goes to the function's logs only.
                if let Err(e) = run(f, payload).await {
                    tracing::warn!(function = %name, error = %e, "asynchronous invocation failed");
                }
                if counter.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                    counter.1.notify_waiters();
                }
            });
            Ok(())
        })
    }

    fn drain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let notified = self.in_flight.1.notified();
                if self.in_flight.0.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn registry() -> LocalInvoker {
        let mut m: HashMap<String, Arc<dyn LocalFunction>> = HashMap::new();
        m.insert(
            "upper".into(),
            Arc::new(|p: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
                Box::pin(async move { Ok(Bytes::from(p.to_ascii_uppercase())) })
            }),
        );
        m.insert(
            "panics".into(),
            Arc::new(|_p: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
                Box::pin(async move { panic!("boom") })
            }),
        );
        m.insert(
            "slow".into(),
            Arc::new(|p: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(p)
                })
            }),
        );
        LocalInvoker::new(m)
    }

    #[tokio::test]
    async fn calls_reports_panics_and_unknown_functions() {
        let inv = registry();
        assert_eq!(inv.invoke("upper", Bytes::from_static(b"ab")).await.unwrap(), "AB");
        match inv.invoke("panics", Bytes::new()).await {
            Err(InvokeError::Function { error_type, .. }) => assert_eq!(error_type, PANIC_ERROR),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            inv.invoke("nope", Bytes::new()).await,
            Err(InvokeError::UnknownFunction("nope".into()))
        );
    }

    #[tokio::test]
    async fn drain_waits_for_event_invocations() {
        let inv = registry();
        for _ in 0..3 {
            inv.invoke_event("slow", Bytes::new()).await.unwrap();
        }
        assert_eq!(inv.in_flight.0.load(Ordering::SeqCst), 3);
        tokio::time::timeout(Duration::from_secs(2), inv.drain()).await.unwrap();
        assert_eq!(inv.in_flight.0.load(Ordering::SeqCst), 0);
    }
}
