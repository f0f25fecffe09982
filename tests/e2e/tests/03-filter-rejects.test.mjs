// Access tokens the filter must refuse, through Envoy. Each refusal: 401, a WWW-Authenticate naming
// the route's resource metadata (with error="invalid_token" when a token was sent), and nothing
// reaches the MCP server (Envoy's cluster.mcp_route_<i>.upstream_rq_total does not move).
// Tokens are forged with node:crypto from the token service's own signing key file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startGateway } from '../lib/gateway.mjs';
import { request, describe } from '../lib/net.mjs';
import { accessTokenClaims, signEdDSA, signHS256, unsignedJwt, mcpInitialize, b64url } from '../lib/oauth.mjs';

let gw;
let key;
let kid;
before(async () => {
  gw = await startGateway('03-filter-rejects');
  const jwks = await gw.jwks();
  key = gw.signingKey();
  const x = crypto.createPublicKey(key).export({ format: 'jwk' }).x;
  kid = jwks.keys.find((k) => k.x === x)?.kid;
  assert.ok(kid, `the JWKS must publish the key in ${gw.paths.signingKey}`);
}, { timeout: 900_000 });
after(async () => {
  await gw?.stop();
});

const header = (extra = {}) => ({ alg: 'EdDSA', typ: 'at+jwt', kid, ...extra });
const validToken = (routePath, claims = {}) =>
  signEdDSA(header(), accessTokenClaims(gw, { aud: gw.route(routePath).url, ...claims }), key);

async function upstreamCounts() {
  return { a: await gw.upstreamRequests('/a'), b: await gw.upstreamRequests('/b') };
}

/** Sends `token` (undefined = no Authorization) to a route and checks the refusal. */
async function expectRefused(routePath, token, what, { method = 'POST' } = {}) {
  const before = await upstreamCounts();
  const url = gw.route(routePath).url;
  const res = method === 'POST'
    ? await mcpInitialize(url, token)
    : await request(url, {
      method,
      headers: { accept: 'text/event-stream', ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) },
    });
  assert.equal(res.status, 401, `${what}: ${method} ${routePath} must get 401, got ${describe(res)}`);
  const www = res.headers.get('www-authenticate') ?? '';
  assert.match(www, /^Bearer /, `${what}: WWW-Authenticate is a Bearer challenge: ${www}`);
  assert.ok(www.includes(`resource_metadata="${gw.route(routePath).resourceMetadataUrl}"`),
    `${what}: WWW-Authenticate must name ${gw.route(routePath).resourceMetadataUrl}, got: ${www}`);
  if (token === undefined) {
    assert.ok(!/error=/.test(www), `${what}: no error attribute when no token was sent (RFC 6750 §3.1), got: ${www}`);
  } else {
    assert.ok(www.includes('error="invalid_token"'), `${what}: error="invalid_token" when a token was sent, got: ${www}`);
  }
  assert.equal(res.json?.error, 'invalid_token', `${what}: JSON error body, got ${res.text}`);
  assert.deepEqual(await upstreamCounts(), before, `${what}: the MCP server must have received nothing`);
}

/** Control: a correctly forged token is accepted, so every refusal below is about the one flaw. */
async function expectAccepted(routePath, token, what) {
  const before = await gw.upstreamRequests(routePath);
  const res = await mcpInitialize(gw.route(routePath).url, token);
  assert.equal(res.status, 200, `${what}: expected the MCP server's answer, got ${describe(res)}`);
  assert.match(res.text, /"protocolVersion"/, `${what}: initialize result from the MCP server`);
  assert.equal(await gw.upstreamRequests(routePath), before + 1, `${what}: exactly one request reached the MCP server`);
}

test('control: a well-formed token signed with the gateway key is accepted on its route', async () => {
  await expectAccepted('/a', validToken('/a'), 'forged valid token for /a');
  await expectAccepted('/b', validToken('/b'), 'forged valid token for /b');
});

