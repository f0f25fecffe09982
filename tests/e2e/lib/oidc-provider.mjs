// A real OpenID Provider for relying-party tests: the certified `oidc-provider` library (v9) in the
// test process on 127.0.0.1, with its own keys, static clients and users, and a small login page
// of its own (no devInteractions):
//   GET  /.well-known/openid-configuration, /jwks   discovery and the public keys (RS256 and ES256)
//   GET  /auth                     authorization endpoint (code flow, PKCE S256 required)
//   GET  /interaction/:uid         the login form (input[name=login], input[name=password]); consent
//                                  is granted automatically for what the client asked
//   POST /interaction/:uid/login   the form's answer: wrong password or a disabled user → the form
//                                  again with an error; otherwise the login is finished
//   POST /token                    authorization_code and refresh_token; a refresh token only for
//                                  scope offline_access, which oidc-provider honours only with
//                                  prompt=consent (OIDC Core §11; see offlineAccessNeedsConsentPrompt);
//                                  rotation by option; client_secret_basic unless a client says
//                                  otherwise
//   GET  /me                       userinfo
//   GET  /session/end              RP-initiated logout: a confirm page whose form submits itself
//   POST /token/revocation         revocation
// Claims: sub = the username, email, email_verified, name, preferred_username, and the groups at a
// nested path, {"org": {"groups": [...]}} (scope `groups`), in the ID token as well as at userinfo
// (option userinfoOnlyClaims: the named top-level claims, e.g. ['org'], only at userinfo).
//
// ID tokens: RS256 unless the client registered ES256 (id_token_signed_response_alg).
// Controls for tests: stop(), restart() (same port, keys, sessions and grants), down()/up() (the
// port stops answering / answers again), disableUser(name)/enableUser(name), rotateKeys() and
// retireOldKeys(), misbehave(mode) (the token endpoint answers an ID token that is wrong in one
// way, or userinfo answers about another subject), and the records `events`, `tokenRequests` and
// `lastIdTokenClaims` (the claim names of the last ID token the token endpoint issued). `userAgent()` gives a cookie-keeping HTTP
// client that signs in and out through the pages above without a browser.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import { readBody, startHttpServer, stopHttpServer } from './net.mjs';

// oidc-provider announces at import time that it wants Node 22 LTS or later; it runs on the Node 20
// of this suite (the self-test in tests/12-test-doubles.test.mjs covers what the suite uses), so
// that one notice is dropped. Every other warning of the library still shows.
const { default: Provider, interactionPolicy } = await (async () => {
  const warn = console.warn;
  console.warn = (...args) => {
    if (String(args[0]).includes('oidc-provider WARNING: Unsupported runtime')) return;
    warn(...args);
  };
  try {
    return await import('oidc-provider');
  } finally {
    console.warn = warn;
  }
})();
// The library's own in-memory adapter, one store per provider (kept across restart()); passing it
// as a factory also avoids the "development-only adapter" warning the default one prints.
const { createMemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');

const ID_TOKEN_MISBEHAVIOURS = ['wrong-aud', 'wrong-iss', 'wrong-nonce', 'alg-hs256', 'alg-none', 'unknown-key', 'expired'];
const MISBEHAVIOURS = [...ID_TOKEN_MISBEHAVIOURS, 'userinfo-sub'];
const EVENTS = [
  'authorization.accepted', 'authorization.success', 'authorization.error',
  'interaction.started', 'interaction.ended',
  'grant.success', 'grant.error', 'grant.revoked',
  'refresh_token.consumed', 'refresh_token.destroyed',
  'userinfo.error', 'end_session.success', 'end_session.error',
  'revocation.error', 'jwks.error', 'discovery.error', 'server_error',
];

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);


