// Upstream OAuth (docs/delegation.md): a route whose MCP server needs each user's token from a
// GitHub-like provider (TI). The unmodified SDK client holds only the gateway's token (TE); the
// filter swaps in the TI, which the token service obtained through the provider's consent and keeps
// fresh. Real Envoy + filter + token service; the MCP server is an SDK McpServer
// (lib/upstream-mcp.mjs) and a resource server of the local GitHub stand-in (lib/github-provider.mjs).
//
// Routes: /github (endpoint given, auth_style header, client secret in a file),
//         /github-params (auth_style params), /github-discover (endpoints discovered from the MCP
//         server's protected-resource metadata).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startGateway, USER } from '../lib/gateway.mjs';
import { startGitHubProvider } from '../lib/github-provider.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider, recordingFetch } from '../lib/provider.mjs';
import { request, describe } from '../lib/net.mjs';
import { decodeJwt, mcpInitialize } from '../lib/oauth.mjs';

const EXPIRES_IN = 4; // seconds, the provider's access-token lifetime
const PAST_EXPIRY_MS = EXPIRES_IN * 1000 + 1500;

let provider;
let classic; // a classic GitHub OAuth App: tokens without expiry and without refresh token
let gw;
let callback;
let browser;
const sessions = new Map(); // route path -> {auth, log, client, transport}

before(async () => {
  provider = await startGitHubProvider({ expiresIn: EXPIRES_IN });
  classic = await startGitHubProvider({ expiresIn: null, user: { login: 'alice-classic', id: 4_100_002 } });
  gw = await startGateway('09-upstream-oauth', {
    provider,
    accessTokenLifetime: '600s',
    routes: [
      { path: '/github', name: 'GitHub', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user'], authStyle: 'header', secretInFile: true } },
      { path: '/github-params', name: 'GitHub params', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user', 'read:org'], authStyle: 'params' } },
      { path: '/github-discover', name: 'GitHub discovered', upstream: 'upstream-mcp', upstreamOAuth2: { discover: true, scopes: ['read:user'] } },
      { path: '/github-classic', name: 'GitHub classic', upstream: 'upstream-mcp', provider: classic, upstreamOAuth2: { scopes: ['read:user'] } },
    ],
  });
  provider.logFile = path.join(gw.paths.logs, 'github-provider.log');
  classic.logFile = path.join(gw.paths.logs, 'github-classic-provider.log');
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
}, { timeout: 900_000 });

after(async () => {
  for (const s of sessions.values()) await s.client?.close().catch(() => {});
  await browser?.close();
  await callback?.close();
  await gw?.stop();
  await provider?.stop();
  await classic?.stop();
});

const show = (log) => log.map((e) => `${e.method} ${e.path}${e.grantType ? ` (${e.grantType})` : ''} -> ${e.status}${e.errorBody ? ` ${e.errorBody.slice(0, 160)}` : ''}`).join('\n  ');
const oauthClientOf = (routePath) => gw.route(routePath).upstreamOAuth2.clientId;
const mcpOf = (routePath) => gw.route(routePath).mcpServer;
const tesOf = (s) => s.auth.savedTokens.filter(Boolean).map((t) => t.access_token);

function session(routePath) {
  if (!sessions.has(routePath)) {
    sessions.set(routePath, {
      routePath,
      auth: new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER, clientName: `mcpgate e2e ${routePath}` }),
      log: [],
    });
  }
  return sessions.get(routePath);
}

async function connect(s) {
  await s.client?.close().catch(() => {});
  s.client = new Client({ name: 'mcpgate-e2e-upstream', version: '1.0.0' });
  s.transport = new StreamableHTTPClientTransport(new URL(gw.route(s.routePath).url), { authProvider: s.auth, fetch: recordingFetch(s.log) });
  await s.client.connect(s.transport);
}

