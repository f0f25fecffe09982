// The audit trail in Envoy's access log, and no token in any log.
//
// A confidential client registers (client secret), the user signs in through the browser, the
// client gets a TE and a refresh token and refreshes once; then a mix of allowed, denied and
// rejected MCP requests is sent with that TE and with forged tokens of other identities. For each
// MCP request the access log (JSON lines on Envoy's stdout, captured in logs/envoy.log) must hold
// exactly one record with every audit field present and correct; redacted argument keys read
// "[redacted]" and the arguments are capped. Finally no token of the run (bearer strings, refresh
// tokens, the client secret) may appear in any log file (Envoy, token service, MCP server).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import zlib from 'node:zlib';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, USER } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { request, describe } from '../lib/net.mjs';
import { pkce, randomState, authorizeUrl, tokenRequest, decodeJwt } from '../lib/oauth.mjs';
import { tokenForger, send, rpc, call } from '../lib/mcp-http.mjs';

const ROUTE = '/audit';
const ROUTE_NAME = 'audit-route';
const MAX_ARGUMENT_BYTES = 256;
const AUDIT_FIELDS = ['request_id', 'time', 'sub', 'email', 'client_id', 'route', 'mcp_method', 'mcp_target',
  'mcp_arguments', 'decision', 'reason', 'status', 'duration_ms'];

let gw;
let callback;
let browser;
let forge;
const secrets = new Map(); // label -> secret string that must never be logged
const started = Date.now();

before(async () => {
  gw = await startGateway('08-audit', {
    accessTokenLifetime: '600s',
    routes: [{
      path: ROUTE,
      name: ROUTE_NAME,
      upstream: 'recorder',
      upstreamPath: '/json/mcp',
      policy: { deny: { and: [{ mcp_tool: { starts_with: 'admin_' } }] } },
      maxRequestBytes: 65536,
      audit: { redact: ['password', '$.auth.token'], max_argument_bytes: MAX_ARGUMENT_BYTES },
    }],
  });
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
  forge = await tokenForger(gw);
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await callback?.close();
  await gw?.stop();
});

