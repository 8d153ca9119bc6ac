//! The `echo` Lambda: `lambda_http` behind an ALB (or API Gateway). Each invocation is one log
//! line with its request id (CloudWatch Logs; the aws-mode tests count executions by it).

use lambda_http::{service_fn, Request};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let _logs = tollgate_core::logging::init_json_logs();
    lambda_http::run(service_fn(|req: Request| async move {
        tracing::info!(
            target: "tollgate::echo",
            request_id = tollgate_echo::request_id(&req),
            "echo invoked"
        );
        tollgate_echo::handle(req).await
    }))
    .await
}