/** The latest browser authorization of a session: it must have reached the callback through the provider's consent. */
function checkAuthorization(s, { expectProviderConsent = true } = {}) {
  const { result } = s.auth.authorizations.at(-1);
  const pages = JSON.stringify(result.steps);
  assert.ok(result.callback, `the browser must end on the SDK client's callback; pages: ${pages}; last page (${result.status}): ${result.bodyText?.slice(0, 400)}`);
  assert.equal(result.callback.searchParams.get('error'), null,
    `callback error: ${result.callback.searchParams.get('error')} ${result.callback.searchParams.get('error_description')}`);
  const providerConsent = result.steps.filter((st) => st.kind === 'consent' && st.url.startsWith(provider.origin));
  if (expectProviderConsent) assert.equal(providerConsent.length, 1, `the user consented at the provider once: ${pages}`);
  return result.callback.searchParams.get('code');
}

/** The whole SDK flow for a route: 401, discovery, sign-in, gateway consent, provider consent, code, connect. */
async function signIn(routePath, { expectSignIn = false } = {}) {
  const s = session(routePath);
  const authorizeBefore = provider.authorizeRequests.length;
  await assert.rejects(connect(s), (e) => e instanceof UnauthorizedError, 'the first connect stops at the authorization redirect');
  const code = checkAuthorization(s);
  const steps = s.auth.authorizations.at(-1).result.steps.map((st) => st.kind);
  // The browser keeps its gateway session: only the first authorization of the file signs in.
  if (expectSignIn) assert.ok(steps.includes('sign_in'), `the user signed in at the gateway: ${steps}`);
  const providerRequests = provider.authorizeRequests.slice(authorizeBefore);
  assert.equal(providerRequests.length, 1, 'the gateway sent the browser to the provider once');
  await s.transport.finishAuth(code);
  await connect(s);
  return s;
}

async function whoami(s) {
  const r = await s.client.callTool({ name: 'whoami', arguments: {} });
  assert.equal(r.isError ?? false, false, `whoami is no error: ${JSON.stringify(r)}`);
  assert.equal(r.content?.[0]?.text, provider.user.login, 'whoami returns the provider login');
  return r;
}

/** The MCP server never received a TE (in any header), and every bearer it got was a TI. */
function assertOnlyTIs(routePath) {
  const mcp = mcpOf(routePath);
  const tes = [...sessions.values()].flatMap(tesOf);
  assert.ok(tes.length > 0, 'the SDK client holds TEs');
  const issued = new Set(provider.issued.map((i) => i.accessToken));
  for (const r of mcp.requests.filter((x) => x.path === '/mcp')) {
    const headerText = JSON.stringify(r.headers);
    for (const te of tes) {
      assert.ok(!headerText.includes(te) && !headerText.includes(te.split('.')[2]), `${routePath}: the MCP server received a TE (${r.method} ${r.rpcMethod})`);
    }
    assert.ok(r.bearer && issued.has(r.bearer), `${routePath}: every request to the MCP server carries a TI the provider issued (${r.method} ${r.rpcMethod}: ${r.bearer ? 'unknown bearer' : 'no bearer'})`);
  }
  for (const b of provider.userBearers) {
    assert.ok(b && issued.has(b) && !tes.includes(b), 'the provider\'s /user saw only TIs');
  }
}

/** Every request that reached the MCP server carried one assertion, verified against the gateway's JWKS. */
function assertAssertions(routePath, te) {
  const mcp = mcpOf(routePath);
  const claimsOfTe = decodeJwt(te).payload;
  const mcpRequests = mcp.requests.filter((x) => x.path === '/mcp');
  assert.ok(mcpRequests.length > 0, 'requests reached the MCP server');
  for (const r of mcpRequests) {
    assert.ok(r.assertion?.ok, `${routePath}: x-mcpgate-assertion verifies (${r.method} ${r.rpcMethod}): ${r.assertion?.error}`);
    const c = r.assertion.claims;
    assert.equal(c.aud, gw.route(routePath).url, 'assertion aud is the route URL');
    assert.equal(c.iss, gw.issuer);
    assert.equal(c.sub, claimsOfTe.sub, 'assertion sub is the user');
    assert.equal(c.email, USER.email);
    assert.deepEqual(c.groups, USER.groups);
    assert.equal(c.exp - c.iat, 300, 'assertion lifetime 5 minutes');
    assert.equal(r.assertion.header.typ, 'JWT');
  }
}

