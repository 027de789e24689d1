-- A settle changes each report's state once (pending to delivered or failed). While the
-- state was in three of the reports' indexes, that update could not be HOT: it wrote a
-- new entry into all seven indexes, about half of what a settle cost the server. No
-- index on reports mentions the state now, and pages keep half their room for the new
-- row versions, so the update stays on its page and touches no index:
-- - the matcher finds waiting reports by msgid (reports_msgid),
-- - the hold sweep finds them by hold_until_ms, which is cleared once a report stops
--   being held,
-- - a listing by state goes through deliveries for failed reports, through the reports
--   that have no account yet for held and unmatched ones, and in id order for the rest.
DROP INDEX reports_waiting;
DROP INDEX reports_state;
DROP INDEX reports_held_until;
UPDATE reports SET hold_until_ms = NULL WHERE state <> 'held' AND hold_until_ms IS NOT NULL;
CREATE INDEX reports_held_until ON reports(hold_until_ms) WHERE hold_until_ms IS NOT NULL;
CREATE INDEX reports_unowned ON reports(id) WHERE account_id IS NULL;
CREATE INDEX deliveries_failed ON deliveries(report_id) WHERE state = 'failed';
ALTER TABLE reports SET (fillfactor = 50);
