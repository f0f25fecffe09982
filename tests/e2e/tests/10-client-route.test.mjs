// Client routes (docs/delegation.md): a web app behind the gateway that acts as an MCP client for
// its signed-in user. Chromium opens the app, is sent to the gateway's sign-in, comes back; the app
// (lib/client-app.mjs) gets the user's TE and an assertion from the filter, lists the user's server
// routes, connects the upstream-OAuth route through the provider's consent (redirect_url honoured),
// and calls tools on two server routes with the TE through the official SDK client.
// Also: open-redirect attempts on connect, a connect callback replayed from another session, and
// what the app must never receive (the browser's Authorization, x-mcpgate-* headers, the session cookie).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startGateway, USER } from '../lib/gateway.mjs';
import { startGitHubProvider } from '../lib/github-provider.mjs';
import { Browser } from '../lib/browser.mjs';
import { request, describe } from '../lib/net.mjs';
import { decodeJwt } from '../lib/oauth.mjs';

let provider;
let gw;
let browser;
let page;
let app;
const seen = new Map(); // label -> secret seen during the run (for the log scan)

before(async () => {
  provider = await startGitHubProvider({ expiresIn: 60 });
  gw = await startGateway('10-client-route', {
    provider,
    accessTokenLifetime: '600s',
    routes: [
      { path: '/app', name: 'Chat app', client: true },
      { path: '/everything', name: 'Everything', upstream: 'everything', description: 'MCP reference server' },
      { path: '/github', name: 'GitHub', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user'] } },
      // alice is alice@example.com: this route's policy does not allow her.
      { path: '/corp', name: 'Corp only', upstream: 'everything', policy: { allow: { and: [{ domain: { is: 'company.com' } }] } } },
    ],
  });
  provider.logFile = path.join(gw.paths.logs, 'github-provider.log');
  app = gw.route('/app').app;
  browser = await Browser.launch(gw.dir);
  page = await browser.context.newPage();
}, { timeout: 900_000 });

after(async () => {
  await page?.close().catch(() => {});
  await browser?.close();
  await gw?.stop();
  await provider?.stop();
});

const appPage = () => app.returnUrl; // http://localhost:<port>/app/
const onApp = (u) => u.startsWith(appPage());
const connectUrl = (routePath) => gw.route(routePath).connectUrl;

/** The servers the app page shows: [{name, url, connected, needsOauth}]. */
async function shownServers(p = page) {
  const status = await p.getAttribute('body', 'data-routes-status');
  assert.equal(status, '200', `the app got the routes list from the gateway (status ${status})`);
  return p.$$eval('li.server', (els) => els.map((e) => ({ ...e.dataset })));
}

function sessionCookies(cookies) {
  return cookies.filter((c) => /mcpgate_session$/.test(c.name));
}

async function signInThroughApp(b, p) {
  const r = await b.drive(p, { url: appPage(), username: USER.username, password: USER.password, until: onApp });
  assert.ok(r.arrived, `the browser must come back to the app: ${JSON.stringify(r.steps)}; last page (${r.status}): ${r.bodyText?.slice(0, 300)}`);
  return r;
}

/**
 * For the tests after the sign-in test: a browser with a gateway session on the app page. When
 * Chromium's own sign-in fails (the sign-in test reports that), the session is made by posting the
 * sign-in form over HTTP and handing its cookie to the browser, so the later tests still check
 * their own features; the diagnostic says so.
 */
async function ensureSignedIn(t, b, p) {
  const r = await b.drive(p, { url: appPage(), username: USER.username, password: USER.password, until: onApp });
  if (r.arrived) return;
  t.diagnostic(`Chromium's sign-in failed (${JSON.stringify(r.steps)}); signing in over HTTP for this test`);
  const form = await request(`${gw.origin}/.mcpgate/sign_in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: gw.origin },
    body: new URLSearchParams({ return_to: appPage(), username: USER.username, password: USER.password }).toString(),
  });
  assert.ok([302, 303].includes(form.status), `sign-in over HTTP: ${describe(form)}`);
  for (const c of form.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    await b.context.addCookies([{ name: pair.slice(0, i), value: pair.slice(i + 1), url: gw.origin }]);
  }
  await p.goto(appPage());
  assert.ok(onApp(p.url()), `on the app page after signing in over HTTP: ${p.url()}`);
}

test('without a session: a browser GET is sent to sign-in, anything else gets 401, and the app receives nothing', async () => {
  const html = await request(appPage(), { headers: { accept: 'text/html,application/xhtml+xml' } });
  assert.equal(html.status, 302, `browser GET: ${describe(html)}`);
  const location = new URL(html.headers.get('location'), gw.origin);
  assert.equal(location.origin + location.pathname, `${gw.issuer}/.mcpgate/sign_in`, 'to the gateway sign-in');
  assert.equal(location.searchParams.get('return_to'), appPage(), 'return_to is the page asked for');
  const api = await request(appPage(), { headers: { accept: 'application/json' } });
  assert.equal(api.status, 401, `non-browser GET: ${describe(api)}`);
  const post = await request(`${appPage()}call`, { method: 'POST', headers: { accept: 'text/html', 'content-type': 'application/json' }, body: '{}' });
  assert.equal(post.status, 401, `POST: ${describe(post)}`);
  const badCookie = await request(appPage(), { headers: { accept: 'text/html', cookie: 'mcpgate_session=forged-session-value; __Host-mcpgate_session=forged' } });
  assert.equal(badCookie.status, 302, `an invalid session cookie is no session: ${describe(badCookie)}`);
  assert.equal(app.requests.length, 0, 'nothing reached the app');
});

test('Chromium opens the app, is sent to the gateway\'s sign-in, signs in, and is back on the app page', { timeout: 60_000 }, async () => {
  const r = await signInThroughApp(browser, page);
  assert.equal(r.steps[0].kind, 'sign_in', `the first page is the gateway sign-in: ${JSON.stringify(r.steps)}`);
  assert.ok(r.steps[0].url.startsWith(`${gw.issuer}/.mcpgate/sign_in`), `sign-in URL: ${r.steps[0].url}`);
  assert.equal(r.url, appPage(), 'back on the page first asked for');
});

test('the app lists the user\'s servers (upstream-OAuth route not connected); it received a TE and a verified assertion', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  const servers = await shownServers();
  const byName = Object.fromEntries(servers.map((s) => [s.name, s]));
  assert.deepEqual(Object.keys(byName).sort(), ['Everything', 'GitHub'], `the user's server routes (no client route, not the route her policy refuses): ${JSON.stringify(servers)}`);
  assert.equal(byName.Everything.url, gw.route('/everything').url);
  assert.equal(byName.GitHub.url, gw.route('/github').url);
  assert.equal(byName.GitHub.needsOauth, 'true', 'the GitHub route needs upstream OAuth');
  assert.equal(byName.GitHub.connected, 'false', 'and is not connected yet');
  assert.equal(byName.Everything.needsOauth, 'false');

  const rec = app.requests.at(-1);
  assert.ok(rec.bearer, 'the app received a TE');
  seen.set('TE of the app', rec.bearer);
  const { header, payload } = decodeJwt(rec.bearer);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(payload.client_id, 'mcpgate:client-route');
  const aud = [payload.aud].flat();
  for (const p of ['/app', '/everything', '/github']) assert.ok(aud.includes(gw.route(p).url), `TE aud contains ${p}: ${JSON.stringify(aud)}`);
  assert.ok(!aud.includes(gw.route('/corp').url), `TE aud leaves out the route her policy refuses: ${JSON.stringify(aud)}`);
  assert.equal(payload.email, USER.email);
  assert.ok(rec.assertion.ok, `the assertion verifies: ${rec.assertion.error}`);
  assert.equal(rec.assertion.claims.aud, gw.route('/app').url, 'assertion aud is the client route');
  assert.equal(rec.assertion.claims.sub, payload.sub);
  assert.equal(rec.assertion.claims.email, USER.email);
  for (const c of sessionCookies(await browser.context.cookies(gw.origin))) seen.set(`session cookie ${c.name}`, c.value);
  t.diagnostic(`servers: ${JSON.stringify(servers)}`);
});

test('connect: the link goes through the provider\'s consent and back to the app page; GitHub is then connected', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  assert.ok(await page.$('li.server[data-name="GitHub"] a.connect'), 'the app page shows a connect link');
  const before = provider.authorizeRequests.length;
  const r = await browser.drive(page, {
    start: () => page.click('li.server[data-name="GitHub"] a.connect'),
    username: USER.username, password: USER.password, until: onApp,
  });
  assert.ok(r.arrived, `back on the app page (redirect_url honoured): ${JSON.stringify(r.steps)}; last page (${r.status}): ${r.bodyText?.slice(0, 300)}`);
  assert.equal(r.url, appPage(), 'exactly the redirect_url');
  assert.ok(r.steps.some((s) => s.kind === 'consent' && s.url.startsWith(provider.origin)), `the provider's consent was shown: ${JSON.stringify(r.steps)}`);
  const ask = provider.authorizeRequests.slice(before);
  assert.equal(ask.length, 1, 'one authorization request at the provider');
  assert.equal(ask[0].redirectUri, gw.upstreamCallbackUrl);
  assert.equal(ask[0].clientId, gw.route('/github').upstreamOAuth2.clientId);
  const github = (await shownServers()).find((s) => s.name === 'GitHub');
  assert.equal(github.connected, 'true', 'GitHub is connected now');
  t.diagnostic(`connect pages: ${r.steps.map((s) => `${s.kind}@${new URL(s.url).host}${new URL(s.url).pathname}`).join(' -> ')}`);
});

