// mcpgate chat: the page. Talks only to this app's own JSON API, by relative URL (the page has a
// <base> at the client route's path), so it works wherever the gateway mounts the app.

import { renderMarkdown } from './markdown.js';
import { barChart, chartModel } from './chart.js';
import { readEvents } from './stream.js';

const EXAMPLES = [
  'What were our sales by year?',
  'What do my notes say about the Q3 launch plan?',
  "What are our employees' salaries?",
  'Who am I?',
];
const PREFS_KEY = 'mcpgate-chat:prefs';
const MAX_TABLE_ROWS = 50;

const $ = (id) => document.getElementById(id);

const state = {
  models: [],
  servers: [],
  messages: [],
  prefs: loadPrefs(),
  abort: null,
  // Keep the newest output in view until the reader scrolls up.
  follow: true,
};

// ---------------------------------------------------------------------------------------------
// Small DOM helpers: every text goes in as textContent; only the markdown renderer's output
// (escaped first) is set as HTML.

function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function icon(path, cls = 'icon') {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', cls);
  const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  p.setAttribute('d', path);
  svg.append(p);
  return svg;
}

const ICONS = {
  tool: 'M14.7 6.3a4 4 0 0 0-5.4 5.1L4 16.7V20h3.3l5.3-5.3a4 4 0 0 0 5.1-5.4l-2.4 2.4-2.3-.5-.5-2.3z',
  chevron: 'M9 6l6 6-6 6',
  check: 'M5 12l5 5 9-10',
  block: 'M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM5.6 5.6l12.8 12.8',
  alert: 'M12 4l9 16H3zM12 10v4M12 17v.5',
  plug: 'M9 3v5M15 3v5M7 8h10v3a5 5 0 0 1-10 0zM12 16v5',
};

// ---------------------------------------------------------------------------------------------
// Preferences (switches, chosen model, open server panels) live in localStorage.

function loadPrefs() {
  try {
    const prefs = JSON.parse(localStorage.getItem(PREFS_KEY) ?? '{}');
    return { servers: prefs.servers ?? {}, model: prefs.model ?? null };
  } catch {
    return { servers: {}, model: null };
  }
}

function savePrefs() {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify(state.prefs));
  } catch {
    // Storage may be full or blocked; the switches still work for this page.
  }
}

function serverPrefs(url) {
  state.prefs.servers[url] ??= { on: true, tools: {}, open: false };
  return state.prefs.servers[url];
}

const serverOn = (server) => serverPrefs(server.url).on !== false;
const toolOn = (server, tool) => serverPrefs(server.url).tools[tool] !== false;
const usable = (server) => server.status === 'connected';

// ---------------------------------------------------------------------------------------------
// The API.

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { accept: 'application/json', ...(options.headers ?? {}) } });
  } catch {
    throw new ApiError('The app could not be reached. Check your connection and try again.');
  }
  if (response.ok) return response;
  let message = null;
  try {
    message = (await response.json()).error;
  } catch {
    // Not the app's JSON: the gateway answered.
  }
  if (response.status === 401 && !(message && message.startsWith('This app must be reached'))) {
    throw new ApiError('Your session expired — reload the page.');
  }
  throw new ApiError(message || `The app answered HTTP ${response.status}.`);
}

// ---------------------------------------------------------------------------------------------
// Header: who, which model.

async function loadMe() {
  try {
    const me = await (await api('api/me')).json();
    const user = $('user');
    user.textContent = me.email;
    user.title = [me.name, me.email, me.groups?.length ? `groups: ${me.groups.join(', ')}` : ''].filter(Boolean).join(' · ');
    state.models = me.models ?? [];
    renderModels();
  } catch (e) {
    showBanner(e.message);
  }
}

function renderModels() {
  const select = $('model');
  select.replaceChildren(...state.models.map((m) => h('option', { value: m.key }, m.label)));
  const saved = state.models.find((m) => m.key === state.prefs.model);
  select.value = saved ? saved.key : state.models[0]?.key ?? '';
  select.disabled = state.models.length === 0;
  updateStandinBadge();
}

const currentModel = () => state.models.find((m) => m.key === $('model').value);

function updateStandinBadge() {
  const model = currentModel();
  $('standin-badge').hidden = !model?.standin;
  document.body.classList.toggle('standin', Boolean(model?.standin));
}

