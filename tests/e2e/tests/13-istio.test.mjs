// The filter delivered the way Istio delivers the rendered WasmPlugin (lib/istio.mjs: by ECDS from a
// file, its TypedExtensionConfig built as istiod and the istio-agent build it, the module pulled
// from the filter's OCI image), on Envoy 1.36 and 1.40: the suite of lib/shape-suite.mjs. Also the
// rendering's header-holding alternative, an EnvoyFilter whose extension config sets
// allow_on_headers_stop_iteration, delivered the same way.
import { shapeSuite, moduleByUrlSuite } from '../lib/shape-suite.mjs';

shapeSuite('istio', { file: '13-istio', headerModes: ['hold_headers'] });
moduleByUrlSuite('istio', { file: '13-istio' });
