// A local OAuth 2.0 provider and API that behave like Notion's public integrations (api.notion.com
// cannot be used here), in the test process on 127.0.0.1:
//   GET  /v1/oauth/authorize         consent page ("<client> wants to access your workspace …", the
//                                    pages it will share, #allow / #cancel); `owner` must be `user`
//                                    when sent, PKCE S256 when a challenge is sent
//   POST /v1/oauth/authorize         the consent form's answer: 302 to the exact registered
//                                    redirect_uri with code and state, or error=access_denied
//   POST /v1/oauth/token             HTTP Basic client authentication only (like Notion), JSON or
//                                    form body: authorization_code (single-use code, redirect_uri
//                                    must match, PKCE verified when a challenge was sent) and
//                                    refresh_token (rotation: the old refresh token dies); errors
//                                    as RFC 6749 JSON (400 invalid_grant…, 401 invalid_client)
//   POST /v1/search                  {query?, filter?, sort?, page_size?, start_cursor?} → a list of
//                                    page objects whose title or content matches, case-insensitively
//   GET  /v1/pages/{id}              a page object (id with or without dashes)
//   GET  /v1/blocks/{id}/children    a page's blocks (paragraph, heading_1, heading_2,
//                                    bulleted_list_item, to_do) with rich_text[].plain_text
//   GET  /v1/users/me                the integration's bot user
//   GET  /.well-known/oauth-authorization-server   RFC 8414 metadata (Notion has none; used by
//                                    the gateway's discovery mode)
//   GET  /{Title-slug}-{32 hex}      the page as HTML (what a page object's `url` points at), no auth
// Every /v1 API call needs `Notion-Version` (missing: 400 missing_version) and
// `Authorization: Bearer <access token>` (invalid, expired or revoked: 401 unauthorized); errors
// are Notion's {"object": "error", "status", "code", "message"}.
//
// Content is deterministic: ACME_NOTES, a trading company's workspace with fixed page ids.
// Controls for tests: down(bool), expireAll(), addClient(), consent(url) (the user's answer over
// HTTP), secrets() (for leak checks), validAccessTokens(), and the records `issued`, `tokenRequests`, `apiBearers` (the bearer of every API call,
// null when none), `apiRequests`, `authorizeRequests`, `consents`.
import { readBody, startHttpServer, stopHttpServer } from './net.mjs';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const rand = (bytes) => crypto.randomBytes(bytes).toString('base64url');
const alnum = (n) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(n);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
};
// Notion's formats: ntn_ access tokens, UUID codes and ids.
const newAccessToken = () => `ntn_${alnum(46)}`;
const newRefreshToken = () => `nrt_${alnum(46)}`;
const newCode = () => crypto.randomUUID();

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** Constant-time string comparison. */
function same(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

/** A UUID (version 4 layout) derived from `seed`, so derived ids (blocks, bots) are stable. */
function stableUuid(seed) {
  const h = crypto.createHash('sha256').update(seed).digest();
  h[6] = (h[6] & 0x0f) | 0x40;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** 32 lowercase hex digits of a UUID given with or without dashes, or null. */
function compactId(id) {
  const x = String(id).replace(/-/g, '').toLowerCase();
  return /^[0-9a-f]{32}$/.test(x) ? x : null;
}

/** Notion rich text from a string whose `**…**` runs are bold. */
function richText(text) {
  return text.split(/(\*\*[^*]+\*\*)/).filter(Boolean).map((run) => {
    const bold = run.startsWith('**') && run.endsWith('**');
    const content = bold ? run.slice(2, -2) : run;
    return {
      type: 'text',
      text: { content, link: null },
      annotations: { bold, italic: false, strikethrough: false, underline: false, code: false, color: 'default' },
      plain_text: content,
      href: null,
    };
  });
}

const plain = (text) => text.replace(/\*\*/g, '');

// Short words a question carries that say nothing about the topic ("notes about the Q3 launch").
const STOPWORDS = new Set(['a', 'an', 'the', 'of', 'on', 'in', 'for', 'to', 'and', 'or', 'our', 'my', 'we', 'what', 'whats', 'is', 'are', 'do', 'does', 'say', 'says', 'about', 'with', 'any', 'me', 'tell', 'notes', 'note', 'page', 'pages']);

export const ACME_USER = { id: '6f1c2b8e-3d4a-4f5b-9c7d-1e2f3a4b5c6d', name: 'Alice Martin', email: 'alice@example.com' };

// [type, text] pairs; to_do items carry `checked` as a third element.
const p = (text) => ['paragraph', text];
const h1 = (text) => ['heading_1', text];
const h2 = (text) => ['heading_2', text];
const li = (text) => ['bulleted_list_item', text];
const todo = (text, checked = false) => ['to_do', text, checked];

/** The seeded workspace: a fine-foods trading company's notes. */
export const ACME_NOTES = {
  id: '0b7e4c52-91d3-4a8e-b6f0-5c2d8e1a7f34',
  name: 'Acme Notes',
  icon: '🥫',
  pages: [
    {
      id: '3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a41',
      title: 'Q3 launch plan',
      icon: '🚀',
      createdTime: '2025-05-12T09:14:00.000Z',
      lastEditedTime: '2025-07-28T16:42:00.000Z',
      blocks: [
        p('The Nordic Pantry range launches on **Tuesday 16 September 2025**. Sofia Lindgren (Sales Manager) owns the launch; Andrew Kaplan signs off on pricing and Lucas Brennan coordinates the first wholesale orders.'),
        h2('What we are launching'),
        p('Twelve new products sourced from three Scandinavian producers: cloudberry preserves, smoked trout pâté, rye crispbread with caraway, lingonberry mustard and a small-batch liquorice line. Everything ships in our own recyclable cartons.'),
        h2('Milestones'),
        li('**15 July**: final supplier contracts signed and first container booked out of Göteborg.'),
        li('**18 August**: samples in every sales rep\'s hands; price list published to key accounts.'),
        li('**1 September**: stock received and quality-checked at the Hamburg warehouse.'),
        li('**16 September**: launch day; the online catalogue and the autumn trade newsletter go live.'),
        h2('Targets'),
        p('We aim for 40 stocking customers and 180,000 in sales within the first 90 days, with Germany, Sweden and the Netherlands as the lead markets. Progress is reviewed every Monday in the sales stand-up.'),
        h2('Risks'),
        li('Cloudberry harvest volumes are uncertain; the supplier has promised 70% of our forecast, the rest by October.'),
        li('Chilled pâté needs the refrigerated bay in Hamburg, which is booked solid in early September.'),
      ],
    },
    {
      id: '7c1e5d20-2f8b-4b63-9d0a-4e6f7a8b9c52',
      title: 'Onboarding checklist',
      icon: '👋',
      createdTime: '2024-01-08T10:00:00.000Z',
      lastEditedTime: '2025-06-03T11:20:00.000Z',
      blocks: [
        p('Welcome to Acme Trading. This checklist covers your first two weeks; your manager walks through it with you on day one and checks it off with you on day ten.'),
        h2('Before your first day'),
        todo('Sign the employment contract and return the tax forms to People Operations.', true),
        todo('Pick your laptop (13" or 15") in the equipment form.', true),
        h2('Week one'),
        todo('Collect your laptop and building badge from reception at the Boston office.'),
        todo('Sign in to email, chat and the notes workspace; turn on two-step verification.'),
        todo('Read the Pricing policy 2025 and the Customer escalation process pages.'),
        todo('Shadow a sales call and a warehouse shift in Hamburg (remote is fine).'),
        h2('Week two'),
        todo('Meet your buddy for lunch; the company pays up to 25 per person.'),
        todo('Complete the food-safety and data-protection e-learning modules.'),
        todo('Book a 30-minute intro with Margaret Holloway through her assistant.'),
      ],
    },
    {
      id: 'a4d8f1b3-5e2c-4d79-8b16-2f3a4b5c6d73',
      title: 'Pricing policy 2025',
      icon: '💶',
      createdTime: '2024-11-20T08:30:00.000Z',
      lastEditedTime: '2025-02-14T15:05:00.000Z',
      blocks: [
        p('List prices are reviewed twice a year, in January and July, by Andrew Kaplan and finance. Sales representatives may not change list prices; they may only grant the discounts below.'),
        h2('Standard discounts'),
        li('Orders above 2,000: up to **5%** at the representative\'s discretion.'),
        li('Orders above 10,000 or a signed annual volume agreement: up to **10%**, approved by the Sales Manager.'),
        li('Anything above 15% needs the VP Sales in writing, and is never given on discontinued lines.'),
        h2('Discontinued products'),
        p('Discontinued products are sold at list price until stock runs out; they are not included in promotions and cannot be reserved.'),
        h2('Currency and payment terms'),
        p('We invoice in the customer\'s local currency at the monthly rate fixed on the first business day. Payment terms are 30 days net; new customers pay their first order up front.'),
      ],
    },
    {
      id: 'c9b2e7a6-8d4f-4c15-a3e9-6b7c8d9e0f84',
      title: 'Warehouse operations',
      icon: '📦',
      createdTime: '2023-09-04T07:45:00.000Z',
      lastEditedTime: '2025-05-19T13:30:00.000Z',
      blocks: [
        p('All European orders ship from the Hamburg warehouse; North American orders ship from our partner facility in Chicago. Orders received before 14:00 local time leave the same day.'),
        h1('Receiving'),
        li('Check every pallet against the purchase order and log shortfalls in the same shift.'),
        li('Chilled goods go to the refrigerated bay within 20 minutes of unloading; record the temperature.'),
        li('Label lots with the best-before date; we pick first-expiry-first-out.'),
        h1('Shipping'),
        p('Carriers collect at 16:30. Fragile goods (preserves, oils, glass jars) are double-boxed. Customs papers for the UK, Switzerland and Norway are prepared by the export desk the day before.'),
        h2('Stock counts'),
        p('A full count happens on the last Saturday of each quarter; cycle counts of the 50 fastest-moving products happen every Wednesday.'),
      ],
    },
    {
      id: 'e5f6a7b8-9c0d-4e1f-8a2b-3c4d5e6f7a95',
      title: 'Customer escalation process',
      icon: '🚨',
      createdTime: '2024-03-15T12:00:00.000Z',
      lastEditedTime: '2025-04-02T09:50:00.000Z',
      blocks: [
        p('When a customer complains about a late, damaged or wrong delivery, the account\'s sales representative owns the case until it is closed, even when someone else fixes the cause.'),
        h2('Severity levels'),
        li('**Level 1**: a single late or damaged line. Reply within one business day, credit or reship.'),
        li('**Level 2**: a whole order wrong or a repeat problem. Inform the Sales Manager the same day.'),
        li('**Level 3**: food-safety concerns or a key account threatening to leave. Call the VP Sales immediately; a product recall follows the recall procedure.'),
        h2('Closing a case'),
        p('Write down the cause and what changed so it does not happen again, attach the credit note, and tell the customer in writing. Cases open longer than ten days are reviewed at the Monday stand-up.'),
      ],
    },
    {
      id: '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c06',
      title: 'Meeting notes: sales kickoff',
      icon: '🗓️',
      createdTime: '2025-01-13T14:00:00.000Z',
      lastEditedTime: '2025-01-14T10:15:00.000Z',
      blocks: [
        p('Sales kickoff, 13 January 2025, Boston office and online. Present: Margaret Holloway, Andrew Kaplan, Sofia Lindgren, Tomás Ferreira, Nadia Petrova, James Whitaker, Aiko Mori, Lucas Brennan, Helena Vogel.'),
        h2('Last year'),
        p('2024 closed above plan, driven by beverages and dairy in Germany and the USA. Confections were flat; seafood grew fastest from a small base.'),
        h2('Decisions'),
        li('Each representative owns a named list of 25 key accounts, reviewed quarterly.'),
        li('The Nordic Pantry range is the main launch of the year (see the Q3 launch plan).'),
        li('Two discontinued lines will be cleared by March at list price, per the pricing policy.'),
        h2('Action items'),
        li('Sofia: draft the Q3 launch plan by the end of February.'),
        li('Lucas: clean up duplicate customer records in the CRM.'),
        li('Nadia and Tomás: visit the five largest customers in Spain and Portugal in Q1.'),
      ],
    },
    {
      id: '9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c17',
      title: 'Travel policy',
      icon: '✈️',
      createdTime: '2023-02-01T09:00:00.000Z',
      lastEditedTime: '2025-03-10T17:25:00.000Z',
      blocks: [
        p('Book all travel through the company travel desk at least 14 days ahead when you can. Economy class for flights under six hours; premium economy is allowed for longer flights.'),
        h2('Hotels and meals'),
        li('Hotels up to 180 per night in capital cities and 140 elsewhere.'),
        li('Meals up to 60 per day; customer dinners are expensed separately with the guest list.'),
        h2('Expenses'),
        p('Submit receipts within 30 days of returning. Trains are preferred over flights for journeys under four hours, such as Hamburg to Berlin or Paris to Lyon.'),
      ],
    },
    {
      id: '5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b28',
      title: 'Product roadmap',
      icon: '🗺️',
      createdTime: '2024-10-02T11:10:00.000Z',
      lastEditedTime: '2025-07-01T08:55:00.000Z',
      blocks: [
        p('This roadmap lists the product lines we plan to add or retire over the next four quarters. Owners update it monthly; the sales team uses it to pre-sell to key accounts.'),
        h2('2025 Q3'),
        li('Nordic Pantry range (twelve products), launching 16 September.'),
        li('Retire Ginger Root Beer and Gingerbread Hearts once stock is sold.'),
        h2('2025 Q4'),
        li('Holiday gift boxes built from existing confections and cheeses.'),
        li('A second cold-brew coffee flavour, pending tasting results.'),
        h2('2026 H1'),
        li('Organic grains line with a new Italian mill.'),
        li('Evaluate direct-to-consumer sales in Germany.'),
      ],
    },
  ],
};

export class NotesProvider {
  /**
   * @param {object} o
   * @param {number} [o.port] 0 (default): a free port
   * @param {string} [o.logFile] request lines (method and path, never a query or a body)
   * @param {object[]} [o.workspaces] the content (default [ACME_NOTES]), each {id, name, icon?,
   *   pages: [{id, title, icon?, createdTime, lastEditedTime, blocks: [[type, text, checked?]]}]}
   *   (`**…**` in a text is bold); with several, the consent page (which names and lists the first)
   *   has a picker (#workspace) and the token reaches only the workspace picked
   * @param {{id: string, name: string, email: string}} [o.user] who consents
   * @param {number|null} [o.expiresIn] access-token lifetime in seconds; null: tokens that never
   *   expire and no refresh token
   */
  constructor({ port = 0, logFile, workspaces = [ACME_NOTES], user = ACME_USER, expiresIn = 3600 } = {}) {
    if (!workspaces.length) throw new Error('NotesProvider needs at least one workspace');
    this.port = port;
    this.logFile = logFile;
    this.workspaces = workspaces;
    this.user = user;
    this.expiresIn = expiresIn;
    this.clients = new Map(); // client_id -> {clientId, clientSecret, redirectUris: string[], name}
    this.pendingConsents = new Map(); // consent id -> authorization request
    this.codes = new Map(); // code -> {clientId, redirectUri, challenge, workspaceId, expiresAt, used}
    this.accessTokens = new Map(); // token -> {clientId, workspaceId, expiresAt, revoked}
    this.refreshTokens = new Map(); // token -> {clientId, workspaceId, revoked}
    this.pages = new Map(); // compact page id -> {workspace, page}
    for (const workspace of workspaces) {
      for (const page of workspace.pages) this.pages.set(compactId(page.id), { workspace, page });
    }
    this._down = false;
    this.reset();
  }

  /** Clears the records (not the tokens). */
  reset() {
    this.issued = []; // {accessToken, refreshToken, clientId, workspaceId, grant, expiresAt}
    this.tokenRequests = []; // {grantType, authStyle, clientId, contentType, status, error}
    this.apiBearers = []; // the bearer of every /v1 API call (null when none)
    this.apiRequests = []; // {method, path, bearer, notionVersion, status}
    this.authorizeRequests = []; // {clientId, redirectUri, state, owner, codeChallenge, codeChallengeMethod, extra}
    this.consents = []; // {clientId, workspaceId, approved}
    this.log = [];
  }

  get origin() {
    return `http://127.0.0.1:${this.port}`;
  }

  get authUrl() {
    return `${this.origin}/v1/oauth/authorize`;
  }

  get tokenUrl() {
    return `${this.origin}/v1/oauth/token`;
  }

  /** Registers a public integration. Redirect URIs match exactly. */
  addClient({ clientId = crypto.randomUUID(), clientSecret = `secret_${alnum(43)}`, redirectUris = [], name = 'mcpgate demo' } = {}) {
    const c = { clientId, clientSecret, redirectUris: [...redirectUris], name };
    this.clients.set(clientId, c);
    return c;
  }

  /** While true, every endpoint answers 503. */
  down(on = true) {
    this._down = Boolean(on);
  }

  /** Every access token issued so far is refused by the API from now on (the user removed the integration). */
  expireAll() {
    for (const t of this.accessTokens.values()) t.revoked = true;
  }

  /** Access tokens the API accepts right now. */
  validAccessTokens() {
    const now = Date.now();
    return [...this.accessTokens.entries()].filter(([, t]) => !t.revoked && t.expiresAt > now).map(([k]) => k);
  }

  /**
   * Every secret this provider handed out or holds, label -> value: access tokens, refresh tokens
   * and client secrets; with `codes: true` also the authorization codes.
   */
  secrets({ codes = false } = {}) {
    const out = new Map();
    this.issued.forEach((i, n) => {
      out.set(`notes access token #${n + 1}`, i.accessToken);
      if (i.refreshToken) out.set(`notes refresh token #${n + 1}`, i.refreshToken);
    });
    if (codes) [...this.codes.keys()].forEach((c, n) => out.set(`notes authorization code #${n + 1}`, c));
    for (const c of this.clients.values()) out.set(`notes client secret of ${c.clientId}`, c.clientSecret);
    return out;
  }

  /** A page's public URL (`url` of its page object). */
  pageUrl(page) {
    const slug = page.title.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
    return `${this.origin}/${slug}-${compactId(page.id)}`;
  }

  /**
   * The user's answer on the consent page of an authorization URL, given over plain HTTP: the URL
   * the provider redirects to (code and state, or an error), or throws when the provider shows an
   * error page instead.
   */
  async consent(authorizationUrl, { approve = true, workspaceId } = {}) {
    const page = await fetch(authorizationUrl, { redirect: 'manual' });
    const html = await page.text();
    const id = /name="consent_id" value="([^"]+)"/.exec(html)?.[1];
    if (page.status !== 200 || !id) throw new Error(`the provider showed no consent page (${page.status}): ${html.slice(0, 200)}`);
    const form = { consent_id: id, decision: approve ? 'allow' : 'cancel' };
    if (workspaceId) form.workspace_id = workspaceId;
    const answer = await fetch(this.authUrl, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
    const location = answer.headers.get('location');
    if (answer.status !== 302 || !location) throw new Error(`the consent answer was ${answer.status}, not a redirect`);
    return location;
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
      if (url.pathname.startsWith('/v1/') && url.pathname !== '/v1/oauth/authorize') {
        return notionError(res, 503, 'service_unavailable', 'Notion is unavailable, please try again later.');
      }
      res.writeHead(503, { 'content-type': 'text/html; charset=utf-8', 'retry-after': '30' });
      res.end('<!doctype html><title>Notes is down</title><h1>Notes is unavailable, please try again later.</h1>');
      return;
    }
    if (url.pathname === '/v1/oauth/authorize' && req.method === 'GET') return this.authorizeGet(url, res);
    if (url.pathname === '/v1/oauth/authorize' && req.method === 'POST') return this.authorizePost(req, res);
    if (url.pathname === '/v1/oauth/token' && req.method === 'POST') return this.token(req, res);
    if (url.pathname === '/.well-known/oauth-authorization-server' && req.method === 'GET') {
      return json(res, 200, {
        issuer: this.origin,
        authorization_endpoint: this.authUrl,
        token_endpoint: this.tokenUrl,
        response_types_supported: ['code'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
      });
    }
    if (url.pathname.startsWith('/v1/')) return this.api(req, res, url);
    const view = /^\/[A-Za-z0-9-]*?-?([0-9a-f]{32})$/.exec(url.pathname);
    if (view && req.method === 'GET' && this.pages.has(view[1])) return this.pageView(res, this.pages.get(view[1]).page);
    this.errorPage(res, 404, 'This page does not exist.');
  }

  errorPage(res, status, text) {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>Error</title><h1>Error</h1><p class="error">${escapeHtml(text)}</p>`);
  }

  // --- OAuth -------------------------------------------------------------------------------

  authorizeGet(url, res) {
    const q = url.searchParams;
    const known = ['client_id', 'redirect_uri', 'response_type', 'state', 'owner', 'code_challenge', 'code_challenge_method'];
    const request = {
      clientId: q.get('client_id'),
      redirectUri: q.get('redirect_uri'),
      responseType: q.get('response_type'),
      state: q.get('state'),
      owner: q.get('owner'),
      codeChallenge: q.get('code_challenge'),
      codeChallengeMethod: q.get('code_challenge_method'),
      extra: Object.fromEntries([...q].filter(([k]) => !known.includes(k))),
    };
    this.authorizeRequests.push(request);
    const client = this.clients.get(request.clientId ?? '');
    if (!client) return this.errorPage(res, 400, 'Invalid client_id: no integration has this id.');
    // An unregistered redirect_uri gets a page, never a redirect to it.
    if (!request.redirectUri || !client.redirectUris.includes(request.redirectUri)) {
      return this.errorPage(res, 400, 'Invalid redirect_uri: it must exactly match a redirect URI registered for this integration.');
    }
    const refuse = (error, description) => {
      const target = new URL(request.redirectUri);
      target.searchParams.set('error', error);
      target.searchParams.set('error_description', description);
      if (request.state !== null) target.searchParams.set('state', request.state);
      res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
      res.end();
    };
    if (request.responseType !== 'code') return refuse('unsupported_response_type', 'response_type must be code.');
    if (request.owner !== null && request.owner !== 'user') return refuse('invalid_request', 'owner must be user.');
    if (request.codeChallenge && request.codeChallengeMethod !== 'S256') return refuse('invalid_request', 'code_challenge_method must be S256.');
    if (request.codeChallenge && !/^[A-Za-z0-9_-]{43}$/.test(request.codeChallenge)) {
      return refuse('invalid_request', 'code_challenge is not an S256 challenge.');
    }
    const id = rand(18);
    this.pendingConsents.set(id, { ...request, expiresAt: Date.now() + 10 * 60_000 });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(this.consentPage(client, id));
  }

  consentPage(client, consentId) {
    const [first] = this.workspaces;
    const picker = this.workspaces.length > 1
      ? `<label class="picker">Workspace <select name="workspace_id" id="workspace">${this.workspaces
        .map((w) => `<option value="${escapeHtml(w.id)}">${escapeHtml(w.name)}</option>`).join('')}</select></label>`
      : `<input type="hidden" name="workspace_id" value="${escapeHtml(first.id)}">`;
    const pages = first.pages
      .map((pg) => `<li><span class="doc"></span>${escapeHtml(pg.title)}</li>`).join('');
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(client.name)} wants to access your workspace</title>
<style>
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: #f7f6f3; font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif; color: #37352f; }
  main { background: #fff; width: 440px; border-radius: 10px; box-shadow: 0 8px 30px rgba(15, 15, 15, .12); padding: 32px; }
  .brand { display: flex; align-items: center; gap: 10px; font-weight: 600; color: #787774; margin-bottom: 20px; }
  .brand .logo { width: 28px; height: 28px; border-radius: 6px; background: #37352f; color: #fff; display: grid; place-items: center; font-size: 16px; }
  h1 { font-size: 20px; line-height: 1.35; margin: 0 0 8px; }
  p { margin: 0 0 16px; color: #5f5e5b; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: #9b9a97; margin: 20px 0 8px; }
  ul { list-style: none; padding: 0; margin: 0; border: 1px solid #e9e9e7; border-radius: 6px; max-height: 320px; overflow: auto; }
  li { padding: 7px 12px; border-top: 1px solid #f1f1ef; }
  li:first-child { border-top: 0; }
  /* A page glyph drawn in CSS: emoji fonts are missing on some (headless) browsers. */
  .doc { display: inline-block; width: 10px; height: 13px; border: 1.5px solid #9b9a97; border-radius: 2px; margin: 0 12px -2px 0; }
  .abilities { border: 0; }
  .abilities li { border: 0; padding: 3px 0; }
  .abilities li::before { content: "✓ "; color: #0f7b6c; }
  .picker { display: block; margin: 12px 0; }
  .buttons { display: flex; gap: 10px; justify-content: flex-end; margin-top: 24px; }
  button { font: inherit; border-radius: 6px; padding: 8px 18px; cursor: pointer; border: 1px solid #d3d1cb; background: #fff; color: #37352f; }
  button#allow { background: #2383e2; border-color: #2383e2; color: #fff; font-weight: 600; }
  button#allow:hover { background: #0b6bcb; }
</style></head>
<body><main>
<div class="brand"><span class="logo">N</span>Notes</div>
<h1 id="title">${escapeHtml(client.name)} wants to access your workspace ‘<span id="workspace-name">${escapeHtml(first.name)}</span>’</h1>
<p>Signed in as <strong id="user">${escapeHtml(this.user.email)}</strong>.</p>
<ul class="abilities">
  <li>Read content of the pages you share</li>
  <li>Search those pages</li>
  <li>See your name and email address</li>
</ul>
<form method="post" action="/v1/oauth/authorize">
  <input type="hidden" name="consent_id" value="${consentId}">
  ${picker}
  <h2>Pages it will share</h2>
  <ul id="pages">${pages}</ul>
  <div class="buttons">
    <button type="submit" name="decision" value="cancel" id="cancel">Cancel</button>
    <button type="submit" name="decision" value="allow" id="allow">Allow access</button>
  </div>
</form>
</main></body></html>`;
  }

  async authorizePost(req, res) {
    const form = new URLSearchParams(await readBody(req));
    const id = form.get('consent_id') ?? '';
    const pending = this.pendingConsents.get(id);
    this.pendingConsents.delete(id);
    if (!pending || pending.expiresAt < Date.now()) return this.errorPage(res, 400, 'This authorization request has expired. Start again from the application.');
    const approved = form.get('decision') === 'allow';
    const workspace = this.workspaces.find((w) => w.id === (form.get('workspace_id') ?? this.workspaces[0].id));
    if (approved && !workspace) return this.errorPage(res, 400, 'Unknown workspace_id.');
    this.consents.push({ clientId: pending.clientId, workspaceId: workspace?.id ?? null, approved });
    const target = new URL(pending.redirectUri);
    if (!approved) {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The user cancelled the authorization.');
    } else {
      const code = newCode();
      this.codes.set(code, {
        clientId: pending.clientId,
        redirectUri: pending.redirectUri,
        challenge: pending.codeChallenge,
        workspaceId: workspace.id,
        expiresAt: Date.now() + 10 * 60_000,
        used: false,
      });
      target.searchParams.set('code', code);
    }
    if (pending.state !== null) target.searchParams.set('state', pending.state);
    res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
    res.end();
  }

  /** Client authentication, HTTP Basic only: {style: 'header'|'params'|'none', clientId, ok}. */
  authenticate(req, body) {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) return { style: body.get('client_secret') !== null ? 'params' : 'none', clientId: body.get('client_id'), ok: false };
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return { style: 'header', clientId: null, ok: false };
    // RFC 6749 2.3.1: both parts are form-urlencoded before Base64.
    const dec = (s) => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        return s;
      }
    };
    const id = dec(decoded.slice(0, colon));
    const secret = dec(decoded.slice(colon + 1));
    const client = this.clients.get(id);
    return { style: 'header', clientId: id, ok: Boolean(client && same(secret, client.clientSecret)) };
  }

  async token(req, res) {
    const contentType = req.headers['content-type'] ?? '';
    const raw = await readBody(req);
    const record = { grantType: null, authStyle: null, clientId: null, contentType, status: 200, error: null };
    this.tokenRequests.push(record);
    const answer = (status, body) => {
      record.status = status;
      record.error = body.error ?? null;
      json(res, status, body);
    };
    const fail = (error, description) => {
      const status = error === 'invalid_client' ? 401 : 400;
      if (status === 401) res.setHeader('www-authenticate', 'Basic realm="notes"');
      answer(status, { error, error_description: description });
    };

    let body;
    if (/application\/json/i.test(contentType)) {
      let parsed;
      try {
        parsed = JSON.parse(raw);
      } catch {
        return fail('invalid_request', 'The body is not valid JSON.');
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return fail('invalid_request', 'The body must be a JSON object.');
      body = { get: (k) => (typeof parsed[k] === 'string' ? parsed[k] : null) };
    } else {
      const form = new URLSearchParams(raw);
      body = { get: (k) => form.get(k) };
    }
    record.grantType = body.get('grant_type');
    const auth = this.authenticate(req, body);
    Object.assign(record, { authStyle: auth.style, clientId: auth.clientId });
    if (auth.style === 'params') return fail('invalid_client', 'Client credentials must be sent with HTTP Basic authentication.');
    if (!auth.ok) return fail('invalid_client', 'Invalid client credentials.');

    if (record.grantType === 'authorization_code') {
      const entry = this.codes.get(body.get('code') ?? '');
      if (!entry || entry.used || entry.expiresAt < Date.now() || entry.clientId !== auth.clientId) {
        if (entry) entry.used = true; // a replayed code burns
        return fail('invalid_grant', 'Invalid code.');
      }
      entry.used = true;
      const redirectUri = body.get('redirect_uri');
      if (redirectUri === null) return fail('invalid_grant', 'redirect_uri is required: it was sent to the authorization endpoint.');
      if (redirectUri !== entry.redirectUri) return fail('invalid_grant', 'redirect_uri does not match the one of the authorization request.');
      if (entry.challenge) {
        const verifier = body.get('code_verifier') ?? '';
        const computed = crypto.createHash('sha256').update(verifier).digest('base64url');
        if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || !same(computed, entry.challenge)) {
          return fail('invalid_grant', 'code_verifier does not match the code_challenge.');
        }
      } else if (body.get('code_verifier') !== null) {
        return fail('invalid_grant', 'A code_verifier was sent for a code issued without a code_challenge.');
      }
      return answer(200, this.issue(auth.clientId, entry.workspaceId, 'authorization_code'));
    }

    if (record.grantType === 'refresh_token') {
      const entry = this.refreshTokens.get(body.get('refresh_token') ?? '');
      if (!entry || entry.revoked || entry.clientId !== auth.clientId) return fail('invalid_grant', 'Invalid refresh token.');
      entry.revoked = true; // rotation
      return answer(200, this.issue(auth.clientId, entry.workspaceId, 'refresh_token'));
    }

    return fail('unsupported_grant_type', `grant_type ${record.grantType} is not supported.`);
  }

  issue(clientId, workspaceId, grant) {
    const workspace = this.workspaces.find((w) => w.id === workspaceId);
    const accessToken = newAccessToken();
    const now = Date.now();
    const expiring = this.expiresIn !== null;
    const refreshToken = expiring ? newRefreshToken() : null;
    const expiresAt = expiring ? now + this.expiresIn * 1000 : Infinity;
    this.accessTokens.set(accessToken, { clientId, workspaceId, expiresAt, revoked: false });
    if (refreshToken) this.refreshTokens.set(refreshToken, { clientId, workspaceId, revoked: false });
    this.issued.push({ accessToken, refreshToken, clientId, workspaceId, grant, expiresAt, issuedAt: now });
    this._log(`issued an access token to ${clientId} (${grant})`);
    return {
      access_token: accessToken,
      token_type: 'bearer',
      ...(expiring ? { refresh_token: refreshToken, expires_in: this.expiresIn } : {}),
      bot_id: this.botId(clientId, workspaceId),
      workspace_id: workspace.id,
      workspace_name: workspace.name,
      workspace_icon: workspace.icon ?? null,
      owner: { type: 'user', user: this.userObject() },
      duplicated_template_id: null,
      request_id: crypto.randomUUID(),
    };
  }

  botId(clientId, workspaceId) {
    return stableUuid(`bot/${clientId}/${workspaceId}`);
  }

  userObject() {
    const { id, name, email } = this.user;
    return { object: 'user', id, name, avatar_url: null, type: 'person', person: { email } };
  }

  // --- API ---------------------------------------------------------------------------------

  async api(req, res, url) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const bearer = m ? m[1] : null;
    const notionVersion = req.headers['notion-version'] ?? null;
    const record = { method: req.method, path: url.pathname, bearer, notionVersion, status: 200 };
    this.apiBearers.push(bearer);
    this.apiRequests.push(record);
    const fail = (status, code, message) => {
      record.status = status;
      notionError(res, status, code, message);
    };
    if (!notionVersion) {
      return fail(400, 'missing_version', 'Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.');
    }
    const token = bearer ? this.accessTokens.get(bearer) : undefined;
    if (!token || token.revoked || token.expiresAt <= Date.now()) return fail(401, 'unauthorized', 'API token is invalid.');
    const workspace = this.workspaces.find((w) => w.id === token.workspaceId);
    const ok = (body) => json(res, 200, { ...body, request_id: crypto.randomUUID() });

    if (url.pathname === '/v1/search' && req.method === 'POST') {
      let body;
      try {
        const raw = await readBody(req);
        body = raw.trim() ? JSON.parse(raw) : {};
      } catch {
        return fail(400, 'invalid_json', 'Error parsing JSON body.');
      }
      if (!body || typeof body !== 'object' || Array.isArray(body)) return fail(400, 'validation_error', 'body failed validation: body should be an object.');
      const { query = '', filter, sort, page_size: pageSize = 100, start_cursor: cursor } = body;
      if (typeof query !== 'string') return fail(400, 'validation_error', `body failed validation: body.query should be a string, instead was \`${JSON.stringify(query)}\`.`);
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100) {
        return fail(400, 'validation_error', `body failed validation: body.page_size should be an integer between 1 and 100, instead was \`${JSON.stringify(pageSize)}\`.`);
      }
      if (filter !== undefined && (filter?.property !== 'object' || !['page', 'database'].includes(filter?.value))) {
        return fail(400, 'validation_error', 'body failed validation: body.filter.value should be "page" or "database" and body.filter.property should be "object".');
      }
      let found = filter?.value === 'database' ? [] : search(workspace.pages, query);
      if (sort?.timestamp === 'last_edited_time') {
        const dir = sort.direction === 'ascending' ? 1 : -1;
        found = [...found].sort((a, b) => dir * a.lastEditedTime.localeCompare(b.lastEditedTime));
      }
      let start = 0;
      if (cursor !== undefined) {
        start = found.findIndex((pg) => compactId(pg.id) === compactId(cursor));
        if (start < 0) return fail(400, 'validation_error', 'body failed validation: body.start_cursor is not a cursor of this search.');
      }
      const slice = found.slice(start, start + pageSize);
      const next = found[start + pageSize];
      return ok({
        object: 'list',
        results: slice.map((pg) => this.pageObject(pg)),
        next_cursor: next ? next.id : null,
        has_more: Boolean(next),
        type: 'page_or_database',
        page_or_database: {},
      });
    }

    const pageMatch = /^\/v1\/pages\/([^/]+)$/.exec(url.pathname);
    if (pageMatch && req.method === 'GET') {
      const page = this.pageIn(workspace, pageMatch[1]);
      if (page === undefined) return fail(400, 'validation_error', `path failed validation: path.page_id should be a valid uuid, instead was \`"${pageMatch[1]}"\`.`);
      if (!page) return fail(404, 'object_not_found', `Could not find page with ID: ${pageMatch[1]}. Make sure the relevant pages and databases are shared with your integration.`);
      return ok(this.pageObject(page));
    }

    const childrenMatch = /^\/v1\/blocks\/([^/]+)\/children$/.exec(url.pathname);
    if (childrenMatch && req.method === 'GET') {
      const id = compactId(childrenMatch[1]);
      if (!id) return fail(400, 'validation_error', `path failed validation: path.block_id should be a valid uuid, instead was \`"${childrenMatch[1]}"\`.`);
      const page = this.pageIn(workspace, id);
      // A page's blocks have no children of their own here.
      const isBlock = workspace.pages.some((pg) => pg.blocks.some((_, n) => compactId(blockId(pg, n)) === id));
      if (!page && !isBlock) return fail(404, 'object_not_found', `Could not find block with ID: ${childrenMatch[1]}. Make sure the relevant pages and databases are shared with your integration.`);
      const results = page ? page.blocks.map((b, n) => this.blockObject(page, b, n)) : [];
      return ok({ object: 'list', results, next_cursor: null, has_more: false, type: 'block', block: {} });
    }

    if (url.pathname === '/v1/users/me' && req.method === 'GET') {
      return ok({
        object: 'user',
        id: this.botId(token.clientId, token.workspaceId),
        name: this.clients.get(token.clientId)?.name ?? 'integration',
        avatar_url: null,
        type: 'bot',
        bot: { owner: { type: 'user', user: this.userObject() }, workspace_name: workspace.name },
      });
    }

    return fail(400, 'invalid_request_url', 'Invalid request URL.');
  }

  /** The page with this id in the workspace, null when none, undefined when `id` is no UUID. */
  pageIn(workspace, id) {
    const compact = compactId(id);
    if (!compact) return undefined;
    const found = this.pages.get(compact);
    return found && found.workspace === workspace ? found.page : null;
  }

  pageObject(page) {
    const user = { object: 'user', id: this.user.id };
    return {
      object: 'page',
      id: page.id,
      created_time: page.createdTime,
      last_edited_time: page.lastEditedTime,
      created_by: user,
      last_edited_by: user,
      cover: null,
      icon: page.icon ? { type: 'emoji', emoji: page.icon } : null,
      parent: { type: 'workspace', workspace: true },
      archived: false,
      in_trash: false,
      properties: { title: { id: 'title', type: 'title', title: richText(page.title) } },
      url: this.pageUrl(page),
      public_url: null,
    };
  }

  blockObject(page, [type, text, checked], n) {
    const user = { object: 'user', id: this.user.id };
    const content = { rich_text: richText(text), color: 'default' };
    if (type === 'to_do') content.checked = Boolean(checked);
    if (type.startsWith('heading_')) content.is_toggleable = false;
    return {
      object: 'block',
      id: blockId(page, n),
      parent: { type: 'page_id', page_id: page.id },
      created_time: page.createdTime,
      last_edited_time: page.lastEditedTime,
      created_by: user,
      last_edited_by: user,
      has_children: false,
      archived: false,
      in_trash: false,
      type,
      [type]: content,
    };
  }

  pageView(res, page) {
    const tag = { heading_1: 'h2', heading_2: 'h3', bulleted_list_item: 'li', to_do: 'li' };
    const body = page.blocks.map(([type, text, checked]) => {
      const html = escapeHtml(text).replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
      const t = tag[type] ?? 'p';
      return type === 'to_do' ? `<${t}>${checked ? '☑' : '☐'} ${html}</${t}>` : `<${t}>${html}</${t}>`;
    }).join('\n');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(page.title)}</title>
