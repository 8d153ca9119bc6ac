//! The `requests-api` Lambda: `lambda_http` over the request log and audit store.

use std::sync::Arc;
use tollgate_core::backends::{Backends, StorageSettings};
use tollgate_core::settings::SettingsReader;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let mut reader = SettingsReader::from_process();
    let storage = StorageSettings::read(&mut reader);
    reader.finish()?;
    let backends = Backends::open(&storage)?;
    let api = Arc::new(tollgate_requests_api::RequestsApi::new(backends.log, backends.store));
    lambda_http::run(lambda_http::service_fn(move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    }))
    .await
}
