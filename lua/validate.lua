--[[
lua/validate.lua — type and range checks of every documented settings{}, sync{} and
tunnel{} key.

Publishes `default._validate` with three functions the prelude calls:

  * settings(key, value)  -> nil, or a message naming the key and what was expected
  * sync(config)          -> nil, or a message for the first bad key (sorted order)
  * tunnel(options)       -> nil, or a message

A wrong value is reported while the config loads (and by -t), never ignored and never left
to fail later as an internal Lua error. Any string that ends up in an argv, a path or an
exclude pattern must not hold a NUL byte: exec(2) and the file system cannot carry one.
Keys a config adds through its own checkgauge are not known here and are not checked.

Owns only the schema below; it must not change a config, log or touch the core.
Loaded by the runtime after default.lua, as chunk "@validate.lua".

Copyright (C) the lsyncd-rs authors.
SPDX-License-Identifier: GPL-2.0-or-later
]]

if type(rawget(_G, 'default')) ~= 'table' then
	error('validate.lua: default.lua must be loaded first')
end

local type, pairs, ipairs, tostring, math_type = type, pairs, ipairs, tostring, math.type

-- How a bad value is shown: its type and, for scalars, the value.
local function shown(v)
	local t = type(v)
	if t == 'string' then
		return 'string "' .. v:gsub('%z', '\\0') .. '"'
	elseif t == 'number' or t == 'boolean' then
		return t .. ' ' .. tostring(v)
	end
	return t
end

-- Checkers: return nil when `v` is fine, else what was expected.
local function str(v)
	if type(v) ~= 'string' then
		return 'a string'
	end
	if v:find('\0', 1, true) then
		return 'a string without NUL bytes'
	end
end

local function boolean(v)
	if type(v) ~= 'boolean' then
		return 'a boolean (true or false)'
	end
end

local function func(v)
	if type(v) ~= 'function' then
		return 'a function'
	end
end

local function number(min, integer, max)
	local what = (integer and 'an integer' or 'a number') .. ' >= ' .. min
	if max then
		what = what .. ' and <= ' .. max
	end
	return function(v)
		if type(v) ~= 'number' or v ~= v or v == math.huge or v < min
			or (max and v > max) or (integer and math_type(v) ~= 'integer' and v ~= math.floor(v))
		then
			return what
		end
	end
end

-- A number of seconds >= 0, math.huge meaning "for ever".
local function secondsOrForever(v)
	if type(v) ~= 'number' or v ~= v or v < 0 then
		return 'a number of seconds >= 0 (math.huge: for ever)'
	end
end

local function oneOf(...)
	local allowed = { ... }
	local names = {}
	for i, a in ipairs(allowed) do
		names[i] = type(a) == 'string' and ('"' .. a .. '"') or tostring(a)
	end
	local what = 'one of ' .. table.concat(names, ', ')
	return function(v)
		for _, a in ipairs(allowed) do
			if v == a then
				return nil
			end
		end
		return what
	end
end

local function either(a, b)
	return function(v, key)
		local ea = a(v, key)
		if ea == nil then
			return nil
		end
		local eb, where, bad = b(v, key)
		if eb == nil then
			return nil
		end
		if where then
			return eb, where, bad
		end
		return ea .. ' or ' .. eb
	end
end

-- A list of strings (or numbers where `numbers`): every entry checked, its index named.
local function listOf(check, what)
	return function(v, key)
		if type(v) ~= 'table' then
			return 'a table of ' .. what
		end
		for i, x in ipairs(v) do
			local e = check(x)
			if e then
				return e, key .. '[' .. i .. ']', x
			end
		end
	end
end

local strOrNumber = either(str, number(-math.huge))
local strings = listOf(str, 'strings without NUL bytes')
local argList = listOf(strOrNumber, 'strings or numbers')

-- exitcodes tables: integer codes -> 'ok' | 'again' | 'die'.
local function exitTable(v, key)
	if v == false then
		return nil -- a layer's "no table": every code but 0 is fatal
	end
	if type(v) ~= 'table' then
		return 'a table of exit code -> "ok", "again" or "die"'
	end
	for code, rc in pairs(v) do
		if code ~= '_merge' and code ~= '_verbatim' then
			if math_type(code) ~= 'integer' or (rc ~= 'ok' and rc ~= 'again' and rc ~= 'die') then
				return 'a table of exit code -> "ok", "again" or "die"',
					key .. '[' .. tostring(code) .. ']', rc
			end
		end
	end
end

local settingsSchema = {
	logfile = str,
	pidfile = str,
	nodaemon = boolean,
	onepass = boolean,
	statusFile = str,
	statusInterval = number(0),
	logfacility = str,
	logident = str,
	insist = boolean,
	inotifyMode = oneOf('Modify', 'CloseWrite', 'CloseWrite or Modify'),
	maxProcesses = number(1, true),
	maxDelays = number(1, true),
	maxBackoff = number(1, false, 31536000),
	maxPending = number(1, true),
	stopGrace = secondsOrForever,
}

