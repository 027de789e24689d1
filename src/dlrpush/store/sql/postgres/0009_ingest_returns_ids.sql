-- Ingest returns every new id in input order as well, so the store can merge the
-- reports of concurrent API requests into one call and still tell each request how
-- many of its own reports found their submission record. The arguments and the first
-- three results are unchanged: a process of the previous release calling it during a
-- rolling upgrade still gets what it reads.
DROP FUNCTION dlrpush_add_reports(
    TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], BIGINT, BIGINT, TEXT
);

CREATE FUNCTION dlrpush_add_reports(
    a_msgid TEXT[], a_status TEXT[], a_error_code TEXT[], a_description TEXT[],
    a_receipt TEXT[], a_report_time BIGINT[], a_now BIGINT, a_hold_until BIGINT,
    a_channel TEXT, OUT matched INTEGER, OUT held BIGINT[], OUT endpoints BIGINT[],
    OUT ids BIGINT[]
) LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_ids BIGINT[];
    v_accounts TEXT[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dlrpush.reports.' || current_schema()));
    WITH ins AS (
        INSERT INTO reports (msgid, account_id, status, error_code, description, receipt,
                             report_time_ms, received_ms, hold_until_ms, state)
        SELECT t.msgid, m.account_id, t.status, t.error_code, t.description, t.receipt,
               t.report_time_ms, a_now,
               CASE WHEN m.msgid IS NULL THEN a_hold_until END,
               CASE WHEN m.msgid IS NULL THEN 'held' ELSE 'pending' END
        FROM unnest(a_msgid, a_status, a_error_code, a_description, a_receipt,
                    a_report_time)
             WITH ORDINALITY AS t(msgid, status, error_code, description, receipt,
                                  report_time_ms, ord)
        LEFT JOIN messages m ON m.msgid = t.msgid
        ORDER BY t.ord
        RETURNING id, account_id
    )
    SELECT COALESCE(array_agg(ins.id ORDER BY ins.id), '{}'),
           array_agg(ins.id ORDER BY ins.id) FILTER (WHERE ins.account_id IS NOT NULL),
           array_agg(ins.account_id ORDER BY ins.id) FILTER (WHERE ins.account_id IS NOT NULL),
           COALESCE(array_agg(ins.id ORDER BY ins.id) FILTER (WHERE ins.account_id IS NULL),
                    '{}')
    INTO ids, v_ids, v_accounts, held FROM ins;
    matched := COALESCE(cardinality(v_ids), 0);
    endpoints := '{}';
    IF matched > 0 THEN
        endpoints := dlrpush_fan_out(v_ids, v_accounts, a_now, a_channel);
    END IF;
END
$$;
