// mcpgate's conforming MCP test server for e2e test 23 (the official conformance suites), written
// for this project from the MCP specification and the suites' published scenario expectations.
//   - 2025-11-25 (and 2025-06-18): the TypeScript SDK's McpServer on a StreamableHTTPServerTransport
//     per session, with an in-memory event store so that SSE streams can be resumed.
//   - 2026-07-28: the SDK does not speak it, so a small stateless layer below answers requests that
//     carry that protocol version (header or _meta): server/discover, per-request _meta, Mcp-*
//     header checks, resultType/caching fields, input_required results and subscriptions/listen.
// Both layers share one table of tools, resources and prompts.
// Run: PORT=3000 HOST=127.0.0.1 node server.mjs; the endpoint is /mcp.
import http from 'node:http';
import zlib from 'node:zlib';
import { randomUUID, randomBytes, createHmac, timingSafeEqual } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, CreateMessageResultSchema, ElicitResultSchema, ErrorCode,
  GetPromptRequestSchema, ListPromptsRequestSchema, ListResourceTemplatesRequestSchema, ListResourcesRequestSchema,
  ListToolsRequestSchema, McpError, ReadResourceRequestSchema, SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
const SERVER_INFO = { name: 'mcpgate-conformance-server', version: '1.0.0' };
const NEXT = '2026-07-28';
const LEGACY = new Set(['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']);
const META = {
  version: 'io.modelcontextprotocol/protocolVersion',
  caps: 'io.modelcontextprotocol/clientCapabilities',
  logLevel: 'io.modelcontextprotocol/logLevel',
  serverInfo: 'io.modelcontextprotocol/serverInfo',
  subscriptionId: 'io.modelcontextprotocol/subscriptionId',
};
const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Test media, generated here so that no binary blob has to be pasted in: a 1x1 red PNG and a short
// silent 8 kHz mono WAV.
function png1x1() {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour RGB
  const raw = Buffer.from([0, 255, 0, 0]); // filter byte, then one red pixel
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]).toString('base64');
}
function wavSilence() {
  const samples = 800;
  const b = Buffer.alloc(44 + samples * 2);
  b.write('RIFF', 0); b.writeUInt32LE(36 + samples * 2, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(8000, 24); b.writeUInt32LE(16000, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(samples * 2, 40);
  return b.toString('base64');
}
const PNG = png1x1();
const WAV = wavSilence();

// ---------------------------------------------------------------------------------------------
// The catalogue. A tool's run(args, ctx) gets a context whose helpers work on both layers where they
// can: ctx.log / ctx.progress send notifications on the request's stream; ctx.sample / ctx.elicit
// send server-to-client requests (2025-11-25 only; 2026-07-28 uses input_required results instead).
const noArgs = { type: 'object', properties: {} };
const text = (t) => ({ type: 'text', text: t });
const invalidParams = (message, data) => new McpError(ErrorCode.InvalidParams, message, data);

// The JSON Schema 2020-12 keywords the suite checks are preserved verbatim in tools/list.
const JSON_SCHEMA_2020_TOOL = 'json_schema_2020_12_tool';
const JSON_SCHEMA_2020 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      $anchor: 'addressAnchor',
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } },
    },
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
    contact: { anyOf: [{ type: 'string', format: 'email' }, { type: 'string', pattern: '^\\+?[0-9 ]+$' }] },
    kind: { type: 'string', enum: ['personal', 'business'] },
    company: { type: 'string' },
  },
  allOf: [{ required: ['name'] }, { anyOf: [{ required: ['contact'] }, { required: ['address'] }] }],
  if: { properties: { kind: { const: 'business' } }, required: ['kind'] },
  then: { required: ['company'] },
  else: { properties: { company: false } },
  additionalProperties: false,
};

let dynamicToolCount = 0; // test_trigger_tool_change adds a tool, so tools/list really changes
let dynamicPromptCount = 0;

