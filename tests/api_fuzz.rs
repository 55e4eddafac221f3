//! The Lua API under hostile arguments: every function a config can reach (the lsyncd globals,
//! the `lsyncd` table, the `default` layers), found at runtime by walking the globals, is
//! called from a running daemon with random and hostile arguments (nil, NaN, infinities,
//! huge and negative integers, NUL bytes, long strings, tables, functions, timestamps at
//! infinity). Every call must end in a value or a Lua error: the daemon never panics, stays
//! up and keeps syncing.
//!
//! A second test holds the table of every API function: those taking numbers get each
//! hostile number (and wrong types) in each numeric position and must fail with an error
//! naming the function; a registered function missing from the table fails the test.

use crate::util::{fixture, make_fifo, open_for_writing, rsync_path, Daemon, TestDir};

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

/// Runs `config` (whose alarm logs one line containing `marker`) and returns that line,
/// after checking the daemon did not panic.
fn run_and_report(config: &str, marker: &str) -> (TestDir, Daemon, String) {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    let cfg = dir.config("fuzz.lua", config);
    let mut d = Daemon::config(&dir, &cfg, &[] as &[&str]);
    d.wait_log(marker);
    let log = d.log();
    assert!(!log.contains("panicked"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_default()
        .to_string();
    (dir, d, line)
}

#[test]
fn every_api_function_survives_hostile_arguments_without_a_panic() {
    let (dir, mut d, line) = run_and_report(FUZZ, "fuzz done: ");
    let log = d.log();
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

const NUMERIC: &str = r#"
sync{ default.rsync, source = 'src', target = 'dst', delay = 0 }

-- Every API function a config reaches. Those taking numbers list the positions of their
-- numeric arguments and the name their errors must carry; `invalid` feeds only values no
-- call can take (terminate with a valid code ends the run). The rest take no number a
-- config chooses (a layer's collect gets its exit code from the core).
local NUMERIC = {
	alarm = { name = 'alarm', 1 },
	observefd = { name = 'observefd', 1 },
	nonobservefd = { name = 'nonobservefd', 1 },
	terminate = { name = 'terminate', invalid = true, 1 },
	['lsyncd.terminate'] = { name = 'terminate', invalid = true, 1 },
	['lsyncd.observe_fd'] = { name = 'observefd', 1 },
	['lsyncd.nonobserve_fd'] = { name = 'nonobservefd', 1 },
	['lsyncd.kill'] = { name = 'kill', invalid = true, 1, 2 },
	['lsyncd.jiffies_from_seconds'] = { name = 'jiffies_from_seconds', 1 },
}
local NO_NUMBER = {
	'default._rsyncCommon.batchesFull', 'default._rsyncCommon.collectStartup',
	'default._rsyncCommon.runList', 'default._rsyncCommon.substituteTarget',
	'default._validate.settings', 'default._validate.sync', 'default._validate.tunnel',
	'default.action', 'default.collect', 'default.init', 'default.prepare',
	'default.direct.action', 'default.direct.collect', 'default.direct.full',
	'default.direct.init', 'default.direct.prepare',
	'default.rsync.action', 'default.rsync.full', 'default.rsync.init', 'default.rsync.prepare',
	'default.rsyncssh.action', 'default.rsyncssh.collect', 'default.rsyncssh.prepare',
	'dump', 'log', 'now', 'readdir', 'settings', 'spawn', 'spawnShell', 'substitudeCommands',
	'sync', 'tunnel',
	'lsyncd._getEventsExcept', 'lsyncd._includeList', 'lsyncd.dump', 'lsyncd.exec',
	'lsyncd.file_type', 'lsyncd.get_file_size', 'lsyncd.get_free_port',
	'lsyncd.get_process_info', 'lsyncd.is_symlink', 'lsyncd.log', 'lsyncd.now',
	'lsyncd.readdir', 'lsyncd.realdir', 'lsyncd.splitQuotedString',
	-- upstream's runner globals: tunnel objects' methods get their times and pids from the core
	'Queue.new', 'Tunnel.counts', 'Tunnel.exited', 'Tunnel.spawnOne', 'Tunnel.substitution',
	'Tunnel.tick',
}

local std = {
	assert = true, collectgarbage = true, dofile = true, error = true, getmetatable = true,
	ipairs = true, load = true, loadfile = true, next = true, pairs = true, pcall = true,
	print = true, rawequal = true, rawget = true, rawlen = true, rawset = true, require = true,
	select = true, setmetatable = true, tonumber = true, tostring = true, type = true,
	xpcall = true, warn = true,
}

-- name -> function, as the fuzz test finds them.
local function registered()
	local found = {}
	for name, f in pairs(_G) do
		if type(f) == 'function' and not std[name] then found[name] = f end
	end
	for name, f in pairs(lsyncd) do
		if type(f) == 'function' then found['lsyncd.' .. name] = f end
	end
	for _, global in ipairs({ 'Queue', 'Tunnel' }) do
		for name, f in pairs(_G[global]) do
			if type(f) == 'function' then found[global .. '.' .. name] = f end
		end
	end
	for name, v in pairs(default) do
		if type(v) == 'function' then
			found['default.' .. name] = v
		elseif type(v) == 'table' and type(name) == 'string' then
			for n2, f in pairs(v) do
				if type(f) == 'function' then found['default.' .. name .. '.' .. n2] = f end
			end
		end
	end
	return found
end

local function audit()
	local listed = {}
	for name in pairs(NUMERIC) do listed[name] = true end
	for _, name in ipairs(NO_NUMBER) do listed[name] = true end
	local found = registered()
	local unlisted = {}
	for name in pairs(found) do
		if not listed[name] then unlisted[#unlisted + 1] = name end
	end
	table.sort(unlisted)
	local invalid = {
		0/0, math.huge, -math.huge, 2^63, -2^64, 1e308, 1.5, -0.5, '1.5', 'x', {}, true,
	}
	local any = { -1, 0, math.maxinteger, math.mininteger, 2^53, -2^31 }
	for _, v in ipairs(invalid) do any[#any + 1] = v end
	local child = lsyncd.exec('/bin/sleep', '60')
	local calls, unnamed = 0, {}
	local names = {}
	for name in pairs(NUMERIC) do names[#names + 1] = name end
	table.sort(names)
	for _, name in ipairs(names) do
		local spec, f = NUMERIC[name], found[name]
		for _, pos in ipairs(spec) do
			for _, v in ipairs(spec.invalid and invalid or any) do
				-- the other arguments valid: kill's pid a child of ours, signal 0
				local args = { [1] = child, [2] = 0 }
				if name ~= 'lsyncd.kill' then args = { now() + 3600, function() end } end
				if name:find('observe') then args = { 0, function() end } end
				args[pos] = v
				local ok, err = pcall(f, args[1], args[2])
				calls = calls + 1
				if not ok and not tostring(err):find(spec.name, 1, true) then
					unnamed[#unnamed + 1] = name .. '(' .. tostring(v) .. '): ' .. tostring(err)
				end
			end
		end
	end
	for fd = 0, 3 do pcall(nonobservefd, fd) end
	lsyncd.kill(child, 9)
	log('Normal', 'numeric audit: ', calls, ' calls; unlisted: [', table.concat(unlisted, ', '),
		']; unnamed: [', table.concat(unnamed, ' | '), ']')
end

alarm(now() + 1, audit)
"#;

/// The table above covers every registered API function (a new one fails here until it is
/// listed), and every numeric argument out of range or of the wrong kind (NaN, infinities,
/// huge, negative, fractions, strings, tables) is an error naming the function.
#[test]
fn every_api_function_is_listed_and_bad_numbers_are_errors_naming_it() {
    let (dir, mut d, line) = run_and_report(NUMERIC, "numeric audit: ");
    let log = d.log();
    assert!(
        line.contains("unlisted: []"),
        "API functions missing from the table: {line}"
    );
    assert!(
        line.contains("unnamed: []"),
        "errors not naming their function: {line}"
    );
    let calls: usize = line
        .split("numeric audit: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(calls >= 100, "{line}");
    assert!(d.try_exit().is_none(), "daemon ended\n{log}");
    dir.write("src/after-audit", "still syncing\n");
    d.wait_for("a sync after the audit", || dir.exists("dst/after-audit"));
    eprintln!("{line}");
}

/// The public API called from inside every kind of callback Rust runs (init, action, the
/// Lua test of `inlet.getEvents`, which runs while a core function is under way, collect, an
/// alarm and an observefd callback): each call must succeed, the daemon keeps syncing.
const REENTER: &str = r#"
local root = os.getenv('LAYER_ROOT')
local fifo, fifoFd = loadfile(os.getenv('FIFO_FD_LUA'))(root)
local pid = io.open('/proc/self/stat'):read('n')

local lastInlet
local onFifo

local function everything(where, inlet)
	inlet = inlet or lastInlet
	local failures = {}
	local function try(name, f, ...)
		local ok, err = pcall(f, ...)
		if not ok then failures[#failures + 1] = name .. ': ' .. tostring(err) end
	end
	local t = now()
	try('log', log, 'Normal', 'probe from ', where)
	try('alarm', alarm, t + 3600, function() end)
	try('readdir', readdir, root)
	try('observefd', observefd, fifoFd, onFifo)
	try('lsyncd.realdir', lsyncd.realdir, root)
	try('lsyncd.get_file_size', lsyncd.get_file_size, root .. '/fifo')
	try('lsyncd.is_symlink', lsyncd.is_symlink, root)
	try('lsyncd.get_process_info', lsyncd.get_process_info)
	try('lsyncd.kill', lsyncd.kill, pid, 0)
	try('lsyncd.get_free_port', lsyncd.get_free_port)
	try('lsyncd.splitQuotedString', lsyncd.splitQuotedString, 'a "b c"')
	try('lsyncd.exec', lsyncd.exec, '/bin/true')
	if inlet then
		try('inlet.getEvents', inlet.getEvents, function(ev)
			local _ = ev.etype .. ev.path .. ev.sourcePath
			inlet.getExcludes()
			inlet.hasFilters()
			inlet.getSync().processes.size()
			lsyncd.get_process_info()
			local _ = now() + 1
			alarm(now() + 3600, function() end)
			return true
		end)
		try('inlet.addExclude', inlet.addExclude, '*.never')
		try('inlet.rmExclude', inlet.rmExclude, '*.never')
		try('inlet.getExcludes', inlet.getExcludes)
		try('inlet.getFilters', inlet.getFilters)
		try('inlet.hasFilters', inlet.hasFilters)
		try('inlet.getEvent', inlet.getEvent)
		try('inlet.getConfig', inlet.getConfig)
		try('inlet.getSync', function() return inlet.getSync().processes.size() end)
		try('_getEventsExcept', lsyncd._getEventsExcept, inlet, { 'Blanket' })
	end
	if #failures > 0 then
		log('Error', 'boundary failed in ', where, ': ', table.concat(failures, '; '))
	else
		log('Normal', 'boundary ok in ', where)
	end
end

onFifo = function(fd)
	fifo:read('l')
	everything('observefd')
end

sync{
	default.rsync,
	source = root .. '/src',
	target = root .. '/dst',
	delay = 0,
	init = function(event)
		lastInlet = event.inlet
		everything('init', event.inlet)
		alarm(now() + 0.2, function() everything('alarm') end)
		default.rsync.init(event)
	end,
	action = function(inlet)
		lastInlet = inlet
		everything('action', inlet)
		default.rsync.action(inlet)
	end,
	collect = function(agent, exitcode)
		everything('collect')
		return default.collect(agent, exitcode)
	end,
}
"#;

#[test]
fn the_api_runs_from_inside_every_kind_of_callback() {
    rsync_path();
    let dir = TestDir::new();
    dir.mkdir("src");
    dir.mkdir("dst");
    let fifo = make_fifo(&dir);
    let cfg = dir.config("reenter.lua", REENTER);
    let mut d = Daemon::start_with(&dir, &[cfg], |cmd| {
        cmd.env("LAYER_ROOT", dir.root());
        cmd.env("FIFO_FD_LUA", fixture("fifo_fd.lua"));
    });
    d.wait_log("boundary ok in init");
    d.wait_log("boundary ok in alarm");
    dir.write("src/one", "1\n");
    d.wait_for("the file synced", || dir.exists("dst/one"));
    d.wait_log("boundary ok in action");
    d.wait_log("boundary ok in collect");
    let mut w = open_for_writing(&fifo);
    std::io::Write::write_all(&mut w, b"ping\n").expect("write");
    d.wait_log("boundary ok in observefd");
    let log = d.log();
    assert!(!log.contains("boundary failed"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(d.try_exit().is_none(), "daemon ended\n{log}");
}
