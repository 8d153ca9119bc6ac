//! Every `events/log-exporter-*.json` (the hourly schedule's event) exports the previous hour
//! of two log groups to S3, against moto (a CloudWatch Logs and S3 stand-in that really writes
//! the exported objects). CloudWatch Logs refuses events older than 14 days, so the file's
//! `time` is moved to the current hour; everything else in it is used as it is.

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use std::path::PathBuf;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use tollgate_core::http_fn::event_files;
use tollgate_core::model::ScheduledEvent;
use tollgate_log_exporter::{export_previous_hour, previous_hour, ExportError, ExportReport, ExportSettings};
use tollgate_testkit::S3Server;

const BUCKET: &str = "tollgate-logs";
const GROUPS: [&str; 2] = ["/ecs/tollgate-dev/ingress", "/aws/lambda/tollgate-dev-audit-writer"];

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .load()
        .await
}

/// moto (CloudWatch Logs and S3 on one endpoint), its clients, and the log bucket.
async fn stand_in() -> (S3Server, aws_sdk_cloudwatchlogs::Client, aws_sdk_s3::Client) {
    let moto = S3Server::start();
    let sdk = sdk(&moto.endpoint).await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    (moto, logs, s3)
}

fn settings(groups: &[&str]) -> ExportSettings {
    ExportSettings {
        log_groups: groups.iter().map(|g| g.to_string()).collect(),
        bucket: BUCKET.into(),
        prefix: "cloudwatch-logs".into(),
        task_timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schedule_event_exports_the_previous_hour_of_each_group() {
    let (_moto, logs, s3) = stand_in().await;

    let now = tollgate_core::clock::now();
    let (from, to) = previous_hour(now);
    let millis = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    for group in GROUPS {
        logs.create_log_group().log_group_name(group).send().await.unwrap();
        logs.create_log_stream()
            .log_group_name(group)
            .log_stream_name("ingress/ingress/0123")
            .send()
            .await
            .unwrap();
        // One line in the exported hour, one in the current hour (not exported yet).
        let lines = [
            (
                millis(from) + 60_000,
                format!("{{\"message\":\"in the hour\",\"group\":\"{group}\"}}"),
            ),
            (millis(to) + 1, "{\"message\":\"after the hour\"}".to_string()),
        ];
        for (at, message) in lines {
            if at > millis(now) {
                continue;
            }
            logs.put_log_events()
                .log_group_name(group)
                .log_stream_name("ingress/ingress/0123")
                .log_events(InputLogEvent::builder().timestamp(at).message(message).build().unwrap())
                .send()
                .await
                .unwrap();
        }
    }

    let files = event_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events"),
        "log-exporter-",
    );
    assert!(!files.is_empty());
    for (name, body) in files {
        let mut event: ScheduledEvent = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.detail_type, "Scheduled Event", "{name}");
        event.time = Some(now.format(&Rfc3339).unwrap());
        let report: ExportReport = export_previous_hour(&logs, &settings(&GROUPS), event).await.unwrap();
        assert_eq!(report.exported.len(), 2, "{name}");
        for (exported, group) in report.exported.iter().zip(GROUPS) {
            assert_eq!(exported.log_group, group);
            let listed = s3
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("{}/", exported.destination_prefix))
                .send()
                .await
                .unwrap();
            let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
            assert_eq!(keys.len(), 1, "{name}: {group}: {keys:?}");
            let object = s3.get_object().bucket(BUCKET).key(keys[0]).send().await.unwrap();
            let gz = object.body.collect().await.unwrap().into_bytes();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
            assert!(text.contains("in the hour") && text.contains(group), "{text}");
            assert!(!text.contains("after the hour"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_group_fails_the_run_by_name() {
    let (_moto, logs, _s3) = stand_in().await;
    let event: ScheduledEvent =
        serde_json::from_str(r#"{"detail-type":"Scheduled Event","source":"aws.events","time":null}"#).unwrap();
    match export_previous_hour(&logs, &settings(&["/nope"]), event).await {
        Err(ExportError::Logs { group, message }) => {
            assert_eq!(group, "/nope");
            assert!(message.contains("ResourceNotFoundException"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