test('no token: 401 on every method and route, without error attribute', async () => {
  for (const routePath of ['/a', '/b']) {
    for (const method of ['POST', 'GET', 'DELETE']) {
      await expectRefused(routePath, undefined, `no token (${method} ${routePath})`, { method });
    }
  }
});

test('expired token', async () => {
  const now = Math.floor(Date.now() / 1000);
  await expectRefused('/a', validToken('/a', { iat: now - 3900, exp: now - 3600 }), 'token expired an hour ago');
  await expectRefused('/a', validToken('/a', { iat: now - 120, exp: now - 60 }), 'token expired a minute ago (beyond 1 s leeway)');
});

test('tampered signature or payload', async () => {
  const token = validToken('/a');
  const [h, p, s] = token.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[0] ^= 0x01;
  await expectRefused('/a', `${h}.${p}.${b64url(sig)}`, 'one bit of the signature flipped');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  await expectRefused('/a', `${h}.${b64url(JSON.stringify({ ...claims, email: 'mallory@example.com' }))}.${s}`,
    'payload changed after signing');
  await expectRefused('/a', `${h}.${p}`, 'signature part missing');
  await expectRefused('/a', 'not-a-jwt', 'garbage bearer value');
});

test('token from another issuer', async () => {
  await expectRefused('/a', validToken('/a', { iss: 'http://localhost:1' }), 'iss of another origin, signed with the gateway key');
  await expectRefused('/a', validToken('/a', { iss: `${gw.issuer}/` }), 'iss with a trailing slash');
  const { privateKey: otherKey } = crypto.generateKeyPairSync('ed25519');
  const claims = accessTokenClaims(gw, { aud: gw.route('/a').url });
  await expectRefused('/a', signEdDSA(header(), claims, otherKey), 'signed by another Ed25519 key under the gateway kid');
  await expectRefused('/a', signEdDSA(header({ kid: 'another-issuers-key' }), claims, otherKey),
    'signed by another key with an unknown kid');
});

test('alg other than EdDSA: HS256 keyed with the public key, and none', async () => {
  const publicKey = crypto.createPublicKey(key);
  const jwk = publicKey.export({ format: 'jwk' });
  const claims = accessTokenClaims(gw, { aud: gw.route('/a').url });
  const secrets = {
    'raw 32-byte public key': Buffer.from(jwk.x, 'base64url'),
    'SPKI PEM text': publicKey.export({ type: 'spki', format: 'pem' }),
    'SPKI DER': publicKey.export({ type: 'spki', format: 'der' }),
    'JWK x string': jwk.x,
  };
  for (const [name, secret] of Object.entries(secrets)) {
    await expectRefused('/a', signHS256(header(), claims, secret), `HS256 keyed with the ${name}`);
  }
  await expectRefused('/a', unsignedJwt(header(), claims, 'none'), 'alg none, empty signature');
  await expectRefused('/a', unsignedJwt(header(), claims, 'None'), 'alg None, empty signature');
  // A verifier that ignores the header's alg would accept this one: the signature is valid EdDSA.
  await expectRefused('/a', signEdDSA(header({ alg: 'none' }), claims, key), 'alg none over a valid Ed25519 signature');
  await expectRefused('/a', signEdDSA(header({ alg: 'ES256' }), claims, key), 'alg ES256 over a valid Ed25519 signature');
});

test('a valid token for route /a presented on route /b', async () => {
  const token = validToken('/a');
  // Accepted (and cached by the filter) on its own route first, so the cache cannot stand in for the audience check.
  await expectAccepted('/a', token, 'the /a token on /a');
  await expectRefused('/b', token, 'the /a token on /b');
  await expectRefused('/a', validToken('/a', { aud: gw.route('/b').url }), 'a /b token on /a');
  await expectRefused('/a', validToken('/a', { aud: `${gw.route('/a').url}/x` }), 'aud of a path below /a, on /a');
  await expectRefused('/a', validToken('/a', { aud: gw.issuer }), 'aud of the bare origin, on /a');
});
