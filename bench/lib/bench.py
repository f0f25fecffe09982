#!/usr/bin/env python3
"""mcpgate benchmark helpers (Python standard library only), called by bench/run.sh.

  bench.py template TEMPLATE OUT KEY=VALUE...      fill @KEY@ placeholders
  bench.py bodies DIR                              write the request bodies
  bench.py check SCENARIO ...                      correctness checks of one scenario (exit 1 on a wrong answer)
  bench.py ingest KIND-OF-FILE ...                 normalise one load-generator result into records.jsonl
  bench.py report RAW_DIR OUT_DIR                  results.json, results.md, chart.svg
"""
import argparse
import http.client
import json
import os
import sys
import time

# The tool-name mix of bench/backend: which of the 100 tools the benchmark policy denies.
DENY_PREFIXES = ("admin_", "internal_")
DENY_SUFFIXES = ("_unsafe",)
DENY_EXACT = ("delete_all", "drop_database", "shutdown")


def denied_tool(name):
    return name.startswith(DENY_PREFIXES) or name.endswith(DENY_SUFFIXES) or name in DENY_EXACT


ACCESS_LOG = {
    "name": "envoy.access_loggers.stdout",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"json_format": {
            "time": "%START_TIME%",
            "request_id": "%REQ(X-REQUEST-ID)%",
            "method": "%REQ(:METHOD)%",
            "authority": "%REQ(:AUTHORITY)%",
            "path": "%REQ_WITHOUT_QUERY(:PATH)%",
            "status": "%RESPONSE_CODE%",
            "response_flags": "%RESPONSE_FLAGS%",
            "upstream_cluster": "%UPSTREAM_CLUSTER%",
            "duration_ms": "%DURATION%",
            "mcp_session_id": "%REQ(MCP-SESSION-ID)%",
            "user_agent": "%REQ(USER-AGENT)%",
        }, "formatters": [{
            "name": "envoy.formatter.req_without_query",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"},
        }]},
    },
}


def backend_cluster(port):
    return {
        "name": "backend",
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": int(port)}}}}]}]},
    }