// ---------------------------------------------------------------------------------------------
// Sidebar: servers, their tools, switches.

async function loadServers() {
  const list = $('servers');
  list.setAttribute('aria-busy', 'true');
  $('refresh').classList.add('spinning');
  try {
    const body = await (await api('api/servers')).json();
    state.servers = body.servers ?? [];
    renderServers();
  } catch (e) {
    list.replaceChildren(h('li', { class: 'sidebar-error', 'data-testid': 'servers-error', role: 'alert' },
      h('p', {}, e.message),
      h('button', { type: 'button', class: 'button small', onclick: loadServers }, 'Try again')));
    $('tool-count').textContent = '';
  } finally {
    list.removeAttribute('aria-busy');
    $('refresh').classList.remove('spinning');
  }
}

const STATUS_LABEL = { connected: 'Connected', needs_connect: 'Needs connect', unavailable: 'Unavailable' };

function renderServers() {
  const list = $('servers');
  if (!state.servers.length) {
    list.replaceChildren(h('li', { class: 'placeholder' }, 'The gateway lists no MCP server for you.'));
  } else {
    list.replaceChildren(...state.servers.map(serverItem));
  }
  updateCounts();
}

function serverItem(server) {
  const prefs = serverPrefs(server.url);
  const canUse = usable(server);
  const toolsId = `tools-${server.url.replace(/[^a-z0-9]/gi, '-')}`;
  const disclosure = h('button', {
    type: 'button',
    class: 'disclosure',
    'aria-expanded': String(Boolean(prefs.open && canUse)),
    'aria-controls': toolsId,
    'aria-label': `Show the tools of ${server.name}`,
    disabled: !canUse || !server.tools.length,
    onclick: () => {
      prefs.open = !prefs.open;
      savePrefs();
      item.classList.toggle('open', prefs.open);
      disclosure.setAttribute('aria-expanded', String(prefs.open));
      tools.hidden = !prefs.open;
    },
  }, icon(ICONS.chevron));

  const serverSwitch = toggle({
    checked: canUse && prefs.on !== false,
    disabled: !canUse,
    label: `Use ${server.name}`,
    testid: `server-toggle-${server.name}`,
    onchange: (on) => {
      prefs.on = on;
      savePrefs();
      item.classList.toggle('off', !on);
      for (const input of tools.querySelectorAll('input')) input.disabled = !on;
      updateCounts();
    },
  });

  const actions = [];
  if (server.status === 'needs_connect') {
    actions.push(h('a', { class: 'button small primary', href: server.connect_url, 'data-testid': `connect-${server.name}` },
      icon(ICONS.plug), 'Connect'));
  }
  if (server.status === 'connected' && server.needs_oauth) {
    actions.push(h('button', {
      type: 'button',
      class: 'button small ghost',
      'data-testid': `disconnect-${server.name}`,
      onclick: (e) => disconnect(server, e.currentTarget),
    }, 'Disconnect'));
  }
  const count = h('span', { class: 'tool-count muted', 'data-testid': `tool-count-${server.name}` });
  if (canUse) actions.push(count);

  const tools = h('ul', { class: 'tools', id: toolsId, hidden: !(prefs.open && canUse) },
    ...(canUse ? server.tools : []).map((tool) => h('li', { class: 'tool' },
      toggle({
        checked: toolOn(server, tool.name),
        disabled: prefs.on === false,
        small: true,
        label: `Allow ${tool.name}`,
        testid: `tool-toggle-${server.name}-${tool.name}`,
        onchange: (on) => {
          prefs.tools[tool.name] = on;
          savePrefs();
          updateCounts();
        },
      }),
      h('div', { class: 'tool-text' },
        h('code', {}, tool.name),
        tool.description ? h('p', {}, tool.description) : null))));

  const item = h('li', {
    class: `server status-${server.status}${prefs.on === false ? ' off' : ''}${prefs.open && canUse ? ' open' : ''}`,
    'data-testid': `server-${server.name}`,
    'data-status': server.status,
    'data-url': server.url,
  },
  h('div', { class: 'server-head' },
    disclosure,
    h('div', { class: 'server-title' },
      h('span', { class: 'server-name' }, server.name),
      h('span', { class: `pill ${server.status}`, 'data-testid': `status-${server.name}` }, STATUS_LABEL[server.status] ?? server.status)),
    serverSwitch),
  server.description ? h('p', { class: 'server-description' }, server.description) : null,
  server.reason ? h('p', { class: 'server-reason' }, server.reason) : null,
  server.status === 'needs_connect'
    ? h('p', { class: 'server-reason neutral' }, 'Sign in to its provider once; the gateway keeps the token, the app never sees it.')
    : null,
  actions.length ? h('div', { class: 'server-actions' }, ...actions) : null,
  tools);
  item.updateCount = () => {
    const on = server.tools.filter((t) => toolOn(server, t.name)).length;
    count.textContent = prefs.on === false ? 'Off' : `${on} of ${server.tools.length} tools on`;
  };
  return item;
}

