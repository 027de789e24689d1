-- The settle's statements are planned once per session, not at every call. The server
-- plans a function's statements afresh on each call while a plan made for the call's
-- own arrays looks cheaper than one made for any arrays, which for the few outcomes of
-- a quiet customer is always: each settle of one to four outcomes spent 400-500 µs of
-- server CPU planning, about twice what carrying it out costs (measured: 750-820 µs of
-- server CPU per call of one to four outcomes before, 320-440 after; no change from 16
-- outcomes a call up, where the generic plan was already chosen). A plan made once is
-- kept for the session whoever called first, so the state recompute, which endpoint
-- deletion and replay call too, reaches rows by key under its own settings, as the
-- settle does, rather than under its first caller's.
ALTER FUNCTION dlrpush_refresh_reports(BIGINT[])
    SET enable_seqscan = off SET enable_bitmapscan = off
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION dlrpush_settle(
    BIGINT[], BIGINT[], DOUBLE PRECISION[], INTEGER[], TEXT[], TEXT[], INTEGER[], BIGINT[],
    BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[], BIGINT, BIGINT[]
) SET plan_cache_mode = force_generic_plan;