const TOOLS = [
  { name: 'test_simple_text', description: 'Returns a simple text response', run: () => ({ content: [text('This is a simple text response for testing.')] }) },
  { name: 'test_image_content', description: 'Returns a PNG image', run: () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }) },
  { name: 'test_audio_content', description: 'Returns a WAV audio clip', run: () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }) },
  {
    name: 'test_embedded_resource', description: 'Returns an embedded text resource',
    run: () => ({ content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] }),
  },
  {
    name: 'test_multiple_content_types', description: 'Returns text, image and resource content',
    run: () => ({
      content: [
        text('Multiple content types test:'),
        { type: 'image', data: PNG, mimeType: 'image/png' },
        { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
      ],
    }),
  },
  {
    name: 'test_tool_with_logging', description: 'Sends three info log messages while running',
    run: async (_a, ctx) => {
      await ctx.log('info', 'Tool execution started');
      await sleep(50);
      await ctx.log('info', 'Tool processing data');
      await sleep(50);
      await ctx.log('info', 'Tool execution completed');
      return { content: [text('Tool with logging executed successfully')] };
    },
  },
  {
    // 2026-07-28 diagnostic: logs only when the request asked for a log level.
    name: 'test_logging_tool', description: 'Logs one message at info level',
    run: async (_a, ctx) => {
      await ctx.log('info', 'test_logging_tool ran');
      return { content: [text('logged')] };
    },
  },
  {
    name: 'test_error_handling', description: 'Always fails',
    run: () => ({ isError: true, content: [text('This tool intentionally returns an error for testing')] }),
  },
  {
    name: 'test_tool_with_progress', description: 'Reports progress 0, 50 and 100 of 100',
    run: async (_a, ctx) => {
      for (const p of [0, 50, 100]) {
        await ctx.progress(p, 100, `step ${p}`);
        if (p < 100) await sleep(50);
      }
      return { content: [text('Tool with progress executed successfully')] };
    },
  },
  {
    name: 'test_sampling', description: 'Asks the client to sample an LLM',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string', description: 'The prompt to send' } }, required: ['prompt'] },
    run: async (args, ctx) => {
      const r = await ctx.sample({ messages: [{ role: 'user', content: text(String(args.prompt ?? '')) }], maxTokens: 100 });
      const answer = r.content?.type === 'text' ? r.content.text : JSON.stringify(r.content);
      return { content: [text(`LLM response: ${answer}`)] };
    },
  },
  {
    name: 'test_elicitation', description: 'Asks the user for a username and an email address',
    inputSchema: { type: 'object', properties: { message: { type: 'string', description: 'The message to show' } }, required: ['message'] },
    run: async (args, ctx) => {
      const r = await ctx.elicit({
        message: String(args.message ?? ''),
        requestedSchema: {
          type: 'object',
          properties: {
            username: { type: 'string', description: "User's response" },
            email: { type: 'string', description: "User's email address" },
          },
          required: ['username', 'email'],
        },
      });
      return { content: [text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
    },
  },
  {
    name: 'test_elicitation_sep1034_defaults', description: 'Elicitation with defaults for every primitive type',
    run: async (_a, ctx) => {
      const r = await ctx.elicit({
        message: 'Please review and update the form fields with defaults',
        requestedSchema: {
          type: 'object',
          properties: {
            name: { type: 'string', description: 'User name', default: 'John Doe' },
            age: { type: 'integer', description: 'User age', default: 30 },
            score: { type: 'number', description: 'User score', default: 95.5 },
            status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
            verified: { type: 'boolean', description: 'Verification status', default: true },
          },
          required: [],
        },
      });
      return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
    },
  },
  {
    name: 'test_elicitation_sep1330_enums', description: 'Elicitation with the five enum schema forms',
    run: async (_a, ctx) => {
      const r = await ctx.elicit({
        message: 'Please pick from the enum fields',
        requestedSchema: {
          type: 'object',
          properties: {
            untitledSingle: { type: 'string', description: 'Untitled single-select', enum: ['option1', 'option2', 'option3'] },
            titledSingle: {
              type: 'string', description: 'Titled single-select',
              oneOf: [{ const: 'value1', title: 'First Option' }, { const: 'value2', title: 'Second Option' }, { const: 'value3', title: 'Third Option' }],
            },
            legacyEnum: {
              type: 'string', description: 'Legacy titled enum',
              enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'],
            },
            untitledMulti: {
              type: 'array', description: 'Untitled multi-select',
              items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
            },
            titledMulti: {
              type: 'array', description: 'Titled multi-select',
              items: { anyOf: [{ const: 'value1', title: 'First Choice' }, { const: 'value2', title: 'Second Choice' }, { const: 'value3', title: 'Third Choice' }] },
            },
          },
          required: [],
        },
      });
      return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
    },
  },
  {
    name: JSON_SCHEMA_2020_TOOL, description: 'A tool whose input schema uses JSON Schema 2020-12 keywords',
    inputSchema: JSON_SCHEMA_2020,
    run: (args) => ({ content: [text(`Received: ${JSON.stringify(args)}`)] }),
  },
  {
    // SSE polling (SEP-1699): closes the request's SSE stream mid-call; the client reconnects with
    // Last-Event-ID and gets the result replayed from the event store.
    name: 'test_reconnection', description: 'Closes its SSE stream before answering',
    run: async (_a, ctx) => {
      await sleep(100);
      ctx.closeStream();
      await sleep(200);
      return { content: [text('Reconnection test completed')] };
    },
  },
  {
    // 2026-07-28 custom headers (SEP-2243): the client mirrors `region` into Mcp-Param-Region, which
    // the stateless layer checks against the body before the call runs.
    name: 'test_param_header', description: 'Echoes a region that is also sent as the Mcp-Param-Region header',
    inputSchema: { type: 'object', properties: { region: { type: 'string', description: 'A region name', 'x-mcp-header': 'Region' } }, required: ['region'] },
    run: (args) => ({ content: [text(`region: ${args.region}`)] }),
  },
  // 2026-07-28 diagnostics (server-stateless).
  {
    name: 'test_missing_capability', description: 'Requires the client sampling capability',
    run: (_a, ctx) => {
      if (!ctx.clientCaps?.sampling) {
        throw new McpError(-32021, 'Missing required client capability: sampling', { requiredCapabilities: { sampling: {} } });
      }
      return { content: [text('client declared sampling')] };
    },
  },
  {
    name: 'test_streaming_elicitation', description: 'Needs user input; asks for it with an input_required result',
    next: (_a, ctx) => inputRequired(ctx, {
      answer: { method: 'elicitation/create', params: { message: 'Anything to add?', requestedSchema: { type: 'object', properties: { note: { type: 'string' } } } } },
    }, (r) => ({ content: [text(`Got: ${JSON.stringify(r.answer?.content ?? {})}`)] })),
    run: async (_a, ctx) => {
      const r = await ctx.elicit({ message: 'Anything to add?', requestedSchema: { type: 'object', properties: { note: { type: 'string' } } } });
      return { content: [text(`Got: ${JSON.stringify(r.content ?? {})}`)] };
    },
  },
  {
    name: 'test_trigger_tool_change', description: 'Adds a tool, so the tool list changes',
    run: () => {
      dynamicToolCount++;
      changed('tools');
      return { content: [text(`tools changed (${dynamicToolCount})`)] };
    },
  },
  {
    name: 'test_trigger_prompt_change', description: 'Adds a prompt, so the prompt list changes',
    run: () => {
      dynamicPromptCount++;
      changed('prompts');
      return { content: [text(`prompts changed (${dynamicPromptCount})`)] };
    },
  },
  // 2026-07-28 multi round-trip requests (input_required results, SEP-2322).
  {
    name: 'test_input_required_result_elicitation', description: 'Asks for a name (input_required)',
    next: (_a, ctx) => inputRequired(ctx, { user_name: ask('What is your name?', 'name', 'string') },
      (r) => ({ content: [text(`Hello, ${r.user_name.content?.name ?? 'stranger'}!`)] })),
  },
  {
    name: 'test_input_required_result_sampling', description: 'Asks the client to sample an LLM (input_required)',
    next: (_a, ctx) => inputRequired(ctx, { capital_question: sampleReq('What is the capital of France?', 100) },
      (r) => ({ content: [text(`Sampling said: ${r.capital_question.content?.text ?? JSON.stringify(r.capital_question.content)}`)] })),
  },
  {
    name: 'test_input_required_result_list_roots', description: 'Asks for the client roots (input_required)',
    next: (_a, ctx) => inputRequired(ctx, { client_roots: { method: 'roots/list', params: {} } },
      (r) => ({ content: [text(`Roots: ${(r.client_roots.roots ?? []).map((x) => x.uri).join(', ')}`)] })),
  },
  {
    name: 'test_input_required_result_request_state', description: 'Asks for confirmation and round-trips a request state',
    next: (_a, ctx) => inputRequired(ctx, { confirm: ask('Please confirm', 'ok', 'boolean') },
      (r) => ({ content: [text(`state-ok: confirmed=${r.confirm.content?.ok}`)] }), { withState: true }),
  },
  {
    name: 'test_input_required_result_multiple_inputs', description: 'Asks for an elicitation, a sampling and the roots at once',
    next: (_a, ctx) => inputRequired(ctx, {
      user_name: ask('What is your name?', 'name', 'string'),
      greeting: sampleReq('Generate a greeting', 50),
      client_roots: { method: 'roots/list', params: {} },
    }, (r) => ({
      content: [text(`name=${r.user_name.content?.name}, greeting=${r.greeting.content?.text}, roots=${(r.client_roots.roots ?? []).length}`)],
    }), { withState: true }),
  },
  {
    name: 'test_input_required_result_multi_round', description: 'Two rounds of questions with an evolving request state',
    next: (_a, ctx) => multiRound(ctx),
  },
  {
    name: 'test_input_required_result_tampered_state', description: 'Rejects a request state that was altered',
    next: (_a, ctx) => inputRequired(ctx, { confirm: ask('Please confirm', 'ok', 'boolean') },
      () => ({ content: [text('state verified')] }), { withState: true }),
  },
  {
    name: 'test_input_required_result_capabilities', description: 'Asks only for what the client declared',
    next: (_a, ctx) => {
      const wanted = {};
      if (ctx.clientCaps?.elicitation) wanted.user_name = ask('What is your name?', 'name', 'string');
      if (ctx.clientCaps?.sampling) wanted.greeting = sampleReq('Generate a greeting', 50);
      if (ctx.clientCaps?.roots) wanted.client_roots = { method: 'roots/list', params: {} };
      if (!Object.keys(wanted).length) return { content: [text('the client declared no capability to ask with')] };
      return inputRequired(ctx, wanted, (r) => ({ content: [text(`answered: ${Object.keys(r).sort().join(', ')}`)] }));
    },
  },
];
const toolByName = (name) => TOOLS.find((t) => t.name === name)
  ?? (/^test_dynamic_tool_(\d+)$/.test(name) && Number(name.slice(18)) <= dynamicToolCount
    ? { name, run: () => ({ content: [text(`dynamic tool ${name}`)] }) } : undefined);
function listTools() {
  const tools = TOOLS.map((t) => ({ name: t.name, description: t.description, inputSchema: t.inputSchema ?? noArgs }));
  for (let i = 1; i <= dynamicToolCount; i++) tools.push({ name: `test_dynamic_tool_${i}`, description: 'Added by test_trigger_tool_change', inputSchema: noArgs });
  return tools;
}

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', description: 'A static text resource', mimeType: 'text/plain', read: () => ({ text: 'This is the content of the static text resource.' }) },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A static binary resource (PNG)', mimeType: 'image/png', read: () => ({ blob: PNG }) },
  { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource clients can subscribe to', mimeType: 'text/plain', read: () => ({ text: 'Watched resource content.' }) },
];
const TEMPLATE = { uriTemplate: 'test://template/{id}/data', name: 'template-data', description: 'Data for an id', mimeType: 'application/json' };
function readResource(uri) {
  const r = RESOURCES.find((x) => x.uri === uri);
  if (r) return { contents: [{ uri, mimeType: r.mimeType, ...r.read() }] };
  const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri ?? '');
  if (m) {
    const id = decodeURIComponent(m[1]);
    return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] };
  }
  // SEP-2164: an unknown resource is -32602 with the uri in data, never an empty contents list.
  throw invalidParams('Resource not found', { uri });
}

