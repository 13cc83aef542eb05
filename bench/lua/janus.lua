-- wrk script for `make bench` (bench/run.py): one request shape per scenario, sent as a user
-- picked at random per request, with every response status counted.
--
--   wrk ... -s bench/lua/janus.lua URL -- METHOD PATH BODY_FILE USERS_FILE
--
-- BODY_FILE holds the JSON body ("-": none); USERS_FILE one X-User-ID per line ("-": none).
-- done() prints one line, "JANUS_WRK {json}", which bench/drivers.py parses: the summary,
-- latency percentiles in microseconds, socket errors, and the count of every status code.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

local requests = {}
-- Global, so done() can collect it from each thread with thread:get().
statuses = {}

local function read_file(path)
   local file = assert(io.open(path, "rb"))
   local text = file:read("*a")
   file:close()
   return text
end

function init(args)
   local method, path, body_file, users_file = args[1], args[2], args[3], args[4]
   local body = nil
   if body_file ~= "-" then
      body = read_file(body_file)
   end
   local users = {}
   if users_file ~= "-" then
      for line in io.lines(users_file) do
         if line ~= "" then
            users[#users + 1] = line
         end
      end
   end
   -- Built once per user, not per request: request() must stay cheap or wrk is the bottleneck.
   local function build(user)
      local headers = {}
      if body then
         headers["Content-Type"] = "application/json"
      end
      if user then
         headers["X-User-ID"] = user
      end
      return wrk.format(method, path, headers, body)
   end
   if #users == 0 then
      requests[1] = build(nil)
   else
      for i, user in ipairs(users) do
         requests[i] = build(user)
      end
   end
   math.randomseed(os.time() * 100 + thread_number)
end

function request()
   return requests[math.random(#requests)]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
   end
   local status_parts = {}
   for status, count in pairs(counts) do
      status_parts[#status_parts + 1] = string.format('"%d": %d', status, count)
   end
   local errors = summary.errors
   io.write(string.format(
      'JANUS_WRK {"duration_us": %d, "requests": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
         .. '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, '
         .. '"statuses": {%s}}\n',
      summary.duration, summary.requests, summary.bytes,
      errors.connect, errors.read, errors.write, errors.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9),
      table.concat(status_parts, ", ")))
end
