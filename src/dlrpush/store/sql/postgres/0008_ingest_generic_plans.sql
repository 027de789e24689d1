-- Ingest's statements planned once per session, as the settle's are (0007). A platform
-- that posts each report as it comes calls the ingest function with arrays of one, for
-- which a plan made for the call's own arrays always looks cheaper than a generic one,
-- so the server planned every statement of both functions again at each call (about a
-- fifth of its CPU for such a call, in a profile). Rows are reached by key: a generic
-- plan made while `messages` or `endpoints` is small must not read them whole once they
-- are large.
ALTER FUNCTION dlrpush_fan_out(BIGINT[], TEXT[], BIGINT, TEXT)
    SET enable_seqscan = off SET enable_bitmapscan = off
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION dlrpush_add_reports(
    TEXT[], TEXT[], TEXT[], TEXT[], TEXT[], BIGINT[], BIGINT, BIGINT, TEXT
) SET enable_seqscan = off SET enable_bitmapscan = off
    SET plan_cache_mode = force_generic_plan;
