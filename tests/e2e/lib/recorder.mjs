// A recording MCP upstream for the hostile-input tests: a small Node HTTP server on 127.0.0.1 that
// records every request it receives (method, path, headers, raw body bytes) and answers as a
// streamable-HTTP MCP server would (initialize, tools/list, tools/call, notifications, batches).
//
// Answer format, chosen per request: the first path segment of the upstream path (`/json`, `/sse`,
// `/slow`), overridable with the request header `x-recorder-mode: json|sse|slow`.
//   json  application/json with an exact Content-Length;
//   sse   text/event-stream, the whole answer in one write;
//   slow  text/event-stream with CRLF line endings, a notification event first, then the answer,
//         sent in many small pieces with delays, cut inside events, inside field names and between
//         the CR and LF of every line ending.
//   slowjson  application/json without Content-Length, sent in small delayed pieces.
// `x-recorder-paginate: 1` makes tools/list answer in two pages linked by `nextCursor`;
// `x-recorder-bulk-bytes: N` makes it list about N bytes of tools (every tenth an admin_ one).
// Hostile-server options (request headers), for the response-side tests:
//   `x-recorder-sse-style: multiline` splits each event's JSON over several `data:` lines,
//   `x-recorder-sse-style: cr` ends SSE lines with a lone CR (valid SSE);
//   `x-recorder-extra-list: 1` adds, before the answer, an SSE event carrying a tools list result
//   under an id the client never used (as a replayed or misrouted answer would);
//   `x-recorder-gzip: 1` gzips a JSON answer when the request accepts gzip;
//   `x-recorder-content-type: <type>` answers JSON under another Content-Type.
// A GET with `Last-Event-ID` (SSE resumption) replays a tools/list answer on the stream.
//
// Every request is also appended to a JSON-lines log file (headers included), so the run's logs
// show what the MCP server saw (and a token leaked upstream would be found by the log scan).
// `requests` holds the requests that arrived whole; `arrivals` every request whose headers
// arrived, with the body bytes received and whether it completed, so a request the gateway reset
// after its headers (a denied body when the filter holds the body, not the headers) is seen too.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';

export const RECORDER_TOOLS = Object.freeze([
  { name: 'echo', description: 'Echoes its input back', inputSchema: { type: 'object', properties: { message: { type: 'string' } } } },
  { name: 'admin_reset', description: 'Resets everything (administrators only)', inputSchema: { type: 'object', properties: {} } },
  { name: 'admin_delete', description: 'Deletes a record (administrators only)', inputSchema: { type: 'object', properties: { id: { type: 'string' } } } },
  { name: 'get_weather', description: 'Weather for a city', inputSchema: { type: 'object', properties: { city: { type: 'string' } } } },
  { name: 'search', description: 'Full-text search', inputSchema: { type: 'object', properties: { q: { type: 'string' } } } },
]);
/** Second page of a paginated tools/list. */
export const RECORDER_TOOLS_PAGE2 = Object.freeze([
  { name: 'admin_audit', description: 'Reads the audit trail (administrators only)', inputSchema: { type: 'object', properties: {} } },
  { name: 'translate', description: 'Translates text', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
]);
export const RECORDER_PROMPTS = Object.freeze([
  { name: 'summarize', description: 'Summarize a text' },
  { name: 'admin_prompt', description: 'Administrators only' },
]);
export const RECORDER_RESOURCES = Object.freeze([
  { uri: 'file:///docs/readme.md', name: 'readme' },
  { uri: 'admin_secrets://vault/keys', name: 'vault' },
]);
export const PAGE2_CURSOR = 'cursor:page-2/\u00e9t\u00e9';
/** A tool that mirrors arguments into headers (`x-mcp-header`, MCP 2026-07-28), listed only under that revision. */
export const RECORDER_SQL_TOOL = Object.freeze({
  name: 'execute_sql',
  description: 'Executes SQL in a region',
  inputSchema: {
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      query: { type: 'string' },
      opts: { type: 'object', properties: { limit: { type: 'integer', 'x-mcp-header': 'Limit' } } },
    },
  },
});

const PROTOCOL_VERSION = '2025-06-18';

function rpcResult(id, result) {
  return { jsonrpc: '2.0', id, result };
}