test('the SDK client signs in (gateway sign-in and consent, then the provider\'s consent); whoami reaches the MCP server with the TI, never the TE', { timeout: 120_000 }, async (t) => {
  const s = await signIn('/github', { expectSignIn: true });
  const te = s.auth.tokens().access_token;
  const teClaims = decodeJwt(te).payload;
  assert.equal(teClaims.aud, gw.route('/github').url, 'the TE is for the route');

  // What the gateway asked the provider for.
  const clientId = oauthClientOf('/github');
  const ask = provider.authorizeRequests.find((r) => r.clientId === clientId);
  assert.ok(ask, 'the provider saw an authorization request with the route\'s client_id');
  assert.equal(ask.redirectUri, gw.upstreamCallbackUrl, 'redirect_uri is <issuer>/.mcpgate/upstream/callback');
  assert.deepEqual(ask.scope.split(/[ ,]+/).filter(Boolean), ['read:user'], 'scopes as configured');
  assert.ok(ask.state && ask.state.length >= 16, 'a state of at least 16 characters');
  t.diagnostic(`provider authorize request: PKCE ${ask.codeChallengeMethod ?? 'not sent'}, extra params ${JSON.stringify(ask.extra)}`);
  const exchange = provider.requestsOf(clientId).filter((r) => r.grantType === 'authorization_code');
  assert.equal(exchange.length, 1, 'one code exchange at the provider');
  assert.equal(exchange[0].status, 200, `code exchange at the provider: ${JSON.stringify(exchange[0])}`);

  await whoami(s);
  const mcp = mcpOf('/github');
  assert.ok(mcp.requests.some((r) => r.tool === 'whoami' && r.status === 200), 'the whoami call reached the MCP server');
  assertOnlyTIs('/github');

  // A copy of the assertion header sent by the client never reaches the server.
  const forged = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'mallory', aud: gw.route('/github').url })).toString('base64url')}.`;
  const before = mcp.requests.length;
  const res = await mcpInitialize(gw.route('/github').url, te, { 'x-mcpgate-assertion': forged });
  assert.equal(res.status, 200, `initialize with the TE: ${describe(res)}`);
  const forwarded = mcp.requests.slice(before).filter((r) => r.path === '/mcp');
  assert.equal(forwarded.length, 1, 'the initialize reached the MCP server');
  assert.ok(!JSON.stringify(forwarded[0].headers).includes(forged), 'the client\'s x-mcpgate-assertion was removed');
  assertAssertions('/github', te);
  t.diagnostic(`browser pages: ${s.auth.authorizations.at(-1).result.steps.map((st) => `${st.kind}@${new URL(st.url).host}`).join(' -> ')}`);
});

test('an assertion is never accepted as a bearer token (typ JWT, not at+jwt), even on the route it names', async () => {
  const mcp = mcpOf('/github');
  const assertion = mcp.requests.map((r) => r.headers['x-mcpgate-assertion']).find(Boolean);
  assert.ok(assertion, 'the MCP server received an assertion');
  const { header, payload } = decodeJwt(assertion);
  assert.equal(header.typ, 'JWT');
  assert.equal(payload.aud, gw.route('/github').url, 'an assertion for /github');
  const before = mcp.requests.length;
  for (const routePath of ['/github', '/github-params']) {
    const res = await mcpInitialize(gw.route(routePath).url, assertion);
    assert.equal(res.status, 401, `${routePath}: an assertion as bearer is refused: ${describe(res)}`);
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
  }
  assert.equal(mcp.requests.length, before, 'nothing reached the MCP server');
});

test('the TI expires and is refreshed at the provider without the client noticing', { timeout: 60_000 }, async () => {
  const s = sessions.get('/github');
  assert.ok(s?.client, 'signed in by the previous test');
  const mcp = mcpOf('/github');
  const clientId = oauthClientOf('/github');
  const oldBearer = mcp.bearers().at(-1);
  assert.ok(oldBearer, 'the MCP server saw a TI');
  const sdkLogBefore = s.log.length;
  const savedBefore = s.auth.savedTokens.length;
  const refreshesBefore = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token').length;

  await sleep(PAST_EXPIRY_MS);
  assert.ok(!provider.validAccessTokens().includes(oldBearer), 'the first TI has expired at the provider');
  await whoami(s);

  const refreshes = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token').slice(refreshesBefore);
  assert.ok(refreshes.length >= 1, 'the token service refreshed the TI at the provider');
  assert.ok(refreshes.every((r) => r.status === 200), `refreshes succeeded: ${JSON.stringify(refreshes)}`);
  assert.ok(refreshes.every((r) => r.authStyle === 'header'), `auth_style header: HTTP Basic on refresh too: ${JSON.stringify(refreshes)}`);
  const newBearer = mcp.bearers().at(-1);
  assert.notEqual(newBearer, oldBearer, 'the MCP server received a new TI');
  assert.ok(provider.validAccessTokens().includes(newBearer), 'the new TI is live at the provider');
  const fromRefresh = provider.issued.filter((i) => i.grant === 'refresh_token').map((i) => i.accessToken);
  assert.ok(fromRefresh.includes(newBearer), 'the new TI came from the refresh grant');
  const sdkCalls = s.log.slice(sdkLogBefore);
  assert.ok(sdkCalls.every((e) => e.status < 400), `the client saw no error: ${show(sdkCalls)}`);
  assert.ok(!sdkCalls.some((e) => e.path.endsWith('/oauth/token')), `the client did not refresh its TE: ${show(sdkCalls)}`);
  assert.equal(s.auth.savedTokens.length, savedBefore, 'the client\'s tokens did not change');
  assertOnlyTIs('/github');
});

/**
 * The provider refuses the TI's refresh: the client's next call gets 401, the SDK's TE refresh
 * is refused (invalid_grant), it starts a new authorization, which goes through the provider's
 * consent again; then the call works.
 */
async function refusedRefreshReauthorizes(t, mode) {
  const s = sessions.get('/github');
  assert.ok(s?.client, 'signed in by the previous tests');
  const mcp = mcpOf('/github');
  const clientId = oauthClientOf('/github');
  await whoami(s); // a fresh TI, then let it expire
  const te = s.auth.tokens().access_token;
  const sdkLogBefore = s.log.length;
  const authorizationsBefore = s.auth.authorizations.length;
  const providerRequestsBefore = provider.requestsOf(clientId).length;
  const mcpBefore = mcp.requests.length;

  provider.refuseRefresh(mode);
  try {
    await sleep(PAST_EXPIRY_MS);
    const outcome = await s.client.callTool({ name: 'whoami', arguments: {} }).then((r) => ({ result: r }), (e) => ({ error: e }));
    const sdkCalls = s.log.slice(sdkLogBefore);
    assert.ok(outcome.error instanceof UnauthorizedError,
      `the call must end in a new authorization (UnauthorizedError), got ${outcome.error ? `${outcome.error.constructor.name}: ${outcome.error.message}` : `a result ${JSON.stringify(outcome.result)}`}; client calls:\n  ${show(sdkCalls)}`);
    const refused = provider.requestsOf(clientId).slice(providerRequestsBefore).filter((r) => r.grantType === 'refresh_token');
    assert.ok(refused.length >= 1 && refused.every((r) => r.refused === mode), `the token service tried the refresh and the provider refused it (${mode}): ${JSON.stringify(refused)}`);
  } finally {
    provider.refuseRefresh(null);
  }
  const sdkCalls = s.log.slice(sdkLogBefore);
  const challenge = sdkCalls.find((e) => e.path === '/github' && e.status === 401);
  assert.ok(challenge, `the client's call got 401: ${show(sdkCalls)}`);
  assert.equal(challenge.sentBearer, te, 'with its still valid TE');
  assert.match(challenge.wwwAuthenticate ?? '', /error="invalid_token"/, 'WWW-Authenticate error="invalid_token"');
  assert.ok(challenge.wwwAuthenticate.includes(`resource_metadata="${gw.route('/github').resourceMetadataUrl}"`), `WWW-Authenticate names the resource metadata: ${challenge.wwwAuthenticate}`);
  let body;
  try {
    body = JSON.parse(challenge.errorBody);
  } catch {
    body = undefined;
  }
  assert.equal(body?.error, 'upstream_authorization_required', `401 body: ${challenge.errorBody}`);
  assert.equal(body?.connect_url, gw.route('/github').connectUrl, 'connect_url');
  const teRefresh = sdkCalls.filter((e) => e.path.endsWith('/oauth/token') && e.grantType === 'refresh_token');
  assert.equal(teRefresh.length, 1, `the SDK tried its refresh token once: ${show(sdkCalls)}`);
  assert.equal(teRefresh[0].status, 400, 'the TE refresh is refused …');
  assert.match(teRefresh[0].errorBody, /invalid_grant/, '… with invalid_grant (the upstream token is gone)');
  assert.ok(mcp.requests.slice(mcpBefore).every((r) => r.path !== '/mcp'), 'nothing reached the MCP server meanwhile');
  assert.equal(s.auth.authorizations.length, authorizationsBefore + 1, 'the SDK started one new authorization');
  assert.ok(s.auth.invalidations.includes('tokens'), 'the SDK dropped its tokens');

  const code = checkAuthorization(s);
  await s.transport.finishAuth(code);
  await connect(s);
  await whoami(s);
  assertOnlyTIs('/github');
  t.diagnostic(`re-authorization pages: ${s.auth.authorizations.at(-1).result.steps.map((st) => `${st.kind}@${new URL(st.url).host}`).join(' -> ')}`);
}

