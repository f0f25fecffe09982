// The end-to-end suite a delivery shape of the filter must pass (tests 13 and 14 run it for the
// Istio and the Envoy Gateway shapes), once per Envoy release setup.sh installs (1.36 and 1.40), in
// the header mode the rendering defaults to (hold_body) and in any other a test file asks for:
// one gateway and one browser per shape, mode and release, and through them
//   - what Envoy runs is what was rendered (the filter configuration, the header-hold flag only
//     when holding headers, the module of the OCI image);
//   - the unmodified SDK client's OAuth flow (401, discovery, registration, sign-in in headless
//     Chromium), then tools/call and a filtered tools/list on server-everything;
//   - tools/list, prompts/list filtered in JSON, SSE and slow SSE answers (test 07's approach);
//   - an upstream-OAuth route: the provider's consent, then the MCP server receives the user's
//     provider token (TI), never the gateway's (test 09's approach);
//   - a client route: the app behind it gets the user's TE and calls a tool with it (test 10's);
//   - hostile request bodies (test 06's approach), each refusal asserting its answer and that the
//     MCP server received no body byte: holding the body, not the headers, the recording upstream
//     may see the headers of a refused request and then a reset (lib/recorder.mjs `arrivals`),
//     never a byte of its body; holding the headers, not even those;
//   - Istio only: a WasmPlugin update the agent cannot verify fails closed, and the right one
//     brings the filter back, in the running Envoy;
//   - no secret in any log, rendered manifest or file Envoy reads.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startGateway, USER } from './gateway.mjs';
import { waitUntil, isRunning } from './procs.mjs';
import { startGitHubProvider } from './github-provider.mjs';
import { Browser, CallbackServer } from './browser.mjs';
import { E2EOAuthProvider, recordingFetch } from './provider.mjs';
import { tokenForger, send, sendH2, sendRaw, rawPost, rpc, call, messagesOf } from './mcp-http.mjs';
import { RECORDER_TOOLS, RECORDER_PROMPTS } from './recorder.mjs';
import { sha256Hex } from './oci.mjs';
import { decodeJwt } from './oauth.mjs';

const VERSIONS = ['1.36', '1.40'];
const LIMIT = 128 * 1024;
const DENY_ADMIN = { deny: { and: [{ mcp_tool: { starts_with: 'admin_' } }] } };
const EVERYTHING_POLICY = { deny: { or: [{ mcp_tool: { starts_with: 'trigger-' } }, { mcp_tool: { is: 'get-env' } }] } };
const ROUTES = [
  { path: '/everything', name: 'Everything', upstream: 'everything', policy: EVERYTHING_POLICY },
  { path: '/j', upstream: 'recorder', upstreamPath: '/json/mcp', policy: DENY_ADMIN },
  { path: '/s', upstream: 'recorder', upstreamPath: '/sse/mcp', policy: DENY_ADMIN },
  { path: '/slow', upstream: 'recorder', upstreamPath: '/slow/mcp', policy: DENY_ADMIN },
  { path: '/h', upstream: 'recorder', upstreamPath: '/json/mcp', policy: DENY_ADMIN, maxRequestBytes: LIMIT },
  { path: '/github', name: 'GitHub', upstream: 'upstream-mcp', upstreamOAuth2: { scopes: ['read:user'] } },
  { path: '/app', name: 'Chat app', client: true },
];

const short = (s, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);
const show = (res) => `${res.status} ${JSON.stringify(res.headers['content-type'] ?? null)} ${short(res.text)}`;
const names = (list) => (list ?? []).map((t) => t.name);
const notAdmin = (list) => list.filter((t) => !t.name.startsWith('admin_'));

/**
 * Registers the suite of `shape` ('istio' | 'envoy-gateway') on every Envoy release, in the
 * header mode the rendering defaults to, and also in `headerModes` (e.g. ['hold_headers'],
 * Istio's EnvoyFilter alternative).
 */
export function shapeSuite(shape, { file, headerModes = [] }) {
  for (const headerMode of [undefined, ...headerModes]) {
    for (const version of VERSIONS) {
      const label = headerMode ? ` with ${headerMode}` : '';
      describe(`${shape} shape${label} on Envoy ${version}`, () => suiteOn(shape, version, headerMode, `${file}-${version}${headerMode ? `-${headerMode}` : ''}`));
    }
  }
}

/**
 * The module fetched by URL (`kubernetes.filter.url`, for operators without a registry) instead of
 * an image, on every Envoy release: a small gateway (one recorder route) through which the
 * rendered code source carries the module's sha256, Envoy runs the built module, and it decides.
 */
