// Sign-in through an OpenID Connect provider (identity.oidc): the real `oidc-provider` library as the
// IdP, Chromium clicking "Sign in with …" on the gateway's sign-in page and filling the provider's
// login form, the unmodified MCP TypeScript SDK as the client, and a real Envoy with the filter.
// Shows: sign-in and tool calls; policy deciding by the provider's groups (claim path org.groups);
// a clear page when the provider is down; a user disabled at the provider losing their refresh grant
// within recheck_interval; ID tokens with a wrong aud, iss, nonce or alg, or signed by an unknown
// key, refused with a clear page and no session; provider key rotation; sign-out (a confirm page,
// cross-origin posts refused, RP-initiated logout at the provider, the session and its refresh
// grant gone); a second provider with `userinfo: true` whose ID tokens carry no groups (policy
// sees the groups from userinfo) and a userinfo answer about another subject refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { startGateway } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider } from '../lib/provider.mjs';
import { startOidcProvider } from '../lib/oidc-provider.mjs';
import { registerClient, authorizeUrl, pkce, randomState, tokenRequest, decodeJwt } from '../lib/oauth.mjs';

const RECHECK_SECONDS = 2;
const CLIENT_ID = 'mcpgate-e2e';
const CLIENT_SECRET = 'oidc-client-secret-0123456789abcdef';
const USERS = {
  ann: { password: 'ann password 1', email: 'ann@example.com', name: 'Ann Allowed', groups: ['mcp-users'] },
  bob: { password: 'bob password 2', email: 'bob@example.com', name: 'Bob Other', groups: ['sales'] },
  cat: { password: 'cat password 3', email: 'cat@example.com', name: 'Cat Rotated', groups: ['mcp-users'] },
};

let op;
let opU; // the provider whose groups are only at userinfo
let gw;
let callback;
let screenshots;
before(async () => {
  op = await startOidcProvider({ users: USERS, refreshTokenRotation: true });
  opU = await startOidcProvider({ users: USERS, userinfoOnlyClaims: ['org'] });
  callback = await CallbackServer.start();
  gw = await startGateway('17-oidc', {
    accessTokenLifetime: '30s',
    routes: [{ path: '/a', policy: { allow: { and: [{ groups: { has: 'mcp-users' } }] } } }],
    identity: (g) => {
      // The provider's client for this gateway: its callback needs the gateway's issuer.
      op.clients.push({
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${g.issuer}/.mcpgate/oidc/corp/callback`],
        post_logout_redirect_uris: [`${g.issuer}/.mcpgate/signed_out`],
        grant_types: ['authorization_code', 'refresh_token'],
      });
      opU.clients.push({
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${g.issuer}/.mcpgate/oidc/uinfo/callback`],
        grant_types: ['authorization_code'],
      });
      return {
        oidc: [{
          id: 'corp',
          display_name: 'Example Corp',
          issuer: op.issuer,
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
          claims: { groups: 'org.groups' },
          allowed_email_domains: ['example.com'],
          recheck_interval: `${RECHECK_SECONDS}s`,
        }, {
          id: 'uinfo',
          display_name: 'Userinfo Corp',
          issuer: opU.issuer,
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          scopes: ['openid', 'email', 'profile', 'groups'],
          claims: { groups: 'org.groups' },
          userinfo: true,
        }],
      };
    },
  });
  await op.restart(); // picks up the clients added above
  await opU.restart();
  screenshots = path.join(gw.dir, 'screenshots');
}, { timeout: 900_000 });
after(async () => {
  await callback?.close();
  await gw?.stop();
  await op?.stop();
  await opU?.stop();
});

/**
 * Drives a page from `url` through the gateway's sign-in page (clicking the provider's button), the
 * provider's login form and the gateway's consent page, until the client's callback or another page.
 */
