-- wrk script for `make bench`'s queue scenario (bench/run.py): workers that claim jobs and
-- acknowledge each claim with one batch complete.
--
--   wrk ... -s bench/lua/queue.lua URL -- CLAIM_PATH COMPLETE_PATH CLAIM_BODY_FILE USERS_FILE
--
-- USERS_FILE holds one X-User-ID: every worker drains the same user's queue (an answer does
-- not name its user, and completes must be sent as the user that claimed).
--
-- Each connection alternates: POST CLAIM_PATH with CLAIM_BODY_FILE's body, then, when the
-- claim leased jobs, POST COMPLETE_PATH with every leased job's id and lease token in one
-- body. wrk calls response() for a connection and then request() for the same connection,
-- so the completion built from a claim's answer is the next request that connection sends.
-- Jobs are counted only when a batch complete answers them "completed".
--
-- done() prints one line, "JANUS_WRK {json}", which bench/drivers.py parses: the summary,
-- latency percentiles in microseconds (claims and completes together), socket errors, the
-- count of every status code, and "counters": jobs leased, jobs completed, completions
-- answered otherwise (stale_lease, not_found), claims that found the queue empty or short.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

-- Global, so done() can collect them from each thread with thread:get().
statuses = {}
counters = {claimed = 0, completed = 0, not_completed = 0, empty_claims = 0, short_claims = 0}

local user, claim, claim_limit, complete_path
-- Completions built from claims' answers, not yet sent. Several connections share a thread,
-- so a response says what it answers by its body ("results" for a complete, "jobs" for a
-- claim), not by the connection.
local pending = {}

local function read_file(path)
   local file = assert(io.open(path, "rb"))
   local text = file:read("*a")
   file:close()
   return text
end

function init(args)
   local claim_path, claim_body = args[1], read_file(args[3])
   complete_path = args[2]
   claim_limit = tonumber(claim_body:match('"limit"%s*:%s*(%d+)')) or 1
   for line in io.lines(args[4]) do
      if line ~= "" then
         assert(user == nil, "queue.lua drains one user's queue: USERS_FILE must hold one id")
         user = line
      end
   end
   assert(user, "USERS_FILE holds no user")
   -- Built once, not per request: request() must stay cheap or wrk is the bottleneck.
   claim = wrk.format(
      "POST", claim_path, {["Content-Type"] = "application/json", ["X-User-ID"] = user},
      claim_body)
end

function request()
   local waiting = table.remove(pending)
   if waiting then
      return waiting
   end
   return claim
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status ~= 200 or not body then
      return
   end
   if body:find('"results"', 1, true) then
      -- A batch complete's answer: one outcome per job.
      for outcome in body:gmatch('"outcome"%s*:%s*"([^"]+)"') do
         if outcome == "completed" then
            counters.completed = counters.completed + 1
         else
            counters.not_completed = counters.not_completed + 1
         end
      end
      return
   end
   -- A claim's answer. Each job lists job_id before lease_token; the bench's payload holds
   -- neither key.
   local items = {}
   for job_id, token in body:gmatch('"job_id"%s*:%s*"([^"]+)".-"lease_token"%s*:%s*"([^"]+)"') do
      items[#items + 1] = string.format(
         '{"job_id": "%s", "lease_token": "%s", "result": {"ok": true}}', job_id, token)
   end
   counters.claimed = counters.claimed + #items
   if #items == 0 then
      counters.empty_claims = counters.empty_claims + 1
      return
   end
   if #items < claim_limit then
      counters.short_claims = counters.short_claims + 1
   end
   pending[#pending + 1] = wrk.format(
      "POST", complete_path,
      {["Content-Type"] = "application/json", ["X-User-ID"] = user},
      '{"jobs": [' .. table.concat(items, ", ") .. ']}')
end

function done(summary, latency, requests)
   local counts, totals = {}, {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
      for name, count in pairs(thread:get("counters")) do
         totals[name] = (totals[name] or 0) + count
      end
   end
   local status_parts, counter_parts = {}, {}
   for status, count in pairs(counts) do
      status_parts[#status_parts + 1] = string.format('"%d": %d', status, count)
   end
   for name, count in pairs(totals) do
      counter_parts[#counter_parts + 1] = string.format('"%s": %d', name, count)
   end
   local errors = summary.errors
   io.write(string.format(
      'JANUS_WRK {"duration_us": %d, "requests": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
         .. '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, '
         .. '"statuses": {%s}, "counters": {%s}}\n',
      summary.duration, summary.requests, summary.bytes,
      errors.connect, errors.read, errors.write, errors.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9),
      table.concat(status_parts, ", "), table.concat(counter_parts, ", ")))
end
