-- A counter, as a Lua script run with `run`.
--
-- Adds `by` (default 1) to the whole number stored under `key` (absent counts as 0) and
-- returns the new value. The script is one transaction on the server: when two runs
-- race, the second one's commit conflicts and the server runs it again, so no increment
-- is ever lost (a get then a set from two shells could lose one).
--
-- Run: kahuna shell -c 'run scripts/counter.lua key=hits'
--      kahuna shell -c 'run scripts/counter.lua key=hits by=5'
-- Arguments arrive typed: by=5 is the integer 5, by="5" the string "5".

local key = kahuna.args.key
if type(key) ~= "string" or key == "" then
  error("counter.lua needs key=KEY")
end
local by = kahuna.args.by or 1
if math.type(by) ~= "integer" then
  error("by must be a whole number, got " .. tostring(by))
end

local current = kahuna.get(key)
local n = 0
if current then
  n = math.tointeger(tonumber(current.value))
  if not n then
    error(key .. " does not hold a whole number: " .. current.value)
  end
end
n = n + by
kahuna.set(key, tostring(n))
return n