function toggle({ checked, disabled, label, testid, small, onchange }) {
  const input = h('input', {
    type: 'checkbox',
    role: 'switch',
    'aria-label': label,
    'data-testid': testid,
    checked,
    disabled,
    onchange: (e) => onchange(e.currentTarget.checked),
  });
  return h('label', { class: `switch${small ? ' small' : ''}`, title: label }, input, h('span', { class: 'track', 'aria-hidden': 'true' }));
}

function enabledServers() {
  return state.servers
    .filter((s) => usable(s) && serverOn(s))
    .map((s) => ({ url: s.url, tools: s.tools.filter((t) => toolOn(s, t.name)).map((t) => t.name) }))
    .filter((s) => s.tools.length);
}

function updateCounts() {
  for (const item of $('servers').children) item.updateCount?.();
  const tools = enabledServers().reduce((n, s) => n + s.tools.length, 0);
  const servers = enabledServers().length;
  $('tool-count').textContent = state.servers.length
    ? `${tools} tool${tools === 1 ? '' : 's'} on · ${servers} server${servers === 1 ? '' : 's'}`
    : '';
}

async function disconnect(server, button) {
  button.disabled = true;
  button.textContent = 'Disconnecting…';
  try {
    await api('api/servers/disconnect', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: server.url }),
    });
    await loadServers();
  } catch (e) {
    button.disabled = false;
    button.textContent = 'Disconnect';
    showBanner(e.message);
  }
}

// ---------------------------------------------------------------------------------------------
// Conversation.

function renderExamples() {
  $('chips').replaceChildren(...EXAMPLES.map((text) => h('button', {
    type: 'button',
    class: 'chip',
    'data-testid': 'example',
    onclick: () => send(text),
  }, text)));
}

function nearBottom() {
  const m = $('messages');
  return m.scrollHeight - m.scrollTop - m.clientHeight < 120;
}

function scrollToEnd(force = false) {
  if (force) state.follow = true;
  const m = $('messages');
  if (state.follow) m.scrollTop = m.scrollHeight;
}

function showBanner(message, parent = $('messages')) {
  const banner = h('div', { class: 'banner error', role: 'alert', 'data-testid': 'error-banner' },
    icon(ICONS.alert), h('span', {}, message));
  parent.append(banner);
  scrollToEnd(true);
  return banner;
}

function addUserMessage(text) {
  $('empty').hidden = true;
  $('messages').append(h('div', { class: 'message user', 'data-testid': 'user-message' },
    h('div', { class: 'bubble' }, text)));
}

/** An assistant turn: text segments and tool cards, in the order they arrive. */
class AssistantTurn {
  constructor() {
    this.body = h('div', { class: 'bubble' });
    this.typing = h('div', { class: 'typing', 'aria-label': 'The assistant is working' }, h('span'), h('span'), h('span'));
    this.body.append(this.typing);
    this.node = h('div', { class: 'message assistant', 'data-testid': 'assistant-message', 'data-state': 'streaming' },
      h('div', { class: 'avatar', 'aria-hidden': 'true' }, h('img', { src: 'static/favicon.svg', alt: '' })),
      this.body);
    $('messages').append(this.node);
    this.text = '';
    this.segment = null;
    this.cards = new Map();
    this.pending = false;
  }

  insert(node) {
    this.body.insertBefore(node, this.typing);
    scrollToEnd();
  }

