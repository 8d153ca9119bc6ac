//! `kms-local`: the AWS KMS stand-in (`tollgate_testkit::kms_local`) as a process, for
//! `scripts/aws-local.sh` and the benchmarks. Listens on `TOLLGATE_KMS_LOCAL_LISTEN` (default
//! `127.0.0.1:8083`); with `TOLLGATE_KMS_LOCAL_CREATE_KEY=alias/<name>` it creates an
//! `ECC_NIST_EDWARDS25519` signing key under that alias at start (keys live in memory only).

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let listen: SocketAddr = match std::env::var("TOLLGATE_KMS_LOCAL_LISTEN") {
        Ok(v) => match v.parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("kms-local: TOLLGATE_KMS_LOCAL_LISTEN={v:?}: {e}");
                return ExitCode::from(2);
            }
        },
        Err(_) => ([127, 0, 0, 1], 8083).into(),
    };
    let server = match tollgate_testkit::kms_local::KmsServer::bind(listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kms-local: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Ok(alias) = std::env::var("TOLLGATE_KMS_LOCAL_CREATE_KEY") {
        let arn = server.kms.create_ed25519_key("tollgate transparency log (kms-local)");
        if let Err(e) = server.kms.create_alias(&alias, &arn) {
            eprintln!("kms-local: alias {alias}: {} {}", e.code, e.message);
            return ExitCode::from(2);
        }
        eprintln!("kms-local: created {arn} as {alias}");
    }
    eprintln!("kms-local: serving the KMS API on {}", server.endpoint);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
