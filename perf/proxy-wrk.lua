-- SPDX-License-Identifier: MIT
-- wrk script for perf/proxy-load. Every request carries a deadline
-- (x-timeout-ms) and the upstream answers at once; with PROXY_MIX=1, one
-- request in 10 outlives a 20 ms deadline instead (a 504 from rctx).
local mix = os.getenv("PROXY_MIX") == "1"
local n = 0
request = function()
	n = n + 1
	if mix and n % 10 == 0 then
		return wrk.format("GET", "/sleep/200", { ["x-timeout-ms"] = "20" })
	end
	return wrk.format("GET", "/sleep/0", { ["x-timeout-ms"] = "5000" })
end