export function moduleByUrlSuite(shape, { file }) {
  const url = 'https://downloads.mcpgate.test/mcpgate/0.1.0/mcpgate_filter.wasm';
  for (const version of VERSIONS) {
    describe(`${shape} shape on Envoy ${version}: the module by URL`, () => {
      let gw;
      let token;
      before(async () => {
        gw = await startGateway(`${file}-${version}-url`, {
          shape, envoyVersion: version, accessTokenLifetime: '600s', filterUrl: url,
          routes: [{ path: '/h', upstream: 'recorder', upstreamPath: '/json/mcp', policy: DENY_ADMIN }],
        });
        token = (await tokenForger(gw))('/h');
      }, { timeout: 900_000 });
      after(async () => {
        await gw?.stop();
      });

      test('the rendered code is the URL with the module\'s sha256, Envoy runs the built module, an allowed call passes intact and a denied one leaves no body byte upstream', async () => {
        const built = fs.readFileSync(gw.paths.wasm);
        if (shape === 'istio') {
          assert.equal(gw.istio.plugin.spec.url, url, 'the WasmPlugin fetches the URL');
          assert.equal(gw.istio.plugin.spec.sha256, sha256Hex(built), 'with the module\'s sha256');
          assert.equal(gw.istio.pullError, undefined, 'the agent downloaded it');
          assert.ok(fs.readFileSync(gw.istio.modulePath).equals(built), 'the agent\'s cache holds the built module');
        } else {
          const { code } = gw.envoyGateway.policy.spec.wasm[0];
          assert.deepEqual([code.type, code.http?.url, code.http?.sha256], ['HTTP', url, sha256Hex(built)], 'an HTTP code source with the module\'s sha256');
          assert.equal(gw.envoyGateway.filter.typed_config.config.vm_config.code.remote.sha256, sha256Hex(built), 'Envoy checks the module it fetches');
          assert.ok(gw.envoyGateway.cache.requests.some((r) => r.status === 200), 'Envoy fetched the module from the Wasm cache');
        }
        gw.recorder.clear();
        const body = call('echo', { message: 'by URL' });
        const ok = await send(gw, { path: '/h', token, body });
        assert.equal(ok.json?.result?.content?.[0]?.text, 'recorder called "echo"', `allowed: ${show(ok)}`);
        assert.deepEqual(gw.recorder.requests.map((r) => r.text), [body], 'the MCP server received the body intact');
        gw.recorder.clear();
        const no = await send(gw, { path: '/h', token, body: call('admin_reset') });
        assert.equal(no.json?.error?.code, -32001, `denied: ${show(no)}`);
        await sleep(50);
        assert.deepEqual(gw.recorder.arrivalsWithBody, [], 'no body byte of the denied call reached the MCP server');
      });
    });
  }
}