-- rsync{}: keys taking a value (string or number) rather than a flag.
local rsyncValued = {
	backup_dir = str, chmod = str, chown = str, groupmap = str, usermap = str,
	password_file = str, rsh = str, rsync_path = str, suffix = str, temp_dir = str,
	bwlimit = either(str, number(0)), timeout = number(0, true, 2147483647),
	binary = str, _extra = argList,
}

local sshSchema = {
	binary = str,
	identityFile = str,
	port = number(1, true, 65535),
	_extra = argList,
	options = function(v, key)
		if type(v) ~= 'table' then
			return 'a table of option name -> value'
		end
		for k, x in pairs(v) do
			if str(k) or strOrNumber(x) then
				return 'a table of option name -> string', key .. '.' .. tostring(k), x
			end
		end
	end,
}

-- A table of sub-keys (rsync{}, ssh{}); `checkOf(k)` is the checker of sub-key k, or nil.
local function subTable(checkOf)
	return function(v, key)
		if type(v) ~= 'table' then
			return 'a table'
		end
		for k, x in pairs(v) do
			local c = type(k) == 'string' and checkOf(k)
			if c then
				local what, where, bad = c(x, key .. '.' .. k)
				if what then
					if where then
						return what, where, bad
					end
					return what, key .. '.' .. k, x
				end
			end
		end
	end
end

-- on<Event>: a function, a Layer 3 command string, or false; onMove = true is how a layer
-- says that it handles moves itself.
local function handler(v, key)
	if v == false or (v == true and key == 'onMove') then
		return nil
	end
	if type(v) == 'function' then
		return nil
	end
	local e = str(v)
	if e then
		return 'a function or a string'
	end
end

local syncSchema = {
	source = str,
	target = str,
	host = str,
	targetdir = str,
	name = either(str, number(-math.huge)),
	delay = number(0),
	maxDelays = number(1, true),
	maxProcesses = number(1, true),
	batchSizeLimit = number(0),
	delete = oneOf(true, false, 'startup', 'running'),
	exclude = either(str, strings),
	excludeFrom = str,
	filter = either(str, strings),
	filterFrom = str,
	crontab = strings,
	monitor = str,
	action = func,
	collect = func,
	prepare = func,
	full = func,
	init = function(v)
		if v ~= false and type(v) ~= 'function' then
			return 'a function or false'
		end
	end,
	onAttrib = handler,
	onCreate = handler,
	onDelete = handler,
	onModify = handler,
	onMove = handler,
	onStartup = handler,
	onFull = handler,
	checkgauge = function(v)
		if type(v) ~= 'table' then
			return 'a table'
		end
	end,
	exitcodes = exitTable,
	rsyncExitCodes = exitTable,
	sshExitCodes = exitTable,
	tunnel = function(v)
		if type(v) ~= 'table' or getmetatable(v) ~= Tunnel then
			return 'a tunnel created by tunnel{}'
		end
	end,
	rsync = subTable(function(k)
		if k == '_computed' or k == '_merge' or k == '_verbatim' then
			return nil
		end
		return rsyncValued[k] or boolean
	end),
	ssh = subTable(function(k)
		return sshSchema[k]
	end),
}

local tunnelSchema = {
	command = either(str, argList),
	mode = oneOf('command', 'pool'),
	parallel = number(1, true, 1000),
	distribution = oneOf('rr'),
	retryDelay = number(0),
	readyDelay = number(0),
	localhost = str,
	checkExitCodes = listOf(number(0, true), 'integers'),
	checkMaxFailed = number(1, true),
	name = str,
}

local function sortedKeys(t)
	local keys = {}
	for k in pairs(t) do
		if type(k) == 'string' then
			keys[#keys + 1] = k
		end
	end
	table.sort(keys)
	return keys
end

-- Keys with sub-keys (rsync{}, ssh{}) are checked only where the config's gauge still says
-- they are tables: a layer of a config's own may reuse the name (upstream's post-command
-- example sets `ssh` to a command).
local tableKeys = { rsync = true, ssh = true }

-- The first bad key of `t` under `schema`, as a message; `label` names the table.
local function check(t, schema, label)
	local gauge = type(t.checkgauge) == 'table' and t.checkgauge or nil
	for _, k in ipairs(sortedKeys(t)) do
		local c = schema[k]
		if c and tableKeys[k] and gauge and type(gauge[k]) ~= 'table' then
			c = nil
		end
		if c then
			local what, where, bad = c(t[k], k)
			if what then
				if where == nil then
					bad = t[k]
				end
				return label .. ': "' .. (where or k) .. '" must be ' .. what
					.. ' (got ' .. shown(bad) .. ')'
			end
		end
	end
end

default._validate = {
	settings = function(key, value)
		local c = settingsSchema[key]
		if c == nil then
			return nil
		end
		local what = c(value, key)
		if what then
			return 'settings: "' .. key .. '" must be ' .. what .. ' (got ' .. shown(value) .. ')'
		end
	end,
	sync = function(config)
		return check(config, syncSchema, 'sync')
	end,
	tunnel = function(options)
		return check(options, tunnelSchema, 'tunnel')
	end,
}
