-- Upstream disconnects: when a user's upstream token for a server route was last deleted
-- (disconnect, a refresh the provider refused, the MCP server rejecting it). Listed in
-- /internal/v1/revocations for an hour, so the filter stops reusing an upstream token it cached
-- before; the filter caches none longer than that. One row per (user, route): the latest.

CREATE TABLE upstream_disconnects (
    username TEXT NOT NULL,
    -- The server route's resource URL.
    route TEXT NOT NULL,
    -- Unix seconds, taken after the token was deleted.
    disconnected_at BIGINT NOT NULL,
    PRIMARY KEY (username, route)
);
CREATE INDEX upstream_disconnects_at ON upstream_disconnects (disconnected_at);
