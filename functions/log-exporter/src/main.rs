//! The `log-exporter` Lambda: `lambda_runtime` with the hourly schedule's event.

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use tollgate_core::model::ScheduledEvent;
use tollgate_core::settings::SettingsReader;
use tollgate_log_exporter::{export_previous_hour, ExportSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    let mut reader = SettingsReader::from_process();
    let settings = Arc::new(ExportSettings::read(&mut reader));
    reader.finish()?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ScheduledEvent>| {
        let (client, settings) = (client.clone(), settings.clone());
        async move { export_previous_hour(&client, &settings, event.payload).await }
    }))
    .await
}
