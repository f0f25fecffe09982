#!/usr/bin/env bash
# mcpgate benchmark harness. One command builds what it needs, runs every scenario on 127.0.0.1
# and writes bench/results/<mode>/{results.json,results.md,chart.svg}.
#
#   bench/run.sh            full run (bounded: about 6 minutes of measurement once built)
#   bench/run.sh --smoke    correctness under load, for CI (test.sh runs it last; about a minute
#                           of runs once built): every request kind runs for 1 s under Debian's wrk
#                           with bench/lib/mcp_request.lua, which checks every answer (status,
#                           content type, JSON-RPC id and result: the backend's tools/call result;
#                           for tools/list the 50 allowed tools and none denied through mcpgate, all
#                           100 elsewhere); no fixed-rate runs (wrk cannot hold a rate); never needs
#                           oha. Exits non-zero on any wrong answer, error or failed check.
#
# Scenarios (same backend, same request mix): A Envoy alone (the limit), B Envoy + mcpgate filter,
# C stock Envoy (jwt_authn + mcp + rbac), D Envoy + ext_authz call-out (bench/authz), E the token
# service (SQLite and PostgreSQL). See BENCHMARKS.md.
#
# Environment knobs: BENCH_SCENARIOS="A B C D E", BENCH_DURATION=5 (seconds per measured run),
# BENCH_CONNECTIONS=16, BENCH_SMOKE_SECONDS=1 (seconds per smoke run), BENCH_SMOKE_REQUESTS=0
# (when > 0, a smoke run stops sending after that many answers; wrk still waits out the seconds,
# so its req/s is understated), BENCH_PG_URL (default
# postgres://postgres@127.0.0.1:5432/test; the harness uses its own database mcpgate_bench there when
# it may create one), BENCH_TS_UPSTREAM_USERS=4 (bench users who connect E's upstream OAuth provider;
# the upstream-token fetch cycles through their tokens), BENCH_UPDATE_DOC=1 (a smoke run also
# rewrites BENCHMARKS.md's results section, as a full run does),
# BENCH_LOW_RATE=200 (the low fixed rate, req/s), BENCH_TS_CONCURRENCY=8 (token-service load
# client connections), BENCH_SKIP_BUILD=1 (use what is built, build nothing), BENCH_RESULTS_DIR
# (default bench/results/<mode>, which is committed; test.sh writes under target/ instead).
#
# Prebuilt artifacts (each one given is used as it is and not built; test.sh passes the ones it
# built, a scratch build of another tree can be benchmarked the same way):
#   BENCH_WASM=/path/mcpgate_filter.wasm        default target/wasm32-wasip1/release/mcpgate_filter.wasm
#   BENCH_TOKEN_SERVICE_BIN=/path/mcpgate-token-service   default target/release/mcpgate-token-service
#   BENCH_TARGET_DIR=/path                      where the bench crates (bench/) build; default bench/target
#
# The token service's internal API: the harness exports a fresh random MCPGATE_INTERNAL_API_SECRET
# to every token service and Envoy it starts and gives the token service `internal_listen` on
# 127.0.0.1:19082 (checked free, like every other port). Scenario E's load client serves a tiny
# upstream OAuth provider on 127.0.0.1:19102 (the gateway file's `upstream_oauth2` route points
# there).
#
# CPU layout on the 2-core machine: Envoy (--concurrency 1), the ext_authz service and the token
# service on the first allowed core; the load generator and the MCP backend on the second (the
# same core when only one is allowed).
set -euo pipefail

bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$bench")"
cd "$root"

mode=full
for arg in "$@"; do
  case "$arg" in
    --smoke) mode=smoke ;;
    -h|--help) sed -n '2,/^set -euo/p' "$bench/run.sh" | sed '$d'; exit 0 ;;
    *) echo "usage: bench/run.sh [--smoke]" >&2; exit 2 ;;
  esac
done

scenarios="${BENCH_SCENARIOS:-A B C D E}"
duration="${BENCH_DURATION:-5}"
conns="${BENCH_CONNECTIONS:-16}"
smoke_n="${BENCH_SMOKE_REQUESTS:-0}"
smoke_secs="${BENCH_SMOKE_SECONDS:-1}"
low_rate="${BENCH_LOW_RATE:-200}"
ts_conc="${BENCH_TS_CONCURRENCY:-8}"
ts_up_users="${BENCH_TS_UPSTREAM_USERS:-4}"
pg_url="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
envoy_port=19080 ts_port=19081 ts_internal_port=19082 admin_port=19090 backend_port=19100 authz_port=19101 provider_port=19102
issuer="http://127.0.0.1:$envoy_port"
resource="$issuer/mcp"
url="http://127.0.0.1:$envoy_port/mcp"

run="$bench/.run"
out="${BENCH_RESULTS_DIR:-$bench/results/$mode}"
raw="$out/raw"
logs="$raw/logs"
records="$raw/records.jsonl"
py="python3 $bench/lib/bench.py"
rm -rf "$run" "$raw"
mkdir -p "$run/data" "$logs" "$run/bodies"
: >"$records"

