//! Shared types, ports and adapters of tollgate.
//!
//! The ingress and every function depend on this crate. It holds the domain types
//! ([`model`]), the three ports ([`ports`]) with the in-process invoker ([`local`]), the
//! request log's SQL for both engines ([`sql`]), the audit object format ([`audit`]), the
//! reconciler ([`reconcile`]) and the settings reader ([`settings`]). The embedded storage
//! adapters are `tollgate-embedded`; the port contracts are in `tollgate-testkit`.

pub mod access;
pub mod apierror;
pub mod audit;
pub mod backends;
pub mod backoff;
pub mod clock;
pub mod digest;
pub mod http_fn;
pub mod ids;
pub mod local;
pub mod logging;
pub mod model;
pub mod ports;
pub mod reconcile;
pub mod redact;
pub mod settings;
pub mod sql;
pub mod translog;

pub use ports::{BoxFuture, InvokeError, Invoker, KeyStore, LogError, ObjectStore, RequestLog, StoreError, TlogStore};

pub use lambda_http;
pub use lambda_runtime;
