//! The Lua API under hostile arguments: every function a config can reach (the lsyncd globals,
//! the `lsyncd` table, the `default` layers), found at runtime by walking the globals, is
//! called from a running daemon with random and hostile arguments (nil, NaN, infinities,
//! huge and negative integers, NUL bytes, long strings, tables, functions, timestamps at
//! infinity). Every call must end in a value or a Lua error: the daemon never panics, stays
//! up and keeps syncing.

use crate::util::{rsync_path, Daemon, TestDir};

const FUZZ: &str = r#"
sync{ default.rsync, source = 'src', target = 'dst', delay = 0 }

-- Lua's own library is not under test; terminate() ends the run by design and kill()
-- could hit processes outside the test.
local std = {
	assert = true, collectgarbage = true, dofile = true, error = true, getmetatable = true,
	ipairs = true, load = true, loadfile = true, next = true, pairs = true, pcall = true,
	print = true, rawequal = true, rawget = true, rawlen = true, rawset = true, require = true,
	select = true, setmetatable = true, tonumber = true, tostring = true, type = true,
	xpcall = true, warn = true, terminate = true,
}
local skipLsyncd = { terminate = true, kill = true }

local function collect(targets)
	for name, f in pairs(_G) do
		if type(f) == 'function' and not std[name] then
			targets[#targets + 1] = { name, f }
		end
	end
	for name, f in pairs(lsyncd) do
		if type(f) == 'function' and not skipLsyncd[name] then
			targets[#targets + 1] = { 'lsyncd.' .. name, f }
		end
	end
	local function layer(prefix, t, depth)
		for name, f in pairs(t) do
			if type(f) == 'function' then
				targets[#targets + 1] = { prefix .. name, f }
			elseif type(f) == 'table' and depth > 0 and type(name) == 'string' then
				layer(prefix .. name .. '.', f, depth - 1)
			end
		end
	end
	layer('default.', default, 1)
	targets[#targets + 1] = { 'string.starts', string.starts }
	targets[#targets + 1] = { 'string.ends', string.ends }
	targets[#targets + 1] = { 'table.contains', table.contains }
	table.sort(targets, function(a, b) return a[1] < b[1] end)
	return targets
end

local function fuzz()
	local t = now()
	local hostile = {
		true, false, 0, -1, 1, 7, 2^31, -2^31, 2^53, 2^63, math.maxinteger, math.mininteger,
		math.huge, -math.huge, 0/0, 1.5, -0.0, '', '\0', 'x\0y', '/', '/nonexistent/x',
		'..', string.rep('a', 5000), '%s%d', {}, { 1, 2, 3 }, { '\0' }, { {} },
		function() end, function() error('inner') end, t, t + math.huge, t - math.huge,
		t + 0/0, t + 2^53, setmetatable({}, { __index = function() error('meta') end }),
	}
	local targets = collect({})
	math.randomseed(42)
	local calls, errors = 0, 0
	for _, target in ipairs(targets) do
		for _ = 1, 150 do
			local args, n = {}, math.random(0, 4)
			for i = 1, n do
				-- index #hostile + 1 is nil
				args[i] = hostile[math.random(1, #hostile + 1)]
			end
			local ok = pcall(target[2], table.unpack(args, 1, n))
			calls = calls + 1
			if not ok then errors = errors + 1 end
		end
	end
	for fd = 0, 3 do pcall(nonobservefd, fd) end
	log('Normal', 'fuzz done: ', #targets, ' functions, ', calls, ' calls, ', errors, ' errors')
end

alarm(now() + 1, fuzz)
"#;

#[test]
fn every_api_function_survives_hostile_arguments_without_a_panic() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    let cfg = dir.config("fuzz.lua", FUZZ);
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log("fuzz done: ");
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("fuzz done: "))
        .unwrap_or_default()
        .to_string();
    let count = |what: &str| -> usize {
        line.split(", ")
            .find(|p| p.ends_with(what))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("functions") >= 30,
        "too few API functions found: {line}"
    );
    assert!(count("errors") > 0, "no call was refused: {line}");
    assert!(d.try_exit().is_none(), "daemon ended\n{log}");
    dir.write("src/after-fuzz", "still syncing\n");
    d.wait_for("a sync after the fuzzing", || dir.exists("dst/after-fuzz"));
    eprintln!("{line}");
}