<style>body { max-width: 720px; margin: 48px auto; padding: 0 24px; font: 16px/1.6 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #37352f; }
h1 { font-size: 36px; } li { list-style: none; margin: 4px 0; } li::before { content: "• "; }</style></head>
<body><h1>${escapeHtml(page.title)}</h1>
${body}
</body></html>`);
  }
}

function blockId(page, n) {
  return stableUuid(`block/${page.id}/${n}`);
}

/**
 * Pages matching `query`, case-insensitively, best first: the phrase in the title, every topic word
 * in the title, the phrase in the content, every topic word in the content. An empty query matches
 * every page, in workspace order.
 */
export function search(pages, query) {
  const phrase = query.trim().toLowerCase();
  if (!phrase) return [...pages];
  const words = phrase.split(/[^\p{L}\p{N}]+/u).filter((w) => w && !STOPWORDS.has(w));
  const rank = (page) => {
    const title = page.title.toLowerCase();
    const content = page.blocks.map(([, text]) => plain(text)).join('\n').toLowerCase();
    const all = (text) => words.length > 0 && words.every((w) => text.includes(w));
    if (title.includes(phrase)) return 0;
    if (all(title)) return 1;
    if (content.includes(phrase)) return 2;
    if (all(`${title}\n${content}`)) return 3;
    return null;
  };
  return pages
    .map((page, n) => ({ page, n, r: rank(page) }))
    .filter((x) => x.r !== null)
    .sort((a, b) => a.r - b.r || a.n - b.n)
    .map((x) => x.page);
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function notionError(res, status, code, message) {
  json(res, status, { object: 'error', status, code, message, request_id: crypto.randomUUID() });
}

/** Starts a provider (see NotesProvider for the options). */
export async function startNotesProvider(options = {}) {
  return new NotesProvider(options).start();
}