/** Disconnects GitHub with the bearer of the app's latest request to the gateway. */
async function disconnectGithub() {
  const te = app.requests.at(-1).bearer;
  const disconnect = await request(`${gw.origin}/.mcpgate/mcp/routes/disconnect`, {
    method: 'POST',
    headers: { authorization: `Bearer ${te}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: gw.route('/github').url }),
  });
  assert.equal(disconnect.status, 204, `disconnect: ${describe(disconnect)}`);
}

async function appCall(routePath, tool, args) {
  const u = new URL(`${appPage()}call`);
  u.searchParams.set('url', gw.route(routePath).url);
  u.searchParams.set('tool', tool);
  u.searchParams.set('args', JSON.stringify(args));
  const r = await browser.context.request.get(u.href, { maxRedirects: 0 });
  assert.equal(r.status(), 200, `the app's /call answered ${r.status()}: ${(await r.text()).slice(0, 300)}`);
  return r.json();
}

test('the app calls tools with the TE on two server routes (server-everything echo, upstream MCP whoami)', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  const message = `from the client app ${Date.now()}`;
  const echo = await appCall('/everything', 'echo', { message });
  assert.ok(echo.ok, `echo through the gateway: ${JSON.stringify(echo)}`);
  assert.equal(echo.result.content[0].text, `Echo: ${message}`);

  const mcp = gw.route('/github').mcpServer;
  const before = mcp.requests.length;
  const who = await appCall('/github', 'whoami', {});
  assert.ok(who.ok, `whoami through the gateway: ${JSON.stringify(who)}`);
  assert.equal(who.result.content[0].text, provider.user.login);
  const reached = mcp.requests.slice(before).filter((r) => r.path === '/mcp');
  assert.ok(reached.some((r) => r.tool === 'whoami'), 'the whoami call reached the MCP server');
  const te = app.requests.at(-1).bearer;
  const issued = new Set(provider.issued.map((i) => i.accessToken));
  for (const r of reached) {
    assert.ok(!JSON.stringify(r.headers).includes(te), 'the MCP server never receives the TE');
    assert.ok(issued.has(r.bearer), 'it receives the provider token');
    assert.ok(r.assertion.ok, `assertion at the MCP server: ${r.assertion.error}`);
    assert.equal(r.assertion.claims.aud, gw.route('/github').url);
    assert.equal(r.assertion.claims.email, USER.email);
  }
});

test('disconnect: the MCP server stops receiving the user\'s upstream token within 10 seconds', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  const who = await appCall('/github', 'whoami', {});
  assert.ok(who.ok, `connected by the previous tests: ${JSON.stringify(who)}`);
  const mcp = gw.route('/github').mcpServer;
  const started = Date.now();
  await disconnectGithub();
  let last;
  let reached = 0;
  for (;;) {
    const before = mcp.requests.length;
    last = await appCall('/github', 'whoami', {});
    reached += mcp.requests.slice(before).filter((r) => r.path === '/mcp').length;
    if (!last.ok || Date.now() - started > 15_000) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const elapsed = Date.now() - started;
  t.diagnostic(`after disconnect: ${reached} requests still reached the MCP server; refused after ${elapsed} ms`);
  assert.equal(last.ok, false, `calls stop working after disconnect (still working after ${elapsed} ms)`);
  assert.ok(elapsed <= 10_000, `within 10 s of the disconnect (took ${elapsed} ms, ${reached} requests reached the MCP server meanwhile)`);
  assert.ok(last.httpStatuses.includes(401), `the gateway answers 401 (upstream authorization required): ${JSON.stringify(last)}`);
  await page.goto(appPage());
  assert.equal((await shownServers()).find((s) => s.name === 'GitHub').connected, 'false', 'the app shows GitHub disconnected');
});

test('the TE does not open a route the user\'s policy refuses', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  const corp = await appCall('/corp', 'echo', { message: 'x' });
  assert.equal(corp.ok, false, `the call on /corp fails: ${JSON.stringify(corp)}`);
  assert.ok(corp.httpStatuses.some((s) => s === 401 || s === 403), `with 401/403 from the gateway: ${JSON.stringify(corp)}`);
});

test('connect refuses redirect_url values outside the client routes: an error page, no redirect, nothing sent to the provider', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  const port = gw.ports.envoy;
  const bad = [
    'https://evil.example/',
    '//evil.example/',
    `http://127.0.0.1:${port}@evil.example/`,
    `http://localhost:${port}@evil.example/app/`,
    'javascript:alert(1)',
    'JavaScript:alert(1)//',
    'data:text/html,<script>alert(1)</script>',
    `http://127.0.0.1:${port}/app/`, // another host
    `http://localhost:${port + 1}/app/`, // another port
    `https://localhost:${port}/app/`, // another scheme
    `http://localhost:${port}/other/`, // not under a client route
    `http://localhost:${port}/application`, // prefix look-alike
    `http://localhost:${port}/everything`, // a server route
    `http://localhost:${port}/app/../.mcpgate/mcp/routes`,
    `http://localhost:${port}/app/%2e%2e/everything`,
    '/\\evil.example/',
    '\\\\evil.example/',
    '\\/evil.example/',
    `http://localhost:${port}\\@evil.example/app/`,
    `http:\\\\evil.example/app/`,
    'http:evil.example',
    `http://evil.example/${encodeURIComponent(`http://localhost:${port}/app/`)}`,
    `http://localhost:${port}/app/\r\nLocation: https://evil.example/`,
    `\thttp://evil.example/`,
  ];
  const before = provider.authorizeRequests.length;
  const failures = [];
  for (const value of bad) {
    const r = await browser.context.request.get(`${connectUrl('/github')}?redirect_url=${encodeURIComponent(value)}`, { maxRedirects: 0 });
    const location = r.headers().location;
    const type = r.headers()['content-type'] ?? '';
    if (r.status() < 400 || r.status() >= 500 || location !== undefined || !/text\/html/.test(type)) {
      failures.push(`${JSON.stringify(value)} -> ${r.status()} ${type}${location ? ` Location: ${location}` : ''}`);
    }
  }
  assert.deepEqual(failures, [], 'every bad redirect_url gets a 4xx HTML error page without a Location');
  assert.equal(provider.authorizeRequests.length, before, 'nothing was sent to the provider');

  // Control: the same request with the app's URL (and a sub-path with a query) starts the flow.
  for (const good of [appPage(), `${appPage()}settings?tab=servers`]) {
    const ok = await browser.context.request.get(`${connectUrl('/github')}?redirect_url=${encodeURIComponent(good)}`, { maxRedirects: 0 });
    assert.equal(ok.status(), 302, `a redirect_url under the client route is accepted: ${good}`);
    assert.ok(ok.headers().location?.startsWith(provider.authUrl), `… and the browser goes to the provider: ${ok.headers().location}`);
  }
  // Without a session, connect sends the browser to sign-in first (no provider redirect).
  const anonymous = await request(`${connectUrl('/github')}?redirect_url=${encodeURIComponent(appPage())}`, { headers: { accept: 'text/html' } });
  assert.ok([302, 303].includes(anonymous.status), `connect without a session: ${describe(anonymous)}`);
  const signInAt = new URL(anonymous.headers.get('location') ?? '', gw.origin);
  assert.equal(signInAt.origin + signInAt.pathname, `${gw.issuer}/.mcpgate/sign_in`, `to sign-in: ${anonymous.headers.get('location')}`);
  t.diagnostic(`${bad.length} redirect_url values refused`);
});

