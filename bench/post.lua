-- wrk script: POST one body file with the headers an Anthropic client sends.
-- Usage: wrk -s bench/post.lua URL -- BODY_FILE
-- No response() callback on purpose: defining one makes wrk parse every reply in Lua.
function init(args)
   local f = assert(io.open(args[1], "rb"))
   wrk.method = "POST"
   wrk.body = f:read("*a")
   f:close()
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["anthropic-version"] = "2023-06-01"
   wrk.headers["x-api-key"] = "bench-key"
end
