//! The `requests-api` Lambda: `lambda_http` over the request log and audit store.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let backends = tollgate_aws::backends::open_from_process().await?;
    let api = Arc::new(
        tollgate_requests_api::RequestsApi::new(backends.log, backends.store).with_tlog(backends.tlog, backends.trail),
    );
    lambda_http::run(lambda_http::service_fn(move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    }))
    .await
}
