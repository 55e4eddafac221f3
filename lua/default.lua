--[[
lua/default.lua — the `default` layer of lsyncd-rs.

Creates the global table `default`, the root of every sync{} configuration:

  * default._merge       which of its keys every config inherits (SPEC §2.6)
  * default.checkgauge   the keys every config may use (SPEC §2.7)
  * default.prepare      the checkgauge validation (SPEC §2.7)
  * default.action       Layer 2/3 dispatch to on<Etype> handlers (SPEC §7.5)
  * default.init         Layer 2/3 startup: onStartup (SPEC §7.5)
  * default.collect      exit-code judging and its log lines (SPEC §6.6)
  * maxDelays, maxProcesses, statusInterval and the rsync/ssh exit-code tables

User configs read, inherit and call these exactly as with upstream lsyncd 2.3.1, so the
names, argument orders, return values and message texts below are part of the interface.
The runtime loads this file right after the prelude, as chunk "@default.lua"; the rsync,
rsyncssh and direct layers (default-*.lua) are loaded after it and hang off this table.

This file only defines tables and functions. Retry timing for 'again' and termination on
'die' belong to the core (SPEC §6.5).

Copyright (C) the lsyncd-rs authors.
SPDX-License-Identifier: GPL-2.0-or-later
This program is free software; you can redistribute it and/or modify it under the terms of
the GNU General Public License as published by the Free Software Foundation; either
version 2 of the License, or (at your option) any later version.
]]

if rawget(_G, 'default') ~= nil then
	error('default.lua: the default table exists already')
end

default = {}

-- Keys that sync{} copies from `default` into every config; nothing else of this table
-- is inherited (so the exit-code tables and statusInterval stay out of configs).
default._merge = {
	action = true,
	checkgauge = true,
	collect = true,
	delay = true,
	init = true,
	maxDelays = true,
	maxProcesses = true,
	prepare = true,
}

-- Every key a config may carry. Layers add keys (true) or forbid inherited ones (false);
-- a table value means "must be a table whose own keys are checked against this one".
default.checkgauge = {
	action = true,
	checkgauge = true,
	collect = true,
	crontab = true,
	delay = true,
	exitcodes = true,
	full = true,
	init = true,
	maxDelays = true,
	maxProcesses = true,
	monitor = true,
	onAttrib = true,
	onCreate = true,
	onDelete = true,
	onFull = true,
	onModify = true,
	onMove = true,
	onStartup = true,
	prepare = true,
	source = true,
	target = true,
	tunnel = true,
}

-- Layer 2/3 dispatch: hand the next due event (and, for a move, its destination) to the
-- config's on<Etype> function. An event the handler did not spawn for is dropped.
function default.action(inlet)
	local event, event2 = inlet.getEvent()
	if event == nil then
		return
	end

	local handler = inlet.getConfig()['on' .. event.etype]
	if type(handler) == 'function' then
		handler(event, event2)
	end

	if event.status == 'wait' then
		inlet.discardEvent(event)
	end
end

-- Layer 2/3 startup: run onStartup with the Init event. Until a process spawned here has
-- been collected, the Init delay blocks every other event of the sync.
function default.init(event)
	local config = event.config

	if type(config.onStartup) == 'function' then
		config.onStartup(event)
	end

	if event.status == 'wait' then
		event.inlet.discardEvent(event)
	end
end

-- Judging of the startup (Init) process. Returns the collect result; the two fatal cases
-- end the process here, as upstream does.
local function collectStartup(agent, exitcode, rc)
	if rc == 'ok' then
		-- Only the log line: with onepass the core exits once *every* sync has finished
		-- its first pass (SPEC §15 item 23), not on the first Init of several.
		log('Normal', 'Startup of ', agent.source, ' -> ', agent.target, ' finished.')
		return 'ok'
	end

	if rc == 'again' then
		-- A partial transfer (rsync 23: a full or unwritable target, an unreadable file) is
		-- retried with backoff even without insist: the daemon runs, the change is not lost.
		if settings('insist') or exitcode == 23 then
			log(
				'Normal',
				'Retrying startup of ', agent.source, ' -> ', agent.target, ': ', exitcode
			)
			return 'again'
		end
		log(
			'Error',
			'Temporary or permanent failure on startup of ',
			agent.source, ' -> ', agent.target,
			'. Terminating since "insist" is not set.'
		)
		terminate(-1)
		return 'die'
	end

	if rc == 'die' then
		log(
			'Error', 'Failure on startup of ', agent.source, ' -> ', agent.target,
			': exit code ', exitcode, '.'
		)
		terminate(-1)
		return 'die'
	end

	log(
		'Error',
		'Unknown exitcode "', exitcode, '" on startup of ',
		agent.source, ' -> ', agent.target, '.'
	)
	return 'die'
end