say() { printf '\n==> %s\n' "$*"; }
warn() { printf '    WARNING: %s\n' "$*" >&2; }
failures=()
fail() { failures+=("$1"); printf '    FAILED: %s\n' "$1" >&2; }
notes=()
note() { notes+=("$1"); printf '    note: %s\n' "$1"; }

# ---------------------------------------------------------------------------------------------
# Processes: each in its own process group, stopped on exit whatever happens.
pids=()
LAST_PID=
# The two cores: c0 for Envoy and the services under test, c1 for the load generator and the
# backend (the first two CPUs this process may use; one core serves both on a 1-CPU runner).
read -r c0 c1 < <(python3 -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[0], c[1] if len(c) > 1 else c[0])')
start_bg() { # name core(0|1) command...
  local name="$1" core="$2"; shift 2
  [ "$core" = 1 ] && core=$c1 || core=$c0
  setsid taskset -c "$core" "$@" >"$logs/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  pids+=("$LAST_PID")
}
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $envoy_port $ts_port $ts_internal_port $admin_port $backend_port $authz_port $provider_port; do
  port_free "$p" || { echo "port 127.0.0.1:$p is in use; stop what holds it" >&2; exit 1; }
done
# The token service's internal API secret (at least 32 characters), for every token service and
# Envoy started below: the rendered bootstrap hands it to the filter's VM (host_env_keys).
MCPGATE_INTERNAL_API_SECRET="bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export MCPGATE_INTERNAL_API_SECRET
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
clk_tck=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
say "tools"
# oha only for the full run (fixed rates, one header set for a whole run); smoke needs only wrk.
oha=
if [ "$mode" = full ]; then
  oha="$bench/.tools/bin/oha"
  if [ ! -x "$oha" ]; then
    if command -v oha >/dev/null; then oha="$(command -v oha)"; else
      echo "    installing oha into bench/.tools (cargo install, takes a few minutes once)"
      # A load generator does not need oha's LTO build: without it the install takes about half as
      # long on the 2-core machine.
      CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo install oha --locked --root "$bench/.tools" >"$logs/oha-install.log" 2>&1 \
        || { echo "cargo install oha failed; see $logs/oha-install.log" >&2; exit 1; }
    fi
  fi
fi
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "    installing Debian's wrk (the smoke run's load generator and the new-token kind's)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
  else
    echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1
  fi
fi
envoy="$root/.venv/bin/envoy"
{ [ -x "$envoy" ] && command -v wasm-opt >/dev/null; } || scripts/setup.sh
oha_json="--output-format json" oha_version="not used (smoke: wrk for every kind)"
if [ -n "$oha" ]; then
  "$oha" --help 2>/dev/null | grep -q -- '--output-format' || oha_json="--json"
  oha_version="$("$oha" --version | head -1)"
fi
echo "    $oha_version, $(wrk --version 2>&1 | head -1 | cut -c1-40), envoy $("$envoy" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1)"

# ---------------------------------------------------------------------------------------------
say "building (filter .wasm, token service, bench crates)"
wasm="${BENCH_WASM:-$root/target/wasm32-wasip1/release/mcpgate_filter.wasm}"
ts_bin="${BENCH_TOKEN_SERVICE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/mcpgate-token-service}"
bench_target="${BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$bench/target}}"
tools_bin="$bench_target/release/mcpgate-bench"
backend_bin="$bench_target/release/mcpgate-bench-backend"
authz_bin="$bench_target/release/mcpgate-bench-authz"
build_started=$SECONDS
if [ "${BENCH_SKIP_BUILD:-}" = 1 ]; then
  echo "    BENCH_SKIP_BUILD=1: using what is built"
else
  if [ -n "${BENCH_WASM:-}" ]; then
    echo "    filter: BENCH_WASM=$wasm (not built)"
  elif [ -x ./wasm-build.sh ]; then
    ./wasm-build.sh >"$logs/build-wasm.log" 2>&1 || fail "wasm build (see $logs/build-wasm.log)"
  else
    note "no ./wasm-build.sh yet: built the filter with cargo (LTO, 1 codegen unit, panic=abort)"
    CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
      cargo build --release --target wasm32-wasip1 -p mcpgate-filter >"$logs/build-wasm.log" 2>&1 \
      || fail "wasm build (see $logs/build-wasm.log)"
  fi
  if [ -n "${BENCH_TOKEN_SERVICE_BIN:-}" ]; then
    echo "    token service: BENCH_TOKEN_SERVICE_BIN=$ts_bin (not built)"
  else
    cargo build --release -p mcpgate-token-service >"$logs/build-token-service.log" 2>&1 \
      || fail "token service build (see $logs/build-token-service.log)"
  fi
  (cd "$bench" && CARGO_TARGET_DIR="$bench_target" cargo build --release) >"$logs/build-bench.log" 2>&1 \
    || { echo "bench crates do not build; see $logs/build-bench.log" >&2; tail -20 "$logs/build-bench.log" >&2; exit 1; }
  echo "    built in $((SECONDS - build_started)) s"