const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A prompt without arguments', get: () => ({ messages: [{ role: 'user', content: text('This is a simple prompt for testing.') }] }) },
  {
    name: 'test_prompt_with_arguments', description: 'A prompt with two arguments',
    arguments: [{ name: 'arg1', description: 'First test argument', required: true }, { name: 'arg2', description: 'Second test argument', required: true }],
    get: (a) => ({ messages: [{ role: 'user', content: text(`Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'`) }] }),
  },
  {
    name: 'test_prompt_with_embedded_resource', description: 'A prompt embedding a resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
    get: (a) => ({
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: a.resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
        { role: 'user', content: text('Please process the embedded resource above.') },
      ],
    }),
  },
  {
    name: 'test_prompt_with_image', description: 'A prompt with an image',
    get: () => ({ messages: [{ role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } }, { role: 'user', content: text('Please analyze the image above.') }] }),
  },
  {
    name: 'test_input_required_result_prompt', description: 'A prompt that needs context from the user (2026-07-28)',
    get: () => ({ messages: [{ role: 'user', content: text('This prompt needs user context (2026-07-28 only).') }] }),
    next: (_a, ctx) => inputRequired(ctx, { user_context: ask('What context should the prompt use?', 'context', 'string') },
      (r) => ({ description: 'Prompt with user context', messages: [{ role: 'user', content: text(`Context: ${r.user_context.content?.context}`) }] })),
  },
];
function listPrompts() {
  const prompts = PROMPTS.map(({ name, description, arguments: args }) => ({ name, description, ...(args ? { arguments: args } : {}) }));
  for (let i = 1; i <= dynamicPromptCount; i++) prompts.push({ name: `test_dynamic_prompt_${i}`, description: 'Added by test_trigger_prompt_change' });
  return prompts;
}
function getPrompt(name, args = {}) {
  const p = PROMPTS.find((x) => x.name === name);
  if (!p) throw invalidParams(`Unknown prompt: ${name}`);
  for (const a of p.arguments ?? []) if (a.required && args[a.name] === undefined) throw invalidParams(`Missing argument: ${a.name}`);
  return p.get(args);
}

