// Hostile MCP request bodies, through Envoy and the filter, each one trying to get a denied tool
// (policy: deny tools whose name starts with `admin_`) called on the recording MCP upstream.
//
// Contract: docs/architecture.md, "MCP message handling in the filter". Every refusal asserts the
// client's answer (status, JSON-RPC error code and id) AND that the MCP server received nothing:
// the recorder (lib/recorder.mjs) saw no request and Envoy's cluster.mcp_route_0.upstream_rq_total
// did not move. Every allowed control asserts that the server received exactly the bytes sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway } from '../lib/gateway.mjs';
import http2 from 'node:http2';
import { tokenForger, send, sendH2, sendRaw, rawPost, rpc, call } from '../lib/mcp-http.mjs';

const LIMIT = 128 * 1024;
const POLICY = { deny: { and: [{ mcp_tool: { starts_with: 'admin_' } }] } };
const ROUTE = '/h';
const PATH = '/h';

let gw;
let token;
before(async () => {
  gw = await startGateway('06-hostile', {
    accessTokenLifetime: '600s',
    routes: [{ path: ROUTE, upstream: 'recorder', upstreamPath: '/json/mcp', policy: POLICY, maxRequestBytes: LIMIT }],
  });
  const forge = await tokenForger(gw);
  token = forge(ROUTE, { exp: Math.floor(Date.now() / 1000) + 3600 });
}, { timeout: 900_000 });
after(async () => {
  await gw?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers

const short = (s, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);
const show = (res) => `${res.status} ${JSON.stringify(res.headers['content-type'] ?? null)} ${short(res.text)}`;

/**
 * Runs one attempt: clears the recorder, notes the upstream counter, sends the request
 * (`h2: true` for HTTP/2), and returns {res, recorded, delta}.
 */
async function attempt(opts) {
  gw.recorder.clear();
  const before = await gw.upstreamRequests(ROUTE);
  const { h2, ...rest } = opts;
  const res = h2
    ? await sendH2(gw, { path: PATH, token, ...rest })
    : await send(gw, { path: PATH, token, ...rest });
  await sleep(30); // a request wrongly forwarded in parallel with a local answer has time to land
  const recorded = gw.recorder.requests.slice();
  const delta = (await gw.upstreamRequests(ROUTE)) - before;
  return { res, recorded, delta };
}

function assertNothingUpstream(what, { recorded, delta }) {
  assert.equal(recorded.length, 0,
    `${what}: the MCP server must receive nothing, it received ${recorded.map((r) => `${r.method} ${short(r.text, 200)}`).join(' | ')}`);
  assert.equal(delta, 0, `${what}: cluster upstream_rq_total must not move (moved by ${delta})`);
}

function assertJsonContentType(what, res) {
  assert.match(String(res.headers['content-type'] ?? ''), /^application\/json/i, `${what}: JSON answer expected, got ${show(res)}`);
}

/** Where a reply is given, the id must be echoed byte for byte as the raw text of the request's id. */
function assertIdEcho(what, res, idRaw) {
  assert.ok(res.text.includes(`"id":${idRaw},`) || res.text.includes(`"id":${idRaw}}`),
    `${what}: the denial must echo the request id byte for byte (${short(idRaw, 120)}), got ${short(res.text)}`);
}

/** A JSON-RPC denial by policy: HTTP 200, error -32001 carrying the request's id, nothing upstream. */
async function expectDenied(what, opts, { idRaw = '1', tool } = {}) {
  const r = await attempt(opts);
  const { res } = r;
  assert.equal(res.status, 200, `${what}: a denied JSON-RPC request gets HTTP 200 with a JSON-RPC error, got ${show(res)}`);
  assertJsonContentType(what, res);
  assert.equal(res.json?.jsonrpc, '2.0', `${what}: JSON-RPC 2.0 error object, got ${show(res)}`);
  assert.equal(res.json?.error?.code, -32001, `${what}: error code -32001, got ${show(res)}`);
  assertIdEcho(what, res, idRaw);
  assert.equal(res.json?.result, undefined, `${what}: no result`);
  const message = String(res.json?.error?.message ?? '');
  assert.match(message, /denied by policy/, `${what}: message says the policy denied it: ${short(message)}`);
  if (tool !== undefined) assert.ok(message.includes(tool), `${what}: message names the tool ${tool}: ${short(message)}`);
  const data = res.json?.error?.data ?? {};
  assert.equal(typeof data.request_id, 'string', `${what}: error.data.request_id, got ${short(JSON.stringify(data))}`);
  assert.ok(data.request_id.length > 0 && message.includes(data.request_id), `${what}: the message quotes the request id ${data.request_id}`);
  assert.match(String(data.reason), /policy\.deny\.and\[0\]/, `${what}: error.data.reason names the deny rule, got ${short(JSON.stringify(data))}`);
  assertNothingUpstream(what, r);
  return r;
}

/**
 * A parse/shape rejection: HTTP `status` (400), JSON-RPC error with one of `codes`, and `id`: the
 * request's id when the body is JSON whose id could be read, else null.
 */
async function expectRejected(what, opts, { status = 400, codes = [-32700], id = null } = {}) {
  const r = await attempt(opts);
  const { res } = r;
  assert.equal(res.status, status, `${what}: expected HTTP ${status}, got ${show(res)}`);
  assertJsonContentType(what, res);
  assert.equal(res.json?.jsonrpc, '2.0', `${what}: JSON-RPC error body, got ${show(res)}`);
  assert.ok(codes.includes(res.json?.error?.code), `${what}: error code one of ${codes.join(', ')}, got ${show(res)}`);
  assert.ok('id' in (res.json ?? {}) && res.json.id === id, `${what}: a parse rejection carries "id": ${JSON.stringify(id)}, got ${show(res)}`);
  assertNothingUpstream(what, r);
  return r;
}

/** A refusal by HTTP status (413, 415, 403): nothing upstream. */
async function expectStatus(what, opts, status) {
  const r = await attempt(opts);
  assert.equal(r.res.status, status, `${what}: expected HTTP ${status}, got ${show(r.res)}`);
  assertNothingUpstream(what, r);
  return r;
}

/** Not forwarded, whatever the form of the refusal (for requests the contract does not pin down). */
async function expectNotForwarded(what, opts, { allow401 = false } = {}) {
  const r = await attempt(opts);
  const { res } = r;
  const denied = res.status === 200 && [res.json].flat().some((m) => m?.error?.code === -32001);
  assert.ok(denied || (res.status >= 400 && res.status < 500 && (allow401 || res.status !== 401)),
    `${what}: expected a JSON-RPC denial or a 4xx refusal (not 401), got ${show(res)}`);
  assertNothingUpstream(what, r);
  return r;
}

/** An allowed request: the MCP server receives exactly one request with exactly the body sent. */
async function expectForwarded(what, opts, { status = 200 } = {}) {
  const r = await attempt(opts);
  const { res, recorded, delta } = r;
  assert.equal(res.status, status, `${what}: expected the MCP server's answer ${status}, got ${show(res)}`);
  assert.equal(recorded.length, 1, `${what}: exactly one request reaches the MCP server, got ${recorded.length}`);
  assert.equal(delta, 1, `${what}: cluster upstream_rq_total moves by one`);
  const sent = Buffer.concat([opts.body].flat().map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))));
  const got = recorded[0].body;
  assert.ok(got.equals(sent), `${what}: the MCP server must receive the body byte for byte (sent ${sent.length} bytes, got ${got.length}): ${short(got.toString('utf8'), 200)}`);
  assert.equal(recorded[0].headers.authorization, undefined, `${what}: the client's Authorization never reaches the MCP server`);
  return r;
}

