// The test doubles of files 09-11, checked on their own (no gateway), so a failure there is known
// to be the gateway's and not the mocks':
//   - lib/github-provider.mjs behaves like GitHub's OAuth app flow and like RFC 6749 where asked
//     (codes, PKCE, redirect URIs, client authentication styles, rotation, error styles, /user);
//   - lib/upstream-mcp.mjs, an SDK McpServer, is a resource server of that provider: the unmodified
//     SDK client discovers it (RFC 9728 → RFC 8414), the user consents in Chromium, `whoami` works,
//     a dead provider token gets HTTP 401 invalid_token;
//   - lib/assertion.mjs accepts a correct assertion and refuses wrong audience, issuer, typ, alg,
//     expiry and unknown keys;
//   - lib/oidc-provider.mjs (oidc-provider, the certified OP library): discovery and JWKS, the code
//     flow with PKCE through its login form (over fetch), ID tokens that verify against the JWKS
//     and carry org.groups, userinfo, refresh with and without rotation, a disabled user, key
//     rotation, restart and down/up, RP-initiated logout, and every misbehave() mode refused by a
//     correct verification;
//   - lib/otlp-collector.mjs decodes OTLP/HTTP protobuf (plain and gzip) and OTLP/JSON exports and
//     answers as a collector does;
//   - lib/postgres.mjs starts a private PostgreSQL that answers, survives restart and an immediate
//     shutdown, and leaves nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import { SignJWT, generateKeyPair, exportJWK, createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ARTIFACTS_DIR } from '../lib/gateway.mjs';
import { startGitHubProvider } from '../lib/github-provider.mjs';
import { startUpstreamMcp } from '../lib/upstream-mcp.mjs';
import { AssertionVerifier } from '../lib/assertion.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider, recordingFetch } from '../lib/provider.mjs';
import { pkce, randomState } from '../lib/oauth.mjs';
import { request, portOpen } from '../lib/net.mjs';
import { startOidcProvider } from '../lib/oidc-provider.mjs';
import { startOtlpCollector, ExportTraceServiceRequest } from '../lib/otlp-collector.mjs';
import { startPostgres } from '../lib/postgres.mjs';

const DIR = path.join(ARTIFACTS_DIR, '12-test-doubles');
const EXPIRES_IN = 2;
let provider;
let mcp;
let callback;

before(async () => {
  fs.rmSync(DIR, { recursive: true, force: true });
  fs.mkdirSync(DIR, { recursive: true });
  provider = await startGitHubProvider({ expiresIn: EXPIRES_IN, logFile: path.join(DIR, 'logs', 'github-provider.log') });
  callback = await CallbackServer.start();
  mcp = await startUpstreamMcp({ providerUrl: provider.origin, discover: true, scopes: ['read:user'], logFile: path.join(DIR, 'logs', 'upstream-mcp.log') });
});
after(async () => {
  await mcp?.stop();
  await callback?.close();
  await provider?.stop();
});

/** Approves an authorization request over plain HTTP (no browser); returns the redirect URL. */
async function approve(params, { decision = '1' } = {}) {
  const url = new URL(provider.authUrl);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  const page = await request(url);
  if (page.status !== 200) return { page };
  const id = /name="consent_id" value="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(id, 'the consent page carries its request id');
  const answer = await request(provider.authUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ consent_id: id, authorize: decision }).toString(),
  });
  return { page, answer, location: answer.headers.get('location') && new URL(answer.headers.get('location')) };
}

function tokenCall(params, { basic, json = true } = {}) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (json) headers.accept = 'application/json';
  if (basic) headers.authorization = `Basic ${Buffer.from(`${basic.clientId}:${basic.clientSecret}`).toString('base64')}`;
  return request(provider.tokenUrl, { method: 'POST', headers, body: new URLSearchParams(params).toString() });
}

async function codeFor(client, { challenge } = {}) {
  const state = randomState();
  const r = await approve({
    client_id: client.clientId, redirect_uri: callback.url, scope: 'read:user', state,
    code_challenge: challenge, code_challenge_method: challenge ? 'S256' : undefined,
  });
  assert.equal(r.answer?.status, 302, `consent answers a redirect: ${r.page.status} ${r.page.text.slice(0, 200)}`);
  assert.equal(r.location.origin + r.location.pathname, callback.url, 'redirect to the registered URI');
  assert.equal(r.location.searchParams.get('state'), state, 'state comes back');
  return r.location.searchParams.get('code');
}

test('provider: authorize refuses unknown clients and unregistered redirect URIs without redirecting', async () => {
  const client = provider.addClient({ redirectUris: [callback.url] });
  const unknown = await request(`${provider.authUrl}?client_id=nope&redirect_uri=${encodeURIComponent(callback.url)}`);
  assert.equal(unknown.status, 404);
  for (const bad of [`${callback.url}/x`, 'https://evil.example/cb', callback.url.replace('127.0.0.1', 'localhost')]) {
    const r = await request(`${provider.authUrl}?client_id=${client.clientId}&redirect_uri=${encodeURIComponent(bad)}&state=s`);
    assert.equal(r.status, 400, `redirect_uri ${bad} refused`);
    assert.equal(r.headers.get('location'), null, 'no redirect');
  }
  const denied = await approve({ client_id: client.clientId, redirect_uri: callback.url, state: 'st' }, { decision: '0' });
  assert.equal(denied.location.searchParams.get('error'), 'access_denied', 'Cancel → access_denied');
  assert.equal(denied.location.searchParams.get('code'), null);
});

