// ./demo.sh as a newcomer runs it, on a machine where another Envoy already runs: the demo starts
// (its Envoy takes a free base id instead of failing on base id 0), the gateway answers MCP
// clients with its 401 challenge, nothing it starts listens beyond 127.0.0.1, and Ctrl-C stops
// every process it started.
//
// The demo uses its fixed ports (18080-18111) and the repository's .run/ directory, as a newcomer
// would; the binaries are the debug builds the suite already uses (MCPGATE_BIN_DIR),
// so the test does not pay for a release build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProcess, stopProcess, waitUntil, isRunning } from '../lib/procs.mjs';
import { freePorts } from '../lib/net.mjs';
import { ARTIFACTS_DIR, REPO_ROOT, tokenServiceBinary } from '../lib/gateway.mjs';
import { DEMO_BINARIES, demoBinDir } from '../lib/demo-apps.mjs';

const ENVOY_BIN = process.env.MCPGATE_ENVOY_BIN ?? path.join(REPO_ROOT, '.venv', 'bin', 'envoy');
const DEMO_PORTS = [18080, 18081, 18082, 18090, 18101, 18102, 18103, 18104, 18105, 18106, 18107, 18110, 18111];

/** Every process below `root` (itself included), from /proc. */
function processTree(root) {
  const children = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid …: comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(entry));
  }
  const tree = new Set([root]);
  const queue = [root];
  while (queue.length) {
    for (const child of children.get(queue.shift()) ?? []) {
      if (!tree.has(child)) {
        tree.add(child);
        queue.push(child);
      }
    }
  }
  return tree;
}

/** Listening TCP sockets of `pids`: [{address, port, pid, command}]. */
function listeners(pids) {
  const out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' });
  const found = [];
  for (const line of out.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 6) continue;
    const local = cols[3];
    const colon = local.lastIndexOf(':');
    const address = local.slice(0, colon);
    const port = Number(local.slice(colon + 1));
    for (const m of line.matchAll(/\("([^"]*)",pid=(\d+)/g)) {
      if (pids.has(Number(m[2]))) found.push({ address, port, pid: Number(m[2]), command: m[1] });
    }
  }
  return found;
}

test('./demo.sh starts beside another Envoy, binds only 127.0.0.1, and stops everything on Ctrl-C', { timeout: 600_000 }, async (t) => {
  const dir = path.join(ARTIFACTS_DIR, 'demo');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const busy = [];
  for (const port of DEMO_PORTS) {
    if (await fetch(`http://127.0.0.1:${port}/`).then(() => true, () => false)) busy.push(port);
  }
  if (busy.length) {
    t.skip(`the demo's ports ${busy.join(', ')} are in use (is a demo running?)`);
    return;
  }

  // The Envoy a user already runs, started the way most are: with the default base id 0 (the one
  // Envoy of the suite that does not pick a free id, since holding 0 is its purpose here). If
  // something else on the machine holds 0 already, that is the same situation.
  const [otherAdmin] = await freePorts(1);
  const otherConfig = path.join(dir, 'other-envoy.yaml');
  fs.writeFileSync(otherConfig, `admin:\n  address:\n    socket_address: {address: 127.0.0.1, port_value: ${otherAdmin}}\n`);
  const otherLog = path.join(dir, 'other-envoy.log');
  const other = startProcess('other-envoy', ENVOY_BIN, ['-c', otherConfig, '--base-id', '0', '--log-level', 'warn'],
    { cwd: dir, logFile: otherLog });
  t.after(() => stopProcess(other));
  await waitUntil('an Envoy holding base id 0', async () => {
    if (!isRunning(other)) return /unable to bind domain socket with base_id=0/.test(fs.readFileSync(otherLog, 'utf8'));
    return (await fetch(`http://127.0.0.1:${otherAdmin}/ready`)).status === 200;
  });

  // The suite's builds, gathered in one directory for MCPGATE_BIN_DIR.
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(await tokenServiceBinary(), path.join(bin, 'mcpgate-token-service'));
  const demoBins = await demoBinDir();
  for (const b of DEMO_BINARIES) fs.symlinkSync(path.join(demoBins, b), path.join(bin, b));

  const demoLog = path.join(dir, 'demo.log');
  const demo = startProcess('demo', path.join(REPO_ROOT, 'demo.sh'), [], {
    cwd: REPO_ROOT,
    env: { ...process.env, MCPGATE_BIN_DIR: bin },
    logFile: demoLog,
  });
  t.after(() => stopProcess(demo, 10_000));
  await waitUntil('./demo.sh to print that mcpgate is running', () => fs.readFileSync(demoLog, 'utf8').includes('mcpgate is running.'),
    { child: demo, timeoutMs: 540_000 });

  // The gateway works: an MCP request without a token gets the discovery challenge.
  const r = await fetch('http://localhost:18080/everything', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate') ?? '', /resource_metadata="http:\/\/localhost:18080\/\.well-known\/oauth-protected-resource\/everything"/);

  // The chat app is behind its client route: a browser without a session is sent to sign in.
  const chat = await fetch('http://localhost:18080/chat/', { redirect: 'manual', headers: { accept: 'text/html' } });
  assert.equal(chat.status, 302);
  assert.match(chat.headers.get('location') ?? '', /\/\.mcpgate\/sign_in\?/);

  const tree = processTree(demo.pid);
  const bound = listeners(tree);
  const ports = new Set(bound.map((l) => l.port));
  for (const port of DEMO_PORTS) assert.ok(ports.has(port), `nothing the demo started listens on ${port}: ${JSON.stringify(bound)}`);
  const exposed = bound.filter((l) => l.address !== '127.0.0.1');
  assert.deepEqual(exposed, [], 'every socket the demo opens is on 127.0.0.1');

  // Ctrl-C: the script's trap stops what it started.
  process.kill(demo.pid, 'SIGINT');
  const exited = await Promise.race([demo.exited, sleep(20_000).then(() => null)]);
  assert.ok(exited, './demo.sh exits within 20 s of Ctrl-C');
  const left = [...tree].filter((pid) => pid !== demo.pid && fs.existsSync(`/proc/${pid}`));
  assert.deepEqual(left, [], 'no process the demo started is left');
});
