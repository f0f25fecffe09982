// A throwaway certificate authority and a `localhost` server certificate, made with openssl at
// test time, for the https server that publishes a Client ID Metadata Document.
import fs from 'node:fs';
import path from 'node:path';
import { run } from './procs.mjs';

async function openssl(args, cwd) {
  const r = await run('openssl', args, { cwd });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
}

/** Writes ca.pem, ca.key, localhost.pem, localhost.key into `dir`; returns their paths. */
export async function makeTestCa(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const f = (name) => path.join(dir, name);
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=mcpgate e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], dir);
  await openssl([
    'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('localhost.key'), '-out', f('localhost.csr'), '-subj', '/CN=localhost',
  ], dir);
  fs.writeFileSync(f('localhost.ext'), [
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    '',
  ].join('\n'));
  await openssl([
    'x509', '-req', '-in', f('localhost.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('localhost.pem'), '-days', '2', '-extfile', f('localhost.ext'),
  ], dir);
  return { caCert: f('ca.pem'), cert: f('localhost.pem'), key: f('localhost.key') };
}
