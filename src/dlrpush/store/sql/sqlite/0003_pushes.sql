-- The attempt log gets one row per HTTP request instead of one per report it carried
-- (a batch of 100 reports is one row, not 100), and each delivery lists the requests
-- that carried it. A report's attempt count becomes the sum over its deliveries, so
-- recording a retry no longer rewrites the report.
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
ALTER TABLE deliveries ADD COLUMN push_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
INSERT INTO pushes (id, endpoint_id, started_ms, latency_ms, http_status, outcome, snippet, items)
SELECT id, endpoint_id, started_ms, latency_ms, http_status, outcome, snippet, 1 FROM attempts;
CREATE INDEX attempts_delivery ON attempts(delivery_id, id);
UPDATE deliveries SET
    push_ids = (SELECT json_group_array(a.id)
                FROM (SELECT id FROM attempts WHERE delivery_id = deliveries.id ORDER BY id) a),
    attempts = (SELECT COUNT(*) FROM attempts WHERE delivery_id = deliveries.id);
DROP TABLE attempts;
ALTER TABLE reports DROP COLUMN attempts;
