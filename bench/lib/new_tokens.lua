-- wrk script for the "new token" request kind: every request carries a token the gateway has not
-- seen yet, so each one pays the signature check. Arguments: TOKENS_FILE BODY_FILE.
-- Prints one JSON summary line (percentiles in microseconds).
local tokens, body = {}, ""
local i, wrapped = 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  local f = assert(io.open(args[2], "rb"))
  body = f:read("*a")
  f:close()
end

function request()
  i = i + 1
  if i > #tokens then
    i = 1
    wrapped = wrapped + 1
  end
  return wrk.format("POST", nil, {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["MCP-Protocol-Version"] = "2025-06-18",
  }, body)
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + (t:get("wrapped") or 0) end
  local e = summary.errors
  io.write(string.format(
    '{"wrk":1,"rps":%.1f,"requests":%d,"non2xx":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"wrapped":%d}\n',
    summary.requests / (summary.duration / 1e6), summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), w))
end