  appendText(delta) {
    this.text += delta;
    if (!this.segment) {
      this.segment = { node: h('div', { class: 'markdown' }), text: '' };
      this.insert(this.segment.node);
    }
    this.segment.text += delta;
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.flush();
      });
    }
  }

  flush() {
    if (this.segment) this.segment.node.innerHTML = renderMarkdown(this.segment.text);
    scrollToEnd();
  }

  toolCall(event) {
    this.flush();
    this.segment = null;
    const card = toolCard(event);
    this.cards.set(event.id, card);
    this.insert(card);
  }

  toolResult(event) {
    let card = this.cards.get(event.id);
    if (!card) {
      card = toolCard({ ...event, arguments: undefined });
      this.cards.set(event.id, card);
      this.insert(card);
    }
    fillResult(card, event);
    scrollToEnd();
  }

  error(message) {
    this.flush();
    this.segment = null;
    const banner = h('div', { class: 'banner error', role: 'alert', 'data-testid': 'error-banner' },
      icon(ICONS.alert), h('span', {}, message));
    this.insert(banner);
  }

  finish(how) {
    this.flush();
    this.typing.remove();
    for (const card of this.cards.values()) {
      if (card.dataset.status === 'pending') setCardStatus(card, 'failed', 'Stopped');
    }
    if (how === 'stopped') this.body.append(h('p', { class: 'stopped muted' }, 'Stopped.'));
    if (!this.body.childElementCount) this.body.append(h('p', { class: 'muted' }, '(no answer)'));
    this.node.dataset.state = how;
  }
}

function pretty(value) {
  if (typeof value === 'string') return value;
  return JSON.stringify(value, null, 2);
}

function toolCard({ server, tool, arguments: args }) {
  const status = h('span', { class: 'tool-status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Running…');
  const card = h('div', {
    class: 'tool-card',
    'data-testid': 'tool-card',
    'data-tool': tool,
    'data-server': server,
    'data-status': 'pending',
  },
  h('div', { class: 'tool-head' },
    icon(ICONS.tool, 'icon tool-icon'),
    h('span', { class: 'tool-title' }, h('span', { class: 'tool-server' }, server), h('span', { class: 'sep' }, '›'), h('code', {}, tool)),
    status),
  args === undefined ? null : h('details', { class: 'tool-section', open: true },
    h('summary', {}, 'Arguments'),
    h('pre', { class: 'json', 'data-testid': 'tool-arguments' }, pretty(args))));
  card.statusNode = status;
  return card;
}

function setCardStatus(card, status, label) {
  card.dataset.status = status;
  const glyph = { ok: ICONS.check, denied: ICONS.block, failed: ICONS.alert }[status];
  card.statusNode.replaceChildren(glyph ? icon(glyph) : '', label);
}

function fillResult(card, event) {
  if (event.status === 'denied') {
    setCardStatus(card, 'denied', 'Denied by policy');
    card.append(h('div', { class: 'denial', 'data-testid': 'denial' },
      h('p', { class: 'denial-title' }, 'The gateway refused this call.'),
      event.reason ? h('p', { class: 'denial-reason', 'data-testid': 'denial-reason' }, event.reason) : null,
      h('p', { class: 'denial-message' }, event.message)));
    return;
  }
  if (event.status === 'failed') {
    setCardStatus(card, 'failed', 'Failed');
    card.append(h('div', { class: 'failure', 'data-testid': 'failure' }, h('pre', {}, event.message)));
    return;
  }
  setCardStatus(card, 'ok', 'Done');
  const result = event.result;
  const tabular = result && Array.isArray(result.columns) && Array.isArray(result.rows);
  const summary = tabular
    ? `Result · ${result.rows.length} row${result.rows.length === 1 ? '' : 's'}${result.truncated ? ' (truncated)' : ''}`
    : 'Result';
  const section = h('details', { class: 'tool-section result', 'data-testid': 'tool-result' }, h('summary', {}, summary));
  if (tabular) {
    section.open = true;
    section.append(dataTable(result));
    if (chartModel(result)) {
      // Drawn at about the width it is shown, so its text stays readable on a phone.
      const width = Math.max(320, Math.min(640, $('messages').clientWidth - 80));
      section.append(h('div', { class: 'chart-wrap' }, barChart(result, { width })));
    }
    section.append(h('details', { class: 'raw' }, h('summary', {}, 'JSON'), h('pre', { class: 'json' }, pretty(result))));
  } else {
    const text = pretty(result ?? null);
    section.open = text.length < 1200;
    section.append(h('pre', { class: 'json' }, text));
  }
  card.append(section);
}

function dataTable({ columns, rows }) {
  const numeric = columns.map((_, j) => rows.length > 0 && rows.every((r) => typeof r[j] === 'number'));
  const format = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
  const cell = (v, j) => h('td', { class: numeric[j] ? 'align-right' : null },
    v === null ? '—' : typeof v === 'number' ? format.format(v) : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const shown = rows.slice(0, MAX_TABLE_ROWS);
  return h('div', { class: 'table-wrap' },
    h('table', { 'data-testid': 'result-table' },
      h('thead', {}, h('tr', {}, ...columns.map((c, j) => h('th', { class: numeric[j] ? 'align-right' : null }, String(c))))),
      h('tbody', {}, ...shown.map((r) => h('tr', {}, ...columns.map((_, j) => cell(r[j], j)))))),
    rows.length > shown.length ? h('p', { class: 'muted more-rows' }, `${rows.length - shown.length} more rows not shown`) : null);
}

async function send(text) {
  const content = text.trim();
  if (!content || state.abort) return;
  const model = currentModel();
  if (!model) {
    showBanner('No language model is configured for this app.');
    return;
  }
  closeDrawer();
  state.messages.push({ role: 'user', content });
  addUserMessage(content);
  const input = $('input');
  input.value = '';
  autosize();
  const turn = new AssistantTurn();
  scrollToEnd(true);
  setStreaming(new AbortController());
  let how = 'done';
  try {
    const response = await api('api/chat', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ messages: state.messages, model: model.key, servers: enabledServers() }),
      signal: state.abort.signal,
    });
    let ended = false;
    for await (const { event, data } of readEvents(response)) {
      if (event === 'tool_call') turn.toolCall(data);
      else if (event === 'tool_result') turn.toolResult(data);
      else if (event === 'text') turn.appendText(data.delta ?? '');
      else if (event === 'error') {
        turn.error(data.message ?? 'Something went wrong.');
        how = 'error';
      } else if (event === 'done') ended = true;
    }
    if (!ended && how !== 'error') {
      turn.error('The answer stopped before it was complete.');
      how = 'error';
    }
  } catch (e) {
    if (e.name === 'AbortError') how = 'stopped';
    else {
      turn.error(e instanceof ApiError ? e.message : 'The connection to the app broke while the answer was streaming.');
      how = 'error';
    }
  } finally {
    turn.finish(how);
    if (turn.text.trim()) state.messages.push({ role: 'assistant', content: turn.text });
    setStreaming(null);
    input.focus();
  }
}

