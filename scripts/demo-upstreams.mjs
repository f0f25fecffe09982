// The demo's stand-ins for what a real deployment has elsewhere, on 127.0.0.1 (started by demo.sh):
//   :18103  an OAuth provider that behaves like GitHub's (consent page, short-lived tokens that
//           rotate on refresh, GET /user), because github.com needs a registered app
//   :18102  an MCP server (official SDK) whose `whoami` tool calls that provider's /user with the
//           bearer the gateway swaps in; route /github in gateway.yaml (upstream_oauth2)
//   :18110  a small app behind the client route /app: it lists the user's MCP servers with the
//           token the gateway hands it, links to connect them, and calls tools with that token
// They are the end-to-end suite's own test doubles (tests/e2e/lib), so the demo and the tests
// exercise the same flows.
import { GitHubProvider } from '../tests/e2e/lib/github-provider.mjs';
import { UpstreamMcpServer } from '../tests/e2e/lib/upstream-mcp.mjs';
import { ClientApp } from '../tests/e2e/lib/client-app.mjs';

const gateway = 'http://localhost:18080';

const provider = new GitHubProvider({ port: 18103, expiresIn: 3600 });
provider.addClient({
  clientId: 'mcpgate-demo',
  clientSecret: 'mcpgate-demo-provider-secret',
  redirectUris: [`${gateway}/.mcpgate/upstream/callback`],
  name: 'mcpgate demo',
});
await provider.start();

const mcp = new UpstreamMcpServer({
  port: 18102,
  providerUrl: provider.origin,
  jwksUrl: `${gateway}/.well-known/jwks.json`,
  issuer: gateway,
  audience: `${gateway}/github`,
  name: 'github-standin',
});
await mcp.start();

const app = new ClientApp({ port: 18110, gatewayOrigin: gateway, issuer: gateway, appUrl: `${gateway}/app` });
await app.start();

console.log('demo upstreams: provider :18103, GitHub-like MCP server :18102, app :18110');
const stop = async () => {
  await Promise.allSettled([app.stop?.(), mcp.stop?.(), provider.stop?.()]);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
