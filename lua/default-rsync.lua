--[[
lua/default-rsync.lua — the `default.rsync` layer of lsyncd-rs ("classic" lsyncd).

A Layer-1 configuration like any a user could write: it mirrors the source to `target`
with rsync. Startup (Init) and Full events run one recursive rsync (SPEC §9.4); in running
mode all queued changes go to one rsync as an anchored include list on stdin (SPEC §9.5),
or, with `batchSizeLimit`, small changes in one batch and large files one per process
(SPEC §9.7). `prepare` validates the config and precomputes the rsync options (§9.2-9.3).

Also publishes `default._rsyncCommon`, the pieces default-rsyncssh.lua reuses (include
list building, the running-mode spawn, tunnel substitution). It is a private helper table,
not upstream API; it lives on `default` (whose keys configs inherit only through
default._merge) so that it never leaks into a config and trips the checkgauge.

Loaded by the runtime after default.lua, as chunk "@default-rsync.lua".

Copyright (C) the lsyncd-rs authors.
SPDX-License-Identifier: GPL-2.0-or-later
This program is free software; you can redistribute it and/or modify it under the terms of
the GNU General Public License as published by the Free Software Foundation; either
version 2 of the License, or (at your option) any later version.
]]

if type(rawget(_G, 'default')) ~= 'table' then
	error('default-rsync.lua: default.lua must be loaded first')
end
if default.rsync ~= nil then
	error('default-rsync.lua: default.rsync exists already')
end

local rsync = {}
local common = {}

-------------------------------------------------------------------------------------------
-- Option table (SPEC §9.3)
-------------------------------------------------------------------------------------------