const denied = (name = 'admin_reset', id = 1) => call(name, {}, id);
const allowed = (id = 1) => call('echo', { message: 'hello' }, id);
/** `text` with its "…" padding argument grown so the body is exactly `size` bytes. */
function padTo(name, size, id = 1) {
  const base = call(name, { pad: '' }, id);
  const need = size - Buffer.byteLength(base);
  if (need < 0) throw new Error('padTo: size too small');
  return call(name, { pad: 'p'.repeat(need) }, id);
}

// ---------------------------------------------------------------------------------------------
// Controls

test('control: an allowed call (echo) reaches the MCP server intact', async () => {
  const r = await expectForwarded('echo', { body: allowed() });
  assert.equal(r.res.json?.result?.content?.[0]?.text, 'recorder called "echo"', 'the answer is the MCP server\'s');
});

test('control: admin_reset is denied with -32001 and the request id', async () => {
  await expectDenied('admin_reset', { body: denied() }, { tool: 'admin_reset' });
});

test('control: admin_delete with a string id is denied', async () => {
  await expectDenied('admin_delete', { body: call('admin_delete', { id: 'r1' }, 'req-7') }, { idRaw: '"req-7"', tool: 'admin_delete' });
});

// ---------------------------------------------------------------------------------------------
// Size limit (max_request_bytes = 128 KiB)

test('size: Content-Length one byte over the limit → 413', async () => {
  await expectStatus('LIMIT+1 (Content-Length)', { body: padTo('admin_reset', LIMIT + 1) }, 413);
});

test('size: an allowed call one byte over the limit → 413 as well', async () => {
  await expectStatus('allowed, LIMIT+1', { body: padTo('echo', LIMIT + 1) }, 413);
});

test('size: chunked without Content-Length, over the limit → 413', async () => {
  const body = padTo('admin_reset', LIMIT + 4096);
  const pieces = [body.slice(0, 50_000), body.slice(50_000, 100_000), body.slice(100_000)];
  await expectStatus('chunked over the limit', { body: pieces, chunked: true }, 413);
});

test('size: chunked, the denied call only in the bytes past the limit → 413', async () => {
  // An allowed call, then whitespace up to the limit, then a second (denied) message: a parser that
  // stopped at the limit would see only `echo`.
  const head = allowed();
  const filler = ' '.repeat(LIMIT - Buffer.byteLength(head));
  await expectStatus('denied call past the limit', { body: [head, filler, denied()], chunked: true, delayMs: 5 }, 413);
});

test('size: Content-Length over the limit is refused on the headers, before the body arrives', async () => {
  // Announces LIMIT+1000 bytes and sends one: only a decision on the header answers in time.
  await expectStatus('announced length over the limit', {
    body: '{', headers: { 'content-length': String(LIMIT + 1000) }, timeoutMs: 5000,
  }, 413);
});

test('size: a denied call of exactly the limit is parsed and denied (not 413)', async () => {
  await expectDenied('denied at the limit', { body: padTo('admin_reset', LIMIT) });
});

test('size: an allowed call of exactly the limit passes intact', async () => {
  await expectForwarded('allowed at the limit', { body: padTo('echo', LIMIT) });
});

test('size: an allowed call of exactly the limit, chunked, passes intact', async () => {
  const body = padTo('echo', LIMIT);
  await expectForwarded('allowed at the limit, chunked', { body: [body.slice(0, 1000), body.slice(1000, 70_000), body.slice(70_000)], chunked: true });
});