function complete(params) {
  const { ref, argument } = params ?? {};
  const candidates = ref?.type === 'ref/prompt' && ref.name === 'test_prompt_with_arguments'
    ? ['paris', 'park', 'party', 'hello', 'help', 'world']
    : ref?.type === 'ref/resource' ? ['1', '2', '3', '123'] : [];
  const values = candidates.filter((v) => v.startsWith(String(argument?.value ?? '')));
  return { completion: { values, total: values.length, hasMore: false } };
}

// ---------------------------------------------------------------------------------------------
// Multi round-trip requests (2026-07-28): the server keeps no state between rounds; what it needs is
// in requestState, HMAC-signed so that a client cannot alter it.
const STATE_KEY = randomBytes(32);
const ask = (message, field, type) => ({
  method: 'elicitation/create',
  params: { message, requestedSchema: { type: 'object', properties: { [field]: { type } }, required: [field] } },
});
const sampleReq = (prompt, maxTokens) => ({
  method: 'sampling/createMessage',
  params: { messages: [{ role: 'user', content: text(prompt) }], maxTokens },
});
function sealState(obj) {
  const body = Buffer.from(JSON.stringify(obj)).toString('base64url');
  return `${body}.${createHmac('sha256', STATE_KEY).update(body).digest('base64url')}`;
}
function openState(s) {
  const [body, mac] = String(s).split('.');
  const want = createHmac('sha256', STATE_KEY).update(body ?? '').digest();
  let got;
  try { got = Buffer.from(mac ?? '', 'base64url'); } catch { got = Buffer.alloc(0); }
  if (!body || got.length !== want.length || !timingSafeEqual(got, want)) throw invalidParams('Invalid requestState: integrity check failed');
  return JSON.parse(Buffer.from(body, 'base64url').toString());
}
// Whether an input response plausibly answers the request it is keyed to (validate-input).
function answers(req, resp) {
  if (!resp || typeof resp !== 'object' || Array.isArray(resp)) return false;
  if (req.method === 'elicitation/create') return ['accept', 'decline', 'cancel'].includes(resp.action);
  if (req.method === 'sampling/createMessage') return typeof resp.role === 'string' && resp.content && typeof resp.content === 'object';
  if (req.method === 'roots/list') return Array.isArray(resp.roots);
  return false;
}
/**
 * One round: completes with done(responses) when every request in `wanted` has a valid answer in
 * params.inputResponses (extra keys are ignored), otherwise asks (again) for the missing ones.
 */
