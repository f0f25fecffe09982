// The filter delivered the way Envoy Gateway delivers the rendered EnvoyExtensionPolicy
// (lib/envoy-gateway.mjs: the Wasm filter its translator builds, disabled on the listener and
// enabled per route, the module fetched from its Wasm HTTP cache over mutual TLS), on Envoy 1.36 and
// 1.40: the suite of lib/shape-suite.mjs.
import { shapeSuite } from '../lib/shape-suite.mjs';

shapeSuite('envoy-gateway', { file: '14-envoy-gateway' });
