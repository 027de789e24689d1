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
