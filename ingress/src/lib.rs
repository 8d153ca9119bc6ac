//! tollgate's ingress: a hyper server that gives each request an id, enforces limits,
//! routes it to a function through the ALB target-group contract, records it durably with
//! its audit event, and only then answers.

pub mod alb;
pub mod app;
pub mod auth;
pub mod backends;
pub mod cli;
pub mod config;
pub mod handler;
pub mod ops;
pub mod ratelimit;
pub mod receipt;
pub mod recorder;
pub mod registry;
pub mod routes;
pub mod server;