/** A confidential client, a browser sign-in, a code exchange and one refresh: real tokens of the run. */
async function realTokens() {
  const reg = await request(`${gw.origin}/.mcpgate/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'mcpgate e2e audit client',
      redirect_uris: [callback.url],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    }),
  });
  assert.ok([200, 201].includes(reg.status), `registration: ${describe(reg)}`);
  const { client_id: clientId, client_secret: clientSecret } = reg.json;
  assert.ok(clientSecret, `a confidential client gets a client_secret: ${reg.text}`);
  secrets.set('client secret', clientSecret);

  const { verifier, challenge } = pkce();
  const state = randomState();
  const resource = gw.route(ROUTE).url;
  const url = authorizeUrl(gw, { clientId, redirectUri: callback.url, challenge, state, resource });
  const result = await browser.authorize(url, { ...USER, callbackUrl: callback.url });
  assert.ok(result.callback, `authorization ends on the callback: ${JSON.stringify(result.steps)} ${result.bodyText?.slice(0, 300)}`);
  const code = result.callback.searchParams.get('code');
  const issued = await tokenRequest(gw, {
    grant_type: 'authorization_code', code, redirect_uri: callback.url, client_id: clientId,
    client_secret: clientSecret, code_verifier: verifier, resource,
  });
  assert.equal(issued.status, 200, `code exchange: ${describe(issued)}`);
  secrets.set('access token #1', issued.json.access_token);
  secrets.set('refresh token #1', issued.json.refresh_token);
  const refreshed = await tokenRequest(gw, {
    grant_type: 'refresh_token', refresh_token: issued.json.refresh_token, client_id: clientId,
    client_secret: clientSecret, resource,
  });
  assert.equal(refreshed.status, 200, `refresh: ${describe(refreshed)}`);
  secrets.set('access token #2', refreshed.json.access_token);
  secrets.set('refresh token #2', refreshed.json.refresh_token);
  return { clientId, accessToken: refreshed.json.access_token, firstAccessToken: issued.json.access_token };
}

/** Access-log records (JSON lines of envoy.log). */
function accessLog() {
  const text = fs.readFileSync(path.join(gw.paths.logs, 'envoy.log'), 'utf8');
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
      return { line: l, record: JSON.parse(l) };
    } catch {
      return undefined;
    }
  }).filter(Boolean);
}

let sampleLine;
let cases = [];

test('a mix of allowed, denied and rejected MCP requests with a real TE (after refresh) and a forged service token', async (t) => {
  const real = await realTokens();
  const realClaims = decodeJwt(real.accessToken).payload;
  const svcClaims = { sub: 'svc-batch-7', email: 'svc@company.com', client_id: 'e2e-service-account' };
  const svcToken = forge(ROUTE, svcClaims);
  secrets.set('forged bearer', svcToken);

  const longNote = 'n'.repeat(2000);
  const runId = Date.now().toString(36);
  // Each request is tagged with a unique User-Agent, which the access log records.
  cases = [
    {
      tag: 'init', token: real.accessToken, claims: realClaims,
      body: rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'audit', version: '0' } }, 1),
      expect: { status: 200, decision: 'allow', method: 'initialize', target: null },
    },
    {
      tag: 'list', token: real.accessToken, claims: realClaims, body: rpc('tools/list', {}, 2),
      expect: { status: 200, decision: 'allow', method: 'tools/list', target: null },
    },
    {
      tag: 'echo', token: real.accessToken, claims: realClaims,
      body: call('echo', { message: 'hi', password: 'hunter2-PLAINTEXT', auth: { token: 'tok-PLAINTEXT', user: 'u1' }, note: longNote }, 3),
      expect: { status: 200, decision: 'allow', method: 'tools/call', target: 'echo', redacted: ['hunter2-PLAINTEXT', 'tok-PLAINTEXT'], capped: true },
    },
    {
      tag: 'admin', token: svcToken, claims: svcClaims, body: call('admin_reset', { password: 'pw-PLAINTEXT', scope: 'all' }, 4),
      expect: { status: 200, decision: 'deny', method: 'tools/call', target: 'admin_reset', reason: /policy\.deny\.and\[0\]/, redacted: ['pw-PLAINTEXT'], rpcError: -32001 },
    },
    {
      tag: 'weather', token: svcToken, claims: svcClaims, body: call('get_weather', { city: 'Lyon' }, 5),
      expect: { status: 200, decision: 'allow', method: 'tools/call', target: 'get_weather', args: { city: 'Lyon' } },
    },
    {
      tag: 'dup', token: svcToken, claims: svcClaims,
      body: '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","name":"admin_delete"}}',
      expect: { status: 400, decision: 'reject', reason: /duplicate_key/ },
    },
    {
      // Redaction applies to keys after unescaping, at any depth, and to the configured path.
      tag: 'redact-tricks', token: svcToken, claims: svcClaims,
      body: '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search","arguments":{"p\\u0061ssword":"esc-PLAINTEXT","nested":{"list":[{"password":"deep-PLAINTEXT"}]},"auth":{"token":"path-PLAINTEXT"},"q":"x"}}}',
      expect: { status: 200, decision: 'allow', method: 'tools/call', target: 'search', redacted: ['esc-PLAINTEXT', 'deep-PLAINTEXT', 'path-PLAINTEXT'] },
    },
    {
      // The cap cuts on a character boundary: the record stays valid UTF-8 / JSON.
      tag: 'emoji', token: svcToken, claims: svcClaims, body: call('echo', { note: '\u{1F600}'.repeat(200) }, 10),
      expect: { status: 200, decision: 'allow', method: 'tools/call', target: 'echo', capped: true, noReplacementChar: true },
    },
    {
      tag: 'big', token: svcToken, claims: svcClaims, body: call('echo', { pad: 'p'.repeat(70_000) }, 7),
      expect: { status: 413, decision: 'reject', reason: /too_large/ },
    },
    {
      tag: 'gzip', token: real.accessToken, claims: realClaims, body: zlib.gzipSync(call('admin_reset', {}, 8)),
      headers: { 'content-encoding': 'gzip' },
      expect: { status: 415, decision: 'reject', reason: /content_encoding/ },
    },
    {
      tag: 'notify', token: real.accessToken, claims: realClaims,
      body: '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"admin_delete","arguments":{"id":"x"}}}',
      expect: { status: 403, decision: 'deny', method: 'tools/call', target: 'admin_delete', reason: /policy\.deny\.and\[0\]/ },
    },
  ];

  for (const c of cases) {
    c.userAgent = `mcpgate-e2e-audit/${runId}/${c.tag}`;
    gw.recorder.clear();
    c.res = await send(gw, { path: ROUTE, token: c.token, body: c.body, headers: { ...c.headers, 'user-agent': c.userAgent } });
    c.forwarded = gw.recorder.requests.slice();
  }
  for (const c of cases) {
    await t.test(`${c.tag}: answer ${c.expect.status} (${c.expect.decision})`, () => {
      assert.equal(c.res.status, c.expect.status, `${c.tag}: HTTP status, got ${c.res.status} ${c.res.text.slice(0, 300)}`);
      if (c.expect.rpcError) assert.equal(c.res.json?.error?.code, c.expect.rpcError, `${c.tag}: ${c.res.text.slice(0, 300)}`);
      assert.equal(c.forwarded.length, c.expect.decision === 'allow' ? 1 : 0, `${c.tag}: requests reaching the MCP server`);
    });
  }
});

test('access log: one complete audit record per MCP request, redacted and capped', async (t) => {
  assert.ok(cases.length > 0, 'the requests were sent');

  // Envoy's stdout access log may be flushed with a delay.
  let records = [];
  const deadline = Date.now() + 15_000;
  for (;;) {
    records = accessLog();
    if (cases.every((c) => records.some((r) => r.record.user_agent === c.userAgent)) || Date.now() > deadline) break;
    await sleep(250);
  }

  for (const c of cases) await t.test(`${c.tag}: audit record`, () => {
    const mine = records.filter((r) => r.record.user_agent === c.userAgent);
    assert.equal(mine.length, 1, `${c.tag}: exactly one access-log record (found ${mine.length})`);
    const { record, line } = mine[0];
    const what = `${c.tag}: access log ${line.slice(0, 600)}`;
    if (c.tag === 'admin') sampleLine = line;
    for (const f of AUDIT_FIELDS) assert.ok(f in record, `${what}: field ${f} present`);

    assert.equal(typeof record.request_id, 'string', `${what}: request_id`);
    assert.ok(record.request_id.length >= 8, `${what}: request_id`);
    if (c.forwarded.length === 1) {
      assert.equal(record.request_id, c.forwarded[0].headers['x-request-id'], `${what}: request_id is the x-request-id the MCP server received`);
    }
    if (c.res.json?.error?.data?.request_id) {
      assert.equal(record.request_id, c.res.json.error.data.request_id, `${what}: request_id is the one quoted in the denial`);
    }
    const time = Date.parse(record.time);
    assert.ok(time >= started - 60_000 && time <= Date.now() + 60_000, `${what}: time is a timestamp of this run`);
    assert.equal(record.sub, c.claims.sub, `${what}: sub`);
    assert.equal(record.email, c.claims.email, `${what}: email`);
    assert.equal(record.client_id, c.claims.client_id, `${what}: client_id`);
    assert.ok([ROUTE_NAME, gw.route(ROUTE).url].includes(record.route), `${what}: route is the route's name or URL`);
    assert.equal(record.decision, c.expect.decision, `${what}: decision`);
    assert.equal(typeof record.reason, 'string', `${what}: reason`);
    assert.ok(record.reason.length > 0, `${what}: reason not empty`);
    if (c.expect.reason) assert.match(record.reason, c.expect.reason, `${what}: reason`);
    assert.equal(String(record.status), String(c.expect.status), `${what}: status`);
    assert.ok(Number.isFinite(Number(record.duration_ms)) && Number(record.duration_ms) >= 0, `${what}: duration_ms`);
    if (c.expect.method !== undefined) assert.equal(record.mcp_method, c.expect.method, `${what}: mcp_method`);
    if (c.expect.target === null) {
      assert.ok([null, '', '-'].includes(record.mcp_target), `${what}: no mcp_target for ${c.expect.method}`);
    } else if (c.expect.target !== undefined) {
      assert.equal(record.mcp_target, c.expect.target, `${what}: mcp_target`);
    }
    if (c.expect.args) assert.deepEqual(JSON.parse(record.mcp_arguments), c.expect.args, `${what}: mcp_arguments`);
    for (const s of c.expect.redacted ?? []) {
      assert.ok(!line.includes(s), `${what}: the redacted value ${s} must not be logged`);
    }
    if (c.expect.redacted) {
      assert.equal(typeof record.mcp_arguments, 'string', `${what}: mcp_arguments`);
      assert.ok(record.mcp_arguments.includes('"[redacted]"'), `${what}: redacted keys read "[redacted]"`);
    }
    if (c.expect.noReplacementChar) {
      assert.ok(!record.mcp_arguments.includes('\uFFFD'), `${what}: no U+FFFD: the cut fell on a character boundary`);
      assert.ok(record.mcp_arguments.startsWith('{"note":"\u{1F600}'), `${what}: the arguments start as sent`);
    }
    if (c.expect.capped) {
      const bytes = Buffer.byteLength(record.mcp_arguments);
      assert.ok(bytes <= MAX_ARGUMENT_BYTES + 16, `${what}: mcp_arguments capped near ${MAX_ARGUMENT_BYTES} bytes (got ${bytes})`);
      assert.ok(bytes >= MAX_ARGUMENT_BYTES / 2, `${what}: mcp_arguments cut, not dropped (got ${bytes})`);
    }
  });
  if (sampleLine) {
    t.diagnostic(`sample access-log line: ${sampleLine}`);
    console.log(`sample access-log line:\n${sampleLine}`);
    fs.writeFileSync(path.join(gw.dir, 'sample-access-log-line.json'), `${sampleLine}\n`);
  }

});

test('no token of the run (bearer strings, refresh tokens, client secret) in any log file', async () => {
  forge.issued.forEach((tok, i) => secrets.set(`forged bearer #${i + 1}`, tok));
  assert.ok(secrets.size >= 6, `the run produced the secrets to look for (${[...secrets.keys()].join(', ')})`);
  const files = fs.readdirSync(gw.paths.logs).map((f) => path.join(gw.paths.logs, f));
  assert.ok(files.some((f) => f.endsWith('envoy.log')) && files.some((f) => f.endsWith('token-service.log')) && files.some((f) => f.endsWith('recorder.log')),
    `the run's logs: ${files.join(', ')}`);
  const leaks = [];
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    for (const [label, secret] of secrets) {
      if (!secret) continue;
      const needles = [secret];
      const parts = secret.split('.');
      if (parts.length === 3 && parts[2].length > 20) needles.push(parts[2]); // a JWT's signature alone
      if (needles.some((n) => text.includes(n))) leaks.push(`${label} in ${path.basename(file)}`);
    }
  }
  assert.deepEqual(leaks, [], `no token in any log file (checked ${secrets.size} secrets in ${files.map((f) => path.basename(f)).join(', ')})`);
});
