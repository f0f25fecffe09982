// A small OTLP/HTTP trace collector in the test process on 127.0.0.1, as the OpenTelemetry
// Collector's otlphttp receiver answers (OTLP specification, "OTLP/HTTP"):
//   POST /v1/traces   Content-Type application/x-protobuf (binary ExportTraceServiceRequest: what
//                     Envoy's OpenTelemetry tracer and Rust's opentelemetry-otlp HTTP exporter send)
//                     or application/json (OTLP/JSON: lowerCamelCase fields, hex trace and span
//                     ids, enums as numbers, 64-bit integers as numbers or strings);
//                     Content-Encoding gzip or none. 200 with an empty ExportTraceServiceResponse
//                     in the request's encoding; 400 with a google.rpc.Status for a body that does
//                     not decode, 415 for another content type or encoding, 405/404 otherwise.
// The messages are a protobufjs description of opentelemetry-proto's trace service (collector/
// trace/v1, trace/v1, common/v1, resource/v1; the field numbers are the wire format), written
// here from those .proto files.
//
// Every decoded span:
//   {traceId, spanId, parentSpanId (hex; '' when none), traceState, flags, name, kind (1 internal,
//    2 server, 3 client, 4 producer, 5 consumer), startTimeUnixNano, endTimeUnixNano (decimal
//    strings: nanoseconds do not fit a double), attributes {key: value}, events [{name,
//    timeUnixNano, attributes}], links [{traceId, spanId, attributes}], status {code (0 unset,
//    1 ok, 2 error), message}, resource {key: value}, scope {name, version}}
// Attribute values: string, boolean, number (an int64 beyond 2^53 stays a decimal string),
// array, object (kvlist), Buffer (bytes).
import zlib from 'node:zlib';
import protobuf from 'protobufjs';
import { startHttpServer, stopHttpServer } from './net.mjs';

const KV = { fields: { key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } } };
const OTLP = {
  nested: {
    opentelemetry: { nested: { proto: { nested: {
      common: { nested: { v1: { nested: {
        AnyValue: {
          oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] } },
          fields: {
            stringValue: { type: 'string', id: 1 },
            boolValue: { type: 'bool', id: 2 },
            intValue: { type: 'int64', id: 3 },
            doubleValue: { type: 'double', id: 4 },
            arrayValue: { type: 'ArrayValue', id: 5 },
            kvlistValue: { type: 'KeyValueList', id: 6 },
            bytesValue: { type: 'bytes', id: 7 },
          },
        },
        ArrayValue: { fields: { values: { rule: 'repeated', type: 'AnyValue', id: 1 } } },
        KeyValueList: { fields: { values: { rule: 'repeated', type: 'KeyValue', id: 1 } } },
        KeyValue: KV,
        InstrumentationScope: {
          fields: {
            name: { type: 'string', id: 1 },
            version: { type: 'string', id: 2 },
            attributes: { rule: 'repeated', type: 'KeyValue', id: 3 },
            droppedAttributesCount: { type: 'uint32', id: 4 },
          },
        },
      } } } },
      resource: { nested: { v1: { nested: {
        Resource: {
          fields: {
            attributes: { rule: 'repeated', type: 'opentelemetry.proto.common.v1.KeyValue', id: 1 },
            droppedAttributesCount: { type: 'uint32', id: 2 },
          },
        },
      } } } },
      trace: { nested: { v1: { nested: {
        ResourceSpans: {
          fields: {
            resource: { type: 'opentelemetry.proto.resource.v1.Resource', id: 1 },
            scopeSpans: { rule: 'repeated', type: 'ScopeSpans', id: 2 },
            schemaUrl: { type: 'string', id: 3 },
          },
        },
        ScopeSpans: {
          fields: {
            scope: { type: 'opentelemetry.proto.common.v1.InstrumentationScope', id: 1 },
            spans: { rule: 'repeated', type: 'Span', id: 2 },
            schemaUrl: { type: 'string', id: 3 },
          },
        },
        Span: {
          fields: {
            traceId: { type: 'bytes', id: 1 },
            spanId: { type: 'bytes', id: 2 },
            traceState: { type: 'string', id: 3 },
            parentSpanId: { type: 'bytes', id: 4 },
            flags: { type: 'fixed32', id: 16 },
            name: { type: 'string', id: 5 },
            kind: { type: 'SpanKind', id: 6 },
            startTimeUnixNano: { type: 'fixed64', id: 7 },
            endTimeUnixNano: { type: 'fixed64', id: 8 },
            attributes: { rule: 'repeated', type: 'opentelemetry.proto.common.v1.KeyValue', id: 9 },
            droppedAttributesCount: { type: 'uint32', id: 10 },
            events: { rule: 'repeated', type: 'Event', id: 11 },
            droppedEventsCount: { type: 'uint32', id: 12 },
            links: { rule: 'repeated', type: 'Link', id: 13 },
            droppedLinksCount: { type: 'uint32', id: 14 },
            status: { type: 'Status', id: 15 },
          },
          nested: {
            SpanKind: {
              values: {
                SPAN_KIND_UNSPECIFIED: 0, SPAN_KIND_INTERNAL: 1, SPAN_KIND_SERVER: 2,
                SPAN_KIND_CLIENT: 3, SPAN_KIND_PRODUCER: 4, SPAN_KIND_CONSUMER: 5,
              },
            },
            Event: {
              fields: {
                timeUnixNano: { type: 'fixed64', id: 1 },
                name: { type: 'string', id: 2 },
                attributes: { rule: 'repeated', type: 'opentelemetry.proto.common.v1.KeyValue', id: 3 },
                droppedAttributesCount: { type: 'uint32', id: 4 },
              },
            },
            Link: {
              fields: {
                traceId: { type: 'bytes', id: 1 },
                spanId: { type: 'bytes', id: 2 },
                traceState: { type: 'string', id: 3 },
                attributes: { rule: 'repeated', type: 'opentelemetry.proto.common.v1.KeyValue', id: 4 },
                droppedAttributesCount: { type: 'uint32', id: 5 },
                flags: { type: 'fixed32', id: 6 },
              },
            },
          },
        },
        Status: {
          fields: { message: { type: 'string', id: 2 }, code: { type: 'StatusCode', id: 3 } },
          nested: { StatusCode: { values: { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 } } },
        },
      } } } },
      collector: { nested: { trace: { nested: { v1: { nested: {
        ExportTraceServiceRequest: {
          fields: { resourceSpans: { rule: 'repeated', type: 'opentelemetry.proto.trace.v1.ResourceSpans', id: 1 } },
        },
        ExportTraceServiceResponse: { fields: { partialSuccess: { type: 'ExportTracePartialSuccess', id: 1 } } },
        ExportTracePartialSuccess: {
          fields: { rejectedSpans: { type: 'int64', id: 1 }, errorMessage: { type: 'string', id: 2 } },
        },
      } } } } } },
    } } } },
    google: { nested: { rpc: { nested: {
      Status: {
        fields: {
          code: { type: 'int32', id: 1 },
          message: { type: 'string', id: 2 },
        },
      },
    } } } },
  },
};

