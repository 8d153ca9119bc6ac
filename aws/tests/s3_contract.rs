//! The `ObjectStore` contract against the S3 adapter: aws-sdk-s3 over HTTP to an
//! S3-compatible server started by the test.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use tollgate_aws::s3::{S3ObjectStore, S3Settings};
use tollgate_testkit::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_object_store_meets_the_contract() {
    let server = S3Server::start();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&server.endpoint)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    client.create_bucket().bucket("audit").send().await.unwrap();
    let store = S3ObjectStore::new(
        client.clone(),
        S3Settings {
            bucket: "audit".into(),
            kms_key_id: None,
        },
    );
    tollgate_testkit::contract::object_store(&store).await;
    let head = client.head_object().bucket("audit").key("race/k").send().await.unwrap();
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"));
}
