// Two token-service replicas sharing one PostgreSQL behind Envoy (docs/operations.md, "Running
// several token-service replicas"): `envoy.token_service_endpoints`, round robin, each replica
// started with `serve --listen --internal-listen` on one gateway file, both at once on empty key
// files. Every flow is asserted to have been served by both replicas (their request logs, written by
// the token service's telemetry middleware at debug level; health checks left out):
//   - on the machine's PostgreSQL (127.0.0.1:5432, database test) in a fresh schema, dropped at the
//     end: the SDK OAuth flow, upstream OAuth (sign-in, provider consent, callback, TI refresh),
//     a client route connecting a provider from the app; 1000 concurrent redemptions of one refresh
//     token (one wins, the family is revoked); a replica SIGKILLed while it holds the refresh lease
//     of an upstream token (the other takes over after `upstream_refresh_lease`);
//   - on a private PostgreSQL (lib/postgres.mjs) killed and started again mid-run: requests fail
//     cleanly (503 temporarily_unavailable) while it is down, then work again on the same replicas.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { startGateway, USER } from '../lib/gateway.mjs';
import { startGitHubProvider } from '../lib/github-provider.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider, recordingFetch } from '../lib/provider.mjs';
import { request, describe } from '../lib/net.mjs';
import { pkce, randomState, registerClient, authorizeUrl, tokenRequest, decodeJwt, mcpInitialize } from '../lib/oauth.mjs';
import { run, isRunning } from '../lib/procs.mjs';

const SYSTEM_PG = 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `mcpgate_e2e_replicas_${crypto.randomBytes(5).toString('hex')}`;
const withSchema = (url, schema) => `${url}?options=-c%20search_path%3D${schema}`;
const EXPIRES_IN = 4; // the provider's access-token lifetime: TIs are refreshed 2 s after issue
const CONCURRENT_REDEMPTIONS = 1000;
// The request lines of the token service's telemetry middleware, and the replicas' audit events.
const RUST_LOG = 'info,sqlx=warn,mcpgate_token_service::telemetry=debug';

let provider;
let gw;
let callback;
let browser;
let schemaCreated = false;

async function systemPsql(sql) {
  const r = await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', '5432', '-U', 'postgres', '-d', 'test', '-c', sql],
    { timeoutMs: 30_000, env: { ...process.env, PGCONNECT_TIMEOUT: '5' } });
  if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

before(async () => {
  await systemPsql(`CREATE SCHEMA ${SCHEMA}`);
  schemaCreated = true;
  provider = await startGitHubProvider({ expiresIn: EXPIRES_IN });
  gw = await startGateway('18-replicas', {
    provider,
    replicas: 2,
    databaseUrl: withSchema(SYSTEM_PG, SCHEMA),
    rustLog: RUST_LOG,
    accessTokenLifetime: '600s',
    // A short lease so the takeover after a killed replica fits the test; it must exceed the
    // provider request timeout.
    tokenServiceSettings: { upstream_request_timeout: '2s', upstream_refresh_lease: '3s' },
    routes: [
      { path: '/a', name: 'Everything' },
      { path: '/github', name: 'GitHub', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user'] } },
      { path: '/github-app', name: 'GitHub for the app', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user'] } },
      { path: '/app', name: 'Chat app', client: true },
    ],
  });
  provider.logFile = path.join(gw.paths.logs, 'github-provider.log');
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
}, { timeout: 900_000 });

after(async () => {
  await browser?.close();
  await callback?.close();
  await gw?.stop();
  await provider?.stop();
  if (schemaCreated) await systemPsql(`DROP SCHEMA ${SCHEMA} CASCADE`);
});

// --- which replica served what ----------------------------------------------------------------

const HEALTH = /path=(\/\.mcpgate\/healthz|\/readyz|\/healthz)\}/;

/** Requests each replica has received so far (health checks left out), from its log. */
function served(g = gw) {
  return g.replicas.map((r) => {
    const text = fs.existsSync(path.join(g.paths.logs, `${r.logName}.log`)) ? fs.readFileSync(path.join(g.paths.logs, `${r.logName}.log`), 'utf8') : '';
    return text.split('\n').filter((l) => l.includes('finished processing request') && !HEALTH.test(l));
  });
}

/** Runs `flow` and asserts that every replica served some of its requests; returns the flow's value. */
async function onBothReplicas(what, flow, g = gw) {
  const before = served(g).map((lines) => lines.length);
  const value = await flow();
  const lines = served(g).map((l, i) => l.slice(before[i]));
  const paths = lines.map((ls) => [...new Set(ls.map((l) => /path=([^}\s]+)/.exec(l)?.[1]))].join(' '));
  for (const [i, ls] of lines.entries()) {
    assert.ok(ls.length > 0, `${what}: replica ${i} served none of its requests (replica paths: ${JSON.stringify(paths)})`);
  }
  return { value, counts: lines.map((l) => l.length), paths };
}

