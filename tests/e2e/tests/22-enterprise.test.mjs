// Enterprise-managed authorization (README "Enterprise identity providers"): a local enterprise IdP
// stand-in (an RSA key; its JWKS served on 127.0.0.1) signs Identity Assertion JWT Authorization
// Grants (ID-JAG, typ oauth-id-jag+jwt); a private_key_jwt client (dynamically registered with its
// EC public key) redeems them at the token endpoint with the JWT-bearer grant for a TE, without a
// browser, and calls a tool through Envoy with the official SDK client. Refusals: wrong aud, wrong
// typ, unknown issuer, another client's grant, a replayed jti, an expired grant, a resource that is
// no route, a user the route's policy refuses, a bad client assertion. The same client also
// completes the ordinary authorization-code flow authenticated by private_key_jwt. A client
// pre-registered in the gateway file (its keys inline, only the JWT-bearer grant) does the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startGateway, USER } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { freePorts, startHttpServer, stopHttpServer, request, describe } from '../lib/net.mjs';
import { pkce, randomState, authorizeUrl, tokenRequest, decodeJwt } from '../lib/oauth.mjs';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ID_JAG_TYP = 'oauth-id-jag+jwt';
const POLICY = { allow: { and: [{ domain: { is: 'example.com' } }] } };

let gw;
let idp; // { server, issuer, privateKey, kid }
let rogue; // a key and issuer the gateway does not trust
let client; // { clientId, privateKey, kid }
let other; // a second private_key_jwt client
let preRegistered; // a private_key_jwt client from the gateway file's authorization_server.clients
let callback;
let browser;
const seen = new Map(); // label -> secret, for the log scan

const jti = () => crypto.randomBytes(12).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
const tokenEndpoint = () => `${gw.issuer}/.mcpgate/oauth/token`;

async function keyPair(alg) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${jti()}`;
  return { privateKey, kid, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** An ID-JAG as the enterprise IdP issues it; `claims`/`header` override or remove (undefined). */
async function idJag({ claims = {}, header = {}, key = idp } = {}) {
  const t = now();
  const body = {
    iss: key.issuer,
    sub: 'u-1',
    aud: gw.issuer,
    client_id: client.clientId,
    resource: gw.route('/a').url,
    iat: t,
    exp: t + 300,
    jti: jti(),
    email: 'ann@example.com',
    name: 'Ann Enterprise',
    groups: ['engineering'],
    ...claims,
  };
  for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k];
  const token = await new SignJWT(body)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: ID_JAG_TYP, ...header })
    .sign(key.privateKey);
  seen.set(`id-jag ${body.jti}`, token);
  return token;
}

/** A private_key_jwt client assertion (RFC 7523 §2.2) for `c`. */
async function clientAssertion(c = client, { claims = {} } = {}) {
  const t = now();
  const body = { iss: c.clientId, sub: c.clientId, aud: tokenEndpoint(), iat: t, exp: t + 60, jti: jti(), ...claims };
  const token = await new SignJWT(body).setProtectedHeader({ alg: 'ES256', kid: c.kid }).sign(c.privateKey);
  seen.set(`client assertion ${body.jti}`, token);
  return token;
}

async function jwtBearer(assertion, { c = client, extra = {}, auth } = {}) {
  return tokenRequest(gw, {
    grant_type: JWT_BEARER,
    assertion,
    client_id: c.clientId,
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: auth ?? (await clientAssertion(c)),
    ...extra,
  });
}

function expectError(res, status, error, what, descriptionPart) {
  assert.equal(res.status, status, `${what}: expected ${status} ${error}, got ${describe(res)}`);
  assert.equal(res.json?.error, error, `${what}: error code, got ${res.text}`);
  assert.ok(!res.json?.access_token, `${what}: no access token`);
  if (descriptionPart) {
    assert.ok(res.json?.error_description?.includes(descriptionPart), `${what}: error_description names ${descriptionPart}: ${res.text}`);
  }
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}/.test(res.text), `${what}: the answer never echoes a JWT`);
}

async function registerPrivateKeyJwtClient(name) {
  const key = await keyPair('ES256');
  const res = await request(`${gw.origin}/.mcpgate/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [callback.url],
      grant_types: ['authorization_code', 'refresh_token', JWT_BEARER],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [key.jwk] },
    }),
  });
  assert.equal(res.status, 201, `registration: ${describe(res)}`);
  assert.equal(res.json.token_endpoint_auth_method, 'private_key_jwt');
  assert.ok(!res.json.client_secret, 'a private_key_jwt client gets no secret');
  return { clientId: res.json.client_id, privateKey: key.privateKey, kid: key.kid };
}

