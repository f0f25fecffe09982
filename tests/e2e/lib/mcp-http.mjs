// Low-level MCP requests for the hostile-input tests, with full control over the bytes on the wire:
// HTTP/1.1 through node:http (exact headers, Content-Length or chunked, bodies on any method, bytes
// trickled with delays) and HTTP/2 cleartext with prior knowledge through node:http2 (with and
// without trailers). Also forged access tokens signed with the gateway's own key.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { accessTokenClaims, signEdDSA } from './oauth.mjs';

/** Signs access tokens for a gateway's routes with its signing key and published kid. */
export async function tokenForger(gw) {
  const jwks = await gw.jwks();
  const key = gw.signingKey();
  const x = crypto.createPublicKey(key).export({ format: 'jwk' }).x;
  const kid = jwks.keys.find((k) => k.x === x)?.kid;
  if (!kid) throw new Error(`the JWKS does not publish the key in ${gw.paths.signingKey}`);
  const issued = [];
  const forge = (routePath, claims = {}) => {
    const token = signEdDSA({ alg: 'EdDSA', typ: 'at+jwt', kid },
      accessTokenClaims(gw, { aud: gw.route(routePath).url, ...claims }), key);
    issued.push(token);
    return token;
  };
  forge.issued = issued;
  return forge;
}

function finish(status, headers, trailers, buffer, extra = {}) {
  const text = buffer.toString('utf8');
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status, headers, trailers, buffer, text, json, ...extra };
}

/** Body pieces: a string/Buffer, or an array of them (sent as separate writes). */
function pieces(body) {
  if (body === undefined || body === null) return [];
  return (Array.isArray(body) ? body : [body]).map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8')));
}

/**
 * One HTTP/1.1 request on a fresh connection to Envoy. Options:
 *   method ('POST'), path (the route path), token (a bearer; undefined = none), headers (added last,
 *   a value of null removes a default), body (string | Buffer | array of pieces),
 *   chunked (true = Transfer-Encoding: chunked, no Content-Length), delayMs (pause between pieces),
 *   timeoutMs, streamMs (for a stream that stays open: resolve with what arrived within streamMs).
 * Resolves {status, headers, trailers, buffer, text, json}; rejects on a socket error or timeout.
 */
export function send(gw, { method = 'POST', path, token, headers = {}, body, chunked = false, delayMs = 0, timeoutMs = 15_000, streamMs } = {}) {
  const parts = pieces(body);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const h = {
    host: `localhost:${gw.ports.envoy}`,
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
  };
  if (parts.length > 0) h['content-type'] = 'application/json';
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  if (parts.length > 0) {
    if (chunked) h['transfer-encoding'] = 'chunked';
    else h['content-length'] = String(total);
  }
  for (const [k, v] of Object.entries(headers)) {
    if (v === null) delete h[k.toLowerCase()];
    else h[k.toLowerCase()] = v;
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gw.ports.envoy, method, path, headers: h, agent: false, setHost: false });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${path}: no complete answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve(finish(res.statusCode, res.headers, res.trailers, Buffer.concat(chunks), { rawHeaders: res.rawHeaders }));
      });
      if (streamMs !== undefined) {
        // A stream that stays open (an SSE GET): take what arrived within streamMs, then hang up.
        setTimeout(() => {
          clearTimeout(timer);
          resolve(finish(res.statusCode, res.headers, res.trailers, Buffer.concat(chunks), { rawHeaders: res.rawHeaders, cut: true }));
          req.destroy();
        }, streamMs);
      }
    });
    (async () => {
      try {
        req.flushHeaders();
        for (const [i, p] of parts.entries()) {
          if (delayMs > 0 && i > 0) await sleep(delayMs);
          if (req.destroyed) return;
          req.write(p);
        }
        req.end();
      } catch (e) {
        req.destroy(e);
      }
    })();
  });
}

/**
 * One request over HTTP/2 cleartext with prior knowledge (h2c, no upgrade). Options as for `send`,
 * plus trailers (an object sent as HTTP/2 trailers after the body).
 */
export function sendH2(gw, { method = 'POST', path, token, headers = {}, body, trailers, delayMs = 0, timeoutMs = 15_000 } = {}) {
  const parts = pieces(body);
  const h = {
    ':method': method,
    ':path': path,
    ':authority': `localhost:${gw.ports.envoy}`,
    ':scheme': 'http',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
  };
  if (parts.length > 0) h['content-type'] = 'application/json';
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === null) delete h[k.toLowerCase()];
    else h[k.toLowerCase()] = v;
  }
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${gw.ports.envoy}`);
    const done = (fn) => (v) => {
      clearTimeout(timer);
      session.close();
      fn(v);
    };
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`h2 ${method} ${path}: no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    session.on('error', done(reject));
    const stream = session.request(h, { endStream: parts.length === 0 && !trailers, waitForTrailers: Boolean(trailers) });
    if (trailers) stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    let status;
    let responseHeaders;
    let responseTrailers = {};
    const chunks = [];
    stream.on('response', (hs) => {
      status = hs[':status'];
      responseHeaders = hs;
    });
    stream.on('trailers', (t) => {
      responseTrailers = t;
    });
    stream.on('data', (c) => chunks.push(c));
    stream.on('error', done(reject));
    stream.on('end', done(() => resolve(finish(status, responseHeaders ?? {}, responseTrailers, Buffer.concat(chunks)))));
    (async () => {
      for (const [i, p] of parts.entries()) {
        if (delayMs > 0 && i > 0) await sleep(delayMs);
        stream.write(p);
      }
      if (parts.length > 0 || trailers) stream.end();
    })().catch((e) => stream.destroy(e));
  });
}