/** Envoy's view of the internal cluster: for each replica, requests in flight. */
async function internalActive(g = gw) {
  const r = await fetch(`http://127.0.0.1:${g.ports.admin}/clusters?format=json`);
  const body = await r.json();
  const cluster = body.cluster_statuses.find((c) => c.name === 'mcpgate_token_service_internal');
  return g.replicas.map((rep) => {
    const host = cluster?.host_statuses?.find((h) => h.address?.socket_address?.port_value === rep.internalPort);
    return Number(host?.stats?.find((s) => s.name === 'rq_active')?.value ?? 0);
  });
}

// --- the flows --------------------------------------------------------------------------------

function sdkClient(auth, routePath, log) {
  const client = new Client({ name: 'mcpgate-e2e-replicas', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.route(routePath).url), { authProvider: auth, fetch: recordingFetch(log) });
  return { client, transport };
}

/** The SDK's authorization of a route (401, discovery, registration, browser, code), then a connected client. */
async function sdkAuthorize(auth, routePath) {
  const log = [];
  const first = sdkClient(auth, routePath, log);
  await assert.rejects(first.client.connect(first.transport), (e) => e instanceof UnauthorizedError, 'the first connect stops at the authorization redirect');
  await first.client.close().catch(() => {});
  const { result } = auth.authorizations.at(-1);
  assert.ok(result.callback, `the browser must end on the callback; pages: ${JSON.stringify(result.steps)}; last page (${result.status}): ${result.bodyText?.slice(0, 300)}`);
  assert.equal(result.callback.searchParams.get('error'), null, `callback error: ${result.callback.searchParams.get('error_description')}`);
  await first.transport.finishAuth(result.callback.searchParams.get('code'));
  const second = sdkClient(auth, routePath, log);
  await second.client.connect(second.transport);
  return { ...second, log, steps: result.steps.map((s) => s.kind) };
}

test('both replicas started at once on empty key files and agree on one signing key', async () => {
  for (const r of gw.replicas) assert.ok(isRunning(r.proc), `replica ${r.index} runs`);
  const keys = await Promise.all(gw.replicas.map(async (r) => (await (await fetch(`http://127.0.0.1:${r.port}/.well-known/jwks.json`)).json()).keys.map((k) => k.kid)));
  assert.deepEqual(keys[0], keys[1], 'the same JWKS on both replicas');
  const left = fs.readdirSync(gw.dir).filter((f) => f.endsWith('.tmp'));
  assert.deepEqual(left, [], 'no temporary key file is left');
  const created = gw.replicas.map((r) => /generated a new Ed25519 signing key/.test(gw.log(r.logName)));
  assert.equal(created.filter(Boolean).length, 1, `exactly one replica generated the key: ${created}`);
});

test('the SDK OAuth flow (registration, sign-in, consent, code, tools, refresh) across both replicas', { timeout: 60_000 }, async () => {
  const auth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER });
  const { counts, paths } = await onBothReplicas('SDK flow', async () => {
    const s = await sdkAuthorize(auth, '/a');
    assert.ok(s.steps.includes('sign_in') && s.steps.includes('consent'), `sign-in and consent pages: ${s.steps}`);
    const message = `through two replicas ${Date.now()}`;
    const echo = await s.client.callTool({ name: 'echo', arguments: { message } });
    assert.equal(echo.content?.[0]?.text, `Echo: ${message}`);
    await s.client.close();
    // Refresh rotation, several times in a row: consecutive grants land on alternating replicas.
    let tokens = auth.tokens();
    for (let i = 0; i < 4; i += 1) {
      const r = await tokenRequest(gw, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: auth.clientInformation().client_id, resource: gw.route('/a').url });
      assert.equal(r.status, 200, `refresh ${i + 1}: ${describe(r)}`);
      tokens = r.json;
    }
    const init = await mcpInitialize(gw.route('/a').url, tokens.access_token);
    assert.equal(init.status, 200, `the last refreshed token works: ${describe(init)}`);
  });
  assert.ok(counts.every((n) => n > 2), `both replicas served the flow: ${counts} (${JSON.stringify(paths)})`);
});

