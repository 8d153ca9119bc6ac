-- The transparency log (issue 15; docs/transparency-log.md).
-- log_index: the event's index in the log, assigned when the row is marked audited.
-- leaf_hash: hex SHA-256(0x00 || the event's line in its audit object) (RFC 6962 section 2.1).
-- Rows audited before this migration have neither: the log starts here.
ALTER TABLE api_requests ADD COLUMN log_index BIGINT;
ALTER TABLE api_requests ADD COLUMN leaf_hash CHAR(64);
CREATE UNIQUE INDEX api_requests_log_index ON api_requests (log_index) WHERE log_index IS NOT NULL;
-- The single sequencer row: locked FOR UPDATE by every marking, so indexes are gap-free.
CREATE TABLE tlog_sequencer (
    id              SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    next_index      BIGINT   NOT NULL
);
INSERT INTO tlog_sequencer (id, next_index) VALUES (1, 0);
-- The integrated tree: size, root hash and latest signed checkpoint (advanced by compare-and-set).
CREATE TABLE tlog_state (
    id              SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    size            BIGINT   NOT NULL,
    root_hash       CHAR(64),
    checkpoint      TEXT
);
INSERT INTO tlog_state (id, size) VALUES (1, 0);
-- Marks an object's events audited and sequences those marked now, in one call (the Data API
-- runs one statement per call; this keeps sequencing at zero extra calls). `events` is a JSON
-- array of {request_id, leaf_hash, ord} in the object's line order. In a VOLATILE PL/pgSQL
-- function each statement takes a new snapshot (READ COMMITTED), so once the sequencer row is
-- locked the marking sees every earlier marker's committed rows: a row marked by a concurrent
-- call is skipped, never given a second index.
CREATE FUNCTION tlog_mark_audited(p_key TEXT, p_events JSON) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_at BIGINT;
    marked BIGINT;
BEGIN
    SELECT next_index INTO next_at FROM tlog_sequencer WHERE id = 1 FOR UPDATE;
    WITH todo AS (
        SELECT u.request_id, u.leaf_hash, row_number() OVER (ORDER BY u.ord) - 1 AS k
        FROM (
            SELECT DISTINCT ON (e.request_id) e.request_id, e.leaf_hash, e.ord
            FROM json_to_recordset(p_events) AS e(request_id varchar, leaf_hash varchar, ord bigint)
            JOIN api_requests a ON a.request_id = e.request_id
            WHERE a.audit_key IS NULL
            ORDER BY e.request_id, e.ord
        ) AS u
    )
    UPDATE api_requests a SET audit_key = p_key, audit_payload = NULL,
        log_index = next_at + todo.k, leaf_hash = todo.leaf_hash
    FROM todo WHERE a.request_id = todo.request_id;
    GET DIAGNOSTICS marked = ROW_COUNT;
    UPDATE tlog_sequencer SET next_index = next_at + marked WHERE id = 1;
    RETURN marked;
END
$$;