before(async () => {
  // The enterprise IdP stand-in: its JWKS on 127.0.0.1 (a jwks_uri the token service fetches).
  const [idpPort] = await freePorts(1);
  const idpKey = await keyPair('RS256');
  const jwksRequests = [];
  const { server } = await startHttpServer(idpPort, async (req, res) => {
    jwksRequests.push(req.url);
    if (req.url !== '/jwks') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [idpKey.jwk] }));
  }, (e, res) => res.writeHead(500).end(String(e)));
  idp = { server, issuer: `http://127.0.0.1:${idpPort}`, privateKey: idpKey.privateKey, kid: idpKey.kid, jwksRequests };
  const rogueKey = await keyPair('RS256');
  rogue = { issuer: 'http://127.0.0.1:1/rogue', privateKey: rogueKey.privateKey, kid: rogueKey.kid };
  const agentKey = await keyPair('ES256');
  preRegistered = { clientId: 'corp-agent', privateKey: agentKey.privateKey, kid: agentKey.kid };

  gw = await startGateway('22-enterprise', {
    accessTokenLifetime: '600s',
    clients: [{
      client_id: preRegistered.clientId,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [agentKey.jwk] },
      grant_types: [JWT_BEARER],
    }],
    routes: [
      { path: '/a', name: 'Enterprise route', upstream: 'everything', policy: POLICY },
      { path: '/b', name: 'Second route', upstream: 'everything' },
    ],
    identity: {
      enterprise: [{
        id: 'corp',
        issuer: idp.issuer,
        jwks_uri: `${idp.issuer}/jwks`,
        allowed_algorithms: ['RS256'],
      }],
    },
  });
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
  client = await registerPrivateKeyJwtClient('mcpgate e2e enterprise client');
  other = await registerPrivateKeyJwtClient('mcpgate e2e other enterprise client');
}, { timeout: 900_000 });

after(async () => {
  await browser?.close();
  await callback?.close();
  await gw?.stop();
  if (idp?.server) await stopHttpServer(idp.server);
});

test('metadata advertises private_key_jwt and the jwt-bearer grant', async () => {
  const res = await request(`${gw.origin}/.well-known/oauth-authorization-server`);
  assert.equal(res.status, 200, describe(res));
  assert.ok(res.json.token_endpoint_auth_methods_supported.includes('private_key_jwt'), res.text);
  assert.ok(res.json.grant_types_supported.includes(JWT_BEARER), res.text);
  assert.ok(res.json.token_endpoint_auth_signing_alg_values_supported.includes('ES256'), res.text);
});