let githubSession;
test('upstream OAuth: sign-in, provider consent and callback, and TI refresh across both replicas', { timeout: 60_000 }, async () => {
  const auth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER, clientName: 'mcpgate e2e replicas github' });
  await onBothReplicas('upstream OAuth', async () => {
    const before = provider.authorizeRequests.length;
    const s = await sdkAuthorize(auth, '/github');
    assert.equal(provider.authorizeRequests.length - before, 1, 'the gateway sent the browser to the provider once');
    githubSession = s;
    const who = await s.client.callTool({ name: 'whoami', arguments: {} });
    assert.equal(who.content?.[0]?.text, provider.user.login);
    const clientId = gw.route('/github').upstreamOAuth2.clientId;
    const refreshesBefore = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token' && r.status === 200).length;
    await sleep(EXPIRES_IN * 1000 + 500);
    const again = await s.client.callTool({ name: 'whoami', arguments: {} });
    assert.equal(again.content?.[0]?.text, provider.user.login, 'whoami after the TI expired');
    const refreshes = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token' && r.status === 200).length;
    assert.ok(refreshes > refreshesBefore, 'the token service refreshed the TI');
  });
});

test('client route: the app connects a provider through the gateway and calls a tool, across both replicas', { timeout: 60_000 }, async () => {
  const app = gw.route('/app').app;
  const page = await browser.context.newPage();
  try {
    await onBothReplicas('client route', async () => {
      const onApp = (u) => u.startsWith(app.returnUrl);
      const signed = await browser.drive(page, { url: app.returnUrl, username: USER.username, password: USER.password, until: onApp });
      assert.ok(signed.arrived, `the browser comes back to the app: ${JSON.stringify(signed.steps)}`);
      const before = provider.authorizeRequests.length;
      const r = await browser.drive(page, {
        start: () => page.click('li.server[data-name="GitHub for the app"] a.connect'),
        username: USER.username, password: USER.password, until: onApp,
      });
      assert.ok(r.arrived, `connect comes back to the app: ${JSON.stringify(r.steps)}; last page (${r.status}): ${r.bodyText?.slice(0, 300)}`);
      assert.equal(provider.authorizeRequests.length - before, 1, 'one authorization at the provider');
      const shown = await page.$$eval('li.server', (els) => els.map((e) => ({ ...e.dataset })));
      assert.equal(shown.find((s) => s.name === 'GitHub for the app')?.connected, 'true', `connected: ${JSON.stringify(shown)}`);
      const u = new URL(`${app.returnUrl}call`);
      u.searchParams.set('url', gw.route('/github-app').url);
      u.searchParams.set('tool', 'whoami');
      u.searchParams.set('args', '{}');
      const call = await (await browser.context.request.get(u.href, { maxRedirects: 0 })).json();
      assert.ok(call.ok, `whoami from the app: ${JSON.stringify(call)}`);
      assert.equal(call.result.content[0].text, provider.user.login);
    });
  } finally {
    await page.close().catch(() => {});
  }
});

