-- Ingest that also leases new work to the process that ingests it, when that process
-- runs a dispatcher with idle endpoints (its offer: endpoint ids, how many deliveries
-- each takes, the lease's length). Those deliveries are leased as they are made and
-- returned as push items (JSON, each led by its endpoint id), so they are pushed
-- without a claim; only endpoints with work left to claim are notified.
--
-- The fan-out with an offer is the one fan-out: dlrpush_fan_out becomes it with an
-- empty offer, and dlrpush_add_reports becomes dlrpush_ingest with an empty offer, so
-- each piece of ingest is written once. Both keep their arguments and results for
-- processes of the previous release during a rolling upgrade.
CREATE FUNCTION dlrpush_fan_out_offered(
    a_reports BIGINT[], a_accounts TEXT[], a_now BIGINT, a_channel TEXT,
    a_offer_ep BIGINT[], a_offer_limit INTEGER[], a_offer_lease BIGINT[],
    OUT endpoints BIGINT[], OUT leased BIGINT[]
) LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_payload TEXT;
BEGIN
    WITH eps AS (
        SELECT e.id, e.account_id, o.lim, o.lease FROM endpoints e
        LEFT JOIN unnest(a_offer_ep, a_offer_limit, a_offer_lease) AS o(ep, lim, lease)
               ON o.ep = e.id
        WHERE e.account_id = ANY(a_accounts) AND e.deleted_ms IS NULL AND e.enabled
        ORDER BY e.id
        FOR SHARE OF e
    ), created AS (
        INSERT INTO deliveries (report_id, endpoint_id, state, tries, next_attempt_ms,
                                lease_until_ms, updated_ms)
        SELECT r.id, eps.id, 'pending', 0, a_now,
               CASE WHEN row_number() OVER (PARTITION BY eps.id ORDER BY r.id) <= eps.lim
                    THEN a_now + eps.lease ELSE 0 END,
               a_now
        FROM unnest(a_reports, a_accounts) AS r(id, account_id)
        JOIN eps ON eps.account_id = r.account_id
        ORDER BY r.id, eps.id
        ON CONFLICT (report_id, endpoint_id) DO NOTHING
        RETURNING id, endpoint_id, lease_until_ms
    )
    SELECT COALESCE(array_agg(DISTINCT created.endpoint_id)
                    FILTER (WHERE created.lease_until_ms = 0), '{}'),
           COALESCE(array_agg(created.id) FILTER (WHERE created.lease_until_ms > 0), '{}')
    INTO endpoints, leased FROM created;
    -- Payloads of at most 300 ids stay under the server's 8,000-byte limit.
    FOR v_payload IN
        SELECT string_agg(x.id::text, ',' ORDER BY x.id)
        FROM (SELECT u.id, (row_number() OVER (ORDER BY u.id) - 1) / 300 AS chunk
              FROM unnest(endpoints) AS u(id)) AS x
        GROUP BY x.chunk ORDER BY x.chunk
    LOOP
        PERFORM pg_notify(a_channel, v_payload);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION dlrpush_fan_out(
    a_reports BIGINT[], a_accounts TEXT[], a_now BIGINT, a_channel TEXT
) RETURNS BIGINT[] LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (SELECT f.endpoints
            FROM dlrpush_fan_out_offered(a_reports, a_accounts, a_now, a_channel,
                                         '{}', '{}', '{}') AS f);
END
$$;

CREATE FUNCTION dlrpush_ingest(
    a_msgid TEXT[], a_status TEXT[], a_error_code TEXT[], a_description TEXT[],
    a_receipt TEXT[], a_report_time BIGINT[], a_now BIGINT, a_hold_until BIGINT,
    a_channel TEXT, a_offer_ep BIGINT[], a_offer_limit INTEGER[], a_offer_lease BIGINT[],
    OUT matched INTEGER, OUT held BIGINT[], OUT endpoints BIGINT[], OUT ids BIGINT[],
    OUT leased TEXT
) LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_ids BIGINT[];
    v_accounts TEXT[];
    v_leased BIGINT[];
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
    leased := '[]';
    IF matched = 0 THEN
        RETURN;
    END IF;
    SELECT f.endpoints, f.leased INTO endpoints, v_leased
    FROM dlrpush_fan_out_offered(v_ids, v_accounts, a_now, a_channel,
                                 a_offer_ep, a_offer_limit, a_offer_lease) AS f;
    IF cardinality(v_leased) > 0 THEN
        SELECT json_agg(json_build_array(
                   d.endpoint_id, d.id, d.report_id, r.msgid, m.phone, m.segments, r.status,
                   r.description, r.report_time_ms, m.uid, m.batch_seq, m.request_time_ms,
                   m.unit_price, m.currency, m.access_number, m.country_number,
                   m.region_code, m.mno_name, m.mcc, m.mnc, d.tries) ORDER BY d.id)::text
        INTO leased
        FROM deliveries d
        JOIN reports r ON r.id = d.report_id
        JOIN messages m ON m.msgid = r.msgid
        WHERE d.id = ANY(v_leased);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION dlrpush_add_reports(
    a_msgid TEXT[], a_status TEXT[], a_error_code TEXT[], a_description TEXT[],
    a_receipt TEXT[], a_report_time BIGINT[], a_now BIGINT, a_hold_until BIGINT,
    a_channel TEXT, OUT matched INTEGER, OUT held BIGINT[], OUT endpoints BIGINT[],
    OUT ids BIGINT[]
) LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    SELECT i.matched, i.held, i.endpoints, i.ids INTO matched, held, endpoints, ids
    FROM dlrpush_ingest(a_msgid, a_status, a_error_code, a_description, a_receipt,
                        a_report_time, a_now, a_hold_until, a_channel,
                        '{}', '{}', '{}') AS i;
END
$$;