test('a connect callback replayed from another browser session is refused', { timeout: 90_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  // Forget the connection, so the replay would have something to connect.
  await disconnectGithub();
  await page.goto(appPage());
  assert.equal((await shownServers()).find((s) => s.name === 'GitHub').connected, 'false', 'disconnected');

  // Session A starts the connect flow; the user's consent at the provider (which keeps no browser
  // session) is given over HTTP, so its redirect to the gateway's callback is captured, not delivered.
  const started = await browser.context.request.get(`${connectUrl('/github')}?redirect_url=${encodeURIComponent(appPage())}`, { maxRedirects: 0 });
  assert.equal(started.status(), 302, 'connect sends session A to the provider');
  const authorizeAt = started.headers().location;
  assert.ok(authorizeAt?.startsWith(provider.authUrl), `to the provider: ${authorizeAt}`);
  const captured = await provider.consent(authorizeAt);
  assert.ok(captured.startsWith(`${gw.upstreamCallbackUrl}?`) && new URL(captured).searchParams.get('code'), `the provider redirects to the gateway callback with a code: ${captured.replace(/code=[^&]+/, 'code=…')}`);

  // Session B: another browser, signed in (as the same user), opens the captured callback.
  const other = await Browser.launch(gw.dir);
  try {
    const p2 = await other.context.newPage();
    await ensureSignedIn(t, other, p2);
    for (const c of sessionCookies(await other.context.cookies(gw.origin))) seen.set(`session cookie B ${c.name}`, c.value);
    const tokenRequestsBefore = provider.tokenRequests.length;
    const response = await p2.goto(captured);
    const status = response?.status();
    assert.ok(status >= 400 && status < 500, `the replayed callback gets a 4xx error page, got ${status} at ${p2.url()}`);
    assert.ok(p2.url().startsWith(gw.upstreamCallbackUrl), `no redirect (to the app or anywhere): ${p2.url()}`);
    assert.equal(provider.tokenRequests.length, tokenRequestsBefore, 'the gateway did not exchange the code for the foreign session');
    await p2.goto(appPage());
    assert.equal((await shownServers(p2)).find((s) => s.name === 'GitHub').connected, 'false', 'session B did not connect GitHub');
  } finally {
    await other.close();
  }
  await page.goto(appPage());
  assert.equal((await shownServers()).find((s) => s.name === 'GitHub').connected, 'false', 'the user is still not connected');
  // For the record: the same callback in the session that started the flow.
  const own = await page.goto(captured);
  t.diagnostic(`the captured callback in its own session afterwards: ${own?.status()} at ${new URL(page.url()).pathname}, GitHub connected: ${(await page.goto(appPage()), (await shownServers()).find((s) => s.name === 'GitHub').connected)}`);
});