test('provider: code exchange (Basic and body styles), single use, PKCE, redirect_uri, form-encoded answer', async () => {
  const client = provider.addClient({ redirectUris: [callback.url] });
  const basic = { clientId: client.clientId, clientSecret: client.clientSecret };

  // Basic, JSON.
  const { verifier, challenge } = pkce();
  const code = await codeFor(client, { challenge });
  const wrongVerifier = await tokenCall({ grant_type: 'authorization_code', code, redirect_uri: callback.url, code_verifier: pkce().verifier }, { basic });
  assert.equal(wrongVerifier.status, 400, 'a wrong verifier is refused (RFC style: 400)');
  assert.equal(wrongVerifier.json.error, 'invalid_grant');
  const code2 = await codeFor(client, { challenge });
  const ok = await tokenCall({ grant_type: 'authorization_code', code: code2, redirect_uri: callback.url, code_verifier: verifier }, { basic });
  assert.equal(ok.status, 200, ok.text);
  assert.match(ok.json.access_token, /^ghu_[A-Za-z0-9]{36}$/);
  assert.match(ok.json.refresh_token, /^ghr_[A-Za-z0-9]{76}$/);
  assert.equal(ok.json.expires_in, EXPIRES_IN);
  assert.equal(ok.json.token_type, 'bearer');
  assert.equal(provider.tokenRequests.at(-1).authStyle, 'header');
  const replay = await tokenCall({ grant_type: 'authorization_code', code: code2, redirect_uri: callback.url, code_verifier: verifier }, { basic });
  assert.equal(replay.status, 400, 'a code is single use');

  // Body style, no Accept: form-encoded like GitHub; a wrong redirect_uri is refused.
  const code3 = await codeFor(client);
  const wrongRedirect = await tokenCall({ code: code3, client_id: client.clientId, client_secret: client.clientSecret, redirect_uri: `${callback.url}/other` });
  assert.equal(wrongRedirect.status, 400);
  const code4 = await codeFor(client);
  const form = await tokenCall({ code: code4, client_id: client.clientId, client_secret: client.clientSecret, redirect_uri: callback.url }, { json: false });
  assert.equal(form.status, 200, form.text);
  assert.match(form.headers.get('content-type'), /application\/x-www-form-urlencoded/);
  const fields = new URLSearchParams(form.text);
  assert.match(fields.get('access_token'), /^ghu_/);
  assert.equal(provider.tokenRequests.at(-1).authStyle, 'params');

  // refuseCodes: RFC (400 invalid_grant) and GitHub (200 bad_verification_code) refusals.
  for (const [mode, status] of [['invalid_grant', 400], ['bad_verification_code', 200]]) {
    const c = await codeFor(client);
    provider.refuseCodes(mode);
    const refused = await tokenCall({ code: c, redirect_uri: callback.url }, { basic });
    provider.refuseCodes(null);
    assert.equal(refused.status, status, `refuseCodes(${mode})`);
    assert.equal(refused.json.error, mode);
    assert.equal(refused.json.access_token, undefined);
  }

  // Wrong secret: 401 invalid_client.
  const code5 = await codeFor(client);
  const badSecret = await tokenCall({ code: code5, redirect_uri: callback.url }, { basic: { ...basic, clientSecret: 'wrong' } });
  assert.equal(badSecret.status, 401);
  assert.equal(badSecret.json.error, 'invalid_client');
});

