// The Envoy bootstrap mcpgate renders for itself (`envoy-bootstrap`), read and edited for the other
// delivery shapes: they keep its listener, routes, access log and MCP server clusters (routes are
// not what those suites test) and change only what a mesh control plane delivers differently: the
// mcpgate HTTP filter and the names of the clusters the filter calls out to.
import fs from 'node:fs';
import YAML from 'yaml';

/** The static bootstrap in `file` as an object. */
export function readBootstrap(file) {
  return YAML.parse(fs.readFileSync(file, 'utf8'));
}

export function writeBootstrap(file, bootstrap) {
  fs.writeFileSync(file, YAML.stringify(bootstrap, { lineWidth: 0 }));
}

/** The listener `mcpgate`'s HTTP connection manager config. */
export function connectionManager(bootstrap) {
  const listener = bootstrap.static_resources.listeners.find((l) => l.name === 'mcpgate');
  if (!listener) throw new Error('the rendered bootstrap has no listener "mcpgate"');
  const hcm = listener.filter_chains[0].filters.find((f) => f.name === 'envoy.filters.network.http_connection_manager');
  return hcm.typed_config;
}

/** The rendered mcpgate Wasm filter entry of the HTTP filter chain. */
export function mcpgateFilter(bootstrap) {
  const filter = connectionManager(bootstrap).http_filters.find((f) => f.name === 'mcpgate');
  if (!filter) throw new Error('the rendered bootstrap has no HTTP filter "mcpgate"');
  return filter;
}

/** The filter configuration (FilterConfig JSON) the rendered bootstrap hands the filter. */
export function renderedFilterConfig(bootstrap) {
  return JSON.parse(mcpgateFilter(bootstrap).typed_config.config.configuration.value);
}

/** Puts `filters` where the rendered mcpgate filter was. */
export function replaceMcpgateFilter(bootstrap, ...filters) {
  const hcm = connectionManager(bootstrap);
  const i = hcm.http_filters.findIndex((f) => f.name === 'mcpgate');
  hcm.http_filters.splice(i, 1, ...filters);
}

/** Every route of the `mcpgate` route table, flattened over its virtual hosts. */
export function routes(bootstrap) {
  return connectionManager(bootstrap).route_config.virtual_hosts.flatMap((vh) => vh.routes);
}

/** Renames cluster `from` to `to`: the cluster itself and every route that sends to it. */
export function renameCluster(bootstrap, from, to) {
  if (from === to) return;
  const cluster = bootstrap.static_resources.clusters.find((c) => c.name === from);
  if (!cluster) throw new Error(`the rendered bootstrap has no cluster ${from}`);
  cluster.name = to;
  if (cluster.load_assignment) cluster.load_assignment.cluster_name = to;
  for (const r of routes(bootstrap)) if (r.route?.cluster === from) r.route.cluster = to;
}

/** The `host:port` a rendered cluster sends to. */
export function clusterAddress(bootstrap, name) {
  const cluster = bootstrap.static_resources.clusters.find((c) => c.name === name);
  const a = cluster?.load_assignment?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address;
  if (!a) throw new Error(`the rendered bootstrap has no cluster ${name} with an address`);
  return { address: a.address, port: a.port_value };
}
