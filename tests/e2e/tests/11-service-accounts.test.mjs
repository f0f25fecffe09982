// Service accounts (docs/delegation.md): `mcpgate-token-service service-account create` (CLI, same
// config and database as the running token service) prints a token, or with --client-credentials a
// client for the client_credentials grant. Their TEs work through the filter with the official SDK
// client, are subject to the route policy, are audited in Envoy's access log as sub sa:<id>, and
// stop working within 10 seconds of `service-account revoke`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startGateway } from '../lib/gateway.mjs';
import { request, describe } from '../lib/net.mjs';
import { decodeJwt, mcpInitialize } from '../lib/oauth.mjs';

const POLICY = { deny: { or: [{ mcp_tool: { is: 'get-env' } }] } };
const REVOCATION_BOUND_MS = 10_000;
const RUN = Date.now().toString(36);

let gw;
const seen = new Map(); // label -> secret (for the log scan)

before(async () => {
  gw = await startGateway('11-service-accounts', {
    accessTokenLifetime: '600s',
    routes: [
      { path: '/svc', name: 'Service route', upstream: 'everything', policy: POLICY },
      { path: '/other', name: 'Other route', upstream: 'everything' },
    ],
  });
}, { timeout: 900_000 });

after(async () => {
  await gw?.stop();
});

/** Output of `service-account create`: a JWT, or client_id / client_secret (JSON or `key: value` lines). */
function parseCreated(stdout) {
  let json;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  const field = (name) => json?.[name] ?? new RegExp(`${name}\\s*[:=]\\s*"?([^\\s",]+)`).exec(stdout)?.[1];
  return {
    token: json?.token ?? json?.access_token ?? /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/.exec(stdout)?.[0],
    clientId: field('client_id'),
    clientSecret: field('client_secret'),
  };
}

async function createServiceAccount({ name, email, groups = [], routes, clientCredentials = false }) {
  const args = ['service-account', 'create', '--name', name, '--email', email,
    ...groups.flatMap((g) => ['--group', g]),
    ...routes.flatMap((r) => ['--route', gw.route(r).url]),
    ...(clientCredentials ? ['--client-credentials'] : [])];
  const r = await gw.cli(args);
  assert.equal(r.code, 0, `service-account create exits 0; stderr: ${r.stderr.slice(0, 1000)}`);
  const created = parseCreated(r.stdout);
  if (created.token) seen.set(`service-account token ${name}`, created.token);
  if (created.clientSecret) seen.set(`client_credentials secret ${name}`, created.clientSecret);
  return created;
}

async function revoke(name) {
  const r = await gw.cli(['service-account', 'revoke', name]);
  assert.equal(r.code, 0, `service-account revoke exits 0; stderr: ${r.stderr.slice(0, 1000)}`);
}

async function sdkClient(routePath, token, userAgent) {
  const client = new Client({ name: 'mcpgate-e2e-service-account', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.route(routePath).url), {
    requestInit: { headers: { Authorization: `Bearer ${token}`, 'User-Agent': userAgent } },
  });
  await client.connect(transport);
  return client;
}

/** Access-log records (JSON lines of envoy.log) with that User-Agent, waiting for Envoy's flush. */
async function accessRecords(userAgent, atLeast) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = fs.readFileSync(path.join(gw.paths.logs, 'envoy.log'), 'utf8');
    const records = text.split('\n').filter((l) => l.startsWith('{')).map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return undefined;
      }
    }).filter((r) => r?.user_agent === userAgent);
    if (records.length >= atLeast || Date.now() > deadline) return records;
    await sleep(250);
  }
}

