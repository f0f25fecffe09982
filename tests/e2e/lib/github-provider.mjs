// A local OAuth 2.0 provider that behaves like GitHub's OAuth app flow (github.com cannot be used
// here), in the test process on 127.0.0.1:
//   GET  /login/oauth/authorize      consent page ("Authorize …" / "Cancel"), then 302 to the exact
//                                    registered redirect_uri with code and state (no iss, like GitHub)
//   POST /login/oauth/authorize      the consent form's answer
//   POST /login/oauth/access_token   authorization_code (single-use code, redirect_uri must match,
//                                    PKCE S256 verified when a challenge was sent) and refresh_token
//                                    (rotation: the old refresh token dies); client authentication by
//                                    HTTP Basic or client_id/client_secret in the body, the style used
//                                    is recorded; `Accept: application/json` → JSON, otherwise
//                                    form-encoded like GitHub
//   GET  /user                       `Authorization: Bearer|token <access token>` → {login, id, …}, or
//                                    401 {"message": "Bad credentials"}
//   GET  /.well-known/oauth-authorization-server   RFC 8414 metadata (GitHub has none; used by the
//                                    `discover` routes, whose MCP server points at this provider)
// Token-endpoint errors follow RFC 6749 by default (HTTP 400 invalid_grant, 401 invalid_client);
// `errorStyle: 'github'` answers them like GitHub does: HTTP 200 with bad_verification_code,
// bad_refresh_token, incorrect_client_credentials, redirect_uri_mismatch.
//
// Controls for tests: refuseRefresh(mode), refuseCodes(mode), down(bool), expireAll(), addClient(),
// holdRefreshes()/releaseRefreshes() (refresh grants wait, `heldRefreshes` counts them; one whose
// client went away meanwhile is dropped unprocessed, its refresh token stays valid),
// consent(url) (the user's answer over HTTP), and the records
// `issued`, `tokenRequests`, `userBearers`, `authorizeRequests`.
import { readBody, startHttpServer, stopHttpServer } from './net.mjs';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const rand = (bytes) => crypto.randomBytes(bytes).toString('base64url');
// GitHub's formats: ghu_ (user-to-server access token), ghr_ (its refresh token), 20-hex codes.
const alnum = (n) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(n);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
};
const newAccessToken = () => `ghu_${alnum(36)}`;
const newRefreshToken = () => `ghr_${alnum(76)}`;
const newCode = () => crypto.randomBytes(10).toString('hex');

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);


