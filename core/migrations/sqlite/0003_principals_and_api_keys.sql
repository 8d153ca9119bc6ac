-- Who is calling: every record carries the verified principal and the access decision, and
-- tollgate's API keys live beside the request log (the twin of the PostgreSQL migration).
ALTER TABLE api_requests ADD COLUMN principal_kind TEXT NOT NULL DEFAULT 'anonymous';
ALTER TABLE api_requests ADD COLUMN principal_name TEXT;
ALTER TABLE api_requests ADD COLUMN scopes TEXT;
ALTER TABLE api_requests ADD COLUMN access TEXT NOT NULL DEFAULT 'not_evaluated';
CREATE INDEX api_requests_principal ON api_requests (principal, received_at DESC, request_id DESC);
CREATE TABLE api_keys (
    key_id          TEXT    NOT NULL PRIMARY KEY,
    name            TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,
    secret_sha256   TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    expires_at      TEXT,
    revoked_at      TEXT
);