/** The answer to one JSON-RPC message (undefined for notifications and responses). */
function answer(msg, req) {
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) {
    return { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'recorder: not a JSON-RPC object' } };
  }
  if (!('id' in msg) || typeof msg.method !== 'string') return undefined;
  const params = msg.params ?? {};
  // MCP 2026-07-28: list results are cacheable (`ttlMs`, `cacheScope`) and carry `resultType`.
  const v2026 = req.headers['mcp-protocol-version'] === '2026-07-28';
  if (v2026) {
    const cacheable = { resultType: 'complete', ttlMs: 60000, cacheScope: 'public' };
    switch (msg.method) {
      case 'tools/list':
        return rpcResult(msg.id, { tools: [...RECORDER_TOOLS, RECORDER_SQL_TOOL], ...cacheable });
      case 'prompts/list':
        return rpcResult(msg.id, { prompts: RECORDER_PROMPTS, ...cacheable });
      case 'resources/list':
        return rpcResult(msg.id, { resources: RECORDER_RESOURCES, ...cacheable });
      case 'server/discover':
        return rpcResult(msg.id, {
          supportedVersions: ['2026-07-28'], capabilities: { tools: {} }, ...cacheable,
          // `x-recorder-discover-tools: 1`: a (non-standard) discover answer that carries the tools.
          ...(req.headers['x-recorder-discover-tools'] === '1' ? { tools: RECORDER_TOOLS } : {}),
          _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'mcpgate-e2e-recorder', version: '1.0.0' } },
        });
      default:
        break;
    }
  }
  switch (msg.method) {
    case 'initialize':
      return rpcResult(msg.id, {
        protocolVersion: typeof params.protocolVersion === 'string' ? params.protocolVersion : PROTOCOL_VERSION,
        capabilities: { tools: { listChanged: false } },
        serverInfo: { name: 'mcpgate-e2e-recorder', version: '1.0.0' },
      });
    case 'ping':
      return rpcResult(msg.id, {});
    case 'tools/list': {
      const paginate = req.headers['x-recorder-paginate'] === '1';
      const bulk = Number(req.headers['x-recorder-bulk-bytes'] ?? 0);
      if (bulk > 0) {
        const tools = [...RECORDER_TOOLS];
        for (let i = 0, size = 0; size < bulk; i++, size += 1100) {
          tools.push({ name: i % 10 === 9 ? `admin_bulk_${i}` : `bulk_${i}`, description: 'd'.repeat(1000), inputSchema: { type: 'object' } });
        }
        return rpcResult(msg.id, { tools });
      }
      if (!paginate) return rpcResult(msg.id, { tools: RECORDER_TOOLS, _meta: { 'recorder/page': 'all' } });
      if (params.cursor === PAGE2_CURSOR) {
        return rpcResult(msg.id, { tools: RECORDER_TOOLS_PAGE2, _meta: { 'recorder/page': 2 } });
      }
      return rpcResult(msg.id, { tools: RECORDER_TOOLS, nextCursor: PAGE2_CURSOR, _meta: { 'recorder/page': 1 } });
    }
    case 'prompts/list':
      return rpcResult(msg.id, { prompts: RECORDER_PROMPTS });
    case 'resources/list':
      return rpcResult(msg.id, { resources: RECORDER_RESOURCES });
    case 'tools/call':
      return rpcResult(msg.id, {
        content: [{ type: 'text', text: `recorder called ${JSON.stringify(params.name)}` }],
        isError: false,
      });
    default:
      return { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: `recorder: method not found: ${msg.method}` } };
  }
}

/** Splits `text` into small pieces: sizes cycle through small primes, and every CR ends a piece. */
export function slowPieces(text) {
  const sizes = [1, 2, 3, 5, 7, 11, 13, 4, 6];
  const pieces = [];
  let i = 0;
  let k = 0;
  while (i < text.length) {
    let end = Math.min(text.length, i + sizes[k++ % sizes.length]);
    const cr = text.indexOf('\r', i);
    if (cr !== -1 && cr < end) end = cr + 1; // cut between CR and LF
    pieces.push(text.slice(i, end));
    i = end;
  }
  return pieces;
}

function sseEvent(obj, { id, crlf = false, event, style } = {}) {
  const nl = style === 'cr' ? '\r' : crlf ? '\r\n' : '\n';
  let s = '';
  if (event) s += `event: ${event}${nl}`;
  if (id !== undefined) s += `id: ${id}${nl}`;
  if (style === 'multiline') {
    for (const line of JSON.stringify(obj, null, 1).split('\n')) s += `data: ${line}${nl}`;
    s += nl;
  } else {
    s += `data: ${JSON.stringify(obj)}${nl}${nl}`;
  }
  return s;
}

export class Recorder {
  constructor({ logFile }) {
    this.logFile = logFile;
    this.requests = [];
    this.arrivals = [];
    this.eventId = 0;
    this.sockets = new Set();
  }

