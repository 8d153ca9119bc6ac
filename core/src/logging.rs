//! Logs: one JSON object per line on stdout (CloudWatch Logs parses them), filtered by
//! `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Keeps the log writer thread alive; dropping it flushes every pending line.
#[must_use = "logs are flushed when the guard is dropped"]
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the JSON log subscriber; a second call is a no-op. Lines are written by a
/// background thread in batches (one write per line cost a syscall on every request), and
/// never dropped: a full buffer makes the logger wait.
pub fn init_json_logs() -> LogGuard {
    init_json_logs_on(std::io::stdout())
}

/// The same logs on stderr: for commands whose stdout is their result (`tollgate export`).
pub fn init_json_logs_to_stderr() -> LogGuard {
    init_json_logs_on(std::io::stderr())
}

fn init_json_logs_on<W: std::io::Write + Send + 'static>(out: W) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(out);
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .is_ok();
    LogGuard {
        _worker: installed.then_some(guard),
    }
}

/// One CloudWatch embedded metric format (EMF) log line: the metrics as root members, named
/// with their unit in the `_aws.CloudWatchMetrics` directive, under one dimension set. A Lambda
/// function that prints it to stdout publishes the metrics (CloudWatch Logs extracts them).
pub fn emf_line(namespace: &str, dimensions: &[(&str, &str)], metrics: &[(&str, &str, f64)]) -> String {
    use serde_json::{json, Map, Value};
    let mut root = Map::new();
    for (name, value) in dimensions {
        root.insert((*name).to_string(), Value::String((*value).to_string()));
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_string(), json!(value));
    }
    let timestamp = (crate::clock::now().unix_timestamp_nanos() / 1_000_000) as i64;
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions.iter().map(|(n, _)| *n).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(n, unit, _)| json!({"Name": n, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    /// The shape of the specification's example
    /// (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
    /// `_aws` with an integer millisecond `Timestamp` and `CloudWatchMetrics` directives, each
    /// with `Namespace`, `Dimensions` (an array of dimension sets, each an array of root member
    /// names) and `Metrics` (`Name`, `Unit`); every referenced member is at the root, dimension
    /// values are strings and metric values numbers.
    #[test]
    fn emf_lines_follow_the_specification() {
        let line = super::emf_line(
            "Tollgate",
            &[("FunctionName", "tollgate-dev-audit-reconciler")],
            &[("AuditRowsSetAside", "Count", 3.0), ("IntentsFinalized", "Count", 0.0)],
        );
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let aws = &v["_aws"];
        let ts = aws["Timestamp"].as_i64().unwrap();
        assert!(ts > 1_700_000_000_000, "milliseconds since the epoch: {ts}");
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Tollgate");
        assert_eq!(directive["Dimensions"], serde_json::json!([["FunctionName"]]));
        for dim in directive["Dimensions"][0].as_array().unwrap() {
            assert!(v[dim.as_str().unwrap()].is_string());
        }
        for m in directive["Metrics"].as_array().unwrap() {
            assert_eq!(m["Unit"], "Count");
            assert!(v[m["Name"].as_str().unwrap()].is_number(), "{m}");
        }
        assert_eq!(v["AuditRowsSetAside"], 3.0);
    }
}
