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
