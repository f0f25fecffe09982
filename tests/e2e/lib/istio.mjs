// Envoy configured the way Istio delivers a WasmPlugin to a gateway, with no Kubernetes: what istiod
// builds from the rendered WasmPlugin, what the istio-agent beside Envoy turns it into, and the
// listener that asks for it by ECDS.
//
// istiod (pilot/pkg/model/extensions.go, pilot/pkg/networking/core/extension/wasmplugin.go):
//   - the HTTP filter is `{name: extensions.istio.io/wasmplugin/<ns>.<name>, config_discovery}`
//     whose config source has an initial fetch timeout of 0s (the listener waits for the plugin)
//     and whose type URLs are the Wasm filter's and the RBAC filter's (the agent's stand-in);
//   - the TypedExtensionConfig under that name holds a Wasm filter whose PluginConfig has
//     name `<ns>.<name>`, root_id = pluginName, configuration = pluginConfig as JSON in a
//     google.protobuf.StringValue, vm_config {runtime v8, code.remote {http_uri oci://…, sha256},
//     environment_variables {key_values with the plugin's resource version, host_env_keys from
//     vmConfig.env entries with valueFrom HOST}}, and failure_policy mapped from failStrategy
//     (FAIL_CLOSE → FAIL_CLOSED, FAIL_OPEN → FAIL_OPEN, FAIL_RELOAD → FAIL_RELOAD); no
//     allow_on_headers_stop_iteration, which a WasmPlugin cannot set.
// istio-agent (pkg/wasm/convert.go, cache.go, imagefetcher.go), on every ECDS update:
//   - pulls the image and compares its manifest digest with `sha256` (or downloads an http(s) URL
//     and compares the module's sha256), writes the module to its cache
//     (`<cache>/<sha256 of the image name or URL>/<digest>.wasm`) and points code at that file;
//   - strips the ISTIO_META_* keys it read from the VM's environment;
//   - on a failed pull, sends Envoy an RBAC filter under the same name instead: deny-all, or
//     allow-all when the plugin fails open.
// The header-holding alternative the renderer offers is an EnvoyFilter instead of the WasmPlugin:
// istiod sends its EXTENSION_CONFIG patch by ECDS as it is (the agent rewrites it the same way)
// and inserts its HTTP_FILTER patch, which asks for it, into the listener.
// Here ECDS comes from a file (path_config_source) instead of istiod's ADS stream, and the image
// from the OCI layout the build writes instead of a registry; the rest of the listener is
// mcpgate's own rendering, with the call-out clusters renamed as the pluginConfig names them
// (Istio's `outbound|<port>||<host>`).
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pullWasmImage, sha256Hex } from './oci.mjs';
import { replaceMcpgateFilter, renameCluster, renderedFilterConfig } from './bootstrap.mjs';

const WASM_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm';
const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const TYPED_EXTENSION_CONFIG = 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig';
const STRING_VALUE = 'type.googleapis.com/google.protobuf.StringValue';
const META_PREFIX = 'ISTIO_META_';
const RESOURCE_VERSION_ENV = 'ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION';
const PULL_POLICY_ENV = 'ISTIO_META_WASM_IMAGE_PULL_POLICY';
const FAILURE_POLICY = { FAIL_CLOSE: 'FAIL_CLOSED', FAIL_OPEN: 'FAIL_OPEN', FAIL_RELOAD: 'FAIL_RELOAD' };

/**
 * JSON as istiod writes a google.protobuf.Struct (jsonpb): compact, object keys sorted at every
 * depth, numbers as doubles.
 */
export function structJson(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]));
    return v;
  };
  return JSON.stringify(sort(value));
}

/** The one WasmPlugin among the rendered manifests. */
export function wasmPluginOf(manifests) {
  const plugins = manifests.filter((m) => m?.kind === 'WasmPlugin' && String(m.apiVersion).startsWith('extensions.istio.io/'));
  if (plugins.length !== 1) throw new Error(`expected one rendered WasmPlugin, found ${plugins.length}`);
  return plugins[0];
}

/** ECDS resource name, HTTP filter name and PluginConfig name istiod gives a WasmPlugin. */
export function istioNames(plugin) {
  const qualified = `${plugin.metadata.namespace ?? 'default'}.${plugin.metadata.name}`;
  return { resourceName: `extensions.istio.io/wasmplugin/${qualified}`, pluginName: qualified };
}

