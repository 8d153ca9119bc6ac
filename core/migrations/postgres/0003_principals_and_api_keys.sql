-- Who is calling: every record carries the verified principal and the access decision, and
-- tollgate's API keys live beside the request log.
-- principal (existing column) is the verified principal's id, NULL for anonymous callers.
-- principal_kind: anonymous | api_key | jwt | alb_oidc.
-- scopes: the scopes granted, space-separated (RFC 6749 section 3.3).
-- access: allowed:<policy> | refused:<reason> | not_evaluated.
ALTER TABLE api_requests ADD COLUMN principal_kind VARCHAR(16) NOT NULL DEFAULT 'anonymous';
ALTER TABLE api_requests ADD COLUMN principal_name TEXT;
ALTER TABLE api_requests ADD COLUMN scopes TEXT;
ALTER TABLE api_requests ADD COLUMN access VARCHAR(128) NOT NULL DEFAULT 'not_evaluated';
-- requests:read:own lists: one principal's rows, newest first.
CREATE INDEX api_requests_principal ON api_requests (principal, received_at DESC, request_id DESC);
-- Only the SHA-256 of each key's secret is kept (the secret is shown once, at creation).
CREATE TABLE api_keys (
    key_id          VARCHAR(32)  NOT NULL PRIMARY KEY,
    name            TEXT         NOT NULL,
    scopes          TEXT         NOT NULL,
    secret_sha256   CHAR(64)     NOT NULL,
    created_at      TIMESTAMP    NOT NULL,
    expires_at      TIMESTAMP,
    revoked_at      TIMESTAMP
);
