-- dlrpush schema, SQLite: the fresh-install snapshot. Keep equal to all migrations applied in order (tests/contract/test_migrations.py checks).
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE endpoints (
    id                    INTEGER PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    url                   TEXT NOT NULL,
    protocol              TEXT NOT NULL,
    receiver              TEXT NOT NULL DEFAULT '',
    pswd                  TEXT NOT NULL DEFAULT '',
    batch_max             INTEGER NOT NULL,
    retry_schedule        TEXT NOT NULL,
    timeout_s             REAL NOT NULL,
    max_in_flight         INTEGER NOT NULL,
    enabled               INTEGER NOT NULL,
    description_lang      TEXT NOT NULL,
    success_body_contains TEXT,
    created_ms            INTEGER NOT NULL,
    deleted_ms            INTEGER
);
CREATE INDEX endpoints_account ON endpoints(account_id) WHERE deleted_ms IS NULL;

-- Moved by every change to endpoints: the dispatcher re-reads them only when it moved.
CREATE TABLE endpoint_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO endpoint_changes (id, version) VALUES (1, 0);
CREATE TRIGGER endpoints_inserted AFTER INSERT ON endpoints BEGIN UPDATE endpoint_changes SET version = version + 1; END;
CREATE TRIGGER endpoints_updated AFTER UPDATE ON endpoints BEGIN UPDATE endpoint_changes SET version = version + 1; END;
CREATE TRIGGER endpoints_deleted AFTER DELETE ON endpoints BEGIN UPDATE endpoint_changes SET version = version + 1; END;

CREATE TABLE messages (
    msgid           TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    phone           TEXT NOT NULL,
    segments        INTEGER NOT NULL,
    uid             TEXT,
    batch_seq       TEXT NOT NULL,
    request_time_ms INTEGER,
    unit_price      TEXT,
    currency        TEXT NOT NULL,
    access_number   TEXT NOT NULL,
    country_number  TEXT NOT NULL,
    region_code     TEXT NOT NULL,
    mno_name        TEXT NOT NULL,
    mcc             TEXT NOT NULL,
    mnc             TEXT NOT NULL,
    created_ms      INTEGER NOT NULL
) WITHOUT ROWID;

-- The closing parenthesis of reports stays on its last column's line: that is how
-- SQLite rewrites a table when a migration drops a column (0003), and the schemas must match.
CREATE TABLE reports (
    id             INTEGER PRIMARY KEY,
    msgid          TEXT NOT NULL,
    account_id     TEXT,
    status         TEXT NOT NULL,
    error_code     TEXT,
    description    TEXT,
    receipt        TEXT,
    report_time_ms INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL,
    hold_until_ms  INTEGER,
    state          TEXT NOT NULL);
CREATE INDEX reports_msgid ON reports(msgid);
CREATE INDEX reports_waiting ON reports(msgid) WHERE state IN ('held', 'unmatched');
CREATE INDEX reports_held_until ON reports(hold_until_ms) WHERE state = 'held';
CREATE INDEX reports_account ON reports(account_id, id);
CREATE INDEX reports_open ON reports(state, id) WHERE state <> 'delivered';
CREATE INDEX reports_received ON reports(received_ms);

-- push_ids: a JSON array of pushes.id, oldest first; attempts: every attempt ever made,
-- replays included (tries restarts at each replay).
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    report_id       INTEGER NOT NULL,
    endpoint_id     INTEGER NOT NULL,
    state           TEXT NOT NULL,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    updated_ms      INTEGER NOT NULL,
    push_ids        TEXT NOT NULL DEFAULT '[]',
    attempts        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (report_id, endpoint_id)
);
CREATE INDEX deliveries_due ON deliveries(endpoint_id, next_attempt_ms) WHERE state = 'pending';
CREATE INDEX deliveries_failed ON deliveries(report_id) WHERE state = 'failed';

-- One row per HTTP request; deliveries.push_ids says which deliveries it carried.
CREATE TABLE pushes (
    id          INTEGER PRIMARY KEY,
    endpoint_id INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    latency_ms  REAL NOT NULL,
    http_status INTEGER,
    outcome     TEXT NOT NULL,
    snippet     TEXT NOT NULL,
    items       INTEGER NOT NULL
);

-- Per-account API keys (only a hash of each key is stored).
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
CREATE INDEX api_keys_account ON api_keys(account_id);
