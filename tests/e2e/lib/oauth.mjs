// Plain OAuth helpers (no SDK): PKCE, dynamic registration, authorization URLs, token requests,
// and JWT encoding for forged access tokens.
import crypto from 'node:crypto';
import { request } from './net.mjs';

export const b64url = (data) => Buffer.from(data).toString('base64url');

export function pkce() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

export const randomState = () => b64url(crypto.randomBytes(16));

/** RFC 7591 registration of a public client; returns the registration response body. */
export async function registerClient(gw, { redirectUris, name = 'mcpgate e2e raw client' }) {
  const res = await request(`${gw.origin}/.mcpgate/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`dynamic registration failed: ${res.status} ${res.text}`);
  }
  if (!res.json?.client_id) throw new Error(`registration response has no client_id: ${res.text}`);
  return res.json;
}

export function authorizeUrl(gw, { clientId, redirectUri, challenge, state, resource, method = 'S256' }) {
  const url = new URL(`${gw.origin}/.mcpgate/oauth/authorize`);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', clientId);
  url.searchParams.set('redirect_uri', redirectUri);
  url.searchParams.set('code_challenge', challenge);
  url.searchParams.set('code_challenge_method', method);
  url.searchParams.set('state', state);
  if (resource) url.searchParams.set('resource', resource);
  return url;
}

/** POST to the token endpoint (form encoded); returns {status, json, text, headers}. */
export function tokenRequest(gw, params) {
  return request(`${gw.origin}/.mcpgate/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(params).toString(),
  });
}

export function decodeJwt(token) {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
  };
}

const encodePart = (obj) => b64url(JSON.stringify(obj));

/** A JWT signed with an Ed25519 KeyObject (alg EdDSA unless the header says otherwise). */
export function signEdDSA(header, payload, privateKey) {
  const input = `${encodePart({ alg: 'EdDSA', ...header })}.${encodePart(payload)}`;
  return `${input}.${b64url(crypto.sign(null, Buffer.from(input), privateKey))}`;
}

/** A JWT with alg HS256, MACed with `secret` (Buffer or string). */
export function signHS256(header, payload, secret) {
  const input = `${encodePart({ ...header, alg: 'HS256' })}.${encodePart(payload)}`;
  return `${input}.${b64url(crypto.createHmac('sha256', secret).update(input).digest())}`;
}

/** An unsecured JWT (alg none, empty signature). */
export function unsignedJwt(header, payload, alg = 'none') {
  return `${encodePart({ ...header, alg })}.${encodePart(payload)}.`;
}

/** Claims of a TE as architecture.md specifies them, valid now for `lifetime` seconds. */
export function accessTokenClaims(gw, { aud, iss = gw.issuer, exp, iat, ...rest } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss,
    sub: 'alice',
    aud,
    iat: iat ?? now,
    exp: exp ?? now + 300,
    jti: b64url(crypto.randomBytes(12)),
    sid: b64url(crypto.randomBytes(12)),
    client_id: 'e2e-forged-client',
    email: 'alice@example.com',
    groups: ['engineering'],
    ...rest,
  };
}

/** A JSON-RPC initialize POST as an MCP client sends it, with an optional bearer token. */
export function mcpInitialize(url, token, extraHeaders = {}) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...extraHeaders,
  };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return request(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'mcpgate-e2e-raw', version: '0' } },
    }),
  });
}