fi
if [ -n "${BENCH_TOKEN_SERVICE_BIN:-}" ] && [ ! -x "$ts_bin" ]; then
  echo "BENCH_TOKEN_SERVICE_BIN=$ts_bin is not an executable" >&2; exit 1
fi
[ -z "${BENCH_WASM:-}" ] || note "filter module from BENCH_WASM=$wasm"
[ -z "${BENCH_TOKEN_SERVICE_BIN:-}" ] || note "token service from BENCH_TOKEN_SERVICE_BIN=$ts_bin"
for b in "$tools_bin" "$backend_bin" "$authz_bin"; do
  [ -x "$b" ] || { echo "no $b: build the bench crates (cd bench && cargo build --release)" >&2; exit 1; }
done
[ -f "$wasm" ] || { echo "no filter module at $wasm" >&2; exit 1; }
wasm_bytes=$(stat -c %s "$wasm")
echo "    mcpgate_filter.wasm: $wasm_bytes bytes"

# What the token service can do yet decides how B gets its keys and bootstrap.
ts_serve=false ts_bootstrap=false ts_users=false
if [ -x "$ts_bin" ]; then
  help="$(timeout 10 "$ts_bin" --help 2>&1 || true)"
  grep -qw serve <<<"$help" && ts_serve=true
  grep -qw envoy-bootstrap <<<"$help" && ts_bootstrap=true
  grep -qw user <<<"$help" && ts_users=true
fi
echo "    token service: serve=$ts_serve envoy-bootstrap=$ts_bootstrap user=$ts_users"

# ---------------------------------------------------------------------------------------------
say "request bodies, backend, keys and tokens"
$py bodies "$run/bodies"
bodies="$run/bodies"

fill_gateway() { # out data_dir database_url jwks_address
  $py template "$bench/config/gateway.yaml.tmpl" "$1" ENVOY_PORT=$envoy_port ADMIN_PORT=$admin_port \
    BACKEND_PORT=$backend_port TS_PORT=$ts_port TS_INTERNAL_PORT=$ts_internal_port DATA="$2" DATABASE_URL="$3" \
    WASM="$wasm" JWKS_ADDRESS="$4" PROVIDER_PORT=$provider_port
}

key="$run/data/signing-key.pem"
jwks="$run/data/jwks.json"
ts_pid=
keys_from="bench stub (token service cannot serve yet)"
if $ts_serve; then
  fill_gateway "$run/gateway.yaml" "$run/data" "sqlite://$run/data/mcpgate.db?mode=rwc" "127.0.0.1:$ts_port"
  # On Envoy's core, like D's ext_authz service: the filter calls its internal API (credentials,
  # revocations) from the request path.
  start_bg token-service-B 0 "$ts_bin" serve --config "$run/gateway.yaml"
  ts_pid=$LAST_PID
  if wait_http "http://127.0.0.1:$ts_port/.mcpgate/healthz" 30 && [ -f "$key" ] \
     && curl -fsS "http://127.0.0.1:$ts_port/.well-known/jwks.json" -o "$jwks"; then
    keys_from="token service (its signing key, kid from its JWKS)"
  else
    warn "the token service did not start or serve its JWKS (see $logs/token-service-B.log); using the bench stub"
    stop_pid "$ts_pid"; ts_pid=; ts_serve=false
  fi
fi
if ! $ts_serve; then
  "$tools_bin" keygen --out "$key"
  "$tools_bin" jwks --key "$key" --out "$jwks"
  fill_gateway "$run/gateway.yaml" "$run/data" "sqlite://$run/data/mcpgate.db?mode=rwc" "127.0.0.1:$backend_port"
  note "B's JWKS comes from the bench stub (the backend serves it as the mcpgate_token_service cluster)"
fi
cp "$jwks" "$run/data/stub-jwks.json"
start_bg backend 1 "$backend_bin" --listen "127.0.0.1:$backend_port" --jwks "$run/data/stub-jwks.json"
backend_pid=$LAST_PID
wait_http "http://127.0.0.1:$backend_port/healthz" 10 || { echo "backend did not start" >&2; exit 1; }
kid="$("$tools_bin" kid --key "$key" --jwks "$jwks")"
mint() { "$tools_bin" mint --key "$key" --kid "$kid" --issuer "$issuer" --audience "$resource" "$@"; }
mint >"$run/token.txt"
mint --email bob@other.com --sub user-bob >"$run/outsider.txt"
if [ "$mode" = smoke ]; then n_sat=$((smoke_secs * 8000)) n_c1=$((smoke_secs * 5000)); else n_sat=$((duration * 8000)) n_c1=$((duration * 2000)); fi
mint --count "$n_sat" >"$run/new-tokens-sat.txt"
mint --count "$n_c1" >"$run/new-tokens-c1.txt"
echo "    keys from: $keys_from; kid $kid; $((n_sat + n_c1)) never-used tokens minted"