function setStreaming(controller) {
  state.abort = controller;
  const busy = Boolean(controller);
  $('send').hidden = busy;
  $('stop').hidden = !busy;
  document.body.classList.toggle('busy', busy);
}

function newChat() {
  if (state.abort) state.abort.abort();
  state.messages = [];
  const messages = $('messages');
  const empty = $('empty');
  messages.replaceChildren(empty);
  empty.hidden = false;
  $('input').focus();
}

function autosize() {
  const input = $('input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

// ---------------------------------------------------------------------------------------------
// The drawer (phones).

function openDrawer() {
  document.body.classList.add('drawer-open');
  $('menu').setAttribute('aria-expanded', 'true');
  $('scrim').hidden = false;
}

function closeDrawer() {
  document.body.classList.remove('drawer-open');
  $('menu').setAttribute('aria-expanded', 'false');
  $('scrim').hidden = true;
}

function init() {
  renderExamples();
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send($('input').value);
  });
  $('input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send($('input').value);
    }
  });
  $('input').addEventListener('input', autosize);
  $('messages').addEventListener('scroll', () => {
    state.follow = nearBottom();
  });
  $('stop').addEventListener('click', () => state.abort?.abort());
  $('model').addEventListener('change', () => {
    state.prefs.model = $('model').value;
    savePrefs();
    updateStandinBadge();
  });
  $('refresh').addEventListener('click', loadServers);
  $('new-chat').addEventListener('click', newChat);
  $('menu').addEventListener('click', () => (document.body.classList.contains('drawer-open') ? closeDrawer() : openDrawer()));
  $('close-sidebar').addEventListener('click', closeDrawer);
  $('scrim').addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeDrawer();
  });
  loadMe();
  loadServers();
  $('input').focus();
}

init();
