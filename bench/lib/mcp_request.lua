-- wrk script for one MCP request kind, checking every answer (bench/run.sh --smoke uses it for
-- every kind; Debian's wrk, LuaJIT). Arguments after `--`, each KEY=VALUE:
--
--   body=FILE          the request body (required)
--   token=FILE         bearer token: the first line of FILE
--   tokens=FILE        one bearer token per line, a different one on every request (the new-token
--                      kind); wraps around when they run out (counted as `wrapped`)
--   header=NAME:VALUE  one more request header (repeatable)
--   expect=call|list_json|list_sse
--                      call: a JSON answer {"jsonrpc":"2.0","id":ID,"result":{...}} carrying the
--                      backend's tools/call result (content [{"type":"text","text":"ok"}],
--                      isError false);
--                      list_json / list_sse: the tools/list result as a JSON answer or as SSE
--                      (exactly one event with data), with `tools` entries
--   id=N               the JSON-RPC id every answer must carry (default 1)
--   tools=N            list kinds: how many tools a right answer lists (distinct names)
--   filtered=1         list kinds: no tool the benchmark policy denies may appear (admin_*,
--                      internal_*, *_unsafe, delete_all, drop_database, shutdown; the same
--                      rules as bench/lib/bench.py and bench/config/gateway.yaml.tmpl)
--   max=N              stop after N answers (0 or absent: run for wrk's -d)
--
-- A right answer: HTTP 200, the content type of the kind, a complete body (balanced braces and
-- brackets), the JSON-RPC version and id, a `result` and no `error`, and the kind's result as
-- above. Anything else is a wrong answer; the first one is kept as a sample.
--
-- Prints one JSON line in `done` (percentiles in microseconds):
--   {"wrk":1,"rps":…,"requests":…,"non2xx":…,"errors":…,"p50_us":…,"p99_us":…,"p999_us":…,
--    "wrapped":…,"checked":…,"wrong":…,"first_wrong":"…"}
-- bench/lib/bench.py ingest fails the run when wrong, non2xx or errors is not 0 or nothing was
-- checked.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Per thread (each wrk thread has its own Lua state).
local opts = { headers = {} }
local tokens = {}
local static_request = nil
local body = ""
local i = 0
wrapped, checked, wrong, first_wrong = 0, 0, 0, ""

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function init(args)
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if not k then error("mcp_request.lua: argument is not KEY=VALUE: " .. a) end
    if k == "header" then
      local name, value = v:match("^([^:]+):%s*(.*)$")
      if not name then error("mcp_request.lua: header=NAME:VALUE, got " .. v) end
      opts.headers[name] = value
    else
      opts[k] = v
    end
  end
  if not opts.body then error("mcp_request.lua: body=FILE is required") end
  body = read_file(opts.body)
  opts.expect = opts.expect or "call"
  opts.id = tonumber(opts.id or "1")
  opts.tools = tonumber(opts.tools or "0")
  opts.filtered = opts.filtered == "1"
  opts.max = tonumber(opts.max or "0")
  if opts.expect ~= "call" and opts.expect ~= "list_json" and opts.expect ~= "list_sse" then
    error("mcp_request.lua: expect=call|list_json|list_sse, got " .. opts.expect)
  end
  if opts.tokens then
    for line in io.lines(opts.tokens) do
      if #line > 0 then tokens[#tokens + 1] = line end
    end
    if #tokens == 0 then error("mcp_request.lua: no tokens in " .. opts.tokens) end
  else
    local token = nil
    if opts.token then token = (read_file(opts.token):match("^[^\r\n]+")) end
    static_request = wrk.format("POST", nil, headers_with(token), body)
  end
end

function headers_with(token)
  local h = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["MCP-Protocol-Version"] = "2025-06-18",
  }
  if token then h["Authorization"] = "Bearer " .. token end
  for k, v in pairs(opts.headers) do h[k] = v end
  return h
end

function request()
  if static_request then return static_request end
  i = i + 1
  if i > #tokens then
    i = 1
    wrapped = wrapped + 1
  end
  return wrk.format("POST", nil, headers_with(tokens[i]), body)
end

-- ---------------------------------------------------------------------------------------------
-- Checks

local DENY_PREFIXES = { "admin_", "internal_" }
local DENY_SUFFIXES = { "_unsafe" }
local DENY_EXACT = { delete_all = true, drop_database = true, shutdown = true }