-- Maps a finished process' exit code to 'ok' / 'again' / 'die' through config.exitcodes;
-- without such a table only 0 is success. Logs the outcome (SPEC §6.6).
function default.collect(agent, exitcode)
	local config = agent.config

	local rc
	if config.exitcodes then
		rc = config.exitcodes[exitcode]
	elseif exitcode == 0 then
		rc = 'ok'
	else
		rc = 'die'
	end

	if not agent.isList and agent.etype == 'Init' then
		return collectStartup(agent, exitcode, rc)
	end

	if agent.isList then
		if rc == 'ok' then
			log('Normal', 'Finished a list after exitcode: ', exitcode)
		elseif rc == 'again' then
			log('Normal', 'Retrying a list after exitcode = ', exitcode)
		elseif rc == 'die' then
			log('Error', 'Failure with a list with exitcode = ', exitcode)
		else
			log('Error', 'Unknown exitcode "', exitcode, '" with a list')
			rc = 'die'
		end
		return rc
	end

	if rc == 'ok' then
		log('Normal', 'Finished ', agent.etype, ' on ', agent.sourcePath, ' = ', exitcode)
	elseif rc == 'again' then
		log('Normal', 'Retrying ', agent.etype, ' on ', agent.sourcePath, ' = ', exitcode)
	elseif rc == 'die' then
		log('Error', 'Failure with ', agent.etype, ' on ', agent.sourcePath, ' = ', exitcode)
	else
		-- Category Normal (not Error) for this one case is upstream's choice; kept.
		log(
			'Normal',
			'Unknown exitcode "', exitcode, '" with ', agent.etype,
			' on ', agent.sourcePath, ' = ', exitcode
		)
		rc = 'die'
	end
	return rc
end

-- Keys of `t` in a fixed order (strings and numbers by value, anything else by its
-- tostring), so that of several unknown keys always the same one is reported.
local function sortedKeys(t)
	local keys = {}
	for key in pairs(t) do
		keys[#keys + 1] = key
	end
	table.sort(keys, function(a, b)
		local ta, tb = type(a), type(b)
		if ta ~= tb then
			return ta < tb
		end
		if ta == 'string' or ta == 'number' then
			return a < b
		end
		return tostring(a) < tostring(b)
	end)
	return keys
end

-- Raises the gauge error for the first key of `config` the gauge does not allow.
-- `level` is the error() level that designates the sync{} call as seen from this frame;
-- every recursion adds one frame, hence level + 1. (No tail calls here: they would drop
-- frames and shift the position.)
local function checkGauge(config, gauge, prefix, level)
	for _, key in ipairs(sortedKeys(config)) do
		local allowed = gauge[key]
		local name = prefix .. tostring(key)

		if not allowed then
			error(
				'Parameter "' .. name .. '" unknown. ( if this is not a typo add it to checkgauge )',
				level
			)
		end

		if type(allowed) == 'table' then
			if type(config[key]) ~= 'table' then
				error('Parameter "' .. name .. '" must be a table.', level)
			end
			checkGauge(config[key], allowed, name .. '.', level + 1)
		end
	end
end

-- Validates `config` against config.checkgauge (SPEC §2.7). `level` is the error level of
-- the sync{} call relative to this function (the core passes 4).
function default.prepare(config, level)
	local gauge = config.checkgauge
	if type(gauge) ~= 'table' then
		return
	end
	checkGauge(config, gauge, '', (level or 2) + 1)
end

-- The delay queue of a sync ignores `delay` once it holds this many delays.
default.maxDelays = 1000

-- Concurrent processes per sync.
default.maxProcesses = 1

-- Minimum seconds between two status file writes (used when settings lack it).
default.statusInterval = 10

-- rsync exit codes → collect result (SPEC §9.8). `_merge = false`: a config that brings
-- its own table replaces this one instead of merging; `_verbatim`: integer keys are copied.
default.rsyncExitCodes = {
	_merge = false,
	_verbatim = true,

	[0] = 'ok',
	[1] = 'die',       -- syntax or usage error
	[2] = 'die',       -- protocol incompatibility
	[3] = 'again',     -- errors selecting input/output files, dirs
	[4] = 'die',       -- requested action not supported
	[5] = 'again',     -- error starting client-server protocol
	[6] = 'again',     -- daemon unable to append to log-file
	[10] = 'again',    -- error in socket I/O
	[11] = 'again',    -- error in file I/O
	[12] = 'again',    -- error in rsync protocol data stream
	[14] = 'again',    -- error in IPC code
	[20] = 'again',    -- received SIGUSR1 or SIGINT
	[21] = 'again',    -- some error returned by waitpid()
	[22] = 'again',    -- error allocating core memory buffers
	-- Partial transfer: some files failed (a full or read-only target, say); retried with
	-- backoff until it succeeds, so no change is dropped.
	[23] = 'again',
	-- Vanished source files: their deletion is queued as an event of its own.
	[24] = 'ok',
	[25] = 'die',      -- --max-delete limit stopped deletions
	[30] = 'again',    -- timeout in data send/receive
	[35] = 'again',    -- timeout waiting for daemon connection
	[255] = 'again',   -- remote shell failed (also: exec failure of the child)
}

-- ssh exit codes → collect result (SPEC §10.4); 255 is ssh's own connection failure.
default.sshExitCodes = {
	_merge = false,
	_verbatim = true,

	[0] = 'ok',
	[255] = 'again',
}
