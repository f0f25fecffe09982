// Operations (docs/operations.md): the token service's Prometheus metrics, /healthz and /readyz on
// its internal listener, and one trace across Envoy and the token service.
//
// One gateway on a private PostgreSQL (lib/postgres.mjs) with `telemetry.tracing` pointing at the
// local OTLP collector (lib/otlp-collector.mjs), and one upstream-OAuth route (/github, in front of
// the GitHub-like provider stand-in), where every MCP request with a token the filter has not
// cached makes the filter call the token service's /internal/v1/credentials.
//
// 1. After an SDK OAuth flow (dynamic registration, sign-in, gateway and provider consent, the
//    authorization_code grant), a tool call and a refresh grant, /metrics shows the counters moved.
// 2. An MCP request sent with a traceparent the test made: the collector receives Envoy's span
//    (service mcpgate-envoy) and the token service's `POST /internal/v1/credentials` span (service
//    mcpgate-token-service) in that trace, both children of the test's span (siblings: the filter
//    copies the request's traceparent onto its call-out; Envoy gives call-outs no span).
// 3. /readyz answers 503 while the database is stopped and 200 once it is back; /healthz stays 200.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { startGateway, USER } from '../lib/gateway.mjs';
import { startGitHubProvider } from '../lib/github-provider.mjs';
import { startOtlpCollector } from '../lib/otlp-collector.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider, recordingFetch } from '../lib/provider.mjs';
import { describe } from '../lib/net.mjs';
import { mcpInitialize } from '../lib/oauth.mjs';

let provider;
let collector;
let pg;
let gw;
let callback;
let browser;
let client;
let freshToken; // an access token from a refresh grant, not yet used (so not in the filter's caches)