test('the provider refuses the refresh (HTTP 400 invalid_grant): 401 to the client, the SDK re-authorizes through the provider\'s consent, then works', { timeout: 120_000 }, async (t) => {
  await refusedRefreshReauthorizes(t, 'invalid_grant');
});

test('GitHub\'s own refusal (HTTP 200 with error bad_refresh_token) is a refusal too', { timeout: 120_000 }, async (t) => {
  await refusedRefreshReauthorizes(t, 'bad_refresh_token');
});

test('the provider is down: the tool call fails with a JSON-RPC error naming the upstream (not a bare 502); the token survives', { timeout: 60_000 }, async () => {
  const s = sessions.get('/github');
  assert.ok(s?.client, 'signed in by the previous tests');
  const clientId = oauthClientOf('/github');
  await whoami(s);
  const te = s.auth.tokens().access_token;
  const authorizationsBefore = s.auth.authorizations.length;
  const sdkLogBefore = s.log.length;
  provider.down(true);
  try {
    await sleep(PAST_EXPIRY_MS);
    const outcome = await s.client.callTool({ name: 'whoami', arguments: {} }).then((r) => ({ result: r }), (e) => ({ error: e }));
    const sdkCalls = s.log.slice(sdkLogBefore);
    assert.ok(outcome.error instanceof McpError,
      `a JSON-RPC error, got ${outcome.error ? `${outcome.error.constructor.name}: ${outcome.error.message}` : JSON.stringify(outcome.result)}; client calls:\n  ${show(sdkCalls)}`);
    assert.equal(outcome.error.code, -32003, `JSON-RPC error code -32003: ${outcome.error.message}`);
    assert.match(outcome.error.message, /upstream|provider|unavailable/i, 'the message names the upstream provider outage');
    const post = sdkCalls.filter((e) => e.method === 'POST' && e.path === '/github');
    assert.ok(post.length >= 1 && post.every((e) => e.status === 200), `the error came as a JSON-RPC answer (HTTP 200), not a 5xx: ${show(sdkCalls)}`);

    // A request without a body (the SSE GET) gets 503 JSON.
    const get = await request(gw.route('/github').url, { headers: { authorization: `Bearer ${te}`, accept: 'text/event-stream' } });
    assert.equal(get.status, 503, `GET while the provider is down: ${describe(get)}`);
    assert.equal(typeof get.json?.error, 'string', `503 JSON body with an error code: ${get.text.slice(0, 300)}`);
    assert.match(get.json.error_description ?? get.json.error, /upstream|provider/i, `the 503 names the upstream provider: ${get.text.slice(0, 300)}`);
  } finally {
    provider.down(false);
  }
  await whoami(s);
  assert.equal(s.auth.authorizations.length, authorizationsBefore, 'no new authorization: the stored upstream token was kept');
  const lastRefresh = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token').at(-1);
  assert.equal(lastRefresh?.status, 200, 'once the provider is back the refresh works');
});

