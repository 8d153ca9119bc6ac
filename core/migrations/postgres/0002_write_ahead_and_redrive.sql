-- Write-ahead routes and a reconciler that cannot be starved.
-- intent: the row is a write-ahead intent, made durable before its function was invoked and
--   replaced by the request's record once answered; the reconciler finalizes one left behind
--   by an ingress that died (as `outcome_unknown`, already prepared in the row).
-- redrive_attempts: failed re-drives of the row's audit event; the reconciler scans the
--   fewest first and sets a row aside (alarmed on) past its limit, so rows that keep failing
--   cannot hold back newer ones.
ALTER TABLE api_requests ADD COLUMN intent BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE api_requests ADD COLUMN redrive_attempts INTEGER NOT NULL DEFAULT 0;
DROP INDEX api_requests_unaudited;
CREATE INDEX api_requests_unaudited ON api_requests (redrive_attempts, received_at) WHERE audit_key IS NULL;
CREATE INDEX api_requests_intents ON api_requests (received_at) WHERE intent;