# B's bootstrap: rendered from the gateway file by the product.
if $ts_bootstrap; then
  "$ts_bin" envoy-bootstrap --config "$run/gateway.yaml" --out "$run/envoy-B.yaml" 2>"$logs/render-B.log" \
    || { warn "envoy-bootstrap failed ($(tail -1 "$logs/render-B.log")); rendering with mcpgate-config"; ts_bootstrap=false; }
fi
if ! $ts_bootstrap; then
  "$tools_bin" render --config "$run/gateway.yaml" --out "$run/envoy-B.yaml"
  note "B's bootstrap rendered by bench/tools with mcpgate-config's renderer (no envoy-bootstrap subcommand yet)"
fi
if ! "$envoy" --mode validate -c "$run/envoy-B.yaml" --use-dynamic-base-id >"$logs/validate-B.log" 2>&1; then
  if grep -q 'REQ_WITHOUT_QUERY' "$logs/validate-B.log"; then
    # Envoy 1.40 needs the req_without_query formatter extension declared for %REQ_WITHOUT_QUERY%.
    python3 - "$run/envoy-B.yaml" <<'EOF'
import sys, re
p = sys.argv[1]; s = open(p).read()
s2 = re.sub(r"(\n(\s*)json_format:\n)", lambda m: "\n%sformatters:\n%s- name: envoy.formatter.req_without_query\n%s  typed_config:\n%s    '@type': type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery\n%sjson_format:\n" % ((m.group(2),) * 5), s, count=1)
open(p, "w").write(s2)
EOF
    note "the rendered bootstrap uses %REQ_WITHOUT_QUERY% without the req_without_query formatter; Envoy 1.40 rejects it, so the bench added the formatter to its copy (fix in config/src/envoy.rs)"
    "$envoy" --mode validate -c "$run/envoy-B.yaml" --use-dynamic-base-id >"$logs/validate-B.log" 2>&1 \
      || fail "B bootstrap does not validate: $(grep -m1 critical "$logs/validate-B.log" | cut -c1-200)"
  else
    fail "B bootstrap does not validate: $(grep -m1 critical "$logs/validate-B.log" | cut -c1-200)"
  fi
fi
for t in A:limit C:native D:extauthz; do
  $py template "$bench/config/envoy-${t#*:}.yaml.tmpl" "$run/envoy-${t%%:*}.yaml" ENVOY_PORT=$envoy_port \
    ADMIN_PORT=$admin_port BACKEND_PORT=$backend_port AUTHZ_PORT=$authz_port JWKS_FILE="$jwks"
done

# ---------------------------------------------------------------------------------------------
# Load runs
declare -A half_rate=()
if [ "$mode" = smoke ]; then
  note "smoke: every request kind under wrk for ${smoke_secs} s$([ "$smoke_n" -gt 0 ] && echo " (at most $smoke_n answers)"), bench/lib/mcp_request.lua checks every answer; no fixed-rate or low-rate runs (wrk cannot hold a rate), so there are no fixed-rate latencies and the rate targets are n/a"
fi
kinds="call_1k call_64k list_json list_sse"
kind_body() { case "$1" in call_1k) echo "$bodies/call_1k.json" ;; call_64k) echo "$bodies/call_64k.json" ;; *) echo "$bodies/list.json" ;; esac; }
kind_extra() { [ "$1" = list_sse ] && echo "x-bench-response: sse" || echo "x-bench-kind: $1"; }

oha_run() { # out_json kind [oha args...]
  local out_json="$1" kind="$2"; shift 2
  taskset -c "$c1" "$oha" --no-tui $oha_json -m POST -c "$conns" \
    -H "content-type: application/json" -H "accept: application/json, text/event-stream" \
    -H "mcp-protocol-version: 2025-06-18" -H "authorization: Bearer $(cat "$run/token.txt")" \
    -H "$(kind_extra "$kind")" -D "$(kind_body "$kind")" "$@" "$url" >"$out_json" 2>"$out_json.err"
}

# Smoke: wrk with bench/lib/mcp_request.lua, which checks every answer against what the kind
# must get back (see its header), for $smoke_secs s per run (capped at $smoke_n answers when
# BENCH_SMOKE_REQUESTS is set; wrk still runs for the whole -d then, so the req/s is understated).
kind_expect() { # scenario kind
  local tools=100 filtered=0
  [ "$1" = B ] && tools=50 filtered=1  # only mcpgate filters tools/list answers (bench.py check too)
  case "$2" in
    call_*) echo "expect=call" ;;
    *) echo "expect=$2 tools=$tools filtered=$filtered" ;;
  esac
}
wrk_checked() { # out_txt connections scenario kind token-arg
  local out="$1" c="$2" s="$3" k="$4" tok="$5"
  # shellcheck disable=SC2046
  timeout $((smoke_secs + 30)) taskset -c "$c1" wrk -t1 -c"$c" -d"${smoke_secs}s" --timeout 5s --latency \
    -s "$bench/lib/mcp_request.lua" "$url" -- body="$(kind_body "$k")" "$tok" \
    header="$(kind_extra "$k")" $(kind_expect "$s" "$k") max="$smoke_n" >"$out" 2>&1
}