test('auth_style params: the client secret goes in the form body, on the code exchange and on refresh', { timeout: 120_000 }, async () => {
  const s = await signIn('/github-params');
  await whoami(s);
  const clientId = oauthClientOf('/github-params');
  const ask = provider.authorizeRequests.find((r) => r.clientId === clientId);
  assert.deepEqual(ask.scope.split(/[ ,]+/).filter(Boolean).sort(), ['read:org', 'read:user'], 'both scopes requested');
  await sleep(PAST_EXPIRY_MS);
  await whoami(s);
  const mine = provider.requestsOf(clientId);
  assert.ok(mine.some((r) => r.grantType === 'authorization_code' && r.status === 200), `code exchange: ${JSON.stringify(mine)}`);
  assert.ok(mine.some((r) => r.grantType === 'refresh_token' && r.status === 200), `refresh: ${JSON.stringify(mine)}`);
  assert.ok(mine.every((r) => r.authStyle === 'params'), `every token request of the params route used client_id/client_secret in the body: ${JSON.stringify(mine.map((r) => r.authStyle))}`);
  const headerRoute = provider.requestsOf(oauthClientOf('/github'));
  assert.ok(headerRoute.length >= 2 && headerRoute.every((r) => r.authStyle === 'header'), `every token request of the header route used HTTP Basic: ${JSON.stringify(headerRoute.map((r) => r.authStyle))}`);
  assertOnlyTIs('/github-params');
  assertAssertions('/github-params', s.auth.tokens().access_token);
});

