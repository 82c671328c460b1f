-- wrk script for read_path.py: one GET with an optional auth header, and a machine-readable
-- summary line at the end. The header comes from the environment so that tokens never appear
-- on a command line.
--
-- No response() hook on purpose: it would run Lua per response and steal CPU from the server
-- on a small machine. wrk's summary.errors.status counts responses with status > 399.

local header_name = os.getenv("BENCH_HEADER_NAME")
local header_value = os.getenv("BENCH_HEADER_VALUE")

wrk.method = "GET"
if header_name ~= nil and header_name ~= "" then
  wrk.headers[header_name] = header_value
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"errors_connect\":%d,\"errors_read\":%d,\"errors_write\":%d," ..
    "\"errors_status\":%d,\"errors_timeout\":%d," ..
    "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"p999_us\":%d," ..
    "\"min_us\":%d,\"max_us\":%d,\"mean_us\":%.1f,\"stdev_us\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.min, latency.max, latency.mean, latency.stdev))
end
