// The unmodified MCP TypeScript SDK client, from a bare server URL to tool calls and a refresh:
// once with RFC 7591 dynamic registration, once with a Client ID Metadata Document.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { startGateway, USER } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider, recordingFetch } from '../lib/provider.mjs';
import { request, describe } from '../lib/net.mjs';
import { decodeJwt, mcpInitialize } from '../lib/oauth.mjs';

const LEEWAY_SECONDS = 1;
let gw;
let callback;
before(async () => {
  gw = await startGateway('02-sdk-flow', { accessTokenLifetime: '3s', leeway: `${LEEWAY_SECONDS}s` });
  callback = await CallbackServer.start();
}, { timeout: 900_000 });
after(async () => {
  await callback?.close();
  await gw?.stop();
});

const show = (log) => log.map((e) => `${e.method} ${e.path}${e.grantType ? ` (${e.grantType})` : ''} -> ${e.status}`).join('\n  ');

function newClient(provider, log) {
  const client = new Client({ name: 'mcpgate-e2e', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(gw.route('/a').url), {
    authProvider: provider,
    fetch: recordingFetch(log),
  });
  return { client, transport };
}

/**
 * Runs the whole flow with the SDK and checks every step. Returns what the test may check further.
 * `expectRegistration`: true for dynamic registration, false for a metadata-document client id.
 */
async function fullFlow(t, provider, { expectRegistration, expectedClientId }) {
  const log = [];
  const upstreamAtStart = await gw.upstreamRequests('/a');

  // 1. Connect with nothing: the SDK discovers, registers and sends the user to /authorize.
  const first = newClient(provider, log);
  await assert.rejects(first.client.connect(first.transport), (e) => e instanceof UnauthorizedError,
    'the first connect must stop at the authorization redirect (UnauthorizedError)');
  await first.client.close().catch(() => {});

  const challenge = log[0];
  assert.equal(challenge.path, '/a', `first request goes to the MCP route: ${show(log)}`);
  assert.equal(challenge.status, 401, `first request without a token gets 401: ${show(log)}`);
  assert.ok(challenge.wwwAuthenticate?.includes(`resource_metadata="${gw.route('/a').resourceMetadataUrl}"`),
    `401 names the route's resource metadata; WWW-Authenticate was ${challenge.wwwAuthenticate}`);
  assert.ok(log.some((e) => e.path === '/.well-known/oauth-protected-resource/a' && e.status === 200),
    `the SDK fetched the protected-resource metadata: ${show(log)}`);
  assert.ok(log.some((e) => ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'].includes(e.path) && e.status === 200),
    `the SDK fetched the authorization-server metadata: ${show(log)}`);
  const registrations = log.filter((e) => e.path === '/.mcpgate/oauth/register');
  if (expectRegistration) {
    assert.equal(registrations.length, 1, `one dynamic registration: ${show(log)}`);
    assert.ok([200, 201].includes(registrations[0].status), `registration succeeded: ${show(log)}`);
  } else {
    assert.equal(registrations.length, 0, `a metadata-document client must not register: ${show(log)}`);
  }
  const clientId = provider.clientInformation()?.client_id;
  assert.ok(clientId, 'the provider holds a client_id');
  if (expectedClientId) assert.equal(clientId, expectedClientId, 'client_id');

  assert.equal(provider.authorizations.length, 1, 'the SDK asked for exactly one authorization');
  const { url: authUrl, result } = provider.authorizations[0];
  assert.equal(authUrl.origin + authUrl.pathname, `${gw.issuer}/.mcpgate/oauth/authorize`, 'authorization endpoint');
  assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(authUrl.searchParams.get('resource'), gw.route('/a').url, 'resource parameter');
  assert.equal(authUrl.searchParams.get('client_id'), clientId);
  assert.ok(result.callback,
    `the browser must end on the client's callback; pages: ${JSON.stringify(result.steps)}; last page (${result.status}): ${result.bodyText?.slice(0, 500)}`);
  const kinds = result.steps.map((s) => s.kind);
  assert.ok(kinds.includes('sign_in'), `the user was asked to sign in: ${kinds}`);
  assert.ok(kinds.includes('consent'), `a ${expectRegistration ? 'dynamically registered' : 'metadata-document'} client gets the consent page: ${kinds}`);
  const params = result.callback.searchParams;
  assert.equal(params.get('state'), provider.states.at(-1), 'callback state equals the state the SDK sent');
  assert.equal(params.get('iss'), gw.issuer, 'callback iss equals the issuer (RFC 9207)');
  assert.equal(params.get('error'), null, `callback error: ${params.get('error')} ${params.get('error_description')}`);
  const code = params.get('code');
  assert.ok(code, 'callback carries a code');
  assert.ok(callback.hits.some((h) => h.searchParams.get('code') === code), 'the callback server received the code');

  // 2. The SDK exchanges the code.
  await first.transport.finishAuth(code);
  const exchange = log.filter((e) => e.path === '/.mcpgate/oauth/token');
  assert.equal(exchange.length, 1, `one token request: ${show(log)}`);
  assert.equal(exchange[0].grantType, 'authorization_code');
  assert.equal(exchange[0].status, 200, `code exchange: ${show(log)}`);
  const tokens = provider.tokens();
  assert.ok(tokens?.access_token && tokens.refresh_token, 'access and refresh tokens were saved');
  assert.match(tokens.token_type ?? '', /^bearer$/i, 'token_type');
  const { header, payload } = decodeJwt(tokens.access_token);
  assert.equal(header.alg, 'EdDSA');
  assert.equal(header.typ, 'at+jwt');
  const jwks = await gw.jwks();
  assert.ok(jwks.keys.some((k) => k.kid === header.kid), `kid ${header.kid} is in the JWKS`);
  assert.equal(payload.iss, gw.issuer, 'iss');
  assert.equal(payload.aud, gw.route('/a').url, 'aud is the route resource');
  assert.equal(payload.client_id, clientId, 'client_id claim');
  assert.equal(payload.email, USER.email, 'email claim');
  assert.deepEqual(payload.groups, USER.groups, 'groups claim');
  assert.equal(await gw.upstreamRequests('/a'), upstreamAtStart, 'nothing reached the MCP server before the token');

  // 3. A new SDK client with the provider: initialize, tools/list, tools/call.
  const { client, transport } = newClient(provider, log);
  await client.connect(transport);
  assert.ok(client.getServerVersion()?.name, 'initialize returned server info');
  const { tools } = await client.listTools();
  assert.ok(tools.some((t) => t.name === 'echo'), `tools/list contains echo: ${tools.map((t) => t.name)}`);
  const message = `hello through mcpgate ${Date.now()}`;
  const echoed = await client.callTool({ name: 'echo', arguments: { message } });
  assert.equal(echoed.isError ?? false, false, 'echo call is not an error');
  assert.equal(echoed.content?.[0]?.text, `Echo: ${message}`, 'echo returns the text');
  const upstreamAfterCalls = await gw.upstreamRequests('/a');
  assert.ok(upstreamAfterCalls >= upstreamAtStart + 3, 'initialize, tools/list and tools/call reached the MCP server');

  // 4. Past the access token's lifetime the SDK refreshes by itself.
  const firstTokens = provider.tokens();
  const waitMs = (payload.exp + LEEWAY_SECONDS + 1) * 1000 - Date.now();
  assert.ok(waitMs < 15_000, `the token lifetime is short (exp in ${waitMs} ms)`);
  await sleep(Math.max(0, waitMs));
  const stale = await mcpInitialize(gw.route('/a').url, firstTokens.access_token);
  assert.equal(stale.status, 401, `the expired access token is refused by the filter: ${describe(stale)}`);
  assert.ok(stale.headers.get('www-authenticate')?.includes('error="invalid_token"'), 'expired token: error="invalid_token"');

  const tokenCallsBefore = log.filter((e) => e.path === '/.mcpgate/oauth/token').length;
  const message2 = `after refresh ${Date.now()}`;
  const echoed2 = await client.callTool({ name: 'echo', arguments: { message: message2 } });
  assert.equal(echoed2.content?.[0]?.text, `Echo: ${message2}`, 'echo after the refresh returns the text');
  const refreshes = log.filter((e) => e.path === '/.mcpgate/oauth/token').slice(tokenCallsBefore);
  assert.equal(refreshes.length, 1, `one token request after expiry: ${show(log)}`);
  assert.equal(refreshes[0].grantType, 'refresh_token', 'the SDK used the refresh grant');
  assert.equal(refreshes[0].status, 200, `refresh grant: ${show(log)}`);
  assert.equal(provider.savedTokens.length, 2, 'the provider saved a second token set');
  const refreshed = provider.tokens();
  assert.notEqual(refreshed.access_token, firstTokens.access_token, 'a new access token');
  assert.ok(refreshed.refresh_token && refreshed.refresh_token !== firstTokens.refresh_token, 'the refresh token rotated');
  assert.ok(decodeJwt(refreshed.access_token).payload.exp > payload.exp, 'the new access token expires later');
  assert.ok(log.some((e) => e.path === '/a' && e.status === 401 && e.sentBearer === firstTokens.access_token),
    `the SDK was refused with the old token, then refreshed: ${show(log)}`);

  await client.close();
  t.diagnostic(`browser pages: ${kinds.join(' -> ')}`);
  t.diagnostic(`SDK HTTP calls:\n  ${show(log)}`);
  return { clientId, log };
}

test('full flow with the unmodified SDK client and dynamic registration, including a refresh', { timeout: 120_000 }, async (t) => {
  const browser = await Browser.launch(gw.dir);
  try {
    const provider = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER });
    await fullFlow(t, provider, { expectRegistration: true });
  } finally {
    await browser.close();
  }
});

