// tools/list answers show only the tools the user may call, in JSON and SSE answers (also from a
// server that sends its SSE in tiny, delayed pieces), with pagination cursors and _meta left
// intact and no stale Content-Length; the seed documents' example policies behave as written; and
// the real MCP reference server, listed by the official SDK client, has its denied tools hidden.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startGateway } from '../lib/gateway.mjs';
import { tokenForger, send, sendH2, rpc, call, parseSse, messagesOf } from '../lib/mcp-http.mjs';
import zlib from 'node:zlib';
import { RECORDER_TOOLS, RECORDER_TOOLS_PAGE2, PAGE2_CURSOR, RECORDER_PROMPTS, RECORDER_RESOURCES } from '../lib/recorder.mjs';

const DENY_ADMIN = { deny: { and: [{ mcp_tool: { starts_with: 'admin_' } }] } };
// The example at the top of policy/src/lib.rs and in the seed documents.
const SEED_POLICY = {
  allow: { and: [{ domain: { is: 'company.com' } }] },
  deny: { and: [{ mcp_tool: { starts_with: 'admin_' } }] },
};
const EVERYTHING_POLICY = { deny: { or: [{ mcp_tool: { starts_with: 'trigger-' } }, { mcp_tool: { is: 'get-env' } }] } };

let gw;
let forge;
before(async () => {
  gw = await startGateway('07-lists', {
    accessTokenLifetime: '600s',
    routes: [
      { path: '/j', upstream: 'recorder', upstreamPath: '/json/mcp', policy: DENY_ADMIN },
      { path: '/s', upstream: 'recorder', upstreamPath: '/sse/mcp', policy: DENY_ADMIN },
      { path: '/slow', upstream: 'recorder', upstreamPath: '/slow/mcp', policy: DENY_ADMIN },
      { path: '/sj', upstream: 'recorder', upstreamPath: '/slowjson/mcp', policy: DENY_ADMIN },
      { path: '/corp', upstream: 'recorder', upstreamPath: '/json/mcp', policy: SEED_POLICY },
      { path: '/everything', upstream: 'everything', policy: EVERYTHING_POLICY },
      { path: '/everything-all', upstream: 'everything' },
    ],
  });
  forge = await tokenForger(gw);
}, { timeout: 900_000 });
after(async () => {
  await gw?.stop();
});

const short = (s, n = 400) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);
const show = (res, n = 400) => `${res.status} ${JSON.stringify(res.headers['content-type'] ?? null)} ${short(res.text, n)}`;
const names = (tools) => (tools ?? []).map((t) => t.name);
const allowedOf = (tools) => tools.filter((t) => !t.name.startsWith('admin_'));

/** Content-Length, when present, must be the length of the body actually received. */
function assertLengthNotStale(what, res) {
  const cl = res.headers['content-length'];
  if (cl !== undefined) {
    assert.equal(Number(cl), res.buffer.length, `${what}: content-length ${cl} must match the ${res.buffer.length} bytes received`);
  }
}

async function list(routePath, { id = 1, cursor, headers = {}, h2 = false, email = 'alice@company.com' } = {}) {
  const token = forge(routePath, { email });
  const body = rpc('tools/list', cursor === undefined ? {} : { cursor }, id);
  const fn = h2 ? sendH2 : send;
  return fn(gw, { path: routePath, token, body, headers, timeoutMs: 20_000 });
}

/** The JSON-RPC response with that id among the messages of a JSON or SSE answer. */
function responseFor(res, id) {
  const msgs = messagesOf(res);
  const found = msgs.find((m) => m.id === id && ('result' in m || 'error' in m));
  assert.ok(found, `a response with id ${JSON.stringify(id)} in ${show(res)}`);
  return found;
}

