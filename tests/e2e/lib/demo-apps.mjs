// The demo's own Rust programs (apps/, servers/) as the end-to-end tests start them: the chat app,
// the LLM stand-in and the reference MCP servers, each a process on 127.0.0.1 with its log under
// the test's run directory, stopped by the test. Also the demo sales database
// (scripts/demo-db.py) and the direct SQL a test compares answers with.
import fs from 'node:fs';
import path from 'node:path';
import { startProcess, stopProcess, waitUntil, run } from './procs.mjs';
import { portOpen } from './net.mjs';
import { REPO_ROOT } from './gateway.mjs';

export const DEMO_BINARIES = Object.freeze([
  'mcpgate-chat',
  'mcpgate-llm-standin',
  'mcpgate-server-notes',
  'mcpgate-server-sqlite',
  'mcpgate-server-whoami',
]);

/**
 * The directory holding the demo binaries: $MCPGATE_BIN_DIR, else target/debug (the missing ones
 * built with one cargo run).
 */
export async function demoBinDir() {
  const dir = process.env.MCPGATE_BIN_DIR ?? path.join(REPO_ROOT, 'target', 'debug');
  const missing = DEMO_BINARIES.filter((b) => !fs.existsSync(path.join(dir, b)));
  if (missing.length && process.env.MCPGATE_BIN_DIR) {
    throw new Error(`MCPGATE_BIN_DIR=${dir} lacks ${missing.join(', ')}`);
  }
  if (missing.length) {
    const r = await run('cargo', ['build', ...missing.flatMap((b) => ['-p', b])], { cwd: REPO_ROOT, timeoutMs: 1_200_000 });
    if (r.code !== 0) throw new Error(`cargo build of ${missing.join(', ')} failed:\n${r.stderr.slice(-4000)}`);
  }
  return dir;
}

/**
 * Starts one demo binary listening on 127.0.0.1:`port` (its `--listen` is added) and waits until
 * the port answers. Returns {port, proc, stop}.
 */
export async function startDemoProgram(name, args, { port, logFile, env }) {
  const bin = path.join(await demoBinDir(), name);
  const proc = startProcess(name, bin, ['--listen', `127.0.0.1:${port}`, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1', ...env },
    logFile,
  });
  await waitUntil(`${name} on 127.0.0.1:${port}`, () => portOpen(port), { timeoutMs: 30_000, child: proc });
  return { port, proc, stop: () => stopProcess(proc) };
}

/** Writes the demo sales database (scripts/demo-db.py) to `file`. */
export async function writeDemoDatabase(file) {
  const r = await run('python3', [path.join(REPO_ROOT, 'scripts', 'demo-db.py'), file], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`scripts/demo-db.py failed:\n${r.stderr}`);
  return file;
}

/** Runs one read-only SQL query on a SQLite file with Python's sqlite3: the rows as arrays. */
export async function sqlRows(file, sql) {
  const script = 'import json,sqlite3,sys\n'
    + 'c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)\n'
    + 'print(json.dumps([list(r) for r in c.execute(sys.argv[2])]))\n';
  const r = await run('python3', ['-c', script, file, sql], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`sqlite3 query failed:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}
