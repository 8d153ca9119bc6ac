//! Builds a large audit trail in an embedded data directory for `bench/verify.sh`, through the
//! real parts: rows inserted in the SQLite request log, each batch written by the audit
//! writer (gzip NDJSON object, marking, sequencing), the log integrated and the digests signed
//! by the audit-digest pass at simulated times (a batch a minute, ending now, hourly periods).
//!
//! `cargo run --release -p tollgate-verify --example build_trail -- DIR [EVENTS] [PER_BATCH]`

use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tollgate_core::digest::DigestSettings;
use tollgate_testkit::trail::Trail;

/// An audit event of the shape and size the ingress writes for an echo (~800 bytes).
fn event(n: usize, id: &str, t: OffsetDateTime) -> String {
    let time = tollgate_core::clock::format(t);
    format!(
        concat!(
            r#"{{"event_version":"2","event_id":"{id}-e","event_time":"{time}","request_id":"{id}","#,
            r#""trace_id":"Root=1-670e34a8-abcdef0123456789{n:08x}","source":{{"ip":"203.0.113.{ip}","user_agent":"curl/8.5.0"}},"#,
            r#""principal":{{"kind":"api_key","id":"k{k:04}","name":"load test","scopes":["requests:read"],"decision":"allowed"}},"#,
            r#""request":{{"method":"POST","path":"/v1/echo/{n}","query":"x=1","headers":{{"authorization":["[REDACTED]"],"#,
            r#""host":["api.example.com"],"content-type":["text/plain"],"x-request-id":["{id}"]}},"#,
            r#""body_sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","body_bytes":5}},"#,
            r#""route":"/v1/echo","function_name":"echo","response":{{"status":200,"headers":{{"content-type":["application/json"]}},"#,
            r#""body_sha256":"71290fa35bdb9fe6c38464ab13fbe7cde6cab7f913086ffda49eb4ea5061aca3","body_bytes":300}},"#,
            r#""latency_ms":1.25,"error":null}}"#
        ),
        id = id,
        time = time,
        n = n,
        ip = n % 250,
        k = n % 100
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: build_trail DIR [EVENTS] [PER_BATCH]"));
    let events: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("EVENTS"));
    let per_batch: usize = args.get(3).map_or(1_000, |s| s.parse().expect("PER_BATCH"));
    let started = Instant::now();
    let settings = DigestSettings {
        period: Duration::from_secs(3600),
        grace: Duration::from_secs(120),
        lookback: 48,
    };
    let mut trail = Trail::in_data_dir(&dir, settings)
        .with_events(event)
        .with_request_ids(|_| uuid::Uuid::new_v4().hyphenated().to_string());
    let batches = events.div_ceil(per_batch);
    // A batch a minute, the last one two minutes ago.
    let now = tollgate_core::clock::now();
    let t0 = now - time::Duration::minutes(batches as i64 + 2);
    let mut pass = Duration::ZERO;
    let mut n = 0usize;
    for b in 0..batches {
        let t = t0 + time::Duration::minutes(b as i64);
        let count = per_batch.min(events - n);
        trail.write(t, count).await;
        n += count;
        // The pass at the top of each simulated hour, as the timer would run it.
        if (b + 1) % 60 == 0 {
            let at = Instant::now();
            tollgate_audit_digest::run_pass(&trail.integrator, &trail.digester, t + time::Duration::seconds(30))
                .await
                .expect("pass");
            pass += at.elapsed();
        }
    }
    let at = Instant::now();
    let last = tollgate_audit_digest::run_pass(&trail.integrator, &trail.digester, tollgate_core::clock::now())
        .await
        .expect("pass");
    pass += at.elapsed();
    println!(
        "{{\"events\":{n},\"batches\":{batches},\"tree_size\":{},\"seconds\":{:.1},\"insert_s\":{:.1},\"write_s\":{:.1},\"integrate_and_digest_s\":{:.1}}}",
        last.tree_size,
        started.elapsed().as_secs_f64(),
        trail.spent.insert.as_secs_f64(),
        trail.spent.write.as_secs_f64(),
        pass.as_secs_f64()
    );
}