smoke_kind() { # scenario kind envoy_pid
  local s="$1" k="$2" epid="$3" f="$raw/$1-$2"
  local e0 b0 e1 b1 t0 t1 cpu
  e0=$(cpu_ticks "$epid"); b0=$(cpu_ticks "$backend_pid"); t0=$(date +%s.%N)
  wrk_checked "$f.sat.txt" "$conns" "$s" "$k" token="$run/token.txt" \
    || { fail "$s $k: wrk failed ($(tail -c 300 "$f.sat.txt"))"; return 0; }
  e1=$(cpu_ticks "$epid"); b1=$(cpu_ticks "$backend_pid"); t1=$(date +%s.%N)
  cpu=$(python3 -c "w=$t1-$t0; print('--set envoy_cpu=%.2f --set backend_cpu=%.2f' % (($e1-$e0)/$clk_tck/w, ($b1-$b0)/$clk_tck/w))")
  # shellcheck disable=SC2086
  $py ingest wrk "$f.sat.txt" --records "$records" --scenario "$s" --kind "$k" --mode saturation --require-ok $cpu \
    || fail "$s $k: wrong answers, non-2xx or errors under load (see $f.sat.txt)"
}

smoke_new_tokens() { # scenario
  local s="$1" f="$raw/$1-new_token"
  wrk_checked "$f.sat.txt" "$conns" "$s" call_1k tokens="$run/new-tokens-sat.txt" \
    || { fail "$s new_token: wrk failed ($(tail -c 300 "$f.sat.txt"))"; return 0; }
  $py ingest wrk "$f.sat.txt" --records "$records" --scenario "$s" --kind new_token --mode saturation --require-ok \
    || fail "$s new_token: wrong answers, non-2xx or errors (see $f.sat.txt)"
  wrk_checked "$f.c1.txt" 1 "$s" call_1k tokens="$run/new-tokens-c1.txt" \
    || { fail "$s new_token c1: wrk failed ($(tail -c 300 "$f.c1.txt"))"; return 0; }
  $py ingest wrk "$f.c1.txt" --records "$records" --scenario "$s" --kind new_token --mode one_connection --require-ok \
    || fail "$s new_token (1 connection): wrong answers, non-2xx or errors (see $f.c1.txt)"
}

# Full run: oha for the four kinds (saturation, half of A's rate, a low rate), wrk for new tokens.
measure_kind() { # scenario kind envoy_pid
  local s="$1" k="$2" epid="$3" f="$raw/$1-$2"
  local e0 b0 e1 b1 t0 t1
  if [ "$mode" = smoke ]; then smoke_kind "$@"; return 0; fi
  oha_run "$f.warm.json" "$k" -z 1s || true
  e0=$(cpu_ticks "$epid"); b0=$(cpu_ticks "$backend_pid"); t0=$(date +%s.%N)
  oha_run "$f.sat.json" "$k" -z "${duration}s" \
    || { fail "$s $k: oha failed ($(head -c 200 "$f.sat.json.err"))"; return 0; }
  e1=$(cpu_ticks "$epid"); b1=$(cpu_ticks "$backend_pid"); t1=$(date +%s.%N)
  local cpu
  cpu=$(python3 -c "w=$t1-$t0; print('--set envoy_cpu=%.2f --set backend_cpu=%.2f' % (($e1-$e0)/$clk_tck/w, ($b1-$b0)/$clk_tck/w))")
  $py ingest oha "$f.sat.json" --records "$records" --scenario "$s" --kind "$k" --mode saturation --require-ok $cpu \
    || fail "$s $k: non-2xx answers or errors under load"
  if [ "$s" = A ]; then
    half_rate[$k]=$(python3 -c "import json; print(max(1, int(json.load(open('$f.sat.json'))['summary']['requestsPerSec'] / 2)))")
  fi
  local rate="${half_rate[$k]:-}"
  if [ -n "$rate" ]; then
    oha_run "$f.fixed.json" "$k" -z "${duration}s" -q "$rate" --latency-correction \
      || { fail "$s $k fixed rate: oha failed"; return 0; }
    $py ingest oha "$f.fixed.json" --records "$records" --scenario "$s" --kind "$k" --mode fixed --require-ok --set target_rate="$rate" \
      || fail "$s $k fixed rate: non-2xx answers or errors"
  fi
  # A low fixed rate every scenario sustains: the latency a request adds without queueing.
  oha_run "$f.low.json" "$k" -z 3s -q "$low_rate" --latency-correction \
    || { fail "$s $k low rate: oha failed"; return 0; }
  $py ingest oha "$f.low.json" --records "$records" --scenario "$s" --kind "$k" --mode low --require-ok --set target_rate="$low_rate" \
    || fail "$s $k low rate: non-2xx answers or errors"
}