/** What istiod sends for the WasmPlugin: the TypedExtensionConfig (remote code, agent hints). */
export function istiodExtensionConfig(plugin, resourceVersion) {
  const spec = plugin.spec;
  const { resourceName, pluginName } = istioNames(plugin);
  const url = /^[a-z]+:\/\//.test(spec.url) ? spec.url : `oci://${spec.url}`;
  const code = url.startsWith('file://')
    ? { local: { filename: url.slice('file://'.length) } }
    : { remote: { http_uri: { uri: url, timeout: '30s', cluster: '_' }, sha256: spec.sha256 ?? '' } };
  const keyValues = { [RESOURCE_VERSION_ENV]: resourceVersion };
  if (spec.imagePullPolicy && spec.imagePullPolicy !== 'UNSPECIFIED_POLICY') keyValues[PULL_POLICY_ENV] = spec.imagePullPolicy;
  const hostEnvKeys = [];
  for (const e of spec.vmConfig?.env ?? []) {
    if (e.valueFrom === 'HOST') hostEnvKeys.push(e.name);
    else keyValues[e.name] = e.value ?? '';
  }
  const config = {
    name: pluginName,
    root_id: spec.pluginName ?? '',
    vm_config: {
      runtime: 'envoy.wasm.runtime.v8',
      code,
      environment_variables: { key_values: keyValues, ...(hostEnvKeys.length > 0 ? { host_env_keys: hostEnvKeys } : {}) },
    },
  };
  if (spec.pluginConfig && Object.keys(spec.pluginConfig).length > 0) {
    config.configuration = { '@type': STRING_VALUE, value: structJson(spec.pluginConfig) };
  }
  const failurePolicy = FAILURE_POLICY[spec.failStrategy];
  if (failurePolicy) config.failure_policy = failurePolicy;
  return { '@type': TYPED_EXTENSION_CONFIG, name: resourceName, typed_config: { '@type': WASM_TYPE, config } };
}

/** The RBAC filter the agent substitutes when it cannot fetch the module. */
function rbacStandIn(name, failOpen) {
  const rbac = failOpen
    ? { '@type': RBAC_TYPE, rules_stat_prefix: 'wasm-default-allow' }
    : { '@type': RBAC_TYPE, rules: {}, rules_stat_prefix: 'wasm-default-deny' };
  return { '@type': TYPED_EXTENSION_CONFIG, name, typed_config: rbac };
}

/**
 * What the agent fetches for a remote code URL: an oci:// image from `layout` (checked against
 * `sha256` by its manifest digest), or an http(s) URL's module (the built `wasmModule`, checked by
 * its own sha256). {name (cache directory key), checksum, module, image?}.
 */
function fetchModule(url, sha256, { layout, wasmModule }) {
  let fetched;
  if (/^https?:\/\//.test(url)) {
    const module = fs.readFileSync(wasmModule);
    fetched = { name: url, checksum: sha256Hex(module), module };
  } else {
    const image = pullWasmImage(layout, url);
    fetched = { name: image.reference.name, checksum: image.manifestDigest, module: image.module, image };
  }
  const expected = sha256 === 'nil' ? '' : sha256;
  if (expected && expected !== fetched.checksum) {
    throw new Error(`module downloaded from ${url} has checksum ${fetched.checksum}, which does not match: ${expected}`);
  }
  return fetched;
}

/**
 * What the agent hands Envoy for istiod's `extensionConfig`: the module fetched into `cacheDir`,
 * code rewritten to that file, ISTIO_META_* keys stripped; or, when the fetch fails, the RBAC
 * stand-in. Returns {extensionConfig, modulePath?, image?, pullError?}.
 */
export function agentRewrite(extensionConfig, { layout, wasmModule, cacheDir }) {
  const out = structuredClone(extensionConfig);
  const config = out.typed_config.config;
  const vm = config.vm_config;
  const remote = vm.code.remote;
  if (!remote) return { extensionConfig: out };
  const env = vm.environment_variables;
  if (env) {
    for (const k of Object.keys(env.key_values ?? {})) if (k.startsWith(META_PREFIX)) delete env.key_values[k];
    if (Object.keys(env.key_values ?? {}).length === 0) {
      if ((env.host_env_keys ?? []).length === 0) delete vm.environment_variables;
      else delete env.key_values;
    }
  }
  try {
    const fetched = fetchModule(remote.http_uri.uri, remote.sha256, { layout, wasmModule });
    const dir = path.join(cacheDir, sha256Hex(fetched.name));
    fs.mkdirSync(dir, { recursive: true });
    const modulePath = path.join(dir, `${fetched.checksum}.wasm`);
    fs.writeFileSync(modulePath, fetched.module);
    vm.code = { local: { filename: modulePath } };
    return { extensionConfig: out, modulePath, image: fetched.image };
  } catch (e) {
    const failOpen = config.failure_policy ? config.failure_policy === 'FAIL_OPEN' : Boolean(config.fail_open);
    return { extensionConfig: rbacStandIn(out.name, failOpen), pullError: e.message };
  }
}

/**
 * The rendered EnvoyFilter that carries the filter (the header-holding alternative): its
 * EXTENSION_CONFIG value as the ECDS resource istiod sends, and its HTTP_FILTER value.
 */