/** The token works, calls and denials go through the SDK client, and the access log shows the account. */
async function exercise(t, { token, email, tag }) {
  const { payload } = decodeJwt(token);
  assert.match(payload.sub, /^sa:./, `sub is sa:<id>: ${payload.sub}`);
  assert.ok([payload.aud].flat().includes(gw.route('/svc').url), `aud contains the route: ${JSON.stringify(payload.aud)}`);
  assert.equal(payload.email, email, 'email claim');

  const userAgent = `mcpgate-e2e-sa/${RUN}/${tag}`;
  const client = await sdkClient('/svc', token, userAgent);
  try {
    const message = `service account ${tag}`;
    const echo = await client.callTool({ name: 'echo', arguments: { message } });
    assert.equal(echo.content?.[0]?.text, `Echo: ${message}`, 'an allowed tool works');
    await assert.rejects(client.callTool({ name: 'get-env', arguments: {} }),
      (e) => e instanceof McpError && e.code === -32001, 'the policy denies get-env with the JSON-RPC error -32001');
  } finally {
    await client.close();
  }
  const other = await mcpInitialize(gw.route('/other').url, token);
  assert.equal(other.status, 401, `a route the account was not given refuses the token: ${describe(other)}`);

  const records = await accessRecords(userAgent, 2);
  const echo = records.find((r) => r.mcp_method === 'tools/call' && r.mcp_target === 'echo');
  const denied = records.find((r) => r.mcp_method === 'tools/call' && r.mcp_target === 'get-env');
  assert.ok(echo && denied, `access-log records of both calls: ${JSON.stringify(records).slice(0, 1500)}`);
  for (const [r, decision] of [[echo, 'allow'], [denied, 'deny']]) {
    assert.equal(r.sub, payload.sub, 'audit sub is sa:<id>');
    assert.equal(r.email, email, 'audit email');
    assert.equal(r.decision, decision, `audit decision for ${r.mcp_target}`);
    assert.ok(['Service route', gw.route('/svc').url].includes(r.route), `audit route: ${r.route}`);
  }
  t.diagnostic(`access log (${tag}): ${JSON.stringify(echo)}`);
  return payload;
}

/** GET /internal/v1/revocations on the token service's internal listener. */
function revocations(secret = gw.internalApiSecret, base = `http://127.0.0.1:${gw.ports.internal}`) {
  const headers = secret === null ? {} : { authorization: `Bearer ${secret}` };
  return request(`${base}/internal/v1/revocations`, { headers });
}

/** Revokes an account and polls until its token is refused; the refusal must come within 10 s. */
async function revokedWithinBound(t, name, token) {
  const url = gw.route('/svc').url;
  const live = await mcpInitialize(url, token);
  assert.equal(live.status, 200, `the token works before the revocation: ${describe(live)}`);
  const started = Date.now();
  await revoke(name);
  let last;
  for (;;) {
    last = await mcpInitialize(url, token);
    if (last.status === 401 || Date.now() - started > REVOCATION_BOUND_MS + 5000) break;
    await sleep(200);
  }
  const elapsed = Date.now() - started;
  assert.equal(last.status, 401, `the revoked token is refused (last answer after ${elapsed} ms: ${describe(last)})`);
  assert.ok(elapsed <= REVOCATION_BOUND_MS, `refused within ${REVOCATION_BOUND_MS} ms of the revoke command (took ${elapsed} ms)`);
  assert.match(last.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
  // It stays refused.
  await sleep(500);
  assert.equal((await mcpInitialize(url, token)).status, 401, 'and stays refused');
  const list = await revocations();
  assert.equal(list.status, 200, `internal revocations list: ${describe(list)}`);
  assert.ok(list.json.subjects.includes(decodeJwt(token).payload.sub), `the revoked account's subject is listed: ${JSON.stringify(list.json.subjects)}`);
  t.diagnostic(`${name}: refused ${elapsed} ms after the revoke command started`);
}

let tokenAccount;
test('service-account create prints a token; the SDK client calls tools with it under the route policy; the access log shows the account', { timeout: 60_000 }, async (t) => {
  tokenAccount = { name: `batch-${RUN}`, email: 'batch@svc.example' };
  const created = await createServiceAccount({ ...tokenAccount, groups: ['robots'], routes: ['/svc'] });
  assert.ok(created.token, 'the command printed a token');
  const { header, payload } = decodeJwt(created.token);
  assert.equal(header.typ, 'at+jwt', 'a TE-shaped JWT');
  assert.equal(payload.client_id, 'mcpgate:service-account');
  assert.equal(payload.iss, gw.issuer);
  assert.deepEqual(payload.groups, ['robots'], 'groups claim');
  tokenAccount.token = created.token;
  await exercise(t, { token: created.token, email: tokenAccount.email, tag: 'token' });

  const list = await gw.cli(['service-account', 'list']);
  assert.equal(list.code, 0, `service-account list: ${list.stderr}`);
  assert.ok(list.stdout.includes(tokenAccount.name), `list shows the account: ${list.stdout}`);
  assert.ok(!list.stdout.includes(created.token), 'list does not print the token again');
});

test('service-account revoke: the token is refused within 10 seconds', { timeout: 60_000 }, async (t) => {
  assert.ok(tokenAccount?.token, 'created by the previous test');
  await revokedWithinBound(t, tokenAccount.name, tokenAccount.token);
});

let ccAccount;
test('--client-credentials: the client gets a TE at /token (client_credentials) that works the same way', { timeout: 60_000 }, async (t) => {
  ccAccount = { name: `cc-${RUN}`, email: 'cc@svc.example' };
  const created = await createServiceAccount({ ...ccAccount, routes: ['/svc'], clientCredentials: true });
  assert.ok(created.clientId && created.clientSecret, 'the command printed a client_id and a client_secret');
  Object.assign(ccAccount, created);
  const issued = await ccToken(ccAccount, gw.route('/svc').url);
  assert.equal(issued.status, 200, `client_credentials grant: ${describe(issued)}`);
  assert.match(issued.json.token_type ?? '', /^bearer$/i);
  assert.equal(issued.json.refresh_token, undefined, 'no refresh token for client_credentials');
  seen.set('client_credentials TE', issued.json.access_token);
  ccAccount.token = issued.json.access_token;
  const payload = await exercise(t, { token: issued.json.access_token, email: ccAccount.email, tag: 'client-credentials' });
  assert.equal([payload.aud].flat().length, 1, 'the TE is for the one resource asked for');

  const wrongResource = await ccToken(ccAccount, gw.route('/other').url);
  assert.equal(wrongResource.status, 400, `a resource the account was not given is refused: ${describe(wrongResource)}`);
  const wrongSecret = await ccToken({ ...ccAccount, clientSecret: `${ccAccount.clientSecret}x` }, gw.route('/svc').url);
  assert.equal(wrongSecret.status, 401, `a wrong secret is refused: ${describe(wrongSecret)}`);
  assert.equal(wrongSecret.json?.error, 'invalid_client');
});

test('--client-credentials: revoke refuses the issued TE within 10 seconds, and no new one is issued', { timeout: 60_000 }, async (t) => {
  assert.ok(ccAccount?.token, 'created by the previous test');
  await revokedWithinBound(t, ccAccount.name, ccAccount.token);
  const again = await ccToken(ccAccount, gw.route('/svc').url);
  assert.ok(again.status === 400 || again.status === 401, `the revoked client gets no token: ${describe(again)}`);
  assert.ok(['invalid_client', 'invalid_grant', 'unauthorized_client'].includes(again.json?.error), `error: ${again.text.slice(0, 200)}`);
});

/** client_credentials with HTTP Basic client authentication (RFC 6749 2.3.1: servers MUST support it). */
function ccToken({ clientId, clientSecret }, resource) {
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
  return request(`${gw.origin}/.mcpgate/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${basic}` },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }).toString(),
  });
}