test('provider: refresh rotation, expiry at /user, refusal modes, GitHub error style, expireAll, down', async () => {
  const client = provider.addClient({ redirectUris: [callback.url] });
  const basic = { clientId: client.clientId, clientSecret: client.clientSecret };
  const first = await tokenCall({ code: await codeFor(client), redirect_uri: callback.url }, { basic });
  const user = (token) => request(provider.userUrl, { headers: { authorization: `Bearer ${token}` } });
  assert.equal((await user(first.json.access_token)).json.login, provider.user.login);

  const second = await tokenCall({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic });
  assert.equal(second.status, 200, second.text);
  assert.notEqual(second.json.refresh_token, first.json.refresh_token, 'the refresh token rotates');
  const reuse = await tokenCall({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic });
  assert.equal(reuse.status, 400, 'the old refresh token is dead (RFC style)');
  assert.equal(reuse.json.error, 'invalid_grant');
  provider.errorStyle = 'github';
  const reuseGitHub = await tokenCall({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic });
  assert.equal(reuseGitHub.status, 200, 'GitHub style: HTTP 200 …');
  assert.equal(reuseGitHub.json.error, 'bad_refresh_token', '… with error bad_refresh_token');
  provider.errorStyle = 'rfc';

  await sleep(EXPIRES_IN * 1000 + 200);
  const expired = await user(first.json.access_token);
  assert.equal(expired.status, 401, 'an expired access token is refused at /user');
  assert.equal(expired.json.message, 'Bad credentials');

  provider.refuseRefresh('bad_refresh_token');
  const refusedGitHub = await tokenCall({ grant_type: 'refresh_token', refresh_token: second.json.refresh_token }, { basic });
  assert.equal(refusedGitHub.status, 200);
  assert.equal(refusedGitHub.json.error, 'bad_refresh_token');
  provider.refuseRefresh(null);
  const afterRefusal = await tokenCall({ grant_type: 'refresh_token', refresh_token: second.json.refresh_token }, { basic });
  assert.equal(afterRefusal.status, 400, 'a refused refresh token stays dead');

  const third = await tokenCall({ code: await codeFor(client), redirect_uri: callback.url }, { basic });
  provider.refuseRefresh('invalid_grant');
  const refused = await tokenCall({ grant_type: 'refresh_token', refresh_token: third.json.refresh_token }, { basic });
  assert.equal(refused.status, 400);
  assert.equal(refused.json.error, 'invalid_grant');
  provider.refuseRefresh(null);

  const fourth = await tokenCall({ code: await codeFor(client), redirect_uri: callback.url }, { basic });
  assert.equal((await user(fourth.json.access_token)).status, 200);
  provider.expireAll();
  assert.equal((await user(fourth.json.access_token)).status, 401, 'expireAll kills every access token');

  provider.down(true);
  for (const u of [provider.userUrl, provider.authUrl, `${provider.origin}/.well-known/oauth-authorization-server`]) {
    assert.equal((await request(u)).status, 503, `down: ${u}`);
  }
  assert.equal((await tokenCall({ grant_type: 'refresh_token', refresh_token: fourth.json.refresh_token }, { basic })).status, 503);
  provider.down(false);
  assert.ok(provider.userBearers.includes(fourth.json.access_token), '/user bearers are recorded');
});

test('upstream MCP server: the SDK client discovers the provider, the user consents in Chromium, whoami works; 401 once the token dies', { timeout: 90_000 }, async () => {
  const client = provider.addClient({ redirectUris: [callback.url], name: 'mcpgate e2e SDK' });
  const browser = await Browser.launch(DIR);
  try {
    const auth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: { username: 'unused', password: 'unused' } });
    auth.saveClientInformation({ client_id: client.clientId, client_secret: client.clientSecret });
    const log = [];
    const connect = () => {
      const c = new Client({ name: 'doubles', version: '1' });
      return { c, t: new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: auth, fetch: recordingFetch(log) }) };
    };
    const first = connect();
    await assert.rejects(first.c.connect(first.t), (e) => e instanceof UnauthorizedError);
    const { result } = auth.authorizations.at(-1);
    assert.ok(result.callback, `the browser reached the callback: ${JSON.stringify(result.steps)} ${result.bodyText}`);
    assert.deepEqual(result.steps.map((s) => s.kind), ['consent', 'callback']);
    const authReq = provider.authorizeRequests.at(-1);
    assert.equal(authReq.codeChallengeMethod, 'S256', 'the SDK sent PKCE');
    assert.equal(authReq.scope, 'read:user', 'the SDK asked for the scopes of the resource metadata');
    await first.t.finishAuth(result.callback.searchParams.get('code'));
    assert.equal(provider.tokenRequests.at(-1).authStyle, 'header', 'the SDK authenticated with HTTP Basic');
    assert.equal(provider.tokenRequests.at(-1).status, 200);

    const { c, t } = connect();
    await c.connect(t);
    const { tools } = await c.listTools();
    assert.deepEqual(tools.map((x) => x.name), ['whoami']);
    const r = await c.callTool({ name: 'whoami', arguments: {} });
    assert.equal(r.content[0].text, provider.user.login);
    const token = auth.tokens().access_token;
    assert.ok(mcp.bearers().every((b) => b === null || b === token), 'the MCP server saw the provider token');
    assert.ok(mcp.requests.some((x) => x.tool === 'whoami' && x.status === 200));

    provider.expireAll();
    const dead = await request(mcp.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(dead.status, 401);
    assert.match(dead.headers.get('www-authenticate'), /^Bearer error="invalid_token"/);
    assert.ok(dead.headers.get('www-authenticate').includes(`resource_metadata="${mcp.resourceMetadataUrl}"`));
    await c.close();
  } finally {
    await browser.close();
  }
});