test('JSON answer: only allowed tools listed, the rest of the answer unchanged, no stale Content-Length', async () => {
  gw.recorder.clear();
  const res = await list('/j', { id: 11 });
  assert.equal(res.status, 200, show(res));
  assert.match(String(res.headers['content-type']), /^application\/json/, show(res));
  assertLengthNotStale('JSON tools/list', res);
  const msg = res.json;
  assert.equal(msg.id, 11);
  assert.deepEqual(names(msg.result.tools), names(allowedOf(RECORDER_TOOLS)), `tools listed: ${show(res)}`);
  assert.deepEqual(msg.result.tools, allowedOf(RECORDER_TOOLS), 'each kept tool is unchanged (description, inputSchema)');
  assert.deepEqual(msg.result._meta, { 'recorder/page': 'all' }, '_meta untouched');
  assert.equal(gw.recorder.requests.length, 1, 'the list request itself reached the MCP server');
});

test('JSON answer over HTTP/2: filtered, no stale content-length', async () => {
  const res = await list('/j', { id: 12, h2: true });
  assert.equal(res.status, 200, show(res));
  assertLengthNotStale('h2 JSON tools/list', res);
  assert.deepEqual(names(res.json?.result?.tools), names(allowedOf(RECORDER_TOOLS)), show(res));
});

test('SSE answer: only allowed tools listed, event id kept, no Content-Length', async () => {
  const res = await list('/s', { id: 'list-sse-1' });
  assert.equal(res.status, 200, show(res));
  assert.match(String(res.headers['content-type']), /^text\/event-stream/, show(res));
  assertLengthNotStale('SSE tools/list', res);
  const events = parseSse(res.text);
  assert.equal(events.length, 1, `one event: ${show(res)}`);
  assert.match(events[0].id ?? '', /^\d+$/, 'the SSE event id is kept');
  const msg = responseFor(res, 'list-sse-1');
  assert.deepEqual(msg.result.tools, allowedOf(RECORDER_TOOLS), `tools listed: ${show(res)}`);
  assert.deepEqual(msg.result._meta, { 'recorder/page': 'all' }, '_meta untouched');
});

test('SSE from the slow server (tiny delayed pieces, cuts inside CRLF): filtered, other events intact', async () => {
  gw.recorder.clear();
  const res = await list('/slow', { id: 21 });
  assert.ok(gw.recorder.requests[0]?.slowPieces > 100, `the server sent its answer in many pieces (${gw.recorder.requests[0]?.slowPieces})`);
  assert.equal(res.status, 200, show(res));
  assert.match(String(res.headers['content-type']), /^text\/event-stream/, show(res));
  assertLengthNotStale('slow SSE tools/list', res);
  const events = parseSse(res.text);
  assert.equal(events.length, 2, `two events (a notification, then the answer): ${show(res)}`);
  const note = JSON.parse(events[0].data);
  assert.deepEqual(note, { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'recorder: working on it' } },
    'the notification event passes unchanged');
  const msg = responseFor(res, 21);
  assert.deepEqual(names(msg.result.tools), names(allowedOf(RECORDER_TOOLS)), `tools listed: ${show(res)}`);
  assert.ok(!res.text.includes('admin_'), `no admin_ tool anywhere in the stream: ${show(res)}`);
});

test('slow SSE over HTTP/2: filtered as well', async () => {
  const res = await list('/slow', { id: 22, h2: true });
  assert.equal(res.status, 200, show(res));
  const msg = responseFor(res, 22);
  assert.deepEqual(names(msg.result.tools), names(allowedOf(RECORDER_TOOLS)), show(res));
  assert.ok(!res.text.includes('admin_'), show(res));
});

test('pagination (JSON): nextCursor byte for byte, page 2 filtered too', async () => {
  const headers = { 'x-recorder-paginate': '1' };
  const p1 = await list('/j', { id: 31, headers });
  assert.equal(p1.status, 200, show(p1));
  assertLengthNotStale('page 1', p1);
  assert.deepEqual(names(p1.json.result.tools), names(allowedOf(RECORDER_TOOLS)), show(p1));
  assert.equal(p1.json.result.nextCursor, PAGE2_CURSOR, 'nextCursor unchanged');
  assert.ok(p1.text.includes(`"nextCursor":${JSON.stringify(PAGE2_CURSOR)}`), `the cursor's bytes are unchanged: ${show(p1)}`);
  assert.deepEqual(p1.json.result._meta, { 'recorder/page': 1 });
  const p2 = await list('/j', { id: 32, headers, cursor: p1.json.result.nextCursor });
  assert.equal(p2.status, 200, show(p2));
  assertLengthNotStale('page 2', p2);
  assert.deepEqual(names(p2.json.result.tools), names(allowedOf(RECORDER_TOOLS_PAGE2)), show(p2));
  assert.equal(p2.json.result.nextCursor, undefined, 'no cursor on the last page');
  assert.deepEqual(p2.json.result._meta, { 'recorder/page': 2 });
});