export function envoyFilterExtension(manifests) {
  const patches = manifests.filter((m) => m?.kind === 'EnvoyFilter').flatMap((m) => m.spec?.configPatches ?? []);
  const extensions = patches.filter((p) => p.applyTo === 'EXTENSION_CONFIG');
  if (extensions.length !== 1) throw new Error(`expected a WasmPlugin or one EnvoyFilter EXTENSION_CONFIG patch, found ${extensions.length}`);
  const { name, typed_config: typedConfig } = extensions[0].patch.value;
  const httpFilter = patches.find((p) => p.applyTo === 'HTTP_FILTER' && p.patch?.value?.name === name)?.patch.value;
  if (!httpFilter?.config_discovery) throw new Error(`no EnvoyFilter HTTP_FILTER patch asks for ${name} by ECDS`);
  return { resource: { '@type': TYPED_EXTENSION_CONFIG, name, typed_config: typedConfig }, httpFilter };
}

/**
 * One ECDS update of `resource` (what istiod sends), forwarded as the agent does: writes what
 * istiod sent (`istiod-ecds.json`) and what Envoy gets (`ecds.json`, replaced by a rename: Envoy
 * watches the file for moves). Returns {istiod, extensionConfig, modulePath?, image?, pullError?}.
 */
function deliver(resource, version, { layout, wasmModule, dir, ecdsFile }) {
  const agent = agentRewrite(resource, { layout, wasmModule, cacheDir: path.join(dir, 'wasm-cache') });
  fs.writeFileSync(path.join(dir, 'istiod-ecds.json'), JSON.stringify({ version_info: version, resources: [resource] }, null, 1));
  const tmp = `${ecdsFile}.${version}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ version_info: version, resources: [agent.extensionConfig] }, null, 1));
  fs.renameSync(tmp, ecdsFile);
  return { istiod: resource, ...agent };
}

// A Kubernetes resourceVersion: opaque, changes with every update of the object.
const resourceVersion = () => String(crypto.randomInt(100_000, 999_999));

/**
 * Turns mcpgate's own bootstrap into the Istio shape, in place. `manifests`: the rendered
 * Kubernetes objects (a WasmPlugin, or the header-holding EnvoyFilter); `layout`: the filter's OCI
 * image layout; `wasmModule`: the built module (what an http(s) code URL serves); `dir`: where the
 * ECDS files and the agent's module cache go. Returns what the
 * suite may check: {plugin (the WasmPlugin, if any), names, filterConfig, istiod (what istiod
 * sent), extensionConfig (what Envoy got), modulePath, image, pullError, ecdsFile,
 * deliver(plugin) (a later update of the WasmPlugin, delivered to the running Envoy)}.
 */
export function istioShape(bootstrap, { manifests, layout, wasmModule, dir }) {
  const plugins = manifests.filter((m) => m?.kind === 'WasmPlugin');
  const plugin = plugins.length > 0 ? wasmPluginOf(manifests) : undefined;
  const version = resourceVersion();
  let resource;
  let httpFilter;
  if (plugin) {
    resource = istiodExtensionConfig(plugin, version);
    httpFilter = {
      name: istioNames(plugin).resourceName,
      config_discovery: { config_source: { ads: {}, initial_fetch_timeout: '0s' }, type_urls: [WASM_TYPE, RBAC_TYPE] },
    };
  } else {
    ({ resource, httpFilter } = envoyFilterExtension(manifests));
  }
  const names = { resourceName: resource.name, pluginName: resource.typed_config.config.name };
  const filterConfig = JSON.parse(resource.typed_config.config.configuration.value);
  fs.mkdirSync(dir, { recursive: true });
  const ecdsFile = path.join(dir, 'ecds.json');
  const where = { layout, wasmModule, dir, ecdsFile };
  const first = deliver(resource, version, where);

  // Same address, Istio's names: the clusters the filter's call-outs use.
  const rendered = renderedFilterConfig(bootstrap);
  renameCluster(bootstrap, rendered.token_service_cluster, filterConfig.token_service_cluster);
  if (rendered.internal_cluster) renameCluster(bootstrap, rendered.internal_cluster, filterConfig.internal_cluster);
  // xDS subscriptions need a node; Istio names a gateway's `router~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
  const namespace = (plugin ?? manifests.find((m) => m?.kind === 'EnvoyFilter')).metadata.namespace ?? 'default';
  bootstrap.node = { id: `router~127.0.0.1~mcpgate-gateway.${namespace}~${namespace}.svc.cluster.local`, cluster: `mcpgate-gateway.${namespace}` };
  // istiod's ADS stream, here a file; the rest of the discovery config as istiod (or the patch) has it.
  const { ads, ...source } = httpFilter.config_discovery.config_source;
  replaceMcpgateFilter(bootstrap, {
    ...httpFilter,
    config_discovery: {
      ...httpFilter.config_discovery,
      config_source: { ...source, path_config_source: { path: ecdsFile }, resource_api_version: 'V3' },
    },
  });
  return {
    plugin, names, filterConfig, ecdsFile, ...first,
    deliver: (updated) => {
      const v = resourceVersion();
      return deliver(istiodExtensionConfig(updated, v), v, where);
    },
  };
}
