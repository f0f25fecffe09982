// A token service restarted mid-test keeps its clients, sessions, refresh tokens and signing key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, USER } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { describe } from '../lib/net.mjs';
import { pkce, randomState, registerClient, authorizeUrl, tokenRequest, mcpInitialize, decodeJwt } from '../lib/oauth.mjs';

let gw;
let callback;
let browser;
before(async () => {
  gw = await startGateway('05-restart', { accessTokenLifetime: '60s' });
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await callback?.close();
  await gw?.stop();
});

test('after a token service restart: the client refreshes, the session skips sign-in, the key is the same', { timeout: 120_000 }, async () => {
  const client = await registerClient(gw, { redirectUris: [callback.url] });
  const resource = gw.route('/a').url;
  const authorize = async () => {
    const { verifier, challenge } = pkce();
    const state = randomState();
    const url = authorizeUrl(gw, { clientId: client.client_id, redirectUri: callback.url, challenge, state, resource });
    const result = await browser.authorize(url, { ...USER, callbackUrl: callback.url });
    assert.ok(result.callback, `authorization must end on the callback; pages ${JSON.stringify(result.steps)}; last page: ${result.bodyText?.slice(0, 400)}`);
    assert.equal(result.callback.searchParams.get('state'), state, 'state');
    assert.equal(result.callback.searchParams.get('iss'), gw.issuer, 'iss');
    const exchanged = await tokenRequest(gw, {
      grant_type: 'authorization_code',
      code: result.callback.searchParams.get('code'),
      redirect_uri: callback.url,
      client_id: client.client_id,
      code_verifier: verifier,
      resource,
    });
    assert.equal(exchanged.status, 200, `code exchange: ${describe(exchanged)}`);
    return { steps: result.steps.map((s) => s.kind), tokens: exchanged.json };
  };

  const first = await authorize();
  assert.ok(first.steps.includes('sign_in'), `the first authorization asks the user to sign in: ${first.steps}`);
  const accepted = await mcpInitialize(resource, first.tokens.access_token);
  assert.equal(accepted.status, 200, `the first access token works through Envoy: ${describe(accepted)}`);
  const kidBefore = decodeJwt(first.tokens.access_token).header.kid;
  assert.ok(await browser.cookieHeader(gw.origin), 'the browser holds a session cookie');

  const pidBefore = gw.procs.tokenService.pid;
  await gw.restartTokenService();
  assert.notEqual(gw.procs.tokenService.pid, pidBefore, 'the token service is a new process');

  const jwks = await gw.jwks();
  assert.ok(jwks.keys.some((k) => k.kid === kidBefore), `the signing key survived the restart (kid ${kidBefore})`);

  const refreshed = await tokenRequest(gw, {
    grant_type: 'refresh_token',
    refresh_token: first.tokens.refresh_token,
    client_id: client.client_id,
    resource,
  });
  assert.equal(refreshed.status, 200, `the registered client refreshes with a refresh token from before the restart: ${describe(refreshed)}`);
  assert.ok(refreshed.json.access_token && refreshed.json.refresh_token, 'the refresh returned new tokens');
  const afterRefresh = await mcpInitialize(resource, refreshed.json.access_token);
  assert.equal(afterRefresh.status, 200, `the refreshed access token works through Envoy: ${describe(afterRefresh)}`);

  const second = await authorize();
  assert.ok(!second.steps.includes('sign_in'),
    `with the session cookie from before the restart, /authorize must not show the sign-in form: ${second.steps}`);
  assert.ok(second.tokens.access_token, 'the code from the resumed session is exchanged');
  assert.equal(decodeJwt(second.tokens.access_token).payload.client_id, client.client_id, 'client_id survives');
});