function inputRequired(ctx, wanted, done, { withState = false, step = 'one' } = {}) {
  const { inputResponses, requestState } = ctx.params;
  if (requestState !== undefined) {
    const st = openState(requestState); // throws -32602 on tampering
    if (st.tool !== ctx.name || st.step !== step) throw invalidParams('requestState belongs to another request');
  }
  const responses = inputResponses && typeof inputResponses === 'object' && !Array.isArray(inputResponses) ? inputResponses : {};
  const missing = Object.keys(wanted).filter((k) => !answers(wanted[k], responses[k]));
  if (!missing.length && (!withState || requestState !== undefined)) return done(responses);
  return {
    resultType: 'input_required',
    inputRequests: Object.fromEntries(missing.length ? missing.map((k) => [k, wanted[k]]) : Object.entries(wanted)),
    ...(withState ? { requestState: sealState({ tool: ctx.name, step, nonce: randomUUID() }) } : {}),
  };
}
function multiRound(ctx) {
  const st = ctx.params.requestState !== undefined ? openState(ctx.params.requestState) : undefined;
  if (st?.step === 'two') {
    return inputRequired(ctx, { step2: ask('Step 2: What is your favorite color?', 'color', 'string') },
      (r) => ({ content: [text(`Done: name=${st.name}, color=${r.step2.content?.color}`)] }), { withState: true, step: 'two' });
  }
  const first = inputRequired(ctx, { step1: ask('Step 1: What is your name?', 'name', 'string') }, (r) => r, { withState: true, step: 'one' });
  if (first.resultType === 'input_required') return first;
  // Round 2: a new question, and a state that now carries the first answer.
  return {
    resultType: 'input_required',
    inputRequests: { step2: ask('Step 2: What is your favorite color?', 'color', 'string') },
    requestState: sealState({ tool: ctx.name, step: 'two', name: first.step1.content?.name, nonce: randomUUID() }),
  };
}

// ---------------------------------------------------------------------------------------------
// List-changed fan-out: 2025-11-25 sessions get notifications/*/list_changed on their GET stream,
// 2026-07-28 subscriptions/listen streams get them when their filter asked.
const sessions = new Map(); // session id -> { transport, mcp }
const listeners = new Set(); // { filter, id, write }
function changed(kind) {
  for (const { mcp } of sessions.values()) {
    if (kind === 'tools') mcp.sendToolListChanged();
    else mcp.sendPromptListChanged();
  }
  const method = `notifications/${kind}/list_changed`;
  for (const l of listeners) {
    if (l.filter?.[`${kind}ListChanged`]) l.write({ jsonrpc: '2.0', method, params: { _meta: { [META.subscriptionId]: l.id } } });
  }
}