async function viaProvider(page, url, { login, shot, provider = 'corp' }) {
  const steps = [];
  let response = await page.goto(String(url), { waitUntil: 'load' });
  for (let i = 0; i < 10; i++) {
    const current = page.url();
    if (current.startsWith(callback.url)) {
      steps.push('callback');
      return { arrived: new URL(current), steps };
    }
    const nav = (action) => Promise.all([
      page.waitForNavigation({ waitUntil: 'load', timeout: 15_000 }).catch((e) => (/net::ERR_/.test(e.message) ? null : Promise.reject(e))),
      action(),
    ]).then(([r]) => r);
    if (await page.$('input[name="login"]')) {
      steps.push('provider_login');
      const user = USERS[login];
      await page.fill('input[name="login"]', login);
      await page.fill('input[name="password"]', user.password);
      response = await nav(() => page.press('input[name="password"]', 'Enter'));
    } else if (await page.$(`button[data-provider="${provider}"]`)) {
      steps.push('gateway_sign_in');
      if (shot) await page.screenshot({ path: path.join(screenshots, shot), fullPage: true });
      response = await nav(() => page.click(`button[data-provider="${provider}"]`));
    } else if (await page.$('button[value="approve"]')) {
      steps.push('consent');
      response = await nav(() => page.click('button[value="approve"]'));
    } else {
      steps.push('other');
      return { arrived: null, steps, status: response?.status() ?? null, text: await page.innerText('body').catch(() => '') };
    }
  }
  return { arrived: null, steps, status: response?.status() ?? null, text: await page.innerText('body').catch(() => '') };
}

/** The SDK's OAuthClientProvider whose "user" signs in through the provider. */
class ProviderSignIn extends E2EOAuthProvider {
  constructor(browser, login, shot, via = 'corp') {
    super({ browser, redirectUrl: callback.url, user: { username: login, password: '' } });
    this.login = login;
    this.shot = shot;
    this.via = via;
  }

  async redirectToAuthorization(url) {
    const page = await this.browser.context.newPage();
    try {
      const result = await viaProvider(page, url, { login: this.login, shot: this.shot, provider: this.via });
      this.authorizations.push({ url: new URL(url), result });
    } finally {
      await page.close().catch(() => {});
    }
  }
}

/** SDK sign-in through the provider; returns a connected client and the provider. */
async function sdkSignIn(browser, login, shot, via = 'corp') {
  const provider = new ProviderSignIn(browser, login, shot, via);
  const first = new Client({ name: 'mcpgate-e2e-oidc', version: '1.0.0' });
  const t1 = new StreamableHTTPClientTransport(new URL(gw.route('/a').url), { authProvider: provider });
  await assert.rejects(first.connect(t1), (e) => e instanceof UnauthorizedError);
  await first.close().catch(() => {});
  const { result } = provider.authorizations.at(-1);
  assert.ok(result.arrived, `the browser reached the client's callback; steps ${result.steps}; last page ${result.status}: ${result.text?.slice(0, 400)}`);
  assert.deepEqual(result.steps.filter((s) => s !== 'consent'), ['gateway_sign_in', 'provider_login', 'callback'], `pages: ${result.steps}`);
  await t1.finishAuth(result.arrived.searchParams.get('code'));
  const client = new Client({ name: 'mcpgate-e2e-oidc', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.route('/a').url), { authProvider: provider });
  return { client, transport, provider };
}

/**
 * A raw authorization through the provider in `browser`; returns where it ended, and the client
 * and PKCE verifier to redeem the code with.
 */
async function rawSignIn(browser, login, shot, provider = 'corp') {
  const reg = await registerClient(gw, { redirectUris: [callback.url] });
  const { challenge, verifier } = pkce();
  const url = authorizeUrl(gw, { clientId: reg.client_id, redirectUri: callback.url, challenge, state: randomState(), resource: gw.route('/a').url });
  const page = await browser.context.newPage();
  try {
    const r = await viaProvider(page, url, { login, shot, provider });
    if (!r.arrived && shot) await page.screenshot({ path: path.join(screenshots, `error-${shot}`), fullPage: true });
    return { ...r, clientId: reg.client_id, verifier, url };
  } finally {
    await page.close().catch(() => {});
  }
}

