//! `log-exporter`: on an hourly schedule, exports the previous full hour of the stack's
//! CloudWatch log groups (the ingress's container logs and the functions' logs) to the log
//! bucket with `CreateExportTask`, one log group after another (CloudWatch Logs runs one export
//! task per account at a time).
//!
//! The hour is taken from the schedule event's `time`, not from the clock, so a retried event
//! exports the same hour to the same prefix: `<prefix>/<log group>/YYYY/MM/DD/HH/`.

use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::ExportTaskStatusCode;
use aws_sdk_cloudwatchlogs::Client;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tollgate_core::model::ScheduledEvent;
use tollgate_core::settings::{Millis, SettingsReader};

/// Default of `TOLLGATE_EXPORT_PREFIX`.
pub const DEFAULT_EXPORT_PREFIX: &str = "cloudwatch-logs";
/// `TOLLGATE_EXPORT_TASK_TIMEOUT_MS`: how long one export may take (the function's
/// own timeout is 15 minutes for all groups).
pub const EXPORT_TASK_TIMEOUT: Millis = Millis {
    env: "TOLLGATE_EXPORT_TASK_TIMEOUT_MS",
    default: Duration::from_secs(240),
    min: Duration::from_secs(1),
    max: Duration::from_secs(900),
    help: "longest wait for one export task",
};

/// Pause between status polls of a running export.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What an export run needs.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// Log groups exported, in order.
    pub log_groups: Vec<String>,
    /// Destination bucket.
    pub bucket: String,
    /// Key prefix in the bucket.
    pub prefix: String,
    /// Longest wait for one export task (including waiting for another export to finish).
    pub task_timeout: Duration,
}

impl ExportSettings {
    /// Reads the settings; a missing group list or bucket is an error naming it.
    pub fn read(r: &mut SettingsReader) -> Self {
        let log_groups = r.list(
            "TOLLGATE_EXPORT_LOG_GROUPS",
            "log groups exported every hour (comma-separated)",
        );
        let bucket: Option<String> = r.optional("TOLLGATE_EXPORT_BUCKET", "S3 bucket the log exports go to");
        let prefix: String = r.parse(
            "TOLLGATE_EXPORT_PREFIX",
            DEFAULT_EXPORT_PREFIX.to_string(),
            "key prefix of the log exports",
        );
        let task_timeout = r.millis(&EXPORT_TASK_TIMEOUT);
        if log_groups.is_empty() {
            r.error("TOLLGATE_EXPORT_LOG_GROUPS names no log group");
        }
        if bucket.is_none() {
            r.error("TOLLGATE_EXPORT_BUCKET is required");
        }
        Self {
            log_groups,
            bucket: bucket.unwrap_or_default(),
            prefix: prefix.trim_matches('/').to_string(),
            task_timeout,
        }
    }
}

/// One exported log group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExportedGroup {
    /// The log group.
    pub log_group: String,
    /// The export task.
    pub task_id: String,
    /// Where its objects are.
    pub destination_prefix: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExportReport {
    /// Start of the exported hour (RFC 3339).
    pub from: String,
    /// End of the exported hour, exclusive (RFC 3339).
    pub to: String,
    /// One entry per log group, in order.
    pub exported: Vec<ExportedGroup>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The event's `time` is not RFC 3339.
    #[error("schedule event time {0:?} is not RFC 3339")]
    BadTime(String),
    /// CloudWatch Logs refused or failed a call.
    #[error("{group}: {message}")]
    Logs {
        /// The log group.
        group: String,
        /// What failed.
        message: String,
    },
    /// The export did not finish in time.
    #[error("{group}: export task {task_id} not finished after {waited:?}")]
    TimedOut {
        /// The log group.
        group: String,
        /// The task.
        task_id: String,
        /// How long it was waited for.
        waited: Duration,
    },
}