measure_new_tokens() { # scenario
  local s="$1" f="$raw/$1-new_token" d="${duration}s"
  if [ "$mode" = smoke ]; then smoke_new_tokens "$s"; return 0; fi
  taskset -c "$c1" wrk -t1 -c"$conns" -d"$d" --latency -s "$bench/lib/new_tokens.lua" "$url" -- \
    "$run/new-tokens-sat.txt" "$bodies/call_1k.json" >"$f.sat.txt" 2>&1 || { fail "$s new_token: wrk failed"; return 0; }
  $py ingest wrk "$f.sat.txt" --records "$records" --scenario "$s" --kind new_token --mode saturation --require-ok \
    || fail "$s new_token: non-2xx answers or errors"
  # Unloaded latency of a first request (one connection, closed loop): wrk cannot hold a rate.
  taskset -c "$c1" wrk -t1 -c1 -d2s --latency -s "$bench/lib/new_tokens.lua" "$url" -- \
    "$run/new-tokens-c1.txt" "$bodies/call_1k.json" >"$f.c1.txt" 2>&1 || { fail "$s new_token c1: wrk failed"; return 0; }
  $py ingest wrk "$f.c1.txt" --records "$records" --scenario "$s" --kind new_token --mode one_connection --require-ok \
    || fail "$s new_token (1 connection): non-2xx answers or errors"
}

start_envoy() { # scenario concurrency
  start_bg "envoy-$1-c$2" 0 "$envoy" -c "$run/envoy-$1.yaml" --concurrency "$2" --log-level warn --use-dynamic-base-id
  ENVOY_PID=$LAST_PID
  if ! wait_http "http://127.0.0.1:$admin_port/ready" 30; then
    fail "$1: Envoy did not become ready ($(grep -m1 -E 'critical|error' "$logs/envoy-$1-c$2.log" | cut -c1-200))"
    stop_pid "$ENVOY_PID"; return 1
  fi
  # Ready also means the filter has its keys: give a Wasm VM's first JWKS fetch a moment.
  sleep 0.5
}

scenario() { # A|B|C|D
  local s="$1" authz_pid=
  say "scenario $s"
  if [ "$s" = D ]; then
    start_bg authz 0 "$authz_bin" --listen "127.0.0.1:$authz_port" \
      --jwks "$jwks" --issuer "$issuer" --audience "$resource"
    authz_pid=$LAST_PID
    sleep 0.3
  fi
  start_envoy "$s" 1 || { stop_pid "$authz_pid"; return 0; }
  local epid=$ENVOY_PID
  "$tools_bin" mint --key "$key" --kid "$kid" --issuer "$issuer" --audience "$resource" >"$run/fresh-$s.txt"
  $py check "$s" --port $envoy_port --backend-port $backend_port --bodies "$bodies" \
    --token "$run/token.txt" --outsider-token "$run/outsider.txt" --fresh-token "$run/fresh-$s.txt" \
    --out "$raw/checks-$s.json" || fail "$s: wrong answers (see above)"
  for k in $kinds; do measure_kind "$s" "$k" "$epid"; done
  local rss1 mem rss_nt=0
  rss1=$(rss_kb "$epid")
  mem=$(curl -fsS "http://127.0.0.1:$admin_port/memory" 2>/dev/null || echo '{}')
  if [ "$s" != A ]; then measure_new_tokens "$s"; rss_nt=$(rss_kb "$epid"); fi
  stop_pid "$epid"
  # Per-worker cost: the same config at --concurrency 2 (each worker has its own Wasm VM).
  local rss_idle1=0 rss_idle2=0
  if start_envoy "$s" 1; then
    curl -fsS -o /dev/null -X POST -H "authorization: Bearer $(cat "$run/token.txt")" -H 'content-type: application/json' \
      --data-binary @"$bodies/call_1k.json" "$url" || true
    rss_idle1=$(rss_kb "$ENVOY_PID"); stop_pid "$ENVOY_PID"
  fi
  if start_envoy "$s" 2; then
    for _ in 1 2 3 4; do
      curl -fsS -o /dev/null -X POST -H "authorization: Bearer $(cat "$run/token.txt")" -H 'content-type: application/json' \
        --data-binary @"$bodies/call_1k.json" "$url" || true
    done
    rss_idle2=$(rss_kb "$ENVOY_PID"); stop_pid "$ENVOY_PID"
  fi
  stop_pid "$authz_pid"
  printf '{"scenario":"%s","rss_after_load_kb":%s,"rss_after_new_tokens_kb":%s,"rss_idle_c1_kb":%s,"rss_idle_c2_kb":%s,"admin_memory":%s}\n' \
    "$s" "$rss1" "$rss_nt" "$rss_idle1" "$rss_idle2" "$mem" >"$raw/memory-$s.json"
  echo "    memory: RSS after load $((rss1 / 1024)) MiB; idle c1 $((rss_idle1 / 1024)) MiB, c2 $((rss_idle2 / 1024)) MiB (per extra worker $(((rss_idle2 - rss_idle1) / 1024)) MiB)"
}