def cmd_template(a):
    values = dict(kv.split("=", 1) for kv in a.values)
    if "BACKEND_PORT" in values:
        values.setdefault("BACKEND_CLUSTER", json.dumps(backend_cluster(values["BACKEND_PORT"])))
    values.setdefault("ACCESS_LOG", json.dumps(ACCESS_LOG))
    text = open(a.template).read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, v)
    lines = [l for l in text.splitlines() if "@" in l and not l.lstrip().startswith("#")]
    left = [l for l in lines if any(("@%s" % c) in l for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ") and "@company" not in l and "@type" not in l]
    if left:
        sys.exit("unfilled placeholders in %s: %s" % (a.template, left[:3]))
    with open(a.out, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------
# Request bodies

def rpc(id_, method, params):
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def compact(o):
    return json.dumps(o, separators=(",", ":"))


def call_args(size):
    """Tool arguments making a tools/call body of `size` bytes: a query plus documents, as an MCP
    client sends them, padded to the exact size with a note."""
    docs = []
    base = {"query": "quarterly revenue by region", "limit": 10, "documents": docs}
    body = lambda: compact(rpc(1, "tools/call", {"name": "search_item_00", "arguments": base}))
    n = 0
    while True:
        docs.append({"id": "doc-%04d" % n, "title": "Document %d" % n,
                     "text": ("lorem ipsum dolor sit amet consectetur adipiscing elit " * 6)[:300]})
        n += 1
        if len(body()) > size - 64:
            docs.pop()
            break
    base["note"] = ""
    base["note"] = "x" * (size - len(body()))
    return base


def cmd_bodies(a):
    os.makedirs(a.dir, exist_ok=True)
    bodies = {
        "call_1k": rpc(1, "tools/call", {"name": "search_item_00", "arguments": call_args(1024)}),
        "call_64k": rpc(1, "tools/call", {"name": "search_item_00", "arguments": call_args(64 * 1024)}),
        "list": rpc(1, "tools/list", {}),
        "denied": rpc(3, "tools/call", {"name": "admin_tool_00", "arguments": {"query": "x"}}),
    }
    for name, body in bodies.items():
        with open(os.path.join(a.dir, name + ".json"), "w") as f:
            f.write(compact(body))
    # The bypasses: raw text, since JSON libraries cannot write duplicate keys.
    with open(os.path.join(a.dir, "dup.json"), "w") as f:
        f.write('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_item_00",'
                '"arguments":{"query":"x"},"name":"delete_all"}}')
    with open(os.path.join(a.dir, "batch.json"), "w") as f:
        f.write('[{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"delete_all","arguments":{}}}]')
    with open(os.path.join(a.dir, "escape.json"), "w") as f:
        f.write('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"n\\u0061me":"delete_all","arguments":{}}}')
    for name in sorted(os.listdir(a.dir)):
        print("  %-14s %6d bytes" % (name, os.path.getsize(os.path.join(a.dir, name))))


# ---------------------------------------------------------------------------------------------
# Correctness checks

MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-06-18",
}


def post(port, path, body, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data.decode("utf-8", "replace"))
    c.close()
    return out


def get_json(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path)
    r = c.getresponse()
    data = json.loads(r.read() or b"{}")
    c.close()
    return data


def sse_messages(text):
    """JSON-RPC messages from an SSE body (events separated by a blank line, data lines joined)."""
    out = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = [l[5:].lstrip() for l in event.split("\n") if l.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


class Checks:
    def __init__(self, scenario):
        self.scenario, self.results = scenario, []

    def expect(self, name, ok, detail):
        self.results.append({"check": name, "ok": bool(ok), "detail": detail})
        print("  %s %-34s %s" % ("ok  " if ok else "FAIL", name, "" if ok else detail[:300]))


def cmd_check(a):
    s = a.scenario
    bodies = {n: open(os.path.join(a.bodies, n + ".json"), "rb").read() for n in
              ("call_1k", "call_64k", "list", "denied", "dup", "batch", "escape")}
    tok = open(a.token).readline().strip()
    outsider = open(a.outsider_token).readline().strip()
    auth = dict(MCP_HEADERS, authorization="Bearer " + tok)
    path = "/mcp"
    filtering = s == "B"  # only mcpgate filters tools/list answers
    enforcing = s != "A"
    ck = Checks(s)

    def result_ok(name, status, body, want_id=1):
        try:
            m = json.loads(body)
            ok = status == 200 and m.get("id") == want_id and "result" in m
        except ValueError:
            ok = False
        ck.expect(name, ok, "%s %s" % (status, body[:200]))

    st, h, body = post(a.port, path, bodies["call_1k"], auth)
    result_ok("tools/call 1 KB answered", st, body)
    st, h, body = post(a.port, path, bodies["call_64k"], auth)
    result_ok("tools/call 64 KB answered", st, body)

    want = 50 if filtering else 100
    st, h, body = post(a.port, path, bodies["list"], auth)
    try:
        tools = [t["name"] for t in json.loads(body)["result"]["tools"]]
    except (ValueError, KeyError, TypeError):
        tools = None
    ck.expect("tools/list JSON: %d tools" % want, st == 200 and tools is not None and len(tools) == want
              and (not filtering or not any(denied_tool(t) for t in tools)),
              "%s %s tools=%s" % (st, h.get("content-type"), None if tools is None else len(tools)))
    st, h, body = post(a.port, path, bodies["list"], dict(auth, **{"x-bench-response": "sse"}))
    try:
        msgs = sse_messages(body)
        tools = [t["name"] for t in msgs[-1]["result"]["tools"]]
    except (ValueError, KeyError, TypeError, IndexError):
        tools = None
    ck.expect("tools/list SSE: %d tools" % want, st == 200 and h.get("content-type", "").startswith("text/event-stream")
              and tools is not None and len(tools) == want
              and (not filtering or not any(denied_tool(t) for t in tools)),
              "%s %s tools=%s body=%s" % (st, h.get("content-type"), None if tools is None else len(tools), body[:160]))

    # A new token (first use: signature check).
    fresh = open(a.fresh_token).readline().strip() if a.fresh_token else tok
    st, h, body = post(a.port, path, bodies["call_1k"], dict(MCP_HEADERS, authorization="Bearer " + fresh))
    result_ok("new token accepted", st, body)

    st, h, body = post(a.port, path, bodies["call_1k"], MCP_HEADERS)
    if enforcing:
        ck.expect("no token: 401", st == 401, "%s %s" % (st, body[:200]))
    else:
        ck.expect("no token: passes (no auth in A)", st == 200, "%s" % st)
    st, h, body = post(a.port, path, bodies["call_1k"], dict(MCP_HEADERS, authorization="Bearer " + tok[:-4] + "AAAA"))
    if enforcing:
        ck.expect("bad signature: 401", st == 401, "%s %s" % (st, body[:200]))

    before = get_json(a.backend_port, "/stats")["calls"].get("admin_tool_00", 0)
    st, h, body = post(a.port, path, bodies["denied"], dict(auth, **{"x-bench-parse": "1"}))
    after = get_json(a.backend_port, "/stats")["calls"].get("admin_tool_00", 0)
    if enforcing:
        try:
            m = json.loads(body)
            rpc_err = "error" in m and m.get("id") == 3
        except ValueError:
            rpc_err = False
        # mcpgate answers with a JSON-RPC error carrying the id; RBAC answers a plain 403.
        ok = after == before and (rpc_err if s in ("B", "D") else st == 403)
        ck.expect("denied tool not forwarded", ok, "%s %s (backend calls %d→%d)" % (st, body[:200], before, after))
        st, h, body = post(a.port, path, bodies["call_1k"], dict(MCP_HEADERS, authorization="Bearer " + outsider))
        try:
            m = json.loads(body)
            denied = st in (401, 403) or ("error" in m and "result" not in m)
        except ValueError:
            denied = st in (401, 403)
        ck.expect("user outside the allow rule denied", denied, "%s %s" % (st, body[:200]))

    # The bypass probes: what reaches the server (which executes the last duplicate key).
    bypass = {}
    for probe in ("dup", "batch", "escape"):
        get_json(a.backend_port, "/stats", "POST")
        st, h, body = post(a.port, path, bodies[probe], dict(auth, **{"x-bench-parse": "1"}))
        executed = get_json(a.backend_port, "/stats")["calls"].get("delete_all", 0)
        bypass[probe] = {"request": bodies[probe].decode(), "status": st, "body": body[:300],
                         "backend_executed_delete_all": executed > 0}
        if s == "B":
            ck.expect("bypass '%s' blocked" % probe, executed == 0 and st != 200 or (executed == 0 and "error" in body),
                      "%s %s executed=%s" % (st, body[:200], executed > 0))
    out = {"scenario": s, "checks": ck.results, "bypass": bypass}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    failed = [r for r in ck.results if not r["ok"]]
    print("  %s: %d passed, %d failed" % (s, len(ck.results) - len(failed), len(failed)))
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------------
# Load-generator results → records.jsonl

def ingest_oha(path):
    d = json.load(open(path))
    s = d.get("summary", {})
    lp = d.get("latencyPercentiles", {})
    codes = d.get("statusCodeDistribution", {}) or {}
    ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
    total = sum(codes.values())
    # With -z, oha cancels the requests still in flight at the deadline: not an error of the server.
    errors = sum(v for k, v in (d.get("errorDistribution") or {}).items() if k != "aborted due to deadline")

    def us(k):
        v = lp.get(k)
        return None if v is None else round(v * 1e6, 1)

    return {"rps": s.get("requestsPerSec"), "ok": ok, "non2xx": total - ok, "errors": errors,
            "p50_us": us("p50"), "p99_us": us("p99"), "p999_us": us("p99.9"), "status": codes}


def ingest_wrk(path):
    d = None
    for line in open(path):
        line = line.strip()
        if line.startswith("{") and '"wrk"' in line:
            d = json.loads(line)
    if d is None:
        raise SystemExit("no wrk summary in %s" % path)
    rec = {"rps": d["rps"], "ok": d["requests"] - d["non2xx"], "non2xx": d["non2xx"], "errors": d["errors"],
           "p50_us": d["p50_us"], "p99_us": d["p99_us"], "p999_us": d["p999_us"], "tokens_reused": d.get("wrapped", 0)}
    if "checked" in d:
        # bench/lib/mcp_request.lua checked every answer's body too.
        rec.update({"checked": d["checked"], "wrong": d["wrong"], "first_wrong": d.get("first_wrong", "")})
    return rec


def cmd_ingest(a):
    rec = ingest_oha(a.file) if a.tool == "oha" else ingest_wrk(a.file)
    rec.update({"scenario": a.scenario, "kind": a.kind, "mode": a.mode, "tool": a.tool})
    for kv in a.extra or []:
        k, v = kv.split("=", 1)
        try:
            rec[k] = float(v)
        except ValueError:
            rec[k] = v
    with open(a.records, "a") as f:
        f.write(json.dumps(rec) + "\n")
    bad = rec["non2xx"] + rec["errors"] + rec.get("wrong", 0)
    checked = ("  %d answers checked" % rec["checked"]) if "checked" in rec else ""
    print("  %-2s %-10s %-6s %9.0f req/s  p50 %7s µs  p99 %7s µs  p99.9 %7s µs%s%s" % (
        a.scenario, a.kind, a.mode, rec["rps"] or 0, rec["p50_us"], rec["p99_us"], rec["p999_us"], checked,
        ("  (%d wrong, %d non-2xx, %d errors)" % (rec.get("wrong", 0), rec["non2xx"], rec["errors"])) if bad else ""))
    if rec.get("first_wrong"):
        print("     first wrong answer: %s" % rec["first_wrong"][:400].replace("\r", "\\r").replace("\n", "\\n"))
    if a.require_ok and (bad or rec.get("checked") == 0):
        if rec.get("checked") == 0:
            print("     no answer was checked")
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("template"); t.add_argument("template"); t.add_argument("out"); t.add_argument("values", nargs="*")
    b = sub.add_parser("bodies"); b.add_argument("dir")
    c = sub.add_parser("check")
    c.add_argument("scenario"); c.add_argument("--port", type=int, required=True)
    c.add_argument("--backend-port", type=int, required=True); c.add_argument("--bodies", required=True)
    c.add_argument("--token", required=True); c.add_argument("--outsider-token", required=True)
    c.add_argument("--fresh-token"); c.add_argument("--out", required=True)
    i = sub.add_parser("ingest")
    i.add_argument("tool", choices=["oha", "wrk"]); i.add_argument("file")
    i.add_argument("--records", required=True); i.add_argument("--scenario", required=True)
    i.add_argument("--kind", required=True); i.add_argument("--mode", required=True)
    i.add_argument("--require-ok", action="store_true")
    i.add_argument("--set", dest="extra", action="append", metavar="KEY=VALUE", help="extra field of the record")
    r = sub.add_parser("report"); r.add_argument("raw"); r.add_argument("out")
    r.add_argument("--doc", help="BENCHMARKS.md whose results section to replace")
    a = p.parse_args()
    if a.cmd == "report":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import report
        report.main(a.raw, a.out, a.doc)
        return
    {"template": cmd_template, "bodies": cmd_bodies, "check": cmd_check, "ingest": cmd_ingest}[a.cmd](a)


if __name__ == "__main__":
    main()
