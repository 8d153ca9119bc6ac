//! Shared types, ports and adapters of tollgate.
//!
//! The ingress and every function depend on this crate. It holds the domain types
//! ([`model`]), the three ports ([`ports`]) with their embedded adapters
//! ([`sqlite`], [`dirstore`], [`local`]), the audit object format ([`audit`]), the
//! reconciler ([`reconcile`]) and the settings reader ([`settings`]).

pub mod apierror;
pub mod audit;
pub mod backends;
pub mod backoff;
pub mod clock;
pub mod contract;
pub mod dirstore;
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
pub mod sqlite;

pub use ports::{BoxFuture, InvokeError, Invoker, LogError, ObjectStore, RequestLog, StoreError};

pub use lambda_http;
pub use lambda_runtime;