/** The protobufjs root of the OTLP trace messages (for tests that build exports themselves). */
export const otlpRoot = protobuf.Root.fromJSON(OTLP);
export const ExportTraceServiceRequest = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
export const ExportTraceServiceResponse = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');
const RpcStatus = otlpRoot.lookupType('google.rpc.Status');

const MAX_BODY = 16 * 1024 * 1024;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// 64-bit integers arrive as decimal strings (protobuf, through toObject) or as numbers or decimal
// strings (OTLP/JSON); a Long object is taken too.
function toBigInt(v, signed) {
  if (typeof v === 'object' && v !== null && 'low' in v) {
    const u = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
    return signed ? BigInt.asIntN(64, u) : u;
  }
  return BigInt(v);
}

/** fixed64 nanoseconds as a decimal string ('0' when absent). */
const u64 = (v) => (v === undefined || v === null ? '0' : toBigInt(v, false).toString());

/** int64 attribute values: a Number when exact, else the decimal string. */
function int64(v) {
  const b = toBigInt(v, true);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b.toString();
}

// Protobuf (decoded with protobufjs: bytes as Buffers, 64-bit as strings) and OTLP/JSON (ids in hex,
// bytes values in base64, 64-bit as strings or numbers) go through the same functions; `json`
// says which one arrived.
function anyValue(v, json) {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return int64(v.intValue);
  if (v.doubleValue !== undefined) return typeof v.doubleValue === 'string' ? Number(v.doubleValue) : v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map((x) => anyValue(x, json));
  if (v.kvlistValue !== undefined) return attributes(v.kvlistValue.values, json);
  if (v.bytesValue !== undefined) return json ? Buffer.from(v.bytesValue, 'base64') : Buffer.from(v.bytesValue);
  return null;
}

function attributes(list, json) {
  const out = {};
  for (const kv of list ?? []) out[kv.key] = anyValue(kv.value, json);
  return out;
}

const id = (v, json) => (json ? String(v ?? '').toLowerCase() : Buffer.from(v ?? []).toString('hex'));

function spansOf(request, json) {
  const out = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes, json);
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? '', version: ss.scope?.version ?? '' };
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: id(s.traceId, json),
          spanId: id(s.spanId, json),
          parentSpanId: id(s.parentSpanId, json),
          traceState: s.traceState ?? '',
          flags: s.flags ?? 0,
          name: s.name ?? '',
          kind: s.kind ?? 0,
          startTimeUnixNano: u64(s.startTimeUnixNano),
          endTimeUnixNano: u64(s.endTimeUnixNano),
          attributes: attributes(s.attributes, json),
          events: (s.events ?? []).map((e) => ({ name: e.name ?? '', timeUnixNano: u64(e.timeUnixNano), attributes: attributes(e.attributes, json) })),
          links: (s.links ?? []).map((l) => ({ traceId: id(l.traceId, json), spanId: id(l.spanId, json), attributes: attributes(l.attributes, json) })),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          resource,
          scope,
        });
      }
    }
  }
  return out;
}

