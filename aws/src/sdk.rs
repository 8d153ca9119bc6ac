//! The AWS SDK clients, each making **one attempt per call** under an attempt timeout (KMS
//! aside: see [`KMS_MAX_ATTEMPTS`]): the SDK's own retries are off, so every retry goes through `tollgate_core::backoff::retry`
//! with a named policy and no retry loop nests inside another. A policy's budget plus one
//! attempt timeout is then the longest any call can take.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use std::time::Duration;

/// Connecting to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One Data API call. Statements here are single-row writes and indexed reads; the service's
/// own limit without `continueAfterTimeout` is 45 s.
pub const RDS_DATA_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// One S3 call (audit objects are at most ~1 MB).
pub const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// One KMS call (`GetPublicKey`, or `Sign` over a checkpoint of ~100 bytes).
pub const KMS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// KMS attempts per call: the SDK's standard retry (its default of 3 attempts, exponential
/// backoff with jitter, throttling and `KMSInternalException` retried). The one exception to
/// one-attempt-per-call: nothing retries around a signature (a failed integration is logged
/// and the next writer batch integrates), so no retry loop nests.
pub const KMS_MAX_ATTEMPTS: u32 = 3;

/// The SDK configuration from the environment (region, credentials, and the
/// `AWS_ENDPOINT_URL_*` endpoint overrides), with retries off.
pub async fn config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await
}

fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .build()
}

/// The Data API client.
pub fn rds_data(sdk: &SdkConfig) -> aws_sdk_rdsdata::Client {
    rds_data_from(aws_sdk_rdsdata::config::Builder::from(sdk))
}

/// The Data API client from a client configuration (tests point one at a stand-in), with
/// one attempt per call and the attempt timeout.
pub fn rds_data_from(builder: aws_sdk_rdsdata::config::Builder) -> aws_sdk_rdsdata::Client {
    let conf = builder
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(timeouts(RDS_DATA_ATTEMPT_TIMEOUT))
        .build();
    aws_sdk_rdsdata::Client::from_conf(conf)
}

/// The S3 client (path-style for S3-compatible servers on loopback).
pub fn s3(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(timeouts(S3_ATTEMPT_TIMEOUT))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The KMS client (the transparency log's checkpoint signer), with the SDK's standard retry.
pub fn kms(sdk: &SdkConfig) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(KMS_MAX_ATTEMPTS))
        .timeout_config(timeouts(KMS_ATTEMPT_TIMEOUT))
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// The Lambda client configuration: no attempt timeout of its own, since the route timeout
/// (or the hand-off timeout of an audit batch) bounds every invoke.
pub fn lambda(sdk: &SdkConfig) -> aws_sdk_lambda::config::Builder {
    aws_sdk_lambda::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build())
}