test('size: a 64 KiB allowed call passes intact', async () => {
  await expectForwarded('64 KiB echo', { body: padTo('echo', 64 * 1024) });
});

// ---------------------------------------------------------------------------------------------
// JSON-RPC batches

const batch = (...msgs) => `[${msgs.join(',')}]`;

test('batch: MCP-Protocol-Version 2025-06-18, one denied element → 400', async () => {
  await expectRejected('batch 2025-06-18 (echo, admin_reset)', { body: batch(allowed(1), denied('admin_reset', 2)) }, { codes: [-32600] });
});

test('batch: MCP-Protocol-Version 2025-06-18, all elements allowed → still 400', async () => {
  await expectRejected('batch 2025-06-18 (echo, search)', { body: batch(allowed(1), call('search', { q: 'x' }, 2)) }, { codes: [-32600] });
});

test('batch: a later protocol version (2099-01-01) → 400', async () => {
  await expectRejected('batch 2099-01-01', { body: batch(allowed(1), allowed(2)), headers: { 'mcp-protocol-version': '2099-01-01' } }, { codes: [-32600] });
});

test('batch: no MCP-Protocol-Version header, one denied element → not forwarded', async () => {
  await expectNotForwarded('batch without version header (echo, admin_reset)',
    { body: batch(allowed(1), denied('admin_reset', 2)), headers: { 'mcp-protocol-version': null } });
});

test('batch: no MCP-Protocol-Version header, all allowed → refused (400)', async () => {
  await expectRejected('batch without version header (echo, search)',
    { body: batch(allowed(1), call('search', { q: 'x' }, 2)), headers: { 'mcp-protocol-version': null } }, { codes: [-32600] });
});

test('batch: 2025-03-26, one denied element → the whole batch is denied', async () => {
  const r = await attempt({ body: batch(allowed(1), denied('admin_reset', 2)), headers: { 'mcp-protocol-version': '2025-03-26' } });
  const what = 'batch 2025-03-26 (echo, admin_reset)';
  assert.equal(r.res.status, 200, `${what}: JSON-RPC denial, got ${show(r.res)}`);
  const errors = [r.res.json].flat().filter(Boolean).map((m) => m.error?.code);
  assert.ok(errors.includes(-32001), `${what}: a -32001 error in the answer, got ${show(r.res)}`);
  assertNothingUpstream(what, r);
});

test('batch: 2025-03-26, a denied notification among allowed requests → the whole batch is denied', async () => {
  const note = '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"admin_delete","arguments":{}}}';
  await expectNotForwarded('batch 2025-03-26 (echo, admin_delete notification)',
    { body: batch(allowed(1), note), headers: { 'mcp-protocol-version': '2025-03-26' } });
});

test('batch: 2025-03-26, all elements allowed → forwarded intact', async () => {
  const body = batch(allowed(1), call('search', { q: 'x' }, 2));
  const r = await expectForwarded('batch 2025-03-26 (echo, search)', { body, headers: { 'mcp-protocol-version': '2025-03-26' } });
  assert.ok(Array.isArray(r.res.json) && r.res.json.length === 2, `the MCP server's batch answer, got ${show(r.res)}`);
});

test('batch: 2025-03-26, a nested batch → 400', async () => {
  await expectRejected('nested batch', { body: `[${batch(denied('admin_reset', 1))}]`, headers: { 'mcp-protocol-version': '2025-03-26' } }, { codes: [-32600] });
});

test('batch: 2025-03-26, an empty batch → 400', async () => {
  await expectRejected('empty batch', { body: '[]', headers: { 'mcp-protocol-version': '2025-03-26' } }, { codes: [-32600] });
});

test('batch: 2025-03-26, two requests with the same id → 400', async () => {
  await expectRejected('same id twice', { body: batch(allowed(5), denied('admin_reset', 5)), headers: { 'mcp-protocol-version': '2025-03-26' } }, { codes: [-32600] });
});

// ---------------------------------------------------------------------------------------------
// Duplicate keys (first-wins and last-wins parsers would disagree)

const dupCases = {
  'method (tools/call … tools/list)': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":{}},"method":"tools/list"}',
  'method (tools/list … tools/call)': '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"admin_reset","arguments":{}}}',
  params: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}},"params":{"name":"admin_reset","arguments":{}}}',
  'params.name': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"admin_reset","arguments":{}}}',
  'params.name, second one escaped ("n\\u0061me")': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\\u0061me":"admin_reset","arguments":{}}}',
  'nested arguments (allowed tool)': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"opts":{"mode":"safe","mode":"admin"}}}}',
  id: '{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"admin_reset","arguments":{}}}',
  '__proto__ twice': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","__proto__":{},"__proto__":{"name":"admin_reset"}}}',
};
for (const [name, body] of Object.entries(dupCases)) {
  test(`duplicate key: ${name} → 400 parse error`, async () => {
    await expectRejected(`duplicate ${name}`, { body }, { codes: [-32700] });
  });
}

// ---------------------------------------------------------------------------------------------
// Unicode escapes: decided after unescaping, as the server reads them