/** Decodes one export body (already un-gzipped) into the span list; throws on a malformed one. */
export function decodeTraces(body, contentType) {
  if (contentType === 'application/json') {
    const request = JSON.parse(body.toString('utf8'));
    if (!request || typeof request !== 'object' || Array.isArray(request)) throw new Error('not an ExportTraceServiceRequest object');
    // OTLP/JSON enums are numbers; a name is tolerated as the spec's JSON mapping allows.
    for (const rs of request.resourceSpans ?? []) {
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          if (typeof s.kind === 'string') s.kind = otlpRoot.lookupEnum('opentelemetry.proto.trace.v1.Span.SpanKind').values[s.kind];
          if (typeof s.status?.code === 'string') s.status.code = otlpRoot.lookupEnum('opentelemetry.proto.trace.v1.Status.StatusCode').values[s.status.code];
        }
      }
    }
    return spansOf(request, true);
  }
  // Plain objects with only the fields present (oneofs included), 64-bit integers as strings.
  const request = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String, enums: Number });
  return spansOf(request, false);
}

export class OtlpCollector {
  constructor({ port = 0 } = {}) {
    this.port = port;
    this._spans = [];
    this.requests = []; // {path, contentType, contentEncoding, status, spans, error}
    this._waiters = new Set();
  }

  get endpoint() {
    return `http://127.0.0.1:${this.port}`;
  }

  get tracesUrl() {
    return `${this.endpoint}/v1/traces`;
  }

  /** The spans received so far (a copy), in arrival order. */
  spans() {
    return [...this._spans];
  }

  clear() {
    this._spans = [];
    this.requests = [];
  }

  /**
   * Resolves with the spans matching `predicate(span)` once there are at least `min` of them;
   * rejects after `timeoutMs` naming the spans that did arrive.
   */
  waitForSpans(predicate = () => true, timeoutMs = 10_000, { min = 1 } = {}) {
    const check = () => {
      const found = this._spans.filter(predicate);
      return found.length >= min ? found : null;
    };
    const now = check();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const waiter = () => {
        const found = check();
        if (!found) return;
        clearTimeout(timer);
        this._waiters.delete(waiter);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this._waiters.delete(waiter);
        const seen = this._spans.map((s) => s.name);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${min} matching span(s); received ${seen.length}: ${JSON.stringify(seen.slice(-20))}`));
      }, timeoutMs);
      this._waiters.add(waiter);
    });
  }

  async start() {
    ({ server: this.server, port: this.port } = await startHttpServer(
      this.port,
      (req, res) => this.handle(req, res),
      (e, res) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error');
      },
    ));
    // A collector a failing test never stopped does not keep the test process alive.
    this.server.unref();
    return this;
  }

  /** Idempotent. Pending waitForSpans calls run into their timeouts. */
  async stop() {
    const server = this.server;
    this.server = undefined;
    await stopHttpServer(server);
  }

  async handle(req, res) {
    const url = new URL(req.url, this.endpoint);
    const record = { path: url.pathname, contentType: null, contentEncoding: null, status: 0, spans: 0 };
    this.requests.push(record);
    const answer = (status, contentType, body) => {
      record.status = status;
      res.writeHead(status, { 'content-type': contentType, 'content-length': body.length });
      res.end(body);
    };
    if (url.pathname !== '/v1/traces') return answer(404, 'text/plain', Buffer.from('404 page not found\n'));
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return answer(405, 'text/plain', Buffer.from('405 method not allowed, supported: [POST]'));
    }
    const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
    record.contentType = contentType;
    record.contentEncoding = encoding || null;
    const json = contentType === 'application/json';
    if (!json && contentType !== 'application/x-protobuf') {
      return answer(415, 'text/plain', Buffer.from(`415 unsupported media type, supported: [application/json, application/x-protobuf]`));
    }
    const fail = (status, message) => {
      record.error = message;
      if (json) return answer(status, 'application/json', Buffer.from(JSON.stringify({ code: 3, message })));
      return answer(status, 'application/x-protobuf', Buffer.from(RpcStatus.encode({ code: 3, message }).finish()));
    };
    if (encoding && encoding !== 'gzip' && encoding !== 'identity') return answer(415, 'text/plain', Buffer.from(`415 unsupported content encoding ${encoding}`));
    let body;
    try {
      body = await readBody(req);
      if (encoding === 'gzip') body = zlib.gunzipSync(body);
    } catch (e) {
      return fail(e.status ?? 400, e.message);
    }
    let spans;
    try {
      spans = decodeTraces(body, contentType);
    } catch (e) {
      return fail(400, `malformed ExportTraceServiceRequest: ${e.message}`);
    }
    record.spans = spans.length;
    this._spans.push(...spans);
    for (const w of [...this._waiters]) w();
    // Success: an empty ExportTraceServiceResponse (no partial_success).
    if (json) return answer(200, 'application/json', Buffer.from('{}'));
    return answer(200, 'application/x-protobuf', Buffer.from(ExportTraceServiceResponse.encode({}).finish()));
  }
}

/** Starts a collector on a free port of 127.0.0.1. */
export async function startOtlpCollector(options = {}) {
  return new OtlpCollector(options).start();
}
