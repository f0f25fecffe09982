// A private PostgreSQL 15 for tests that stop, kill or restart the database: its own data directory
// in a temporary folder (initdb, trust authentication, superuser `postgres`), listening only on
// 127.0.0.1 on a free port, its Unix socket in that folder, a database `test`. The machine's own
// instance (127.0.0.1:5432) is never touched. Start-up is fast: fsync and full-page writes are off
// and the buffers small. Commits still write the WAL (synchronous_commit stays on, only nothing is
// fsynced), so a committed transaction survives kill() (an immediate shutdown: crash recovery on
// the next start), just not a crash of the machine.
//
// The server runs in the foreground under lib/procs.mjs (its own process group, killed when the
// test process exits). PostgreSQL refuses to run as root: as root (the tests here) the binaries run
// as the `postgres` OS user through `runuser`, in a folder that user owns; otherwise directly.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePorts } from './net.mjs';
import { startProcess, stopProcess, isRunning, run, waitUntil, logTail } from './procs.mjs';

const BIN = process.env.MCPGATE_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const OS_USER = 'postgres';
const asRoot = process.getuid?.() === 0;

// Folders to remove when the test process exits without stop() (after procs.mjs killed the server).
const leftovers = new Set();
process.once('exit', () => {
  for (const dir of leftovers) fs.rmSync(dir, { recursive: true, force: true });
});

/** [command, args] running a PostgreSQL binary as the postgres OS user when we are root. */
function command(bin, args) {
  const file = path.join(BIN, bin);
  return asRoot ? ['runuser', ['-u', OS_USER, '--', file, ...args]] : [file, args];
}

async function runPg(bin, args, options = {}) {
  const [cmd, argv] = command(bin, args);
  const r = await run(cmd, argv, { timeoutMs: 60_000, ...options });
  if (r.code !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r;
}

export class Postgres {
  /**
   * @param {object} o
   * @param {string} [o.logFile] the server's output (default: inside the temporary folder, removed
   *   by stop(); give a path under the run directory to keep it)
   * @param {string} [o.database] the database to create (default `test`)
   */
  constructor({ logFile, database = 'test' } = {}) {
    this.database = database;
    this.logFile = logFile;
  }

  get url() {
    return `postgres://postgres@127.0.0.1:${this.port}/${this.database}`;
  }

  /** The data directory (inside the temporary folder). */
  get dataDir() {
    return path.join(this.dir, 'data');
  }

  async init() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-pg-'));
    leftovers.add(this.dir);
    fs.chmodSync(this.dir, 0o700);
    if (asRoot) {
      const { code, stdout } = await run('id', ['-u', OS_USER]);
      if (code !== 0) throw new Error(`no OS user ${OS_USER} to run PostgreSQL as`);
      const uid = Number(stdout.trim());
      const gid = Number((await run('id', ['-g', OS_USER])).stdout.trim());
      fs.chownSync(this.dir, uid, gid);
    }
    this.logFile ??= path.join(this.dir, 'postgres.log');
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    [this.port] = await freePorts(1);
    await runPg('initdb', ['-D', this.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    fs.appendFileSync(path.join(this.dataDir, 'postgresql.conf'), `
# mcpgate e2e: private, loopback only, fast and not durable
listen_addresses = '127.0.0.1'
port = ${this.port}
unix_socket_directories = '${this.dir}'
fsync = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 40
logging_collector = off
log_min_messages = warning
`);
    await this.start();
    await this.psql(`CREATE DATABASE "${this.database}"`, { database: 'postgres' });
    return this;
  }

  /** Starts the server (after stop() or kill(): the same folder, port and data). */
  async start() {
    if (this.child && isRunning(this.child)) return;
    if (!this.dir) throw new Error('postgres: stopped for good (stop() removed its folder); start a new one');
    const [cmd, argv] = command('postgres', ['-D', this.dataDir]);
    this.child = startProcess('postgres', cmd, argv, { logFile: this.logFile });
    await waitUntil(`postgres on 127.0.0.1:${this.port}`, async () => {
      const r = await run(path.join(BIN, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', 'postgres'], { timeoutMs: 5000 });
      return r.code === 0;
    }, { timeoutMs: 30_000, intervalMs: 50, child: this.child });
  }

  /** Shuts the server down (`pg_ctl stop -m <mode>`) and waits for it to exit. */
  async _shutdown(mode) {
    const child = this.child;
    if (!child || !isRunning(child)) return;
    try {
      await runPg('pg_ctl', ['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', '20']);
    } catch {
      // Whatever pg_ctl could not do, the process group's SIGTERM/SIGKILL does.
    }
    await stopProcess(child, 5000);
  }

  /** Clean ("fast") shutdown, keeping the data: start() or restart() brings it back. */
  async shutdown() {
    await this._shutdown('fast');
  }

  /** Immediate shutdown (`-m immediate`: no checkpoint, clients cut off; recovery on the next start). */
  async kill() {
    await this._shutdown('immediate');
  }

  /** Fast shutdown and start again: same port, same data. */
  async restart() {
    await this.shutdown();
    await this.start();
  }

  /** Stops the server and removes its folder; idempotent. */
  async stop() {
    if (!this.dir) return;
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
    leftovers.delete(this.dir);
    this.dir = undefined;
  }

  /**
   * Runs SQL with psql (over TCP, as postgres); resolves to its unaligned, tuples-only output
   * (rows on lines, columns separated by `|`). Throws on an SQL error.
   */
  async psql(sql, { database = this.database } = {}) {
    const r = await run(path.join(BIN, 'psql'), [
      '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
      '-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', database, '-c', sql,
    ], { timeoutMs: 30_000, env: { ...process.env, PGCONNECT_TIMEOUT: '5' } });
    if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}${this.child ? `\nserver log:\n${logTail(this.logFile, 1500)}` : ''}`);
    return r.stdout.replace(/\n$/, '');
  }
}

/**
 * A private PostgreSQL with database `test`, running: {url, port, start(), stop(), restart(),
 * kill(), shutdown(), psql(sql)}.
 */
export async function startPostgres(options = {}) {
  const pg = new Postgres(options);
  try {
    return await pg.init();
  } catch (e) {
    await pg.stop().catch(() => {});
    throw e;
  }
}
