-- API tokens for downstream callers. Only a SHA-256 digest of each token is
-- stored: the token itself is shown once, at creation, and cannot be
-- recovered from the catalog.
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,   -- lower-case hex SHA-256 of the whole token
    admin         INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,                   -- NULL: never expires
    last_used     TEXT                    -- recorded with one-minute granularity
);