test('endpoints discovered from the MCP server\'s protected-resource metadata', { timeout: 120_000 }, async () => {
  const mcp = mcpOf('/github-discover');
  const s = await signIn('/github-discover');
  await whoami(s);
  assert.ok(mcp.requests.some((r) => r.path.startsWith('/.well-known/oauth-protected-resource') && r.status === 200),
    `the gateway read the MCP server's protected-resource metadata: ${mcp.requests.map((r) => `${r.method} ${r.path} ${r.status}`).join(', ')}`);
  assert.ok(provider.log.some((l) => l.includes('GET /.well-known/oauth-authorization-server')), 'and the provider\'s authorization-server metadata');
  const clientId = oauthClientOf('/github-discover');
  assert.ok(provider.requestsOf(clientId).some((r) => r.grantType === 'authorization_code' && r.status === 200), 'the code was exchanged at the discovered token endpoint');
  assertOnlyTIs('/github-discover');
});

test('a classic OAuth App (tokens without expiry and without refresh token) works, and is never refreshed', { timeout: 120_000 }, async () => {
  const s = session('/github-classic');
  await assert.rejects(connect(s), (e) => e instanceof UnauthorizedError);
  const { result } = s.auth.authorizations.at(-1);
  assert.ok(result.callback, `authorization: ${JSON.stringify(result.steps)} ${result.bodyText?.slice(0, 300)}`);
  assert.ok(result.steps.some((st) => st.kind === 'consent' && st.url.startsWith(classic.origin)), 'consent at the classic provider');
  await s.transport.finishAuth(result.callback.searchParams.get('code'));
  await connect(s);
  const r = await s.client.callTool({ name: 'whoami', arguments: {} });
  assert.equal(r.content?.[0]?.text, 'alice-classic');
  await sleep(PAST_EXPIRY_MS);
  const again = await s.client.callTool({ name: 'whoami', arguments: {} });
  assert.equal(again.content?.[0]?.text, 'alice-classic', 'still works later');
  const clientId = oauthClientOf('/github-classic');
  assert.deepEqual(classic.requestsOf(clientId).map((x) => `${x.grantType} ${x.status}`), ['authorization_code 200'], 'one code exchange, no refresh');
  const issued = new Set(classic.issued.map((i) => i.accessToken));
  assert.ok(mcpOf('/github-classic').bearers().every((b) => issued.has(b)), 'the MCP server saw only the classic TI');
});

