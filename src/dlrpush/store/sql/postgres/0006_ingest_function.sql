-- Ingest as one server-side function call, like the settle (0005): one statement and
-- one round trip per array of reports instead of a transaction of six. Report inserts
-- take turns (per schema, until commit) so ids become visible in order and a pull
-- cursor never skips one; every round trip inside that turn made the others wait.

-- One pending delivery per enabled, live endpoint of each (report, account), and a
-- notification naming the endpoints that got work (inside the caller's transaction:
-- listeners hear it only if the work commits). The endpoints are share-locked in id
-- order, so a concurrent endpoint delete either commits first, and its endpoint is
-- skipped, or waits for this transaction and then fails the deliveries created here.
CREATE FUNCTION dlrpush_fan_out(
    a_reports BIGINT[], a_accounts TEXT[], a_now BIGINT, a_channel TEXT
) RETURNS BIGINT[] LANGUAGE plpgsql
AS $$
DECLARE
    v_endpoints BIGINT[];
    v_payload TEXT;
BEGIN
    WITH eps AS (
        SELECT e.id, e.account_id FROM endpoints e
        WHERE e.account_id = ANY(a_accounts) AND e.deleted_ms IS NULL AND e.enabled
        ORDER BY e.id
        FOR SHARE
    ), created AS (
        INSERT INTO deliveries (report_id, endpoint_id, state, tries, next_attempt_ms,
                                lease_until_ms, updated_ms)
        SELECT r.id, eps.id, 'pending', 0, a_now, 0, a_now
        FROM unnest(a_reports, a_accounts) AS r(id, account_id)
        JOIN eps ON eps.account_id = r.account_id
        ORDER BY r.id, eps.id
        ON CONFLICT (report_id, endpoint_id) DO NOTHING
        RETURNING endpoint_id
    )
    SELECT array_agg(DISTINCT created.endpoint_id) INTO v_endpoints FROM created;
    -- Payloads of at most 300 ids stay under the server's 8,000-byte limit.
    FOR v_payload IN
        SELECT string_agg(x.id::text, ',' ORDER BY x.id)
        FROM (SELECT u.id, (row_number() OVER (ORDER BY u.id) - 1) / 300 AS chunk
              FROM unnest(v_endpoints) AS u(id)) AS x
        GROUP BY x.chunk ORDER BY x.chunk
    LOOP
        PERFORM pg_notify(a_channel, v_payload);
    END LOOP;
    RETURN COALESCE(v_endpoints, '{}');
END
$$;

-- Inserts the reports in input order (ids in that order), each owned by the account of
-- its submission record when there is one and held otherwise, fans the owned ones out,
-- and returns how many were owned, the held ids (for the caller's second look) and the
-- endpoints that got work.
CREATE FUNCTION dlrpush_add_reports(
    a_msgid TEXT[], a_status TEXT[], a_error_code TEXT[], a_description TEXT[],
    a_receipt TEXT[], a_report_time BIGINT[], a_now BIGINT, a_hold_until BIGINT,
    a_channel TEXT, OUT matched INTEGER, OUT held BIGINT[], OUT endpoints BIGINT[]
) LANGUAGE plpgsql
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
    SELECT array_agg(ins.id ORDER BY ins.id) FILTER (WHERE ins.account_id IS NOT NULL),
           array_agg(ins.account_id ORDER BY ins.id) FILTER (WHERE ins.account_id IS NOT NULL),
           COALESCE(array_agg(ins.id ORDER BY ins.id) FILTER (WHERE ins.account_id IS NULL),
                    '{}')
    INTO v_ids, v_accounts, held FROM ins;
    matched := COALESCE(cardinality(v_ids), 0);
    endpoints := '{}';
    IF matched > 0 THEN
        endpoints := dlrpush_fan_out(v_ids, v_accounts, a_now, a_channel);
    END IF;
END
$$;
