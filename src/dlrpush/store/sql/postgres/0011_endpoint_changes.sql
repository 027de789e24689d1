-- A counter every change to endpoints moves, by whichever process makes it, so a
-- dispatcher's poll re-reads the endpoint list only when it changed: re-reading it
-- every second cost an idle service CPU in proportion to its endpoints
-- (docs/benchmarks.md). One row, bumped once per statement.
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
