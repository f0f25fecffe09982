// Loopback ports and small HTTP helpers.
import http from 'node:http';
import net from 'node:net';

/** `count` distinct free TCP ports on 127.0.0.1 (held open together so they differ). */
export async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      await listen(server, 0);
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** Listens on 127.0.0.1:port (0: any free port); resolves to the port. */
async function listen(server, port) {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return server.address().port;
}

/**
 * An HTTP server on 127.0.0.1:port (0: any free port) answering with `handle(req, res)`; when
 * that throws, `fail(error, res)` answers. Resolves to {server, port}.
 */
export async function startHttpServer(port, handle, fail) {
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => fail(e, res));
  });
  return { server, port: await listen(server, port) };
}

/** Closes a server from startHttpServer (if any), dropping its open connections. */
/** A request's body as text; rejects (and drops the connection) past `limit` bytes. */
export function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function stopHttpServer(server) {
  if (!server) return;
  server.closeAllConnections?.();
  await new Promise((r) => server.close(r));
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** fetch that never follows redirects and returns {status, headers, text, json}. */
export async function request(url, init = {}) {
  const response = await fetch(url, { redirect: 'manual', ...init });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json, url: String(url) };
}

/** One-line description of a response for assertion messages. */
export function describe(res) {
  const www = res.headers.get('www-authenticate');
  const loc = res.headers.get('location');
  return `${res.status}${www ? ` WWW-Authenticate: ${www}` : ''}${loc ? ` Location: ${loc}` : ''} body: ${res.text.slice(0, 300)}`;
}
