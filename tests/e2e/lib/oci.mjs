// The filter's OCI image, read from the OCI image layout the build writes, the way the Istio agent
// and Envoy Gateway pull a Wasm image from a registry (go-containerregistry underneath both):
//   - the manifest is found by the reference's digest or tag (`org.opencontainers.image.ref.name`);
//     a layout of one image stands for it pushed to the reference the manifests name;
//   - every blob read (manifest, config, layers) must hash to the digest its descriptor names, and
//     have the size it declares;
//   - the module is taken from one of the three image variants both accept: Docker's or OCI's
//     "compat" variant (the last layer a tar+gzip holding `plugin.wasm`) or the "oci" variant (two
//     layers, one `application/vnd.module.wasm.content.layer.v1+wasm` holding the raw module);
//   - the module must start with the Wasm magic number.
// The manifest digest is what a WasmPlugin's `sha256` and an EnvoyExtensionPolicy image's
// `sha256` are compared with; the module's own sha256 is what Envoy Gateway hands Envoy.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';

const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const WASM_CONTENT_LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';
const REF_NAME = 'org.opencontainers.image.ref.name';
const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

export const sha256Hex = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

/**
 * `oci://registry/repo:tag`, `registry/repo@sha256:…` (no scheme means oci, as both read it):
 * {name: 'oci://registry/repo' (tag and digest removed), tag, digest}.
 */
export function parseImageReference(url) {
  let rest = url.startsWith('oci://') ? url.slice('oci://'.length) : url;
  let digest;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (!tag && !digest) tag = 'latest';
  return { name: `oci://${rest}`, repository: rest, tag, digest };
}

function readBlob(layout, descriptor, what) {
  const [algorithm, hex] = String(descriptor.digest ?? '').split(':');
  if (algorithm !== 'sha256' || !/^[0-9a-f]{64}$/.test(hex ?? '')) {
    throw new Error(`${what}: unsupported digest ${descriptor.digest}`);
  }
  const file = path.join(layout, 'blobs', 'sha256', hex);
  if (!fs.existsSync(file)) throw new Error(`${what}: blob ${descriptor.digest} is missing from ${layout}`);
  const bytes = fs.readFileSync(file);
  if (sha256Hex(bytes) !== hex) throw new Error(`${what}: blob ${descriptor.digest} does not hash to its digest`);
  if (descriptor.size !== undefined && descriptor.size !== bytes.length) {
    throw new Error(`${what}: blob ${descriptor.digest} is ${bytes.length} bytes, its descriptor says ${descriptor.size}`);
  }
  return bytes;
}

/** The manifest descriptor in index.json that `reference` names (by digest, full reference or tag). */
function resolve(layout, index, reference, url) {
  const manifests = index.manifests ?? [];
  let found;
  if (reference.digest) {
    found = manifests.find((m) => m.digest === reference.digest);
  } else {
    const refOf = (m) => m.annotations?.[REF_NAME];
    const full = `${reference.repository}:${reference.tag}`;
    found = manifests.find((m) => refOf(m) === full) ?? manifests.find((m) => refOf(m) === reference.tag);
    // A layout of one image stands for that image pushed to the reference, whatever its own tag.
    if (!found && manifests.length === 1) [found] = manifests;
  }
  if (!found) {
    const have = manifests.map((m) => m.annotations?.[REF_NAME] ?? m.digest).join(', ');
    throw new Error(`image ${url} is not in the OCI layout ${layout} (it holds ${have || 'nothing'})`);
  }
  return found;
}

/** Files of a tar archive: [{name, data}] (regular files only; PAX and GNU long names honoured). */
function untar(buffer) {
  const files = [];
  let longName;
  for (let pos = 0; pos + 512 <= buffer.length;) {
    const header = buffer.subarray(pos, pos + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start, length) => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1) || '0';
    const prefix = field(345, 155);
    const data = buffer.subarray(pos + 512, pos + 512 + size);
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    if (type === 'L') {
      longName = data.toString('utf8').replace(/\0.*$/s, '');
    } else if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      if (m) longName = m[1];
    } else if (type === '0' || type === '7') {
      files.push({ name, data: Buffer.from(data) });
    }
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

function moduleFromTarGzip(bytes, what) {
  let tar;
  try {
    tar = zlib.gunzipSync(bytes);
  } catch (e) {
    throw new Error(`${what}: the layer is not gzip (${e.message})`);
  }
  const file = untar(tar).find((f) => path.posix.basename(f.name) === 'plugin.wasm');
  if (!file) throw new Error(`${what}: plugin.wasm not found in the layer`);
  return file.data;
}

/**
 * Pulls the image `url` (oci://…) from the OCI image layout directory `layout`.
 * Returns {reference, manifestDigest (hex), variant, module (Buffer), moduleSha256 (hex)}.
 * Throws on anything the agent or Envoy Gateway would refuse.
 */
export function pullWasmImage(layout, url) {
  const what = `image ${url}`;
  if (!fs.existsSync(path.join(layout, 'oci-layout'))) throw new Error(`${layout} is not an OCI image layout (no oci-layout file)`);
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
  const reference = parseImageReference(url);
  const descriptor = resolve(layout, index, reference, url);
  const manifestBytes = readBlob(layout, descriptor, `${what} manifest`);
  const manifest = JSON.parse(manifestBytes.toString('utf8'));
  if (manifest.config) readBlob(layout, manifest.config, `${what} config`);
  const layers = manifest.layers ?? [];
  if (layers.length === 0) throw new Error(`${what}: the image has no layers`);
  const mediaType = manifest.mediaType ?? descriptor.mediaType;

  let variant;
  let module;
  const last = layers[layers.length - 1];
  if (mediaType === DOCKER_MANIFEST) {
    if (last.mediaType !== DOCKER_LAYER) throw new Error(`${what}: Docker image whose last layer is ${last.mediaType}`);
    variant = 'compat (Docker)';
    module = moduleFromTarGzip(readBlob(layout, last, `${what} layer`), what);
  } else if (last.mediaType === OCI_LAYER) {
    variant = 'compat (OCI)';
    module = moduleFromTarGzip(readBlob(layout, last, `${what} layer`), what);
  } else {
    if (layers.length !== 2) throw new Error(`${what}: not a compat image, and an oci-variant image has 2 layers, not ${layers.length}`);
    const wasmLayer = layers.find((l) => l.mediaType === WASM_CONTENT_LAYER);
    if (!wasmLayer) throw new Error(`${what}: no layer of type ${WASM_CONTENT_LAYER}`);
    for (const l of layers) readBlob(layout, l, `${what} layer`);
    variant = 'oci';
    module = readBlob(layout, wasmLayer, `${what} layer`);
  }
  if (module.length < 8 || !module.subarray(0, 4).equals(WASM_MAGIC)) throw new Error(`${what}: the module is not a Wasm binary`);
  return {
    reference,
    manifestDigest: sha256Hex(manifestBytes),
    variant,
    module,
    moduleSha256: sha256Hex(module),
  };
}
