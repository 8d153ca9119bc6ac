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
    // One attempt per call under an attempt timeout, as every tollgate client
    // (tollgate_aws::sdk): the one retry policy is tollgate_core::backoff's.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(3))
                .operation_attempt_timeout(std::time::Duration::from_secs(10))
                .build(),
        )
        .build();
    let client = aws_sdk_cloudwatchlogs::Client::from_conf(conf);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ScheduledEvent>| {
        let (client, settings) = (client.clone(), settings.clone());
        async move { export_previous_hour(&client, &settings, event.payload).await }
    }))
    .await
}