-- Short flags in the fixed order in which they are combined into one `-...` word
-- (upstream's order is random, SPEC §15 item 12). `D` (devices + specials) comes last.
local SHORT_FLAGS = {
	{ 'acls', 'A' },
	{ 'backup', 'b' },
	{ 'checksum', 'c' },
	{ 'compress', 'z' },
	{ 'copy_dirlinks', 'k' },
	{ 'copy_links', 'L' },
	{ 'cvs_exclude', 'C' },
	{ 'dry_run', 'n' },
	{ 'executability', 'E' },
	{ 'group', 'g' },
	{ 'hard_links', 'H' },
	{ 'ignore_times', 'I' },
	{ 'ipv4', '4' },
	{ 'ipv6', '6' },
	{ 'keep_dirlinks', 'K' },
	{ 'links', 'l' },
	{ 'one_file_system', 'x' },
	{ 'omit_dir_times', 'O' },
	{ 'omit_link_times', 'J' },
	{ 'owner', 'o' },
	{ 'perms', 'p' },
	{ 'protect_args', 's' },
	{ 'prune_empty_dirs', 'm' },
	{ 'quiet', 'q' },
	{ 'sparse', 'S' },
	{ 'times', 't' },
	{ 'update', 'u' },
	{ 'verbose', 'v' },
	{ 'whole_file', 'W' },
	{ 'xattrs', 'X' },
}

-- Long options in their argument order. A spelling ending in '=' takes the key's value.
local LONG_OPTIONS = {
	{ 'append', '--append' },
	{ 'append_verify', '--append-verify' },
	{ 'backup_dir', '--backup-dir=' },
	{ 'bwlimit', '--bwlimit=' },
	{ 'chmod', '--chmod=' },
	{ 'chown', '--chown=' },
	{ 'copy_unsafe_links', '--copy-unsafe-links' },
	{ 'groupmap', '--groupmap=' },
	{ 'existing', '--existing' },
	{ 'inplace', '--inplace' },
	{ 'password_file', '--password-file=' },
	{ 'rsh', '--rsh=' },
	{ 'rsync_path', '--rsync-path=' },
	{ 'suffix', '--suffix=' },
	{ 'temp_dir', '--temp-dir=' },
	{ 'timeout', '--timeout=' },
	{ 'usermap', '--usermap=' },
}

-- What `archive = true` stands for; each applies only where the user left the key nil.
-- (`-a` itself is never passed.)
local ARCHIVE_IMPLIES = {
	{ 'recursive', true },
	{ 'links', true },
	{ 'perms', true },
	{ 'times', true },
	{ 'group', true },
	{ 'owner', true },
	{ 'devices', true },
	{ 'specials', true },
	{ 'hard_links', false },
	{ 'acls', false },
	{ 'xattrs', false },
}

rsync.checkgauge = {
	-- Layer-2/3 handlers make no sense with a Layer-1 action: forbidden.
	onCreate = false,
	onModify = false,
	onDelete = false,
	onStartup = false,
	onMove = false,

	batchSizeLimit = true,
	delete = true,
	exclude = true,
	excludeFrom = true,
	filter = true,
	filterFrom = true,
	target = true,

	rsync = {
		_extra = true,
		acls = true,
		append = true,
		append_verify = true,
		archive = true,
		backup = true,
		backup_dir = true,
		binary = true,
		bwlimit = true,
		checksum = true,
		chmod = true,
		chown = true,
		compress = true,
		copy_dirlinks = true,
		copy_links = true,
		copy_unsafe_links = true,
		cvs_exclude = true,
		delete_excluded = true,
		dry_run = true,
		executability = true,
		existing = true,
		group = true,
		groupmap = true,
		hard_links = true,
		ignore_times = true,
		inplace = true,
		ipv4 = true,
		ipv6 = true,
		keep_dirlinks = true,
		links = true,
		one_file_system = true,
		omit_dir_times = true,
		omit_link_times = true,
		owner = true,
		password_file = true,
		perms = true,
		protect_args = true,
		prune_empty_dirs = true,
		quiet = true,
		rsh = true,
		rsync_path = true,
		sparse = true,
		suffix = true,
		temp_dir = true,
		timeout = true,
		times = true,
		update = true,
		usermap = true,
		verbose = true,
		whole_file = true,
		xattrs = true,
	},
}

-- Builds rsync._computed from the (archive-expanded) rsync table, in the order of
-- SPEC §9.3: short-flag word, _extra, --devices/--specials, long options.
-- `level` designates the sync{} call as seen from this function.
local function computeArguments(crsync, level)
	local computed = {}

	local letters = {}
	for _, flag in ipairs(SHORT_FLAGS) do
		if crsync[flag[1]] then
			letters[#letters + 1] = flag[2]
		end
	end
	local devicesAndSpecials = crsync.devices and crsync.specials
	if devicesAndSpecials then
		letters[#letters + 1] = 'D'
	end
	if #letters > 0 then
		computed[#computed + 1] = '-' .. table.concat(letters)
	end

	if crsync._extra then
		for _, arg in ipairs(crsync._extra) do
			computed[#computed + 1] = arg
		end
	end

	if not devicesAndSpecials then
		if crsync.devices then
			computed[#computed + 1] = '--devices'
		end
		if crsync.specials then
			computed[#computed + 1] = '--specials'
		end
	end

	for _, option in ipairs(LONG_OPTIONS) do
		local key, spelling = option[1], option[2]
		local value = crsync[key]
		if value then
			if spelling:sub(-1) ~= '=' then
				computed[#computed + 1] = spelling
			elseif type(value) == 'string' or type(value) == 'number' then
				computed[#computed + 1] = spelling .. value
			else
				error('rsync.' .. key .. ' must be a string or a number', level)
			end
		end
	end

	return computed
end

-- Validates a config and precomputes its rsync arguments (SPEC §9.2).
-- `level`: error level of the sync{} call relative to this function.
-- `skipTarget`: used by layers without `target` (rsyncssh): no target check, no slash.
function rsync.prepare(config, level, skipTarget)
	level = level or 2

	-- The gauge check gets a level far beyond the stack, so its message carries no
	-- position, exactly like upstream's (SPEC §2.7); the other errors point at sync{}.
	default.prepare(config, level + 6)

	if not skipTarget and not config.target then
		error('default.rsync needs "target" configured', level)
	end

	local crsync = config.rsync
	if crsync._computed then
		error('please do not use the internal rsync._computed parameter', level)
	end

	if crsync.archive then
		for _, implied in ipairs(ARCHIVE_IMPLIES) do
			if crsync[implied[1]] == nil then
				crsync[implied[1]] = implied[2]
			end
		end
	end

	crsync._computed = computeArguments(crsync, level + 1)

	-- A directory target gets its trailing slash; a trailing ':' (remote home directory,
	-- `host:`) must not become ':/'.
	if not skipTarget then
		local last = string.sub(config.target, -1)
		if last ~= '/' and last ~= ':' then
			config.target = config.target .. '/'
		end
	end
end

-------------------------------------------------------------------------------------------
-- Shared helpers (also used by default-rsyncssh.lua through default._rsyncCommon)
-------------------------------------------------------------------------------------------

-- 2.3 tunnels: replace ^localhost / ^localport (and any other substitution key) in
-- `target` with the values of the tunnel process chosen for this agent. Without a tunnel
-- the target is used as written.
function common.substituteTarget(inlet, agent, target)
	if not inlet.getConfig().tunnel then
		return target
	end
	local data = inlet.getSubstitutionData(agent, {})
	return substitudeCommands(target, data)
end

-- The delete arguments of a running-mode rsync (SPEC §9.6).
local function runningDelete(config)
	if config.delete == true or config.delete == 'running' then
		return { '--delete', '--ignore-errors' }
	end
	return nil
end

-- The include list of an event list (SPEC §9.5: every path in queue order, a move's
-- origin and destination, each followed by its parent directories, no duplicates; a
-- directory Delete as `dir/***`; wildcard characters escaped only in patterns that have
-- any, SPEC §15 item 22) is built by the core: lsyncd._includeList(elist) returns its
-- length, the list joined by NUL bytes and, when Normal is logged, joined by newlines.

-- Spawns the running-mode rsync for `elist` towards `target` (SPEC §9.5). Returns false,
-- spawning nothing and leaving every event queued, when the list has no path at all
-- (only possible when nothing but a Blanket was due): upstream would start rsync
-- reading lsyncd's own stdin (SPEC §15 item 21).
function common.runList(inlet, elist, target)
	local config = inlet.getConfig()
	local count, stdin, shown = lsyncd._includeList(elist)
	if count == 0 then
		return false
	end

	log(
		'Normal',
		'Calling rsync with filter-list of new/modified files/dirs\n',
		shown
	)

	spawn(
		elist,
		config.rsync.binary,
		'<', stdin,
		config.rsync._computed,
		'-r',
		runningDelete(config),
		'--force',
		'--from0',
		'--include-from=-',
		'--exclude=*',
		config.source,
		common.substituteTarget(inlet, elist, target)
	)
	return true
end

-- Whether a Full event is to be taken into a running-mode batch. The core hands Full
-- events to config.full when that is a function; swallowing one into a batch instead
-- would turn a full recursive sync into a sync of the root directory entry alone, so only
-- configs without a `full` function batch them (as the action is then their handler).
function common.batchesFull(config)
	return type(config.full) ~= 'function'
end

-- Judges the startup rsync of rsyncssh and direct through config.rsyncExitCodes
-- (SPEC §10.4 / §11). Texts are upstream's, including their odd quoting. 'again' without
-- insist ends lsyncd here; 'die' is returned and ends it in the core.
function common.collectStartup(agent, exitcode)
	local rc = agent.config.rsyncExitCodes[exitcode]
	if rc == 'ok' then
		log('Normal', 'Startup of "', agent.source, '" finished: ', exitcode)
	elseif rc == 'again' then
		if settings('insist') or exitcode == 23 then
			log('Normal', 'Retrying startup of "', agent.source, '": ', exitcode)
		else
			log(
				'Error',
				'Temporary or permanent failure on startup of "', agent.source,
				'". Terminating since "insist" is not set.'
			)
			terminate(-1)
		end
	elseif rc == 'die' then
		log('Error', 'Failure on startup of "', agent.source, '": ', exitcode)
	else
		log('Error', 'Unknown exitcode on startup of "', agent.source, ': "', exitcode)
		rc = 'die'
	end
	return rc
end

default._rsyncCommon = common

-------------------------------------------------------------------------------------------
-- Startup and full sync (SPEC §9.4)
-------------------------------------------------------------------------------------------

-- One recursive rsync of the whole source, for the Init event and for Full events.
function rsync.full(event)
	local config = event.config
	local inlet = event.inlet

	local target = config.target
	if not target then
		if not config.host then
			error('Internal fail, Neither target nor host is configured')
		end
		target = config.host .. ':' .. config.targetdir
	end
	target = common.substituteTarget(inlet, event, target)

	-- A Full standing for collapsed pending changes (maxPending) deletes what the running
	-- mode would have deleted one by one; any other Full follows the startup mode.
	local delete = {}
	if event.collapsed then
		delete = runningDelete(config) or delete
	elseif config.delete == true or config.delete == 'startup' then
		delete = { '--delete', '--ignore-errors' }
	end
	if config.rsync.delete_excluded == true then
		delete[#delete + 1] = '--delete-excluded'
	end

	local excludes = inlet.getExcludes()
	local filters = nil
	if inlet.hasFilters() then
		filters = inlet.getFilters()
		-- An empty rule text would mean "no stdin pipe": rsync would then read its rules
		-- from lsyncd's own stdin. With nothing to say, say nothing.
		if #filters == 0 then
			filters = nil
		end
	end

	if filters then
		local rules = table.concat(filters, '\n')
		log('Normal', 'recursive full rsync: ', config.source, ' -> ', target, ' filtering\n', rules)
		spawn(
			event, config.rsync.binary,
			'<', rules,
			'--filter=. -',
			delete, config.rsync._computed, '-r', config.source, target
		)
	elseif #excludes > 0 then
		local patterns = table.concat(excludes, '\n')
		log('Normal', 'recursive full rsync: ', config.source, ' -> ', target, ' excluding\n', patterns)
		spawn(
			event, config.rsync.binary,
			'<', patterns,
			'--exclude-from=-',
			delete, config.rsync._computed, '-r', config.source, target
		)
	else
		log('Normal', 'recursive full rsync: ', config.source, ' -> ', target)
		spawn(
			event, config.rsync.binary,
			delete, config.rsync._computed, '-r', config.source, target
		)
	end
end

-- Startup is a full sync.
function rsync.init(event)
	return rsync.full(event)
end

-------------------------------------------------------------------------------------------
-- Running mode (SPEC §9.5, §9.7)
-------------------------------------------------------------------------------------------

-- Running mode without batchSizeLimit: everything queued that is not behind an Init or a
-- Blanket goes into one rsync.
local function actionAll(inlet)
	local config = inlet.getConfig()
	local skip = { 'Init', 'Blanket' }
	if not common.batchesFull(config) then
		skip[3] = 'Full'
	end
	local elist = lsyncd._getEventsExcept(inlet, skip)
	common.runList(inlet, elist, config.target)
end

-- batchSizeLimit: Moves, Deletes and files up to the limit (or whose size cannot be
-- read) go together; each larger file gets an rsync of its own while process slots last.
local function actionBatched(inlet, sizeLimit)
	local config = inlet.getConfig()

	-- Size of an event's file, or nil when it is no candidate for a single transfer.
	local function singleSize(event)
		local etype = event.etype
		if event.status == 'active' or etype == 'Init' or etype == 'Blanket' or etype == 'Full'
			or etype == 'Move' or etype == 'Delete'
		then
			return nil
		end
		return lsyncd.get_file_size(event.sourcePath)
	end

	local batch = inlet.getEvents(function(event)
		local etype = event.etype
		if event.status == 'active' or etype == 'Init' or etype == 'Blanket' or etype == 'Full' then
			return false
		end
		if etype == 'Move' or etype == 'Delete' then
			return true
		end
		local size = lsyncd.get_file_size(event.sourcePath)
		return size == nil or size <= sizeLimit
	end)
	if batch.size() > 0 then
		common.runList(inlet, batch, config.target)
	end

	while true do
		local running, globalMax = lsyncd.get_process_info()
		if inlet.getSync().processes:size() >= config.maxProcesses then
			log(
				'Normal',
				'Maximum processes for sync reached. Delaying large transfer for sync: ',
				config.name
			)
			break
		elseif globalMax and running >= globalMax then
			log(
				'Normal',
				'Maximum process count reached. Delaying large transfer for sync: ',
				config.name
			)
			break
		end

		-- The first large file in queue order, alone.
		local taken = false
		local single = inlet.getEvents(function(event)
			local size = singleSize(event)
			if size == nil then
				return false
			end
			if taken then
				return 'break'
			end
			if size > sizeLimit then
				taken = true
				return true
			end
			return false
		end)
		if single.size() == 0 then
			break
		end
		local before = inlet.getSync().processes:size()
		common.runList(inlet, single, config.target)
		if inlet.getSync().processes:size() <= before then
			-- Nothing started (lsyncd is fading, or fork failed): the event is still
			-- waiting and would be picked again forever.
			break
		end
	end
end

function rsync.action(inlet)
	local sizeLimit = inlet.getConfig().batchSizeLimit
	if sizeLimit == nil then
		return actionAll(inlet)
	end
	return actionBatched(inlet, sizeLimit)
end

-------------------------------------------------------------------------------------------
-- Defaults of the layer (SPEC §9.1)
-------------------------------------------------------------------------------------------

rsync.delete = true

rsync.exitcodes = default.rsyncExitCodes

rsync.rsync = {
	binary = 'rsync',
	links = true,
	times = true,
	protect_args = true,
}

rsync.delay = 15

default.rsync = rsync