impl From<ExportError> for lambda_runtime::Diagnostic {
    fn from(e: ExportError) -> Self {
        let error_type = match e {
            ExportError::BadTime(_) => "InvalidEvent",
            ExportError::Logs { .. } => "ExportFailed",
            ExportError::TimedOut { .. } => "ExportTimedOut",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// The full hour before `at`: `[start, end)`.
pub fn previous_hour(at: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let end = at
        .to_offset(time::UtcOffset::UTC)
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .expect("zero is a valid minute, second and nanosecond");
    (end - time::Duration::HOUR, end)
}

/// The destination prefix of a log group's export of the hour starting at `start`.
pub fn destination_prefix(prefix: &str, log_group: &str, start: OffsetDateTime) -> String {
    format!(
        "{prefix}/{}/{:04}/{:02}/{:02}/{:02}",
        log_group.trim_start_matches('/'),
        start.year(),
        u8::from(start.month()),
        start.day(),
        start.hour()
    )
}

/// A failed `CreateExportTask`: its error code.
struct CreateError(Option<String>);

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("unknown error"))
    }
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Exports the hour before the event's time for every configured log group.
pub async fn export_previous_hour(
    client: &Client,
    settings: &ExportSettings,
    event: ScheduledEvent,
) -> Result<ExportReport, ExportError> {
    let at = match &event.time {
        Some(t) => OffsetDateTime::parse(t, &Rfc3339).map_err(|_| ExportError::BadTime(t.clone()))?,
        None => tollgate_core::clock::now(),
    };
    let (from, to) = previous_hour(at);
    let mut report = ExportReport {
        from: from.format(&Rfc3339).unwrap_or_default(),
        to: to.format(&Rfc3339).unwrap_or_default(),
        exported: Vec::new(),
    };
    for group in &settings.log_groups {
        let destination_prefix = destination_prefix(&settings.prefix, group, from);
        let task_id = export_one(client, settings, group, &destination_prefix, from, to).await?;
        tracing::info!(log_group = %group, task_id = %task_id, prefix = %destination_prefix, "log group exported");
        report.exported.push(ExportedGroup {
            log_group: group.clone(),
            task_id,
            destination_prefix,
        });
    }
    Ok(report)
}

async fn export_one(
    client: &Client,
    settings: &ExportSettings,
    group: &str,
    destination_prefix: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<String, ExportError> {
    let started = Instant::now();
    let failed = |message: String| ExportError::Logs {
        group: group.to_string(),
        message,
    };
    // Another export (ours or anyone's in the account) is running: wait for it, under the
    // one retry policy with the task timeout as its budget.
    let policy = tollgate_core::backoff::LOG_EXPORT.with_budget(settings.task_timeout);
    let created = tollgate_core::backoff::retry(
        &policy,
        |e: &CreateError| e.0.as_deref() == Some("LimitExceededException"),
        || async {
            client
                .create_export_task()
                .task_name(format!("tollgate-{}", destination_prefix.replace('/', "-")))
                .log_group_name(group)
                .from(millis(from))
                .to(millis(to) - 1) // `to` is inclusive in CreateExportTask
                .destination(&settings.bucket)
                .destination_prefix(destination_prefix)
                .send()
                .await
                .map_err(|e| CreateError(e.code().map(String::from)))
        },
    )
    .await;
    let task_id = match created {
        Ok(out) => out.task_id().unwrap_or_default().to_string(),
        Err(e) => {
            return Err(failed(format!(
                "CreateExportTask: {}",
                e.0.as_deref().unwrap_or("unknown error")
            )))
        }
    };
    loop {
        let out = client
            .describe_export_tasks()
            .task_id(&task_id)
            .send()
            .await
            .map_err(|e| failed(format!("DescribeExportTasks: {}", e.code().unwrap_or("unknown error"))))?;
        let status = out
            .export_tasks()
            .first()
            .and_then(|t| t.status())
            .and_then(|s| s.code().cloned());
        match status {
            Some(ExportTaskStatusCode::Completed) => return Ok(task_id),
            Some(ExportTaskStatusCode::Failed | ExportTaskStatusCode::Cancelled) => {
                return Err(failed(format!("export task {task_id} ended {status:?}")))
            }
            _ if started.elapsed() >= settings.task_timeout => {
                return Err(ExportError::TimedOut {
                    group: group.to_string(),
                    task_id,
                    waited: started.elapsed(),
                })
            }
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_previous_full_hour_and_its_prefix() {
        let (from, to) = previous_hour(datetime!(2026-11-26 01:05:00.5 UTC));
        assert_eq!(
            (from, to),
            (datetime!(2026-11-26 00:00 UTC), datetime!(2026-11-26 01:00 UTC))
        );
        let (from, _) = previous_hour(datetime!(2026-01-01 00:00 UTC));
        assert_eq!(from, datetime!(2025-12-31 23:00 UTC));
        assert_eq!(
            destination_prefix("cloudwatch-logs", "/ecs/tollgate-dev/ingress", from),
            "cloudwatch-logs/ecs/tollgate-dev/ingress/2025/12/31/23"
        );
    }

    #[test]
    fn settings_need_groups_and_a_bucket() {
        let mut r = SettingsReader::new(Vec::new(), Vec::new());
        ExportSettings::read(&mut r);
        let err = r.finish().unwrap_err().to_string();
        assert!(
            err.contains("TOLLGATE_EXPORT_LOG_GROUPS") && err.contains("TOLLGATE_EXPORT_BUCKET"),
            "{err}"
        );
    }
}
