// MCP 2026-07-28 through Envoy with the built filter: the Mcp-Method, Mcp-Name and Mcp-Param-*
// headers are checked against the body (a mismatch is 400 with JSON-RPC -32020 HeaderMismatch and
// the request's id, and nothing reaches the server), Base64-sentinel values are decoded first; the
// methods the revision removed reach the server; a filtered list is `cacheScope: "private"`;
// local rejections carry the request's id; the access log names the method and target of a
// rejected request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway } from '../lib/gateway.mjs';
import { tokenForger, send, rpc, messagesOf } from '../lib/mcp-http.mjs';
import { RECORDER_TOOLS } from '../lib/recorder.mjs';

const V2026 = '2026-07-28';
const POLICY = {
  deny: {
    or: [
      { mcp_tool: { starts_with: 'admin_' } },
      { mcp_argument: { path: 'region', equals: 'forbidden-1' } },
    ],
  },
};

let gw;
let forge;
before(async () => {
  gw = await startGateway('21-mcp-2026', {
    accessTokenLifetime: '600s',
    routes: [
      { path: '/j', upstream: 'recorder', upstreamPath: '/json/mcp', policy: POLICY },
      { path: '/s', upstream: 'recorder', upstreamPath: '/sse/mcp', policy: POLICY },
    ],
  });
  forge = await tokenForger(gw);
}, { timeout: 900_000 });
after(async () => {
  await gw?.stop();
});

const b64 = (s) => `=?base64?${Buffer.from(s, 'utf8').toString('base64')}?=`;
const meta = { 'io.modelcontextprotocol/protocolVersion': V2026 };
const show = (res) => `${res.status} ${String(res.text).slice(0, 500)}`;
let uaCount = 0;
const userAgent = () => `mcpgate-e2e-21/${Date.now().toString(36)}-${++uaCount}`;

/** A 2026-07-28 request: the version header, the given metadata headers, and a tagged User-Agent. */
async function send2026(routePath, body, headers = {}) {
  const ua = userAgent();
  const res = await send(gw, {
    path: routePath,
    token: forge(routePath, { email: 'alice@company.com' }),
    body,
    headers: { 'mcp-protocol-version': V2026, 'user-agent': ua, ...headers },
    timeoutMs: 20_000,
  });
  return { res, ua };
}

const sqlCall = (args, id) => rpc('tools/call', { name: 'execute_sql', arguments: args, _meta: meta }, id);
const SQL_ARGS = { region: 'us-west1', query: 'SELECT 1', opts: { limit: 42 } };
const SQL_HEADERS = {
  'mcp-method': 'tools/call',
  'mcp-name': 'execute_sql',
  'mcp-param-region': 'us-west1',
  'Mcp-Param-Limit': '42',
};

/** Sends a request that must be refused as a header mismatch, echoing `id`, reaching nothing. */
async function expectMismatch(what, body, headers, id, routePath = '/j') {
  gw.recorder.clear();
  const { res, ua } = await send2026(routePath, body, headers);
  assert.equal(res.status, 400, `${what}: ${show(res)}`);
  assert.equal(res.json?.jsonrpc, '2.0', `${what}: a JSON-RPC error: ${show(res)}`);
  assert.deepEqual(res.json.id, id, `${what}: the request's id: ${show(res)}`);
  assert.equal(res.json.error?.code, -32020, `${what}: HeaderMismatch: ${show(res)}`);
  assert.match(res.json.error.message, /Header mismatch/, `${what}: ${show(res)}`);
  assert.equal(gw.recorder.requests.length, 0, `${what}: nothing reached the MCP server`);
  return ua;
}

test('a tools/list answer filtered for the user is cacheScope "private" (JSON and SSE); ttlMs is kept', async () => {
  for (const routePath of ['/j', '/s']) {
    gw.recorder.clear();
    const { res } = await send2026(routePath, rpc('tools/list', { _meta: meta }, 'l-1'), { 'mcp-method': 'tools/list' });
    assert.equal(res.status, 200, show(res));
    const msg = messagesOf(res).find((m) => m.id === 'l-1');
    assert.ok(msg, `the list answer: ${show(res)}`);
    const names = msg.result.tools.map((t) => t.name);
    assert.ok(!names.some((n) => n.startsWith('admin_')), `${routePath}: admin_ tools removed: ${names}`);
    assert.ok(names.includes('execute_sql') && names.includes('echo'), `${routePath}: allowed tools kept: ${names}`);
    assert.equal(msg.result.cacheScope, 'private', `${routePath}: filtered for one user: ${show(res)}`);
    assert.equal(msg.result.ttlMs, 60000, `${routePath}: ttlMs untouched`);
    assert.equal(msg.result.resultType, 'complete');
    assert.equal(gw.recorder.requests.length, 1);
  }
});

