// A changed gateway file applies without a restart: Envoy follows the files `render envoy --watch`
// keeps in step with it (the filter's configuration by ECDS, so the listener and its open streams
// stay), and the token service reloads the same file. An SDK client, connected and holding its SSE
// stream, sees the new policy on its next call within 5 seconds; the stream stays open. An invalid
// file changes nothing, and both processes' logs name the field.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startGateway, USER } from '../lib/gateway.mjs';
import { Browser, CallbackServer } from '../lib/browser.mjs';
import { E2EOAuthProvider } from '../lib/provider.mjs';

const ALLOW_EXAMPLE_COM = { allow: { and: [{ domain: { is: 'example.com' } }] } };
const DENY_ECHO = { ...ALLOW_EXAMPLE_COM, deny: { or: [{ mcp_tool: { is: 'echo' } }] } };

let gw;
let browser;
let callback;
before(async () => {
  gw = await startGateway('15-reload', {
    watch: true,
    accessTokenLifetime: '600s',
    routes: [{ path: '/a', policy: ALLOW_EXAMPLE_COM }],
  });
  callback = await CallbackServer.start();
  browser = await Browser.launch(gw.dir);
}, { timeout: 900_000 });
after(async () => {
  await browser?.close();
  await callback?.close();
  await gw?.stop();
});

/**
 * A fetch for the SDK that watches the standalone SSE stream (GET) it opens: `streams` gets one
 * {status, bytes, closed} per stream, `closed` turning true when the stream ends.
 */
function streamWatchingFetch(streams) {
  return async (url, init) => {
    const res = await fetch(url, init);
    const isStream = (init?.method ?? 'GET') === 'GET' && (res.headers.get('content-type') ?? '').includes('text/event-stream');
    if (!isStream || !res.body) return res;
    const [forSdk, forTest] = res.body.tee();
    const stream = { status: res.status, bytes: 0, closed: false };
    streams.push(stream);
    (async () => {
      const reader = forTest.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          stream.bytes += value.length;
        }
      } catch {
        // A reset ends the stream as well.
      }
      stream.closed = true;
    })();
    return new Response(forSdk, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

const echo = (client, message) => client.callTool({ name: 'echo', arguments: { message } });
const isDenial = (e) => e instanceof McpError && e.code === -32001;

/** Polls until `check` holds; returns the milliseconds it took, or throws after `ms`. */
async function within(ms, what, check) {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

test('a policy change in the gateway file reaches a connected SDK client\'s next call; its stream stays open; an invalid file changes nothing', { timeout: 180_000 }, async (t) => {
  const url = new URL(gw.route('/a').url);
  const auth = new E2EOAuthProvider({ browser, redirectUrl: callback.url, user: USER });
  const first = new Client({ name: 'mcpgate-e2e-reload', version: '1.0.0' });
  const firstTransport = new StreamableHTTPClientTransport(url, { authProvider: auth });
  await assert.rejects(first.connect(firstTransport), (e) => e instanceof UnauthorizedError);
  await first.close().catch(() => {});
  const code = auth.authorizations[0]?.result.callback?.searchParams.get('code');
  assert.ok(code, `the browser sign-in ended on the client's callback: ${JSON.stringify(auth.authorizations[0]?.result.steps)}`);
  await firstTransport.finishAuth(code);

  const streams = [];
  const client = new Client({ name: 'mcpgate-e2e-reload', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url, { authProvider: auth, fetch: streamWatchingFetch(streams) }));
  t.after(() => client.close());
  assert.equal((await echo(client, 'before')).content?.[0]?.text, 'Echo: before', 'echo is allowed at first');
  await within(5_000, 'the SDK opens its SSE stream', () => streams.length > 0);
  const stream = streams[0];
  assert.equal(stream.status, 200, 'the SSE stream is open');
  const listenerUpdates = await gw.stat('listener_manager.lds.update_success');

  // The operator denies the echo tool.
  gw.route('/a').policy = DENY_ECHO;
  gw.rewriteConfig();
  const tookMs = await within(5_000, 'the next echo call is denied', () => echo(client, 'after').then(() => false, (e) => {
    if (isDenial(e)) return true;
    throw e;
  }));
  t.diagnostic(`the new policy applied ${tookMs} ms after the file changed`);
  const add = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
  assert.match(add.content?.[0]?.text ?? '', /5/, 'a tool the new policy still allows works on the same session');
  assert.equal(stream.closed, false, 'the SSE stream opened before the change is still open');
  assert.equal(await gw.stat('listener_manager.lds.update_success'), listenerUpdates, 'the listener was not replaced (no drain)');
  // The token service follows the same file: its reload line names what changed.
  await within(5_000, 'the token service reloads', () => /gateway file reloaded[^\n]*routes\[0\]\.policy/.test(gw.log('token-service')));

  // An invalid file: a misspelt criterion. Nothing changes; both logs name the field.
  gw.route('/a').policy = { ...DENY_ECHO, allow: { and: [{ domian: { is: 'example.com' } }] } };
  gw.rewriteConfig();
  const field = /routes\[0\]\.policy\.allow\.and\[0\]\.domian/;
  await within(5_000, 'render envoy --watch refuses the file, naming the field',
    () => /not rendered/.test(gw.log('envoy-config')) && field.test(gw.log('envoy-config')));
  await within(5_000, 'the token service refuses the file, naming the field',
    () => /not applied/.test(gw.log('token-service')) && field.test(gw.log('token-service')));
  await assert.rejects(echo(client, 'still denied'), isDenial, 'the last valid policy stays in force');
  const again = await client.callTool({ name: 'get-sum', arguments: { a: 1, b: 1 } });
  assert.match(again.content?.[0]?.text ?? '', /2/, 'allowed calls keep working');
  assert.equal(stream.closed, false, 'the SSE stream is still open');

  // Fixed again: the next valid file applies as usual.
  gw.route('/a').policy = ALLOW_EXAMPLE_COM;
  gw.rewriteConfig();
  await within(5_000, 'echo is allowed again', () => echo(client, 'again').then(() => true, (e) => {
    if (isDenial(e)) return false;
    throw e;
  }));
  assert.equal(stream.closed, false, 'the SSE stream survived every change');
});
