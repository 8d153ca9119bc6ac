//! CloudFormation custom resources served by a Lambda function (`db-migrate`'s
//! `Custom::DatabaseSchema`, `audit-digest`'s `Custom::LogVerifierKey`): the request, the
//! outcome, and its delivery by a PUT to the pre-signed `ResponseURL`, as CloudFormation
//! requires (AWS CloudFormation User Guide, "Custom resource response objects": `Status`,
//! `Reason`, `PhysicalResourceId` and the request's `StackId`, `RequestId` and
//! `LogicalResourceId` copied verbatim, the body at most 4096 bytes). Feature `custom-resource`
//! (it links hyper-rustls on aws-lc, which the ingress does not build).

use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// Longest reason sent back (CloudFormation shows it in the stack events; the whole response
/// body may be 4096 bytes at most).
pub const MAX_REASON: usize = 512;

/// A CloudFormation custom resource request (the fields our functions use), with the
/// resource's properties `P`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", bound(deserialize = "P: Deserialize<'de> + Default"))]
pub struct CustomResourceEvent<P> {
    /// Create, Update or Delete.
    pub request_type: String,
    /// Where the outcome goes (a pre-signed S3 URL).
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// The stack.
    pub stack_id: String,
    /// This request.
    pub request_id: String,
    /// The resource's logical id.
    pub logical_resource_id: String,
    /// The physical id, on Update and Delete.
    #[serde(default)]
    pub physical_resource_id: Option<String>,
    /// The resource's properties.
    #[serde(default)]
    pub resource_properties: P,
}

impl<P> CustomResourceEvent<P> {
    /// The physical id the request carries (Update, Delete), else `default` (Create): a
    /// resource keeps its id unless the function means to replace it.
    pub fn physical_id_or(&self, default: &str) -> String {
        self.physical_resource_id.clone().unwrap_or_else(|| default.to_string())
    }

    /// The outcome of this request: SUCCESS with `Ok(reason)`, FAILED with `Err(reason)` (the
    /// reason cut to [`MAX_REASON`] characters), the request's ids echoed.
    pub fn response(
        &self,
        result: Result<String, String>,
        physical_resource_id: String,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> CustomResourceResponse {
        let (status, reason) = match result {
            Ok(r) => ("SUCCESS", r),
            Err(r) => ("FAILED", r),
        };
        CustomResourceResponse {
            status: status.into(),
            reason: reason.chars().take(MAX_REASON).collect(),
            physical_resource_id,
            stack_id: self.stack_id.clone(),
            request_id: self.request_id.clone(),
            logical_resource_id: self.logical_resource_id.clone(),
            data,
        }
    }
}

/// The outcome sent to `ResponseURL`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceResponse {
    /// SUCCESS or FAILED.
    pub status: String,
    /// Why it failed (or what was done).
    pub reason: String,
    /// The physical id.
    pub physical_resource_id: String,
    /// Echoed from the request.
    pub stack_id: String,
    /// Echoed from the request.
    pub request_id: String,
    /// Echoed from the request.
    pub logical_resource_id: String,
    /// Attributes (`Fn::GetAtt`).
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Why the outcome could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("could not deliver the custom resource response: {0}")]
pub struct DeliveryError(pub String);

impl From<DeliveryError> for lambda_runtime::Diagnostic {
    fn from(e: DeliveryError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "ResponseDeliveryFailed".into(),
            error_message: e.to_string(),
        }
    }
}

/// Delivers a response body to a `ResponseURL`.
pub trait Responder: Send + Sync {
    /// PUTs `body` to `url`.
    fn put<'a>(
        &'a self,
        url: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;
}

/// Delivers `response` to `event`'s `ResponseURL`.
pub async fn deliver<P>(
    event: &CustomResourceEvent<P>,
    response: &CustomResourceResponse,
    responder: &dyn Responder,
) -> Result<(), DeliveryError> {
    let body = serde_json::to_vec(response).map_err(|e| DeliveryError(e.to_string()))?;
    responder.put(&event.response_url, body).await?;
    tracing::info!(status = %response.status, reason = %response.reason, "custom resource response delivered");
    Ok(())
}

/// PUTs over HTTPS (or HTTP, for tests) with hyper and rustls.
pub struct HttpsResponder {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl HttpsResponder {
    /// A responder trusting the platform's root certificates.
    pub fn new() -> Result<Self, DeliveryError> {
        // The provider named, not guessed: a build that links another one too (the workspace's
        // test build has ring through tollgate-auth) would otherwise panic here.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| DeliveryError(format!("root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Self { client })
    }
}

impl Responder for HttpsResponder {
    fn put<'a>(
        &'a self,
        url: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>> {
        Box::pin(async move {
            // The pre-signed URL is signed without a content type: send none.
            let req = http::Request::put(url)
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| DeliveryError(e.to_string()))?;
            let resp = tokio::time::timeout(std::time::Duration::from_secs(30), self.client.request(req))
                .await
                .map_err(|_| DeliveryError("timed out".into()))?
                .map_err(|e| DeliveryError(e.to_string()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(DeliveryError(format!("ResponseURL answered {}", resp.status())))
            }
        })
    }
}