test('prompts/list and resources/list answers are private too; server/discover passes with the server\'s own scope', async () => {
  for (const method of ['prompts/list', 'resources/list']) {
    const { res } = await send2026('/j', rpc(method, { _meta: meta }, 2), { 'mcp-method': method });
    assert.equal(res.status, 200, show(res));
    assert.equal(res.json.result.cacheScope, 'private', `${method}: ${show(res)}`);
  }
  gw.recorder.clear();
  const { res } = await send2026('/j', rpc('server/discover', { _meta: meta }, 3), { 'mcp-method': 'server/discover' });
  assert.equal(res.status, 200, show(res));
  assert.deepEqual(res.json.result.supportedVersions, [V2026], show(res));
  assert.equal(res.json.result.cacheScope, 'public', 'no list was filtered: the server\'s value');
  assert.equal(gw.recorder.requests.length, 1, 'server/discover reached the server');
  // A discover answer that carries tools shows them filtered, like tools/list.
  const d = await send2026('/j', rpc('server/discover', { _meta: meta }, 4),
    { 'mcp-method': 'server/discover', 'x-recorder-discover-tools': '1' });
  assert.equal(d.res.status, 200, show(d.res));
  const names = d.res.json.result.tools.map((t) => t.name);
  assert.ok(names.includes('echo') && !names.some((n) => n.startsWith('admin_')), `filtered: ${names}`);
  assert.equal(d.res.json.result.cacheScope, 'private', show(d.res));
});

test('headers that match the body (plain and Base64 values) pass to the server', async () => {
  gw.recorder.clear();
  const { res } = await send2026('/j', sqlCall(SQL_ARGS, 10), SQL_HEADERS);
  assert.equal(res.status, 200, show(res));
  assert.match(res.json?.result?.content?.[0]?.text ?? '', /recorder called "execute_sql"/, show(res));
  // A value sent in the Base64 sentinel form is compared after decoding.
  const greek = { ...SQL_ARGS, region: 'εὐρώπη-1' };
  const r2 = await send2026('/j', sqlCall(greek, 11), { ...SQL_HEADERS, 'mcp-param-region': b64('εὐρώπη-1') });
  assert.equal(r2.res.status, 200, show(r2.res));
  assert.equal(gw.recorder.requests.length, 2);
  assert.equal(gw.recorder.requests[1].headers['mcp-param-region'], b64('εὐρώπη-1'), 'the header is forwarded as sent');
  // A resource URI outside the header-safe set, as Mcp-Name in Base64.
  const uri = 'file:///docs/ré sumé.md';
  const r3 = await send2026('/j', rpc('resources/read', { uri, _meta: meta }, 12),
    { 'mcp-method': 'resources/read', 'mcp-name': b64(uri) });
  assert.equal(r3.res.status, 200, `resources/read reached the server: ${show(r3.res)}`);
  assert.equal(gw.recorder.requests.length, 3);
});

