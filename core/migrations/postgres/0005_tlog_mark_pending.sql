-- The transparency log's integration read folded into the marking (issue 15; docs/transparency-log.md,
-- "Integration"). tlog_mark_audited_pending marks and sequences exactly as tlog_mark_audited (it calls
-- it), then, still holding the sequencer row's lock, answers the log's state and the leaves pending
-- past the integrated size, so the audit writer's integration needs no read call of its own.
-- Rows: the first holds `marked` and the state (next_index, size, root_hash, checkpoint); each
-- further one holds up to 256 consecutive leaves from `leaves_from` to `leaves_to` as their hex
-- hashes concatenated in index order (16 KiB of text: the Data API limits a row to 64 KB and a
-- response to 1 MiB, so the caller bounds `p_limit`). Each statement of a VOLATILE PL/pgSQL function
-- takes a new READ COMMITTED snapshot: once the lock is held every earlier marker has committed, so
-- the leaves below next_index are all visible, without holes.
-- tlog_mark_audited stays as it was: a writer of the previous release still calls it.
CREATE OR REPLACE FUNCTION tlog_mark_audited_pending(p_key TEXT, p_events JSON, p_limit BIGINT)
RETURNS TABLE (marked BIGINT, next_index BIGINT, size BIGINT, root_hash TEXT, checkpoint TEXT,
               leaves_from BIGINT, leaves_to BIGINT, leaves TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n BIGINT;
BEGIN
    n := tlog_mark_audited(p_key, p_events);
    RETURN QUERY
        SELECT n, s.next_index, t.size, CAST(t.root_hash AS TEXT), t.checkpoint,
               CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS TEXT)
        FROM tlog_sequencer s, tlog_state t WHERE s.id = 1 AND t.id = 1;
    RETURN QUERY
        SELECT CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS TEXT),
               CAST(NULL AS TEXT), min(r.log_index), max(r.log_index),
               string_agg(CAST(r.leaf_hash AS TEXT), '' ORDER BY r.log_index)
        FROM api_requests r, tlog_state t
        WHERE t.id = 1 AND r.log_index >= t.size AND r.log_index < t.size + p_limit
        GROUP BY (r.log_index - t.size) / 256
        ORDER BY min(r.log_index);
END
$$;
