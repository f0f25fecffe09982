"""Turns bench/run.sh's raw results into results.json, results.md and chart.svg (standard library
only). Every target of the benchmark issue is computed from the same run and printed PASS/FAIL
(or n/a when the run has no number for it)."""
import glob
import json
import os

SCENARIOS = ["A", "B", "C", "D"]
NAMES = {
    "A": "A limit (Envoy, no filter)",
    "B": "B mcpgate (Envoy + filter)",
    "C": "C stock Envoy (jwt_authn + mcp + rbac)",
    "D": "D ext_authz call-out",
}
KINDS = ["call_1k", "call_64k", "list_json", "list_sse", "new_token"]
KIND_NAMES = {
    "call_1k": "tools/call 1 KB",
    "call_64k": "tools/call 64 KB",
    "list_json": "tools/list 100 tools, JSON",
    "list_sse": "tools/list 100 tools, SSE",
    "new_token": "first request of a new token",
}
COLORS = {"A": "#8c8c8c", "B": "#1f77b4", "C": "#ff7f0e", "D": "#2ca02c"}
WASM_LIMIT = 800 * 1000


def load(raw):
    meta = json.load(open(os.path.join(raw, "meta.json")))
    records = [json.loads(l) for l in open(os.path.join(raw, "records.jsonl")) if l.strip()]
    memory = {}
    for p in glob.glob(os.path.join(raw, "memory-*.json")):
        try:
            m = json.load(open(p))
            memory[m["scenario"]] = m
        except (ValueError, KeyError):
            pass
    checks = {}
    for p in glob.glob(os.path.join(raw, "checks-*.json")):
        try:
            c = json.load(open(p))
            checks[c["scenario"]] = c
        except (ValueError, KeyError):
            pass
    native = None
    try:
        native = json.load(open(os.path.join(raw, "native.json")))
    except (OSError, ValueError):
        pass
    meta["native"] = native
    e = {}
    for p in glob.glob(os.path.join(raw, "E-*.json")):
        try:
            d = json.load(open(p))
            e[d.get("db", os.path.basename(p))] = d
        except ValueError:
            pass
    return meta, records, memory, checks, e


def rec(records, s, k, mode):
    for r in records:
        if r["scenario"] == s and r["kind"] == k and r["mode"] == mode:
            return r
    return None


def low_rate(records):
    for r in records:
        if r["mode"] == "low" and r.get("target_rate"):
            return fmt(r["target_rate"])
    return "low rate"


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, float):
        return ("{:,.%df}" % digits).format(v)
    return "{:,}".format(v)


