-- Upstream OAuth: each user's tokens from a route's provider, and the short-lived state of a
-- browser's trip through the provider. Tokens and PKCE verifiers are stored only encrypted
-- (XChaCha20-Poly1305, base64; the key is token_service.upstream_token_key_file).

CREATE TABLE upstream_tokens (
    username TEXT NOT NULL,
    -- The server route's resource URL.
    route TEXT NOT NULL,
    -- {"access_token", "refresh_token"?, "scope"?} encrypted; associated data binds user and route.
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    -- When the access token was obtained, and when it expires (NULL: the provider gave no expiry).
    issued_at BIGINT NOT NULL,
    expires_at BIGINT,
    -- 1 when a refresh token is stored.
    refreshable BIGINT NOT NULL,
    -- One refresh at a time across replicas: the holder's id and until when it holds the lease.
    lease_until BIGINT,
    lease_owner TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (username, route)
);

CREATE TABLE upstream_states (
    state_hash TEXT PRIMARY KEY,
    -- The browser session that started the trip; the callback must come from the same one.
    sid TEXT NOT NULL,
    username TEXT NOT NULL,
    route TEXT NOT NULL,
    verifier_ciphertext TEXT NOT NULL,
    verifier_nonce TEXT NOT NULL,
    -- Where to go afterwards: a validated redirect_url (connect), or the pending MCP client
    -- authorization (JSON) whose code is issued once the provider is connected.
    redirect_url TEXT,
    pending TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upstream_states_expires ON upstream_states (expires_at);