for (const mode of ['invalid_grant', 'bad_verification_code']) {
  test(`the provider refuses the code (${mode === 'invalid_grant' ? 'HTTP 400 invalid_grant' : 'GitHub: HTTP 200 with bad_verification_code'}): nothing is connected`, { timeout: 60_000 }, async (t) => {
    await ensureSignedIn(t, browser, page);
    await disconnectGithub();
    await page.goto(appPage());
    const clientId = gw.route('/github').upstreamOAuth2.clientId;
    const before = provider.requestsOf(clientId).length;
    provider.refuseCodes(mode);
    let r;
    const startedAt = Date.now();
    try {
      r = await browser.drive(page, {
        start: () => page.click('li.server[data-name="GitHub"] a.connect'),
        username: USER.username, password: USER.password, until: onApp,
      });
    } finally {
      provider.refuseCodes(null);
    }
    r.startedAt = startedAt;
    const tried = provider.requestsOf(clientId).slice(before);
    assert.ok(tried.some((x) => x.grantType === 'authorization_code' && x.refused === mode), `the gateway tried the code and the provider refused it: ${JSON.stringify(tried)}`);
    const last = r.steps.at(-1);
    t.diagnostic(`after the refused code the browser is at ${new URL(last.url).pathname} (${last.status}): ${r.bodyText?.replace(/\s+/g, ' ').slice(0, 200) ?? '(the app page)'}`);
    if (!r.arrived) assert.ok(last.status >= 400, `an error page, not a success page: ${last.status}`);
    await page.goto(appPage());
    assert.equal((await shownServers()).find((s) => s.name === 'GitHub').connected, 'false', 'GitHub is not connected');
    assert.ok(!provider.issued.some((i) => i.issuedAt > r.startedAt), 'the provider issued no token');
  });
}

