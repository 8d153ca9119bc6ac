//! `db-migrate`: applies the request log's schema migrations on deploy, as a CloudFormation
//! custom resource (`Custom::DatabaseSchema` in template.yaml). Create and Update migrate; Delete leaves the schema
//! (the data outlives the stack, and the cluster has its own deletion policy). The outcome is
//! PUT to the pre-signed `ResponseURL`, as CloudFormation requires; a failure is reported as
//! FAILED with a short reason, so a deploy stops instead of waiting an hour for a timeout.

use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use tollgate_core::ports::RequestLog;

pub mod roles;

/// The physical id of the schema resource (stable across updates).
pub const PHYSICAL_ID: &str = "tollgate-request-log-schema";
/// Longest reason sent back (CloudFormation shows it in the stack events).
const MAX_REASON: usize = 512;

/// A CloudFormation custom resource request (the fields this function uses).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceEvent {
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
    /// The resource's properties (the roles' credentials, resolved by CloudFormation from their
    /// secrets' dynamic references).
    #[serde(default)]
    pub resource_properties: SchemaProperties,
}

/// `Custom::DatabaseSchema`'s properties this function reads. The passwords come from the
/// roles' secrets; `Debug` never shows them.
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaProperties {
    /// The database the grants are on.
    #[serde(default)]
    pub database_name: Option<String>,
    /// requests-api's role (its secret's `username`).
    #[serde(default)]
    pub reader_username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub reader_password: Option<String>,
    /// The ingress's, audit writer's and reconciler's role.
    #[serde(default)]
    pub writer_username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub writer_password: Option<String>,
}

impl std::fmt::Debug for SchemaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaProperties")
            .field("database_name", &self.database_name)
            .field("reader_username", &self.reader_username)
            .field("writer_username", &self.writer_username)
            .finish_non_exhaustive()
    }
}

impl SchemaProperties {
    /// The roles to keep: none when no credentials are given (embedded mode, local invokes),
    /// an error when only part of them is.
    pub fn roles(&self) -> Result<Vec<roles::Role>, String> {
        let pairs = [
            (
                &self.reader_username,
                &self.reader_password,
                roles::Access::Reader,
                "Reader",
            ),
            (
                &self.writer_username,
                &self.writer_password,
                roles::Access::Writer,
                "Writer",
            ),
        ];
        let mut out = Vec::new();
        for (user, password, access, label) in pairs {
            match (user, password) {
                (Some(u), Some(p)) => out.push(roles::Role {
                    name: u.clone(),
                    password: p.clone(),
                    access,
                }),
                (None, None) => {}
                _ => return Err(format!("{label}Username and {label}Password go together")),
            }
        }
        if out.len() == 1 {
            return Err("both the reader's and the writer's credentials are needed".into());
        }
        Ok(out)
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
    /// Attributes (`Fn::GetAtt`): `Applied`, the migrations applied by this request.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Why the outcome could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("could not deliver the custom resource response: {0}")]
pub struct DeliveryError(pub String);

/// Delivers a response body to a `ResponseURL`.
pub trait Responder: Send + Sync {
    /// PUTs `body` to `url`.
    fn put<'a>(
        &'a self,
        url: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;
}

/// Runs the request and builds its outcome.
pub async fn outcome(event: &CustomResourceEvent, log: &dyn RequestLog) -> CustomResourceResponse {
    let mut data = serde_json::Map::new();
    let result: Result<String, String> = match event.request_type.as_str() {
        "Create" | "Update" => match log.migrate().await {
            Ok(applied) => {
                data.insert("Applied".into(), serde_json::Value::String(applied.join(",")));
                let migrated = if applied.is_empty() {
                    "schema up to date".to_string()
                } else {
                    format!("applied {}", applied.join(", "))
                };
                match keep_roles(&event.resource_properties, log).await {
                    Ok(0) => Ok(migrated),
                    Ok(n) => Ok(format!("{migrated}; {n} database roles kept")),
                    Err(e) => {
                        tracing::error!(error = %e, "database roles failed");
                        Err(format!("{migrated}; database roles failed: {e}"))
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "migration failed");
                Err(format!("migration failed: {e}"))
            }
        },
        "Delete" => Ok("schema retained".into()),
        other => Err(format!("unknown RequestType {other}")),
    };
    let (status, reason) = match result {
        Ok(r) => ("SUCCESS", r),
        Err(r) => ("FAILED", r),
    };
    CustomResourceResponse {
        status: status.into(),
        reason: reason.chars().take(MAX_REASON).collect(),
        physical_resource_id: event
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| PHYSICAL_ID.to_string()),
        stack_id: event.stack_id.clone(),
        request_id: event.request_id.clone(),
        logical_resource_id: event.logical_resource_id.clone(),
        data,
    }
}

/// Creates or updates the roles of the properties (after the migrations: the grants name their
/// tables); returns how many.
async fn keep_roles(props: &SchemaProperties, log: &dyn RequestLog) -> Result<usize, String> {
    let roles = props.roles()?;
    if roles.is_empty() {
        return Ok(0);
    }
    let database = props.database_name.as_deref().unwrap_or("tollgate");
    let steps = roles::script(&roles, database)?;
    log.execute_script(&steps).await.map_err(|e| e.to_string())?;
    for r in &roles {
        tracing::info!(role = %r.name, access = ?r.access, "database role kept");
    }
    Ok(roles.len())
}

/// Handles one event: runs it and delivers the outcome.
pub async fn handle(
    event: CustomResourceEvent,
    log: &dyn RequestLog,
    responder: &dyn Responder,
) -> Result<CustomResourceResponse, DeliveryError> {
    let response = outcome(&event, log).await;
    let body = serde_json::to_vec(&response).map_err(|e| DeliveryError(e.to_string()))?;
    responder.put(&event.response_url, body).await?;
    tracing::info!(status = %response.status, reason = %response.reason, "custom resource response delivered");
    Ok(response)
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

impl From<DeliveryError> for lambda_runtime::Diagnostic {
    fn from(e: DeliveryError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "ResponseDeliveryFailed".into(),
            error_message: e.to_string(),
        }
    }
}
