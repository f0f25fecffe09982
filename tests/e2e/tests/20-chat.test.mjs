// The chat app and the reference MCP servers as a person meets them (README's first screen), in
// headless Chromium through Envoy and the built filter: sign in; the sidebar lists the servers,
// Notes as "needs connect"; connect Notes through the provider's consent and come back; ask for
// the sales by year and get the totals a direct SQL query on the demo database gives; ask about a
// note; ask for something the demo policy denies and see the denial; disconnect a server. The
// routes' policies are the demo's own (gateway.yaml), so what this test shows is what ./demo.sh does.
// Screenshots of every step are kept under .artifacts/20-chat/screenshots/.
//
// Behind the routes: mcpgate-chat (client route /chat), mcpgate-server-sqlite, -notes, -whoami
// (each behind a recording tap, lib/tap.mjs, so the test sees which credentials reached it), the
// Notion-like provider (lib/notes-provider.mjs) and the LLM stand-in (mcpgate-llm-standin) that the
// chat app calls with the Responses API and with chat completions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { startGateway, USER, REPO_ROOT } from '../lib/gateway.mjs';
import { Browser } from '../lib/browser.mjs';
import { freePorts } from '../lib/net.mjs';
import { startTap } from '../lib/tap.mjs';
import { NotesProvider } from '../lib/notes-provider.mjs';
import { startDemoProgram, writeDemoDatabase, sqlRows } from '../lib/demo-apps.mjs';
import { decodeJwt } from '../lib/oauth.mjs';
import { waitUntil } from '../lib/procs.mjs';

const SALES_BY_YEAR = `SELECT strftime('%Y', o.order_date) AS year,
       ROUND(SUM(l.unit_price * l.quantity * (1 - l.discount)), 2) AS sales
FROM orders o JOIN order_lines l ON l.order_id = o.order_id
GROUP BY year ORDER BY year`;

/** The demo's route settings from gateway.yaml, by path: {policy, description, name}. */
function demoRoute(routePath) {
  const doc = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'gateway.yaml'), 'utf8'));
  const r = doc.routes.find((x) => new URL(x.from).pathname === routePath);
  assert.ok(r, `gateway.yaml has a route ${routePath}`);
  return r;
}

let dir;
let shots;
let database;
let provider;
let standin;
let gw;
let browser;
let page;
const taps = {};

/** A route whose upstream is one demo program behind a tap; `args(gateway, route)` are its flags. */
function tapped(routePath, program, args) {
  return async ({ gateway, route, port }) => {
    const [programPort] = await freePorts(1);
    const server = await startDemoProgram(program, args(gateway, route), {
      port: programPort,
      logFile: path.join(gateway.paths.logs, `${program}.log`),
    });
    const tap = await startTap({ target: `http://127.0.0.1:${programPort}`, port });
    taps[routePath] = tap;
    return { port, stop: async () => { await tap.stop(); await server.stop(); } };
  };
}

const assertionFlags = (gateway, route) => ['--issuer', gateway.issuer, '--route-url', route.url];

before(async () => {
  const [standinPort] = await freePorts(1);
  provider = await new NotesProvider({}).start();
  gw = await startGateway('20-chat', {
    provider,
    accessTokenLifetime: '600s',
    routes: [
      {
        path: '/chat', name: 'Chat', client: true, upstream: 'external',
        start: async ({ gateway, route, port }) => {
          const models = path.join(gateway.dir, 'chat-models.yaml');
          fs.writeFileSync(models, YAML.stringify({
            models: [
              { key: 'standin-responses', id: 'standin-1', label: 'Stand-in (Responses API)', api: 'responses', base_url: `http://127.0.0.1:${standinPort}/v1`, standin: true },
              { key: 'standin-chat', id: 'standin-1', label: 'Stand-in (chat completions; the app runs the tools)', api: 'chat_completions', base_url: `http://127.0.0.1:${standinPort}/v1`, standin: true },
            ],
          }));
          return startDemoProgram('mcpgate-chat', ['--gateway', gateway.origin, '--app-url', route.url, '--models', models], {
            port, logFile: path.join(gateway.paths.logs, 'mcpgate-chat.log'),
          });
        },
      },
      {
        path: '/sqlite', name: 'Sales database', upstream: 'external',
        description: demoRoute('/sqlite').description, policy: demoRoute('/sqlite').policy,
        start: async (where) => {
          database = await writeDemoDatabase(path.join(where.gateway.dir, 'sales.db'));
          return tapped('/sqlite', 'mcpgate-server-sqlite', (g, r) => ['--database', database, ...assertionFlags(g, r)])(where);
        },
      },
      {
        path: '/notes', name: 'Notes', upstream: 'external', description: demoRoute('/notes').description,
        upstreamOAuth2: {},
        start: tapped('/notes', 'mcpgate-server-notes', (g, r) => ['--provider-api', provider.origin, ...assertionFlags(g, r)]),
      },
      {
        path: '/whoami', name: 'Who am I', upstream: 'external', description: demoRoute('/whoami').description,
        start: tapped('/whoami', 'mcpgate-server-whoami', assertionFlags),
      },
    ],
  });
  dir = gw.dir;
  shots = path.join(dir, 'screenshots');
  fs.mkdirSync(shots, { recursive: true });
  provider.logFile = path.join(gw.paths.logs, 'notes-provider.log');
  standin = await startDemoProgram('mcpgate-llm-standin', [], { port: standinPort, logFile: path.join(gw.paths.logs, 'mcpgate-llm-standin.log') });
  browser = await Browser.launch(dir);
  page = await browser.context.newPage();
  await page.setViewportSize({ width: 1280, height: 860 });
}, { timeout: 1_200_000 });

