-- Service accounts: non-human callers of server routes. Either a long-lived token printed once by
-- `service-account create`, or client credentials for the client_credentials grant (only the
-- secret's SHA-256 is stored). `groups` and `routes` are JSON arrays of strings; `routes` holds
-- the routes' resource URLs.

CREATE TABLE service_accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    groups TEXT NOT NULL,
    routes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    client_id TEXT UNIQUE,
    client_secret_hash TEXT
);
