-- wrk script of benchmarks/serving_http.py: builds each request, counts the answers, prints one JSON line.
--
--   wrk ... -s benchmarks/wrk/serving.lua URL -- MODE PREFIX USERS BATCH POST_PERCENT CLOCK NUM_ITEMS THREADS K
--
-- MODE is get (recommendations of a random user of the group), post (events), or mixed (a post with
-- probability POST_PERCENT / 100, else a get). Users are PREFIX .. 0 .. USERS - 1, items "i1" .. "i<NUM_ITEMS>".
-- A post holds BATCH events, one for each of BATCH distinct users taken in turn from the thread's own
-- slice of the users, all at the timestamp CLOCK + n for the thread's n-th post: a user's timestamps only
-- increase, so every event is applied unless two posts holding the same user overtake each other (counted
-- as stale by the service). Posts send the write token of the environment variable RECMAMBA_WRITE_TOKEN,
-- which keeps it off wrk's command line. done() prints "WRK_JSON {...}": latency percentiles (ms), answers
-- by kind, non-2xx answers and the sums of the service's applied/stale/duplicates/new_users counts.

local threads = {}
local COUNTERS = { "answers", "non2xx", "posts", "applied", "stale", "duplicates", "new_users" }

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

function init(args)
   mode, prefix = args[1], args[2]
   users, batch, post_percent = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
   clock, num_items, thread_count, k = tonumber(args[6]), tonumber(args[7]), tonumber(args[8]), args[9]
   slice = math.floor(users / thread_count)
   first = thread_index * slice
   cursor = 0
   for _, name in ipairs(COUNTERS) do
      _G[name] = 0
   end
   math.randomseed(1000 + thread_index)
   local write_token = assert(os.getenv("RECMAMBA_WRITE_TOKEN"), "RECMAMBA_WRITE_TOKEN is not set")
   post_headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. write_token }
end

local function recommendations()
   local user = math.random(users) - 1
   return wrk.format("GET", "/users/" .. prefix .. user .. "/recommendations?k=" .. k)
end

local function events()
   clock = clock + 1
   local parts = {}
   for i = 1, batch do
      local user = first + cursor
      cursor = (cursor + 1) % slice
      parts[i] = string.format('{"user":"%s%d","item":"i%d","timestamp":%.0f}', prefix, user,
         math.random(num_items), clock)
   end
   local body = '{"events":[' .. table.concat(parts, ",") .. "]}"
   return wrk.format("POST", "/events", post_headers, body)
end

function request()
   if mode == "get" or (mode == "mixed" and math.random(100) > post_percent) then
      return recommendations()
   end
   return events()
end

local function count(body, key)
   local value = body:match('"' .. key .. '":%s*(%d+)')
   return value and tonumber(value) or 0
end

function response(status, headers, body)
   answers = answers + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
   if body:find('"applied"', 1, true) then
      posts = posts + 1
      applied = applied + count(body, "applied")
      stale = stale + count(body, "stale")
      duplicates = duplicates + count(body, "duplicates")
      new_users = new_users + count(body, "new_users")
   end
end

function done(summary, latency, requests)
   local fields = {}
   for _, name in ipairs(COUNTERS) do
      local total = 0
      for _, thread in ipairs(threads) do
         total = total + thread:get(name)
      end
      table.insert(fields, string.format('"%s":%d', name, total))
   end
   for _, q in ipairs({ 50, 90, 99, 99.9 }) do
      table.insert(fields, string.format('"p%s_ms":%.4f', tostring(q):gsub("%.", "_"), latency:percentile(q) / 1e3))
   end
   table.insert(fields, string.format('"mean_ms":%.4f,"max_ms":%.4f', latency.mean / 1e3, latency.max / 1e3))
   local e = summary.errors
   table.insert(fields, string.format('"requests":%d,"duration_s":%.6f,"bytes":%d', summary.requests,
      summary.duration / 1e6, summary.bytes))
   table.insert(fields, string.format('"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"status_errors":%d',
      e.connect, e.read, e.write, e.timeout, e.status))
   io.write("WRK_JSON {" .. table.concat(fields, ",") .. "}\n")
end