// ---------------------------------------------------------------------------------------------
// 2025-11-25: McpServer per session. Its high-level registration helpers take zod shapes and would
// rewrite the raw JSON Schemas above, so the handlers are set on its underlying Server, from the
// shared table.
function makeMcpServer() {
  const mcp = new McpServer(SERVER_INFO, {
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  });
  const s = mcp.server;
  const subscriptions = new Set();
  s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listTools() }));
  s.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const tool = toolByName(req.params.name);
    if (!tool?.run) throw invalidParams(`Unknown tool: ${req.params.name}`);
    const token = req.params._meta?.progressToken;
    const caps = s.getClientCapabilities() ?? {};
    const ctx = {
      name: tool.name,
      params: req.params,
      clientCaps: caps,
      // Through the Server, so that logging/setLevel filters what is sent.
      log: (level, data) => s.sendLoggingMessage({ level, data }, extra.sessionId),
      progress: (progress, total, message) => (token === undefined ? undefined
        : extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, total, message } })),
      sample: (params) => {
        if (!caps.sampling) throw new McpError(ErrorCode.InvalidRequest, 'The client does not support sampling');
        return extra.sendRequest({ method: 'sampling/createMessage', params }, CreateMessageResultSchema);
      },
      elicit: (params) => {
        if (!caps.elicitation) throw new McpError(ErrorCode.InvalidRequest, 'The client does not support elicitation');
        return extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
      },
      closeStream: () => extra.closeSSEStream?.(),
    };
    return tool.run(req.params.arguments ?? {}, ctx);
  });
  s.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: RESOURCES.map(({ read, ...r }) => r) }));
  s.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({ resourceTemplates: [TEMPLATE] }));
  s.setRequestHandler(ReadResourceRequestSchema, (req) => readResource(req.params.uri));
  s.setRequestHandler(SubscribeRequestSchema, (req) => { subscriptions.add(req.params.uri); return {}; });
  s.setRequestHandler(UnsubscribeRequestSchema, (req) => { subscriptions.delete(req.params.uri); return {}; });
  s.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: listPrompts() }));
  s.setRequestHandler(GetPromptRequestSchema, (req) => getPrompt(req.params.name, req.params.arguments));
  s.setRequestHandler(CompleteRequestSchema, (req) => complete(req.params));
  // logging/setLevel: the Server's own handler (it keeps the level per session for sendLoggingMessage).
  return mcp;
}

// The transport's resumability hook: every event of a stream, kept in memory for the process.
function memoryEventStore() {
  const events = []; // { id, streamId, message }
  let n = 0;
  return {
    async storeEvent(streamId, message) {
      const id = `${streamId}_${++n}`;
      events.push({ id, streamId, message });
      return id;
    },
    async getStreamIdForEventId(eventId) {
      return events.find((e) => e.id === eventId)?.streamId;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const at = events.findIndex((e) => e.id === lastEventId);
      if (at < 0) return '';
      const { streamId } = events[at];
      for (const e of events.slice(at + 1)) if (e.streamId === streamId) await send(e.id, e.message);
      return streamId;
    },
  };
}

async function handleLegacy(req, res, body) {
  const sid = req.headers['mcp-session-id'];
  if (sid) {
    const s = sessions.get(sid);
    if (!s) return sendJson(res, 404, rpcError(body?.id ?? null, -32001, 'Session not found'));
    return s.transport.handleRequest(req, res, body);
  }
  const isInit = Array.isArray(body) ? body.some((m) => m?.method === 'initialize') : body?.method === 'initialize';
  if (req.method !== 'POST' || !isInit) {
    return sendJson(res, 400, rpcError(body?.id ?? null, -32000, 'Bad Request: no session; send initialize first'));
  }
  const mcp = makeMcpServer();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    eventStore: memoryEventStore(),
    retryInterval: 500,
    onsessioninitialized: (id) => sessions.set(id, { transport, mcp }),
    onsessionclosed: (id) => sessions.delete(id),
  });
  transport.onclose = () => { if (transport.sessionId) sessions.delete(transport.sessionId); };
  await mcp.connect(transport);
  return transport.handleRequest(req, res, body);
}

