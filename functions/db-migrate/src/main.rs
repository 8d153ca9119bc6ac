//! The `db-migrate` Lambda: a CloudFormation custom resource that applies the migrations.

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tollgate_db_migrate::{CustomResourceEvent, HttpsResponder};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let backends = Arc::new(tollgate_aws::backends::open_from_process().await?);
    let responder = Arc::new(HttpsResponder::new()?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CustomResourceEvent>| {
        let (backends, responder) = (backends.clone(), responder.clone());
        async move { tollgate_db_migrate::handle(event.payload, &*backends.log, &*responder).await }
    }))
    .await
}
