// A small web app to put behind a client route (`mcp: {client: {}}`), in the test process on
// 127.0.0.1. The gateway signs the browser in and hands the app the user's TE
// (`Authorization: Bearer <TE>`) and an assertion (`x-mcpgate-assertion`) on every request.
//   GET /                 HTML: the servers from `<gateway>/.mcpgate/mcp/routes` (fetched with the
//                         Authorization the app received), each an `li.server` with data-name,
//                         data-url, data-connected, data-needs-oauth, and a connect link
//                         `<server url>/.mcpgate/mcp/connect?redirect_url=<app url>`.
//   GET /call?url=<server route url>&tool=<name>&args=<JSON>
//                         the official SDK client (StreamableHTTPClientTransport with
//                         requestInit.headers.Authorization = the TE received) calls the tool; the
//                         answer is JSON {ok, result | error, httpStatuses}.
// Every request is recorded: method, path, the Authorization and Cookie headers, the names of any
// x-mcpgate-* headers, and the assertion verified with jose (lib/assertion.mjs). The log file gets
// request lines and outcomes, never a header value.
import { startHttpServer, stopHttpServer } from './net.mjs';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AssertionVerifier } from './assertion.mjs';

const escapeHtml = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const bearerOf = (header) => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m ? m[1] : null;
};

export class ClientApp {
  /**
   * @param {object} o
   * @param {string} o.gatewayOrigin the gateway's public origin (routes list, JWKS)
   * @param {string} o.issuer
   * @param {string} o.appUrl the client route's public URL (the assertion's aud; the connect links'
   *   redirect_url is this URL with a trailing slash)
   * @param {string} [o.logFile]
   * @param {number} [o.port]
   */
  constructor({ gatewayOrigin, issuer, appUrl, logFile, port = 0 }) {
    this.gatewayOrigin = gatewayOrigin;
    this.appUrl = appUrl;
    this.logFile = logFile;
    this.port = port;
    this.verifier = new AssertionVerifier({ jwksUrl: `${gatewayOrigin}/.well-known/jwks.json`, issuer, audience: appUrl });
    this.clear();
  }

  clear() {
    this.requests = []; // {method, path, authorization, bearer, cookie, mcpgateHeaders, assertion, status}
    this.calls = []; // {url, tool, ok, error, httpStatuses}
  }

  /** The redirect_url of the connect links: the app's page. */
  get returnUrl() {
    return this.appUrl.endsWith('/') ? this.appUrl : `${this.appUrl}/`;
  }

  get origin() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    ({ server: this.server, port: this.port } = await startHttpServer(
      this.port,
      (req, res) => this.handle(req, res),
      (e, res) => {
        this._log(`error ${e.stack ?? e}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error');
      },
    ));
    if (this.logFile) fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    this._log(`listening on ${this.origin} for ${this.appUrl}`);
    return this;
  }

  async stop() {
    await stopHttpServer(this.server);
    this.server = undefined;
  }

  _log(line) {
    if (this.logFile) fs.appendFileSync(this.logFile, `${new Date().toISOString()} ${line}\n`);
  }

  async handle(req, res) {
    const url = new URL(req.url, this.origin);
    const record = {
      at: Date.now(),
      method: req.method,
      path: url.pathname,
      authorization: req.headers.authorization ?? null,
      bearer: bearerOf(req.headers.authorization),
      cookie: req.headers.cookie ?? null,
      mcpgateHeaders: Object.keys(req.headers).filter((h) => h.startsWith('x-mcpgate-')),
      headers: { ...req.headers },
      status: null,
    };
    this.requests.push(record);
    record.assertion = await this.verifier.verify(req.headers['x-mcpgate-assertion']);
    const send = (status, type, body) => {
      record.status = status;
      this._log(`${req.method} ${url.pathname} -> ${status}; bearer ${record.bearer ? 'present' : 'absent'}; assertion ${record.assertion.ok ? 'verified' : `FAILED (${record.assertion.error})`}`);
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };

    if (!record.bearer) {
      return send(401, 'text/html; charset=utf-8', '<!doctype html><title>no token</title><p id="error">The gateway sent no token.</p>');
    }
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '')) return this.page(record, send);
    if (req.method === 'GET' && url.pathname === '/call') return this.call(record, url, send);
    return send(404, 'text/plain', 'not found');
  }

  async page(record, send) {
    let routes;
    let routesStatus;
    try {
      const r = await fetch(`${this.gatewayOrigin}/.mcpgate/mcp/routes`, {
        headers: { authorization: `Bearer ${record.bearer}`, accept: 'application/json' },
        signal: AbortSignal.timeout(10_000),
      });
      routesStatus = r.status;
      routes = r.status === 200 ? await r.json() : undefined;
    } catch (e) {
      routesStatus = `error: ${e.message}`;
    }
    const claims = record.assertion.ok ? record.assertion.claims : {};
    const servers = routes?.servers ?? [];
    const items = servers.map((s) => {
      const connect = `${s.url}/.mcpgate/mcp/connect?redirect_url=${encodeURIComponent(this.returnUrl)}`;
      return `<li class="server" data-name="${escapeHtml(s.name)}" data-url="${escapeHtml(s.url)}" data-connected="${escapeHtml(String(s.connected))}" data-needs-oauth="${escapeHtml(String(s.needs_oauth))}">`
        + `${escapeHtml(s.name)} <a class="connect" href="${escapeHtml(connect)}">Connect ${escapeHtml(s.name)}</a></li>`;
    });
    send(200, 'text/html; charset=utf-8', `<!doctype html>
<html><head><meta charset="utf-8"><title>Chat app</title></head>
<body data-routes-status="${escapeHtml(String(routesStatus))}">
<h1>Chat app</h1>
<p id="user" data-sub="${escapeHtml(claims.sub)}" data-email="${escapeHtml(claims.email)}">Signed in as ${escapeHtml(claims.email ?? claims.sub ?? '?')}</p>
<ul id="servers">
${items.join('\n')}
</ul>
</body></html>`);
  }

  async call(record, url, send) {
    const target = url.searchParams.get('url');
    const tool = url.searchParams.get('tool');
    let args = {};
    try {
      args = JSON.parse(url.searchParams.get('args') ?? '{}');
    } catch {
      return send(400, 'application/json', JSON.stringify({ ok: false, error: 'args is not JSON' }));
    }
    const httpStatuses = [];
    const outcome = { url: target, tool, httpStatuses };
    this.calls.push(outcome);
    const client = new Client({ name: 'mcpgate-e2e-client-app', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(target), {
      requestInit: { headers: { Authorization: `Bearer ${record.bearer}` } },
      fetch: async (input, init) => {
        const r = await fetch(input, init);
        httpStatuses.push(r.status);
        return r;
      },
    });
    try {
      await client.connect(transport);
      const result = await client.callTool({ name: tool, arguments: args });
      outcome.ok = true;
      outcome.result = result;
    } catch (e) {
      outcome.ok = false;
      outcome.error = e.message;
      outcome.code = e.code;
    } finally {
      await client.close().catch(() => {});
    }
    send(200, 'application/json', JSON.stringify(outcome));
  }
}

/** Starts a client app (see ClientApp for the options). */
export async function startClientApp(options) {
  return new ClientApp(options).start();
}