# ---------------------------------------------------------------------------------------------
token_service() { # sqlite|postgres
  local db="$1" dir="$run/E-$1" f="$raw/E-$1.json" url_db
  say "scenario E ($db)"
  mkdir -p "$dir"
  stop_pid "$ts_pid"; ts_pid=  # B's token service holds the port
  if ! $ts_serve || ! $ts_users; then
    printf '{"db":"%s","error":"the token service binary has no serve/user subcommands yet (serve=%s user=%s)"}\n' "$db" "$ts_serve" "$ts_users" >"$f"
    note "E ($db) skipped: the token service cannot serve yet"
    return 0
  fi
  if [ "$db" = postgres ]; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
      printf '{"db":"postgres","error":"PostgreSQL is not reachable at 127.0.0.1:5432"}\n' >"$f"
      note "E (postgres) skipped: nothing listens on 127.0.0.1:5432"; return 0
    fi
    url_db="$pg_url"
    if command -v psql >/dev/null && psql "$pg_url" -qc 'DROP DATABASE IF EXISTS mcpgate_bench' >/dev/null 2>&1 \
       && psql "$pg_url" -qc 'CREATE DATABASE mcpgate_bench' >/dev/null 2>&1; then
      url_db="${pg_url%/*}/mcpgate_bench"
    else
      warn "could not create database mcpgate_bench; using $pg_url as it is"
    fi
  else
    url_db="sqlite://$dir/mcpgate.db?mode=rwc"
  fi
  cp "$key" "$dir/signing-key.pem"
  fill_gateway "$dir/gateway.yaml" "$dir" "$url_db" "127.0.0.1:$ts_port"
  # The users: `bench` for the code and refresh grants, bench-up-1..N for the upstream-token fetch
  # (each connects the provider of the route with upstream_oauth2 once, through the real flow).
  # The users file is made once (argon2 hashing) and copied for the second database.
  local up_users="" i
  for i in $(seq 1 "$ts_up_users"); do up_users="$up_users${up_users:+,}bench-up-$i"; done
  if [ -z "${ts_e_password:-}" ] || [ ! -f "$run/E-users.yaml" ]; then
    ts_e_password="bench-password-$RANDOM$RANDOM"
    : >"$logs/E-users.log"
    for u in bench ${up_users//,/ }; do
      printf '%s\n' "$ts_e_password" | "$ts_bin" user add --config "$dir/gateway.yaml" --username "$u" \
        --email "$u@company.com" --group engineering --password-stdin >>"$logs/E-users.log" 2>&1 \
        || { printf '{"db":"%s","error":"user add failed"}\n' "$db" >"$f"; fail "E ($db): user add failed (see $logs/E-users.log)"; return 0; }
    done
    cp "$dir/users.yaml" "$run/E-users.yaml"
  else
    cp "$run/E-users.yaml" "$dir/users.yaml"
  fi
  local password="$ts_e_password"
  start_bg "token-service-E-$db" 0 "$ts_bin" serve --config "$dir/gateway.yaml"
  local tpid=$LAST_PID
  if ! wait_http "http://127.0.0.1:$ts_port/.mcpgate/healthz" 30; then
    printf '{"db":"%s","error":"token service did not become ready"}\n' "$db" >"$f"
    fail "E ($db): token service did not become ready (see $logs/token-service-E-$db.log)"; stop_pid "$tpid"; return 0
  fi
  local codes=2000 d="$duration"
  [ "$mode" = smoke ] && codes=100 d=1
  timeout $((d + 120)) taskset -c "$c1" "$tools_bin" tsload --base "http://127.0.0.1:$ts_port" --issuer "$issuer" --resource "$resource" \
    --client-id bench-client --redirect-uri http://127.0.0.1:19999/callback --username bench --password "$password" \
    --codes "$codes" --concurrency "$ts_conc" --duration "$d" \
    --upstream-resource "$issuer/upstream" --upstream-users "$up_users" \
    --provider-listen "127.0.0.1:$provider_port" --internal-base "http://127.0.0.1:$ts_internal_port" \
    >"$f.tmp" 2>"$logs/E-$db-load.log" || true
  python3 - "$f.tmp" "$f" "$db" <<'EOF' || fail "E ($db): load client failed (see $f)"
import json, sys
src, dst, db = sys.argv[1:4]
try:
    d = json.load(open(src))
except ValueError:
    d = {"error": "load client printed no result: " + open(src).read()[:300]}
d["db"] = db
json.dump(d, open(dst, "w"), indent=1)
for phase in ("authorize", "exchange", "refresh", "upstream_token"):
    p = d.get(phase) or {}
    if "rps" in p:
        print("    %-15s %8.0f /s  p50 %6s µs  p99 %6s µs  errors %d %s" % (phase, p["rps"], p["p50_us"], p["p99_us"], p["errors"], p["error_samples"][:1]))
        if "users" in p:
            print("    %-15s %d users connected the provider (%.1f s; provider: %d code grants, %d refreshes)" % (
                "", p["users"], p["connect"]["seconds"], p["provider_code_grants"], p["provider_refresh_grants"]))
    elif p:
        print("    %-15s %s %s" % (phase, p.get("error"), (p.get("connect") or {}).get("error_samples", [])[:1]))
if d.get("error"):
    print("    error:", d["error"]); sys.exit(1)
bad = [p for p in ("authorize", "exchange", "refresh", "upstream_token")
       if (d.get(p) or {}).get("errors") or not (d.get(p) or {}).get("ok")]
if bad:
    print("    errors or no successful request in: %s" % ", ".join(bad)); sys.exit(1)
EOF
  stop_pid "$tpid"
}

# ---------------------------------------------------------------------------------------------
started=$(date +%s)
for s in $scenarios; do
  case "$s" in
    A|B|C|D) scenario "$s" ;;
    E) token_service sqlite; token_service postgres ;;
    *) echo "unknown scenario $s" >&2 ;;
  esac
