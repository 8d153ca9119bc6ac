-- The transparency log (issue 15; docs/transparency-log.md), the twin of the PostgreSQL
-- migration: each audited row gets its log index and leaf hash when it is marked, from the
-- single sequencer row, in the marking transaction. Rows audited before this migration have
-- none: the log starts here.
ALTER TABLE api_requests ADD COLUMN log_index INTEGER;
ALTER TABLE api_requests ADD COLUMN leaf_hash TEXT;
CREATE UNIQUE INDEX api_requests_log_index ON api_requests (log_index) WHERE log_index IS NOT NULL;
CREATE TABLE tlog_sequencer (
    id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    next_index      INTEGER NOT NULL
);
INSERT INTO tlog_sequencer (id, next_index) VALUES (1, 0);
CREATE TABLE tlog_state (
    id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    size            INTEGER NOT NULL,
    root_hash       TEXT,
    checkpoint      TEXT
);
INSERT INTO tlog_state (id, size) VALUES (1, 0);