const hasSession = async (browser) => /mcpgate_session=/.test(await browser.cookieHeader(gw.origin));

test('the provider down: a clear page naming it, 502, and a way back', { timeout: 30_000 }, async () => {
  await op.down();
  const browser = await Browser.launch(gw.dir);
  try {
    const r = await rawSignIn(browser, 'ann', 'provider-down.png');
    assert.equal(r.arrived, null, 'no code while the provider is down');
    assert.equal(r.status, 502, `status of the error page: ${r.text}`);
    assert.match(r.text, /Signing in with Example Corp did not work/);
    assert.match(r.text, /could not reach Example Corp/);
    assert.match(r.text, /Try again/);
    assert.ok(!(await hasSession(browser)), 'no session');
  } finally {
    await browser.close();
    await op.up();
  }
});

test('the SDK signs in through the provider, calls tools; policy follows the provider groups', { timeout: 60_000 }, async () => {
  const annBrowser = await Browser.launch(gw.dir);
  const bobBrowser = await Browser.launch(gw.dir);
  try {
    const ann = await sdkSignIn(annBrowser, 'ann', 'sign-in-choices.png');
    const { payload } = decodeJwt(ann.provider.tokens().access_token);
    assert.equal(payload.sub, 'corp:ann', 'the subject is qualified by the provider');
    assert.equal(payload.email, USERS.ann.email);
    assert.deepEqual(payload.groups, ['mcp-users'], 'groups from the provider claim org.groups');
    await ann.client.connect(ann.transport);
    const echoed = await ann.client.callTool({ name: 'echo', arguments: { message: 'hi via corp' } });
    assert.equal(echoed.content?.[0]?.text, 'Echo: hi via corp');
    await ann.client.close();

    const bob = await sdkSignIn(bobBrowser, 'bob');
    assert.deepEqual(decodeJwt(bob.provider.tokens().access_token).payload.groups, ['sales']);
    const denied = await bob.client.connect(bob.transport).then(
      () => bob.client.callTool({ name: 'echo', arguments: { message: 'x' } }).then((r) => r, (e) => e),
      (e) => e,
    );
    assert.ok(denied instanceof Error || denied?.isError, `bob (not in mcp-users) is denied: ${JSON.stringify(denied?.message ?? denied)}`);
    await bob.client.close().catch(() => {});

    // Ann's refresh grant works (the provider confirms her after recheck_interval, rotating its
    // refresh token)...
    await sleep((RECHECK_SECONDS + 1) * 1000);
    const clientId = ann.provider.clientInformation().client_id;
    let refreshToken = ann.provider.tokens().refresh_token;
    const ok = await tokenRequest(gw, { grant_type: 'refresh_token', client_id: clientId, refresh_token: refreshToken });
    assert.equal(ok.status, 200, `refresh while the user is active: ${ok.text}`);
    refreshToken = ok.json.refresh_token;
    // ...until she is disabled at the provider: within recheck_interval her refresh grant fails.
    op.disableUser('ann');
    await sleep((RECHECK_SECONDS + 1) * 1000);
    const refused = await tokenRequest(gw, { grant_type: 'refresh_token', client_id: clientId, refresh_token: refreshToken });
    assert.equal(refused.status, 400, `refresh after the user was disabled: ${refused.text}`);
    assert.equal(refused.json?.error, 'invalid_grant');
    op.enableUser('ann');
  } finally {
    await annBrowser.close();
    await bobBrowser.close();
  }
});

