-- JWT assertions already accepted (private_key_jwt client assertions, ID-JAG grants), so each
-- jti is used once. Keyed by who issued it (client:<client_id>, idp:<issuer>) and the jti;
-- kept until the assertion's exp, then purged.
CREATE TABLE used_assertions (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_assertions_expires ON used_assertions (expires_at);

-- Service accounts that authenticate with private_key_jwt: their public keys (a JWK Set, JSON).
ALTER TABLE service_accounts ADD COLUMN client_jwks TEXT;