test('the MCP server answers 401 to the TI (the user revoked the app): the client is sent back through authorization', { timeout: 120_000 }, async (t) => {
  const s = sessions.get('/github');
  assert.ok(s?.client, 'signed in by the previous tests');
  const mcp = mcpOf('/github');
  await whoami(s);
  const sdkLogBefore = s.log.length;
  const authorizationsBefore = s.auth.authorizations.length;
  const mcpBefore = mcp.requests.length;
  provider.expireAll();

  const outcome = await s.client.callTool({ name: 'whoami', arguments: {} }).then((r) => ({ result: r }), (e) => ({ error: e }));
  const sdkCalls = s.log.slice(sdkLogBefore);
  const rejected = mcp.requests.slice(mcpBefore).filter((r) => r.path === '/mcp');
  assert.ok(rejected.some((r) => r.status === 401), `the MCP server answered 401 to the dead TI: ${rejected.map((r) => `${r.rpcMethod} ${r.status}`).join(', ')}`);
  assert.ok(outcome.error instanceof UnauthorizedError,
    `the client must be sent through authorization (UnauthorizedError), got ${outcome.error ? `${outcome.error.constructor.name}: ${outcome.error.message}` : JSON.stringify(outcome.result)}; client calls:\n  ${show(sdkCalls)}`);
  const challenge = sdkCalls.find((e) => e.path === '/github' && e.status === 401);
  assert.ok(challenge, `the client got 401: ${show(sdkCalls)}`);
  assert.match(challenge.wwwAuthenticate ?? '', /error="invalid_token"/);
  assert.match(challenge.errorBody ?? '', /upstream_authorization_required/, `401 body: ${challenge.errorBody}`);
  assert.equal(s.auth.authorizations.length, authorizationsBefore + 1, 'one new authorization');

  const code = checkAuthorization(s);
  await s.transport.finishAuth(code);
  await connect(s);
  await whoami(s);
  assertOnlyTIs('/github');
  t.diagnostic(`pages: ${s.auth.authorizations.at(-1).result.steps.map((st) => `${st.kind}@${new URL(st.url).host}`).join(' -> ')}`);
});

test('no TE, TI, refresh token or client secret of the run in any log', async (t) => {
  const ours = new Map();
  for (const [routePath, s] of sessions) {
    s.auth.savedTokens.filter(Boolean).forEach((tok, i) => {
      ours.set(`TE ${routePath} #${i + 1}`, tok.access_token);
      ours.set(`gateway refresh token ${routePath} #${i + 1}`, tok.refresh_token);
    });
  }
  assert.ok(ours.size >= 4, 'the run produced TEs');
  const providerSecrets = new Map([...provider.secrets(), ...[...classic.secrets()].map(([k, v]) => [`classic ${k}`, v])]);
  assert.ok([...providerSecrets.keys()].some((k) => k.startsWith('provider access token')), 'the run produced TIs');
  const { leaks, files, checked } = gw.findLeaks(ours, providerSecrets, gw.secrets());
  assert.ok(files.includes('envoy.log') && files.includes('token-service.log'), `logs: ${files}`);
  assert.deepEqual(leaks, [], `no secret in any log (checked ${checked} in ${files.join(', ')})`);
  const codes = gw.findLeaks(provider.secrets({ codes: true }));
  t.diagnostic(`provider authorization codes in logs: ${codes.leaks.filter((l) => l.includes('code')).join(', ') || 'none'}`);
});
