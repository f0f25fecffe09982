// The test doubles of files 09-11, checked on their own (no gateway), so a failure there is known
// to be the gateway's and not the mocks':
//   - lib/github-provider.mjs behaves like GitHub's OAuth app flow and like RFC 6749 where asked
//     (codes, PKCE, redirect URIs, client authentication styles, rotation, error styles, /user);
//   - lib/upstream-mcp.mjs, an SDK McpServer, is a resource server of that provider: the unmodified
//     SDK client discovers it (RFC 9728 → RFC 8414), the user consents in Chromium, `whoami` works,
//     a dead provider token gets HTTP 401 invalid_token;
//   - lib/assertion.mjs accepts a correct assertion and refuses wrong audience, issuer, typ, alg,
//     expiry and unknown keys.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT, generateKeyPair, exportJWK } from 'jose';
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
import { request } from '../lib/net.mjs';

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
