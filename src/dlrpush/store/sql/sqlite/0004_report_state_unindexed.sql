-- A settle changes each report's state once (pending to delivered or failed). With the
-- state in reports_state, that update also moved the report's entry in that index: a
-- third of the update's cost (docs/benchmarks.md). No full index on reports mentions
-- the state now, as on PostgreSQL:
-- - the matcher finds waiting reports by msgid (reports_waiting, only held and
--   unmatched ones, so a pending report's update never touches it),
-- - a listing by state goes through deliveries for failed reports (deliveries_failed,
--   which a replay of failed deliveries uses too), through the reports that have no
--   account yet for held and unmatched ones (reports_account, account_id IS NULL), and
--   in id order for the rest.
DROP INDEX reports_state;
CREATE INDEX deliveries_failed ON deliveries(report_id) WHERE state = 'failed';