test('each header that disagrees with the body is refused: 400, HeaderMismatch (-32020), the id, nothing upstream', async () => {
  const body = sqlCall(SQL_ARGS, 'm-1');
  await expectMismatch('Mcp-Method', body, { ...SQL_HEADERS, 'mcp-method': 'tools/list' }, 'm-1');
  await expectMismatch('Mcp-Name', body, { ...SQL_HEADERS, 'mcp-name': 'admin_reset' }, 'm-1');
  await expectMismatch('Mcp-Name (Base64)', body, { ...SQL_HEADERS, 'mcp-name': b64('admin_reset') }, 'm-1');
  await expectMismatch('Mcp-Param-Region', body, { ...SQL_HEADERS, 'mcp-param-region': 'eu-west1' }, 'm-1');
  await expectMismatch('Mcp-Param-Region (Base64)', body, { ...SQL_HEADERS, 'mcp-param-region': b64('eu-west1') }, 'm-1');
  await expectMismatch('Mcp-Param-Limit', body, { ...SQL_HEADERS, 'Mcp-Param-Limit': '43' }, 'm-1');
  await expectMismatch('broken Base64', body, { ...SQL_HEADERS, 'mcp-param-region': '=?base64?dXM*?=' }, 'm-1');
  const { 'mcp-param-region': _r, ...withoutRegion } = SQL_HEADERS;
  await expectMismatch('Mcp-Param-Region missing', body, withoutRegion, 'm-1');
  const { 'mcp-name': _n, ...withoutName } = SQL_HEADERS;
  await expectMismatch('Mcp-Name missing', body, withoutName, 'm-1');
  const { 'mcp-method': _m, ...withoutMethod } = SQL_HEADERS;
  await expectMismatch('Mcp-Method missing', body, withoutMethod, 'm-1');
  await expectMismatch('MCP-Protocol-Version vs _meta', body, { ...SQL_HEADERS, 'mcp-protocol-version': '2027-01-01' }, 'm-1');
  // A resource URI in Base64 that decodes to another URI.
  await expectMismatch('Mcp-Name (Base64) for resources/read',
    rpc('resources/read', { uri: 'file:///docs/readme.md', _meta: meta }, 13),
    { 'mcp-method': 'resources/read', 'mcp-name': b64('file:///etc/passwd') }, 13);
});

test('older protocol versions: the headers are ignored, as before', async () => {
  gw.recorder.clear();
  const res = await send(gw, {
    path: '/j',
    token: forge('/j', { email: 'alice@company.com' }),
    body: rpc('tools/call', { name: 'echo', arguments: { message: 'hi' } }, 20),
    headers: { 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/list', 'mcp-name': 'admin_reset' },
  });
  assert.equal(res.status, 200, show(res));
  assert.equal(gw.recorder.requests.length, 1);
});

test('the policy sees an argument mirrored into Mcp-Param-* like any argument', async () => {
  gw.recorder.clear();
  const args = { ...SQL_ARGS, region: 'forbidden-1' };
  const { res } = await send2026('/j', sqlCall(args, 'p-1'), { ...SQL_HEADERS, 'mcp-param-region': 'forbidden-1' });
  assert.equal(res.status, 200, show(res));
  assert.equal(res.json?.id, 'p-1');
  assert.equal(res.json?.error?.code, -32001, `denied by policy: ${show(res)}`);
  assert.equal(gw.recorder.requests.length, 0);
});

test('methods removed in 2026-07-28 reach the server (a URI-less subscribe gets the prescribed 404/-32601)', async () => {
  for (const [method, params] of [
    ['resources/subscribe', { uri: 'file:///docs/readme.md' }],
    ['resources/unsubscribe', { uri: 'file:///docs/readme.md' }],
    ['ping', {}],
    ['logging/setLevel', { level: 'info' }],
  ]) {
    gw.recorder.clear();
    const { res } = await send2026('/j', rpc(method, { ...params, _meta: meta }, 30), { 'mcp-method': method });
    assert.equal(gw.recorder.requests.length, 1, `${method} reached the server: ${show(res)}`);
    assert.equal(JSON.parse(gw.recorder.requests[0].text).method, method);
  }
  const sub = await send2026('/j', rpc('resources/subscribe', { _meta: meta }, 31), { 'mcp-method': 'resources/subscribe' });
  assert.equal(sub.res.status, 404, show(sub.res));
  assert.equal(sub.res.json?.id, 31);
  assert.equal(sub.res.json?.error?.code, -32601, show(sub.res));
  // subscriptions/listen is decided by the policy like any other method.
  gw.recorder.clear();
  const listen = await send2026('/j', rpc('subscriptions/listen', { notifications: { toolsListChanged: true }, _meta: meta }, 32),
    { 'mcp-method': 'subscriptions/listen' });
  assert.equal(gw.recorder.requests.length, 1, `subscriptions/listen reached the server: ${show(listen.res)}`);
});

test('GET and DELETE are not part of 2026-07-28: 405 with Allow: POST, nothing upstream; older versions keep them', async () => {
  for (const method of ['GET', 'DELETE']) {
    gw.recorder.clear();
    const res = await send(gw, {
      method, path: '/j', token: forge('/j', { email: 'alice@company.com' }),
      headers: { 'mcp-protocol-version': V2026, accept: 'text/event-stream' }, timeoutMs: 20_000,
    });
    assert.equal(res.status, 405, `${method}: ${show(res)}`);
    assert.equal(res.headers.allow, 'POST', `${method}: Allow names the one method`);
    assert.equal(res.json?.error, 'method_not_allowed', show(res));
    assert.equal(gw.recorder.arrivals.length, 0, `${method}: nothing reached the MCP server`);
  }
  gw.recorder.clear();
  const older = await send(gw, {
    method: 'DELETE', path: '/j', token: forge('/j', { email: 'alice@company.com' }),
    headers: { 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': 's-1' }, timeoutMs: 20_000,
  });
  assert.notEqual(older.status, 405, `2025-11-25 DELETE goes to the server: ${show(older)}`);
  assert.equal(gw.recorder.arrivals.length, 1, 'the 2025-11-25 DELETE reached the server');
});

let logged = [];

test('local rejections carry the request\'s id when it was read', async () => {
  const cases = [
    { what: 'tools/call without a name', body: rpc('tools/call', { arguments: {} }, 'no-name-1'), id: 'no-name-1', code: -32602, method: 'tools/call', target: '' },
    { what: 'arguments not an object', body: rpc('tools/call', { name: 'echo', arguments: [1] }, 41), id: 41, code: -32602, method: 'tools/call', target: 'echo' },
    { what: 'jsonrpc 1.0', body: '{"jsonrpc":"1.0","id":42,"method":"tools/list"}', id: 42, code: -32600, method: 'tools/list', target: '' },
    { what: 'not JSON', body: '{"jsonrpc":"2.0","id":43,', id: null, code: -32700, method: '', target: '' },
  ];
  for (const c of cases) {
    gw.recorder.clear();
    const ua = userAgent();
    const res = await send(gw, {
      path: '/j',
      token: forge('/j', { email: 'alice@company.com' }),
      body: c.body,
      headers: { 'mcp-protocol-version': '2025-11-25', 'user-agent': ua },
    });
    assert.equal(res.status, 400, `${c.what}: ${show(res)}`);
    assert.deepEqual(res.json?.id, c.id, `${c.what}: id ${show(res)}`);
    assert.equal(res.json?.error?.code, c.code, `${c.what}: ${show(res)}`);
    assert.equal(gw.recorder.requests.length, 0, `${c.what}: nothing upstream`);
    logged.push({ ...c, ua, decision: 'reject' });
  }
  const ua = await expectMismatch('for the access log', sqlCall(SQL_ARGS, 'm-9'), { ...SQL_HEADERS, 'mcp-name': 'admin_reset' }, 'm-9');
  logged.push({ what: 'header mismatch', ua, method: 'tools/call', target: 'execute_sql', decision: 'reject', reason: 'header_mismatch' });
});

/** Access-log records (JSON lines of envoy.log). */
function accessLog() {
  const text = fs.readFileSync(path.join(gw.paths.logs, 'envoy.log'), 'utf8');
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      return undefined;
    }
  }).filter(Boolean);
}

