#!/usr/bin/env bash
# Build the mcpgate proxy-wasm filter for Envoy/Istio: target/wasm32-wasip1/release/mcpgate_filter.wasm
# `./wasm-build.sh --oci` also writes it as an OCI image layout (target/oci/mcpgate-filter, see
# scripts/oci-image.sh) and prints the image's digest, which `render istio|envoy-gateway` reads.
#
# wasm32-wasip1, not wasm32-unknown-unknown: with jwt-simple's pure-Rust crypto the latter imports
# wasm-bindgen functions that Envoy refuses to load.
#
# Two steps: cargo (LTO, 1 codegen unit, panic=abort, stripped) at MCPGATE_WASM_OPT_LEVEL
# (default `2`), then binaryen's wasm-opt, which rustc does not run (MCPGATE_WASM_OPT_PASSES,
# default `-Oz -ocimfs 100`). Measured on the 2-core bench machine (size; Envoy CPU per filtered
# 100-tool tools/list, the compute-heaviest request; Envoy's idle RSS with one worker):
#   `s`, no wasm-opt        801 KB (over the 800 KB target), ~150 µs, 104 MiB
#   `s` + `-Oz -ocimfs 100`  676 KB, ~140 µs, 104 MiB
#   `2` + `-Oz -ocimfs 100`  765 KB, ~128 µs, 109 MiB
#   `2` + `-Oz`              765 KB, ~128 µs, 126 MiB
# `-ocimfs 100`: by default binaryen inlines every function that has one caller, whatever its
# size; V8 then holds about 17 MiB more for the giant functions that makes. A 1 KB tools/call
# costs the same with every build (host calls dominate it). `scripts/setup.sh` installs binaryen
# (Debian's package).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

oci=false
for arg in "$@"; do
    case "$arg" in
        --oci) oci=true ;;
        *) echo "usage: ./wasm-build.sh [--oci]" >&2; exit 2 ;;
    esac
done

target=wasm32-wasip1
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -x "$target" >/dev/null; then
        rustup target add "$target"
    fi
fi
if ! command -v wasm-opt >/dev/null 2>&1; then
    echo "wasm-build: wasm-opt is missing: run scripts/setup.sh (or apt-get install binaryen)" >&2
    exit 1
fi

CARGO_PROFILE_RELEASE_LTO=true \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
CARGO_PROFILE_RELEASE_OPT_LEVEL="${MCPGATE_WASM_OPT_LEVEL:-2}" \
CARGO_PROFILE_RELEASE_STRIP=true \
    cargo build -p mcpgate-filter --target "$target" --release

target_dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
# cargo's own artifact (the top-level file is a hard link to it): wasm-opt always starts from it,
# so a second run does not optimise an optimised module.
built="${target_dir:-$root/target}/$target/release/deps/mcpgate_filter.wasm"
if [[ ! -f "$built" ]]; then
    echo "wasm-build: $built was not produced" >&2
    exit 1
fi
# One documented path, whatever CARGO_TARGET_DIR says. Written through a temporary file and
# renamed, which breaks the hard link instead of writing through it.
module="$root/target/$target/release/mcpgate_filter.wasm"
mkdir -p "$(dirname "$module")"
# The features rustc enables for wasm32-wasip1 (V8 in Envoy supports them all).
# shellcheck disable=SC2086
wasm-opt ${MCPGATE_WASM_OPT_PASSES:--Oz -ocimfs 100} \
    --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --strip-debug --strip-producers \
    "$built" -o "$module.tmp"
mv -f "$module.tmp" "$module"
bytes="$(wc -c <"$module" | tr -d ' ')"
echo "$module"
echo "size: $bytes bytes ($(( (bytes + 999) / 1000 )) KB; cargo's: $(wc -c <"$built" | tr -d ' ') bytes)"
if $oci; then
    "$root/scripts/oci-image.sh" "$module"
fi
