-- wrk script: POSTs a small body to the target and prints one machine-readable summary line.
wrk.method = "POST"
wrk.body = "hello tollgate"
wrk.headers["Content-Type"] = "text/plain"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
