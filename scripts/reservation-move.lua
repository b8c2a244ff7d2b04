-- Moves a reservation from one owner to another, atomically.
--
-- Layout: reservations/SEAT holds the owner's name; holds/OWNER/SEAT lists each owner's
-- seats (its value names the reservation key). A move changes three keys: the
-- reservation, the old owner's hold and the new owner's hold. The script runs as one
-- transaction, so either all three change or none does, and a concurrent change to any
-- key it read makes the server run it again from the start.
--
-- A seat that is not reserved, or is held by someone else than `from`, is not moved:
-- the result says why (it is not an error, so a runbook goes on).
--
-- Run: kahuna shell -c 'run scripts/reservation-move.lua seat=12A from=alice to=bob'

local seat, from, to = kahuna.args.seat, kahuna.args.from, kahuna.args.to
if not (seat and from and to) then
  error("reservation-move.lua needs seat=SEAT from=OWNER to=OWNER")
end
seat, from, to = tostring(seat), tostring(from), tostring(to)

local key = "reservations/" .. seat
local current = kahuna.get(key)
if not current then
  return { moved = false, seat = seat, reason = "not reserved" }
end
if current.value ~= from then
  return { moved = false, seat = seat, owner = current.value, reason = "held by " .. current.value }
end

kahuna.set(key, to)
kahuna.delete("holds/" .. from .. "/" .. seat)
kahuna.set("holds/" .. to .. "/" .. seat, key)
return { moved = true, seat = seat, from = from, to = to }