def targets(meta, records, checks, e):
    out = []
    # A smoke run's speeds (1 s, no warm-up, no fixed rates) are not judged against the targets.
    smoke = meta.get("mode") == "smoke"

    def add(name, value, limit, ok, speed=True):
        if smoke and speed and ok is not None:
            result = "smoke: not judged"
        else:
            result = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        out.append({"target": name, "value": value, "limit": limit, "result": result})

    def sat(s, k):
        r = rec(records, s, k, "saturation")
        return r["rps"] if r else None

    def p50(s, k):
        r = rec(records, s, k, "fixed")
        return r["p50_us"] if r else None

    a, b, c, d = (sat(x, "call_1k") for x in "ABCD")
    ratio = b / a if a and b else None
    add("B ≥ 0.80×A throughput (tools/call 1 KB)", None if ratio is None else "%.2f×A" % ratio, "≥ 0.80×A",
        None if ratio is None else ratio >= 0.80)
    pa, pb, pc = p50("A", "call_1k"), p50("B", "call_1k"), p50("C", "call_1k")
    added = pb - pa if pa is not None and pb is not None else None
    add("added p50 over A at the fixed rate (tools/call 1 KB)", None if added is None else "%.0f µs" % added,
        "≤ 150 µs", None if added is None else added <= 150)
    ratio = b / d if b and d else None
    add("B ≥ 1.5×D throughput (tools/call 1 KB)", None if ratio is None else "%.2f×D" % ratio, "≥ 1.5×D",
        None if ratio is None else ratio >= 1.5)
    ratio = pb / pc if pb and pc else None
    add("B p50 ≤ 1.25×C p50 at the fixed rate (tools/call 1 KB)", None if ratio is None else "%.2f×C" % ratio,
        "≤ 1.25×C", None if ratio is None else ratio <= 1.25)
    bb, cb = checks.get("B", {}).get("bypass", {}), checks.get("C", {}).get("bypass", {})
    if bb and cb:
        c_through = [p for p, v in cb.items() if v.get("backend_executed_delete_all")]
        b_through = [p for p, v in bb.items() if v.get("backend_executed_delete_all")]
        add("B stops the bypasses C lets through",
            "C lets through: %s; B lets through: %s" % (", ".join(c_through) or "none", ", ".join(b_through) or "none"),
            "B: none", not b_through, speed=False)
    else:
        add("B stops the bypasses C lets through", None, "B: none", None, speed=False)
    for k, label in (("list_json", "JSON"), ("list_sse", "SSE")):
        pa, pb = p50("A", k), p50("B", k)
        added = pb - pa if pa is not None and pb is not None else None
        add("filtering a 100-tool tools/list adds ≤ 300 µs p50 (%s)" % label,
            None if added is None else "%.0f µs" % added, "≤ 300 µs", None if added is None else added <= 300)
    for k in ("call_1k", "list_json", "list_sse"):
        la, lb = rec(records, "A", k, "low"), rec(records, "B", k, "low")
        if la and lb and la.get("p50_us") is not None and lb.get("p50_us") is not None:
            out.append({"target": "added p50 over A at %s/s, no queueing (%s)" % (fmt(lb.get("target_rate")), KIND_NAMES[k]),
                        "value": "%.0f µs" % (lb["p50_us"] - la["p50_us"]), "limit": "reported", "result": "info"})
    sq = (e.get("sqlite") or {}).get("refresh") or {}
    add("token service refresh grants/s on SQLite", fmt(sq.get("rps")) if "rps" in sq else None, "≥ 1,500/s",
        None if "rps" not in sq else sq["rps"] >= 1500 and not sq.get("errors"))
    pg = (e.get("postgres") or {}).get("refresh") or {}
    out.append({"target": "token service refresh grants/s on PostgreSQL (reported)",
                "value": fmt(pg.get("rps")) if "rps" in pg else None, "limit": "reported", "result": "info"})
    w = meta.get("wasm_bytes")
    add(".wasm size", None if w is None else "%s bytes (%.0f KB)" % (fmt(w), w / 1000), "≤ 800 KB",
        None if w is None else w <= WASM_LIMIT, speed=False)
    return out


# ---------------------------------------------------------------------------------------------