// ---------------------------------------------------------------------------------------------
// 2026-07-28: stateless. Each POST is one request with everything in params._meta.
const rpcError = (id, code, message, data) => ({ jsonrpc: '2.0', id, error: { code, message, ...(data !== undefined ? { data } : {}) } });
function sendJson(res, status, obj) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(obj));
}
const REMOVED = new Set(['initialize', 'notifications/initialized', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']);
const CACHEABLE = new Set(['server/discover', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);
const NEXT_CAPS = {
  tools: { listChanged: true },
  resources: { listChanged: true },
  prompts: { listChanged: true },
  logging: {},
  completions: {},
};

const headerValue = (req, name) => {
  const v = req.headers[name];
  return typeof v === 'string' ? v.trim() : undefined;
};

function isNextRequest(req, body) {
  const v = headerValue(req, 'mcp-protocol-version');
  if (v !== undefined && !LEGACY.has(v)) return true;
  const meta = body && !Array.isArray(body) ? body.params?._meta : undefined;
  return !req.headers['mcp-session-id'] && meta && typeof meta === 'object' && META.version in meta;
}

/** The checks every 2026-07-28 request passes before dispatch; returns [status, error] or null. */
function precheck(req, body) {
  const id = body.id ?? null;
  const header = headerValue(req, 'mcp-protocol-version');
  const meta = body.params?._meta;
  if (header === undefined) return [400, rpcError(id, -32020, 'Missing MCP-Protocol-Version header')];
  const missing = [META.version, META.caps].filter((k) => !meta || typeof meta !== 'object' || meta[k] === undefined);
  if (missing.length) return [400, rpcError(id, ErrorCode.InvalidParams, `Invalid params: _meta lacks ${missing.join(', ')}`)];
  if (meta[META.version] !== header) return [400, rpcError(id, -32020, 'MCP-Protocol-Version header does not match _meta protocolVersion')];
  if (header !== NEXT) {
    return [400, rpcError(id, -32022, 'Unsupported protocol version', { supported: [NEXT], requested: header })];
  }
  // Standard headers (SEP-2243): Mcp-Method and, where the method names a target, Mcp-Name mirror the body.
  const mMethod = headerValue(req, 'mcp-method');
  if (mMethod === undefined || mMethod !== body.method) return [400, rpcError(id, -32020, 'Mcp-Method header does not match the request method')];
  const target = ['tools/call', 'prompts/get'].includes(body.method) ? body.params?.name
    : body.method === 'resources/read' ? body.params?.uri : undefined;
  if (target !== undefined) {
    const mName = headerValue(req, 'mcp-name');
    if (mName === undefined || mName !== target) return [400, rpcError(id, -32020, 'Mcp-Name header does not match the request target')];
  }
  if (body.method === 'tools/call') {
    const why = paramHeaderMismatch(req, toolByName(body.params?.name), body.params?.arguments ?? {});
    if (why) return [400, rpcError(id, -32020, why)];
  }
  return null;
}

/**
 * SEP-2243 custom headers: every argument whose schema property has `x-mcp-header: Name` must come
 * with a matching Mcp-Param-Name header. A value wrapped as =?base64?...?= is strict standard Base64
 * of the UTF-8 text; anything else is the literal value.
 */
function paramHeaderMismatch(req, tool, args) {
  for (const [prop, schema] of Object.entries(tool?.inputSchema?.properties ?? {})) {
    const name = schema?.['x-mcp-header'];
    if (typeof name !== 'string') continue;
    const value = args[prop];
    const raw = headerValue(req, `mcp-param-${name.toLowerCase()}`);
    if (value === undefined || value === null) {
      if (raw !== undefined) return `Mcp-Param-${name} is sent but ${prop} is absent from the arguments`;
      continue;
    }
    if (raw === undefined) return `Mcp-Param-${name} header is missing for argument ${prop}`;
    let decoded = raw;
    const wrapped = /^=\?base64\?(.*)\?=$/.exec(raw);
    if (wrapped) {
      const b64 = wrapped[1];
      if (b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return `Mcp-Param-${name} is not valid Base64`;
      decoded = Buffer.from(b64, 'base64').toString('utf8');
    }
    if (decoded !== String(value)) return `Mcp-Param-${name} does not match argument ${prop}`;
  }
  return undefined;
}

async function handleNext(req, res, body) {
  if (req.method !== 'POST') return sendJson(res, 405, rpcError(null, -32000, 'Method not allowed'));
  if (!body || Array.isArray(body) || typeof body.method !== 'string') return sendJson(res, 400, rpcError(body?.id ?? null, -32600, 'Invalid request'));
  if (body.id === undefined) { res.writeHead(202).end(); return; } // notifications: nothing to do statelessly
  const bad = precheck(req, body);
  if (bad) return sendJson(res, bad[0], bad[1]);
  const { id, method } = body;
  const params = body.params ?? {};
  const meta = params._meta;
  const clientCaps = meta[META.caps] ?? {};
  const logLevel = meta[META.logLevel];
  const token = meta.progressToken;

  // The response is JSON unless a notification has to go first, then SSE for the rest.
  let sse = false;
  const write = (msg) => {
    if (!sse) {
      sse = true;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    }
    res.write(`event: message\ndata: ${JSON.stringify(msg)}\n\n`);
  };
  const finish = (status, msg) => {
    if (sse) { write(msg); res.end(); } else sendJson(res, status, msg);
  };

  if (method === 'subscriptions/listen') return listen(req, res, id, params);
  if (REMOVED.has(method)) return sendJson(res, 404, rpcError(id, -32601, `Method not found: ${method} (removed in ${NEXT})`));

  const ctx = {
    name: params.name,
    params,
    clientCaps,
    // Logs only when the request asked for a level (no notifications/message otherwise).
    log: async (level, data) => {
      if (logLevel && LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(logLevel)) write({ jsonrpc: '2.0', method: 'notifications/message', params: { level, data } });
    },
    progress: async (progress, total, message) => {
      if (token !== undefined) write({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress, total, message } });
    },
    // No server-to-client requests on this protocol version: the tools that need them use next().
    sample: () => { throw new McpError(-32021, 'Sampling needs an input_required round trip', { requiredCapabilities: { sampling: {} } }); },
    elicit: () => { throw new McpError(-32021, 'Elicitation needs an input_required round trip', { requiredCapabilities: { elicitation: {} } }); },
    closeStream: () => {},
  };
  try {
    let result;
    switch (method) {
      case 'server/discover':
        result = { supportedVersions: [NEXT], capabilities: NEXT_CAPS, instructions: 'mcpgate conformance test server' };
        break;
      case 'tools/list': result = { tools: listTools() }; break;
      case 'tools/call': {
        const tool = toolByName(params.name);
        if (!tool) throw invalidParams(`Unknown tool: ${params.name}`);
        result = await (tool.next ?? tool.run)(params.arguments ?? {}, ctx);
        break;
      }
      case 'resources/list': result = { resources: RESOURCES.map(({ read, ...r }) => r) }; break;
      case 'resources/templates/list': result = { resourceTemplates: [TEMPLATE] }; break;
      case 'resources/read': result = readResource(params.uri); break;
      case 'prompts/list': result = { prompts: listPrompts() }; break;
      case 'prompts/get': {
        const p = PROMPTS.find((x) => x.name === params.name);
        result = p?.next ? await p.next(params.arguments ?? {}, { ...ctx, name: p.name }) : getPrompt(params.name, params.arguments);
        break;
      }
      case 'completion/complete': result = complete(params); break;
      default: return finish(404, rpcError(id, -32601, `Method not found: ${method}`));
    }
    result.resultType ??= 'complete';
    if (CACHEABLE.has(method)) { result.ttlMs ??= 0; result.cacheScope ??= 'private'; }
    result._meta = { ...result._meta, [META.serverInfo]: SERVER_INFO };
    finish(200, { jsonrpc: '2.0', id, result });
  } catch (e) {
    const code = typeof e?.code === 'number' ? e.code : ErrorCode.InternalError;
    const message = String(e?.message ?? e).replace(/^MCP error -?\d+: /, '');
    // Errors about the request or the client are 400 on HTTP; a failure of the server is 500.
    finish(code === ErrorCode.InternalError ? 500 : 400, rpcError(id, code, message, e?.data));
  }
}

/** subscriptions/listen: an SSE stream that opens with the acknowledgement, then the changes asked for. */
function listen(req, res, id, params) {
  const filter = params.notifications && typeof params.notifications === 'object' ? params.notifications : {};
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const write = (msg) => res.write(`event: message\ndata: ${JSON.stringify(msg)}\n\n`);
  const l = { filter, id, write };
  write({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: filter, _meta: { [META.subscriptionId]: id } } });
  listeners.add(l);
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  res.on('close', () => { clearInterval(keepAlive); listeners.delete(l); });
}

// ---------------------------------------------------------------------------------------------
// DNS rebinding protection: only loopback Host (and Origin, when sent) names are served.
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);
function loopbackName(hostPort) {
  if (!hostPort) return false;
  const host = hostPort.startsWith('[') ? hostPort.slice(0, hostPort.indexOf(']') + 1) : hostPort.split(':')[0];
  return LOOPBACK.has(host.toLowerCase());
}
function originAllowed(origin) {
  if (!origin) return true;
  try { return loopbackName(new URL(origin).host); } catch { return false; }
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

const httpServer = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/mcp') return sendJson(res, 404, rpcError(null, -32601, 'Not found'));
    if (!loopbackName(req.headers.host) || !originAllowed(req.headers.origin)) {
      return sendJson(res, 403, rpcError(null, -32000, 'Forbidden: Host or Origin is not a loopback name'));
    }
    let body;
    if (req.method === 'POST') {
      const raw = await readBody(req);
      try { body = JSON.parse(raw); } catch { return sendJson(res, 400, rpcError(null, -32700, 'Parse error')); }
    }
    if (isNextRequest(req, body)) return await handleNext(req, res, body);
    return await handleLegacy(req, res, body);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) sendJson(res, 500, rpcError(null, -32603, String(e?.message ?? e)));
    else res.end();
  }
});
httpServer.listen(PORT, HOST, () => console.log(`conformance test server on http://${HOST}:${PORT}/mcp`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { httpServer.closeAllConnections(); httpServer.close(() => process.exit(0)); });
