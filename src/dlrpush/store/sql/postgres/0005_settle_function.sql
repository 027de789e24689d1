-- A settle as one server-side function: one statement and one round trip per batch of
-- outcomes instead of a pipelined transaction of six (BEGIN, settings, outcomes, report
-- lock, report states, COMMIT). The function's statements keep their plans for the
-- session, and the client waits for one answer instead of driving a pipeline.
-- Semantics are those of the statements it replaces:
-- - the attempts (one per request) get their ids up front, so the same statement can
--   append them to the deliveries they carried; a delivery failed meanwhile (its
--   endpoint was deleted) stays failed, but the attempt made is still counted;
-- - the reports whose deliveries reached a final state are locked in id order (two
--   settlers sharing reports cannot deadlock) by a statement of their own, and only
--   then is their state recomputed: each statement of a volatile function takes a new
--   snapshot under READ COMMITTED, so the recompute sees the deliveries of whichever
--   transaction held a lock before us;
-- - a report's state is the least advanced of its deliveries, from a per-report
--   aggregate (an index probe each; as EXISTS subqueries the planner may read every
--   pending delivery), and is rewritten only when it changes;
-- - sequential and bitmap scans are discouraged for the function's statements: they
--   reach rows only by key, and stale statistics must not turn that into table reads;
-- - the commit does not wait for the WAL flush (bookkeeping: losing the last outcomes to
--   a server crash only means those reports are pushed again).

-- The state of these reports recomputed from their deliveries (inside the caller's
-- transaction; the settle below and the Python store's other writers call it).
CREATE FUNCTION dlrpush_refresh_reports(a_ids BIGINT[]) RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM 1 FROM reports WHERE id = ANY(a_ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE reports r SET state = agg.state
    FROM unnest(a_ids) AS s(id)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN bool_or(d.state = 'pending') THEN 'pending'
                    WHEN bool_or(d.state = 'failed') THEN 'failed'
                    ELSE 'delivered' END AS state
        FROM deliveries d WHERE d.report_id = s.id
    ) AS agg
    -- r.id = ANY lets the reports be found by their key: with the join alone, a table
    -- of up to some 50,000 rows is read whole each time.
    WHERE r.id = s.id AND r.id = ANY(a_ids) AND r.state <> agg.state;
END
$$;

CREATE FUNCTION dlrpush_settle(
    a_endpoint BIGINT[], a_started BIGINT[], a_latency DOUBLE PRECISION[],
    a_status INTEGER[], a_outcome TEXT[], a_snippet TEXT[], a_items INTEGER[],
    a_carried BIGINT[], a_carried_by BIGINT[],
    a_delivery BIGINT[], a_state TEXT[], a_tries INTEGER[], a_next BIGINT[],
    a_now BIGINT, a_final BIGINT[]
) RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH p AS (
        SELECT nextval('pushes_id_seq') AS id, t.*
        FROM unnest(a_endpoint, a_started, a_latency, a_status, a_outcome, a_snippet,
                    a_items)
             WITH ORDINALITY AS t(endpoint_id, started_ms, latency_ms, http_status,
                                  outcome, snippet, items, ord)
    ), inserted AS (
        INSERT INTO pushes (id, endpoint_id, started_ms, latency_ms, http_status, outcome,
                            snippet, items)
        OVERRIDING SYSTEM VALUE
        SELECT p.id, p.endpoint_id, p.started_ms, p.latency_ms, p.http_status, p.outcome,
               p.snippet, p.items
        FROM p ORDER BY p.ord
    )
    UPDATE deliveries d SET
        state = CASE WHEN d.state = 'pending' THEN s.state ELSE d.state END,
        tries = CASE WHEN d.state = 'pending' THEN s.tries ELSE d.tries END,
        next_attempt_ms = CASE WHEN d.state = 'pending' THEN s.next_ms
                               ELSE d.next_attempt_ms END,
        updated_ms = CASE WHEN d.state = 'pending' THEN a_now ELSE d.updated_ms END,
        lease_until_ms = 0,
        push_ids = d.push_ids || c.push_ids,
        attempts = d.attempts + cardinality(c.push_ids)
    FROM unnest(a_delivery, a_state, a_tries, a_next) AS s(id, state, tries, next_ms)
    JOIN (
        SELECT x.id, array_agg(p.id ORDER BY p.id) AS push_ids
        FROM unnest(a_carried, a_carried_by) AS x(id, ord)
        JOIN p ON p.ord = x.ord
        GROUP BY x.id
    ) c ON c.id = s.id
    WHERE d.id = s.id;
    IF cardinality(a_final) > 0 THEN
        PERFORM dlrpush_refresh_reports(a_final);
    END IF;
END
$$;