/** Constant-time string comparison. */
function same(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

export class GitHubProvider {
  /**
   * @param {object} o
   * @param {number|null} [o.expiresIn] access-token lifetime in seconds (GitHub Apps: 28800); null:
   *   tokens that never expire and no refresh token, like a classic GitHub OAuth App
   * @param {number} [o.refreshTokenExpiresIn] refresh-token lifetime in seconds (GitHub: 15897600)
   * @param {'rfc'|'github'} [o.errorStyle] token-endpoint errors as RFC 6749 (4xx) or as GitHub (200)
   * @param {{login: string, id: number, name?: string, email?: string}} [o.user] who consents
   * @param {string} [o.logFile] request lines (method and path, never a query or a body)
   * @param {number} [o.port] 0 (default): a free port
   */
  constructor({ expiresIn = 4, refreshTokenExpiresIn = 3600, errorStyle = 'rfc', user, logFile, port = 0 } = {}) {
    this.expiresIn = expiresIn;
    this.refreshTokenExpiresIn = refreshTokenExpiresIn;
    this.errorStyle = errorStyle;
    this.user = user ?? { login: 'alice-gh', id: 4_100_001, name: 'Alice on GitHub', email: 'alice@users.noreply.example' };
    this.logFile = logFile;
    this.port = port;
    this.clients = new Map(); // client_id -> {clientId, clientSecret, redirectUris: string[], name}
    this.pendingConsents = new Map(); // consent id -> authorization request
    this.codes = new Map(); // code -> {clientId, redirectUri, scope, challenge, expiresAt, used}
    this.accessTokens = new Map(); // token -> {clientId, scope, expiresAt, revoked, grant}
    this.refreshTokens = new Map(); // token -> {clientId, scope, expiresAt, revoked}
    this._down = false;
    this._refuseRefresh = null;
    this._refuseCodes = null;
    this.reset();
  }

  /** Clears the records (not the tokens). */
  reset() {
    this.issued = []; // {accessToken, refreshToken, clientId, grant, expiresAt}
    this.tokenRequests = []; // {grantType, authStyle, clientId, status, error, accept}
    this.userBearers = []; // every bearer /user saw (null when none)
    this.userAnswers = []; // {bearer, status}
    this.authorizeRequests = []; // {clientId, redirectUri, scope, state, codeChallenge, codeChallengeMethod, extra}
    this.consents = []; // {clientId, approved}
    this.log = [];
  }

  get origin() {
    return `http://127.0.0.1:${this.port}`;
  }

  get authUrl() {
    return `${this.origin}/login/oauth/authorize`;
  }

  get tokenUrl() {
    return `${this.origin}/login/oauth/access_token`;
  }

  get userUrl() {
    return `${this.origin}/user`;
  }

  /** Registers an OAuth app. Redirect URIs match exactly (GitHub allows sub-paths; this does not). */
  addClient({ clientId = `Iv1.${crypto.randomBytes(8).toString('hex')}`, clientSecret = crypto.randomBytes(20).toString('hex'), redirectUris = [], name = 'mcpgate e2e' } = {}) {
    const c = { clientId, clientSecret, redirectUris: [...redirectUris], name };
    this.clients.set(clientId, c);
    return c;
  }

  client(clientId) {
    const c = this.clients.get(clientId);
    if (!c) throw new Error(`no client ${clientId}`);
    return c;
  }

  /**
   * From now on every refresh grant is refused, and the refresh token presented dies:
   *   'invalid_grant'      HTTP 400 {"error": "invalid_grant"} (RFC 6749)
   *   'bad_refresh_token'  HTTP 200 {"error": "bad_refresh_token"} (what GitHub answers)
   *   null/false           refreshes work again
   */
  refuseRefresh(mode = 'invalid_grant') {
    if (mode && !['invalid_grant', 'bad_refresh_token'].includes(mode)) throw new Error(`unknown refuseRefresh mode ${mode}`);
    this._refuseRefresh = mode || null;
  }

  /**
   * From now on every authorization_code grant is refused (the code dies):
   *   'invalid_grant'          HTTP 400 {"error": "invalid_grant"} (RFC 6749)
   *   'bad_verification_code'  HTTP 200 {"error": "bad_verification_code"} (what GitHub answers)
   *   null/false               codes work again
   */
  refuseCodes(mode = 'invalid_grant') {
    if (mode && !['invalid_grant', 'bad_verification_code'].includes(mode)) throw new Error(`unknown refuseCodes mode ${mode}`);
    this._refuseCodes = mode || null;
  }

  /** While true, every endpoint answers 503. */
  /**
   * From now on refresh grants wait, once their request has arrived, until releaseRefreshes().
   * A held request whose client has gone away by then (a killed token service) is dropped without
   * being processed, as though it never arrived: its refresh token stays valid.
   */
  holdRefreshes() {
    let release;
    const gate = new Promise((resolve) => { release = resolve; });
    this._refreshGate = { gate, release, waiting: 0 };
  }

  releaseRefreshes() {
    const g = this._refreshGate;
    this._refreshGate = null;
    g?.release();
  }

  /** Refresh grants waiting for releaseRefreshes(). */
  get heldRefreshes() {
    return this._refreshGate?.waiting ?? 0;
  }

  down(on = true) {
    this._down = Boolean(on);
  }

  /** Every access token issued so far is invalid at /user from now on (the user revoked the app). */
  expireAll() {
    for (const t of this.accessTokens.values()) t.revoked = true;
  }

  /** Access tokens /user accepts right now. */
  validAccessTokens() {
    const now = Date.now();
    return [...this.accessTokens.entries()].filter(([, t]) => !t.revoked && t.expiresAt > now).map(([k]) => k);
  }

  /**
   * Every secret this provider handed out or holds, label -> value: access tokens (TIs), refresh
   * tokens and client secrets; with `codes: true` also the authorization codes.
   */
  secrets({ codes = false } = {}) {
    const out = new Map();
    this.issued.forEach((i, n) => {
      out.set(`provider access token (TI) #${n + 1}`, i.accessToken);
      if (i.refreshToken) out.set(`provider refresh token #${n + 1}`, i.refreshToken);
    });
    if (codes) [...this.codes.keys()].forEach((c, n) => out.set(`provider authorization code #${n + 1}`, c));
    for (const c of this.clients.values()) out.set(`provider client secret of ${c.clientId}`, c.clientSecret);
    return out;
  }

  /**
   * The user's answer on the consent page of an authorization URL, given over plain HTTP (this
   * provider keeps no browser session): the URL the provider redirects to (code and state, or an
   * error), or throws when the provider shows an error page instead.
   */
  async consent(authorizationUrl, { approve = true } = {}) {
    const page = await fetch(authorizationUrl, { redirect: 'manual' });
    const html = await page.text();
    const id = /name="consent_id" value="([^"]+)"/.exec(html)?.[1];
    if (page.status !== 200 || !id) throw new Error(`the provider showed no consent page (${page.status}): ${html.slice(0, 200)}`);
    const answer = await fetch(this.authUrl, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ consent_id: id, authorize: approve ? '1' : '0' }).toString(),
    });
    const location = answer.headers.get('location');
    if (answer.status !== 302 || !location) throw new Error(`the consent answer was ${answer.status}, not a redirect`);
    return location;
  }

  /** Token requests of one client (by its client_id). */
  requestsOf(clientId) {
    return this.tokenRequests.filter((r) => r.clientId === clientId);
  }

  async start() {
    ({ server: this.server, port: this.port } = await startHttpServer(
      this.port,
      (req, res) => this.handle(req, res),
      (e, res) => {
        this._log(`error ${e.message}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error');
      },
    ));
    if (this.logFile) fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    this._log(`listening on ${this.origin}`);
    return this;
  }

  async stop() {
    await stopHttpServer(this.server);
    this.server = undefined;
  }

  _log(line) {
    const entry = `${new Date().toISOString()} ${line}`;
    this.log.push(entry);
    if (this.logFile) fs.appendFileSync(this.logFile, `${entry}\n`);
  }

  async handle(req, res) {
    const url = new URL(req.url, this.origin);
    this._log(`${req.method} ${url.pathname}`);
    if (this._down) {
      res.writeHead(503, { 'content-type': 'text/html; charset=utf-8', 'retry-after': '30' });
      res.end('<!doctype html><title>Unicorn!</title><h1>No server is currently available to service your request.</h1>');
      return;
    }
    if (url.pathname === '/login/oauth/authorize' && req.method === 'GET') return this.authorizeGet(url, res);
    if (url.pathname === '/login/oauth/authorize' && req.method === 'POST') return this.authorizePost(req, res);
    if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') return this.accessToken(req, res);
    if (url.pathname === '/user' && req.method === 'GET') return this.userEndpoint(req, res);
    if (url.pathname === '/.well-known/oauth-authorization-server' && req.method === 'GET') {
      return json(res, 200, {
        issuer: this.origin,
        authorization_endpoint: this.authUrl,
        token_endpoint: this.tokenUrl,
        response_types_supported: ['code'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      });
    }
    json(res, 404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
  }

  errorPage(res, status, text) {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>Error</title><h1>Error</h1><p class="error">${escapeHtml(text)}</p>`);
  }

  authorizeGet(url, res) {
    const q = url.searchParams;
    const request = {
      clientId: q.get('client_id'),
      redirectUri: q.get('redirect_uri'),
      scope: q.get('scope') ?? '',
      state: q.get('state'),
      codeChallenge: q.get('code_challenge'),
      codeChallengeMethod: q.get('code_challenge_method'),
      responseType: q.get('response_type'),
      extra: Object.fromEntries([...q].filter(([k]) => !['client_id', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method', 'response_type'].includes(k))),
    };
    this.authorizeRequests.push(request);
    const client = this.clients.get(request.clientId ?? '');
    if (!client) return this.errorPage(res, 404, 'Unknown OAuth application (client_id).');
    // GitHub falls back to the registered URL when none is sent; an unregistered one is refused
    // here with a page (never a redirect to it).
    const redirectUri = request.redirectUri ?? client.redirectUris[0];
    if (!client.redirectUris.includes(redirectUri)) {
      return this.errorPage(res, 400, 'The redirect_uri MUST match the registered callback URL for this application.');
    }
    request.redirectUri = redirectUri;
    if (request.codeChallenge && request.codeChallengeMethod !== 'S256') {
      return this.errorPage(res, 400, 'code_challenge_method must be S256.');
    }
    if (request.codeChallenge && !/^[A-Za-z0-9_-]{43}$/.test(request.codeChallenge)) {
      return this.errorPage(res, 400, 'code_challenge is not an S256 challenge.');
    }
    const id = rand(18);
    this.pendingConsents.set(id, { ...request, expiresAt: Date.now() + 10 * 60_000 });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html>
<html><head><meta charset="utf-8"><title>Authorize application</title></head>
<body>
<h1>Authorize ${escapeHtml(client.name)}</h1>
<p>${escapeHtml(client.name)} by mcpgate e2e wants to access your account <strong id="login">${escapeHtml(this.user.login)}</strong>.</p>
<p>Scopes: <code id="scope">${escapeHtml(request.scope)}</code></p>
<form method="post" action="/login/oauth/authorize">
  <input type="hidden" name="consent_id" value="${id}">
  <button type="submit" name="authorize" value="1" id="js-oauth-authorize-btn">Authorize ${escapeHtml(client.name)}</button>
  <button type="submit" name="authorize" value="0">Cancel</button>
</form>
</body></html>`);
  }

  async authorizePost(req, res) {
    const form = new URLSearchParams(await readBody(req));
    const id = form.get('consent_id') ?? '';
    const pending = this.pendingConsents.get(id);
    this.pendingConsents.delete(id);
    if (!pending || pending.expiresAt < Date.now()) return this.errorPage(res, 400, 'This authorization request has expired.');
    const approved = form.get('authorize') === '1';
    this.consents.push({ clientId: pending.clientId, approved });
    const target = new URL(pending.redirectUri);
    if (!approved) {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The user has denied your application access.');
    } else {
      const code = newCode();
      this.codes.set(code, {
        clientId: pending.clientId,
        redirectUri: pending.redirectUri,
        scope: pending.scope,
        challenge: pending.codeChallenge,
        expiresAt: Date.now() + 10 * 60_000,
        used: false,
      });
      target.searchParams.set('code', code);
    }
    if (pending.state !== null) target.searchParams.set('state', pending.state);
    res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
    res.end();
  }

  /** Client authentication: {style: 'header'|'params'|'both'|'none', clientId, ok}. */
  authenticate(req, form) {
    let basic;
    const header = req.headers.authorization ?? '';
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (m) {
      const decoded = Buffer.from(m[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0) {
        // RFC 6749 2.3.1: both parts are form-urlencoded before Base64.
        const dec = (s) => {
          try {
            return decodeURIComponent(s.replace(/\+/g, ' '));
          } catch {
            return s;
          }
        };
        basic = { id: dec(decoded.slice(0, colon)), secret: dec(decoded.slice(colon + 1)) };
      }
    }
    const bodySecret = form.get('client_secret');
    const bodyId = form.get('client_id');
    const style = basic && bodySecret !== null ? 'both' : basic ? 'header' : bodySecret !== null ? 'params' : 'none';
    const id = basic?.id ?? bodyId;
    const secret = basic?.secret ?? bodySecret;
    const client = this.clients.get(id ?? '');
    const ok = Boolean(client && secret !== null && same(secret, client.clientSecret)
      && (bodyId === null || bodyId === id)
      && (style !== 'both' || same(bodySecret, secret)));
    return { style, clientId: id, ok, client };
  }

  async accessToken(req, res) {
    const form = new URLSearchParams(await readBody(req));
    const gate = this._refreshGate;
    if (gate && form.get('grant_type') === 'refresh_token') {
      let gone = false;
      res.on('close', () => { gone = !res.writableFinished; });
      gate.waiting += 1;
      this._log('refresh grant held');
      await gate.gate;
      gate.waiting -= 1;
      if (gone || req.socket.destroyed) {
        this._log('held refresh grant dropped: its client went away');
        return;
      }
    }
    const accept = req.headers.accept ?? '';
    const wantsJson = /application\/json/i.test(accept);
    const grantType = form.get('grant_type') ?? (form.get('code') !== null ? 'authorization_code' : null);
    const auth = this.authenticate(req, form);
    const record = { grantType, authStyle: auth.style, clientId: auth.clientId, accept, status: 200, error: null };
    this.tokenRequests.push(record);

    const answer = (status, body) => {
      record.status = status;
      record.error = body.error ?? null;
      if (wantsJson) return json(res, status, body);
      res.writeHead(status, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', 'cache-control': 'no-store' });
      res.end(new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString());
    };
    const github = this.errorStyle === 'github';
    // RFC 6749 5.2 error codes, with GitHub's own code and HTTP 200 in 'github' style.
    const fail = (rfcError, githubError, description, { forceGithub = false } = {}) => {
      if (github || forceGithub) {
        return answer(200, { error: githubError, error_description: description, error_uri: 'https://docs.github.com/apps/troubleshooting' });
      }
      const status = rfcError === 'invalid_client' ? 401 : 400;
      if (status === 401 && auth.style === 'header') res.setHeader('www-authenticate', 'Basic realm="mcpgate-e2e-github"');
      return answer(status, { error: rfcError, error_description: description });
    };

    if (!auth.ok) return fail('invalid_client', 'incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
    if (auth.style === 'both') return fail('invalid_request', 'incorrect_client_credentials', 'Use one client authentication method.');

    if (grantType === 'authorization_code') {
      const code = form.get('code') ?? '';
      const entry = this.codes.get(code);
      if (!entry || entry.used || entry.expiresAt < Date.now() || entry.clientId !== auth.clientId) {
        if (entry) entry.used = true; // a replayed code burns
        return fail('invalid_grant', 'bad_verification_code', 'The code passed is incorrect or expired.');
      }
      entry.used = true;
      if (this._refuseCodes) {
        record.refused = this._refuseCodes;
        if (this._refuseCodes === 'bad_verification_code') {
          return fail('invalid_grant', 'bad_verification_code', 'The code passed is incorrect or expired.', { forceGithub: true });
        }
        return answer(400, { error: 'invalid_grant', error_description: 'The code was refused.' });
      }
      const redirectUri = form.get('redirect_uri');
      if (redirectUri !== null && redirectUri !== entry.redirectUri) {
        return fail('invalid_grant', 'redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
      }
      if (entry.challenge) {
        const verifier = form.get('code_verifier') ?? '';
        const computed = crypto.createHash('sha256').update(verifier).digest('base64url');
        if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || !same(computed, entry.challenge)) {
          return fail('invalid_grant', 'bad_verification_code', 'The code_verifier does not match the code_challenge.');
        }
      } else if (form.get('code_verifier') !== null) {
        return fail('invalid_grant', 'bad_verification_code', 'A code_verifier was sent for a code issued without a challenge.');
      }
      return answer(200, this.issue(auth.clientId, entry.scope, 'authorization_code'));
    }

    if (grantType === 'refresh_token') {
      const token = form.get('refresh_token') ?? '';
      const entry = this.refreshTokens.get(token);
      if (this._refuseRefresh) {
        if (entry) entry.revoked = true;
        record.refused = this._refuseRefresh;
        if (this._refuseRefresh === 'bad_refresh_token') {
          return fail('invalid_grant', 'bad_refresh_token', 'The refresh token passed is incorrect or expired.', { forceGithub: true });
        }
        return answer(400, { error: 'invalid_grant', error_description: 'The refresh token was revoked.' });
      }
      if (!entry || entry.revoked || entry.expiresAt < Date.now() || entry.clientId !== auth.clientId) {
        return fail('invalid_grant', 'bad_refresh_token', 'The refresh token passed is incorrect or expired.');
      }
      entry.revoked = true; // rotation
      return answer(200, this.issue(auth.clientId, entry.scope, 'refresh_token'));
    }

    return fail('unsupported_grant_type', 'unsupported_grant_type', `grant_type ${grantType} is not supported.`);
  }

  issue(clientId, scope, grant) {
    const accessToken = newAccessToken();
    const now = Date.now();
    const expiring = this.expiresIn !== null;
    const refreshToken = expiring ? newRefreshToken() : null;
    const expiresAt = expiring ? now + this.expiresIn * 1000 : Infinity;
    this.accessTokens.set(accessToken, { clientId, scope, expiresAt, revoked: false, grant });
    if (refreshToken) this.refreshTokens.set(refreshToken, { clientId, scope, expiresAt: now + this.refreshTokenExpiresIn * 1000, revoked: false });
    this.issued.push({ accessToken, refreshToken, clientId, grant, expiresAt, issuedAt: now });
    this._log(`issued an access token to ${clientId} (${grant})`);
    if (!expiring) return { access_token: accessToken, scope, token_type: 'bearer' };
    return {
      access_token: accessToken,
      expires_in: this.expiresIn,
      refresh_token: refreshToken,
      refresh_token_expires_in: this.refreshTokenExpiresIn,
      scope,
      token_type: 'bearer',
    };
  }

  userEndpoint(req, res) {
    const header = req.headers.authorization ?? '';
    const m = /^(?:Bearer|token)\s+(\S+)\s*$/i.exec(header);
    const bearer = m ? m[1] : null;
    this.userBearers.push(bearer);
    const t = bearer ? this.accessTokens.get(bearer) : undefined;
    if (!t || t.revoked || t.expiresAt <= Date.now()) {
      this.userAnswers.push({ bearer, status: 401 });
      return json(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
    }
    this.userAnswers.push({ bearer, status: 200 });
    const { login, id, name, email } = this.user;
    json(res, 200, { login, id, node_id: `U_${id}`, type: 'User', name, email, site_admin: false });
  }
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Starts a provider (see GitHubProvider for the options). */
export async function startGitHubProvider(options = {}) {
  return new GitHubProvider(options).start();
}
