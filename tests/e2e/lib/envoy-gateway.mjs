// Envoy configured the way Envoy Gateway delivers an EnvoyExtensionPolicy's Wasm extension, with no
// Kubernetes: what its translator builds from the rendered policy, and the Wasm HTTP cache it
// serves the module from.
//
// Translator (internal/gatewayapi/envoyextensionpolicy.go, internal/xds/translator/wasm.go):
//   - each `wasm[i]` is named `envoyextensionpolicy/<ns>/<policy>/wasm/<i>`; the HTTP filter
//     `envoy.filters.http.wasm/<that name>` is added to the listener's chain with `disabled: true`
//     and enabled per route (typed_per_filter_config, an empty route FilterConfig) on the routes
//     the policy targets;
//   - its PluginConfig: name = `wasm[i].name` (else the generated name), root_id = rootID,
//     configuration = the policy's `config` JSON in a google.protobuf.StringValue, fail_open =
//     failOpen, vm_config {vm_id = the generated name, runtime v8, code.remote {http_uri on the
//     cluster `wasm_cluster` (timeout 10s), sha256 of the module itself, retry_policy 10 retries
//     1s..30s}, environment_variables.host_env_keys = env.hostKeys}; no
//     allow_on_headers_stop_iteration, which the policy cannot set.
// Wasm HTTP cache (internal/wasm/): Envoy Gateway pulls `code.image.url` (comparing the image's
// manifest digest with `code.image.sha256`) or downloads `code.http.url` (comparing the module's
// sha256), keeps the module, and serves it at `/<base64url(sha256(url + salt))>.wasm` on
// envoy-gateway.<ns>.svc.cluster.local:18002, over TLS with client certificates; `wasm_cluster`
// reaches it over HTTP/2 with Envoy's client certificate.
// Here the cache serves on 127.0.0.1 (the hostname stays in the URL Envoy is given, the cluster
// decides where it connects), the image comes from the filter's OCI image layout, an HTTP code
// URL from the built module; the rest of the listener is mcpgate's own rendering, with the
// call-out clusters renamed as the policy's config names them.
import fs from 'node:fs';
import path from 'node:path';
import http2 from 'node:http2';
import crypto from 'node:crypto';
import { pullWasmImage, sha256Hex } from './oci.mjs';
import { structJson } from './istio.mjs';
import { run } from './procs.mjs';
import { replaceMcpgateFilter, renameCluster, renderedFilterConfig, connectionManager } from './bootstrap.mjs';

const WASM_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm';
const ROUTE_FILTER_CONFIG = 'type.googleapis.com/envoy.config.route.v3.FilterConfig';
const STRING_VALUE = 'type.googleapis.com/google.protobuf.StringValue';
const TLS_CONTEXT = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const WASM_CLUSTER = 'wasm_cluster';
const CONTROLLER_NAMESPACE = 'envoy-gateway-system';

/** The one EnvoyExtensionPolicy with Wasm among the rendered manifests. */
export function extensionPolicyOf(manifests) {
  const policies = manifests.filter((m) => m?.kind === 'EnvoyExtensionPolicy' && (m.spec?.wasm ?? []).length > 0);
  if (policies.length !== 1) throw new Error(`expected one rendered EnvoyExtensionPolicy with wasm, found ${policies.length}`);
  return policies[0];
}

/** The generated name of `wasm[index]` (irConfigNameForWasm) and its HTTP filter's name. */
export function wasmNames(policy, index) {
  const name = `envoyextensionpolicy/${policy.metadata.namespace ?? 'default'}/${policy.metadata.name}/wasm/${index}`;
  return { name, filterName: `envoy.filters.http.wasm/${name}` };
}

/**
 * The path prefixes, per host name, of the HTTPRoutes the policy targets (by name, or all of them
 * when it targets the Gateway): where Envoy Gateway enables the filter.
 */
export function targetedPrefixes(manifests, policy) {
  const namespace = policy.metadata.namespace ?? 'default';
  const refs = policy.spec.targetRefs ?? (policy.spec.targetRef ? [policy.spec.targetRef] : []);
  const httpRoutes = manifests.filter((m) => m?.kind === 'HTTPRoute');
  const targeted = refs.some((r) => r.kind === 'Gateway')
    ? httpRoutes
    : httpRoutes.filter((h) => refs.some((r) => r.kind === 'HTTPRoute' && r.name === h.metadata.name && (h.metadata.namespace ?? namespace) === namespace));
  const out = new Map(); // host name -> Set of path prefixes
  for (const h of targeted) {
    for (const host of h.spec.hostnames ?? ['*']) {
      const set = out.get(host) ?? new Set();
      for (const rule of h.spec.rules ?? []) for (const m of rule.matches ?? [{}]) set.add(m.path?.value ?? '/');
      out.set(host, set);
    }
  }
  return out;
}

