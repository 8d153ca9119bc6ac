//! HTTP functions: `lambda_http` handlers (`Request -> Response<Body>`), run either by
//! `lambda_http::run` in their Lambda binary or in-process by the embedded invoker through
//! the same ALB target-group JSON (request parsing is `lambda_http`'s own).

use crate::local::LocalFunction;
use crate::ports::{BoxFuture, InvokeError};
use aws_lambda_events::alb::AlbTargetGroupResponse;
use bytes::Bytes;
use lambda_http::{Body, IntoResponse, Request, Response};
use std::future::Future;
use std::sync::Arc;

/// The error type reported for a handler that returned `Err` (what the Lambda runtime
/// reports as `errorType` is implementation-specific; this one is stable).
pub const HANDLER_ERROR: &str = "HandlerError";
/// The error type reported for a payload the function could not parse.
pub const INVALID_PAYLOAD: &str = "InvalidPayload";

/// Builds the ALB target-group response `lambda_http` sends for `response` (both `headers`
/// and `multiValueHeaders`, as it does, so either target-group setting works).
pub fn alb_response(response: Response<Body>) -> AlbTargetGroupResponse {
    let (parts, body) = response.into_parts();
    let (is_base64_encoded, body) = match body {
        Body::Empty => (false, None),
        b @ Body::Text(_) => (false, Some(b)),
        b @ Body::Binary(_) => (true, Some(b)),
        _ => (false, None),
    };
    let mut out = AlbTargetGroupResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.status_description = Some(format!(
        "{} {}",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or_default()
    ));
    out.headers = parts.headers.clone();
    out.multi_value_headers = parts.headers;
    out.body = body;
    out.is_base64_encoded = is_base64_encoded;
    out
}

/// Runs a `lambda_http` handler on an ALB event payload, returning the ALB response JSON.
pub async fn call_http<F, Fut, E>(handler: &F, payload: &[u8]) -> Result<Bytes, InvokeError>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, E>>,
    E: std::fmt::Display,
{
    let text = std::str::from_utf8(payload).map_err(|e| InvokeError::Function {
        error_type: INVALID_PAYLOAD.into(),
        message: e.to_string(),
    })?;
    let request = lambda_http::request::from_str(text).map_err(|e| InvokeError::Function {
        error_type: INVALID_PAYLOAD.into(),
        message: e.to_string(),
    })?;
    let response = handler(request).await.map_err(|e| InvokeError::Function {
        error_type: HANDLER_ERROR.into(),
        message: e.to_string(),
    })?;
    let response = response.into_response().await;
    serde_json::to_vec(&alb_response(response))
        .map(Bytes::from)
        .map_err(|e| InvokeError::Function {
            error_type: HANDLER_ERROR.into(),
            message: e.to_string(),
        })
}

/// Wraps a `lambda_http` handler as an in-process function.
pub fn http_function<F, Fut, E>(handler: F) -> Arc<dyn LocalFunction>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, E>> + Send + 'static,
    E: std::fmt::Display + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(
        move |payload: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
            let handler = handler.clone();
            Box::pin(async move { call_http(&*handler, &payload).await })
        },
    )
}

/// Wraps a JSON-in, JSON-out handler (what `lambda_runtime::run` runs) as an in-process function.
/// Its errors are reported as the Lambda runtime reports them: through `Diagnostic`, so the
/// invoker sees the same `errorType` in both modes.
pub fn json_function<F, Fut, I, O, E>(handler: F) -> Arc<dyn LocalFunction>
where
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    I: serde::de::DeserializeOwned + Send + 'static,
    O: serde::Serialize,
    E: Into<lambda_runtime::Diagnostic> + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(
        move |payload: Bytes| -> BoxFuture<'static, Result<Bytes, InvokeError>> {
            let handler = handler.clone();
            Box::pin(async move {
                let input: I = serde_json::from_slice(&payload).map_err(|e| InvokeError::Function {
                    error_type: INVALID_PAYLOAD.into(),
                    message: e.to_string(),
                })?;
                let output = handler(input).await.map_err(|e| {
                    let d: lambda_runtime::Diagnostic = e.into();
                    InvokeError::Function {
                        error_type: d.error_type,
                        message: d.error_message,
                    }
                })?;
                serde_json::to_vec(&output)
                    .map(Bytes::from)
                    .map_err(|e| InvokeError::Function {
                        error_type: HANDLER_ERROR.into(),
                        message: e.to_string(),
                    })
            })
        },
    )
}

/// The JSON files under the workspace's `events/` whose names start with `prefix`, as
/// `(file name, contents)`, sorted (for the functions' event tests).
pub fn event_files(events_dir: &std::path::Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(events_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", events_dir.display()))
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(prefix) && name.ends_with(".json"))
                .then(|| (name, std::fs::read(e.path()).unwrap_or_default()))
        })
        .collect();
    out.sort();
    out
}
