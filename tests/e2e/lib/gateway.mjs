// Starts one complete mcpgate gateway for a test file, all on 127.0.0.1:
//   the MCP reference server (server-everything, streamable HTTP),
//   the token service (mcpgate-token-service serve) on SQLite in a fresh run directory,
//   Envoy (.venv/bin/envoy) with the bootstrap the token service CLI renders, loading the built filter.
// By default two server routes, /a (routes[0], cluster mcp_route_0) and /b (routes[1], cluster
// mcp_route_1), both in front of the one reference server. A test file may pass its own `routes`
// (path, upstream 'everything' | 'recorder', upstreamPath, policy, maxRequestBytes, audit), which
// can put the recording MCP upstream (lib/recorder.mjs, in this process) behind a route.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startProcess, stopProcess, waitUntil, run, logTail } from './procs.mjs';
import { freePorts, portOpen } from './net.mjs';
import { makeTestCa } from './tls.mjs';
import { startRecorder } from './recorder.mjs';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');
export const ARTIFACTS_DIR = path.join(E2E_DIR, '.artifacts');

export const USER = Object.freeze({
  username: 'alice',
  password: 'correct horse battery staple 42',
  email: 'alice@example.com',
  name: 'Alice Example',
  groups: ['engineering', 'e2e'],
});

const ENVOY_BIN = process.env.MCPGATE_ENVOY_BIN ?? path.join(REPO_ROOT, '.venv', 'bin', 'envoy');
const WASM_MODULE = process.env.MCPGATE_WASM_MODULE
  ?? path.join(REPO_ROOT, 'target', 'wasm32-wasip1', 'release', 'mcpgate_filter.wasm');

