-- wrk script of scripts/bench: POST /problems/submit with a correct solution of the demo problem
-- `uk-customers` that is unique per request (so the verdict cache never answers), signed with
-- the tokens of several users in turn (so executors are not held back by the per-user limit).
--
-- Environment: BENCH_PROBLEM (problem id), BENCH_TOKENS (comma-separated access tokens; none
-- for the ceiling), BENCH_SALT (a number unique to this wrk run).
-- done() prints one machine-readable line: `BENCH requests=.. seconds=.. rps=.. p50_ms=..
-- p99_ms=.. status_errors=.. socket_errors=..` (status errors: answers that are not 2xx/3xx).

local problem = os.getenv("BENCH_PROBLEM") or "1"
local salt = os.getenv("BENCH_SALT") or "0"
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
    tokens[#tokens + 1] = token
end

local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end

local n = 0
function request()
    n = n + 1
    local headers = { ["Content-Type"] = "application/json" }
    if #tokens > 0 then
        headers["Authorization"] = "Bearer " .. tokens[(n + (tid or 0)) % #tokens + 1]
    end
    local body = string.format(
        '{"problem_id":%s,"sql":"SELECT name FROM customers WHERE country = \'UK\' AND %d > 0 AND %d >= 0 AND %s >= 0"}',
        problem, n, tid or 0, salt)
    return wrk.format("POST", "/problems/submit", headers, body)
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f status_errors=%d socket_errors=%d\n",
        summary.requests, seconds, summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.status, e.connect + e.read + e.write + e.timeout))
end