test('an ID-JAG from the enterprise IdP is redeemed for a TE that calls a tool through Envoy', async () => {
  const res = await jwtBearer(await idJag());
  assert.equal(res.status, 200, `jwt-bearer grant: ${describe(res)}`);
  assert.equal(res.json.token_type, 'Bearer');
  assert.ok(!res.json.refresh_token, 'no refresh token: the client asks the IdP for a new grant');
  seen.set('access token', res.json.access_token);
  const { header, payload } = decodeJwt(res.json.access_token);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(payload.iss, gw.issuer);
  assert.equal(payload.sub, 'corp:u-1', 'the subject is qualified by the provider id, like the OIDC sign-in');
  assert.equal(payload.aud, gw.route('/a').url);
  assert.equal(payload.client_id, client.clientId);
  assert.equal(payload.email, 'ann@example.com');
  assert.deepEqual(payload.groups, ['engineering']);
  assert.equal(payload.name, 'Ann Enterprise');
  assert.ok(idp.jwksRequests.includes('/jwks'), 'the token service fetched the IdP keys');

  const sdk = new Client({ name: 'mcpgate-e2e-enterprise', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.route('/a').url), {
    requestInit: { headers: { Authorization: `Bearer ${res.json.access_token}` } },
  });
  await sdk.connect(transport);
  try {
    const tools = await sdk.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'echo'), 'the tools list reaches the client');
    const echoed = await sdk.callTool({ name: 'echo', arguments: { message: 'enterprise hello' } });
    assert.ok(JSON.stringify(echoed.content).includes('enterprise hello'), JSON.stringify(echoed));
  } finally {
    await sdk.close();
  }
  // The TE's audience is the one route: the second route refuses it.
  const elsewhere = await request(gw.route('/b').url, {
    method: 'POST',
    headers: { authorization: `Bearer ${res.json.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '0' } } }),
  });
  assert.equal(elsewhere.status, 401, `another route: ${describe(elsewhere)}`);

  // The request's resource picks a route the grant names.
  const both = await jwtBearer(await idJag({ claims: { resource: [gw.route('/a').url, gw.route('/b').url] } }), {
    extra: { resource: gw.route('/b').url },
  });
  assert.equal(both.status, 200, describe(both));
  assert.equal(decodeJwt(both.json.access_token).payload.aud, gw.route('/b').url);
});

test('a client pre-registered in the gateway file authenticates with private_key_jwt', async () => {
  const c = preRegistered;
  const res = await jwtBearer(await idJag({ claims: { client_id: c.clientId } }), { c });
  assert.equal(res.status, 200, `jwt-bearer grant for the pre-registered client: ${describe(res)}`);
  seen.set('pre-registered access token', res.json.access_token);
  assert.equal(decodeJwt(res.json.access_token).payload.client_id, c.clientId);
  // Its key, not another client's, signs its assertions; and it has no secret to fall back on.
  expectError(await jwtBearer(await idJag({ claims: { client_id: c.clientId } }), { c, auth: await clientAssertion({ ...client, clientId: c.clientId }) }),
    401, 'invalid_client', 'another key for the pre-registered client');
  const secret = await tokenRequest(gw, { grant_type: JWT_BEARER, assertion: await idJag({ claims: { client_id: c.clientId } }), client_id: c.clientId, client_secret: 'x'.repeat(32) });
  expectError(secret, 401, 'invalid_client', 'a secret for the pre-registered client', 'private_key_jwt');
});

test('ID-JAG refusals name what failed', async () => {
  expectError(await jwtBearer(await idJag({ claims: { aud: 'https://elsewhere.example' } })), 400, 'invalid_grant', 'wrong aud', 'aud');
  expectError(await jwtBearer(await idJag({ header: { typ: 'JWT' } })), 400, 'invalid_grant', 'wrong typ', 'typ must be oauth-id-jag+jwt');
  expectError(await jwtBearer(await idJag({ key: rogue })), 400, 'invalid_grant', 'unknown issuer', 'not a trusted enterprise identity provider');
  expectError(await jwtBearer(await idJag({ claims: { iss: idp.issuer }, key: { ...rogue, issuer: idp.issuer } })), 400, 'invalid_grant', 'a key the IdP does not publish', 'kid');
  expectError(await jwtBearer(await idJag({ claims: { client_id: other.clientId } })), 400, 'invalid_grant', 'another client', 'another client');
  // The grant names this client, but another client redeems it.
  expectError(await jwtBearer(await idJag(), { c: other }), 400, 'invalid_grant', 'redeemed by another client', 'another client');
  const t = now();
  expectError(await jwtBearer(await idJag({ claims: { iat: t - 600, exp: t - 300 } })), 400, 'invalid_grant', 'expired', 'expired');
  expectError(await jwtBearer(await idJag({ claims: { resource: `${gw.origin}/nowhere` } })), 400, 'invalid_target', 'a resource that is no route');
  expectError(await jwtBearer(await idJag({ claims: { email: 'mallory@other.example', sub: 'u-9' } })), 400, 'invalid_grant', 'a user the policy refuses', 'policy');

  const grant = await idJag();
  const first = await jwtBearer(grant);
  assert.equal(first.status, 200, describe(first));
  expectError(await jwtBearer(grant), 400, 'invalid_grant', 'replayed jti', 'already used');
});

test('private_key_jwt client assertions are checked in full', async () => {
  const grant = async () => idJag();
  expectError(await jwtBearer(await grant(), { auth: await clientAssertion(client, { claims: { aud: 'https://elsewhere.example' } }) }),
    401, 'invalid_client', 'client assertion aud', 'aud');
  expectError(await jwtBearer(await grant(), { auth: await clientAssertion(other) }), 401, 'invalid_client', 'another client\'s assertion', 'not published');
  const t = now();
  expectError(await jwtBearer(await grant(), { auth: await clientAssertion(client, { claims: { iat: t - 600, exp: t - 300 } }) }),
    401, 'invalid_client', 'expired client assertion', 'expired');
  const forged = await new SignJWT({ iss: client.clientId, sub: client.clientId, aud: tokenEndpoint(), iat: t, exp: t + 60, jti: jti() })
    .setProtectedHeader({ alg: 'ES256', kid: client.kid })
    .sign((await keyPair('ES256')).privateKey);
  expectError(await jwtBearer(await grant(), { auth: forged }), 401, 'invalid_client', 'forged client assertion', 'signature');
  const once = await clientAssertion();
  assert.equal((await jwtBearer(await grant(), { auth: once })).status, 200);
  expectError(await jwtBearer(await grant(), { auth: once }), 401, 'invalid_client', 'replayed client assertion', 'already used');
  // A client secret is no substitute for the registered method.
  const secret = await tokenRequest(gw, { grant_type: JWT_BEARER, assertion: await grant(), client_id: client.clientId, client_secret: 'x'.repeat(32) });
  expectError(secret, 401, 'invalid_client', 'secret instead of private_key_jwt', 'private_key_jwt');
});

test('a private_key_jwt client completes the authorization-code flow and refreshes', async () => {
  const { verifier, challenge } = pkce();
  const state = randomState();
  const url = authorizeUrl(gw, { clientId: client.clientId, redirectUri: callback.url, challenge, state, resource: gw.route('/a').url });
  const result = await browser.authorize(url, { ...USER, callbackUrl: callback.url });
  assert.ok(result.callback, `authorization must end on the callback; last page: ${result.bodyText?.slice(0, 400)}`);
  const code = result.callback.searchParams.get('code');
  const noAuth = await tokenRequest(gw, { grant_type: 'authorization_code', code, redirect_uri: callback.url, client_id: client.clientId, code_verifier: verifier });
  expectError(noAuth, 401, 'invalid_client', 'a code without client authentication');
  const res = await tokenRequest(gw, {
    grant_type: 'authorization_code', code, redirect_uri: callback.url, code_verifier: verifier,
    client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await clientAssertion(),
  });
  assert.equal(res.status, 200, `code exchange: ${describe(res)}`);
  assert.equal(decodeJwt(res.json.access_token).payload.sub, USER.username);
  assert.ok(res.json.refresh_token, 'a refresh token');
  seen.set('code-flow refresh token', res.json.refresh_token);
  const refreshed = await tokenRequest(gw, {
    grant_type: 'refresh_token', refresh_token: res.json.refresh_token, client_id: client.clientId,
    client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await clientAssertion(),
  });
  assert.equal(refreshed.status, 200, `refresh: ${describe(refreshed)}`);
});

test('a service account authenticates with private_key_jwt for client_credentials', async () => {
  const key = await keyPair('ES256');
  const jwksFile = path.join(gw.dir, 'service-account-jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [key.jwk] }));
  const created = await gw.cli(['service-account', 'create', '--name', 'enterprise-robot', '--email', 'robot@example.com',
    '--route', gw.route('/a').url, '--jwks', jwksFile]);
  assert.equal(created.code, 0, `service-account create --jwks: ${created.stderr.slice(0, 1000)}`);
  const clientId = /client_id:\s*(\S+)/.exec(created.stdout)?.[1];
  assert.ok(clientId, `a client_id is printed: ${created.stdout}`);
  assert.ok(!/client_secret/.test(created.stdout), 'no secret for a private_key_jwt account');
  const account = { clientId, privateKey: key.privateKey, kid: key.kid };
  const res = await tokenRequest(gw, {
    grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await clientAssertion(account),
  });
  assert.equal(res.status, 200, `client_credentials with private_key_jwt: ${describe(res)}`);
  assert.equal(decodeJwt(res.json.access_token).payload.email, 'robot@example.com');
  const forged = await tokenRequest(gw, {
    grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await clientAssertion({ ...account, kid: client.kid, privateKey: client.privateKey }),
  });
  expectError(forged, 401, 'invalid_client', 'a service account assertion signed by another key', 'not published');
  const secret = await tokenRequest(gw, { grant_type: 'client_credentials', client_id: clientId, client_secret: 'y'.repeat(32) });
  expectError(secret, 401, 'invalid_client', 'a secret for a private_key_jwt account', 'private_key_jwt');
});

test('grants are audited with user, client and idp; no assertion reaches a log', async () => {
  const log = fs.readFileSync(path.join(gw.paths.logs, 'token-service.log'), 'utf8');
  const lines = log.split('\n').filter((l) => l.includes('jwt_bearer_grant'));
  assert.ok(lines.some((l) => l.includes('corp:u-1') && l.includes(client.clientId) && l.includes('corp')), `audit line: ${lines[0]}`);
  assert.ok(log.split('\n').some((l) => l.includes('jwt_bearer_refused')), 'refusals are audited');
  for (const [label, secret] of seen) {
    assert.ok(!log.includes(secret), `${label} must not appear in the token service log`);
  }
});