test('the internal API: only on the internal listener, only with the secret', async () => {
  const ok = await revocations();
  assert.equal(ok.status, 200, `with the secret: ${describe(ok)}`);
  assert.ok(Array.isArray(ok.json?.jtis) && Array.isArray(ok.json?.subjects), `{jtis, subjects}: ${ok.text.slice(0, 200)}`);
  for (const [what, secret] of [['no Authorization', null], ['a wrong secret', `${gw.internalApiSecret.slice(0, -1)}x`], ['an empty bearer', ''], ['a TE-shaped token', tokenAccount?.token ?? 'x']]) {
    const r = await revocations(secret);
    assert.equal(r.status, 401, `${what}: ${describe(r)}`);
  }
  const badCredentials = await request(`http://127.0.0.1:${gw.ports.internal}/internal/v1/credentials`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ route: gw.route('/svc').url, token: tokenAccount?.token ?? 'x' }),
  });
  assert.equal(badCredentials.status, 401, `credentials without the secret: ${describe(badCredentials)}`);
  // Neither Envoy's public listener nor the token service's public listener serves it.
  for (const base of [gw.origin, `http://127.0.0.1:${gw.ports.tokenService}`]) {
    const r = await revocations(gw.internalApiSecret, base);
    assert.notEqual(r.status, 200, `${base}/internal/v1/revocations must not be served: ${describe(r)}`);
    assert.ok(!r.text.includes('"subjects"'), `${base}: no revocation list`);
    const c = await request(`${base}/internal/v1/session`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.internalApiSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session: 'x', route: gw.route('/svc').url }),
    });
    assert.ok(c.status === 404 || c.status === 405 || c.status === 401 || c.status === 403, `${base}/internal/v1/session must not be served: ${describe(c)}`);
  }
});

test('no service-account token, client secret or TE of the run in any log', () => {
  assert.ok(seen.size >= 3, `the run produced the secrets (${[...seen.keys()].join(', ')})`);
  const { leaks, files, checked } = gw.findLeaks(seen, gw.secrets());
  assert.ok(files.includes('envoy.log') && files.includes('token-service.log'), `logs: ${files}`);
  assert.deepEqual(leaks, [], `no secret in any log (checked ${checked} in ${files.join(', ')})`);
});
