// The demo's stand-ins for what a real deployment has elsewhere, on 127.0.0.1 (started by demo.sh):
//   :18103  an OAuth provider that behaves like GitHub's (consent page, short-lived tokens that
//           rotate on refresh, GET /user), because github.com needs a registered app
//   :18102  an MCP server (official SDK) whose `whoami` tool calls that provider's /user with the
//           bearer the gateway swaps in; route /github in gateway.yaml (upstream_oauth2)
//   :18106  an OAuth provider and API that behave like Notion's (consent page, search, pages,
//           blocks), which the notes MCP server (servers/notes, route /notes) calls as the user
// They are the end-to-end suite's own test doubles (tests/e2e/lib), so the demo and the tests
// exercise the same flows.
import { GitHubProvider } from '../tests/e2e/lib/github-provider.mjs';
import { NotesProvider } from '../tests/e2e/lib/notes-provider.mjs';
import { UpstreamMcpServer } from '../tests/e2e/lib/upstream-mcp.mjs';

const gateway = 'http://localhost:18080';
const callback = `${gateway}/.mcpgate/upstream/callback`;

const provider = new GitHubProvider({ port: 18103, expiresIn: 3600 });
provider.addClient({
  clientId: 'mcpgate-demo',
  clientSecret: 'mcpgate-demo-provider-secret',
  redirectUris: [callback],
  name: 'mcpgate demo',
});
await provider.start();

// The client registered here is the one gateway.yaml's /notes route names.
const notes = new NotesProvider({ port: 18106 });
notes.addClient({
  clientId: 'mcpgate-demo-notes',
  clientSecret: 'mcpgate-demo-notes-secret',
  redirectUris: [callback],
  name: 'mcpgate demo',
});
await notes.start();

const mcp = new UpstreamMcpServer({
  port: 18102,
  providerUrl: provider.origin,
  jwksUrl: `${gateway}/.well-known/jwks.json`,
  issuer: gateway,
  audience: `${gateway}/github`,
  name: 'github-standin',
});
await mcp.start();

console.log('demo upstreams: GitHub-like provider :18103 and MCP server :18102, Notion-like provider :18106');
const stop = async () => {
  await Promise.allSettled([mcp.stop?.(), provider.stop?.(), notes.stop?.()]);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