test('pagination (slow SSE): nextCursor intact, both pages filtered', async () => {
  const headers = { 'x-recorder-paginate': '1' };
  const p1 = await list('/slow', { id: 41, headers });
  const m1 = responseFor(p1, 41);
  assert.deepEqual(names(m1.result.tools), names(allowedOf(RECORDER_TOOLS)), show(p1));
  assert.equal(m1.result.nextCursor, PAGE2_CURSOR, 'nextCursor unchanged');
  const p2 = await list('/slow', { id: 42, headers, cursor: m1.result.nextCursor });
  const m2 = responseFor(p2, 42);
  assert.deepEqual(names(m2.result.tools), names(allowedOf(RECORDER_TOOLS_PAGE2)), show(p2));
});

test('seed example "deny: {and: [{mcp_tool: {starts_with: admin_}}]}": initialize and tools/list pass, admin_ calls are denied, others allowed', async () => {
  const token = forge('/j', { email: 'someone@anywhere.example' });
  const init = await send(gw, { path: '/j', token, body: rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '0' } }) });
  assert.equal(init.status, 200, show(init));
  assert.equal(init.json?.result?.serverInfo?.name, 'mcpgate-e2e-recorder', show(init));
  for (const tool of ['admin_reset', 'admin_delete']) {
    const res = await send(gw, { path: '/j', token, body: call(tool, {}, 5) });
    assert.equal(res.json?.error?.code, -32001, `${tool}: ${show(res)}`);
    assert.equal(res.json?.id, 5);
  }
  for (const tool of ['echo', 'get_weather', 'search']) {
    const res = await send(gw, { path: '/j', token, body: call(tool, {}, 6) });
    assert.equal(res.json?.result?.content?.[0]?.text, `recorder called "${tool}"`, `${tool}: ${show(res)}`);
  }
});

test('seed example policy (allow domain company.com, deny admin_): a company.com user calls tools, sees only non-admin tools', async () => {
  for (const email of ['bob@company.com', 'Carol@COMPANY.COM']) {
    const token = forge('/corp', { email, sub: email.split('@')[0] });
    gw.recorder.clear();
    const ok = await send(gw, { path: '/corp', token, body: call('get_weather', { city: 'Paris' }, 1) });
    assert.equal(ok.status, 200, `${email}: ${show(ok)}`);
    assert.equal(ok.json?.result?.content?.[0]?.text, 'recorder called "get_weather"', `${email} may call get_weather: ${show(ok)}`);
    assert.equal(gw.recorder.requests.length, 1);
    const admin = await send(gw, { path: '/corp', token, body: call('admin_reset', {}, 2) });
    assert.equal(admin.json?.error?.code, -32001, `${email} may not call admin_reset: ${show(admin)}`);
    const listed = await list('/corp', { email, id: 3 });
    assert.deepEqual(names(listed.json?.result?.tools), names(allowedOf(RECORDER_TOOLS)), `${email} list: ${show(listed)}`);
  }
});

