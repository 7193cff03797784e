-- wrk script: POST one body file with the headers an Anthropic client sends.
-- Usage: wrk -s bench/post.lua URL -- BODY_FILE
-- Where the body holds the mark "@turn@" (bench/bodies.py puts it in the conversation's last
-- two items), every request gets its own number there: a session's requests repeat what came
-- before and differ in the newest turn, and so do these. The number starts with a random
-- prefix of this run's own: the bench runs wrk several times against one gateway (warm-up,
-- two rounds), and numbers that started again at 1 on each run sent every body again (each
-- of claude_code_distinct's up to three times, which its reuse table keeps on the second
-- sight). Bodies without the mark are sent as they are.
-- No response() callback on purpose: defining one makes wrk parse every reply in Lua.
local pieces, counter, prefix = nil, 0, ""
local threads = 0

function setup(thread)  -- runs in wrk's main state: number the threads
   threads = threads + 1
   thread:set("thread_name", tostring(threads))
end

function run_prefix()  -- eight random hex digits, new for every wrk run and thread
   local f = assert(io.open("/dev/urandom", "rb"))
   local bytes = f:read(4)
   f:close()
   return string.format("%02x%02x%02x%02x", bytes:byte(1, 4)) .. "-"
end

function init(args)
   local f = assert(io.open(args[1], "rb"))
   local body = f:read("*a")
   f:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["anthropic-version"] = "2023-06-01"
   -- BENCH_OPS runs a gateway with keys: the one bench/run.sh made (others ignore it).
   wrk.headers["x-api-key"] = os.getenv("BENCH_API_KEY") or "bench-key"
   if body:find("@turn@", 1, true) then
      pieces = {}
      local start = 1
      while true do
         local i, j = body:find("@turn@", start, true)
         if not i then break end
         pieces[#pieces + 1] = body:sub(start, i - 1)
         start = j + 1
      end
      pieces[#pieces + 1] = body:sub(start)
      prefix = run_prefix() .. (thread_name or "0") .. "-"
      -- Defined only for marked bodies: without it wrk builds the request once.
      request = function()
         counter = counter + 1
         return wrk.format(nil, nil, nil, table.concat(pieces, prefix .. counter))
      end
   else
      wrk.body = body
   end
end