/** A signing key pair as private and public JWKs (kid = random, alg and use set). */
function newSigningKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const publicJwk = ({ d, p, q, dp, dq, qi, ...pub }) => pub;

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
${body}
</body></html>`;
}

export class OidcProvider {
  /**
   * @param {object} o
   * @param {Array<{client_id: string, client_secret?: string, redirect_uris: string[],
   *   post_logout_redirect_uris?: string[], id_token_signed_response_alg?: 'RS256'|'ES256'}>} [o.clients]
   *   static clients; any other client metadata is passed on (e.g. token_endpoint_auth_method,
   *   default client_secret_basic, or 'none' without a secret); grant_types default to
   *   authorization_code and refresh_token
   * @param {Record<string, {password: string, email?: string, name?: string, groups?: string[],
   *   email_verified?: boolean}>} [o.users]
   * @param {boolean} [o.refreshTokenRotation] true (default): every refresh returns a new refresh
   *   token and the used one dies (reusing it revokes the grant); false: the same one is returned
   * @param {boolean} [o.offlineAccessNeedsConsentPrompt] true (default, as oidc-provider and OIDC
   *   Core §11): offline_access counts (a refresh token is issued) only when the authorization
   *   request says prompt=consent; false: a request with offline_access and no prompt is treated as
   *   prompt=consent (the user consents anyway), as IdPs that need no prompt for it behave
   * @param {string[]} [o.userinfoOnlyClaims] top-level claims (e.g. ['org'], the groups) left out of
   *   ID tokens and given only at userinfo, as IdPs that keep ID tokens small do (default none)
   * @param {number} [o.accessTokenTtl] seconds (default 3600)
   * @param {number} [o.idTokenTtl] seconds (default 3600)
   * @param {number} [o.refreshTokenTtl] seconds (default 14 days)
   * @param {string} [o.logFile] request lines (method and path, never a query or a body) and errors
   * @param {number} [o.port] 0 (default): a free port
   */
  constructor({
    clients = [], users = {}, refreshTokenRotation = true, offlineAccessNeedsConsentPrompt = true, userinfoOnlyClaims = [],
    accessTokenTtl = 3600, idTokenTtl = 3600,
    refreshTokenTtl = 14 * 24 * 3600, logFile, port = 0,
  } = {}) {
    this.clients = clients.map((c) => ({ grant_types: ['authorization_code', 'refresh_token'], ...c }));
    this.users = new Map(Object.entries(users).map(([name, u]) => [name, { ...u, disabled: false }]));
    this.refreshTokenRotation = Boolean(refreshTokenRotation);
    this.offlineAccessNeedsConsentPrompt = offlineAccessNeedsConsentPrompt;
    this.userinfoOnlyClaims = [...userinfoOnlyClaims];
    this.accessTokenTtl = accessTokenTtl;
    this.idTokenTtl = idTokenTtl;
    this.refreshTokenTtl = refreshTokenTtl;
    this.logFile = logFile;
    this.port = port;
    // Newest first: oidc-provider signs with the first key of the algorithm.
    this.keys = [newSigningKey('RS256'), newSigningKey('ES256')];
    this.cookieKeys = [crypto.randomBytes(32).toString('base64url')];
    this.adapter = createMemoryAdapter();
    this.events = [];
    this.tokenRequests = 0;
    this.lastIdTokenClaims = null;
    this.log = [];
    this._misbehave = null;
  }

  get issuer() {
    return `http://127.0.0.1:${this.port}`;
  }

  get discoveryUrl() {
    return `${this.issuer}/.well-known/openid-configuration`;
  }

  get jwksUrl() {
    return `${this.issuer}/jwks`;
  }

  /** The public keys the provider publishes right now. */
  jwks() {
    return { keys: this.keys.map(publicJwk) };
  }

  async start() {
    if (this.logFile) fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    await this._listen(); // the port first: it is part of the issuer
    this.provider = this.createProvider();
    this._log(`listening on ${this.issuer}`);
    return this;
  }

  async _listen() {
    ({ server: this.server, port: this.port } = await startHttpServer(
      this.port,
      (req, res) => this.handle(req, res),
      (e, res) => {
        this._log(`error ${e.message}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error');
      },
    ));
    // A provider a failing test never stopped does not keep the test process alive.
    this.server.unref();
  }

  /** Stops listening; idempotent. */
  async stop() {
    const server = this.server;
    this.server = undefined;
    await stopHttpServer(server);
  }

  /** The provider goes away: its port refuses connections until up(). */
  async down() {
    if (!this.server) return;
    await this.stop();
    // Let clients in this process see their kept-alive connections close before anything reuses
    // them (up() on the same port would otherwise race them).
    await sleep(20);
    this._log('down');
  }

  /** Listens again on the same port (same keys, sessions and grants). */
  async up() {
    if (this.server) return;
    await this._listen();
    this._log('up');
  }

  /**
   * A new provider instance on the same port with the same keys, cookie keys and store: sessions,
   * grants, codes and tokens survive, as they would with a persistent adapter.
   */
  async restart() {
    await this.down();
    this.provider = this.createProvider();
    await this.up();
  }

  /** The user can no longer sign in; their sessions, refresh tokens and userinfo stop working. */
  disableUser(name) {
    this._user(name).disabled = true;
  }

  enableUser(name) {
    this._user(name).disabled = false;
  }

  /**
   * Adds a new RS256 and ES256 key in front: new ID tokens are signed with them, the JWKS shows the
   * old and the new keys. Returns the new kids.
   */
  async rotateKeys() {
    const fresh = [newSigningKey('RS256'), newSigningKey('ES256')];
    this.keys = [...fresh, ...this.keys];
    await this._reload();
    return fresh.map((k) => k.kid);
  }

  /** Removes every key but the newest of each algorithm from the JWKS (and from signing). */
  async retireOldKeys() {
    this.keys = ['RS256', 'ES256'].map((alg) => this.keys.find((k) => k.alg === alg));
    await this._reload();
  }

  /**
   * From now on the token endpoint answers an ID token that is wrong in one way (null: correct
   * again): 'wrong-aud', 'wrong-iss', 'wrong-nonce', 'expired' (re-signed with the provider's own
   * key), 'alg-hs256' (HS256 with the client secret), 'alg-none' (unsigned), 'unknown-key' (RS256
   * by a key outside the JWKS, with its own kid); or 'userinfo-sub': the ID token is right but
   * userinfo answers with another `sub`.
   */
  misbehave(mode) {
    if (mode && !MISBEHAVIOURS.includes(mode)) throw new Error(`unknown misbehave mode ${mode}`);
    this._misbehave = mode || null;
  }

  /** An HTTP client with its own cookies, for signing in and out without a browser. */
  userAgent() {
    return new OidcUserAgent(this.issuer);
  }

  _user(name) {
    const u = this.users.get(name);
    if (!u) throw new Error(`no user ${name}`);
    return u;
  }

  async _reload() {
    // The keystore is fixed when a Provider is made; a new instance on the same store takes over.
    this.provider = this.createProvider();
  }

  _log(line) {
    const entry = `${new Date().toISOString()} ${line}`;
    this.log.push(entry);
    if (this.logFile) fs.appendFileSync(this.logFile, `${entry}\n`);
  }

  _account(name) {
    const u = this.users.get(name);
    if (!u || u.disabled) return undefined;
    return {
      accountId: name,
      // use: 'id_token' or 'userinfo'
      claims: async (use) => {
        const claims = {
          sub: name,
          email: u.email,
          email_verified: u.email_verified ?? Boolean(u.email),
          name: u.name,
          preferred_username: name,
          org: { groups: [...(u.groups ?? [])] },
        };
        if (use === 'id_token') for (const c of this.userinfoOnlyClaims) delete claims[c];
        return claims;
      },
    };
  }

  createProvider() {
    const policy = interactionPolicy.base();
    // A session whose account is gone (disabled user) needs a new login, as at a real IdP.
    policy.get('login').checks.add(new interactionPolicy.Check('account_disabled', 'the account is no longer active', (ctx) => (
      Boolean(ctx.oidc.session.accountId) && !ctx.oidc.account
    )));
    const provider = new Provider(this.issuer, {
      adapter: this.adapter,
      clients: this.clients,
      jwks: { keys: this.keys },
      cookies: {
        keys: this.cookieKeys,
        // Plain http on 127.0.0.1: oidc-provider marks cookies Secure only on https requests.
        long: { httpOnly: true, sameSite: 'lax' },
        short: { httpOnly: true, sameSite: 'lax' },
      },
      findAccount: (ctx, sub) => this._account(sub),
      claims: {
        acr: null, sid: null, auth_time: null, iss: null,
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name', 'preferred_username'],
        groups: ['org'],
      },
      scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
      // The scope claims go into the ID token too (not only to userinfo), as most IdPs do.
      conformIdTokenClaims: false,
      responseTypes: ['code'],
      pkce: { required: () => true },
      clientBasedCORS: () => true,
      issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
      rotateRefreshToken: this.refreshTokenRotation,
      enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
      ttl: {
        AccessToken: this.accessTokenTtl,
        AuthorizationCode: 60,
        IdToken: this.idTokenTtl,
        RefreshToken: this.refreshTokenTtl,
        Interaction: 3600,
        Session: 14 * 24 * 3600,
        Grant: 14 * 24 * 3600,
      },
      interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
      features: {
        devInteractions: { enabled: false },
        userinfo: { enabled: true },
        revocation: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx, form) => {
            ctx.type = 'html';
            // The confirm form submits itself with logout=yes (a browser signs out at once); a
            // plain HTTP client posts the form's fields plus logout=yes.
            ctx.body = page('Sign out', `<h1>Sign out of ${escapeHtml(this.issuer)}?</h1>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" id="stay">No, stay signed in</button>
<script>document.getElementById('logout').click();</script>`);
          },
          postLogoutSuccessSource: async (ctx) => {
            ctx.type = 'html';
            ctx.body = page('Signed out', '<h1>Signed out</h1><p>You are signed out.</p>');
          },
        },
      },
      renderError: async (ctx, out) => {
        ctx.type = 'html';
        ctx.body = page('Error', `<h1>Error</h1>${Object.entries(out).map(([k, v]) => `<p><b>${escapeHtml(k)}</b>: ${escapeHtml(v)}</p>`).join('')}`);
      },
    });

    for (const type of EVENTS) {
      provider.on(type, (...args) => this._event(type, args));
    }

    provider.use(async (ctx, next) => {
      if (!this.offlineAccessNeedsConsentPrompt && ctx.method === 'GET' && ctx.path === '/auth'
        && ctx.query.prompt === undefined && String(ctx.query.scope ?? '').split(' ').includes('offline_access')) {
        ctx.query = { ...ctx.query, prompt: 'consent' };
      }
      const isToken = ctx.method === 'POST' && ctx.path === '/token';
      if (isToken) this.tokenRequests += 1;
      await next();
      if (ctx.path === '/me' && this._misbehave === 'userinfo-sub' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
        ctx.body = { ...ctx.body, sub: `not-${ctx.body.sub}` };
        this._log('userinfo: sub altered (userinfo-sub)');
        return;
      }
      if (isToken && ctx.status === 200 && typeof ctx.body?.id_token === 'string') this.lastIdTokenClaims = Object.keys(decodeJwt(ctx.body.id_token));
      if (!isToken || !ID_TOKEN_MISBEHAVIOURS.includes(this._misbehave) || ctx.status !== 200 || typeof ctx.body?.id_token !== 'string') return;
      ctx.body = { ...ctx.body, id_token: await this._forge(ctx.body.id_token, this._misbehave) };
      this._log(`token endpoint: ID token altered (${this._misbehave})`);
    });
    return provider;
  }

  // Records an event without tokens or secrets: its type, the client, the grant type, the error.
  _event(type, args) {
    try {
      this._record(type, args);
    } catch (e) {
      this._log(`event ${type} not recorded: ${e.message}`);
    }
  }

  _record(type, args) {
    const ctx = args.find((a) => a && typeof a === 'object' && 'oidc' in a && 'request' in a);
    const err = args.find((a) => a instanceof Error);
    const model = args.find((a) => a && typeof a === 'object' && 'kind' in a && 'jti' in a);
    const e = { type, at: Date.now() };
    const entities = ctx?.oidc?.entities ?? {};
    const clientId = entities.Client?.clientId ?? model?.clientId;
    if (clientId) e.clientId = clientId;
    const grantType = ctx?.oidc?.params?.grant_type;
    if (grantType) e.grantType = grantType;
    const accountId = entities.Account?.accountId ?? model?.accountId;
    if (accountId) e.accountId = accountId;
    if (err) {
      e.error = err.error ?? err.name;
      e.description = err.error_description ?? err.message;
    }
    if (type === 'grant.revoked' && typeof args[1] === 'string') e.grantId = args[1];
    this.events.push(e);
    if (err) this._log(`${type}: ${e.error} ${e.description}`);
  }

  async _forge(idToken, mode) {
    const header = decodeProtectedHeader(idToken);
    const claims = decodeJwt(idToken);
    const now = Math.floor(Date.now() / 1000);
    const key = this.keys.find((k) => k.kid === header.kid);
    const withOwnKey = async (payload) => new SignJWT(payload)
      .setProtectedHeader({ alg: header.alg, typ: header.typ, kid: header.kid })
      .sign(await importJWK(key, header.alg));
    switch (mode) {
      case 'wrong-aud':
        return withOwnKey({ ...claims, aud: 'another-client', azp: undefined });
      case 'wrong-iss':
        return withOwnKey({ ...claims, iss: `${this.issuer}/other-tenant` });
      case 'wrong-nonce':
        return withOwnKey({ ...claims, nonce: crypto.randomBytes(16).toString('base64url') });
      case 'expired':
        return withOwnKey({ ...claims, iat: now - 7200, exp: now - 3600 });
      case 'alg-hs256': {
        const client = this.clients.find((c) => c.client_id === claims.aud || (Array.isArray(claims.aud) && claims.aud.includes(c.client_id)));
        const secret = client?.client_secret ?? crypto.randomBytes(32).toString('base64url');
        return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: header.typ }).sign(new TextEncoder().encode(secret));
      }
      case 'alg-none': {
        const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return `${enc({ alg: 'none', typ: header.typ })}.${enc(claims)}.`;
      }
      case 'unknown-key': {
        const stranger = newSigningKey('RS256');
        return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: header.typ, kid: stranger.kid })
          .sign(await importJWK(stranger, 'RS256'));
      }
      default:
        throw new Error(`unknown misbehave mode ${mode}`);
    }
  }

  async handle(req, res) {
    const url = new URL(req.url, this.issuer);
    this._log(`${req.method} ${url.pathname}`);
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(url.pathname);
    if (m) return this.interaction(req, res, m[1], Boolean(m[2]));
    return this.provider.callback()(req, res);
  }

  // The login page and the automatic consent.
  async interaction(req, res, uid, isLoginPost) {
    const html = (status, title, body) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(page(title, body));
    };
    let details;
    try {
      details = await this.provider.interactionDetails(req, res);
    } catch (e) {
      this._log(`interaction: ${e.message}`);
      return html(400, 'Sign-in expired', `<h1>Sign-in expired</h1><p>${escapeHtml(e.error_description ?? e.message)}</p>`);
    }
    if (details.uid !== uid) return html(400, 'Sign-in expired', '<h1>Sign-in expired</h1><p>This sign-in is not the current one.</p>');
    const { prompt, params } = details;
    const client = this.clients.find((c) => c.client_id === params.client_id);

    if (prompt.name === 'login') {
      const form = ({ login = params.login_hint ?? '', error } = {}) => html(200, 'Sign in', `<h1>Sign in</h1>
<p>to ${escapeHtml(client?.client_name ?? params.client_id)}</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label>Username <input type="text" name="login" value="${escapeHtml(login)}" autofocus></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit">Sign in</button>
</form>`);
      if (!isLoginPost) return form();
      if (req.method !== 'POST') return html(405, 'Method not allowed', '<h1>Method not allowed</h1>');
      const fields = new URLSearchParams(await readBody(req, 64 * 1024));
      const login = fields.get('login') ?? '';
      const password = fields.get('password') ?? '';
      const user = this.users.get(login);
      const ok = user && Buffer.byteLength(password) === Buffer.byteLength(user.password)
        && crypto.timingSafeEqual(Buffer.from(password), Buffer.from(user.password));
      if (!ok) {
        this._log('login refused: invalid credentials');
        return form({ login, error: 'Invalid username or password.' });
      }
      if (user.disabled) {
        this._log('login refused: account disabled');
        return form({ login, error: 'This account is disabled.' });
      }
      this._log('login accepted');
      return this.provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }

    if (prompt.name === 'consent') {
      const { Grant } = this.provider;
      const grant = details.grantId
        ? await Grant.find(details.grantId)
        : new Grant({ accountId: details.session.accountId, clientId: params.client_id });
      if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
      if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      this._log('consent granted');
      return this.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }

    return html(400, 'Unsupported', `<h1>Unsupported prompt ${escapeHtml(prompt.name)}</h1>`);
  }
}

/**
 * A browser stand-in over fetch: keeps cookies per path, follows the provider's own redirects, fills
 * the login form, and stops at the first redirect that leaves the provider.
 */
export class OidcUserAgent {
  constructor(issuer) {
    this.origin = new URL(issuer).origin;
    this.cookies = new Map(); // `${name} ${path}` -> {name, value, path}
  }

  cookieHeader(url) {
    const { pathname } = new URL(url);
    return [...this.cookies.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map((c) => `${c.name}=${c.value}`).join('; ');
  }

  keep(response, url) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let cookiePath = new URL(url).pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = value === '';
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        if (k.toLowerCase() === 'path') cookiePath = v || '/';
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
        if (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      const key = `${name} ${cookiePath}`;
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path: cookiePath });
    }
  }

  /** One request with the agent's cookies; never follows redirects. */
  async fetch(url, init = {}) {
    const headers = new Headers(init.headers);
    const cookie = this.cookieHeader(url);
    if (cookie) headers.set('cookie', cookie);
    let response;
    try {
      response = await fetch(url, { ...init, headers, redirect: 'manual' });
    } catch (e) {
      // A kept-alive connection the provider closed (restart, down/up) fails once; a GET is retried.
      if ((init.method ?? 'GET') !== 'GET' || e.cause?.code !== 'UND_ERR_SOCKET') throw e;
      response = await fetch(url, { ...init, headers, redirect: 'manual' });
    }
    this.keep(response, url);
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, url: String(url) };
  }

  /**
   * Follows `url` (an authorization or end-session URL) through the provider: signs in with
   * {username, password} when the login form shows, submits the logout confirmation. Resolves
   *   {location: URL|null, steps: [{url, status, kind}], page}
   * where location is the first redirect away from the provider (the client's redirect or
   * post-logout URI), and page the last response when there is none (an error, the login form
   * again after a refused password, the signed-out page).
   */
  async follow(url, { username, password, maxSteps = 12 } = {}) {
    const steps = [];
    let next = { url: String(url), init: {} };
    let signedIn = false;
    for (let i = 0; i < maxSteps; i++) {
      const r = await this.fetch(next.url, next.init);
      const loc = r.headers.get('location');
      const loginForm = /<form method="post" action="(\/interaction\/[^"]+\/login)"/.exec(r.text);
      const logoutForm = /<form[^>]*id="op.logoutForm"[^>]*>/.exec(r.text);
      steps.push({ url: next.url, status: r.status, kind: loginForm ? 'login' : logoutForm ? 'logout' : loc ? 'redirect' : 'page' });
      if (loc && r.status >= 300 && r.status < 400) {
        const target = new URL(loc, next.url);
        if (target.origin !== this.origin) return { location: target, steps, page: r };
        next = { url: target.href, init: {} };
        continue;
      }
      if (loginForm && username !== undefined && !signedIn) {
        signedIn = true; // one attempt: a refused password shows the form again, which is returned
        next = {
          url: new URL(loginForm[1].replaceAll('&amp;', '&'), this.origin).href,
          init: {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ login: username, password: password ?? '' }).toString(),
          },
        };
        continue;
      }
      if (logoutForm) {
        const action = /action="([^"]+)"/.exec(logoutForm[0])?.[1];
        const fields = new URLSearchParams();
        for (const [, name, value] of r.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\s*\/?>/g)) fields.set(name, value);
        fields.set('logout', 'yes');
        next = {
          url: new URL(action, this.origin).href,
          init: { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() },
        };
        continue;
      }
      return { location: null, steps, page: r };
    }
    throw new Error(`no redirect away from the provider after ${maxSteps} steps: ${JSON.stringify(steps)}`);
  }
}

/** Starts a provider (see OidcProvider for the options). */
export async function startOidcProvider(options = {}) {
  return new OidcProvider(options).start();
}