after(async () => {
  await page?.close().catch(() => {});
  await browser?.close();
  await standin?.stop();
  await gw?.stop();
  await provider?.stop();
});

const chatUrl = () => `${gw.route('/chat').url}/`;
const onChat = (u) => u.startsWith(chatUrl());
const server = (name) => page.locator(`[data-testid="server-${name}"]`);
let step = 0;
const shot = (name) => page.screenshot({ path: path.join(shots, `${String(++step).padStart(2, '0')}-${name}.png`), fullPage: false });

/** Sends a question and waits for the answer to finish; returns the last assistant message's text. */
async function ask(question) {
  const before = await page.locator('[data-testid="assistant-message"]').count();
  await page.fill('[data-testid="chat-input"]', question);
  await page.click('[data-testid="send"]');
  const answer = page.locator('[data-testid="assistant-message"]').nth(before);
  await answer.waitFor();
  await page.waitForFunction((n) => {
    const el = document.querySelectorAll('[data-testid="assistant-message"]')[n];
    return el && el.dataset.state === 'done';
  }, before, { timeout: 60_000 });
  return { answer, text: await answer.innerText() };
}

/** Access-log records (JSON lines of envoy.log) for tools/call on a route. */
function toolCalls(routeName) {
  const text = fs.readFileSync(path.join(gw.paths.logs, 'envoy.log'), 'utf8');
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    .filter((r) => r.mcp_method === 'tools/call' && r.route === routeName);
}

test('sign in, then the sidebar lists the servers with their status (Notes needs connect)', async () => {
  const r = await browser.drive(page, { url: chatUrl(), username: USER.username, password: USER.password, until: onChat });
  assert.ok(r.arrived, `back at the chat after sign-in: ${JSON.stringify(r.steps)}; ${r.bodyText?.slice(0, 300)}`);
  await page.locator('[data-testid="user-email"]').waitFor();
  assert.equal((await page.innerText('[data-testid="user-email"]')).trim(), USER.email);
  await server('Notes').waitFor();
  assert.equal(await server('Notes').getAttribute('data-status'), 'needs_connect');
  await page.waitForFunction(() => document.querySelector('[data-testid="server-Sales database"]')?.dataset.status === 'connected');
  assert.equal(await server('Who am I').getAttribute('data-status'), 'connected');
  // The stand-in is labelled as such.
  assert.match(await page.innerText('body'), /stand-in/i);
  await shot('signed-in');
});

test('connect Notes through the provider\'s consent and come back to the chat', async () => {
  const r = await browser.drive(page, {
    start: () => page.click('[data-testid="connect-Notes"]'),
    username: USER.username, password: USER.password, until: onChat,
  });
  assert.ok(r.arrived, `back at the chat after consent: ${JSON.stringify(r.steps)}; ${r.bodyText?.slice(0, 300)}`);
  assert.ok(r.steps.some((s) => s.kind === 'consent' && s.url.startsWith(provider.origin)), `the provider's consent page was shown: ${JSON.stringify(r.steps)}`);
  await page.waitForFunction(() => document.querySelector('[data-testid="server-Notes"]')?.dataset.status === 'connected');
  await shot('notes-connected');
});

test('"What were our sales by year?" gets the totals a direct SQL query gives, with a chart', async () => {
  const expected = await sqlRows(database, SALES_BY_YEAR);
  assert.ok(expected.length >= 3, `the demo database spans several years: ${JSON.stringify(expected)}`);
  const { answer, text } = await ask('What were our sales by year?');
  const card = answer.locator('[data-testid="tool-card"][data-tool="query"]');
  assert.equal(await card.getAttribute('data-status'), 'ok');
  for (const [year, sales] of expected) {
    const shown = sales.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    assert.ok(text.includes(year) && text.includes(shown), `the answer shows ${year}: ${shown}\n${text}`);
  }
  await answer.locator('[data-testid="chart"]').first().waitFor();
  await shot('sales-by-year');
});

test('a question about a note is answered from the Notes server with the user\'s provider token', async () => {
  const { answer, text } = await ask('What do my notes say about the Q3 launch plan?');
  assert.equal(await answer.locator('[data-testid="tool-card"][data-tool="search"]').getAttribute('data-status'), 'ok');
  assert.equal(await answer.locator('[data-testid="tool-card"][data-tool="fetch"]').getAttribute('data-status'), 'ok');
  assert.match(text, /Q3 launch plan/i);
  await shot('notes-answer');
});

