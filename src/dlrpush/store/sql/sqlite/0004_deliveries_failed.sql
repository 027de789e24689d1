-- A replay of failed deliveries (what `dlrpush replay` does by default) read every
-- delivery to find the failed ones; they now have an index of their own, which costs a
-- write only when a delivery fails. The report's state stays in reports_state: without
-- it a settle's state update cost about a third less, but counting reports by state
-- (GET /v1/stats) took 5.5 times as long and listing the pending ones up to 30 times,
-- on the one thread every call shares (docs/benchmarks.md).
CREATE INDEX deliveries_failed ON deliveries(report_id) WHERE state = 'failed';