test('provider key rotation keeps sign-in working; sign-out asks, refuses other origins and logs out at the provider', { timeout: 40_000 }, async () => {
  await op.rotateKeys();
  const browser = await Browser.launch(gw.dir);
  const page = await browser.context.newPage();
  try {
    const r = await rawSignIn(browser, 'cat');
    assert.ok(r.arrived?.searchParams.get('code'), `signed in after the rotation: ${r.steps} ${r.status} ${r.text?.slice(0, 300)}`);
    const issued = await tokenRequest(gw, {
      grant_type: 'authorization_code', code: r.arrived.searchParams.get('code'), redirect_uri: callback.url,
      client_id: r.clientId, code_verifier: r.verifier, resource: gw.route('/a').url,
    });
    assert.equal(issued.status, 200, `code exchange: ${issued.text}`);
    let refreshToken = issued.json.refresh_token;
    assert.ok(refreshToken && (await hasSession(browser)));
    const signOutUrl = `${gw.issuer}/.mcpgate/sign_out`;

    // A form on another origin posting to sign_out (the browser sends the session cookie: both
    // are on 127.0.0.1, same site) is refused, and the user stays signed in.
    await page.goto(callback.url, { waitUntil: 'load' });
    const crossStatus = await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.evaluate((action) => {
        const f = document.createElement('form');
        f.method = 'post';
        f.action = action;
        document.body.append(f);
        f.submit();
      }, signOutUrl),
    ]).then(([resp]) => resp?.status());
    assert.equal(crossStatus, 403, `a cross-origin sign-out post: ${await page.innerText('body')}`);
    assert.match(await page.innerText('body'), /still signed in/);
    // A link from another site (a top-level GET, which carries the Lax cookie) only asks.
    await page.goto(callback.url, { waitUntil: 'load' });
    await Promise.all([
      page.waitForNavigation({ waitUntil: 'load' }),
      page.evaluate((href) => { window.location.href = href; }, signOutUrl),
    ]);
    assert.equal(new URL(page.url()).pathname, '/.mcpgate/sign_out');
    assert.match(await page.innerText('body'), /Sign out of the gateway\?[\s\S]*signed in as corp:cat/);
    await page.screenshot({ path: path.join(screenshots, 'sign-out-confirm.png'), fullPage: true });
    assert.ok(await hasSession(browser), 'a GET signs nobody out');
    const stillOk = await tokenRequest(gw, { grant_type: 'refresh_token', client_id: r.clientId, refresh_token: refreshToken });
    assert.equal(stillOk.status, 200, `refresh after the refused sign-outs: ${stillOk.text}`);
    refreshToken = stillOk.json.refresh_token;

    // The confirm page's button: the gateway ends the session and sends the browser to the
    // provider's end_session endpoint, which sends it back to /.mcpgate/signed_out.
    const endSession = [];
    page.on('request', (req) => {
      if (req.url().startsWith(`${op.issuer}/session/end`)) endSession.push(new URL(req.url()));
    });
    const eventsBefore = op.events.length;
    await Promise.all([
      page.waitForURL(`${gw.issuer}/.mcpgate/signed_out`, { waitUntil: 'load', timeout: 15_000 }),
      page.click('#sign-out'),
    ]);
    const first = endSession[0];
    assert.ok(first, 'the browser went to the provider\'s end_session endpoint');
    assert.equal(first.searchParams.get('post_logout_redirect_uri'), `${gw.issuer}/.mcpgate/signed_out`);
    assert.equal(first.searchParams.get('client_id'), CLIENT_ID);
    const hint = decodeJwt(first.searchParams.get('id_token_hint') ?? '');
    assert.equal(hint.payload.sub, 'cat', 'id_token_hint is the ID token of the signed-in user');
    assert.equal(hint.payload.iss, op.issuer);
    const logout = op.events.slice(eventsBefore).filter((e) => e.type.startsWith('end_session'));
    assert.deepEqual(logout.map((e) => e.type), ['end_session.success'], `provider logout events: ${JSON.stringify(logout)}`);
    assert.equal(logout[0].clientId, CLIENT_ID);
    assert.match(await page.innerText('body'), /You are signed out/);
    await page.screenshot({ path: path.join(screenshots, 'signed-out.png'), fullPage: true });

    // The session is gone: no cookie, its refresh grant fails, an authorization needs sign-in.
    assert.ok(!(await hasSession(browser)), 'no session cookie');
    const refused = await tokenRequest(gw, { grant_type: 'refresh_token', client_id: r.clientId, refresh_token: refreshToken });
    assert.equal(refused.status, 400, `refresh after sign-out: ${refused.text}`);
    assert.equal(refused.json?.error, 'invalid_grant');
    await page.goto(r.url.toString(), { waitUntil: 'load' });
    assert.ok(await page.$('button[data-provider="corp"]'), `sign-in page again: ${page.url()}`);
  } finally {
    await page.close().catch(() => {});
    await browser.close();
  }
});