done
stop_pid "$ts_pid"

# The filter's own logic natively, on B's bodies, policy, tokens and the backend's list answers:
# set beside B's Envoy CPU per request, it splits B's cost into the filter's work and the host's.
if [[ " $scenarios " == *" B "* ]]; then
  say "the filter's logic natively (no Envoy, no Wasm)"
  for answer in json:"x-bench-kind: list_json" sse:"x-bench-response: sse"; do
    curl -fsS -o "$run/list-answer.${answer%%:*}" -H "content-type: application/json" \
      -H "accept: application/json, text/event-stream" -H "${answer#*:}" \
      --data-binary "@$bodies/list.json" "http://127.0.0.1:$backend_port/mcp" || fail "the backend's ${answer%%:*} list answer"
  done
  { head -1 "$run/token.txt"; head -2000 "$run/new-tokens-c1.txt"; } >"$run/native-tokens.txt"
  if taskset -c "$c0" "$tools_bin" native --config "$run/gateway.yaml" --bodies "$bodies" \
       --list-json "$run/list-answer.json" --list-sse "$run/list-answer.sse" --jwks "$jwks" \
       --tokens "$run/native-tokens.txt" >"$raw/native.json" 2>"$logs/native.log"; then
    echo "    $(cat "$raw/native.json")"
  else
    fail "mcpgate-bench native: $(tail -1 "$logs/native.log")"; rm -f "$raw/native.json"
  fi
fi

say "report"
{
  printf '{"mode":"%s","date":"%s","duration_s":%s,"connections":%s,"smoke_requests":%s,"smoke_seconds":%s,' "$mode" "$(date -u +%FT%TZ)" "$duration" "$conns" "$smoke_n" "$smoke_secs"
  printf '"wasm_bytes":%s,"keys_from":"%s","commit":"%s","dirty":%s,' "$wasm_bytes" "$keys_from" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$([ -n "$(git status --porcelain -- filter token-service config policy protocol 2>/dev/null)" ] && echo true || echo false)"
  printf '"cpu":"%s","cores":%s,"memory_gib":%s,"kernel":"%s",' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" "$(uname -r)"
  printf '"envoy":"%s","oha":"%s","wrk":"%s","measure_seconds":%s,' "$("$envoy" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1)" "$oha_version" "$(wrk --version 2>&1 | head -1 | awk '{print $2}')" "$(( $(date +%s) - started ))"
  printf '"notes":%s,"failures":%s}\n' "$(printf '%s\n' "${notes[@]+"${notes[@]}"}" | python3 -c 'import json,sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin if l.strip()]))')" \
    "$(printf '%s\n' "${failures[@]+"${failures[@]}"}" | python3 -c 'import json,sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin if l.strip()]))')"
} >"$raw/meta.json"
doc_args=()
# A full run replaces the results section of BENCHMARKS.md; a smoke run only when asked.
if [ "$mode" = full ] || [ "${BENCH_UPDATE_DOC:-}" = 1 ]; then doc_args=(--doc "$root/BENCHMARKS.md"); fi
$py report "$raw" "$out" "${doc_args[@]+"${doc_args[@]}"}"
echo "    wrote $out/results.md, results.json, chart.svg"

if [ ${#failures[@]} -gt 0 ]; then
  say "${#failures[@]} failure(s):"
  printf '    - %s\n' "${failures[@]}"
  exit 1
fi
say "all scenarios answered correctly ($mode)"
