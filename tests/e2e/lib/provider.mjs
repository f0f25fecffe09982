// An OAuthClientProvider for the unmodified MCP TypeScript SDK. It keeps everything in memory,
// records what the SDK hands it (client information, every token set, state values), and sends the
// "user" through the headless browser driver in redirectToAuthorization.
import crypto from 'node:crypto';

export class E2EOAuthProvider {
  /**
   * @param {object} o
   * @param {import('./browser.mjs').Browser} o.browser
   * @param {string} o.redirectUrl the loopback callback URL
   * @param {{username: string, password: string}} o.user
   * @param {string} [o.clientMetadataUrl] an https Client ID Metadata Document URL (SEP-991)
   */
  constructor({ browser, redirectUrl, user, clientMetadataUrl, clientName = 'mcpgate e2e SDK client' }) {
    this.browser = browser;
    this._redirectUrl = redirectUrl;
    this.user = user;
    this.clientName = clientName;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this.savedClientInformation = [];
    this.savedTokens = [];
    this.states = [];
    this.authorizations = []; // {url, result} per redirectToAuthorization
    this.invalidations = []; // scopes the SDK passed to invalidateCredentials
    this._verifier = undefined;
    this._tokensInvalid = false;
    this._clientInvalid = false;
  }

  get redirectUrl() {
    return this._redirectUrl;
  }

  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    const s = crypto.randomBytes(16).toString('base64url');
    this.states.push(s);
    return s;
  }

  clientInformation() {
    return this._clientInvalid ? undefined : this.savedClientInformation.at(-1);
  }

  saveClientInformation(info) {
    this._clientInvalid = false;
    this.savedClientInformation.push(info);
  }

  tokens() {
    return this._tokensInvalid ? undefined : this.savedTokens.at(-1);
  }

  saveTokens(tokens) {
    this._tokensInvalid = false;
    this.savedTokens.push(tokens);
  }

  /** What the SDK calls when the server refuses a grant (invalid_grant: 'tokens') or the client. */
  invalidateCredentials(scope) {
    this.invalidations.push(scope);
    if (scope === 'all' || scope === 'tokens') this._tokensInvalid = true;
    if (scope === 'all' || scope === 'client') this._clientInvalid = true;
    if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
  }

  async redirectToAuthorization(url) {
    const result = await this.browser.authorize(url, {
      username: this.user.username,
      password: this.user.password,
      callbackUrl: this._redirectUrl,
    });
    this.authorizations.push({ url: new URL(url), result });
  }

  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }

  codeVerifier() {
    if (!this._verifier) throw new Error('no code verifier saved');
    return this._verifier;
  }
}

/**
 * A fetch for the SDK transport that records every request (method, URL, OAuth grant_type) and
 * the response status, so a test can show which discovery and token calls the SDK made itself.
 */
export function recordingFetch(log) {
  return async (input, init = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const entry = { method, url: url.href, path: url.pathname };
    if (init.body instanceof URLSearchParams) entry.grantType = init.body.get('grant_type');
    else if (typeof init.body === 'string' && url.pathname.endsWith('/oauth/token')) {
      entry.grantType = new URLSearchParams(init.body).get('grant_type');
    }
    const headers = new Headers(init.headers ?? {});
    entry.sentBearer = headers.get('authorization')?.replace(/^Bearer\s+/i, '') ?? null;
    log.push(entry);
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.wwwAuthenticate = response.headers.get('www-authenticate');
    if (response.status >= 400) entry.errorBody = (await response.clone().text().catch(() => '')).slice(0, 2000);
    return response;
  };
}