test('a query the demo policy denies (salaries, HR only) shows the denial and its reason', async () => {
  const { answer, text } = await ask('What are our employees\' salaries?');
  const card = answer.locator('[data-testid="tool-card"][data-tool="query"]');
  assert.equal(await card.getAttribute('data-status'), 'denied');
  assert.match(await card.innerText(), /denied by policy/i);
  assert.match(text, /refused|denied/i);
  await shot('denied');
});

test('the chat-completions model runs the tool loop in the app: "Who am I?" through the whoami server', async () => {
  await page.selectOption('[data-testid="model-picker"]', 'standin-chat');
  const { answer, text } = await ask('Who am I?');
  assert.equal(await answer.locator('[data-testid="tool-card"][data-tool="whoami"]').getAttribute('data-status'), 'ok');
  assert.ok(text.includes(USER.email), text);
  await shot('whoami-tool-loop');
});

test('disconnect Notes: it needs connect again', async () => {
  await page.click('[data-testid="disconnect-Notes"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="server-Notes"]')?.dataset.status === 'needs_connect');
  await shot('notes-disconnected');
});

test('the phone-width layout shows the conversation with the servers in a drawer', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.locator('[data-testid="chat-input"]').waitFor();
  assert.equal(await server('Notes').isVisible(), false, 'the sidebar is a closed drawer on a phone');
  await page.click('[data-testid="servers-toggle"]');
  await server('Notes').waitFor({ state: 'visible' });
  // The drawer slides in: the screenshot waits until it is all on screen.
  await page.waitForFunction(() => document.querySelector('[data-testid="server-Notes"]').getBoundingClientRect().left >= 0);
  await page.waitForTimeout(300);
  await shot('phone-drawer');
  await page.setViewportSize({ width: 1280, height: 860 });
});

test('the access log shows every tool call with the user and the decision', async () => {
  // Envoy flushes its access log about once a second: wait for the last call's line.
  await waitUntil('the whoami call in the access log', () => toolCalls('Who am I').length > 0, { timeoutMs: 10_000 });
  const sql = toolCalls('Sales database');
  assert.ok(sql.some((r) => r.decision === 'allow' && r.mcp_target === 'query'), JSON.stringify(sql));
  const denied = sql.filter((r) => r.decision === 'deny');
  assert.equal(denied.length, 1, JSON.stringify(sql));
  assert.match(denied[0].reason, /policy\.deny/);
  const notes = toolCalls('Notes');
  assert.deepEqual([...new Set(notes.map((r) => r.mcp_target))].sort(), ['fetch', 'search']);
  const who = toolCalls('Who am I');
  assert.equal(who.length, 1);
  for (const r of [...sql, ...notes, ...who]) {
    assert.equal(r.sub, USER.username);
    assert.equal(r.email, USER.email);
  }
  assert.ok(notes.every((r) => r.decision === 'allow'));
});

test('the MCP servers received the assertion and the provider token, never the gateway token or the cookie', () => {
  const providerTokens = new Set(provider.issued.map((t) => t.accessToken));
  for (const [routePath, tap] of Object.entries(taps)) {
    const posts = tap.requests.filter((r) => r.method === 'POST');
    assert.ok(posts.length > 0, `${routePath} received MCP requests`);
    for (const r of tap.requests) {
      assert.ok(r.headers['x-mcpgate-assertion'], `${routePath}: every request carries the assertion`);
      assert.equal(decodeJwt(r.headers['x-mcpgate-assertion']).payload.sub, USER.username);
      assert.equal(r.headers.cookie, undefined, `${routePath}: no cookie`);
      const bearer = /^Bearer (.+)$/i.exec(r.headers.authorization ?? '')?.[1];
      if (routePath === '/notes') {
        assert.ok(bearer && providerTokens.has(bearer), `${routePath}: the provider's token, not another`);
      } else {
        assert.equal(bearer, undefined, `${routePath}: no Authorization (the route has no upstream OAuth)`);
      }
    }
  }
  // What the provider's API saw is the same provider token.
  assert.ok(provider.apiBearers.length > 0 && provider.apiBearers.every((b) => providerTokens.has(b)));
});

test('no provider token, session cookie or client secret of the run in any log (the apps\' and servers\' included)', async () => {
  const seen = new Map();
  for (const c of await browser.context.cookies(gw.origin)) seen.set(`browser cookie ${c.name}`, c.value);
  const { leaks, files, checked } = gw.findLeaks(seen, provider.secrets(), gw.secrets());
  for (const name of ['mcpgate-chat.log', 'mcpgate-llm-standin.log', 'mcpgate-server-notes.log', 'envoy.log']) {
    assert.ok(files.includes(name), `${name} was scanned: ${files}`);
  }
  assert.deepEqual(leaks, [], `no secret in any log (checked ${checked} in ${files.join(', ')})`);
});