test('assertion verifier: accepts the right assertion, refuses wrong aud, iss, typ, alg, expiry and keys', async () => {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' };
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    const iss = 'http://localhost:1';
    const aud = 'http://localhost:1/app';
    const v = new AssertionVerifier({ jwksUrl: `http://127.0.0.1:${server.address().port}/jwks.json`, issuer: iss, audience: aud });
    const sign = (claims = {}, header = {}, key = privateKey) => new SignJWT({ sub: 'alice', email: 'a@x', ...claims })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'k1', ...header })
      .setIssuer(claims.iss ?? iss).setAudience(claims.aud ?? aud).setIssuedAt().setJti('j1')
      .setExpirationTime(claims.exp ?? '5m').sign(key);
    const good = await v.verify(await sign());
    assert.equal(good.ok, true, good.error);
    assert.equal(good.claims.sub, 'alice');
    const cases = {
      aud: await sign({ aud: 'http://localhost:1/other' }),
      iss: await sign({ iss: 'http://evil' }),
      typ: await sign({}, { typ: 'at+jwt' }),
      exp: await sign({ exp: Math.floor(Date.now() / 1000) - 120 }),
      key: await sign({}, {}, other.privateKey),
      alg: await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: 'k1' })
        .setIssuer(iss).setAudience(aud).setIssuedAt().setJti('j2').setExpirationTime('5m')
        .sign(new TextEncoder().encode('a-shared-secret-of-at-least-32-bytes!!')),
    };
    for (const [what, jwt] of Object.entries(cases)) {
      const r = await v.verify(jwt);
      assert.equal(r.ok, false, `wrong ${what} is refused`);
    }
    assert.equal((await v.verify(undefined)).present, false);
    const two = await v.verify(`${await sign()}, ${await sign()}`);
    assert.equal(two.ok, false, 'two header values are refused');
  } finally {
    await new Promise((r) => server.close(r));
  }
});

// --- lib/oidc-provider.mjs ---------------------------------------------------------------------

const RP = {
  client_id: 'rp-web',
  client_secret: 'rp-web-secret-0123456789-0123456789-abcdef',
  redirect_uris: ['http://127.0.0.1:9/rp/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1:9/rp/signed-out'],
};
const RP_ES256 = { ...RP, client_id: 'rp-es256', id_token_signed_response_alg: 'ES256' };
const OIDC_USERS = {
  alice: { password: 'alice-password', email: 'alice@company.com', name: 'Alice Liddell', groups: ['eng', 'admins'] },
  bob: { password: 'bob-password', email: 'bob@company.com', name: 'Bob', groups: [] },
};

/** An authorization request through the provider's pages; the callback's code, state, iss. */
async function oidcAuthorize(op, ua, { client = RP, scope = 'openid email profile groups offline_access', prompt = 'consent', username = 'alice', password = OIDC_USERS[username]?.password, pkceOn = true, signIn = true } = {}) {
  const { verifier, challenge } = pkce();
  const state = randomState();
  const nonce = randomState();
  const url = new URL(`${op.issuer}/auth`);
  const params = { response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0], scope, state, nonce, prompt };
  if (pkceOn) Object.assign(params, { code_challenge: challenge, code_challenge_method: 'S256' });
  for (const [k, v] of Object.entries(params)) if (v !== null) url.searchParams.set(k, v); // prompt: null sends none
  const r = await ua.follow(url, signIn ? { username, password } : {});
  return { ...r, verifier, state, nonce, client };
}