def chart(records, path, subtitle):
    """Two panels of grouped bars: saturation throughput, and p50 at the fixed rate."""
    W, H = 980, 660
    panels = [
        ("Throughput at saturation (requests/s, one Envoy worker)", "saturation", "rps", KINDS),
        ("p50 latency at a low fixed rate, %s req/s (µs; no queueing; half-of-A rate results in the table)" % low_rate(records),
         "low", "p50_us", KINDS[:4]),
    ]
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="Helvetica, Arial, sans-serif" font-size="12">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="20" y="24" font-size="16" font-weight="bold">mcpgate benchmarks</text>',
         '<text x="20" y="42" fill="#555">%s</text>' % esc(subtitle)]
    top = 60
    ph = (H - top - 40) // 2
    for i, (title, mode, field, kinds) in enumerate(panels):
        y0 = top + i * (ph + 10)
        x0, pw, plot_h = 70, W - 90, ph - 70
        vals = [(k, s, (rec(records, s, k, mode) or {}).get(field)) for k in kinds for s in SCENARIOS]
        vmax = max([v for _, _, v in vals if v] or [1]) * 1.1
        o.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (x0 - 50, y0 + 16, esc(title)))
        base = y0 + 30 + plot_h
        for t in range(5):
            v = vmax * t / 4
            y = base - plot_h * t / 4
            o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>' % (x0, x0 + pw, y, y))
            o.append('<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>' % (x0 - 6, y + 4, fmt(v)))
        gw = pw / len(kinds)
        bw = gw * 0.8 / len(SCENARIOS)
        for gi, k in enumerate(kinds):
            gx = x0 + gi * gw + gw * 0.1
            for si, s in enumerate(SCENARIOS):
                v = (rec(records, s, k, mode) or {}).get(field)
                x = gx + si * bw
                if v:
                    h = plot_h * v / vmax
                    o.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>'
                             % (x, base - h, bw - 2, h, COLORS[s], s, k, fmt(v)))
                    o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="#333">%s</text>'
                             % (x + bw / 2 - 1, base - h - 3, fmt(v)))
                else:
                    o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="#999">n/a</text>'
                             % (x + bw / 2 - 1, base - 3))
            o.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>' % (gx + gw * 0.4, base + 16, esc(KIND_NAMES[k])))
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333"/>' % (x0, x0 + pw, base, base))
    lx = 70
    for s in SCENARIOS:
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (lx, H - 26, COLORS[s]))
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 16, H - 16, esc(NAMES[s])))
        lx += 235
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o))


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(meta, records, memory, checks, e, tg):
    smoke = meta.get("mode") == "smoke"
    L = []
    L.append("# mcpgate benchmark results (%s run)" % meta.get("mode"))
    L.append("")
    if smoke:
        cap = meta.get("smoke_requests") or 0
        L.append("**Smoke run: %s s per request kind under wrk (closed loop%s), every answer checked, no warm-up, no "
                 "steady state and no fixed-rate runs (wrk cannot hold a rate). The numbers show that every path works "
                 "and roughly how they compare; they are not benchmark results.**"
                 % (meta.get("smoke_seconds", 1), ", at most %d answers per run" % cap if cap else ""))
        L.append("")
    L.append("- Date: %s, commit %s%s" % (meta.get("date"), meta.get("commit"), " (with uncommitted changes)" if meta.get("dirty") else ""))
    L.append("- Machine: %s, %s cores, %s GiB, Linux %s" % (meta.get("cpu"), meta.get("cores"), meta.get("memory_gib"), meta.get("kernel")))
    L.append("- Envoy %s `--concurrency 1` on core 0 (`taskset -c 0`); load generator and MCP backend on core 1; "
             "%s; wrk %s; %s connections; %s s per measured run" % (meta.get("envoy"), meta.get("oha"), meta.get("wrk"),
                                                                   meta.get("connections"), meta.get("duration_s") if not smoke else "n/a"))
    L.append("- Filter module: %s bytes; keys from: %s" % (fmt(meta.get("wasm_bytes")), meta.get("keys_from")))
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | value | limit | result |")
    L.append("|---|---|---|---|")
    for t in tg:
        L.append("| %s | %s | %s | %s |" % (t["target"], t["value"] if t["value"] is not None else "–", t["limit"],
                                           ("**%s**" % t["result"]) if t["result"] in ("PASS", "FAIL") else t["result"]))
    L.append("")
    L.append("## Throughput and latency")
    L.append("")
    L.append("Saturation: closed loop, %s connections. Fixed rate: half of A's saturation for the same request kind, "
             "latency corrected for coordinated omission; a scenario that cannot sustain that rate is marked overloaded and its latency is "
             "queueing. The last column is p50 at a low fixed rate every scenario sustains (the latency a request adds without queueing). The new-token kind runs under wrk (each request a never-seen token); "
             "its latency columns are from one connection, closed loop (unloaded)." % meta.get("connections"))
    L.append("")
    L.append("| request | scenario | req/s at saturation | Envoy CPU | backend CPU | fixed rate | p50 µs | p99 µs | p99.9 µs | p50 µs at %s/s |" % low_rate(records))
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in KINDS:
        for s in SCENARIOS:
            sr = rec(records, s, k, "saturation")
            fr = rec(records, s, k, "fixed") or rec(records, s, k, "one_connection")
            if not sr and not fr:
                continue
            rate = ("%s/s" % fmt(fr.get("target_rate"))) if fr and fr.get("target_rate") else ("1 conn" if fr else "–")
            if smoke and not fr and sr:
                fr, rate = sr, "none (smoke: closed loop)"
            if fr and fr.get("target_rate") and fr.get("rps") and fr["rps"] < 0.9 * fr["target_rate"]:
                rate += " (overloaded: %s/s)" % fmt(fr["rps"])
            lr = rec(records, s, k, "low")
            cpu = lambda r, f: ("%d%%" % round(100 * r[f])) if r and r.get(f) is not None else "–"
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                KIND_NAMES[k], s, fmt(sr and sr.get("rps")), cpu(sr, "envoy_cpu"), cpu(sr, "backend_cpu"), rate,
                fmt(fr and fr.get("p50_us")), fmt(fr and fr.get("p99_us")), fmt(fr and fr.get("p999_us")),
                fmt(lr and lr.get("p50_us"))))
    L.append("")
    L.append("C and D cannot filter `tools/list` answers (stock filters and ext_authz only see requests): their list rows "
             "forward all 100 tools, mcpgate forwards the 50 the policy allows.")
    L.append("")
    L.append("![chart](chart.svg)")
    L.append("")
    checked = [r for r in records if "checked" in r]
    if checked:
        L.append("## Answers checked under load")
        L.append("")
        L.append("`bench/lib/mcp_request.lua` checks every answer of these runs: HTTP 200, the content type, the JSON-RPC "
                 "id and a result (the backend's tools/call result; 50 tools and none the policy denies through mcpgate, "
                 "100 elsewhere, for tools/list).")
        L.append("")
        L.append("| request | scenario | run | answers checked | wrong | non-2xx | errors | first wrong answer |")
        L.append("|---|---|---|---:|---:|---:|---:|---|")
        for r in checked:
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                KIND_NAMES.get(r["kind"], r["kind"]), r["scenario"], r["mode"], fmt(r["checked"]), r["wrong"], r["non2xx"],
                r["errors"], ("`%s`" % r["first_wrong"][:160].replace("|", "\\|").replace("`", "'").replace("\n", " ")) if r.get("first_wrong") else ""))
        L.append("")
    native = meta.get("native")
    if native:
        L.append("## Where B's time goes")
        L.append("")
        L.append("Envoy's CPU time per request at saturation (its CPU share divided by the request rate), A against B, "
                 "beside what the filter's own logic costs for the same request natively (`mcpgate-bench native`: a release "
                 "build of the same Rust code, no Envoy, no Wasm, on the same bodies, policy, token and backend answers; "
                 "a new token's signature check costs %s µs there, a cached token %s µs). What B adds beyond its logic is "
                 "the proxy-wasm host: the calls into and out of the V8 sandbox (context creation, each callback, each "
                 "header, property, buffer and shared-data call, and the memory callbacks of the ones that return data), "
                 "the copies of buffers across the boundary, and the logic running as Wasm rather than native code."
                 % (fmt(native.get("token_new_us"), 1), fmt(native.get("token_cached_us"), 1)))
        L.append("")
        L.append("| request | A: Envoy µs/request | B: Envoy µs/request | B adds | filter logic natively (µs) | the rest (µs) |")
        L.append("|---|---:|---:|---:|---:|---:|")
        logic = {"call_1k": "call_1k_us", "call_64k": "call_64k_us", "list_json": "list_json_us", "list_sse": "list_sse_us"}
        for k, field in logic.items():
            ra, rb = rec(records, "A", k, "saturation"), rec(records, "B", k, "saturation")
            per = lambda r: r["envoy_cpu"] * 1e6 / r["rps"] if r and r.get("envoy_cpu") and r.get("rps") else None
            a, b = per(ra), per(rb)
            own = (native.get(field) or 0) + (native.get("token_cached_us") or 0)
            added = b - a if a is not None and b is not None else None
            L.append("| %s | %s | %s | %s | %s | %s |" % (KIND_NAMES[k], fmt(a, 1), fmt(b, 1), fmt(added, 1), fmt(own, 1),
                                                       fmt(added - own if added is not None else None, 1)))
        L.append("")
    L.append("## Envoy memory")
    L.append("")
    L.append("| scenario | RSS after load | after new-token run | idle, 1 worker | idle, 2 workers | per extra worker | admin allocated |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    mib = lambda kb: "–" if not kb else "%.1f MiB" % (kb / 1024)
    for s in SCENARIOS:
        m = memory.get(s)
        if not m:
            continue
        per = (m["rss_idle_c2_kb"] - m["rss_idle_c1_kb"]) if m.get("rss_idle_c2_kb") and m.get("rss_idle_c1_kb") else None
        alloc = (m.get("admin_memory") or {}).get("allocated")
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (s, mib(m.get("rss_after_load_kb")), mib(m.get("rss_after_new_tokens_kb")),
                                                         mib(m.get("rss_idle_c1_kb")), mib(m.get("rss_idle_c2_kb")),
                                                         "–" if per is None else "%.1f MiB" % (per / 1024),
                                                         "–" if not alloc else "%.1f MiB" % (int(alloc) / 1048576)))
    L.append("")
    L.append("## Token service (scenario E)")
    L.append("")
    L.append("Straight to the token service (no Envoy). The upstream-token fetch is the call the filter makes on a "
             "credentials cache miss, for a route with `upstream_oauth2` whose users connected the provider (a tiny one "
             "the load client serves): every answer is checked (200, the provider's token for that user, an assertion) "
             "and carries the upstream token decrypted from the database.")
    L.append("")
    L.append("| database | phase | per second | p50 µs | p99 µs | p99.9 µs | errors |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for db in ("sqlite", "postgres"):
        d = e.get(db)
        if not d:
            continue
        if d.get("error"):
            L.append("| %s | – | %s | | | | |" % (db, esc(d["error"])))
            continue
        for phase, label in (("authorize", "authorization (browser redirect, code issued)"), ("exchange", "authorization-code exchange"),
                             ("refresh", "refresh grant (rotating)"),
                             ("upstream_token", "upstream-token fetch (`POST /internal/v1/credentials`, a credentials cache miss)")):
            p = d.get(phase) or {}
            if phase == "upstream_token" and p.get("users"):
                label = label[:-1] + ", %d users)" % p["users"]
            if "rps" in p:
                L.append("| %s | %s | %s | %s | %s | %s | %s |" % (db, label, fmt(p["rps"]), fmt(p["p50_us"]), fmt(p["p99_us"]), fmt(p["p999_us"]), p["errors"]))
            elif p:
                L.append("| %s | %s | %s | | | | |" % (db, label, esc(p.get("error", ""))))
    L.append("")
    L.append("## Bypass demonstration")
    L.append("")
    L.append("The backend executes what a typical MCP server's JSON parser sees (last duplicate key wins; batches run every call). "
             "The policy denies `delete_all`.")
    L.append("")
    for probe, title in (("batch", "a batch of one call"), ("dup", "duplicate `name` key"),
                         ("escape", "escaped key (`n\\u0061me`)")):
        L.append("**%s**: `%s`" % (title, (checks.get("B") or checks.get("C") or {}).get("bypass", {}).get(probe, {}).get("request", "")))
        L.append("")
        L.append("| scenario | HTTP status | answer | backend executed delete_all |")
        L.append("|---|---:|---|---|")
        for s in ("C", "B", "D"):
            v = (checks.get(s) or {}).get("bypass", {}).get(probe)
            if v:
                L.append("| %s | %s | `%s` | %s |" % (s, v["status"], v["body"][:160].replace("|", "\\|").replace("\n", " "),
                                                     "**yes**" if v["backend_executed_delete_all"] else "no"))
        L.append("")
    L.append("## Correctness checks")
    L.append("")
    for s in SCENARIOS:
        c = checks.get(s)
        if not c:
            continue
        bad = [r for r in c["checks"] if not r["ok"]]
        L.append("- %s: %d passed, %d failed%s" % (s, len(c["checks"]) - len(bad), len(bad),
                                                  "".join("\n  - FAIL %s: `%s`" % (r["check"], r["detail"][:200].replace("`", "'")) for r in bad)))
    L.append("")
    if meta.get("notes") or meta.get("failures"):
        L.append("## Notes and failures of this run")
        L.append("")
        for n in meta.get("notes", []):
            L.append("- note: %s" % n)
        for f in meta.get("failures", []):
            L.append("- **failure**: %s" % f)
        L.append("")
    return "\n".join(L)


def update_doc(doc, md, out):
    """Replaces the results section of BENCHMARKS.md (between the markers) with this run's report."""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    text = open(doc).read()
    if begin not in text or end not in text:
        print("    %s has no results markers; not updated" % doc)
        return
    rel = os.path.relpath(out, os.path.dirname(os.path.abspath(doc)))
    lines = []
    for l in md.splitlines():
        if l.startswith("# "):
            l = "### " + l[2:]
        elif l.startswith("## "):
            l = "#### " + l[3:]
        lines.append(l.replace("](chart.svg)", "](%s/chart.svg)" % rel))
    lines.append("")
    lines.append("Raw and machine-readable: [`%s/results.json`](%s/results.json)." % (rel, rel))
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(doc, "w") as f:
        f.write(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    print("    updated the results section of %s" % doc)


def main(raw, out, doc=None):
    meta, records, memory, checks, e = load(raw)
    tg = targets(meta, records, checks, e)
    os.makedirs(out, exist_ok=True)
    subtitle = "%s run, %s, Envoy %s, %s" % (meta.get("mode"), meta.get("date"), meta.get("envoy"),
                                             "smoke numbers: indicative only" if meta.get("mode") == "smoke" else "one Envoy worker on core 0")
    chart(records, os.path.join(out, "chart.svg"), subtitle)
    md = markdown(meta, records, memory, checks, e, tg)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md + "\n")
    if doc:
        update_doc(doc, md, out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "targets": tg, "records": records, "memory": memory,
                   "checks": checks, "token_service": e}, f, indent=1)
    print("\n    targets:")
    for t in tg:
        print("    %-5s %-62s %s" % (t["result"] if len(t["result"]) <= 5 else "-", t["target"],
                                     (t["value"] if t["value"] is not None else "") + ("" if len(t["result"]) <= 5 else "  (%s)" % t["result"])))