test('seed example policy: users outside company.com get a JSON-RPC denial (POST) or 403 (GET), nothing reaches the server', async () => {
  for (const email of ['eve@other.com', 'mallory@notcompany.com', 'trent@sub.company.com', 'peggy@company.com.evil.example']) {
    const token = forge('/corp', { email, sub: email.split('@')[0] });
    gw.recorder.clear();
    const before = await gw.upstreamRequests('/corp');
    for (const [id, body] of [[1, call('echo', { message: 'hi' }, 1)], [2, rpc('tools/list', {}, 2)], [3, rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e', version: '0' } }, 3)]]) {
      const res = await send(gw, { path: '/corp', token, body });
      assert.equal(res.status, 200, `${email} POST: JSON-RPC denial with HTTP 200, got ${show(res)}`);
      assert.equal(res.json?.error?.code, -32001, `${email}: denied, got ${show(res)}`);
      assert.equal(res.json?.id, id, `${email}: id echoed`);
    }
    const get = await send(gw, { method: 'GET', path: '/corp', token, headers: { accept: 'text/event-stream' } });
    assert.equal(get.status, 403, `${email} GET stream: 403, got ${show(get)}`);
    assert.ok(get.json !== undefined, `${email}: the 403 has a JSON body, got ${show(get)}`);
    const del = await send(gw, { method: 'DELETE', path: '/corp', token, headers: { 'mcp-session-id': 'recorder-session-1' } });
    assert.equal(del.status, 403, `${email} DELETE: 403, got ${show(del)}`);
    const note = await send(gw, { path: '/corp', token, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' });
    assert.equal(note.status, 403, `${email} notification: 403, got ${show(note)}`);
    assert.equal(gw.recorder.requests.length, 0, `${email}: the MCP server received nothing`);
    assert.equal(await gw.upstreamRequests('/corp'), before, `${email}: upstream counter unchanged`);
  }
  // and a company.com user's GET stream is decided on identity alone and forwarded
  gw.recorder.clear();
  const get = await send(gw, { method: 'GET', path: '/corp', token: forge('/corp', { email: 'bob@company.com' }), headers: { accept: 'text/event-stream' } });
  assert.equal(get.status, 405, `company.com GET reaches the server (which answers 405), got ${show(get)}`);
  assert.equal(gw.recorder.requests.length, 1);
});

async function sdkClient(routePath, email = 'alice@company.com') {
  const client = new Client({ name: 'mcpgate-e2e-lists', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.route(routePath).url), {
    requestInit: { headers: { authorization: `Bearer ${forge(routePath, { email })}` } },
  });
  await client.connect(transport);
  return client;
}

test('official SDK client + server-everything: the policy hides trigger-* and get-env, and denies calling them', async () => {
  const all = await sdkClient('/everything-all');
  const full = names((await all.listTools()).tools);
  await all.close();
  assert.ok(full.includes('get-env') && full.some((n) => n.startsWith('trigger-')) && full.includes('echo'),
    `the unfiltered route lists the reference server's tools: ${full.join(', ')}`);

  const client = await sdkClient('/everything');
  try {
    const shown = names((await client.listTools()).tools);
    const expected = full.filter((n) => !n.startsWith('trigger-') && n !== 'get-env');
    assert.deepEqual(shown, expected, `filtered list (SSE answers from server-everything): ${shown.join(', ')}`);
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'through the gateway' } });
    assert.match(JSON.stringify(echo.content), /through the gateway/, 'an allowed tool works');
    const before = await gw.upstreamRequests('/everything');
    await assert.rejects(client.callTool({ name: 'get-env', arguments: {} }),
      (e) => e instanceof McpError && e.code === -32001, 'calling a hidden tool is denied with -32001');
    await assert.rejects(client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 1 } }),
      (e) => e instanceof McpError && e.code === -32001, 'calling a hidden trigger- tool is denied');
    assert.equal(await gw.upstreamRequests('/everything'), before, 'the denied calls never reached server-everything');
  } finally {
    await client.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Answers shaped to slip past a list filter (valid SSE and HTTP the filter must still handle)

function assertFilteredAnswer(what, res, id, expected = allowedOf(RECORDER_TOOLS)) {
  assert.equal(res.status, 200, `${what}: ${show(res)}`);
  assert.ok(!res.text.includes('admin_'), `${what}: no admin_ tool may reach the client: ${show(res, 2000)}`);
  const msg = responseFor(res, id);
  assert.deepEqual(names(msg.result.tools), names(expected), `${what}: ${show(res)}`);
}

test('SSE whose JSON spans several data: lines → filtered', async () => {
  const res = await list('/s', { id: 51, headers: { 'x-recorder-sse-style': 'multiline' } });
  assertFilteredAnswer('multi-line data', res, 51);
});

test('SSE with lone-CR line endings → filtered', async () => {
  const res = await list('/s', { id: 52, headers: { 'x-recorder-sse-style': 'cr' } });
  assertFilteredAnswer('CR line endings', res, 52);
});

test('slow SSE with lone-CR line endings and multi-line data → filtered', async () => {
  const cr = await list('/slow', { id: 53, headers: { 'x-recorder-sse-style': 'cr' } });
  assertFilteredAnswer('slow, CR line endings', cr, 53);
  const ml = await list('/slow', { id: 54, headers: { 'x-recorder-sse-style': 'multiline' } });
  assertFilteredAnswer('slow, multi-line data', ml, 54);
});

test('SSE carrying an extra tools list result under an id the client never sent → that one is filtered too', async () => {
  const res = await list('/s', { id: 55, headers: { 'x-recorder-extra-list': '1' } });
  assertFilteredAnswer('extra list event', res, 55);
});

test('JSON answer sent slowly in small pieces without Content-Length → filtered, no stale length', async () => {
  gw.recorder.clear();
  const res = await list('/sj', { id: 56 });
  assert.ok(gw.recorder.requests[0]?.slowPieces > 50, 'the server trickled its answer');
  assertLengthNotStale('slow JSON', res);
  assertFilteredAnswer('slow JSON', res, 56);
});

test('a client that accepts gzip (as fetch does) still gets a usable, filtered list when the server compresses', async () => {
  // undici's fetch (the SDK's transport) sends Accept-Encoding: gzip, deflate, br; servers behind
  // compression middleware then gzip their JSON. The filter cannot read a compressed answer, so it
  // must keep the server from compressing (or decompress), and never hand out an unfiltered list.
  const res = await list('/j', { id: 57, headers: { 'accept-encoding': 'gzip', 'x-recorder-gzip': '1' } });
  const encoding = String(res.headers['content-encoding'] ?? '');
  let text = res.text;
  if (/gzip/.test(encoding)) {
    try {
      text = zlib.gunzipSync(res.buffer).toString('utf8');
    } catch (e) {
      assert.fail(`the answer says Content-Encoding: ${encoding} but is not gzip (${e.message}); the client cannot read it: ${show(res)}`);
    }
  }
  assert.ok(!text.includes('admin_'), `no admin_ tool after decompression (content-encoding ${encoding || 'none'}): ${short(text)}`);
  assert.equal(res.status, 200, show(res));
  const msg = JSON.parse(text);
  assert.deepEqual(names(msg.result?.tools), names(allowedOf(RECORDER_TOOLS)), `a filtered list, got ${short(text)}`);
});

test('a list answer under another Content-Type (text/plain) never shows admin_ tools', async () => {
  const res = await list('/j', { id: 58, headers: { 'x-recorder-content-type': 'text/plain' } });
  assert.ok(!res.text.includes('admin_'), `text/plain list answer: ${show(res)}`);
});

test('a 2025-03-26 batch with tools/list and prompts/list → both answers filtered', async () => {
  const token = forge('/j', {});
  const body = `[${rpc('tools/list', {}, 61)},${rpc('prompts/list', {}, 62)}]`;
  const res = await send(gw, { path: '/j', token, body, headers: { 'mcp-protocol-version': '2025-03-26' } });
  assert.equal(res.status, 200, show(res));
  assert.ok(!res.text.includes('admin_'), `batch answer: ${show(res)}`);
  assert.deepEqual(names(responseFor(res, 61).result.tools), names(allowedOf(RECORDER_TOOLS)));
  assert.deepEqual(names(responseFor(res, 62).result.prompts), ['summarize']);
});

test('prompts/list and resources/list are filtered too (JSON and SSE)', async () => {
  for (const routePath of ['/j', '/s', '/slow']) {
    const token = forge(routePath, {});
    const p = await send(gw, { path: routePath, token, body: rpc('prompts/list', {}, 71) });
    assert.deepEqual(names(responseFor(p, 71).result.prompts), names(RECORDER_PROMPTS.filter((x) => !x.name.startsWith('admin_'))), `${routePath} prompts: ${show(p)}`);
    const r = await send(gw, { path: routePath, token, body: rpc('resources/list', {}, 72) });
    assert.deepEqual(responseFor(r, 72).result.resources.map((x) => x.uri), RECORDER_RESOURCES.filter((x) => !x.uri.startsWith('admin_')).map((x) => x.uri),
      `${routePath} resources: ${show(r)}`);
  }
});

for (const [label, routePath] of [['JSON', '/j'], ['SSE', '/s']]) {
  test(`a 3 MB tools/list answer (${label}) is filtered, not passed through and not broken`, async () => {
    const res = await list(routePath, { id: 81, headers: { 'x-recorder-bulk-bytes': String(3 * 1024 * 1024) } });
    assert.ok(!res.text.includes('admin_'), `no admin_ tool in a large answer: ${show(res)}`);
    assertLengthNotStale(`large ${label}`, res);
    const msg = responseFor(res, 81);
    const shown = names(msg.result?.tools);
    assert.ok(shown.length > 2500 && shown.every((n) => !n.startsWith('admin_')), `the large list, filtered (${shown.length} tools): ${show(res)}`);
  });
}

test('SSE resumption (GET with Last-Event-ID) replaying a tools/list answer → filtered', async () => {
  for (const routePath of ['/j', '/s']) {
    const token = forge(routePath, {});
    const res = await send(gw, { method: 'GET', path: routePath, token, headers: { accept: 'text/event-stream', 'last-event-id': '7', 'mcp-session-id': 'recorder-session-1' } });
    assert.equal(res.status, 200, `${routePath}: ${show(res)}`);
    assert.ok(!res.text.includes('admin_'), `${routePath}: a replayed list on a resumed stream is filtered: ${show(res)}`);
    assert.deepEqual(names(responseFor(res, 'replayed-1').result.tools), names(allowedOf(RECORDER_TOOLS)), `${routePath}: ${show(res)}`);
  }
});

test('server-everything: resuming the tools/list stream (GET, Last-Event-ID of the priming event) replays a filtered list', async () => {
  // With an event store (server-everything has one) a client can reconnect to a POST's SSE stream
  // and have the server replay its events: the replayed tools/list answer must be filtered too.
  const pv = '2025-11-25';
  const token = forge('/everything', {});
  const headers = { 'mcp-protocol-version': pv };
  const init = await send(gw, { path: '/everything', token, headers, body: rpc('initialize', { protocolVersion: pv, capabilities: {}, clientInfo: { name: 'e2e-resume', version: '0' } }, 1) });
  assert.equal(init.status, 200, show(init));
  const sid = init.headers['mcp-session-id'];
  assert.ok(sid, 'server-everything returned a session id');
  Object.assign(headers, { 'mcp-session-id': sid });
  await send(gw, { path: '/everything', token, headers, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' });
  const listed = await send(gw, { path: '/everything', token, headers, body: rpc('tools/list', {}, 2) });
  assert.equal(listed.status, 200, show(listed));
  const events = parseSse(listed.text);
  const priming = events.find((e) => e.data === '' && e.id);
  assert.ok(priming, `server-everything sends a priming event with an id before the answer: ${show(listed)}`);
  assert.ok(!listed.text.includes('"get-env"'), 'the live answer is filtered');
  const resumed = await send(gw, {
    method: 'GET', path: '/everything', token, streamMs: 1500,
    headers: { ...headers, accept: 'text/event-stream', 'last-event-id': priming.id },
  });
  assert.equal(resumed.status, 200, show(resumed));
  const replay = messagesOf(resumed).find((m) => m.id === 2);
  assert.ok(replay?.result?.tools, `the server replayed the tools/list answer: ${show(resumed)}`);
  const shown = names(replay.result.tools);
  assert.ok(shown.includes('echo'), `replayed list: ${shown.join(', ')}`);
  assert.ok(!shown.includes('get-env') && !shown.some((n) => n.startsWith('trigger-')), `the replayed list is filtered: ${shown.join(', ')}`);
});

test('the filter VM never trapped while rewriting these answers (no reload)', async () => {
  const wasm = await gw.stats('^wasm\\.mcpgate\\.vm_reload');
  assert.ok(Object.keys(wasm).length > 0, 'Envoy reports the VM reload counters');
  for (const [name, value] of Object.entries(wasm)) assert.equal(value, 0, `${name} must stay 0`);
});