test('escape: "\\u0061dmin_reset" is admin_reset → denied', async () => {
  await expectDenied('escaped name', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u0061dmin_reset","arguments":{}}}' });
});

test('escape: key "n\\u0061me" is name → denied', async () => {
  await expectDenied('escaped key', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\\u0061me":"admin_reset","arguments":{}}}' });
});

test('escape: method "tools\\/call" and "tools\\u002fcall" are tools/call → denied', async () => {
  await expectDenied('escaped slash', { body: '{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"admin_reset","arguments":{}}}' });
  await expectDenied('\\u002f', { body: '{"jsonrpc":"2.0","id":1,"method":"tools\\u002fcall","params":{"name":"admin_reset","arguments":{}}}' });
});

test('escape: every character of the name and keys escaped → denied', async () => {
  const esc = (s) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
  const body = `{"${esc('jsonrpc')}":"2.0","${esc('id')}":1,"${esc('method')}":"${esc('tools/call')}","${esc('params')}":{"${esc('name')}":"${esc('admin_reset')}"}}`;
  await expectDenied('fully escaped', { body });
});

test('escape: a lone surrogate (\\ud800) in the name → 400 parse error', async () => {
  await expectRejected('lone surrogate', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\ud800admin_reset"}}' }, { codes: [-32700] });
});

// ---------------------------------------------------------------------------------------------
// Look-alike, case and whitespace variants: different names, compared exactly

test('look-alike: Cyrillic "аdmin_reset" (U+0430) is a different tool: allowed, the server gets exactly that name', async () => {
  const name = '\u0430dmin_reset';
  const r = await expectForwarded('Cyrillic a', { body: call(name) });
  const got = JSON.parse(r.recorded[0].text).params.name;
  assert.equal(got, name, 'the upstream received the Cyrillic name');
  assert.notEqual(got, 'admin_reset', 'and not the Latin one');
  assert.equal(Buffer.from(got, 'utf8').toString('hex').slice(0, 4), 'd0b0', 'first character is U+0430 (UTF-8 d0 b0)');
});

test('look-alike: Cyrillic written as "\\u0430dmin_reset" → allowed, escape forwarded unchanged', async () => {
  const body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u0430dmin_reset","arguments":{}}}';
  const r = await expectForwarded('escaped Cyrillic a', { body });
  assert.equal(JSON.parse(r.recorded[0].text).params.name, '\u0430dmin_reset');
});

test('look-alike: fullwidth "ａdmin_reset" and zero-width "\\u200badmin_reset" are other tools → allowed intact', async () => {
  await expectForwarded('fullwidth a', { body: call('\uff41dmin_reset') });
  await expectForwarded('zero-width space prefix', { body: call('\u200badmin_reset') });
});

test('case: "Admin_reset" and "ADMIN_RESET" are other tools (case-sensitive) → allowed intact', async () => {
  await expectForwarded('Admin_reset', { body: call('Admin_reset') });
  await expectForwarded('ADMIN_RESET', { body: call('ADMIN_RESET') });
});

test('case: "admin_RESET" still starts with admin_ → denied', async () => {
  await expectDenied('admin_RESET', { body: call('admin_RESET') }, { tool: 'admin_RESET' });
});

test('whitespace: " admin_reset" (leading space) is another tool → allowed, forwarded with the space', async () => {
  const r = await expectForwarded('leading space', { body: call(' admin_reset') });
  assert.equal(JSON.parse(r.recorded[0].text).params.name, ' admin_reset');
});

test('whitespace: "admin_reset " and "admin_reset\\t" (trailing) → denied', async () => {
  await expectDenied('trailing space', { body: call('admin_reset ') });
  await expectDenied('trailing tab', { body: call('admin_reset\t') });
});

test('whitespace: JSON whitespace around and inside the body → denied', async () => {
  const body = '\r\n\t {\n "jsonrpc" : "2.0" ,\n "id" : 1 ,\n "method" :\t"tools/call" ,\r\n "params" : { "name" : "admin_reset" } }\n\t ';
  await expectDenied('whitespace', { body });
});

// ---------------------------------------------------------------------------------------------
// Content-Encoding: only identity

const gz = zlib.gzipSync(denied());
test('encoding: gzip-compressed denied call → 415', async () => {
  await expectStatus('gzip', { body: gz, headers: { 'content-encoding': 'gzip' } }, 415);
});

test('encoding: deflate-compressed denied call → 415', async () => {
  await expectStatus('deflate', { body: zlib.deflateSync(denied()), headers: { 'content-encoding': 'deflate' } }, 415);
});

test('encoding: brotli-compressed denied call → 415', async () => {
  await expectStatus('br', { body: zlib.brotliCompressSync(denied()), headers: { 'content-encoding': 'br' } }, 415);
});

test('encoding: "identity" is parsed normally: denied call denied, allowed call forwarded', async () => {
  await expectDenied('identity, denied', { body: denied(), headers: { 'content-encoding': 'identity' } });
  await expectForwarded('identity, allowed', { body: allowed(), headers: { 'content-encoding': 'identity' } });
});

test('encoding: multiple encodings "gzip, identity" and "identity, gzip" → 415', async () => {
  await expectStatus('gzip, identity', { body: gz, headers: { 'content-encoding': 'gzip, identity' } }, 415);
  await expectStatus('identity, gzip', { body: gz, headers: { 'content-encoding': 'identity, gzip' } }, 415);
});

test('encoding: two Content-Encoding header lines (identity, gzip) → 415', async () => {
  await expectStatus('two header lines', { body: gz, headers: { 'content-encoding': ['identity', 'gzip'] } }, 415);
});

test('encoding: "GZIP" on a body that is actually plain JSON → 415 (the header alone refuses)', async () => {
  await expectStatus('GZIP header, plain body', { body: denied(), headers: { 'content-encoding': 'GZIP' } }, 415);
});

// ---------------------------------------------------------------------------------------------
// Content-Type: application/json (UTF-8) only

const typeRefusals = {
  'text/plain': 'text/plain',
  'application/x-www-form-urlencoded': 'application/x-www-form-urlencoded',
  'multipart/form-data': 'multipart/form-data; boundary=xyz',
  'application/json; charset=iso-8859-1': 'application/json; charset=iso-8859-1',
  'application/json, text/plain (two values)': 'application/json, text/plain',
  'application/json-seq': 'application/json-seq',
};
for (const [name, value] of Object.entries(typeRefusals)) {
  test(`content type: ${name} → 415`, async () => {
    let body = denied();
    if (value.startsWith('multipart')) body = `--xyz\r\nContent-Disposition: form-data; name="rpc"\r\nContent-Type: application/json\r\n\r\n${denied()}\r\n--xyz--\r\n`;
    if (value.startsWith('application/x-www')) body = `rpc=${encodeURIComponent(denied())}`;
    await expectStatus(name, { body, headers: { 'content-type': value } }, 415);
  });
}

test('content type: missing → 415', async () => {
  await expectStatus('no content type', { body: denied(), headers: { 'content-type': null } }, 415);
});

test('content type: "application/json; charset=utf-8" and "APPLICATION/JSON" are accepted (denied call denied, allowed forwarded)', async () => {
  await expectDenied('charset=utf-8, denied', { body: denied(), headers: { 'content-type': 'application/json; charset=utf-8' } });
  await expectForwarded('charset=utf-8, allowed', { body: allowed(), headers: { 'content-type': 'application/json; charset=utf-8' } });
  await expectDenied('APPLICATION/JSON, denied', { body: denied(), headers: { 'content-type': 'APPLICATION/JSON' } });
});

// ---------------------------------------------------------------------------------------------
// Invalid UTF-8, BOM

test('UTF-8: a 0xFF byte inside the arguments → 400 parse error', async () => {
  const body = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":{"x":"'), Buffer.from([0xff]), Buffer.from('"}}}')]);
  await expectRejected('0xFF', { body }, { codes: [-32700] });
});

test('UTF-8: an overlong "/" (C0 AF) in the method → 400 parse error', async () => {
  const body = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools'), Buffer.from([0xc0, 0xaf]), Buffer.from('call","params":{"name":"admin_reset"}}')]);
  await expectRejected('overlong slash', { body }, { codes: [-32700] });
});

test('UTF-8: a body in UTF-16LE declared as JSON → 400 parse error', async () => {
  await expectRejected('UTF-16LE', { body: Buffer.from(denied(), 'utf16le') }, { codes: [-32700] });
});

test('BOM: a UTF-8 byte-order mark before a denied call → 400 parse error', async () => {
  await expectRejected('BOM + denied', { body: `\ufeff${denied()}` }, { codes: [-32700] });
});

test('BOM: a byte-order mark before an allowed call → 400 as well (not forwarded)', async () => {
  await expectRejected('BOM + allowed', { body: `\ufeff${allowed()}` }, { codes: [-32700] });
});

// ---------------------------------------------------------------------------------------------
// Depth, truncation, trailing data

test('depth: arguments nested 100 levels deep → 400 parse error', async () => {
  const deep = `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`;
  await expectRejected('depth 100', { body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":${deep}}}` }, { codes: [-32700] });
});

test('depth: 50 000 nested arrays (within the size limit) → 400, and the gateway still answers afterwards', async () => {
  const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
  await expectRejected('depth 50000', { body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":{"x":${deep}}}}` }, { codes: [-32700] });
  await expectForwarded('control after the deep body', { body: allowed() });
});

test('depth: an allowed call nested 50 levels (below the 64 limit) passes intact', async () => {
  const deep = `${'{"a":'.repeat(45)}1${'}'.repeat(45)}`;
  await expectForwarded('depth 50', { body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":${deep}}}` });
});

test('truncated: the body ends inside params → 400 parse error', async () => {
  await expectRejected('truncated', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"' }, { codes: [-32700] });
});

test('truncated: the body ends inside a \\u escape → 400 parse error', async () => {
  await expectRejected('truncated escape', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u00' }, { codes: [-32700] });
});

test('trailing garbage after an allowed message → 400 parse error', async () => {
  await expectRejected('garbage', { body: `${allowed()}garbage` }, { codes: [-32700] });
});

test('a second JSON value (the denied call) after an allowed one → 400 parse error', async () => {
  await expectRejected('two values', { body: `${allowed(1)}${denied('admin_reset', 2)}` }, { codes: [-32700] });
});

test('newline-delimited messages (allowed, then denied) → 400 parse error', async () => {
  await expectRejected('NDJSON', { body: `${allowed(1)}\n${denied('admin_reset', 2)}\n` }, { codes: [-32700] });
});

test('a NUL byte after the message → 400 parse error', async () => {
  await expectRejected('NUL', { body: Buffer.concat([Buffer.from(allowed()), Buffer.from([0])]) }, { codes: [-32700] });
});

// ---------------------------------------------------------------------------------------------
// Chunked and trickled bodies

test('chunked: a denied call in five chunks → denied', async () => {
  const b = denied();
  const cut = (n) => Math.floor((b.length * n) / 5);
  await expectDenied('chunked', { body: [0, 1, 2, 3, 4].map((i) => b.slice(cut(i), cut(i + 1))), chunked: true, delayMs: 10 });
});

test('chunked: the chunk boundary falls inside a \\u escape of the name → denied', async () => {
  const b = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u0061dmin_reset"}}';
  const i = b.indexOf('\\u00') + 3;
  await expectDenied('split escape', { body: [b.slice(0, i), b.slice(i)], chunked: true, delayMs: 20 });
});

test('trickled: a denied call sent 3 bytes at a time with delays (Content-Length) → denied', async () => {
  const b = denied();
  const parts = [];
  for (let i = 0; i < b.length; i += 3) parts.push(b.slice(i, i + 3));
  await expectDenied('trickled', { body: parts, delayMs: 8 });
});

test('trickled: an allowed call sent byte by byte, chunked → forwarded intact', async () => {
  await expectForwarded('trickled allowed', { body: [...allowed()], chunked: true, delayMs: 4 });
});

// ---------------------------------------------------------------------------------------------
// HTTP/2 (h2c with prior knowledge)

test('HTTP/2: a denied call without trailers → denied', async () => {
  await expectDenied('h2', { h2: true, body: denied() });
});

test('HTTP/2: a denied call with trailers → denied (decided in the trailers callback)', async () => {
  await expectDenied('h2 + trailers', { h2: true, body: denied(), trailers: { 'x-checksum': 'abc' } });
});

test('HTTP/2: an allowed call with trailers → forwarded intact', async () => {
  await expectForwarded('h2 allowed + trailers', { h2: true, body: allowed(), trailers: { 'x-checksum': 'abc' } });
});

test('HTTP/2: an allowed call in several DATA frames with delays → forwarded intact', async () => {
  const b = allowed();
  await expectForwarded('h2 allowed trickled', { h2: true, body: [b.slice(0, 10), b.slice(10, 30), b.slice(30)], delayMs: 20 });
});

test('HTTP/2: a denied call in several DATA frames, then trailers → denied', async () => {
  const b = denied();
  await expectDenied('h2 frames + trailers', { h2: true, body: [b.slice(0, 20), b.slice(20)], delayMs: 20, trailers: { 'x-t': '1' } });
});

test('HTTP/2: over the limit → 413', async () => {
  await expectStatus('h2 over the limit', { h2: true, body: padTo('admin_reset', LIMIT + 1) }, 413);
});

test('HTTP/2: gzip → 415', async () => {
  await expectStatus('h2 gzip', { h2: true, body: gz, headers: { 'content-encoding': 'gzip' } }, 415);
});

test('HTTP/1.1 chunked with request trailers: a denied call → denied', async () => {
  gw.recorder.clear();
  const before = await gw.upstreamRequests(ROUTE);
  const b = Buffer.from(denied());
  const head = rawPost(gw, PATH, token, '').toString('latin1').replace('Content-Length: 0', 'Transfer-Encoding: chunked');
  const bytes = Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n0\r\nX-Checksum: abc\r\n\r\n')]);
  const [res] = await sendRaw(gw, bytes, 1);
  assert.equal(res.json?.error?.code, -32001, `chunked + trailers: ${show(res)}`);
  await sleep(30);
  assertNothingUpstream('chunked + trailers', { recorded: gw.recorder.requests, delta: (await gw.upstreamRequests(ROUTE)) - before });
});

test('HTTP/1.1 pipelining: allowed, denied, allowed in one write → each decided on its own body', async (t) => {
  gw.recorder.clear();
  const before = await gw.upstreamRequests(ROUTE);
  const bodies = [allowed(1), denied('admin_reset', 2), call('search', { q: 'x' }, 3)];
  const responses = await sendRaw(gw, Buffer.concat(bodies.map((b) => rawPost(gw, PATH, token, b))), 3, { allowClose: true });
  assert.ok(responses.length >= 2, `at least the first two answers arrive (got ${responses.length})`);
  assert.equal(responses[0].json?.result?.content?.[0]?.text, 'recorder called "echo"', `first: ${show(responses[0])}`);
  assert.equal(responses[1].json?.error?.code, -32001, `second (admin_reset): ${show(responses[1])}`);
  assert.equal(responses[1].json?.id, 2);
  if (responses.length === 3) {
    assert.equal(responses[2].json?.result?.content?.[0]?.text, 'recorder called "search"', `third: ${show(responses[2])}`);
  } else {
    // Observed with Envoy 1.40: after a forwarded request, any local reply (401, 415, this denial)
    // on a pipelined connection ends it; the third request is dropped (DPE), never forwarded.
    t.diagnostic('the connection closed after the denial: the pipelined third request was dropped (fail closed, not forwarded)');
  }
  await sleep(30);
  const expected = responses.length === 3 ? [bodies[0], bodies[2]] : [bodies[0]];
  assert.deepEqual(gw.recorder.requests.map((r) => r.text), expected, 'the MCP server received exactly the allowed bodies that were answered');
  assert.equal((await gw.upstreamRequests(ROUTE)) - before, expected.length);
});

test('HTTP/1.1 pipelining: denied first, then allowed on the same connection', async () => {
  gw.recorder.clear();
  const bodies = [denied('admin_delete', 'a'), allowed('b')];
  const responses = await sendRaw(gw, Buffer.concat(bodies.map((b) => rawPost(gw, PATH, token, b))), 2);
  assert.equal(responses[0].json?.error?.code, -32001, `first (admin_delete): ${show(responses[0])}`);
  assert.equal(responses[1].json?.id, 'b', `second: ${show(responses[1])}`);
  assert.ok(responses[1].json?.result, `second is the server's result: ${show(responses[1])}`);
  await sleep(30);
  assert.deepEqual(gw.recorder.requests.map((r) => r.text), [bodies[1]], 'only the allowed body reached the server');
});

test('HTTP/2: two interleaved streams on one connection (allowed and denied) → each decided on its own body', async () => {
  gw.recorder.clear();
  const before = await gw.upstreamRequests(ROUTE);
  const session = http2.connect(`http://127.0.0.1:${gw.ports.envoy}`);
  try {
    const open = () => session.request({
      ':method': 'POST', ':path': PATH, ':authority': `localhost:${gw.ports.envoy}`, ':scheme': 'http',
      'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`,
    });
    const collect = (stream) => new Promise((resolve, reject) => {
      let status;
      const chunks = [];
      stream.on('response', (h) => { status = h[':status']; });
      stream.on('data', (c) => chunks.push(c));
      stream.on('end', () => resolve({ status, text: Buffer.concat(chunks).toString('utf8') }));
      stream.on('error', reject);
    });
    const a = open();
    const b = open();
    const ra = collect(a);
    const rb = collect(b);
    const good = allowed(101);
    const bad = denied('admin_reset', 102);
    a.write(good.slice(0, 25));
    b.write(bad.slice(0, 25));
    await sleep(20);
    b.write(bad.slice(25));
    await sleep(20);
    a.write(good.slice(25));
    b.end();
    await sleep(20);
    a.end();
    const [resA, resB] = await Promise.all([ra, rb]);
    assert.equal(JSON.parse(resA.text).result?.content?.[0]?.text, 'recorder called "echo"', `stream A (echo): ${resA.status} ${resA.text}`);
    assert.equal(JSON.parse(resB.text).error?.code, -32001, `stream B (admin_reset): ${resB.status} ${resB.text}`);
    assert.equal(JSON.parse(resB.text).id, 102);
  } finally {
    session.close();
  }
  await sleep(30);
  assert.deepEqual(gw.recorder.requests.map((r) => r.text), [allowed(101)], 'only stream A\'s body reached the server');
  assert.equal((await gw.upstreamRequests(ROUTE)) - before, 1);
});

test('prompts/get of an admin_ prompt and resources/read of an admin_ URI → denied', async () => {
  await expectDenied('prompts/get admin_prompt', { body: rpc('prompts/get', { name: 'admin_prompt', arguments: {} }, 8) }, { idRaw: '8' });
  await expectDenied('resources/read admin_secrets://', { body: rpc('resources/read', { uri: 'admin_secrets://vault/keys' }, 9) }, { idRaw: '9' });
});

// ---------------------------------------------------------------------------------------------
// Notifications, ids

test('notification: tools/call admin_reset without an id → 403 JSON, not forwarded', async () => {
  const r = await expectStatus('notification', { body: '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"admin_reset","arguments":{}}}' }, 403);
  assertJsonContentType('notification', r.res);
  assert.ok(r.res.json !== undefined, `403 with a JSON body, got ${show(r.res)}`);
});

test('notification: an allowed notification (notifications/initialized) is forwarded intact', async () => {
  await expectForwarded('notifications/initialized', { body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' }, { status: 202 });
});

const echoedIds = {
  'string "abc-1"': '"abc-1"',
  'number 42': '42',
  'negative number -7': '-7',
  'negative zero -0': '-0',
  'largest safe integer 9007199254740991': '9007199254740991',
  'string with escapes "\\u0041\\n\\"x"': '"\\u0041\\n\\"x"',
  'non-ASCII string "ид-😀"': '"ид-😀"',
  'very long string (20 000 chars)': `"${'i'.repeat(20_000)}"`,
  'empty string ""': '""',
};
for (const [name, raw] of Object.entries(echoedIds)) {
  test(`id: ${name} → denied, id echoed byte for byte`, async () => {
    await expectDenied(`id ${name}`, { body: call('admin_reset', {}, { raw }) }, { idRaw: raw });
  });
}

const badIds = {
  'float 1.5': '1.5',
  'exponent 1e3': '1e3',
  null: 'null',
  'object {"a":1}': '{"a":1}',
  'array [1]': '[1]',
  'boolean true': 'true',
  'huge number 123456789012345678901234567890': '123456789012345678901234567890',
  '2^53 (9007199254740992)': '9007199254740992',
};
for (const [name, raw] of Object.entries(badIds)) {
  test(`id: ${name} → 400 invalid request, id null`, async () => {
    await expectRejected(`id ${name}`, { body: call('admin_reset', {}, { raw }) }, { codes: [-32600] });
  });
}

test('id: a leading zero (01) is not JSON → 400 parse error', async () => {
  await expectRejected('id 01', { body: call('admin_reset', {}, { raw: '01' }) }, { codes: [-32700] });
});

// ---------------------------------------------------------------------------------------------
// params.name, method, jsonrpc

const PARAMS_CODES = [-32600, -32602];
const nameCases = {
  'params.name missing': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"name":"admin_reset"}}}',
  'params.name a number': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}',
  'params.name null': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}',
  'params.name an array ["admin_reset"]': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["admin_reset"]}}',
  'params.name an object': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"admin_reset":true}}}',
  'params missing': '{"jsonrpc":"2.0","id":1,"method":"tools/call"}',
  'params an array': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["admin_reset"]}',
  'params.arguments a string': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":"admin_reset"}}',
  '__proto__ carrying the name, no own name': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"__proto__":{"name":"admin_reset"}}}',
};
for (const [name, body] of Object.entries(nameCases)) {
  test(`shape: ${name} → 400, not forwarded`, async () => {
    await expectRejected(name, { body }, { codes: PARAMS_CODES, id: 1 });
  });
}

