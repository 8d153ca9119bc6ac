-- One row per answered API request, with its audit outbox entry (Aurora PostgreSQL).
-- Timestamps are UTC in TIMESTAMP columns (the Data API's TIMESTAMP type hint).
CREATE TABLE api_requests (
    request_id      VARCHAR(128)     NOT NULL PRIMARY KEY,
    event_id        UUID             NOT NULL,
    trace_id        VARCHAR(256),
    received_at     TIMESTAMP        NOT NULL,
    method          VARCHAR(32)      NOT NULL,
    path            TEXT             NOT NULL,
    query           TEXT,
    route           TEXT,
    function_name   TEXT,
    status          SMALLINT         NOT NULL,
    latency_ms      DOUBLE PRECISION NOT NULL,
    client_ip       VARCHAR(64),
    user_agent      TEXT,
    principal       TEXT,
    request_bytes   BIGINT           NOT NULL,
    response_bytes  BIGINT           NOT NULL,
    error_code      VARCHAR(64),
    audit_batch     UUID             NOT NULL,
    audit_key       TEXT,
    -- JSON (not JSONB) keeps the event's text exactly as serialized.
    audit_payload   JSON
);
CREATE INDEX api_requests_received ON api_requests (received_at DESC, request_id DESC);
-- The reconciler's scan: only unaudited rows are indexed.
CREATE INDEX api_requests_unaudited ON api_requests (received_at) WHERE audit_key IS NULL;
