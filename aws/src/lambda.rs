//! `Invoker` on aws-sdk-lambda.
//!
//! `RequestResponse` for routes: a function error (`X-Amz-Function-Error`, Handled or
//! Unhandled) is reported with the function's `errorType`; `TooManyRequestsException` is
//! throttling with its `retryAfterSeconds`; `RequestTooLargeException` is a payload over the
//! limit. `Event` for audit batches. Also right against `cargo lambda watch`, which answers
//! `Event` with 200 (not 202) and function errors with HTTP 500 and an `errorType` body.
//! The client makes one attempt per call: retrying is the caller's decision (a route has a
//! deadline; the recorder retries batches itself).

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;
use tollgate_core::ports::{BoxFuture, InvokeError, Invoker};

/// The Lambda invoker.
#[derive(Clone)]
pub struct LambdaInvoker {
    client: Client,
    function_prefix: String,
    aliases: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionErrorBody {
    error_type: Option<String>,
    error_message: Option<String>,
}

fn function_error(payload: &[u8], fallback: &str) -> InvokeError {
    let body: Option<FunctionErrorBody> = serde_json::from_slice(payload).ok();
    InvokeError::Function {
        error_type: body
            .as_ref()
            .and_then(|b| b.error_type.clone())
            .unwrap_or_else(|| fallback.to_string()),
        message: body.and_then(|b| b.error_message).unwrap_or_default(),
    }
}

fn map_error(e: SdkError<SdkInvokeError>) -> InvokeError {
    match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let body = ctx.raw().body().bytes().map(<[u8]>::to_vec).unwrap_or_default();
            match ctx.err() {
                SdkInvokeError::TooManyRequestsException(t) => InvokeError::Throttled {
                    retry_after: t
                        .retry_after_seconds()
                        .and_then(|s| s.parse().ok())
                        .map(Duration::from_secs),
                },
                SdkInvokeError::RequestTooLargeException(_) => InvokeError::PayloadTooLarge,
                SdkInvokeError::ResourceNotFoundException(e) => {
                    InvokeError::UnknownFunction(e.message().unwrap_or("function not found").to_string())
                }
                other => {
                    // cargo lambda watch reports a function's error as HTTP 500 with its
                    // errorType/errorMessage body and no error code.
                    if status == 500 && other.code().is_none() && body.windows(9).any(|w| w == b"errorType") {
                        return function_error(&body, "Unhandled");
                    }
                    let code = other.code().unwrap_or("Unknown").to_string();
                    // cargo lambda watch answers an unknown function with a bare 404.
                    if status == 404 {
                        return InvokeError::UnknownFunction(code);
                    }
                    if status == 429 {
                        InvokeError::Throttled { retry_after: None }
                    } else {
                        InvokeError::Unavailable(format!("{code} ({status})"))
                    }
                }
            }
        }
        other => InvokeError::Unavailable(format!("{other:?}")),
    }
}

impl LambdaInvoker {
    /// An invoker over a Lambda client (built with one attempt per call).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            function_prefix: String::new(),
            aliases: HashMap::new(),
        }
    }

    /// Invokes each named function through its alias (the `Qualifier` of Invoke): a route
    /// function's `live` alias is what CodeDeploy shifts to a new version, canary first.
    pub fn with_aliases(mut self, aliases: impl IntoIterator<Item = (String, String)>) -> Self {
        self.aliases = aliases.into_iter().collect();
        self
    }

    /// Prepends `prefix` to every function name invoked: route tables and settings name
    /// functions as `echo`, `audit-writer`; a stack deploys them as `<stack>-echo`, ...
    pub fn with_function_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.function_prefix = prefix.into();
        self
    }

    fn deployed_name(&self, function: &str) -> String {
        let mut name = String::with_capacity(self.function_prefix.len() + function.len());
        name.push_str(&self.function_prefix);
        name.push_str(function);
        name
    }

    /// An invoker from a client configuration, with the SDK's retries turned off (whatever
    /// the configuration said: the callers own the retries).
    pub fn from_config(config: aws_sdk_lambda::config::Builder) -> Self {
        let config = config.retry_config(aws_sdk_lambda::config::retry::RetryConfig::standard().with_max_attempts(1));
        Self::new(Client::from_conf(config.build()))
    }
}

impl LambdaInvoker {
    async fn send(
        &self,
        function: &str,
        kind: InvocationType,
        payload: Bytes,
    ) -> Result<aws_sdk_lambda::operation::invoke::InvokeOutput, InvokeError> {
        self.client
            .invoke()
            .function_name(self.deployed_name(function))
            .set_qualifier(self.aliases.get(function).cloned())
            .invocation_type(kind)
            .payload(Blob::new(payload.to_vec()))
            .send()
            .await
            .map_err(map_error)
    }
}

impl Invoker for LambdaInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Result<Bytes, InvokeError>> {
        Box::pin(async move {
            let out = self.send(function, InvocationType::RequestResponse, payload).await?;
            let body = out.payload().map(|b| b.as_ref().to_vec()).unwrap_or_default();
            if let Some(kind) = out.function_error() {
                return Err(function_error(&body, kind));
            }
            Ok(Bytes::from(body))
        })
    }

    fn invoke_event<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, Result<(), InvokeError>> {
        Box::pin(async move {
            let out = self.send(function, InvocationType::Event, payload).await?;
            // Lambda answers 202; cargo lambda watch runs the function and answers 200.
            match out.function_error() {
                Some(kind) => Err(function_error(
                    out.payload().map(|b| b.as_ref()).unwrap_or_default(),
                    kind,
                )),
                None => Ok(()),
            }
        })
    }
}
