// An MCP server behind an upstream-OAuth route, built with the official SDK's server classes
// (McpServer + StreamableHTTPServerTransport, stateless, one server per request as in the SDK's
// simpleStatelessStreamableHttp example) on node:http in the test process, bound to 127.0.0.1.
//
// It is a resource server of the GitHub-like provider (lib/github-provider.mjs), as GitHub's own
// MCP server is of GitHub:
//   - every POST /mcp must carry `Authorization: Bearer <provider token>`; the server checks it at
//     the provider's /user. No bearer, or /user answers 401: HTTP 401 with
//     `WWW-Authenticate: Bearer error="invalid_token"` (plus resource_metadata in discover mode);
//     the provider unreachable or 5xx: HTTP 503.
//   - tool `whoami` calls the provider's /user with the bearer it received and returns the login.
//   - discover mode: /.well-known/oauth-protected-resource[/mcp] names the provider as its
//     authorization server (RFC 9728), which serves RFC 8414 metadata.
// Every request is recorded: method, path, the Authorization header, the JSON-RPC method, and the
// `x-mcpgate-assertion` header verified with jose against the gateway's JWKS (claims or failure).
// The log file gets request lines and outcomes, never a header value.
import { startHttpServer, stopHttpServer } from './net.mjs';
import fs from 'node:fs';
import path from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { AssertionVerifier } from './assertion.mjs';

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const bearerOf = (header) => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m ? m[1] : null;
};

export class UpstreamMcpServer {
  /**
   * @param {object} o
   * @param {string} o.providerUrl origin of the provider (its /user)
   * @param {string} [o.jwksUrl] the gateway's JWKS URL; without it assertions are recorded unverified
   * @param {string} [o.issuer] the gateway's issuer
   * @param {string} [o.audience] the route URL (the assertion's aud)
   * @param {boolean} [o.discover] serve protected-resource metadata pointing at the provider
   * @param {string[]} [o.scopes] scopes named in the protected-resource metadata
   * @param {string} [o.logFile]
   * @param {number} [o.port]
   */
  constructor({ providerUrl, jwksUrl, issuer, audience, discover = false, scopes = [], logFile, port = 0, name = 'upstream-mcp' }) {
    this.providerUrl = providerUrl;
    this.discover = discover;
    this.scopes = scopes;
    this.logFile = logFile;
    this.port = port;
    this.name = name;
    this.verifier = jwksUrl ? new AssertionVerifier({ jwksUrl, issuer, audience }) : null;
    this.clear();
  }

  clear() {
    this.requests = []; // {method, path, authorization, bearer, rpcMethod, tool, assertion, status}
  }

  get origin() {
    return `http://127.0.0.1:${this.port}`;
  }

  get url() {
    return `${this.origin}/mcp`;
  }

  get resourceMetadataUrl() {
    return `${this.origin}/.well-known/oauth-protected-resource/mcp`;
  }

  /** Bearer tokens of every request (null for none), in order. */
  bearers() {
    return this.requests.filter((r) => r.path === '/mcp').map((r) => r.bearer);
  }

