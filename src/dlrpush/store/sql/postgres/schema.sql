-- dlrpush schema, PostgreSQL: the fresh-install snapshot. Keep equal to all migrations applied in order (tests/contract/test_migrations_postgres.py checks).
-- Hot rows (deliveries, reports) leave page room so updates can stay on their page (HOT);
-- deliveries.lease_until_ms is in no index, so a claim, which only sets the lease, is HOT
-- as long as the page has room for a new version of every row leased from it: hence half
-- of each deliveries page is left free.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    url                   TEXT NOT NULL,
    protocol              TEXT NOT NULL,
    receiver              TEXT NOT NULL DEFAULT '',
    pswd                  TEXT NOT NULL DEFAULT '',
    batch_max             INTEGER NOT NULL,
    retry_schedule        DOUBLE PRECISION[] NOT NULL,
    timeout_s             DOUBLE PRECISION NOT NULL,
    max_in_flight         INTEGER NOT NULL,
    enabled               BOOLEAN NOT NULL,
    description_lang      TEXT NOT NULL,
    success_body_contains TEXT,
    created_ms            BIGINT NOT NULL,
    deleted_ms            BIGINT
);
CREATE INDEX endpoints_account ON endpoints(account_id) WHERE deleted_ms IS NULL;

CREATE TABLE messages (
    msgid           TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    phone           TEXT NOT NULL,
    segments        INTEGER NOT NULL,
    uid             TEXT,
    batch_seq       TEXT NOT NULL,
    request_time_ms BIGINT,
    unit_price      TEXT,
    currency        TEXT NOT NULL,
    access_number   TEXT NOT NULL,
    country_number  TEXT NOT NULL,
    region_code     TEXT NOT NULL,
    mno_name        TEXT NOT NULL,
    mcc             TEXT NOT NULL,
    mnc             TEXT NOT NULL,
    created_ms      BIGINT NOT NULL
);

CREATE TABLE reports (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msgid          TEXT NOT NULL,
    account_id     TEXT,
    status         TEXT NOT NULL,
    error_code     TEXT,
    description    TEXT,
    receipt        TEXT,
    report_time_ms BIGINT NOT NULL,
    received_ms    BIGINT NOT NULL,
    hold_until_ms  BIGINT,
    state          TEXT NOT NULL
        CHECK (state IN ('held', 'unmatched', 'pending', 'failed', 'delivered'))
) WITH (fillfactor = 50);
-- No index mentions the state, so a settle's state update is HOT (see 0004).
CREATE INDEX reports_msgid ON reports(msgid);
CREATE INDEX reports_held_until ON reports(hold_until_ms) WHERE hold_until_ms IS NOT NULL;
CREATE INDEX reports_account ON reports(account_id, id);
CREATE INDEX reports_received ON reports(received_ms);
CREATE INDEX reports_unowned ON reports(id) WHERE account_id IS NULL;

CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_id       BIGINT NOT NULL,
    endpoint_id     BIGINT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    tries           INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    updated_ms      BIGINT NOT NULL,
    push_ids        BIGINT[] NOT NULL DEFAULT '{}',
    attempts        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (report_id, endpoint_id)
) WITH (fillfactor = 50);
-- id is the claim's tie-break (ORDER BY next_attempt_ms, id): with it in the key a claim
-- reads its LIMIT rows straight off the index instead of sorting every due row first.
CREATE INDEX deliveries_due ON deliveries(endpoint_id, next_attempt_ms, id) WHERE state = 'pending';
CREATE INDEX deliveries_failed ON deliveries(report_id) WHERE state = 'failed';

-- One row per HTTP request (the attempt log); deliveries.push_ids lists the requests
-- that carried each delivery, deliveries.attempts counts every attempt, replays included.
CREATE TABLE pushes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id BIGINT NOT NULL,
    started_ms  BIGINT NOT NULL,
    latency_ms  DOUBLE PRECISION NOT NULL,
    http_status INTEGER,
    outcome     TEXT NOT NULL,
    snippet     TEXT NOT NULL,
    items       INTEGER NOT NULL
);

-- Per-account API keys (only a hash of each key is stored).
CREATE TABLE api_keys (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE INDEX api_keys_account ON api_keys(account_id);

-- Recording push outcomes in one round trip (see 0005).
-- The state of these reports recomputed from their deliveries (inside the caller's
-- transaction; the settle below and the Python store's other writers call it).
CREATE FUNCTION dlrpush_refresh_reports(a_ids BIGINT[]) RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
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
SET plan_cache_mode = force_generic_plan
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

-- Ingest in one round trip (see 0006), planned once per session (see 0008), leasing
-- new work to the ingesting process's idle endpoints (see 0010).
-- One pending delivery per enabled, live endpoint of each (report, account), the first
-- ones of each offered endpoint leased (up to its limit, in report order), and a
-- notification naming the endpoints left with work to claim (inside the caller's
-- transaction: listeners hear it only if the work commits). The endpoints are
-- share-locked in id order, so a concurrent endpoint delete either commits first, and
-- its endpoint is skipped, or waits for this transaction and then fails the deliveries
-- created here.
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

-- The fan-out with no offer (matching held reports, replay).
CREATE FUNCTION dlrpush_fan_out(
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

-- Inserts the reports in input order (ids in that order), each owned by the account of
-- its submission record when there is one and held otherwise, fans the owned ones out,
-- and returns how many were owned, the held ids (for the caller's second look), the
-- endpoints left with work to claim, every new id in input order (so a call carrying
-- several API requests' reports can tell each request its own counts), and the leased
-- work as push items.
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

-- The ingest of the previous release's processes (rolling upgrade): no offer.
CREATE FUNCTION dlrpush_add_reports(
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

-- Moved by every change to endpoints: the dispatcher re-reads them only when it moved.
CREATE TABLE endpoint_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO endpoint_changes (id, version) VALUES (1, 0);
CREATE FUNCTION dlrpush_endpoints_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE endpoint_changes SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER endpoints_changed AFTER INSERT OR UPDATE OR DELETE ON endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION dlrpush_endpoints_changed();