/** The token service binary: $MCPGATE_TOKEN_SERVICE_BIN, else target/debug (built with cargo if missing). */
export async function tokenServiceBinary() {
  const fromEnv = process.env.MCPGATE_TOKEN_SERVICE_BIN;
  if (fromEnv) {
    if (!fs.existsSync(fromEnv)) throw new Error(`MCPGATE_TOKEN_SERVICE_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  const bin = path.join(REPO_ROOT, 'target', 'debug', 'mcpgate-token-service');
  if (!fs.existsSync(bin)) {
    const r = await run('cargo', ['build', '-p', 'mcpgate-token-service'], { cwd: REPO_ROOT, timeoutMs: 900_000 });
    if (r.code !== 0) throw new Error(`cargo build -p mcpgate-token-service failed:\n${r.stderr.slice(-4000)}`);
  }
  return bin;
}

function yamlString(value) {
  // YAML is a superset of JSON: a JSON string literal is a valid, exactly-quoted YAML scalar.
  return JSON.stringify(String(value));
}

function gatewayYaml(g) {
  const lines = [
    '# Written by tests/e2e/lib/gateway.mjs for one test file.',
    'authorization_server:',
    `  issuer: ${yamlString(g.issuer)}`,
    `  access_token_lifetime: ${g.options.accessTokenLifetime}`,
    `  leeway: ${g.options.leeway}`,
    `  signing_key_file: ${yamlString(g.paths.signingKey)}`,
    '  client_id_metadata_documents:',
    '    allow_private_addresses: true',
    `    extra_root_certificates: [${yamlString(g.tls.caCert)}]`,
    'token_service:',
    `  listen: 127.0.0.1:${g.ports.tokenService}`,
    `  database_url: ${yamlString(`sqlite://${g.paths.database}?mode=rwc`)}`,
    `  users_file: ${yamlString(g.paths.users)}`,
    'envoy:',
    `  listen: 127.0.0.1:${g.ports.envoy}`,
    `  admin: 127.0.0.1:${g.ports.admin}`,
    `  wasm_module: ${yamlString(g.paths.wasm)}`,
    `  jwks_refresh: ${g.options.jwksRefresh}`,
    'routes:',
  ];
  for (const r of g.routes) {
    const port = r.upstream === 'recorder' ? g.ports.recorder : g.ports.everything;
    // YAML is a superset of JSON: the policy and the server settings are written as JSON.
    const server = {};
    if (r.maxRequestBytes !== undefined) server.max_request_bytes = r.maxRequestBytes;
    if (r.audit !== undefined) server.audit = r.audit;
    lines.push(
      `  - from: ${yamlString(r.url)}`,
      `    to: ${yamlString(`http://127.0.0.1:${port}${r.upstreamPath}`)}`,
      `    name: ${yamlString(r.name)}`,
      `    mcp: ${JSON.stringify({ server })}`,
    );
    if (r.policy !== undefined) lines.push(`    policy: ${JSON.stringify(r.policy)}`);
  }
  return lines.join('\n') + '\n';
}

export class Gateway {
  constructor(name, options) {
    this.name = name;
    this.options = options;
    this.procs = {};
  }

  /** Public origin and issuer, e.g. http://localhost:40123. */
  get origin() {
    return `http://localhost:${this.ports.envoy}`;
  }

  get issuer() {
    return this.origin;
  }

  /** The route with that path (e.g. '/a'): {path, url, index, name, cluster, resourceMetadataUrl, …}. */
  route(routePath) {
    const r = this.routes.find((x) => x.path === routePath);
    if (!r) throw new Error(`no route ${routePath}`);
    return r;
  }

  async start() {
    const started = Date.now();
    if (!fs.existsSync(WASM_MODULE)) {
      throw new Error(`the filter module ${WASM_MODULE} does not exist: build it with ./wasm-build.sh`);
    }
    if (!fs.existsSync(ENVOY_BIN)) {
      throw new Error(`Envoy is not installed at ${ENVOY_BIN}: run scripts/setup.sh`);
    }
    // One run directory per test file, kept after the run for inspection (logs, config, database);
    // the previous run of the same file is removed first.
    this.dir = path.join(ARTIFACTS_DIR, this.name);
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true });
    const [envoy, admin, tokenService, everything, recorder] = await freePorts(5);
    this.ports = { envoy, admin, tokenService, everything, recorder };
    this.paths = {
      config: path.join(this.dir, 'gateway.yaml'),
      envoyConfig: path.join(this.dir, 'envoy.yaml'),
      signingKey: path.join(this.dir, 'signing-key.pem'),
      database: path.join(this.dir, 'mcpgate.db'),
      users: path.join(this.dir, 'users.yaml'),
      wasm: WASM_MODULE,
      logs: path.join(this.dir, 'logs'),
    };
    const specs = this.options.routes ?? [{ path: '/a' }, { path: '/b' }];
    this.routes = specs.map((spec, index) => {
      const p = spec.path;
      const upstream = spec.upstream ?? 'everything';
      return {
        ...spec,
        path: p,
        index,
        name: spec.name ?? `Route ${p.slice(1).toUpperCase()}`,
        url: `${this.origin}${p}`,
        upstream,
        upstreamPath: spec.upstreamPath ?? (upstream === 'recorder' ? '/json' : '/mcp'),
        cluster: `mcp_route_${index}`,
        resourceMetadataUrl: `${this.origin}/.well-known/oauth-protected-resource${p}`,
      };
    });
    const usesEverything = this.routes.some((r) => r.upstream === 'everything');
    const usesRecorder = this.routes.some((r) => r.upstream === 'recorder');
    this.tls = await makeTestCa(path.join(this.dir, 'tls'));
    fs.writeFileSync(this.paths.config, gatewayYaml(this));

    this.bin = await tokenServiceBinary();
    const add = await run(this.bin, [
      'user', 'add', '--config', this.paths.config,
      '--username', USER.username, '--email', USER.email, '--name', USER.name,
      ...USER.groups.flatMap((g) => ['--group', g]),
      '--password-stdin',
    ], { input: `${USER.password}\n`, timeoutMs: 60_000 });
    if (add.code !== 0) {
      throw new Error(`mcpgate-token-service user add failed (exit ${add.code}):\n${add.stdout}\n${add.stderr}`);
    }
    const render = await run(this.bin, ['envoy-bootstrap', '--config', this.paths.config, '--out', this.paths.envoyConfig],
      { timeoutMs: 60_000 });
    if (render.code !== 0 || !fs.existsSync(this.paths.envoyConfig)) {
      throw new Error(`mcpgate-token-service envoy-bootstrap failed (exit ${render.code}):\n${render.stdout}\n${render.stderr}`);
    }

    if (usesEverything) {
      this.procs.everything = startProcess('everything', process.execPath, [path.join(E2E_DIR, 'lib', 'everything-loopback.mjs')], {
        cwd: E2E_DIR,
        env: { ...process.env, PORT: String(everything) },
        logFile: path.join(this.paths.logs, 'everything.log'),
      });
    }
    if (usesRecorder) {
      this.recorder = await startRecorder({ port: recorder, logFile: path.join(this.paths.logs, 'recorder.log') });
    }
    await this.startTokenService();
    this.procs.envoy = startProcess('envoy', ENVOY_BIN, [
      '-c', this.paths.envoyConfig,
      '--concurrency', '1',
      '--base-id', String(crypto.randomInt(1000, 1_000_000)),
      '--log-level', 'warn',
    ], { cwd: this.dir, logFile: path.join(this.paths.logs, 'envoy.log') });

    if (usesEverything) {
      await waitUntil('the MCP reference server port', () => portOpen(everything), { child: this.procs.everything });
    }
    await waitUntil('Envoy admin /ready', async () => {
      const r = await fetch(`http://127.0.0.1:${admin}/ready`);
      return r.status === 200;
    }, { child: this.procs.envoy });
    this.startupMs = Date.now() - started;
    return this;
  }

  async startTokenService() {
    this.procs.tokenService = startProcess('token-service', this.bin, ['serve', '--config', this.paths.config], {
      cwd: this.dir,
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
      logFile: path.join(this.paths.logs, 'token-service.log'),
    });
    await waitUntil('token service /.mcpgate/healthz', async () => {
      const r = await fetch(`http://127.0.0.1:${this.ports.tokenService}/.mcpgate/healthz`);
      return r.status === 200;
    }, { child: this.procs.tokenService });
  }

  /** Stops the token service (SIGTERM) and starts it again on the same config and database. */
  async restartTokenService() {
    await stopProcess(this.procs.tokenService);
    await this.startTokenService();
  }

  /** Value of an Envoy counter or gauge, read from the admin interface. Throws when it does not exist. */
  async stat(name) {
    const filter = `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
    const r = await fetch(`http://127.0.0.1:${this.ports.admin}/stats?format=json&filter=${encodeURIComponent(filter)}`);
    if (r.status !== 200) throw new Error(`Envoy admin /stats answered ${r.status}`);
    const body = await r.json();
    const found = (body.stats ?? []).find((s) => s.name === name);
    if (!found) throw new Error(`Envoy has no stat ${name}`);
    return Number(found.value);
  }

  /** Requests that reached the MCP server through route '/a' or '/b' (Envoy upstream_rq_total). */
  async upstreamRequests(routePath) {
    return this.stat(`cluster.${this.route(routePath).cluster}.upstream_rq_total`);
  }

  /** Every stat whose name matches a regular expression, as {name: value}. */
  async stats(regex) {
    const r = await fetch(`http://127.0.0.1:${this.ports.admin}/stats?format=json&filter=${encodeURIComponent(regex)}`);
    const body = await r.json();
    return Object.fromEntries((body.stats ?? []).filter((s) => 'value' in s).map((s) => [s.name, s.value]));
  }

  log(name) {
    return logTail(path.join(this.paths.logs, `${name}.log`), 1_000_000);
  }

  /** The token service's signing key (PKCS#8 PEM) as a Node KeyObject. */
  signingKey() {
    return crypto.createPrivateKey(fs.readFileSync(this.paths.signingKey));
  }

  async jwks() {
    const r = await fetch(`${this.origin}/.well-known/jwks.json`);
    if (r.status !== 200) throw new Error(`JWKS answered ${r.status}`);
    return r.json();
  }

  async stop() {
    // Envoy first, so no request reaches a stopped backend; then the backends.
    await stopProcess(this.procs.envoy);
    await Promise.all([stopProcess(this.procs.tokenService), stopProcess(this.procs.everything), this.recorder?.stop()]);
  }
}

/**
 * Starts a gateway for a test file. `name` names the run directory under tests/e2e/.artifacts/.
 * Options: accessTokenLifetime ('3s'), leeway ('1s'), jwksRefresh ('60s'), and `routes`: a list of
 * {path, name?, upstream: 'everything' (default) | 'recorder', upstreamPath? ('/mcp' or '/json'),
 *  policy?, maxRequestBytes?, audit?: {redact, max_argument_bytes}} replacing the default /a and /b.
 */
export async function startGateway(name, options = {}) {
  const gateway = new Gateway(name, {
    accessTokenLifetime: '3s',
    leeway: '1s',
    jwksRefresh: '60s',
    ...options,
  });
  try {
    return await gateway.start();
  } catch (e) {
    await gateway.stop().catch(() => {});
    throw e;
  }
}
