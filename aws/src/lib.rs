//! tollgate's AWS adapters (aws mode): the `Invoker` on aws-sdk-lambda, the `RequestLog` on
//! aws-sdk-rdsdata (Aurora PostgreSQL through the Data API), the `ObjectStore` on aws-sdk-s3,
//! and the transparency log's checkpoint signer on aws-sdk-kms. Each honours the standard
//! endpoint variables (`AWS_ENDPOINT_URL_LAMBDA`, `AWS_ENDPOINT_URL_RDS_DATA`,
//! `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_KMS`), which is how the local stand-ins are wired
//! in: there are no test-only code paths here.

pub mod backends;
#[cfg(feature = "custom-resource")]
pub mod custom_resource;
pub mod dataapi;
pub mod kms;
pub mod lambda;
pub mod s3;
pub mod sdk;