function oidcToken(op, client, params) {
  return request(`${op.issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams(params).toString(),
  });
}

/** Signs in (or reuses the agent's session) and exchanges the code; the token response and nonce. */
async function oidcTokens(op, ua, options = {}) {
  const a = await oidcAuthorize(op, ua, options);
  assert.ok(a.location, `the provider redirected back: ${JSON.stringify(a.steps)} ${a.page?.text.slice(0, 300)}`);
  assert.equal(a.location.origin + a.location.pathname, a.client.redirect_uris[0]);
  assert.equal(a.location.searchParams.get('state'), a.state);
  assert.equal(a.location.searchParams.get('iss'), op.issuer, 'RFC 9207 iss in the callback');
  const t = await oidcToken(op, a.client, { grant_type: 'authorization_code', code: a.location.searchParams.get('code'), redirect_uri: a.client.redirect_uris[0], code_verifier: a.verifier });
  assert.equal(t.status, 200, t.text);
  return { ...t.json, nonce: a.nonce, steps: a.steps };
}

/** What a correct relying party checks: signature by a JWKS key, allowed algs, iss, aud, exp, nonce. */
async function rpVerify(op, jwks, idToken, { nonce, audience = RP.client_id } = {}) {
  const { payload, protectedHeader } = await jwtVerify(idToken, jwks, { issuer: op.issuer, audience, algorithms: ['RS256', 'ES256'], clockTolerance: 5 });
  if (nonce !== undefined && payload.nonce !== nonce) throw new Error('nonce mismatch');
  return { payload, protectedHeader };
}

test('OIDC provider: discovery and JWKS', async () => {
  const op = await startOidcProvider({ clients: [RP], users: OIDC_USERS });
  try {
    const d = (await request(`${op.issuer}/.well-known/openid-configuration`)).json;
    assert.equal(d.issuer, op.issuer);
    assert.match(op.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    for (const [k, v] of Object.entries({ authorization_endpoint: '/auth', token_endpoint: '/token', userinfo_endpoint: '/me', jwks_uri: '/jwks', end_session_endpoint: '/session/end' })) {
      assert.equal(d[k], `${op.issuer}${v}`, k);
    }
    assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(d.response_types_supported, ['code']);
    assert.deepEqual(d.id_token_signing_alg_values_supported, ['RS256', 'ES256']);
    assert.deepEqual(d.scopes_supported, ['openid', 'offline_access', 'email', 'profile', 'groups']);
    for (const c of ['sub', 'email', 'email_verified', 'name', 'org']) assert.ok(d.claims_supported.includes(c), c);
    assert.ok(d.grant_types_supported.includes('refresh_token'));
    const jwks = await request(d.jwks_uri);
    assert.equal(jwks.status, 200);
    assert.deepEqual(jwks.json.keys.map((k) => `${k.kty} ${k.alg} ${k.use}`), ['RSA RS256 sig', 'EC ES256 sig']);
    assert.deepEqual(jwks.json, op.jwks(), 'op.jwks() is what /jwks publishes');
    for (const k of jwks.json.keys) assert.equal(k.d, undefined, 'no private part in the JWKS');
    const devLogin = await request(`${op.issuer}/interaction/x/login`, { method: 'POST' });
    assert.equal(devLogin.status, 400, 'an interaction without its cookie is refused');
  } finally {
    await op.stop();
    await op.stop();
  }
  assert.equal(await portOpen(op.port), false, 'stop() closes the port');
});

test('OIDC provider: code flow with PKCE through the login form, ID token, userinfo, refresh, disabled user', async () => {
  const logFile = path.join(DIR, 'logs', 'oidc-provider.log');
  const op = await startOidcProvider({ clients: [RP, RP_ES256], users: OIDC_USERS, logFile });
  const jwks = createRemoteJWKSet(new URL(`${op.issuer}/jwks`), { cooldownDuration: 0 });
  try {
    const ua = op.userAgent();
    // PKCE is required; a wrong password shows the form again with an error.
    const noPkce = await oidcAuthorize(op, ua, { pkceOn: false });
    assert.equal(noPkce.location.searchParams.get('error'), 'invalid_request');
    assert.match(noPkce.location.searchParams.get('error_description'), /PKCE/);
    const wrong = await oidcAuthorize(op, ua, { password: 'not-it' });
    assert.equal(wrong.location, null);
    assert.deepEqual(wrong.steps.map((s) => s.kind), ['redirect', 'login', 'login']);
    assert.match(wrong.page.text, /Invalid username or password/);
    assert.match(wrong.page.text, /<input type="password" name="password">/);

    const first = await oidcTokens(op, ua);
    assert.ok(first.steps.some((s) => s.kind === 'login'), 'signed in through the form');
    assert.equal(first.token_type, 'Bearer');
    assert.deepEqual(first.scope.split(' ').sort(), ['email', 'groups', 'offline_access', 'openid', 'profile']);
    assert.ok(first.refresh_token, 'offline_access with prompt=consent gives a refresh token');
    const { payload, protectedHeader } = await rpVerify(op, jwks, first.id_token, { nonce: first.nonce });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(protectedHeader.kid, op.jwks().keys[0].kid);
    assert.equal(payload.sub, 'alice');
    assert.equal(payload.email, 'alice@company.com');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, 'Alice Liddell');
    assert.deepEqual(payload.org, { groups: ['eng', 'admins'] }, 'groups at the nested path org.groups');
    assert.equal(payload.groups, undefined);

    const me = await request(`${op.issuer}/me`, { headers: { authorization: `Bearer ${first.access_token}` } });
    assert.equal(me.status, 200, me.text);
    assert.deepEqual(me.json.org.groups, ['eng', 'admins']);

    // The session is kept: a second authorization signs in without the form. offline_access
    // without prompt=consent is dropped (oidc-provider, OIDC Core §11).
    const again = await oidcTokens(op, ua, { prompt: null });
    assert.ok(!again.steps.some((s) => s.kind === 'login'));
    assert.equal(again.refresh_token, undefined, 'no prompt=consent, no refresh token');
    assert.ok(!again.scope.includes('offline_access'));
    // ES256 for a client that registered it.
    const es = await oidcTokens(op, ua, { client: RP_ES256 });
    assert.equal((await rpVerify(op, jwks, es.id_token, { nonce: es.nonce, audience: RP_ES256.client_id })).protectedHeader.alg, 'ES256');

    // Refresh with rotation; reusing the old refresh token is refused (and revokes the grant).
    const refreshed = await oidcToken(op, RP, { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.ok(refreshed.json.id_token);
    assert.notEqual(refreshed.json.refresh_token, first.refresh_token, 'rotation');
    assert.equal((await rpVerify(op, jwks, refreshed.json.id_token)).payload.sub, 'alice');
    const reuse = await oidcToken(op, RP, { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    assert.equal(reuse.status, 400);
    assert.equal(reuse.json.error, 'invalid_grant');
    assert.ok(op.events.some((e) => e.type === 'grant.error' && e.error === 'invalid_grant' && e.grantType === 'refresh_token'));
    assert.ok(op.events.some((e) => e.type === 'grant.success' && e.grantType === 'authorization_code' && e.clientId === RP.client_id));

    // A disabled user: refresh and userinfo fail, the session no longer signs in, nor the form.
    const second = await oidcTokens(op, ua);
    op.disableUser('alice');
    const refused = await oidcToken(op, RP, { grant_type: 'refresh_token', refresh_token: second.refresh_token });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error, 'invalid_grant');
    assert.equal((await request(`${op.issuer}/me`, { headers: { authorization: `Bearer ${second.access_token}` } })).status, 401);
    const blocked = await oidcAuthorize(op, ua);
    assert.equal(blocked.location, null, 'no code for a disabled user');
    assert.match(blocked.page.text, /This account is disabled/);
    op.enableUser('alice');
    const back = await oidcToken(op, RP, { grant_type: 'refresh_token', refresh_token: second.refresh_token });
    assert.equal(back.status, 200, 'enabled again: the refresh token works');
    assert.equal(op.tokenRequests, 8, 'every token request is counted (4 codes, 4 refreshes)');
    const log = fs.readFileSync(logFile, 'utf8');
    for (const secret of [RP.client_secret, OIDC_USERS.alice.password, 'not-it', first.access_token, first.refresh_token, first.id_token, second.refresh_token]) {
      assert.ok(!log.includes(secret), 'no secret, password or token in the log');
    }
    assert.match(log, /POST \/token/);
  } finally {
    await op.stop();
  }

  // Without rotation the refresh token stays the same and keeps working; offline_access without a
  // prompt counts when the provider is told so.
  const still = await startOidcProvider({ clients: [RP], users: OIDC_USERS, refreshTokenRotation: false, accessTokenTtl: 60, offlineAccessNeedsConsentPrompt: false });
  try {
    const t = await oidcTokens(still, still.userAgent(), { prompt: null });
    assert.ok(t.refresh_token, 'offline_access without prompt=consent');
    assert.equal(t.expires_in, 60, 'accessTokenTtl');
    for (let i = 0; i < 2; i++) {
      const r = await oidcToken(still, RP, { grant_type: 'refresh_token', refresh_token: t.refresh_token });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.refresh_token, t.refresh_token);
    }
  } finally {
    await still.stop();
  }
});

test('OIDC provider: each misbehave() mode gives an ID token a correct relying party refuses', async () => {
  const op = await startOidcProvider({ clients: [RP], users: OIDC_USERS });
  const jwks = createRemoteJWKSet(new URL(`${op.issuer}/jwks`), { cooldownDuration: 0 });
  try {
    const ua = op.userAgent();
    const good = await oidcTokens(op, ua);
    await rpVerify(op, jwks, good.id_token, { nonce: good.nonce });
    const expected = {
      'wrong-aud': /aud/, 'wrong-iss': /iss/, 'wrong-nonce': /nonce mismatch/, 'alg-hs256': /alg/i,
      'alg-none': /alg|Unsecured|JWS/i, 'unknown-key': /no applicable key|JWKSNoMatchingKey|matching key/i, expired: /exp/,
    };
    for (const [mode, why] of Object.entries(expected)) {
      op.misbehave(mode);
      const t = await oidcTokens(op, ua);
      const header = decodeProtectedHeader(t.id_token);
      await assert.rejects(rpVerify(op, jwks, t.id_token, { nonce: t.nonce }), why, `${mode} is refused`);
      if (mode === 'alg-hs256') {
        assert.equal(header.alg, 'HS256');
        // It is a genuine HS256 token under the client secret (what an RP without an allow-list takes).
        await jwtVerify(t.id_token, new TextEncoder().encode(RP.client_secret), { issuer: op.issuer, audience: RP.client_id });
      }
      if (mode === 'alg-none') assert.equal(header.alg, 'none');
      if (mode === 'unknown-key') assert.ok(!op.jwks().keys.some((k) => k.kid === header.kid), 'a kid outside the JWKS');
      if (['wrong-aud', 'wrong-iss', 'wrong-nonce', 'expired'].includes(mode)) assert.equal(header.kid, op.jwks().keys[0].kid, 'signed with the provider key');
    }
    op.misbehave(null);
    const fine = await oidcTokens(op, ua);
    await rpVerify(op, jwks, fine.id_token, { nonce: fine.nonce });
    assert.throws(() => op.misbehave('sideways'));
  } finally {
    await op.stop();
  }
});

test('OIDC provider: key rotation, restart keeps the session, down/up, RP-initiated logout', async () => {
  const op = await startOidcProvider({ clients: [RP], users: OIDC_USERS });
  const jwks = createRemoteJWKSet(new URL(`${op.issuer}/jwks`), { cooldownDuration: 0 });
  try {
    const ua = op.userAgent();
    const before = await oidcTokens(op, ua);
    const oldKid = decodeProtectedHeader(before.id_token).kid;
    await rpVerify(op, jwks, before.id_token);

    const [newRsa] = await op.rotateKeys();
    assert.equal((await request(`${op.issuer}/jwks`)).json.keys.length, 4, 'old and new keys published');
    const rotated = await oidcTokens(op, ua);
    assert.ok(!rotated.steps.some((s) => s.kind === 'login'), 'the session survives a key rotation');
    assert.equal(decodeProtectedHeader(rotated.id_token).kid, newRsa);
    await rpVerify(op, jwks, rotated.id_token); // jose refetches the JWKS on the unknown kid
    await rpVerify(op, jwks, before.id_token);
    await op.retireOldKeys();
    const keys = (await request(`${op.issuer}/jwks`)).json.keys;
    assert.equal(keys.length, 2);
    assert.ok(!keys.some((k) => k.kid === oldKid), 'old key removed');

    const port = op.port;
    await op.restart();
    assert.equal(op.port, port);
    const afterRestart = await oidcTokens(op, ua);
    assert.ok(!afterRestart.steps.some((s) => s.kind === 'login'), 'the session survives a restart');
    const r = await oidcToken(op, RP, { grant_type: 'refresh_token', refresh_token: rotated.refresh_token });
    assert.equal(r.status, 200, 'a refresh token survives a restart');

    await op.down();
    assert.equal(await portOpen(port), false, 'down: nothing listens');
    await assert.rejects(fetch(`${op.issuer}/jwks`));
    await op.up();
    assert.equal((await request(`${op.issuer}/jwks`)).status, 200, 'up again');

    // RP-initiated logout: the confirm page, then the post-logout redirect with state; the next
    // authorization needs the login form again.
    const end = new URL(`${op.issuer}/session/end`);
    end.searchParams.set('id_token_hint', afterRestart.id_token);
    end.searchParams.set('post_logout_redirect_uri', RP.post_logout_redirect_uris[0]);
    end.searchParams.set('state', 'bye-state');
    const confirm = await ua.fetch(end);
    assert.equal(confirm.status, 200);
    assert.match(confirm.text, /id="op.logoutForm"/);
    assert.match(confirm.text, /name="logout" value="yes"/);
    const out = await ua.follow(end);
    assert.deepEqual(out.steps.map((s) => s.kind), ['logout', 'redirect']);
    assert.equal(out.location.origin + out.location.pathname, RP.post_logout_redirect_uris[0]);
    assert.equal(out.location.searchParams.get('state'), 'bye-state');
    assert.ok(op.events.some((e) => e.type === 'end_session.success'));
    const fresh = await oidcAuthorize(op, ua, { signIn: false });
    assert.equal(fresh.location, null);
    assert.equal(fresh.steps.at(-1).kind, 'login', 'signed out: the login form again');
  } finally {
    await op.stop();
  }
});

// --- lib/otlp-collector.mjs --------------------------------------------------------------------

test('OTLP collector: protobuf (plain and gzip) and JSON exports are decoded and answered like a collector', async () => {
  const c = await startOtlpCollector();
  try {
    assert.match(c.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    const traceId = Buffer.from('5b8efff798038103d269b633813fc60c', 'hex');
    const kv = (key, value) => ({ key, value });
    const message = ExportTraceServiceRequest.fromObject({
      resourceSpans: [{
        resource: { attributes: [kv('service.name', { stringValue: 'mcpgate-gateway' }), kv('host.pid', { intValue: 4242 })] },
        scopeSpans: [{
          scope: { name: 'envoy', version: '1.40' },
          spans: [
            {
              traceId, spanId: Buffer.from('eee19b7ec3c1b174', 'hex'), name: 'ingress', kind: 2,
              startTimeUnixNano: '1700000000000000123', endTimeUnixNano: '1700000000250000123',
              attributes: [
                kv('http.method', { stringValue: 'POST' }), kv('http.status_code', { intValue: 200 }),
                kv('big', { intValue: '9007199254740993' }), kv('neg', { intValue: -3 }), kv('ok', { boolValue: true }),
                kv('ratio', { doubleValue: 0.5 }), kv('list', { arrayValue: { values: [{ stringValue: 'a' }, { intValue: 2 }] } }),
                kv('map', { kvlistValue: { values: [kv('k', { stringValue: 'v' })] } }), kv('raw', { bytesValue: Buffer.from([1, 2]) }),
              ],
              events: [{ timeUnixNano: '1700000000100000000', name: 'policy', attributes: [kv('decision', { stringValue: 'allow' })] }],
              status: { code: 2, message: 'denied' },
            },
            { traceId, spanId: Buffer.from('0102030405060708', 'hex'), parentSpanId: Buffer.from('eee19b7ec3c1b174', 'hex'), name: 'ext_authz', kind: 3, startTimeUnixNano: '1', endTimeUnixNano: '2' },
          ],
        }],
      }],
    });
    const body = Buffer.from(ExportTraceServiceRequest.encode(message).finish());
    const post = (headers, data) => fetch(c.tracesUrl, { method: 'POST', headers, body: data });

    const waiting = c.waitForSpans((s) => s.name === 'ext_authz', 5000);
    const plain = await post({ 'content-type': 'application/x-protobuf' }, body);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('content-type'), 'application/x-protobuf');
    assert.equal((await plain.arrayBuffer()).byteLength, 0, 'an empty ExportTraceServiceResponse');
    const [child] = await waiting;
    assert.equal(child.parentSpanId, 'eee19b7ec3c1b174');
    assert.equal(child.kind, 3);
    const [root] = c.spans();
    assert.deepEqual(
      { ...root, attributes: { ...root.attributes, raw: [...root.attributes.raw] } },
      {
        traceId: '5b8efff798038103d269b633813fc60c', spanId: 'eee19b7ec3c1b174', parentSpanId: '', traceState: '', flags: 0,
        name: 'ingress', kind: 2, startTimeUnixNano: '1700000000000000123', endTimeUnixNano: '1700000000250000123',
        attributes: { 'http.method': 'POST', 'http.status_code': 200, big: '9007199254740993', neg: -3, ok: true, ratio: 0.5, list: ['a', 2], map: { k: 'v' }, raw: [1, 2] },
        events: [{ name: 'policy', timeUnixNano: '1700000000100000000', attributes: { decision: 'allow' } }],
        links: [],
        status: { code: 2, message: 'denied' },
        resource: { 'service.name': 'mcpgate-gateway', 'host.pid': 4242 },
        scope: { name: 'envoy', version: '1.40' },
      },
    );

    const gz = await post({ 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' }, zlib.gzipSync(body));
    assert.equal(gz.status, 200);
    assert.equal(c.spans().length, 4, 'gzip export decoded');
    assert.deepEqual(c.requests.map((r) => r.contentEncoding), [null, 'gzip']);

    // OTLP/JSON: hex ids, 64-bit integers as strings, enums as numbers.
    c.clear();
    const json = await post({ 'content-type': 'application/json' }, JSON.stringify({
      resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'mcpgate-token-service' } }] },
        scopeSpans: [{ scope: { name: 'mcpgate' }, spans: [{
          traceId: '5B8EFFF798038103D269B633813FC60C', spanId: 'b7ad6b7169203331', parentSpanId: '',
          name: 'POST /token', kind: 2, startTimeUnixNano: '1544712660000000000', endTimeUnixNano: '1544712661000000000',
          attributes: [{ key: 'http.response.status_code', value: { intValue: '200' } }, { key: 'raw', value: { bytesValue: 'AQI=' } }],
          status: { code: 1 },
        }] }],
      }],
    }));
    assert.equal(json.status, 200);
    assert.equal(json.headers.get('content-type'), 'application/json');
    assert.deepEqual(await json.json(), {});
    const [s] = await c.waitForSpans((x) => x.name === 'POST /token', 2000);
    assert.equal(s.traceId, '5b8efff798038103d269b633813fc60c');
    assert.equal(s.resource['service.name'], 'mcpgate-token-service');
    assert.equal(s.attributes['http.response.status_code'], 200);
    assert.deepEqual([...s.attributes.raw], [1, 2]);
    assert.deepEqual(s.status, { code: 1, message: '' });

    // What a collector refuses.
    const bad = await post({ 'content-type': 'application/x-protobuf' }, Buffer.from([0x0a, 0xff, 0x01]));
    assert.equal(bad.status, 400);
    assert.equal((await post({ 'content-type': 'text/plain' }, 'x')).status, 415);
    assert.equal((await fetch(c.tracesUrl)).status, 405);
    assert.equal((await post({ 'content-type': 'application/json' }, '{"resourceSpans":')).status, 400);
    assert.equal(c.spans().length, 1, 'refused exports add nothing');
    await assert.rejects(c.waitForSpans((x) => x.name === 'never', 100), /timed out/);
  } finally {
    await c.stop();
    await c.stop();
  }
});

// --- lib/postgres.mjs --------------------------------------------------------------------------

test('PostgreSQL: starts privately, answers, survives restart and an immediate shutdown, stop removes everything', { timeout: 60_000 }, async () => {
  const pg = await startPostgres();
  const dir = pg.dir;
  try {
    assert.equal(pg.url, `postgres://postgres@127.0.0.1:${pg.port}/test`);
    assert.notEqual(pg.port, 5432);
    assert.equal(await pg.psql(`SELECT current_database(), current_user, inet_server_addr(), current_setting('fsync')`), 'test|postgres|127.0.0.1|off');
    await pg.psql('CREATE TABLE kept (v text); INSERT INTO kept VALUES (\'before restart\')');
    await pg.restart();
    assert.equal(await pg.psql('SELECT v FROM kept'), 'before restart');
    await pg.psql('INSERT INTO kept VALUES (\'before kill\')');
    await pg.kill();
    assert.equal(await portOpen(pg.port), false, 'killed: nothing listens');
    await assert.rejects(pg.psql('SELECT 1'), /Connection refused|could not connect|failed/);
    await pg.start();
    assert.equal(await pg.psql('SELECT count(*) FROM kept'), '2', 'crash recovery keeps committed rows');
  } finally {
    await pg.stop();
    await pg.stop();
  }
  assert.equal(fs.existsSync(dir), false, 'the temporary folder is gone');
  assert.equal(await portOpen(pg.port), false);
});