const methodCases = {
  'method a number': '{"jsonrpc":"2.0","id":1,"method":42,"params":{"name":"admin_reset"}}',
  'method an array': '{"jsonrpc":"2.0","id":1,"method":["tools/call"],"params":{"name":"admin_reset"}}',
  'method null': '{"jsonrpc":"2.0","id":1,"method":null,"params":{"name":"admin_reset"}}',
  'jsonrpc "1.0"': '{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}',
  'jsonrpc missing': '{"id":1,"method":"tools/call","params":{"name":"admin_reset"}}',
  'a request carrying "result"': '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"},"result":{}}',
  'top-level string': '"tools/call admin_reset"',
};
for (const [name, body] of Object.entries(methodCases)) {
  test(`shape: ${name} → 400 invalid request`, async () => {
    await expectRejected(name, { body }, { codes: [-32600], id: name === 'top-level string' ? null : 1 });
  });
}

test('__proto__: an own "name" next to a __proto__ member decides (echo) → forwarded intact', async () => {
  await expectForwarded('__proto__ + echo', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"__proto__":{"name":"admin_reset"},"name":"echo"}}' });
});

test('__proto__: admin_reset next to a __proto__ claiming echo → denied', async () => {
  await expectDenied('admin_reset + __proto__', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","__proto__":{"name":"echo"},"arguments":{"__proto__":{"isAdmin":true}}}}' });
});

// ---------------------------------------------------------------------------------------------
// Bodies on GET and DELETE, SSE resumption

test('GET with a tools/call body (Content-Length) → not forwarded', async () => {
  await expectNotForwarded('GET + body', { method: 'GET', body: denied(), headers: { accept: 'text/event-stream' } });
});

test('GET with a chunked tools/call body → not forwarded', async () => {
  await expectNotForwarded('GET + chunked body', { method: 'GET', body: [denied().slice(0, 20), denied().slice(20)], chunked: true, headers: { accept: 'text/event-stream' } });
});

test('GET SSE resumption (Last-Event-ID) carrying a tools/call body → not forwarded', async () => {
  await expectNotForwarded('GET resume + body', {
    method: 'GET', body: denied(), headers: { accept: 'text/event-stream', 'last-event-id': '1', 'mcp-session-id': 'recorder-session-1' },
  });
});

test('DELETE with a tools/call body → not forwarded', async () => {
  await expectNotForwarded('DELETE + body', { method: 'DELETE', body: denied(), headers: { 'mcp-session-id': 'recorder-session-1' } });
});

test('PATCH with a tools/call body → not forwarded', async () => {
  await expectNotForwarded('PATCH + body', { method: 'PATCH', body: denied() });
});

// ---------------------------------------------------------------------------------------------
// Path and Host variants: whatever Envoy routes to the MCP server, the filter must decide

const pathVariants = ['/h?x=1', '/h/', '/h/sub/path', '//h', '/./h', '/h/../h', '/x/../h', '/h;x=1', '/h%3Fx'];
for (const variant of pathVariants) {
  test(`path variant ${variant}: a denied call is never forwarded`, async () => {
    await expectNotForwarded(`path ${variant}`, { path: variant, body: denied() });
  });
}

test('Host variants (upper case, trailing dot, IP literal): a denied call is never forwarded', async () => {
  for (const host of [`LOCALHOST:${gw.ports.envoy}`, `localhost.:${gw.ports.envoy}`, `127.0.0.1:${gw.ports.envoy}`, 'localhost']) {
    await expectNotForwarded(`Host ${host}`, { body: denied(), headers: { host } }, { allow401: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Long names

test('long name: "admin_" followed by 100 000 characters → denied', async () => {
  await expectDenied('long admin name', { body: call(`admin_${'x'.repeat(100_000)}`) });
});

test('long name: 100 000 characters, not admin_ → forwarded intact', async () => {
  await expectForwarded('long allowed name', { body: call(`t${'x'.repeat(100_000)}`) });
});

test('long name: "admin_" + 200 000 characters (over the limit) → 413', async () => {
  await expectStatus('long name over the limit', { body: call(`admin_${'x'.repeat(200_000)}`) }, 413);
});

// ---------------------------------------------------------------------------------------------

test('after every hostile input: the filter still decides, and its VM never trapped (no panic, no reload)', async () => {
  const requestsBefore = (await gw.stats('^wasmcustom\\.mcpgate_requests_total$'))['wasmcustom.mcpgate_requests_total'] ?? 0;
  await expectForwarded('final allowed', { body: allowed() });
  await expectDenied('final denied', { body: denied() });
  await expectDenied('final denied over HTTP/2', { h2: true, body: denied() });
  // FAIL_RELOAD would hide a panic behind a fresh VM: the reload counters show it.
  const wasm = await gw.stats('^wasm\\.mcpgate\\.vm_reload');
  assert.ok(Object.keys(wasm).length > 0, 'Envoy reports the VM reload counters');
  for (const [name, value] of Object.entries(wasm)) assert.equal(value, 0, `${name} must stay 0 (a trapped VM was replaced)`);
  const rejects = await gw.stats('^wasmcustom\\.');
  assert.ok(Object.values(rejects).some((v) => v > 0), `the filter's own stats count the decisions: ${JSON.stringify(rejects)}`);
  // The VM adds up its counters and hands them to Envoy once per tick (1 s).
  let requestsAfter = requestsBefore;
  for (let i = 0; i < 40 && requestsAfter < requestsBefore + 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
    requestsAfter = (await gw.stats('^wasmcustom\\.mcpgate_requests_total$'))['wasmcustom.mcpgate_requests_total'] ?? 0;
  }
  assert.ok(requestsAfter >= requestsBefore + 3, `wasmcustom.mcpgate_requests_total counts the last three requests within 4 s (${requestsBefore} → ${requestsAfter})`);
});