/** Whether a rendered Envoy route (in a virtual host) is one of the targeted HTTPRoutes' prefixes. */
function targeted(prefixes, vhost, route) {
  const prefix = route.match?.path_separated_prefix ?? route.match?.prefix ?? route.match?.path;
  const hosts = vhost.domains.map((d) => d.replace(/:\d+$/, ''));
  return [...prefixes].some(([host, set]) => (host === '*' || hosts.includes(host)) && set.has(prefix));
}

/** A client certificate for Envoy from the test CA, as Envoy Gateway's certgen issues one. */
async function envoyClientCertificate(tls, dir) {
  const f = (name) => path.join(dir, name);
  const openssl = async (args) => {
    const r = await run('openssl', args, { cwd: dir });
    if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('envoy.key'), '-out', f('envoy.csr'), '-subj', '/CN=envoy']);
  fs.writeFileSync(f('envoy.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await openssl(['x509', '-req', '-in', f('envoy.csr'), '-CA', tls.caCert, '-CAkey', tls.caCert.replace(/\.pem$/, '.key'),
    '-CAcreateserial', '-out', f('envoy.pem'), '-days', '2', '-extfile', f('envoy.ext')]);
  return { cert: f('envoy.pem'), key: f('envoy.key') };
}

/**
 * Envoy Gateway's Wasm HTTP cache on 127.0.0.1: HTTP/2 over TLS, client certificate required.
 * `add(originalUrl, module)` returns the serving URL; `requests` records what Envoy fetched.
 */
