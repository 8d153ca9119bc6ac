//! The `echo` Lambda: `lambda_http` behind an ALB (or API Gateway).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    lambda_http::run(lambda_http::service_fn(tollgate_echo::handle)).await
}