  async start() {
    ({ server: this.server, port: this.port } = await startHttpServer(
      this.port,
      (req, res) => this.handle(req, res),
      (e, res) => {
        this._log(`error ${e.stack ?? e}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null }));
      },
    ));
    if (this.logFile) fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    this._log(`listening on ${this.url}`);
    return this;
  }

  async stop() {
    await stopHttpServer(this.server);
    this.server = undefined;
  }

  _log(line) {
    if (this.logFile) fs.appendFileSync(this.logFile, `${new Date().toISOString()} ${line}\n`);
  }

  challenge() {
    const parts = ['Bearer error="invalid_token"', 'error_description="The access token is invalid or expired"'];
    if (this.discover) parts.push(`resource_metadata="${this.resourceMetadataUrl}"`);
    return parts.join(', ');
  }

  /** The provider's /user for a bearer: {status, body} (status 0 when unreachable). */
  async providerUser(bearer) {
    try {
      const r = await fetch(`${this.providerUrl}/user`, {
        headers: { authorization: `Bearer ${bearer}`, accept: 'application/vnd.github+json' },
        signal: AbortSignal.timeout(5000),
      });
      const text = await r.text();
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      return { status: r.status, body };
    } catch (e) {
      return { status: 0, error: e.message };
    }
  }

  async handle(req, res) {
    const url = new URL(req.url, this.origin);
    const record = {
      at: Date.now(),
      method: req.method,
      path: url.pathname,
      authorization: req.headers.authorization ?? null,
      bearer: bearerOf(req.headers.authorization),
      headers: { ...req.headers },
      rpcMethod: null,
      tool: null,
      status: null,
    };
    this.requests.push(record);
    const finish = (status) => {
      record.status = status;
      this._log(`${req.method} ${url.pathname} ${record.rpcMethod ?? '-'}${record.tool ? ` ${record.tool}` : ''} -> ${status}; bearer ${record.bearer ? 'present' : 'absent'}; assertion ${record.assertion ? (record.assertion.ok ? 'verified' : `FAILED (${record.assertion.error})`) : 'n/a'}`);
    };

    if (this.discover && req.method === 'GET'
      && (url.pathname === '/.well-known/oauth-protected-resource/mcp' || url.pathname === '/.well-known/oauth-protected-resource')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        resource: this.url,
        authorization_servers: [this.providerUrl],
        scopes_supported: this.scopes,
        bearer_methods_supported: ['header'],
      }));
      return finish(200);
    }
    if (url.pathname !== '/mcp') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return finish(404);
    }

    record.assertion = this.verifier
      ? await this.verifier.verify(req.headers['x-mcpgate-assertion'])
      : { present: req.headers['x-mcpgate-assertion'] !== undefined, ok: false, error: 'not verified (no JWKS URL)' };

    const body = req.method === 'POST' ? await readBody(req) : '';
    let parsed;
    if (body) {
      try {
        parsed = JSON.parse(body);
        record.rpcMethod = parsed?.method ?? null;
        if (parsed?.method === 'tools/call') record.tool = parsed.params?.name ?? null;
      } catch {
        parsed = undefined;
      }
    }

    // A resource server of the provider: the bearer must be a live provider token.
    if (!record.bearer) {
      res.writeHead(401, { 'www-authenticate': this.challenge().replace(', error_description="The access token is invalid or expired"', ''), 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_token', error_description: 'missing bearer token' }));
      return finish(401);
    }
    const user = await this.providerUser(record.bearer);
    record.providerStatus = user.status;
    if (user.status === 401) {
      res.writeHead(401, { 'www-authenticate': this.challenge(), 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_token', error_description: 'Bad credentials' }));
      return finish(401);
    }
    if (user.status !== 200) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: `GitHub is unavailable (${user.status || user.error})` }, id: parsed?.id ?? null }));
      return finish(503);
    }

    if (req.method !== 'POST') {
      // Stateless server: no standalone SSE stream, no session to delete (as in the SDK example).
      res.writeHead(405, { allow: 'POST', 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }));
      return finish(405);
    }

    const server = this.mcpServer(record.bearer);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      finish(res.statusCode);
      transport.close().catch(() => {});
      server.close().catch(() => {});
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, parsed);
  }

  /** One McpServer per request (stateless), whose tools use that request's bearer. */
  mcpServer(bearer) {
    const server = new McpServer({ name: this.name, version: '1.0.0' });
    server.registerTool('whoami', {
      title: 'Who am I',
      description: 'The provider login of the token this server received',
    }, async () => {
      const user = await this.providerUser(bearer);
      if (user.status !== 200) {
        return { isError: true, content: [{ type: 'text', text: `the provider answered ${user.status || user.error}` }] };
      }
      return {
        content: [{ type: 'text', text: user.body.login }],
        structuredContent: { login: user.body.login, id: user.body.id },
      };
    });
    return server;
  }
}

/** Starts an upstream MCP server (see UpstreamMcpServer for the options). */
export async function startUpstreamMcp(options) {
  return new UpstreamMcpServer(options).start();
}