export class WasmCacheServer {
  static async start({ tls, port = 0, logFile }) {
    const s = new WasmCacheServer();
    s.salt = crypto.randomBytes(16);
    s.modules = new Map(); // mapping path -> module bytes
    s.requests = [];
    s.logFile = logFile;
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    s.server = http2.createSecureServer({
      cert: fs.readFileSync(tls.cert),
      key: fs.readFileSync(tls.key),
      ca: fs.readFileSync(tls.caCert),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    s.server.on('stream', (stream, headers) => {
      const p = String(headers[':path']).replace(/^\//, '');
      const module = s.modules.get(p);
      const clientCert = stream.session?.socket?.getPeerCertificate?.()?.subject?.CN ?? null;
      s.requests.push({ path: p, status: module ? 200 : 404, clientCert, authority: headers[':authority'] });
      fs.appendFileSync(logFile, `${new Date().toISOString()} GET /${p} (client ${clientCert}) -> ${module ? 200 : 404}\n`);
      if (!module) {
        stream.respond({ ':status': 404 });
        stream.end();
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/wasm', 'content-length': module.length });
      stream.end(module);
    });
    s.sessions = new Set();
    s.server.on('session', (session) => {
      s.sessions.add(session);
      session.on('close', () => s.sessions.delete(session));
    });
    s.server.on('sessionError', () => {});
    await new Promise((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(port, '127.0.0.1', resolve);
    });
    s.port = s.server.address().port;
    return s;
  }

  add(originalUrl, module) {
    const hash = crypto.createHash('sha256').update(originalUrl).update(this.salt).digest();
    // Go's base64.URLEncoding keeps the padding.
    const mappingPath = `${hash.toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}.wasm`;
    this.modules.set(mappingPath, module);
    return `https://envoy-gateway.${CONTROLLER_NAMESPACE}.svc.cluster.local:18002/${mappingPath}`;
  }

  async stop() {
    if (!this.server) return;
    const server = this.server;
    this.server = undefined;
    // Envoy may keep its HTTP/2 connection to the cache open.
    for (const session of this.sessions) session.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}

/** What the cache does for one `code`: the module, its sha256, and the URL Envoy fetches it from. */
function cacheModule(code, { layout, wasmModule, cache }) {
  if (code.type === 'Image' || code.image) {
    let url = code.image.url;
    if (!url.startsWith('oci://')) url = `oci://${url}`;
    const image = pullWasmImage(layout, url);
    if (code.image.sha256 && code.image.sha256 !== image.manifestDigest) {
      throw new Error(`module downloaded from ${url} has checksum ${image.manifestDigest}, which does not match: ${code.image.sha256}`);
    }
    return { module: image.module, sha256: image.moduleSha256, servingUrl: cache.add(url, image.module), image, originalUrl: url };
  }
  // An HTTP code source: the module the URL names is the one the build wrote.
  const module = fs.readFileSync(wasmModule);
  const sha256 = sha256Hex(module);
  if (code.http.sha256 && code.http.sha256 !== sha256) {
    throw new Error(`module downloaded from ${code.http.url} has checksum ${sha256}, which does not match: ${code.http.sha256}`);
  }
  return { module, sha256, servingUrl: cache.add(code.http.url, module), originalUrl: code.http.url };
}

/** The Wasm filter Envoy Gateway's translator builds for `wasm[index]`. */
export function translatedWasmFilter(policy, index, { servingUrl, sha256 }) {
  const wasm = policy.spec.wasm[index];
  const { name, filterName } = wasmNames(policy, index);
  const vmConfig = {
    vm_id: name,
    runtime: 'envoy.wasm.runtime.v8',
    code: {
      remote: {
        http_uri: { uri: servingUrl, cluster: WASM_CLUSTER, timeout: '10s' },
        sha256,
        retry_policy: { num_retries: 10, retry_back_off: { base_interval: '1s', max_interval: '30s' } },
      },
    },
  };
  if ((wasm.env?.hostKeys ?? []).length > 0) vmConfig.environment_variables = { host_env_keys: wasm.env.hostKeys };
  const config = {
    name: wasm.name ?? name,
    vm_config: vmConfig,
    configuration: { '@type': STRING_VALUE, value: wasm.config === undefined ? '' : structJson(wasm.config) },
    fail_open: Boolean(wasm.failOpen),
  };
  if (wasm.rootID !== undefined) config.root_id = wasm.rootID;
  return { name: filterName, disabled: true, typed_config: { '@type': WASM_TYPE, config } };
}

/**
 * Turns mcpgate's own bootstrap into the Envoy Gateway shape, in place, and starts the Wasm HTTP
 * cache (stop it with `cache.stop()`). `manifests`: the rendered Kubernetes objects; `layout`: the
 * filter's OCI image layout; `wasmModule`: the built module (an HTTP code source's); `tls`: the
 * test CA; `port`: the cache's. Returns {policy, names, filterConfig, filter, cache, served, targetedRoutes}; when the
 * cache cannot provide the module (a sha256 the image does not match), the translator's fallback
 * instead: no filter, and the targeted routes answer 500 unless the policy fails open; then
 * {…, error} and no filter.
 */
export async function envoyGatewayShape(bootstrap, { manifests, layout, wasmModule, dir, tls, port, logFile }) {
  const policy = extensionPolicyOf(manifests);
  if (policy.spec.wasm.length !== 1) throw new Error(`expected one wasm extension, the policy has ${policy.spec.wasm.length}`);
  fs.mkdirSync(dir, { recursive: true });
  const cache = await WasmCacheServer.start({ tls, port, logFile });
  try {
    const filterConfig = policy.spec.wasm[0].config;
    const rendered = renderedFilterConfig(bootstrap);
    renameCluster(bootstrap, rendered.token_service_cluster, filterConfig.token_service_cluster);
    if (rendered.internal_cluster) renameCluster(bootstrap, rendered.internal_cluster, filterConfig.internal_cluster);
    const prefixes = targetedPrefixes(manifests, policy);
    const targetedRoutes = connectionManager(bootstrap).route_config.virtual_hosts
      .flatMap((vhost) => vhost.routes.filter((r) => targeted(prefixes, vhost, r)));
    if (targetedRoutes.length === 0) throw new Error('the policy targets no route');

    let served;
    try {
      served = cacheModule(policy.spec.wasm[0].code, { layout, wasmModule, cache });
    } catch (e) {
      // The translator drops the policy's Wasm; fail closed, its routes answer 500 instead.
      replaceMcpgateFilter(bootstrap);
      if (!policy.spec.wasm[0].failOpen) {
        for (const r of targetedRoutes) {
          delete r.route;
          r.direct_response = { status: 500 };
        }
      }
      fs.appendFileSync(logFile, `${new Date().toISOString()} ${e.message}\n`);
      return { policy, names: wasmNames(policy, 0), filterConfig, cache, error: e.message, targetedRoutes: targetedRoutes.length };
    }
    const filter = translatedWasmFilter(policy, 0, served);
    replaceMcpgateFilter(bootstrap, filter);
    for (const r of targetedRoutes) {
      // An empty Any: the filter is enabled on the route, with no route-specific config.
      r.typed_per_filter_config = { ...r.typed_per_filter_config, [filter.name]: { '@type': ROUTE_FILTER_CONFIG, config: {} } };
    }

    const client = await envoyClientCertificate(tls, dir);
    bootstrap.static_resources.clusters.push({
      name: WASM_CLUSTER,
      type: 'STATIC',
      connect_timeout: '10s',
      load_assignment: {
        cluster_name: WASM_CLUSTER,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: cache.port } } } }] }],
      },
      // Envoy Gateway's cluster has protocol GRPC: HTTP/2 to the cache.
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': HTTP_OPTIONS,
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': TLS_CONTEXT,
          common_tls_context: {
            tls_params: { tls_maximum_protocol_version: 'TLSv1_3' },
            validation_context: { trusted_ca: { filename: tls.caCert } },
            tls_certificates: [{ certificate_chain: { filename: client.cert }, private_key: { filename: client.key } }],
          },
        },
      },
    });
    return { policy, names: wasmNames(policy, 0), filterConfig, filter, cache, served, targetedRoutes: targetedRoutes.length };
  } catch (e) {
    await cache.stop();
    throw e;
  }
}
