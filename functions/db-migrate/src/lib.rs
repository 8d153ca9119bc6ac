//! `db-migrate`: applies the request log's schema migrations on deploy, as a CloudFormation
//! custom resource (`Custom::DatabaseSchema` in template.yaml). Create and Update migrate; Delete leaves the schema
//! (the data outlives the stack, and the cluster has its own deletion policy). The outcome is
//! PUT to the pre-signed `ResponseURL`, as CloudFormation requires; a failure is reported as
//! FAILED with a short reason, so a deploy stops instead of waiting an hour for a timeout.

use serde::Deserialize;
use tollgate_core::ports::RequestLog;

pub use tollgate_aws::custom_resource::{CustomResourceResponse, DeliveryError, HttpsResponder, Responder};

pub mod roles;

/// The physical id of the schema resource (stable across updates).
pub const PHYSICAL_ID: &str = "tollgate-request-log-schema";

/// A `Custom::DatabaseSchema` request.
pub type CustomResourceEvent = tollgate_aws::custom_resource::CustomResourceEvent<SchemaProperties>;

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
    event.response(result, event.physical_id_or(PHYSICAL_ID), data)
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
    tollgate_aws::custom_resource::deliver(&event, &response, responder).await?;
    Ok(response)
}