test('the app never receives the browser\'s Authorization, x-mcpgate-* headers or the session cookie; every request carries a verified assertion', { timeout: 60_000 }, async (t) => {
  await ensureSignedIn(t, browser, page);
  const forgedAssertion = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"mallory"}').toString('base64url')}.`;
  await browser.context.addCookies([{ name: 'app_pref', value: 'blue', url: gw.origin }]);
  await page.setExtraHTTPHeaders({
    authorization: 'Bearer browser-own-token-0123456789',
    'x-mcpgate-assertion': forgedAssertion,
    'x-mcpgate-user': 'mallory',
  });
  const before = app.requests.length;
  try {
    const response = await page.goto(appPage());
    assert.equal(response.status(), 200);
  } finally {
    await page.setExtraHTTPHeaders({});
  }
  const rec = app.requests.slice(before).find((r) => r.path === '/');
  assert.ok(rec, 'the page request reached the app');
  assert.ok(rec.bearer && rec.bearer !== 'browser-own-token-0123456789', 'the app got the TE, not the browser\'s Authorization');
  assert.equal(decodeJwt(rec.bearer).payload.client_id, 'mcpgate:client-route');
  assert.deepEqual(rec.mcpgateHeaders, ['x-mcpgate-assertion'], 'of x-mcpgate-* headers only the gateway\'s assertion arrives');
  assert.ok(rec.assertion.ok, `the assertion verifies (not the browser's forged one): ${rec.assertion.error}`);
  assert.ok(!(rec.cookie ?? '').includes('mcpgate_session'), `no session cookie reaches the app: ${(rec.cookie ?? '').replace(/=[^;]*/g, '=…')}`);

  const sessionValues = sessionCookies(await browser.context.cookies(gw.origin)).map((c) => c.value);
  assert.ok(sessionValues.length >= 1, 'the browser holds a session cookie');
  for (const r of app.requests) {
    const text = JSON.stringify(r.headers);
    for (const v of sessionValues) assert.ok(!text.includes(v), `the session cookie value reached the app (${r.method} ${r.path})`);
    assert.ok(!text.includes('browser-own-token'), 'the browser\'s Authorization never reached the app');
    assert.ok(r.assertion.ok, `every app request carries a verified assertion (${r.method} ${r.path}): ${r.assertion.error}`);
    assert.equal(r.assertion.claims.aud, gw.route('/app').url);
    assert.ok(r.bearer, `every app request carries a TE (${r.method} ${r.path})`);
    seen.set(`TE of the app (${r.method} ${r.path} ${r.at})`, r.bearer);
  }
});

test('no TE, TI, refresh token, session cookie or client secret of the run in any log', async (t) => {
  for (const c of sessionCookies(await browser.context.cookies(gw.origin))) seen.set(`session cookie ${c.name} (end)`, c.value);
  const { leaks, files, checked } = gw.findLeaks(seen, provider.secrets(), gw.secrets());
  assert.ok(files.includes('envoy.log') && files.includes('token-service.log'), `logs: ${files}`);
  assert.deepEqual(leaks, [], `no secret in any log (checked ${checked} in ${files.join(', ')})`);
  const codes = gw.findLeaks(provider.secrets({ codes: true }));
  t.diagnostic(`provider authorization codes in logs: ${codes.leaks.filter((l) => l.includes('code')).join(', ') || 'none'}`);
});
