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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
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