function suiteOn(shape, version, headerMode, runName) {
  // Holding headers, a refused request never opens an upstream request; holding the body, its
  // headers may reach the MCP server, then a reset.
  const holdsHeaders = headerMode === 'hold_headers';
  let gw;
  let provider;
  let browser;
  let callback;
  let forge;
  let hostileToken;
  const seen = new Map(); // label -> secret seen during the run, for the leak scan

  before(async () => {
    provider = await startGitHubProvider({ expiresIn: 600 });
    gw = await startGateway(runName, { shape, envoyVersion: version, headerMode, provider, accessTokenLifetime: '600s', routes: ROUTES });
    provider.logFile = path.join(gw.paths.logs, 'github-provider.log');
    forge = await tokenForger(gw);
    hostileToken = forge('/h', { exp: Math.floor(Date.now() / 1000) + 3600 });
    callback = await CallbackServer.start();
    browser = await Browser.launch(gw.dir);
  }, { timeout: 900_000 });

  after(async () => {
    await browser?.close();
    await callback?.close();
    await gw?.stop();
    await provider?.stop();
  });

  // -------------------------------------------------------------------------------------------
  // What Envoy runs

  test(`Envoy ${version} runs the filter as ${shape} delivers it: the rendered configuration, the image's module, ${holdsHeaders ? 'the' : 'no'} header-hold flag`, async (t) => {
    assert.equal(gw.envoyVersion.split('.').slice(0, 2).join('.'), version, `the Envoy binary is ${version}`);
    const dump = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/config_dump`)).json();
    const built = fs.readFileSync(gw.paths.wasm);
    let wasm;
    if (shape === 'istio') {
      const ecds = dump.configs.find((c) => c['@type'].endsWith('EcdsConfigDump'));
      const ext = ecds?.ecds_filters?.map((f) => f.ecds_filter).find((f) => f.name === gw.istio.names.resourceName);
      assert.ok(ext, `Envoy holds the ECDS resource ${gw.istio.names.resourceName}`);
      assert.equal(gw.istio.pullError, undefined, 'the agent pulled the image');
      assert.match(ext.typed_config['@type'], /filters\.http\.wasm\.v3\.Wasm$/, 'the Wasm filter, not the agent\'s RBAC stand-in');
      wasm = ext.typed_config.config;
      assert.equal(wasm.name, gw.istio.names.pluginName);
      const { plugin } = gw.istio;
      assert.equal(Boolean(plugin), !holdsHeaders, holdsHeaders ? 'an EnvoyFilter carries the filter' : 'a WasmPlugin carries the filter');
      if (plugin) {
        assert.equal(wasm.root_id, plugin.spec.pluginName, 'root_id is the pluginName');
        assert.equal(wasm.failure_policy ?? 'UNSPECIFIED', { FAIL_CLOSE: 'FAIL_CLOSED', FAIL_OPEN: 'FAIL_OPEN', FAIL_RELOAD: 'FAIL_RELOAD' }[plugin.spec.failStrategy] ?? 'UNSPECIFIED',
          `failStrategy ${plugin.spec.failStrategy} as Istio maps it`);
      }
      const sha256 = plugin ? plugin.spec.sha256 : gw.istio.istiod.typed_config.config.vm_config.code.remote.sha256;
      assert.equal(gw.istio.image.manifestDigest, sha256, 'the rendered sha256 is the image\'s manifest digest');
      assert.equal(wasm.vm_config.code.local.filename, gw.istio.modulePath, 'the module from the agent\'s cache');
      assert.ok(fs.readFileSync(gw.istio.modulePath).equals(built), 'the image holds the module the build wrote');
      t.diagnostic(`image ${gw.istio.image.reference.name} (${gw.istio.image.variant}), ECDS ${gw.istio.names.resourceName}`);
    } else {
      const listeners = dump.configs.find((c) => c['@type'].endsWith('ListenersConfigDump'));
      const listener = listeners.static_listeners.find((l) => l.listener.name === 'mcpgate').listener;
      const filters = listener.filter_chains[0].filters[0].typed_config.http_filters;
      const filter = filters.find((f) => f.name === gw.envoyGateway.names.filterName);
      assert.ok(filter, `the listener has the HTTP filter ${gw.envoyGateway.names.filterName}`);
      assert.equal(filter.disabled, true, 'disabled on the listener, enabled per route');
      wasm = filter.typed_config.config;
      const remote = wasm.vm_config.code.remote;
      assert.equal(remote.sha256, sha256Hex(built), 'Envoy checks the fetched module against the built module\'s sha256');
      assert.equal(remote.http_uri.cluster, 'wasm_cluster');
      assert.equal(Boolean(wasm.fail_open), Boolean(gw.envoyGateway.policy.spec.wasm[0].failOpen), 'fail_open from failOpen');
      const fetched = gw.envoyGateway.cache.requests;
      assert.ok(fetched.length >= 1 && fetched.every((r) => r.status === 200 && r.clientCert === 'envoy'),
        `Envoy fetched the module from the Wasm cache with its client certificate: ${JSON.stringify(fetched)}`);
      const image = gw.envoyGateway.served.image;
      if (image) assert.equal(image.manifestDigest, gw.envoyGateway.policy.spec.wasm[0].code.image.sha256, 'the policy\'s sha256 is the image\'s manifest digest');
      t.diagnostic(`code ${gw.envoyGateway.served.originalUrl}${image ? ` (${image.variant})` : ''}, enabled on ${gw.envoyGateway.targetedRoutes} routes`);
    }
    assert.equal(Boolean(wasm.allow_on_headers_stop_iteration), holdsHeaders,
      holdsHeaders ? 'allow_on_headers_stop_iteration, set by the EnvoyFilter' : 'no allow_on_headers_stop_iteration: the shape cannot set it');
    const configuration = JSON.parse(wasm.configuration.value);
    assert.deepEqual(configuration, gw.filterConfig, 'the filter configuration is the rendered one');
    assert.equal(configuration.header_mode, headerMode ?? 'hold_body', 'the rendered header mode');
    assert.deepEqual((wasm.vm_config.environment_variables?.host_env_keys ?? []), ['MCPGATE_INTERNAL_API_SECRET'],
      'the internal API secret comes from the host environment');
  });

  // -------------------------------------------------------------------------------------------
  // The SDK client's OAuth flow, then tool calls and a filtered list on server-everything

  test('the SDK client: 401, discovery, registration, sign-in in Chromium; then tools/call, a filtered tools/list, a denied hidden tool', { timeout: 120_000 }, async (t) => {
    const log = [];
    const auth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER });
    const url = new URL(gw.route('/everything').url);
    const first = new Client({ name: 'mcpgate-e2e-shapes', version: '1.0.0' });
    const firstTransport = new StreamableHTTPClientTransport(url, { authProvider: auth, fetch: recordingFetch(log) });
    await assert.rejects(first.connect(firstTransport), (e) => e instanceof UnauthorizedError, 'the first connect stops at the authorization redirect');
    await first.close().catch(() => {});
    assert.equal(log[0].status, 401, 'the first request gets 401');
    assert.ok(log[0].wwwAuthenticate?.includes(`resource_metadata="${gw.route('/everything').resourceMetadataUrl}"`), `WWW-Authenticate: ${log[0].wwwAuthenticate}`);
    assert.ok(log.some((e) => e.path === '/.well-known/oauth-protected-resource/everything' && e.status === 200), 'protected-resource metadata');
    assert.ok(log.some((e) => e.path === '/.mcpgate/oauth/register' && [200, 201].includes(e.status)), 'dynamic registration');
    const { result } = auth.authorizations[0];
    assert.ok(result.callback, `the browser reached the client's callback: ${JSON.stringify(result.steps)} ${result.bodyText?.slice(0, 300)}`);
    assert.ok(result.steps.some((s) => s.kind === 'sign_in'), 'the user signed in');
    await firstTransport.finishAuth(result.callback.searchParams.get('code'));
    const te = auth.tokens().access_token;
    seen.set('TE', te);
    seen.set('refresh token', auth.tokens().refresh_token);
    assert.equal(decodeJwt(te).payload.aud, gw.route('/everything').url);

    const client = new Client({ name: 'mcpgate-e2e-shapes', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(url, { authProvider: auth, fetch: recordingFetch(log) }));
    try {
      const message = `through ${shape} on ${version}`;
      const echoed = await client.callTool({ name: 'echo', arguments: { message } });
      assert.equal(echoed.content?.[0]?.text, `Echo: ${message}`, 'tools/call reaches server-everything');
      const shown = names((await client.listTools()).tools);
      assert.ok(shown.includes('echo'), `listed: ${shown.join(', ')}`);
      assert.ok(!shown.includes('get-env') && !shown.some((n) => n.startsWith('trigger-')), `the policy hides get-env and trigger-*: ${shown.join(', ')}`);
      await assert.rejects(client.callTool({ name: 'get-env', arguments: {} }), (e) => e instanceof McpError && e.code === -32001,
        'calling a hidden tool is denied with -32001');
    } finally {
      await client.close();
    }
    t.diagnostic(`browser pages: ${result.steps.map((s) => s.kind).join(' -> ')}`);
  });

  // -------------------------------------------------------------------------------------------
  // Filtered lists

  const list = (routePath, method, id, headers = {}) => send(gw, { path: routePath, token: forge(routePath), body: rpc(method, {}, id), headers, timeoutMs: 20_000 });
  const responseFor = (res, id) => {
    const found = messagesOf(res).find((m) => m.id === id && ('result' in m || 'error' in m));
    assert.ok(found, `a response with id ${id} in ${show(res)}`);
    return found;
  };

  for (const [label, routePath, type] of [['JSON', '/j', 'application/json'], ['SSE', '/s', 'text/event-stream'], ['slow SSE', '/slow', 'text/event-stream']]) {
    test(`tools/list and prompts/list in a ${label} answer: only what the policy allows, nothing else changed`, async () => {
      const tools = await list(routePath, 'tools/list', 11);
      assert.equal(tools.status, 200, show(tools));
      assert.ok(String(tools.headers['content-type']).startsWith(type), show(tools));
      if (tools.headers['content-length'] !== undefined) assert.equal(Number(tools.headers['content-length']), tools.buffer.length, 'no stale Content-Length');
      assert.ok(!tools.text.includes('admin_'), `no admin_ tool reaches the client: ${show(tools)}`);
      assert.deepEqual(responseFor(tools, 11).result.tools, notAdmin(RECORDER_TOOLS), 'the allowed tools, unchanged');
      const prompts = await list(routePath, 'prompts/list', 12);
      assert.deepEqual(names(responseFor(prompts, 12).result.prompts), names(notAdmin(RECORDER_PROMPTS)), show(prompts));
    });
  }

  // -------------------------------------------------------------------------------------------
  // Upstream OAuth: the MCP server gets the user's provider token

  test('an upstream-OAuth route: the provider\'s consent, then whoami reaches the MCP server with the TI, never the TE', { timeout: 120_000 }, async () => {
    const routeAuth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER, clientName: 'mcpgate e2e /github' });
    const url = new URL(gw.route('/github').url);
    const log = [];
    const first = new Client({ name: 'mcpgate-e2e-upstream', version: '1.0.0' });
    const firstTransport = new StreamableHTTPClientTransport(url, { authProvider: routeAuth, fetch: recordingFetch(log) });
    await assert.rejects(first.connect(firstTransport), (e) => e instanceof UnauthorizedError, 'the first connect stops at the authorization redirect');
    const { result } = routeAuth.authorizations.at(-1);
    assert.ok(result.callback, `the browser reached the client's callback: ${JSON.stringify(result.steps)} ${result.bodyText?.slice(0, 300)}`);
    assert.ok(result.steps.some((s) => s.kind === 'consent' && s.url.startsWith(provider.origin)), `the provider's consent was shown: ${JSON.stringify(result.steps)}`);
    await firstTransport.finishAuth(result.callback.searchParams.get('code'));
    const te = routeAuth.tokens().access_token;
    seen.set('TE of /github', te);

    const client = new Client({ name: 'mcpgate-e2e-upstream', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(url, { authProvider: routeAuth, fetch: recordingFetch(log) }));
    try {
      const who = await client.callTool({ name: 'whoami', arguments: {} });
      assert.equal(who.content?.[0]?.text, provider.user.login, 'whoami answers with the provider login');
    } finally {
      await client.close();
    }
    const mcp = gw.route('/github').mcpServer;
    const issued = new Set(provider.issued.map((i) => i.accessToken));
    for (const i of provider.issued) seen.set(`TI ${i.accessToken.slice(0, 6)}`, i.accessToken);
    const reached = mcp.requests.filter((r) => r.path === '/mcp');
    assert.ok(reached.some((r) => r.tool === 'whoami'), 'the whoami call reached the MCP server');
    for (const r of reached) {
      assert.ok(issued.has(r.bearer), `every request carries a TI the provider issued (${r.rpcMethod})`);
      assert.ok(!JSON.stringify(r.headers).includes(te.split('.')[2]), 'the MCP server never receives the TE');
      assert.ok(r.assertion?.ok, `x-mcpgate-assertion verifies: ${r.assertion?.error}`);
    }
  });

  // -------------------------------------------------------------------------------------------
  // Client route: an app gets the signed-in user's TE

  test('a client route: the app behind it gets the user\'s TE and an assertion, lists her servers and calls a tool', { timeout: 60_000 }, async () => {
    const app = gw.route('/app').app;
    const page = await browser.context.newPage();
    try {
      const r = await browser.drive(page, { url: app.returnUrl, username: USER.username, password: USER.password, until: (u) => u.startsWith(app.returnUrl) });
      assert.ok(r.arrived, `the browser is on the app page: ${JSON.stringify(r.steps)} ${r.bodyText?.slice(0, 300)}`);
      assert.equal(await page.getAttribute('body', 'data-routes-status'), '200', 'the app got the user\'s servers from the gateway');
      const servers = await page.$$eval('li.server', (els) => els.map((e) => e.dataset.name));
      assert.ok(servers.includes('Everything') && servers.includes('GitHub'), `the app lists the user's servers: ${servers}`);
      const rec = app.requests.at(-1);
      assert.ok(rec.bearer, 'the app received a TE');
      seen.set('TE of the app', rec.bearer);
      assert.ok([decodeJwt(rec.bearer).payload.aud].flat().includes(gw.route('/everything').url), 'its TE is good for /everything');
      assert.ok(rec.assertion.ok, `the assertion verifies: ${rec.assertion.error}`);
      assert.equal(rec.assertion.claims.email, USER.email);
      const u = new URL(`${app.returnUrl}call`);
      u.searchParams.set('url', gw.route('/everything').url);
      u.searchParams.set('tool', 'echo');
      u.searchParams.set('args', JSON.stringify({ message: 'from the app' }));
      const answer = await browser.context.request.get(u.href, { maxRedirects: 0 });
      assert.equal(answer.status(), 200, `the app's /call: ${(await answer.text()).slice(0, 300)}`);
      const body = await answer.json();
      assert.ok(body.ok, `the app called echo with the TE: ${JSON.stringify(body)}`);
      assert.equal(body.result.content[0].text, 'Echo: from the app');
    } finally {
      await page.close().catch(() => {});
    }
  });

  // -------------------------------------------------------------------------------------------
  // Hostile request bodies on /h (deny admin_*, 128 KiB): the MCP server never receives a body byte

  async function attempt(opts) {
    gw.recorder.clear();
    const { h2, ...rest } = opts;
    const res = h2 ? await sendH2(gw, { path: '/h', token: hostileToken, ...rest }) : await send(gw, { path: '/h', token: hostileToken, ...rest });
    await sleep(50); // a body wrongly forwarded beside the local answer has time to land
    return { res, arrivals: gw.recorder.arrivals.slice(), requests: gw.recorder.requests.slice() };
  }

  function assertNoBodyUpstream(what, { arrivals, requests }) {
    if (holdsHeaders) assert.deepEqual(arrivals.map((a) => `${a.method} ${a.path}`), [], `${what}: holding headers, nothing reaches the MCP server`);
    const withBody = arrivals.filter((a) => a.bodyBytes > 0);
    assert.equal(withBody.length, 0,
      `${what}: no body byte may reach the MCP server; it received ${withBody.map((a) => `${a.method} ${a.bodyBytes} bytes${a.complete ? '' : ' (then a reset)'}`).join(' | ')}`);
    assert.equal(requests.length, 0, `${what}: no request may complete at the MCP server, ${requests.length} did`);
  }

  async function expectDenied(what, opts, { idRaw = '1' } = {}) {
    const r = await attempt(opts);
    assert.equal(r.res.status, 200, `${what}: a denied call gets HTTP 200 with a JSON-RPC error, got ${show(r.res)}`);
    assert.equal(r.res.json?.error?.code, -32001, `${what}: -32001, got ${show(r.res)}`);
    assert.ok(r.res.text.includes(`"id":${idRaw}`), `${what}: the request id ${idRaw} echoed, got ${show(r.res)}`);
    assertNoBodyUpstream(what, r);
    return r;
  }

  // `id`: the request's id when the body let the filter read it, null otherwise.
  async function expectRejected(what, opts, { status = 400, codes = [-32700], id = null } = {}) {
    const r = await attempt(opts);
    assert.equal(r.res.status, status, `${what}: HTTP ${status}, got ${show(r.res)}`);
    assert.ok(codes.includes(r.res.json?.error?.code), `${what}: error code one of ${codes}, got ${show(r.res)}`);
    assert.equal(r.res.json?.id, id, `${what}: id ${JSON.stringify(id)}`);
    assertNoBodyUpstream(what, r);
  }

  async function expectStatus(what, opts, status) {
    const r = await attempt(opts);
    assert.equal(r.res.status, status, `${what}: HTTP ${status}, got ${show(r.res)}`);
    assertNoBodyUpstream(what, r);
  }

  async function expectNotForwarded(what, opts) {
    const r = await attempt(opts);
    const denied = r.res.status === 200 && [r.res.json].flat().some((m) => m?.error?.code === -32001);
    assert.ok(denied || (r.res.status >= 400 && r.res.status < 500 && r.res.status !== 401), `${what}: a denial or a 4xx refusal, got ${show(r.res)}`);
    assertNoBodyUpstream(what, r);
  }

  async function expectForwarded(what, opts, { status = 200 } = {}) {
    const r = await attempt(opts);
    assert.equal(r.res.status, status, `${what}: the MCP server's answer ${status}, got ${show(r.res)}`);
    assert.equal(r.requests.length, 1, `${what}: exactly one request reaches the MCP server`);
    const sent = Buffer.concat([opts.body].flat().map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))));
    assert.ok(r.requests[0].body.equals(sent), `${what}: the body byte for byte (sent ${sent.length}, got ${r.requests[0].body.length})`);
    assert.equal(r.requests[0].headers.authorization, undefined, `${what}: the client's Authorization never reaches the MCP server`);
  }

  const denied = (name = 'admin_reset', id = 1) => call(name, {}, id);
  const allowed = (id = 1) => call('echo', { message: 'hello' }, id);
  const padTo = (name, size) => call(name, { pad: 'p'.repeat(size - Buffer.byteLength(call(name, { pad: '' }))) });
  const batch = (...msgs) => `[${msgs.join(',')}]`;
  const gz = zlib.gzipSync(denied());

  test('hostile: the control calls, an allowed echo forwarded intact and admin_reset denied without a body byte upstream', async (t) => {
    await expectForwarded('echo', { body: allowed() });
    const r = await expectDenied('admin_reset', { body: denied() });
    t.diagnostic(`the denied call's headers reached the MCP server ${r.arrivals.length} time(s), its body never`);
  });

  test('hostile: a denied call trickled 3 bytes at a time (the headers go on first) gets no body byte upstream', async () => {
    const b = denied();
    const parts = [];
    for (let i = 0; i < b.length; i += 3) parts.push(b.slice(i, i + 3));
    await expectDenied('trickled', { body: parts, delayMs: 5 });
    await expectDenied('trickled, chunked', { body: parts, chunked: true, delayMs: 5 });
  });

  test('hostile: an allowed call trickled byte by byte, and one of exactly the limit, arrive intact', async () => {
    await expectForwarded('trickled allowed', { body: [...allowed()], chunked: true, delayMs: 2 });
    await expectForwarded('allowed at the limit', { body: padTo('echo', LIMIT) });
  });

  test('hostile: over the size limit → 413 (Content-Length, chunked, the denied call only past the limit)', async () => {
    await expectStatus('LIMIT+1', { body: padTo('admin_reset', LIMIT + 1) }, 413);
    const big = padTo('admin_reset', LIMIT + 4096);
    await expectStatus('chunked over the limit', { body: [big.slice(0, 60_000), big.slice(60_000)], chunked: true }, 413);
    const head = allowed();
    await expectStatus('denied call past the limit', { body: [head, ' '.repeat(LIMIT - Buffer.byteLength(head)), denied()], chunked: true, delayMs: 5 }, 413);
    await expectStatus('announced length over the limit', { body: '{', headers: { 'content-length': String(LIMIT + 1000) }, timeoutMs: 5000 }, 413);
  });

  test('hostile: batches → refused for 2025-06-18, denied whole for 2025-03-26', async () => {
    await expectRejected('batch 2025-06-18', { body: batch(allowed(1), denied('admin_reset', 2)) }, { codes: [-32600] });
    const r = await attempt({ body: batch(allowed(1), denied('admin_reset', 2)), headers: { 'mcp-protocol-version': '2025-03-26' } });
    assert.ok([r.res.json].flat().some((m) => m?.error?.code === -32001), `batch 2025-03-26: a -32001 error, got ${show(r.res)}`);
    assertNoBodyUpstream('batch 2025-03-26', r);
  });

  test('hostile: duplicate keys (method, params.name, escaped "n\\u0061me") → 400 parse error', async () => {
    for (const body of [
      '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"admin_reset","arguments":{}}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"admin_reset","arguments":{}}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\\u0061me":"admin_reset","arguments":{}}}',
    ]) await expectRejected(`duplicate keys ${short(body, 80)}`, { body });
  });

  test('hostile: escapes are decided unescaped ("\\u0061dmin_reset", "tools\\/call") → denied', async () => {
    await expectDenied('escaped name', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u0061dmin_reset","arguments":{}}}' });
    await expectDenied('escaped slash', { body: '{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"admin_reset","arguments":{}}}' });
  });

  test('hostile: content encodings and content types other than JSON → 415', async () => {
    await expectStatus('gzip', { body: gz, headers: { 'content-encoding': 'gzip' } }, 415);
    await expectStatus('identity, gzip', { body: gz, headers: { 'content-encoding': 'identity, gzip' } }, 415);
    await expectStatus('text/plain', { body: denied(), headers: { 'content-type': 'text/plain' } }, 415);
    await expectStatus('form', { body: `rpc=${encodeURIComponent(denied())}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415);
    await expectStatus('no content type', { body: denied(), headers: { 'content-type': null } }, 415);
  });

  test('hostile: parse errors (invalid UTF-8, BOM, truncation, trailing data, depth) → 400', async () => {
    await expectRejected('0xFF', { body: Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":{"x":"'), Buffer.from([0xff]), Buffer.from('"}}}')]) });
    await expectRejected('BOM', { body: `\ufeff${denied()}` });
    await expectRejected('truncated', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"' });
    await expectRejected('two values', { body: `${allowed(1)}${denied('admin_reset', 2)}` });
    const deep = `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`;
    await expectRejected('depth 100', { body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset","arguments":${deep}}}` });
  });

  test('hostile: bad shapes and ids → 400 invalid request or params', async () => {
    await expectRejected('params.name an array', { body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["admin_reset"]}}' }, { codes: [-32600, -32602], id: 1 });
    await expectRejected('id an object', { body: call('admin_reset', {}, { raw: '{"a":1}' }) }, { codes: [-32600] });
    await expectRejected('jsonrpc "1.0"', { body: '{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}' }, { codes: [-32600], id: 1 });
  });

  test('hostile: a denied notification → 403; bodies on GET and DELETE are never forwarded', async () => {
    await expectStatus('notification', { body: '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"admin_reset","arguments":{}}}' }, 403);
    await expectNotForwarded('GET + body', { method: 'GET', body: denied(), headers: { accept: 'text/event-stream' } });
    await expectNotForwarded('DELETE + body', { method: 'DELETE', body: denied(), headers: { 'mcp-session-id': 'recorder-session-1' } });
  });

  test('hostile: HTTP/2 denied calls, with and without trailers, in several DATA frames → denied', async () => {
    await expectDenied('h2', { h2: true, body: denied() });
    const b = denied();
    await expectDenied('h2 frames + trailers', { h2: true, body: [b.slice(0, 20), b.slice(20)], delayMs: 20, trailers: { 'x-t': '1' } });
    await expectForwarded('h2 allowed + trailers', { h2: true, body: allowed(), trailers: { 'x-checksum': 'abc' } });
  });

  test('hostile: HTTP/1.1 pipelining (denied, then allowed) and interleaved HTTP/2 streams: each decided on its own body', async (t) => {
    gw.recorder.clear();
    const bodies = [denied('admin_delete', 'a'), allowed('b')];
    const responses = await sendRaw(gw, Buffer.concat(bodies.map((b) => rawPost(gw, '/h', hostileToken, b))), 2, { allowClose: true });
    assert.equal(responses[0]?.json?.error?.code, -32001, `first (admin_delete): ${responses[0] && show(responses[0])}`);
    if (responses.length === 2) {
      assert.equal(responses[1].json?.id, 'b', `second: ${show(responses[1])}`);
      assert.ok(responses[1].json?.result, `the second is the server's answer: ${show(responses[1])}`);
    } else {
      t.diagnostic('the connection closed after the denial: the pipelined second request was dropped, not forwarded');
    }
    await sleep(50);
    const expected = responses.length === 2 ? [bodies[1]] : [];
    assert.deepEqual(gw.recorder.requests.map((r) => r.text), expected, 'only the allowed body reached the server');
    assert.deepEqual(gw.recorder.arrivalsWithBody.map((a) => a.bodyBytes), expected.map((b) => Buffer.byteLength(b)), 'no byte of the denied body');

    gw.recorder.clear();
    const session = http2.connect(`http://127.0.0.1:${gw.ports.envoy}`);
    try {
      const open = () => session.request({
        ':method': 'POST', ':path': '/h', ':authority': `localhost:${gw.ports.envoy}`, ':scheme': 'http',
        'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${hostileToken}`,
      });
      const collect = (stream) => new Promise((resolve, reject) => {
        const chunks = [];
        stream.on('data', (c) => chunks.push(c));
        stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        stream.on('error', reject);
      });
      const a = open();
      const b = open();
      const ra = collect(a);
      const rb = collect(b);
      const good = allowed(101);
      const bad = denied('admin_reset', 102);
      a.write(good.slice(0, 25));
      b.write(bad.slice(0, 25));
      await sleep(20);
      b.end(bad.slice(25));
      await sleep(20);
      a.end(good.slice(25));
      const [textA, textB] = await Promise.all([ra, rb]);
      assert.equal(JSON.parse(textA).result?.content?.[0]?.text, 'recorder called "echo"', `stream A: ${textA}`);
      assert.equal(JSON.parse(textB).error?.code, -32001, `stream B: ${textB}`);
    } finally {
      session.close();
    }
    await sleep(50);
    assert.deepEqual(gw.recorder.requests.map((r) => r.text), [allowed(101)], 'only stream A\'s body reached the server');
    assert.deepEqual(gw.recorder.arrivalsWithBody.map((a) => a.bodyBytes), [Buffer.byteLength(allowed(101))], 'no byte of stream B\'s body');
  });

  // -------------------------------------------------------------------------------------------
  // Istio: a WasmPlugin update reaches the running Envoy; a module the agent cannot verify fails closed

  if (shape === 'istio' && !holdsHeaders) {
    test('a WasmPlugin update whose sha256 the image does not match: the agent\'s deny-all stand-in answers, nothing reaches the MCP server; the right digest brings the filter back; Envoy never restarts', { timeout: 60_000 }, async (t) => {
      const envoy = gw.procs.envoy;
      const wrong = structuredClone(gw.istio.plugin);
      wrong.spec.sha256 = sha256Hex('not the filter image');
      const update = gw.istio.deliver(wrong);
      assert.match(update.pullError ?? '', /does not match/, 'the agent refuses the image');
      assert.match(update.extensionConfig.typed_config['@type'], /rbac\.v3\.RBAC$/, 'and sends its RBAC stand-in under the same name');
      let res;
      await waitUntil('the stand-in in force', async () => {
        gw.recorder.clear();
        res = await send(gw, { path: '/h', token: hostileToken, body: allowed() });
        return res.status !== 200;
      }, { timeoutMs: 15_000, intervalMs: 200 });
      assert.equal(res.status, 403, `the stand-in denies (the plugin does not fail open): ${show(res)}`);
      await sleep(50);
      assert.deepEqual(gw.recorder.arrivals, [], 'nothing reached the MCP server, not even headers');

      const restored = gw.istio.deliver(gw.istio.plugin);
      assert.equal(restored.pullError, undefined, 'the agent pulls the right image');
      await waitUntil('the filter back', async () => {
        res = await send(gw, { path: '/h', token: hostileToken, body: allowed() });
        return res.status === 200;
      }, { timeoutMs: 15_000, intervalMs: 200 });
      assert.equal(res.json?.result?.content?.[0]?.text, 'recorder called "echo"', `allowed calls pass again: ${show(res)}`);
      await expectDenied('admin_reset after the update', { body: denied() });
      assert.ok(isRunning(envoy) && gw.procs.envoy === envoy, 'the same Envoy process throughout');
      t.diagnostic(`agent: ${update.pullError}`);
    });
  }

  // -------------------------------------------------------------------------------------------

  test('no secret in any log, in the rendered manifests or in a file Envoy reads', async () => {
    const secrets = new Map([...gw.secrets(), ...seen]);
    const { leaks, files, checked } = gw.findLeaks(secrets);
    assert.deepEqual(leaks, [], `secrets found in the logs (${files.join(', ')})`);
    assert.ok(checked >= 5, `the scan looked for the gateway's secrets and the tokens seen (${checked})`);
    const shapeFiles = [gw.paths.envoyConfig, ...walk(path.join(gw.dir, shape)), ...walk(path.join(gw.dir, `render-${shape}`))]
      .filter((f) => !f.endsWith('.wasm') && !f.endsWith('.key'));
    assert.ok(shapeFiles.length >= 3, `rendered and delivered files to scan: ${shapeFiles.join(', ')}`);
    for (const f of shapeFiles) {
      const text = fs.readFileSync(f, 'utf8');
      for (const [label, secret] of secrets) assert.ok(!text.includes(secret), `${label} in ${path.relative(gw.dir, f)}`);
    }
  });
}

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
