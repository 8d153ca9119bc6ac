-- Write-ahead routes and a reconciler that cannot be starved (see the PostgreSQL migration
-- of the same name for what each column means).
ALTER TABLE api_requests ADD COLUMN intent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_requests ADD COLUMN redrive_attempts INTEGER NOT NULL DEFAULT 0;
DROP INDEX api_requests_unaudited;
CREATE INDEX api_requests_unaudited ON api_requests (redrive_attempts, received_at) WHERE audit_key IS NULL;
CREATE INDEX api_requests_intents ON api_requests (received_at) WHERE intent;
