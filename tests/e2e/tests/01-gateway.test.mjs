// Envoy loads the built filter, and the discovery documents are reachable through Envoy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import crypto from 'node:crypto';
import { startGateway } from '../lib/gateway.mjs';
import { request, describe } from '../lib/net.mjs';
import { mcpInitialize } from '../lib/oauth.mjs';

let gw;
before(async () => {
  gw = await startGateway('01-gateway');
}, { timeout: 900_000 });
after(async () => {
  await gw?.stop();
});

test('Envoy loads the built .wasm: an MCP route without a token gets the filter\'s 401', async () => {
  const dump = await request(`http://127.0.0.1:${gw.ports.admin}/config_dump`);
  assert.equal(dump.status, 200, 'Envoy admin /config_dump');
  assert.ok(dump.text.includes(gw.paths.wasm),
    `Envoy's active configuration must reference the built module ${gw.paths.wasm}`);

  const upstreamBefore = await gw.upstreamRequests('/a');
  const res = await mcpInitialize(gw.route('/a').url);
  assert.equal(res.status, 401, `POST /a without a token: expected the filter's 401, got ${describe(res)}`);
  assert.equal(res.json?.error, 'invalid_token', `401 body must be the filter's JSON error, got ${res.text}`);
  assert.equal(typeof res.json?.error_description, 'string', 'the 401 body carries an error_description');
  assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${gw.route('/a').resourceMetadataUrl}"`,
    'WWW-Authenticate of a request without a token: resource_metadata of route /a, no error');
  assert.equal(res.headers.get('access-control-allow-origin'), '*', 'CORS: Access-Control-Allow-Origin');
  assert.match(res.headers.get('access-control-expose-headers') ?? '', /WWW-Authenticate/i,
    'CORS: WWW-Authenticate is exposed to browser clients');
  assert.equal(await gw.upstreamRequests('/a'), upstreamBefore, 'the MCP server must not have received the request');

  // The 401 is the filter's, not Envoy's: reserved paths on the same listener pass without a token.
  const health = await request(`${gw.origin}/.mcpgate/healthz`);
  assert.equal(health.status, 200, `/.mcpgate/healthz through Envoy must reach the token service, got ${describe(health)}`);
  const vms = await gw.stats('^wasm\\.');
  const active = Object.entries(vms).filter(([k, v]) => /\.active$/.test(k) && v > 0);
  assert.ok(active.length > 0, `Envoy reports an active Wasm VM (wasm.* stats: ${JSON.stringify(vms)})`);
});

test('the filter answers CORS preflights on an MCP route itself, without a token', async () => {
  const upstreamBefore = await gw.upstreamRequests('/b');
  const res = await request(gw.route('/b').url, {
    method: 'OPTIONS',
    headers: {
      origin: 'http://app.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type, mcp-protocol-version',
    },
  });
  assert.equal(res.status, 204, `OPTIONS /b: ${describe(res)}`);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  assert.match(res.headers.get('access-control-allow-headers') ?? '', /authorization/i, 'Authorization may be sent');
  assert.equal(await gw.upstreamRequests('/b'), upstreamBefore, 'a preflight is not forwarded to the MCP server');
});

test('protected-resource metadata is served through Envoy at the path-based URL of each route', async () => {
  for (const r of gw.routes) {
    const res = await request(r.resourceMetadataUrl);
    assert.equal(res.status, 200, `GET ${r.resourceMetadataUrl}: ${describe(res)}`);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, `${r.resourceMetadataUrl} content type`);
    assert.equal(res.json.resource, r.url, `resource of ${r.path} must be its canonical URL`);
    assert.ok(Array.isArray(res.json.authorization_servers) && res.json.authorization_servers.includes(gw.issuer),
      `authorization_servers of ${r.path} must list the issuer ${gw.issuer}, got ${JSON.stringify(res.json.authorization_servers)}`);
  }
  const root = await request(`${gw.origin}/.well-known/oauth-protected-resource`);
  assert.equal(root.status, 404,
    `the root protected-resource URL must be 404 when the host has several routes (architecture.md), got ${describe(root)}`);
});

test('authorization-server metadata has the exact issuer, S256 only, and the iss response parameter', async () => {
  const res = await request(`${gw.origin}/.well-known/oauth-authorization-server`);
  assert.equal(res.status, 200, describe(res));
  const m = res.json;
  assert.equal(m.issuer, gw.issuer, 'issuer must equal the configured issuer exactly');
  assert.deepEqual(m.code_challenge_methods_supported, ['S256'], 'code_challenge_methods_supported');
  assert.equal(m.authorization_response_iss_parameter_supported, true, 'authorization_response_iss_parameter_supported');
  assert.equal(m.authorization_endpoint, `${gw.issuer}/.mcpgate/oauth/authorize`, 'authorization_endpoint');
  assert.equal(m.token_endpoint, `${gw.issuer}/.mcpgate/oauth/token`, 'token_endpoint');
  assert.equal(m.registration_endpoint, `${gw.issuer}/.mcpgate/oauth/register`, 'registration_endpoint');
  assert.equal(m.jwks_uri, `${gw.issuer}/.well-known/jwks.json`, 'jwks_uri');
  assert.ok(m.response_types_supported?.includes('code'), 'response_types_supported includes code');
  for (const g of ['authorization_code', 'refresh_token']) {
    assert.ok(m.grant_types_supported?.includes(g), `grant_types_supported includes ${g}`);
  }
  assert.equal(m.client_id_metadata_document_supported, true, 'client_id_metadata_document_supported');

  const oidc = await request(`${gw.origin}/.well-known/openid-configuration`);
  assert.equal(oidc.status, 200, `OIDC discovery: ${describe(oidc)}`);
  assert.equal(oidc.json.issuer, gw.issuer, 'OIDC discovery issuer');
  assert.equal(oidc.json.token_endpoint, m.token_endpoint, 'OIDC discovery names the same token endpoint');
});

test('the JWKS publishes the Ed25519 public key of the signing key file', async () => {
  const jwks = await gw.jwks();
  assert.ok(Array.isArray(jwks.keys) && jwks.keys.length >= 1, `JWKS keys: ${JSON.stringify(jwks)}`);
  const expectedX = crypto.createPublicKey(gw.signingKey()).export({ format: 'jwk' }).x;
  const key = jwks.keys.find((k) => k.x === expectedX);
  assert.ok(key, `the JWKS must contain the public key of ${gw.paths.signingKey}`);
  assert.equal(key.kty, 'OKP');
  assert.equal(key.crv, 'Ed25519');
  assert.equal(key.alg, 'EdDSA');
  assert.equal(key.use, 'sig');
  assert.equal(typeof key.kid, 'string');
  assert.ok(!('d' in key), 'no private key material in the JWKS');
  assert.ok(fs.statSync(gw.paths.signingKey).isFile());
});
