-- One row per answered API request, with its audit outbox entry.
-- Timestamps are RFC 3339 text in UTC with six fractional digits, so text order is time order.
CREATE TABLE api_requests (
    request_id      TEXT    NOT NULL PRIMARY KEY,
    event_id        TEXT    NOT NULL,
    trace_id        TEXT,
    received_at     TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    query           TEXT,
    route           TEXT,
    function_name   TEXT,
    status          INTEGER NOT NULL,
    latency_ms      REAL    NOT NULL,
    client_ip       TEXT,
    user_agent      TEXT,
    principal       TEXT,
    request_bytes   INTEGER NOT NULL,
    response_bytes  INTEGER NOT NULL,
    error_code      TEXT,
    audit_batch     TEXT    NOT NULL,
    audit_key       TEXT,
    audit_payload   TEXT
);
CREATE INDEX api_requests_received ON api_requests (received_at DESC, request_id DESC);
-- The reconciler's scan: only unaudited rows are indexed.
CREATE INDEX api_requests_unaudited ON api_requests (received_at) WHERE audit_key IS NULL;
