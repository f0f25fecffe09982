-- Sign-in through OpenID Connect providers (identity.oidc).
--
-- oidc_sign_ins: a browser's trip through a provider, keyed by the hash of the `state` sent to
-- the provider. Bound to the browser by the hash of a random value also set as a short-lived
-- HttpOnly cookie. The nonce, PKCE verifier and the pending MCP authorization the sign-in
-- continues are stored encrypted (XChaCha20-Poly1305, token_service.upstream_token_key_file).
CREATE TABLE oidc_sign_ins (
    state_hash TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    provider TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_sign_ins_expires ON oidc_sign_ins (expires_at);

-- oidc_sessions: the provider side of an mcpgate session (sid) signed in through a provider.
-- The provider's tokens ({"refresh_token"?, "access_token", "id_token"}) are stored encrypted,
-- the associated data binding the sid. token_version grows with every refresh token stored, so
-- a replica whose refresh was refused can tell whether another replica rotated the token
-- meanwhile. One check at a time across replicas: a lease (owner, until) in the row.
CREATE TABLE oidc_sessions (
    sid TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    token_version BIGINT NOT NULL,
    has_refresh_token BIGINT NOT NULL,
    -- The ID token's exp: bounds a session without a refresh token.
    id_token_expires_at BIGINT NOT NULL,
    -- When the provider last confirmed the user (sign-in or a refresh grant there).
    checked_at BIGINT NOT NULL,
    lease_until BIGINT,
    lease_owner TEXT,
    -- Set when the session ended (the provider refused the user, or sign-out).
    ended_at BIGINT,
    end_reason TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_sessions_expires ON oidc_sessions (expires_at);
CREATE INDEX refresh_tokens_sid ON refresh_tokens (sid);
