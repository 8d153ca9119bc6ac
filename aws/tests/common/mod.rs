//! What the aws adapter tests share: the Data API request log as the product builds it
//! (`tollgate_aws::sdk::rds_data_from`: one attempt per call under the attempt timeout), on an
//! endpoint (dataapi-local, or a fault proxy in front of it).

use aws_sdk_rdsdata::config::{BehaviorVersion, Credentials, Region};
use tollgate_aws::dataapi::{DataApiRequestLog, DataApiSettings};

/// The Data API request log on `endpoint`, for the database `tollgate`.
pub fn data_api_log(endpoint: &str) -> DataApiRequestLog {
    let client = tollgate_aws::sdk::rds_data_from(
        aws_sdk_rdsdata::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(endpoint),
    );
    DataApiRequestLog::new(
        client,
        DataApiSettings {
            cluster_arn: "arn:aws:rds:us-east-1:123456789012:cluster:tollgate".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate".into(),
            database: "tollgate".into(),
        },
    )
}
