//! The adapters the ingress runs on, by `TOLLGATE_MODE`. With the `aws` feature these are
//! `tollgate_aws::backends` (embedded mode, or the AWS SDK adapters); without it (`cargo run`),
//! embedded mode only, and `TOLLGATE_MODE=aws` is a settings error that says how to get it: the
//! one place the feature decides anything.

use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::backends::Backends;
use tollgate_core::local::LocalFunction;
use tollgate_core::ports::Invoker;

#[cfg(feature = "aws")]
pub use tollgate_aws::backends::ModeSettings;

/// The mode's settings: embedded storage only in this build.
#[cfg(not(feature = "aws"))]
#[derive(Clone, Debug)]
pub struct ModeSettings {
    /// Mode and data directory.
    pub storage: tollgate_core::backends::StorageSettings,
}

#[cfg(not(feature = "aws"))]
impl ModeSettings {
    /// Reads the storage settings; aws mode is an error naming the feature.
    pub fn read(r: &mut tollgate_core::settings::SettingsReader) -> Self {
        let storage = tollgate_core::backends::StorageSettings::read(r);
        if storage.mode == tollgate_core::backends::Mode::Aws {
            r.error(
                "TOLLGATE_MODE=aws needs a tollgate built with the aws feature \
                 (cargo build -p tollgate-ingress --features aws; the container image has it)",
            );
        }
        Self { storage }
    }
}

/// Opens the request log and object store for the mode.
pub async fn open(settings: &ModeSettings) -> Result<Backends, String> {
    #[cfg(feature = "aws")]
    return tollgate_aws::backends::open(settings).await;
    #[cfg(not(feature = "aws"))]
    return tollgate_embedded::open(&settings.storage).map_err(|e| e.to_string());
}

/// The invoker for the mode: in-process over `embedded()` in embedded mode, Lambda in aws mode.
pub async fn invoker(
    settings: &ModeSettings,
    embedded: impl FnOnce() -> HashMap<String, Arc<dyn LocalFunction>>,
) -> Result<Arc<dyn Invoker>, String> {
    #[cfg(feature = "aws")]
    return tollgate_aws::backends::invoker(settings, embedded).await;
    #[cfg(not(feature = "aws"))]
    {
        let _ = settings;
        Ok(Arc::new(tollgate_core::local::LocalInvoker::new(embedded())))
    }
}
