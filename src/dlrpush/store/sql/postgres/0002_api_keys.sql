-- Per-account API keys: a customer reads (pulls) only its own reports. Only a hash of
-- each key is stored; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE INDEX api_keys_account ON api_keys(account_id);