before(async () => {
  provider = await startGitHubProvider({ expiresIn: 3600 });
  collector = await startOtlpCollector();
  pg = await startPostgres();
  gw = await startGateway('19-operations', {
    provider,
    accessTokenLifetime: '600s',
    databaseUrl: pg.url,
    telemetry: { metrics: true, tracing: { otlp_endpoint: collector.endpoint, sampling: '100%' } },
    routes: [
      { path: '/github', name: 'GitHub', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user'] } },
    ],
  });
  provider.logFile = path.join(gw.paths.logs, 'github-provider.log');
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
}, { timeout: 900_000 });

after(async () => {
  await client?.close().catch(() => {});
  await browser?.close();
  await callback?.close();
  await gw?.stop();
  await pg?.stop();
  await collector?.stop();
  await provider?.stop();
});

const internal = (p) => `http://127.0.0.1:${gw.ports.internal}${p}`;

/** The OpenMetrics samples of /metrics: [{name, labels, value}]. */
async function scrape() {
  const r = await fetch(internal('/metrics'));
  assert.equal(r.status, 200, '/metrics answers without the internal secret');
  assert.match(r.headers.get('content-type'), /^application\/openmetrics-text/);
  const text = await r.text();
  assert.ok(text.endsWith('# EOF\n'), 'an OpenMetrics exposition ends with # EOF');
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { text, samples };
}

/** The sum of the samples named `name` whose labels include `labels` (0 when none). */
function value(scraped, name, labels = {}) {
  return scraped.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

test('after an SDK OAuth flow, a tool call and a refresh, the token service metrics moved', { timeout: 180_000 }, async () => {
  const before = await scrape();
  // The SDK client: 401, discovery, dynamic registration, sign-in, consent at the gateway and at
  // the provider, the authorization_code grant, then the tool call.
  const auth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER, clientName: 'mcpgate e2e operations' });
  const log = [];
  let transport;
  const connect = async () => {
    await client?.close().catch(() => {});
    client = new Client({ name: 'mcpgate-e2e-operations', version: '1.0.0' });
    transport = new StreamableHTTPClientTransport(new URL(gw.route('/github').url), { authProvider: auth, fetch: recordingFetch(log) });
    await client.connect(transport);
  };
  await assert.rejects(connect(), (e) => e instanceof UnauthorizedError, 'the first connect stops at the authorization redirect');
  const { result } = auth.authorizations.at(-1);
  const code = result.callback?.searchParams.get('code');
  assert.ok(code, `the browser reached the SDK's callback with a code: ${JSON.stringify(result.steps)}`);
  await transport.finishAuth(code);
  await connect();
  const who = await client.callTool({ name: 'whoami', arguments: {} });
  assert.equal(who.content?.[0]?.text, provider.user.login, 'the tool call went through with the provider token');

  // A refresh grant with the SDK's refresh token (a public client: client_id in the body).
  const tokens = auth.tokens();
  const info = auth.clientInformation();
  const refreshed = await fetch(`${gw.origin}/.mcpgate/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: info.client_id }),
  });
  assert.equal(refreshed.status, 200, 'the refresh grant succeeds');
  freshToken = (await refreshed.json()).access_token;

  const after = await scrape();
  const delta = (name, labels) => value(after, name, labels) - value(before, name, labels);
  assert.equal(delta('mcpgate_client_registrations_total', { kind: 'dynamic', result: 'success' }), 1, 'one dynamic registration');
  assert.equal(delta('mcpgate_token_grants_total', { grant_type: 'authorization_code', result: 'success' }), 1, 'one code redeemed');
  assert.equal(delta('mcpgate_token_grants_total', { grant_type: 'refresh_token', result: 'success' }), 1, 'one refresh');
  assert.equal(delta('mcpgate_sign_ins_total', { provider: 'local', result: 'success' }), 1, 'one sign-in at the built-in directory');
  const tokenRequests = delta('mcpgate_http_request_duration_seconds_count', { listener: 'public', route: '/.mcpgate/oauth/token', method: 'POST', status_class: '2xx' });
  assert.equal(tokenRequests, 2, 'the token endpoint answered twice (code, refresh)');
  assert.ok(delta('mcpgate_http_request_duration_seconds_sum', { listener: 'public', route: '/.mcpgate/oauth/token' }) > 0, 'their latency was recorded');
  assert.ok(delta('mcpgate_http_request_duration_seconds_count', { listener: 'internal', route: '/internal/v1/credentials', status_class: '2xx' }) >= 1,
    'the filter fetched credentials from the internal API');
  assert.equal(value(after, 'mcpgate_build_info', { version: '0.1.0' }), 1, 'build info');
  assert.ok(value(after, 'mcpgate_db_pool_max_connections') > 0, 'the pool gauges are read at scrape time');
  // Bounded labels: no user, client id or token in any label.
  for (const secret of [USER.username, USER.email, info.client_id, tokens.access_token, tokens.refresh_token, freshToken]) {
    assert.ok(!after.text.includes(secret), 'no user, client id or token in the metrics');
  }
  assert.notEqual((await fetch(`${gw.origin}/metrics`)).status, 200, 'the public listener does not serve /metrics');
});

test('one MCP call is one trace: Envoy\'s span and the token service\'s credentials span, siblings under the caller\'s span', { timeout: 120_000 }, async () => {
  assert.ok(freshToken, 'the previous test left a fresh access token (its credentials are not cached yet)');
  collector.clear();
  const traceId = crypto.randomBytes(16).toString('hex');
  const parentId = crypto.randomBytes(8).toString('hex');
  const traceparent = `00-${traceId}-${parentId}-01`;
  const res = await mcpInitialize(gw.route('/github').url, freshToken, { traceparent, tracestate: 'mcpgate-e2e=19' });
  assert.equal(res.status, 200, `the MCP call succeeds: ${describe(res)}`);

  const isEnvoy = (s) => s.traceId === traceId && s.resource['service.name'] === 'mcpgate-envoy';
  const isCredentials = (s) => s.traceId === traceId && s.resource['service.name'] === 'mcpgate-token-service'
    && s.name === 'POST /internal/v1/credentials';
  // Both batch their spans (Envoy and the token service's exporter flush every 5 s by default).
  const summary = () => JSON.stringify(collector.spans().map((s) => ({ service: s.resource['service.name'], name: s.name, traceId: s.traceId, parent: s.parentSpanId })));
  const wait = (pred) => collector.waitForSpans(pred, 20_000).catch((e) => assert.fail(`${e.message}; spans: ${summary()}`));
  const [envoy] = await wait(isEnvoy);
  const [credentials] = await wait(isCredentials);
  assert.ok(envoy, `Envoy's span in the test's trace: ${summary()}`);
  assert.ok(credentials, `the token service's credentials span in the test's trace: ${summary()}`);
  assert.equal(envoy.parentSpanId, parentId, 'Envoy continues the caller\'s span');
  assert.equal(credentials.parentSpanId, parentId, 'the token service continues the caller\'s span (the filter copied the traceparent)');
  assert.equal(credentials.kind, 2, 'a server span');
  assert.equal(credentials.attributes['http.route'], '/internal/v1/credentials');
  assert.equal(credentials.attributes['http.response.status_code'], 200);
  assert.equal(credentials.traceState, 'mcpgate-e2e=19', 'the tracestate came along');
  // No token in any span.
  assert.ok(!JSON.stringify(collector.spans()).includes(freshToken), 'no token in any span');
});

test('/readyz follows the database; /healthz stays 200', { timeout: 120_000 }, async () => {
  const status = async (p) => (await fetch(internal(p))).status;
  assert.equal(await status('/healthz'), 200);
  assert.equal(await status('/readyz'), 200);
  const poll = async (want, what, ms) => {
    const deadline = Date.now() + ms;
    let last;
    while (Date.now() < deadline) {
      const r = await fetch(internal('/readyz'));
      last = { status: r.status, body: await r.text() };
      if (r.status === want) return last;
      await sleep(250);
    }
    assert.fail(`${what}: /readyz answered ${last?.status} ${last?.body}`);
  };

  await pg.shutdown();
  const down = await poll(503, 'not ready once the database is stopped', 20_000);
  assert.match(JSON.parse(down.body).reason, /^database /, 'the reason names the database');
  assert.equal(await status('/healthz'), 200, 'alive while not ready');

  await pg.start();
  await poll(200, 'ready again once the database is back', 30_000);
  assert.equal(await status('/healthz'), 200);
});
