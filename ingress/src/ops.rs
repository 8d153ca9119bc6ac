//! The operator commands that read the request log: `tollgate requests list|get` and
//! `tollgate export`. They open the mode's store (SQLite and the directory, or the Data API and
//! S3) and answer through the requests-api function's own code, so a filter, a cursor or an
//! error means the same thing here as on `GET /v1/requests`. They read; they never write.

use crate::cli::{ExportArgs, ListArgs};
use crate::config::IngressConfig;
use anyhow::Context;
use std::io::Write;
use tollgate_requests_api::{parse_list_query, ApiError, RequestsApi};

async fn api(config: &IngressConfig) -> anyhow::Result<RequestsApi> {
    let backends = crate::backends::open(&config.mode)
        .await
        .map_err(anyhow::Error::msg)
        .context("opening the request log and object store")?;
    Ok(RequestsApi::new(backends.log, backends.store))
}

/// An API error as the command's error: its RFC 9457 body, as the route would answer.
fn failed(e: &ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", String::from_utf8_lossy(&e.problem("")))
}

/// `tollgate requests list`: one page, as `GET /v1/requests` answers it.
pub async fn list(config: &IngressConfig, args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let query = parse_list_query(&args.params()).map_err(|e| failed(&e))?;
    let (_, body) = api(config).await?.list(&query).await.map_err(|e| failed(&e))?;
    out.write_all(&body)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `tollgate requests get ID`: the record and its audit event.
pub async fn get(config: &IngressConfig, request_id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    if !tollgate_core::ids::is_valid_request_id(request_id) {
        anyhow::bail!("{request_id:?} is not a request id");
    }
    let (_, body) = api(config).await?.get(request_id).await.map_err(|e| failed(&e))?;
    out.write_all(&body)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `tollgate export`: every record received in [since, until), page by page (newest first, as
/// the log is indexed), one JSON object a line. Returns once the last page is written.
pub async fn export(config: &IngressConfig, args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<u64> {
    let api = api(config).await?;
    let mut list = ListArgs {
        since: args.since.clone(),
        until: args.until.clone(),
        limit: args.page_size.clone(),
        ..ListArgs::default()
    };
    let mut written = 0u64;
    let mut out = std::io::BufWriter::new(out);
    loop {
        let query = parse_list_query(&list.params()).map_err(|e| failed(&e))?;
        let (_, body) = api.list(&query).await.map_err(|e| failed(&e))?;
        let page: serde_json::Value = serde_json::from_slice(&body).context("reading a page")?;
        for record in page["requests"].as_array().into_iter().flatten() {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => list.cursor = Some(c.to_string()),
            None => break,
        }
    }
    out.flush()?;
    Ok(written)
}