test('the access log names the method and target of a rejected request', async () => {
  assert.ok(logged.length > 0);
  let records = [];
  const deadline = Date.now() + 15_000;
  for (;;) {
    records = accessLog();
    if (logged.every((c) => records.some((r) => r.user_agent === c.ua)) || Date.now() > deadline) break;
    await sleep(250);
  }
  for (const c of logged) {
    const record = records.find((r) => r.user_agent === c.ua);
    assert.ok(record, `${c.what}: an access-log record`);
    assert.equal(record.decision, c.decision, `${c.what}: ${JSON.stringify(record)}`);
    const norm = (v) => ([null, undefined, '-'].includes(v) ? '' : v);
    assert.equal(norm(record.mcp_method), c.method, `${c.what}: mcp_method ${JSON.stringify(record)}`);
    assert.equal(norm(record.mcp_target), c.target, `${c.what}: mcp_target ${JSON.stringify(record)}`);
    if (c.reason) assert.equal(record.reason, c.reason, `${c.what}: reason`);
    assert.ok(!JSON.stringify(record).includes('eyJ'), `${c.what}: no token in the log line`);
  }
});

test('the recorder\'s tool set is what the filter lists from', () => {
  // Guard: the list test above depends on the recorder listing admin_ tools.
  assert.ok(RECORDER_TOOLS.some((t) => t.name.startsWith('admin_')));
});
