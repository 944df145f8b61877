-- wrk script for bench/run.ts: every request carries the next session cookie (BENCH_COOKIES: a file, one
-- `name=value` a line), so concurrent requests belong to many users; `done` prints one JSON line for run.ts.
local cookies = {}
for line in io.lines(os.getenv("BENCH_COOKIES")) do
  if #line > 0 then cookies[#cookies + 1] = line end
end
local method = os.getenv("BENCH_METHOD") or "GET"
local i = 0

local start = tonumber(os.getenv("BENCH_OFFSET") or "")

function setup(thread)
  -- BENCH_OFFSET: where the previous run on this list stopped (run.ts), so every session comes round in turn;
  -- without it, threads start at different cookies so they do not walk the list in step.
  thread:set("offset", start or math.random(#cookies))
end

request = function()
  i = i + 1
  return wrk.format(method, nil, { Cookie = cookies[((i + (offset or 0)) % #cookies) + 1] })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
