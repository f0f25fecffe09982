// Child processes of one test file: spawned detached (own process group), output to a log file,
// stopped with SIGTERM then SIGKILL to the whole group. Everything still running is killed when the
// test process exits (also after an uncaught error) or is interrupted.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

function killAllNow() {
  for (const child of live) killGroup(child.pid, 'SIGKILL');
  live.clear();
}

process.once('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAllNow();
    process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 })[signal]);
  });
}
// An uncaught error ends the process through 'exit' as well; node:test keeps its own handler.

/**
 * Starts `command args` in its own process group with stdout and stderr appended to `logFile`.
 * Returns the ChildProcess with `exited` (a promise of {code, signal}) and `logFile`.
 */
export function startProcess(name, command, args, { cwd, env, logFile }) {
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const fd = fs.openSync(logFile, 'a');
  fs.writeSync(fd, `\n=== ${new Date().toISOString()} starting ${name}: ${command} ${args.join(' ')}\n`);
  const child = spawn(command, args, {
    cwd,
    env: env ?? process.env,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  child.name = name;
  child.logFile = logFile;
  live.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  child.exited.then(() => live.delete(child));
  return child;
}

export function isRunning(child) {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopProcess(child, graceMs = 3000) {
  if (!child) return;
  if (isRunning(child)) {
    killGroup(child.pid, 'SIGTERM');
    const done = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!done) killGroup(child.pid, 'SIGKILL');
    await child.exited;
  }
  // Anything the leader left behind in its group.
  killGroup(child.pid, 'SIGKILL');
  live.delete(child);
}

/** Last `bytes` of a log file, for error messages. */
export function logTail(file, bytes = 4000) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.length > bytes ? '…' + text.slice(-bytes) : text;
  } catch {
    return '(no log)';
  }
}

/** Runs a command to completion; resolves {code, stdout, stderr}. */
export function run(command, args, { cwd, env, input, timeoutMs = 600_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A command that exits without reading stdin (envoy-bootstrap) makes this write fail with
    // EPIPE; that is not an error of the run (its exit code and output are what count).
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** Polls `check` (async, truthy = ready) until `timeoutMs`; fails early when `child` exits. */
export async function waitUntil(what, check, { timeoutMs = 30_000, intervalMs = 100, child } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    if (child && !isRunning(child)) {
      throw new Error(`${what}: ${child.name} exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready. Log tail:\n${logTail(child.logFile)}`);
    }
    try {
      if (await check()) return;
    } catch (e) {
      lastError = e;
    }
    await sleep(intervalMs);
  }
  const tail = child ? `\nLog tail of ${child.name}:\n${logTail(child.logFile)}` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}${tail}`);
}
