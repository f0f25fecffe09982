-- mcpgate token service schema. Portable between SQLite and PostgreSQL: TEXT, BIGINT (unix
-- seconds), no AUTOINCREMENT/SERIAL. Secrets (client secrets, codes, refresh tokens, session and
-- pending-request ids) are stored only as SHA-256 hashes (base64url).

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT,
    token_endpoint_auth_method TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE pending_authorizations (
    id_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    state TEXT,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT,
    sid TEXT,
    csrf_hash TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX pending_authorizations_expires ON pending_authorizations (expires_at);

CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT NOT NULL,
    username TEXT NOT NULL,
    sid TEXT NOT NULL,
    claims TEXT NOT NULL,
    scope TEXT,
    family_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

CREATE TABLE sessions (
    secret_hash TEXT PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    claims TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    username TEXT NOT NULL,
    sid TEXT NOT NULL,
    claims TEXT NOT NULL,
    scope TEXT,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE revoked_families (
    family_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Access tokens issued per family, so revoking a family can revoke its live access tokens too.
CREATE TABLE issued_access_tokens (
    jti TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX issued_access_tokens_family ON issued_access_tokens (family_id);

CREATE TABLE revoked_access_tokens (
    jti TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE consents (
    username TEXT NOT NULL,
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    scope TEXT,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (username, client_id, resource)
);