/** A JSON-RPC request body; `id` is spliced in as raw JSON text when given as {raw: '…'}. */
export function rpc(method, params, id = 1) {
  const idText = typeof id === 'object' && id !== null && 'raw' in id ? id.raw : JSON.stringify(id);
  const paramsText = params === undefined ? '' : `,"params":${JSON.stringify(params)}`;
  return `{"jsonrpc":"2.0","id":${idText},"method":${JSON.stringify(method)}${paramsText}}`;
}

export const call = (name, args = {}, id = 1) => rpc('tools/call', { name, arguments: args }, id);

/** Server-sent events of a text/event-stream body: [{event, id, data}] (data lines joined by \n). */
export function parseSse(text) {
  const events = [];
  for (const block of text.split(/\r\n\r\n|\n\n|\r\r/)) {
    const ev = { data: [] };
    let any = false;
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i === -1 ? line : line.slice(0, i);
      let value = i === -1 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      any = true;
      if (field === 'data') ev.data.push(value);
      else ev[field] = value;
    }
    if (any) events.push({ ...ev, data: ev.data.join('\n') });
  }
  return events;
}

/** JSON-RPC messages in a response: the JSON body, or every SSE event's data that parses. */
export function messagesOf(res) {
  const ct = String(res.headers['content-type'] ?? '');
  if (ct.startsWith('text/event-stream')) {
    return parseSse(res.text).filter((e) => e.data !== '').map((e) => JSON.parse(e.data)).flat();
  }
  if (res.json === undefined) return [];
  return Array.isArray(res.json) ? res.json : [res.json];
}

/**
 * Writes raw HTTP/1.1 bytes (e.g. several pipelined requests in one write) on one connection and
 * parses `count` responses (Content-Length or chunked bodies). Resolves [{status, headers, text, json}];
 * with allowClose, a connection closed early resolves with the responses received so far.
 */
export function sendRaw(gw, bytes, count, { timeoutMs = 10_000, allowClose = false } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: gw.ports.envoy });
    let buf = Buffer.alloc(0);
    const responses = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw HTTP: ${responses.length}/${count} responses within ${timeoutMs} ms; pending bytes: ${buf.toString('utf8').slice(0, 300)}`));
    }, timeoutMs);
    const parse = () => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(head[0].split(' ')[1]);
        const headers = {};
        for (const line of head.slice(1)) {
          const i = line.indexOf(':');
          headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
        }
        let body;
        let rest;
        if (headers['transfer-encoding']?.includes('chunked')) {
          let pos = end + 4;
          const parts = [];
          for (;;) {
            const le = buf.indexOf('\r\n', pos);
            if (le === -1) return;
            const size = parseInt(buf.subarray(pos, le).toString('latin1'), 16);
            if (size === 0) {
              const fin = buf.indexOf('\r\n\r\n', le - 2 >= 0 ? le : pos);
              if (fin === -1) return;
              rest = buf.subarray(fin + 4);
              break;
            }
            if (buf.length < le + 2 + size + 2) return;
            parts.push(buf.subarray(le + 2, le + 2 + size));
            pos = le + 2 + size + 2;
          }
          body = Buffer.concat(parts);
        } else {
          const len = Number(headers['content-length'] ?? 0);
          if (buf.length < end + 4 + len) return;
          body = buf.subarray(end + 4, end + 4 + len);
          rest = buf.subarray(end + 4 + len);
        }
        responses.push(finish(status, headers, {}, Buffer.from(body)));
        buf = Buffer.from(rest);
        if (responses.length === count) {
          clearTimeout(timer);
          socket.destroy();
          resolve(responses);
          return;
        }
      }
    };
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      parse();
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      if (responses.length < count && allowClose) {
        clearTimeout(timer);
        resolve(responses);
      } else if (responses.length < count) {
        clearTimeout(timer);
        reject(new Error(`raw HTTP: connection closed after ${responses.length}/${count} responses; pending: ${buf.toString('utf8').slice(0, 300)}`));
      }
    });
    socket.write(bytes);
  });
}

/** One raw HTTP/1.1 POST request (bytes), Content-Length framed. */
export function rawPost(gw, path, token, body, extra = {}) {
  const b = Buffer.from(body);
  const lines = [`POST ${path} HTTP/1.1`, `Host: localhost:${gw.ports.envoy}`, 'Content-Type: application/json',
    'Accept: application/json, text/event-stream', 'MCP-Protocol-Version: 2025-06-18', `Authorization: Bearer ${token}`,
    `Content-Length: ${b.length}`, ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`)];
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), b]);
}