test(`${CONCURRENT_REDEMPTIONS} concurrent redemptions of one refresh token over both replicas: one wins, the family is revoked`, { timeout: 90_000 }, async (t) => {
  const client = await registerClient(gw, { redirectUris: [callback.url] });
  const { verifier, challenge } = pkce();
  const state = randomState();
  const url = authorizeUrl(gw, { clientId: client.client_id, redirectUri: callback.url, challenge, state, resource: gw.route('/a').url });
  const result = await browser.authorize(url, { ...USER, callbackUrl: callback.url });
  assert.ok(result.callback, `authorization: ${JSON.stringify(result.steps)}`);
  const exchange = await tokenRequest(gw, {
    grant_type: 'authorization_code', code: result.callback.searchParams.get('code'), redirect_uri: callback.url,
    client_id: client.client_id, code_verifier: verifier, resource: gw.route('/a').url,
  });
  assert.equal(exchange.status, 200, `code exchange: ${describe(exchange)}`);
  const rt = exchange.json.refresh_token;

  const started = Date.now();
  const { value: answers, counts } = await onBothReplicas('concurrent redemptions', () => Promise.all(
    Array.from({ length: CONCURRENT_REDEMPTIONS }, () => tokenRequest(gw, { grant_type: 'refresh_token', refresh_token: rt, client_id: client.client_id })
      .catch((e) => ({ status: 0, text: String(e), json: undefined }))),
  ));
  t.diagnostic(`${CONCURRENT_REDEMPTIONS} redemptions in ${Date.now() - started} ms; requests per replica ${counts}`);
  const byOutcome = {};
  for (const a of answers) {
    const k = `${a.status} ${a.json?.error ?? ''}`.trim();
    byOutcome[k] = (byOutcome[k] ?? 0) + 1;
  }
  const winners = answers.filter((a) => a.status === 200);
  assert.equal(winners.length, 1, `exactly one redemption succeeds: ${JSON.stringify(byOutcome)}`);
  assert.equal(answers.filter((a) => a.status === 400 && a.json?.error === 'invalid_grant').length, CONCURRENT_REDEMPTIONS - 1,
    `every other one gets invalid_grant: ${JSON.stringify(byOutcome)}`);
  assert.ok(counts.every((n) => n > 100), `both replicas took a share: ${counts}`);

  // Reuse revoked the family: the winner's new refresh token fails, its access token is listed.
  const won = winners[0].json;
  const again = await tokenRequest(gw, { grant_type: 'refresh_token', refresh_token: won.refresh_token, client_id: client.client_id });
  assert.equal(again.status, 400, `the winner's refresh token after the reuse: ${describe(again)}`);
  assert.equal(again.json?.error, 'invalid_grant');
  const { jti } = decodeJwt(won.access_token).payload;
  for (const r of gw.replicas) {
    const list = await request(`http://127.0.0.1:${r.internalPort}/internal/v1/revocations`, { headers: { authorization: `Bearer ${gw.internalApiSecret}` } });
    assert.equal(list.status, 200, `revocation list of replica ${r.index}: ${describe(list)}`);
    assert.ok(list.json.jtis.includes(jti), `replica ${r.index} lists the winner's access token as revoked`);
  }
});

test('a replica killed while it holds the upstream refresh lease: the other takes the refresh over after the lease', { timeout: 60_000 }, async (t) => {
  const s = githubSession;
  assert.ok(s, 'the upstream OAuth test connected an SDK client');
  const clientId = gw.route('/github').upstreamOAuth2.clientId;
  // The TI is due: its refresh is held at the provider once a replica has sent it.
  await sleep(EXPIRES_IN * 1000);
  provider.holdRefreshes();
  let released = false;
  try {
    const call = s.client.callTool({ name: 'whoami', arguments: {} }).then((r) => ({ r }), (e) => ({ e }));
    let holder;
    await (async () => {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        if (provider.heldRefreshes > 0) {
          const active = await internalActive();
          const busy = active.flatMap((n, i) => (n > 0 ? [i] : []));
          if (busy.length === 1) {
            [holder] = busy;
            return;
          }
        }
        await sleep(50);
      }
      throw new Error(`no refresh reached the provider (held ${provider.heldRefreshes}, internal requests in flight ${await internalActive()})`);
    })();
    const lease = await systemPsql(`SELECT count(*) FROM ${SCHEMA}.upstream_tokens WHERE lease_owner IS NOT NULL AND lease_until IS NOT NULL`);
    assert.equal(lease, '1', 'the replica holds the lease in the row');
    t.diagnostic(`replica ${holder} holds the refresh lease; killing it`);
    await gw.killReplica(holder);
    provider.releaseRefreshes();
    released = true;
    const first = await call;
    t.diagnostic(`the call in flight: ${first.e ? `failed (${first.e.message})` : 'answered'}`);
    const survivor = 1 - holder;
    const refreshesBefore = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token' && r.status === 200).length;
    const deadline = Date.now() + 20_000;
    let who;
    let lastError;
    while (Date.now() < deadline) {
      try {
        who = await s.client.callTool({ name: 'whoami', arguments: {} });
        if (who.content?.[0]?.text === provider.user.login) break;
      } catch (e) {
        lastError = e;
      }
      who = undefined;
      await sleep(500);
    }
    assert.ok(who, `the MCP call succeeds on retry: ${lastError?.message}`);
    const refreshes = provider.requestsOf(clientId).filter((r) => r.grantType === 'refresh_token' && r.status === 200).length;
    assert.ok(refreshes > refreshesBefore, 'the surviving replica refreshed the TI at the provider');
    assert.match(gw.log(gw.replicas[survivor].logName), /event="?upstream_refresh"?[^_]/, 'the survivor logged the refresh');
    assert.equal(await systemPsql(`SELECT count(*) FROM ${SCHEMA}.upstream_tokens WHERE lease_owner IS NOT NULL`), '0', 'no lease is left');
  } finally {
    if (!released) provider.releaseRefreshes();
  }
});

