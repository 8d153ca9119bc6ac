//! `dataapi-local`: the RDS Data API (the REST-JSON protocol the AWS SDKs and the AWS CLI
//! speak) over a PostgreSQL server, for running tollgate's aws mode here. No stand-in for the
//! Data API runs on these machines (moto returns canned results; local-data-api needs
//! Docker), so this one is part of the product.
//!
//! The service's documentation is the spec: named `:param`s, every `Field` kind, `typeHint`s
//! with the service's strictness (a string meets a uuid column only through a hint),
//! `includeResultMetadata`, `formatRecordsAs: JSON`, transactions that end after 3 idle
//! minutes, and the errors today's Aurora Data API returns, as bodies the SDKs parse.

pub mod metadata;
pub mod pgvalue;
pub mod server;
pub mod service;
pub mod sqltext;
