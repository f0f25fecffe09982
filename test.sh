#!/usr/bin/env bash
# Runs every test: lints, native unit tests (PostgreSQL paths too when it is reachable), the wasm
# build, the end-to-end suite through a real Envoy loading the built filter, and the benchmark
# smoke run (every benchmark scenario under load, every answer checked).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

scripts/setup.sh --browser

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p mcpgate-filter --target wasm32-wasip1 -- -D warnings

if [ -z "${MCPGATE_TEST_POSTGRES_URL:-}" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  export MCPGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi

echo "==> native unit tests"
cargo test --workspace

echo "==> chat frontend unit tests (markdown renderer, chart model)"
node --test apps/chat/static/*.test.mjs

echo "==> wasm module"
./wasm-build.sh

echo "==> end-to-end tests (Envoy + filter + token service + MCP servers)"
# `cargo test --workspace` above already built the binary (the token service has integration
# tests); a separate `cargo build -p` would resolve features differently and rebuild half the tree.
export MCPGATE_TOKEN_SERVICE_BIN="$root/target/debug/mcpgate-token-service"
if [ ! -x "$MCPGATE_TOKEN_SERVICE_BIN" ]; then
  cargo build -p mcpgate-token-service
fi
(cd tests/e2e && npm test)

echo "==> benchmark smoke run (bench/run.sh --smoke: scenarios A-E on 127.0.0.1, every answer checked)"
# The filter module and the token-service binary built above; only the bench crates (bench/,
# release, bench/target) are built. Debian's wrk is installed when missing (needs root), oha
# never. Results go to target/bench-smoke, not to the committed bench/results/smoke.
BENCH_WASM="$root/target/wasm32-wasip1/release/mcpgate_filter.wasm" \
BENCH_TOKEN_SERVICE_BIN="$MCPGATE_TOKEN_SERVICE_BIN" \
BENCH_RESULTS_DIR="$root/target/bench-smoke" \
BENCH_PG_URL="${MCPGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}" \
  bench/run.sh --smoke