  async start(port = 0) {
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    this.server = http.createServer((req, res) => this.handle(req, res).catch((e) => {
      try {
        res.destroy(e);
      } catch {
        // already gone
      }
    }));
    this.server.on('connection', (s) => {
      s.setNoDelay(true);
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  /** Forgets what was recorded so far. */
  clear() {
    this.requests = [];
    this.arrivals = [];
  }

  /** Arrivals that carried at least one body byte. */
  get arrivalsWithBody() {
    return this.arrivals.filter((a) => a.bodyBytes > 0);
  }

  async handle(req, res) {
    const arrival = { time: new Date().toISOString(), method: req.method, path: req.url, headers: { ...req.headers }, bodyBytes: 0, complete: false };
    this.arrivals.push(arrival);
    const chunks = [];
    try {
      for await (const c of req) {
        chunks.push(c);
        arrival.bodyBytes += c.length;
      }
    } catch {
      // The stream was reset before its end; recorded below.
    }
    arrival.complete = req.complete;
    if (!req.complete) {
      fs.appendFileSync(this.logFile, JSON.stringify({
        time: arrival.time, method: arrival.method, path: arrival.path, headers: arrival.headers,
        body_bytes: arrival.bodyBytes, reset_before_end: true,
      }) + '\n');
      res.destroy();
      return;
    }
    const body = Buffer.concat(chunks);
    const entry = {
      time: arrival.time,
      method: req.method,
      path: req.url,
      headers: { ...req.headers },
      trailers: { ...req.trailers },
      body,
      text: body.toString('utf8'),
    };
    this.requests.push(entry);
    fs.appendFileSync(this.logFile, JSON.stringify({
      time: entry.time, method: entry.method, path: entry.path, headers: entry.headers,
      body_bytes: body.length, body: entry.text.slice(0, 4000),
    }) + '\n');

    const segment = (req.url.split('?')[0].split('/')[1] ?? '').toLowerCase();
    const mode = String(req.headers['x-recorder-mode'] ?? (['json', 'sse', 'slow', 'slowjson'].includes(segment) ? segment : 'json'));
    const style = req.headers['x-recorder-sse-style'];

    if (req.method === 'GET' && req.headers['last-event-id'] !== undefined) {
      // SSE resumption: replay an earlier tools/list answer on the GET stream, then close it.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.end(sseEvent(rpcResult('replayed-1', { tools: RECORDER_TOOLS }), { id: ++this.eventId, event: 'message', style: req.headers['x-recorder-sse-style'] }));
      return;
    }
    if (req.method === 'GET') {
      res.writeHead(405, { allow: 'POST, DELETE', 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'recorder: no standalone SSE stream' }));
      return;
    }
    if (req.method === 'DELETE') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST, DELETE' });
      res.end();
      return;
    }

    let parsed;
    try {
      parsed = JSON.parse(entry.text);
    } catch {
      const text = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'recorder: parse error' } });
      res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    const isBatch = Array.isArray(parsed);
    const answers = (isBatch ? parsed : [parsed]).map((m) => answer(m, req)).filter((a) => a !== undefined);
    if (answers.length === 0) {
      res.writeHead(202);
      res.end();
      return;
    }
    const headers = {};
    if (!isBatch && parsed.method === 'initialize') headers['mcp-session-id'] = 'recorder-session-1';
    const payload = isBatch ? answers : answers[0];

    if (mode === 'json') {
      let out = Buffer.from(JSON.stringify(payload));
      const type = String(req.headers['x-recorder-content-type'] ?? 'application/json');
      if (req.headers['x-recorder-gzip'] === '1' && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
        out = zlib.gzipSync(out);
        headers['content-encoding'] = 'gzip';
      }
      res.writeHead(200, { ...headers, 'content-type': type, 'content-length': out.length });
      res.end(out);
      return;
    }
    if (mode === 'slowjson') {
      res.writeHead(200, { ...headers, 'content-type': 'application/json' });
      const pieces = slowPieces(JSON.stringify(payload));
      entry.slowPieces = pieces.length;
      for (const [i, piece] of pieces.entries()) {
        res.write(piece);
        await sleep(1 + (i % 3));
      }
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const events = isBatch ? answers : [payload];
    if (req.headers['x-recorder-extra-list'] === '1') {
      events.unshift(rpcResult('replayed-999', { tools: RECORDER_TOOLS }));
    }
    if (mode === 'sse') {
      res.end(events.map((e) => sseEvent(e, { id: ++this.eventId, event: 'message', style })).join(''));
      return;
    }
    // slow: a log notification first, a comment, then the answer(s); CRLF line endings.
    let text = sseEvent({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'recorder: working on it' } },
      { crlf: true, event: 'message', id: ++this.eventId });
    text += ': recorder keep-alive comment\r\n\r\n';
    for (const e of events) text += sseEvent(e, { crlf: true, event: 'message', id: ++this.eventId, style });
    const pieces = slowPieces(text);
    entry.slowPieces = pieces.length;
    for (const [i, piece] of pieces.entries()) {
      res.write(piece);
      await sleep(2 + (i % 4));
    }
    res.end();
  }

  async stop() {
    if (!this.server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
    this.server = undefined;
  }
}

export async function startRecorder({ logFile, port = 0 }) {
  return new Recorder({ logFile }).start(port);
}
