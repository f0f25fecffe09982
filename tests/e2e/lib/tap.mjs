// A transparent HTTP proxy on 127.0.0.1 in front of one upstream process, recording what the
// upstream receives: method, path and every request header (the tests assert which credentials
// reached an MCP server). Bodies and answers pass through unchanged and streamed (SSE included).
// The recorded headers stay in memory; nothing is written to a log.
import http from 'node:http';
import { startHttpServer, stopHttpServer } from './net.mjs';

export class Tap {
  /** @param {{target: string, port?: number}} o target: the upstream origin, e.g. http://127.0.0.1:4100 */
  constructor({ target, port = 0 }) {
    this.target = new URL(target);
    this.port = port;
    this.requests = []; // {method, path, headers}
  }

  async start() {
    ({ server: this.server, port: this.port } = await startHttpServer(this.port, (req, res) => this.forward(req, res)));
    return this;
  }

  async stop() {
    if (this.server) await stopHttpServer(this.server);
    this.server = undefined;
  }

  async forward(req, res) {
    this.requests.push({ method: req.method, path: req.url, headers: { ...req.headers } });
    const upstream = http.request({
      host: this.target.hostname,
      port: this.target.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
    }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('tap: the upstream did not answer');
    });
    req.pipe(upstream);
  }
}

/** Starts a tap in front of `target` (see Tap). */
export async function startTap(options) {
  return new Tap(options).start();
}
