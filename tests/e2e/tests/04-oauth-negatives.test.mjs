// OAuth misuse at the token service, through Envoy: refresh-token reuse, code reuse, PKCE and
// exact redirect URI matching. Codes come from a real browser sign-in (the headless driver).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, USER } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { request, describe } from '../lib/net.mjs';
import { pkce, randomState, registerClient, authorizeUrl, tokenRequest } from '../lib/oauth.mjs';

let gw;
let callback;
let browser;
let client;
before(async () => {
  gw = await startGateway('04-oauth-negatives', { accessTokenLifetime: '60s' });
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
  client = await registerClient(gw, { redirectUris: [callback.url] });
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await callback?.close();
  await gw?.stop();
});

const resource = () => gw.route('/a').url;

/** A fresh authorization code for the registered client, through the browser. */
async function authorizationCode({ challengeMethod = 'S256' } = {}) {
  const { verifier, challenge } = pkce();
  const state = randomState();
  const url = authorizeUrl(gw, { clientId: client.client_id, redirectUri: callback.url, challenge, state, resource: resource(), method: challengeMethod });
  const result = await browser.authorize(url, { ...USER, callbackUrl: callback.url });
  assert.ok(result.callback, `authorization must end on the callback; pages ${JSON.stringify(result.steps)}; last page: ${result.bodyText?.slice(0, 400)}`);
  assert.equal(result.callback.searchParams.get('state'), state, 'state');
  assert.equal(result.callback.searchParams.get('iss'), gw.issuer, 'iss');
  return { code: result.callback.searchParams.get('code'), verifier, challenge, result };
}

function exchange(code, verifier, extra = {}) {
  return tokenRequest(gw, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: callback.url,
    client_id: client.client_id,
    code_verifier: verifier,
    resource: resource(),
    ...extra,
  });
}

function refresh(refreshToken) {
  return tokenRequest(gw, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id, resource: resource() });
}

function expectOAuthError(res, error, what) {
  assert.equal(res.status, 400, `${what}: expected 400 ${error}, got ${describe(res)}`);
  assert.equal(res.json?.error, error, `${what}: error code, got ${res.text}`);
  assert.ok(!res.json?.access_token, `${what}: no access token`);
}

test('a reused refresh token fails with invalid_grant, and then the newer refresh token of its family fails too', async () => {
  const { code, verifier } = await authorizationCode();
  const issued = await exchange(code, verifier);
  assert.equal(issued.status, 200, `code exchange: ${describe(issued)}`);
  const rt0 = issued.json.refresh_token;
  assert.ok(rt0, 'a refresh token was issued');

  const rotated = await refresh(rt0);
  assert.equal(rotated.status, 200, `first use of the refresh token: ${describe(rotated)}`);
  const rt1 = rotated.json.refresh_token;
  assert.ok(rt1 && rt1 !== rt0, 'the refresh token rotated');
  assert.ok(rotated.json.access_token, 'the refresh returned an access token');

  expectOAuthError(await refresh(rt0), 'invalid_grant', 'second use of the first refresh token');
  expectOAuthError(await refresh(rt1), 'invalid_grant', 'the newer refresh token after reuse of its predecessor (family revoked)');
});

test('an authorization code used twice fails the second time', async () => {
  const { code, verifier } = await authorizationCode();
  const first = await exchange(code, verifier);
  assert.equal(first.status, 200, `first exchange: ${describe(first)}`);
  assert.ok(first.json.access_token, 'first exchange returned an access token');
  expectOAuthError(await exchange(code, verifier), 'invalid_grant', 'second exchange of the same code');
});

test('a wrong PKCE verifier fails', async () => {
  const { code, challenge } = await authorizationCode();
  expectOAuthError(await exchange(code, pkce().verifier), 'invalid_grant', 'verifier of another PKCE pair');
  const again = await authorizationCode();
  expectOAuthError(await exchange(again.code, challenge), 'invalid_grant', 'the S256 challenge itself sent as the verifier');
  const third = await authorizationCode();
  const missing = await exchange(third.code, undefined, { code_verifier: '' });
  assert.equal(missing.status, 400, `empty code_verifier must fail: ${describe(missing)}`);
  assert.ok(['invalid_grant', 'invalid_request'].includes(missing.json?.error), `empty code_verifier error: ${missing.text}`);
});

test('an authorization code only works with the redirect_uri it was issued for', async () => {
  const { code, verifier } = await authorizationCode();
  expectOAuthError(await exchange(code, verifier, { redirect_uri: `${callback.url}x` }), 'invalid_grant',
    'code exchange with another redirect_uri');
});

test('PKCE plain is refused at /authorize: no code is issued', async () => {
  const { verifier } = pkce();
  const state = randomState();
  const url = authorizeUrl(gw, { clientId: client.client_id, redirectUri: callback.url, challenge: verifier, state, resource: resource(), method: 'plain' });
  const result = await browser.authorize(url, { ...USER, callbackUrl: callback.url });
  const code = result.callback?.searchParams.get('code');
  assert.equal(code ?? null, null, `code_challenge_method=plain must not yield a code; pages ${JSON.stringify(result.steps)}`);
  if (result.callback) {
    assert.equal(result.callback.searchParams.get('error'), 'invalid_request', 'error redirect for plain PKCE');
  }
});

test('a redirect URI that differs by one character gets an error page at /authorize, not a redirect', async () => {
  // Sign in first (a code for the registered URI), so the error is about the URI, not the session.
  // A different port alone is not a variant here: RFC 8252 §7.3 (and OAuth 2.1) let loopback IP
  // redirect URIs use any port.
  await authorizationCode();
  const cookie = await browser.cookieHeader(gw.origin);
  assert.ok(cookie, 'the browser holds a session cookie for the gateway');
  const registered = new URL(callback.url);
  const variants = [
    `${callback.url}/`,
    callback.url.replace(/callback$/, 'callbacK'),
    callback.url.replace(/callback$/, 'callbac'),
    callback.url.replace('http://', 'https://'),
    callback.url.replace('127.0.0.1', '127.0.0.2'),
  ];
  for (const redirectUri of variants) {
    const { challenge } = pkce();
    const url = authorizeUrl(gw, { clientId: client.client_id, redirectUri, challenge, state: randomState(), resource: resource() });

    const withSession = await request(url, { headers: { cookie, accept: 'text/html' } });
    assert.ok(withSession.status >= 400 && withSession.status < 500,
      `redirect_uri ${redirectUri} (signed in): expected a 4xx error page, got ${describe(withSession)}`);
    assert.equal(withSession.headers.get('location'), null, `redirect_uri ${redirectUri}: no Location header`);

    const anonymous = await request(url, { headers: { accept: 'text/html' } });
    const location = anonymous.headers.get('location');
    assert.ok(!location || !new URL(location, gw.origin).href.startsWith(redirectUri),
      `redirect_uri ${redirectUri} (no session): must never redirect to it, got ${describe(anonymous)}`);

    const hitsBefore = callback.hits.length;
    const inBrowser = await browser.authorize(url, { ...USER, callbackUrl: `http://127.0.0.1:${registered.port}` });
    assert.equal(inBrowser.callback, null, `redirect_uri ${redirectUri}: the browser must stay on an error page, went to ${inBrowser.callback}`);
    assert.ok(new URL(inBrowser.steps.at(-1).url).origin === gw.origin,
      `redirect_uri ${redirectUri}: the error page is the gateway's, pages ${JSON.stringify(inBrowser.steps)}`);
    assert.equal(callback.hits.length, hitsBefore, `redirect_uri ${redirectUri}: the client's callback received nothing`);
  }
});
