#!/usr/bin/env bash
# Write the filter module as an OCI image layout that Istio and Envoy Gateway pull, and print its
# manifest digest (the `sha256` the rendered WasmPlugin / EnvoyExtensionPolicy carry).
#
#   scripts/oci-image.sh [MODULE] [LAYOUT_DIR]
#   MODULE      default target/wasm32-wasip1/release/mcpgate_filter.wasm (./wasm-build.sh)
#   LAYOUT_DIR  default target/oci/mcpgate-filter
#
# The image is the single-layer "compat" Wasm image: an OCI image manifest whose one layer
# (application/vnd.oci.image.layer.v1.tar+gzip) is a tar holding `plugin.wasm`, the format a
# `FROM scratch` + `COPY plugin.wasm` build produces. Istio's agent and Envoy Gateway both extract
# the module from it. Deterministic: fixed tar metadata (ustar, owner 0, mtime 0) and a gzip
# without name or time, so the same module gives the same digest. The layout's one manifest is
# tagged `latest` (org.opencontainers.image.ref.name); push it with e.g.
#   oras cp --from-oci-layout target/oci/mcpgate-filter:latest registry.example.com/mcpgate/filter:0.1.0
#   skopeo copy oci:target/oci/mcpgate-filter:latest docker://registry.example.com/mcpgate/filter:0.1.0
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="${1:-$root/target/wasm32-wasip1/release/mcpgate_filter.wasm}"
layout="${2:-$root/target/oci/mcpgate-filter}"

if [[ ! -f "$module" ]]; then
    echo "oci-image: $module does not exist (build it with ./wasm-build.sh)" >&2
    exit 1
fi
if [[ "$(head -c 4 "$module" | od -An -tx1 | tr -d ' \n')" != "0061736d" ]]; then
    echo "oci-image: $module is not a WebAssembly module (no \\0asm magic)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layer" "$work/layout/blobs/sha256"
cp "$module" "$work/layer/plugin.wasm"
tar --create --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=0644 \
    -C "$work/layer" -f "$work/layer.tar" plugin.wasm
gzip -9 -n -c "$work/layer.tar" >"$work/layer.tar.gz"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c <"$1" | tr -d ' '; }
# Store a file as a blob; print its hex digest.
blob() {
    local digest
    digest="$(sha "$1")"
    cp "$1" "$work/layout/blobs/sha256/$digest"
    echo "$digest"
}

layer_digest="$(blob "$work/layer.tar.gz")"
layer_size="$(size "$work/layer.tar.gz")"
printf '{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(sha "$work/layer.tar")" >"$work/config.json"
config_digest="$(blob "$work/config.json")"
config_size="$(size "$work/config.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
manifest_digest="$(blob "$work/manifest.json")"
manifest_size="$(size "$work/manifest.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$manifest_digest" "$manifest_size" >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

# Replace the whole layout, so no blob of an earlier build lingers.
mkdir -p "$(dirname "$layout")"
rm -rf "$layout.tmp"
mv "$work/layout" "$layout.tmp"
rm -rf "$layout"
mv "$layout.tmp" "$layout"
echo "$layout"
echo "sha256:$manifest_digest"
