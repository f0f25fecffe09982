// The filter delivered the way Envoy Gateway delivers the rendered EnvoyExtensionPolicy
// (lib/envoy-gateway.mjs: the Wasm filter its translator builds, disabled on the listener and
// enabled per route, the module fetched from its Wasm HTTP cache over mutual TLS), on Envoy 1.36 and
// 1.40: the suite of lib/shape-suite.mjs. Also a policy rendered with a digest the image does not
// match: Envoy Gateway fails closed.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { shapeSuite, moduleByUrlSuite } from '../lib/shape-suite.mjs';
import { startGateway } from '../lib/gateway.mjs';
import { tokenForger, send, call } from '../lib/mcp-http.mjs';
import { request } from '../lib/net.mjs';
import { sha256Hex } from '../lib/oci.mjs';

shapeSuite('envoy-gateway', { file: '14-envoy-gateway' });
moduleByUrlSuite('envoy-gateway', { file: '14-envoy-gateway' });

for (const version of ['1.36', '1.40']) {
  describe(`envoy-gateway shape on Envoy ${version}: a policy whose sha256 the image does not match`, () => {
    let gw;
    before(async () => {
      // An operator passing the digest of another build of the image (render --sha256).
      gw = await startGateway(`14-envoy-gateway-${version}-wrong-sha256`, {
        shape: 'envoy-gateway', envoyVersion: version, accessTokenLifetime: '600s',
        routes: [{ path: '/h', upstream: 'recorder', policy: { deny: { and: [{ mcp_tool: { starts_with: 'admin_' } }] } } }],
        renderArgs: ['--sha256', sha256Hex('another build of the filter image')],
      });
    }, { timeout: 900_000 });
    after(async () => {
      await gw?.stop();
    });

    test('the MCP route answers 500 and nothing reaches the MCP server (failOpen: false); the token service paths still work', async () => {
      assert.match(gw.envoyGateway.error ?? '', /does not match/, 'Envoy Gateway refuses the image');
      assert.equal(gw.envoyGateway.policy.spec.wasm[0].failOpen, false, 'the rendered policy fails closed');
      const token = (await tokenForger(gw))('/h');
      for (const body of [call('echo', { message: 'hi' }), call('admin_reset')]) {
        gw.recorder.clear();
        const res = await send(gw, { path: '/h', token, body });
        assert.equal(res.status, 500, `the targeted route's direct response: ${res.status} ${res.text.slice(0, 200)}`);
        await sleep(50);
        assert.deepEqual(gw.recorder.arrivals, [], 'nothing reached the MCP server');
      }
      assert.deepEqual(gw.envoyGateway.cache.requests, [], 'Envoy fetched no module');
      const meta = await request(`${gw.origin}/.well-known/oauth-authorization-server`);
      assert.equal(meta.status, 200, 'the token service routes are not the policy\'s');
    });
  });
}