test('no secret in any log', () => {
  const { leaks, checked } = gw.findLeaks(gw.secrets(), provider.secrets());
  assert.ok(checked > 0);
  assert.deepEqual(leaks, []);
});

test('PostgreSQL restarted under two replicas: requests fail cleanly while it is down, then work again without restarting them', { timeout: 90_000 }, async (t) => {
  const pg = await startPostgres();
  let g2;
  const b2 = await Browser.launch(gw.dir);
  try {
    g2 = await startGateway('18-replicas-pg-restart', { replicas: 2, databaseUrl: pg.url, rustLog: RUST_LOG, accessTokenLifetime: '600s' });
    const pids = g2.replicas.map((r) => r.proc.pid);
    const client = await registerClient(g2, { redirectUris: [callback.url] });
    const { verifier, challenge } = pkce();
    const url = authorizeUrl(g2, { clientId: client.client_id, redirectUri: callback.url, challenge, state: randomState(), resource: g2.route('/a').url });
    const result = await b2.authorize(url, { ...USER, callbackUrl: callback.url });
    assert.ok(result.callback, `authorization: ${JSON.stringify(result.steps)}`);
    const exchange = await tokenRequest(g2, {
      grant_type: 'authorization_code', code: result.callback.searchParams.get('code'), redirect_uri: callback.url,
      client_id: client.client_id, code_verifier: verifier, resource: g2.route('/a').url,
    });
    assert.equal(exchange.status, 200, `code exchange: ${describe(exchange)}`);
    let rt = exchange.json.refresh_token;
    const refresh = () => tokenRequest(g2, { grant_type: 'refresh_token', refresh_token: rt, client_id: client.client_id });

    await pg.kill();
    const downStarted = Date.now();
    const [down, health] = await Promise.all([
      Promise.all([refresh(), refresh()]),
      Promise.all(g2.replicas.map((r) => request(`http://127.0.0.1:${r.port}/.mcpgate/healthz`))),
    ]);
    t.diagnostic(`answers while the database was down took ${Date.now() - downStarted} ms`);
    for (const d of down) {
      assert.equal(d.status, 503, `while the database is down: ${describe(d)}`);
      assert.equal(d.json?.error, 'temporarily_unavailable', `a clean OAuth error: ${d.text.slice(0, 200)}`);
      assert.doesNotMatch(d.text, /panicked|backtrace|sqlx|postgres/i, 'nothing of the cause is returned');
    }
    for (const [i, h] of health.entries()) assert.equal(h.status, 503, `replica ${i} health while the database is down: ${describe(h)}`);

    await pg.start();
    const before = served(g2).map((l) => l.length);
    const deadline = Date.now() + 25_000;
    let ok = 0;
    const since = () => served(g2).map((l, i) => l.slice(before[i]).filter((x) => x.includes('/.mcpgate/oauth/token')).length);
    while ((ok < 4 || since().some((n) => n === 0)) && Date.now() < deadline) {
      const r = await refresh();
      if (r.status === 200) {
        ok += 1;
        rt = r.json.refresh_token;
        const init = await mcpInitialize(g2.route('/a').url, r.json.access_token);
        assert.equal(init.status, 200, `the new token works through the filter: ${describe(init)}`);
      } else {
        assert.equal(r.json?.error, 'temporarily_unavailable', `only a clean 503 until the pool reconnects: ${describe(r)}`);
        await sleep(250);
      }
    }
    assert.ok(ok >= 4, 'refreshes succeed again after the restart');
    assert.ok(since().every((n) => n > 0), `both replicas answered token requests after the restart: ${since()}`);
    assert.deepEqual(g2.replicas.map((r) => (isRunning(r.proc) ? r.proc.pid : null)), pids, 'the same replica processes');
    for (const r of g2.replicas) {
      assert.doesNotMatch(g2.log(r.logName), /panicked/, `replica ${r.index} never panicked`);
    }
    t.diagnostic('both replicas recovered without a restart');
  } finally {
    await b2.close();
    await g2?.stop();
    await pg.stop();
  }
});