test('full flow with a Client ID Metadata Document client (https, test CA), including a refresh', { timeout: 120_000 }, async (t) => {
  const meta = await request(`${gw.origin}/.well-known/oauth-authorization-server`);
  assert.equal(meta.json?.client_id_metadata_document_supported, true,
    'the AS metadata must advertise client_id_metadata_document_supported, or the SDK falls back to registration');

  // The client's metadata document, on https://localhost:<port>/… with a certificate from the test CA.
  const hits = [];
  let documentUrl;
  const server = https.createServer({ cert: fs.readFileSync(gw.tls.cert), key: fs.readFileSync(gw.tls.key) }, (req, res) => {
    hits.push({ method: req.method, path: req.url, userAgent: req.headers['user-agent'] });
    if (req.url !== '/clients/mcpgate-e2e.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
    res.end(JSON.stringify({
      client_id: documentUrl,
      client_name: 'mcpgate e2e metadata-document client',
      redirect_uris: [callback.url],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  documentUrl = `https://localhost:${server.address().port}/clients/mcpgate-e2e.json`;
  const browser = await Browser.launch(gw.dir);
  try {
    const provider = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER, clientMetadataUrl: documentUrl });
    await fullFlow(t, provider, { expectRegistration: false, expectedClientId: documentUrl });
    assert.ok(hits.some((h) => h.method === 'GET' && h.path === '/clients/mcpgate-e2e.json'),
      `the token service fetched the metadata document over https: ${JSON.stringify(hits)}`);
  } finally {
    await browser.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