test('userinfo: groups only at userinfo reach policy; a userinfo answer about another sub is refused', { timeout: 40_000 }, async () => {
  const browser = await Browser.launch(gw.dir);
  try {
    const ann = await sdkSignIn(browser, 'ann', undefined, 'uinfo');
    assert.ok(opU.lastIdTokenClaims && !opU.lastIdTokenClaims.includes('org'), `the ID token has no groups: ${opU.lastIdTokenClaims}`);
    const { payload } = decodeJwt(ann.provider.tokens().access_token);
    assert.equal(payload.sub, 'uinfo:ann');
    assert.deepEqual(payload.groups, ['mcp-users'], 'groups from userinfo');
    await ann.client.connect(ann.transport);
    const echoed = await ann.client.callTool({ name: 'echo', arguments: { message: 'hi via userinfo' } });
    assert.equal(echoed.content?.[0]?.text, 'Echo: hi via userinfo', 'policy (groups has mcp-users) allows');
    await ann.client.close();

    // The same browser without its cookies (the gateway's and the provider's sessions): a fresh
    // sign-in, cheaper than another Chromium.
    await browser.context.clearCookies();
    opU.misbehave('userinfo-sub');
    const r = await rawSignIn(browser, 'cat', 'userinfo-sub.png', 'uinfo');
    assert.equal(r.arrived, null, 'no code');
    assert.equal(r.status, 502, `status; page: ${r.text}`);
    assert.match(r.text, /Signing in with Userinfo Corp did not work/);
    assert.match(r.text, /Userinfo Corp sent a sign-in the gateway cannot trust: the provider's userinfo answer is about another user/);
    assert.ok(!(await hasSession(browser)), 'no session');
  } finally {
    opU.misbehave(null);
    await browser.close();
  }
});

test('ID tokens with a wrong aud, iss, nonce or alg, or an unknown key, are refused', { timeout: 60_000 }, async (t) => {
  const browser = await Browser.launch(gw.dir);
  const expected = {
    'wrong-aud': /not issued to this gateway/,
    'wrong-iss': /another issuer/,
    'wrong-nonce': /nonce/,
    'alg-hs256': /algorithm/,
    'alg-none': /algorithm|not signed|well-formed/,
    'unknown-key': /key the provider does not publish/,
    expired: /expired/,
  };
  try {
    for (const [mode, why] of Object.entries(expected)) {
      op.misbehave(mode);
      const r = await rawSignIn(browser, 'cat', mode === 'wrong-aud' ? 'invalid-id-token.png' : undefined);
      assert.equal(r.arrived, null, `${mode}: no code`);
      assert.equal(r.status, 502, `${mode}: status; page: ${r.text}`);
      assert.match(r.text, /sent a sign-in the gateway cannot trust/, `${mode}: page says what failed`);
      assert.match(r.text, why, `${mode}: page says why`);
      assert.ok(!(await hasSession(browser)), `${mode}: no session`);
      t.diagnostic(`${mode}: ${r.text.split('\n').find((l) => /cannot trust/.test(l))}`);
    }
  } finally {
    op.misbehave(null);
    await browser.close();
  }
});
