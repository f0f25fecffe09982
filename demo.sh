#!/usr/bin/env bash
# Starts the whole gateway locally, on 127.0.0.1 only, until Ctrl-C:
#   Envoy (with the mcpgate filter; its configuration files follow gateway.yaml) on :18080, the
#   token service on :18081 (SQLite in .run/data; reloads gateway.yaml when it changes),
#   the chat app (apps/chat) behind the client route /chat and the LLM stand-in it calls (:18111),
#   the reference MCP servers (servers/: sqlite over the demo sales database, notes, whoami),
#   the MCP reference server ("everything") on :18101 behind the route /everything, and the
#   stand-ins of scripts/demo-upstreams.mjs (the GitHub-like and Notion-like providers, an MCP
#   server behind /github that needs the GitHub-like tokens).
# Everything it needs is installed by scripts/setup.sh on first run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

config="$root/gateway.yaml"
run="$root/.run"
demo_user="demo"
demo_password="mcpgate-demo"
mkdir -p "$run/data" "$run/logs"
# Plain log files under .run/logs (no terminal colour codes).
export NO_COLOR=1

scripts/setup.sh
./wasm-build.sh
# MCPGATE_BIN_DIR: a directory with every binary already built (the tests pass their debug
# builds); otherwise the release builds.
bin="${MCPGATE_BIN_DIR:-}"
if [ -z "$bin" ]; then
  cargo build --release -p mcpgate-token-service -p mcpgate-chat -p mcpgate-llm-standin \
    -p mcpgate-server-sqlite -p mcpgate-server-notes -p mcpgate-server-whoami
  bin="$root/target/release"
fi
ts="$bin/mcpgate-token-service"

# The demo sales database (a trading company's customers, products and orders over four years),
# generated deterministically.
if [ ! -s "$run/data/sales.db" ]; then
  python3 scripts/demo-db.py "$run/data/sales.db"
fi

users_file="$run/data/users.yaml"
if [ ! -s "$users_file" ] || ! grep -q "username: $demo_user" "$users_file"; then
  echo "==> creating the demo user '$demo_user'"
  printf '%s\n' "$demo_password" | "$ts" user add --config "$config" --username "$demo_user" \
    --email demo@example.com --name "Demo User" --group engineering --password-stdin
fi
# Envoy reads its listener, routes, clusters and the filter's configuration from files under
# .run/envoy that `render envoy --watch` (started below) rewrites whenever gateway.yaml changes;
# the token service reloads the same file. Editing gateway.yaml applies without a restart.
envoy_dir="$run/envoy"
"$ts" render envoy --config "$config" --out-dir "$envoy_dir" >/dev/null

# The filter's calls to the token service's internal API carry this shared secret; Envoy hands
# it to the Wasm VM from its environment, so it is never written into the bootstrap.
secret_file="$run/data/internal-api-secret"
if [ ! -s "$secret_file" ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$secret_file")
fi
MCPGATE_INTERNAL_API_SECRET="$(cat "$secret_file")"
export MCPGATE_INTERNAL_API_SECRET

pids=()
stop() {
  local status=$?
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  exit "$status"
}
trap stop INT TERM EXIT

start() { # name, command...
  local name="$1"; shift
  setsid "$@" >"$run/logs/$name.log" 2>&1 &
  pids+=("$!")
  echo "==> started $name (pid $!, log .run/logs/$name.log)"
}

wait_for() { # url, name
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not become ready; see .run/logs/" >&2
  exit 1
}

# The reference server's own entry point listens on every interface; this wrapper binds it to
# 127.0.0.1, so the unguarded MCP server is never reachable beside the gateway.
start everything env PORT=18101 node tests/e2e/lib/everything-loopback.mjs
start upstreams node scripts/demo-upstreams.mjs
# The reference MCP servers only trust requests with the gateway's identity assertion for their route.
gateway="http://localhost:18080"
start sqlite "$bin/mcpgate-server-sqlite" --listen 127.0.0.1:18104 --database "$run/data/sales.db" \
  --issuer "$gateway" --route-url "$gateway/sqlite"
start notes "$bin/mcpgate-server-notes" --listen 127.0.0.1:18105 --provider-api http://127.0.0.1:18106 \
  --issuer "$gateway" --route-url "$gateway/notes"
start whoami "$bin/mcpgate-server-whoami" --listen 127.0.0.1:18107 --issuer "$gateway" --route-url "$gateway/whoami"
start llm-standin "$bin/mcpgate-llm-standin" --listen 127.0.0.1:18111
start chat "$bin/mcpgate-chat" --listen 127.0.0.1:18110 --gateway "$gateway" --app-url "$gateway/chat" \
  --models apps/chat/demo-models.yaml
start token-service "$ts" serve --config "$config"
start envoy-config "$ts" render envoy --config "$config" --out-dir "$envoy_dir" --watch
wait_for http://127.0.0.1:18081/.mcpgate/healthz "the token service"
# --use-dynamic-base-id: runs beside any other Envoy on this machine (base id 0 may be taken).
start envoy .venv/bin/envoy -c "$envoy_dir/envoy.yaml" --concurrency 2 --log-level warn --use-dynamic-base-id
wait_for http://127.0.0.1:18090/ready "Envoy"

cat <<MSG

mcpgate is running.

  Open the chat:   http://localhost:18080/chat/         sign in as $demo_user / $demo_password
                   Ask "What were our sales by year?", connect Notes and ask "What do my notes say
                   about the Q3 launch plan?", then "What are our employees' salaries?" (denied:
                   HR only). The model is a local stand-in of OpenAI's Responses API.
  MCP server URLs: http://localhost:18080/sqlite       (read-only SQL over the demo sales database)
                   http://localhost:18080/notes        (needs a Notion-like consent; a local stand-in)
                   http://localhost:18080/whoami       (who the gateway says you are)
                   http://localhost:18080/everything   (the MCP reference server)
                   http://localhost:18080/github       (needs a GitHub-like consent; a local stand-in)

Connect a client, for example:
  npx @modelcontextprotocol/inspector        (transport "Streamable HTTP", the URL above)
  claude mcp add --transport http everything http://localhost:18080/everything

The client discovers the gateway's authorization server from the 401, registers itself, and opens
the sign-in page in your browser. Envoy's access log: .run/logs/envoy.log

Edit gateway.yaml (a route's policy, a new route) while this runs: the token service and Envoy
apply it within seconds, without a restart; an invalid file is refused with the field named in
.run/logs/token-service.log and .run/logs/envoy-config.log.

Press Ctrl-C to stop everything.
MSG
wait -n || true
echo "==> a process exited; see .run/logs/" >&2
exit 1