local function denied(name)
  if DENY_EXACT[name] then return true end
  for _, p in ipairs(DENY_PREFIXES) do
    if name:sub(1, #p) == p then return true end
  end
  for _, s in ipairs(DENY_SUFFIXES) do
    if #name >= #s and name:sub(-#s) == s then return true end
  end
  return false
end

-- Occurrences of the plain string `needle` (plain find: a list answer is 28 KB and patterns or
-- gsub over it cost a millisecond per answer).
local function count(s, needle)
  local n, at = 0, 1
  while true do
    at = s:find(needle, at, true)
    if not at then return n end
    n, at = n + 1, at + 1
  end
end

-- Whether the key `"key"` followed by a colon occurs (plain search, then the colon).
local function has_key(s, key)
  local needle, at = '"' .. key .. '"', 1
  while true do
    local i, j = s:find(needle, at, true)
    if not i then return false end
    if s:find("^%s*:", j + 1) then return true end
    at = j + 1
  end
end

local function header(headers, name)
  for k, v in pairs(headers) do
    if k:lower() == name then return v end
  end
  return nil
end

-- The JSON-RPC messages of an SSE body: events are separated by a blank line, data lines joined.
local function sse_messages(text)
  if text:find("\r", 1, true) then text = text:gsub("\r\n", "\n") end
  local out, data, pos, n = {}, {}, 1, #text
  while pos <= n do
    local e = text:find("\n", pos, true) or (n + 1)
    local line = text:sub(pos, e - 1)
    if line == "" then
      if #data > 0 then
        out[#out + 1] = table.concat(data, "\n")
        data = {}
      end
    elseif line:sub(1, 5) == "data:" then
      local d = line:sub(6)
      if d:sub(1, 1) == " " then d = d:sub(2) end
      data[#data + 1] = d
    end
    pos = e + 1
  end
  if #data > 0 then out[#out + 1] = table.concat(data, "\n") end
  return out
end

-- nil when `m` is the right JSON-RPC answer for the kind, else why not.
local function check_message(m)
  if not m:find("^%s*{") or not m:find("}%s*$", math.max(1, #m - 16)) then return "not one JSON object" end
  if count(m, "{") ~= count(m, "}") or count(m, "[") ~= count(m, "]") then
    return "incomplete JSON (unbalanced braces)"
  end
  if not m:find('"jsonrpc"%s*:%s*"2%.0"') then return "no \"jsonrpc\":\"2.0\"" end
  local id = m:match('[{,]%s*"id"%s*:%s*(-?%d+)%s*[,}]')
  if tonumber(id) ~= opts.id then return "id " .. tostring(id) .. ", want " .. opts.id end
  if has_key(m, "error") then return "JSON-RPC error" end
  if not m:find('"result"%s*:%s*{') then return "no result object" end
  if opts.expect == "call" then
    if not m:find('"text"%s*:%s*"ok"') or not m:find('"isError"%s*:%s*false') then
      return "not the backend's tools/call result"
    end
    return nil
  end
  if not m:find('"tools"%s*:%s*%[') then return "no tools array" end
  local seen, n, at = {}, 0, 1
  while true do
    local _, j = m:find('"name"', at, true)
    if not j then break end
    at = j + 1
    local name = m:match('^%s*:%s*"([^"]*)"', j + 1)
    if name then
      if seen[name] then return "tool " .. name .. " listed twice" end
      seen[name] = true
      n = n + 1
      if opts.filtered and denied(name) then return "denied tool " .. name .. " listed" end
    end
  end
  if n ~= opts.tools then return n .. " tools, want " .. opts.tools end
  return nil
end

local function check(status, headers, text)
  if status ~= 200 then return "HTTP " .. status end
  local ct = (header(headers, "content-type") or ""):lower()
  if opts.expect == "list_sse" then
    if ct:sub(1, 17) ~= "text/event-stream" then return "content-type " .. ct .. ", want text/event-stream" end
    local msgs = sse_messages(text)
    if #msgs ~= 1 then return #msgs .. " SSE messages, want 1" end
    return check_message(msgs[1])
  end
  if ct:sub(1, 16) ~= "application/json" then return "content-type " .. ct .. ", want application/json" end
  return check_message(text)
end

function response(status, headers, text)
  checked = checked + 1
  local why = check(status, headers, text or "")
  if why then
    wrong = wrong + 1
    if first_wrong == "" then
      -- `why` names the status when it is not 200.
      first_wrong = why .. ": " .. (text or ""):sub(1, 300)
    end
  end
  if opts.max > 0 and checked >= opts.max then wrk.thread:stop() end
end

-- ---------------------------------------------------------------------------------------------

local function json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local w, c, bad, sample = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    w = w + (t:get("wrapped") or 0)
    c = c + (t:get("checked") or 0)
    bad = bad + (t:get("wrong") or 0)
    local s = t:get("first_wrong") or ""
    if sample == "" then sample = s end
  end
  local e = summary.errors
  io.write(string.format(
    '{"wrk":1,"rps":%.1f,"requests":%d,"non2xx":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,'
      .. '"wrapped":%d,"checked":%d,"wrong":%d,"first_wrong":%s}\n',
    summary.requests / (summary.duration / 1e6), summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), w, c, bad,
    json_string(sample)))
end
