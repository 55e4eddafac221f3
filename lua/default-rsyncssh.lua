--[[
lua/default-rsyncssh.lua — the `default.rsyncssh` layer of lsyncd-rs.

Mirrors the source to `host:targetdir` with rsync over ssh, and performs moves on the
remote side with one `ssh HOST mv ...` instead of deleting and re-sending (SPEC §10).
It inherits everything else from default.rsync (startup/full sync, option computing) and
reuses that layer's include-list code through default._rsyncCommon.

Ordering: one process at a time (maxProcesses must be 1), and an rsync batch never reaches
past a pending Move, so moves and transfers reach the target in queue order.

Loaded by the runtime after default-rsync.lua, as chunk "@default-rsyncssh.lua".

Copyright (C) the lsyncd-rs authors.
SPDX-License-Identifier: GPL-2.0-or-later
This program is free software; you can redistribute it and/or modify it under the terms of
the GNU General Public License as published by the Free Software Foundation; either
version 2 of the License, or (at your option) any later version.
]]

if type(rawget(_G, 'default')) ~= 'table' or default.rsync == nil then
	error('default-rsyncssh.lua: default.lua and default-rsync.lua must be loaded first')
end
if default.rsyncssh ~= nil then
	error('default-rsyncssh.lua: default.rsyncssh exists already')
end

local common = default._rsyncCommon

-- Inherits all of default.rsync that is not set here.
local rsyncssh = { default.rsync }

rsyncssh.checkgauge = {
	-- The destination is host + targetdir; `target` would be silently ignored.
	target = false,
	onMove = true,

	host = true,
	targetdir = true,
	rsyncExitCodes = true,
	sshExitCodes = true,

	ssh = {
		_extra = true,
		binary = true,
		identityFile = true,
		options = true,
		port = true,
	},
}

-- Quotes `text` as one word for the remote POSIX shell that runs ssh's command:
-- single quotes, each inner ' written as '"'"'. Bytes are passed through untouched.
local function remoteShellQuote(text)
	return "'" .. text:gsub("'", [['"'"']]) .. "'"
end

-- Quotes one word of the `--rsh=` command for rsync's own splitter, which splits at
-- spaces and honours '...' / "..." (a doubled quote inside stands for itself). Plain
-- words stay as they are (so the usual argv is unchanged); only words that rsync would
-- otherwise tear apart are quoted, e.g. `-o "ProxyCommand ssh -W %h:%p jump"` from
-- -sshopts, which upstream passes unquoted and thereby breaks.
local function rshWord(word)
	word = tostring(word)
	if word ~= '' and not word:find('[ \'"]') then
		return word
	end
	return "'" .. word:gsub("'", "''") .. "'"
end

-- Keys of ssh.options in a fixed order (upstream uses hash order).
local function sortedOptionKeys(options)
	local keys = {}
	for key in pairs(options) do
		keys[#keys + 1] = key
	end
	table.sort(keys, function(a, b)
		return tostring(a) < tostring(b)
	end)
	return keys
end

-- Moves run on the target host; anything else is rsynced in one batch that stops at the
-- first Move (which must not be overtaken), Init or Blanket.
function rsyncssh.action(inlet)
	local config = inlet.getConfig()
	local event, event2 = inlet.getEvent()
	if event == nil then
		return
	end

	if event.etype == 'Move' then
		local from = remoteShellQuote(config.targetdir .. event.path)
		local to = remoteShellQuote(config.targetdir .. event2.path)

		log('Normal', 'Moving ', event.path, ' -> ', event2.path)

		-- ssh joins these words into one remote command line: move, or, if the move
		-- fails, remove the origin (the destination is then sent by a later rsync).
		spawn(
			event,
			config.ssh.binary,
			config.ssh._computed,
			common.substituteTarget(inlet, event, config.host),
			'mv', from, to,
			'||', 'rm', '-rf', from
		)
		return
	end

	local elist = inlet.getEvents(function(e)
		local etype = e.etype
		if etype == 'Move' or etype == 'Init' or etype == 'Blanket' then
			return 'break'
		end
		if etype == 'Full' then
			return common.batchesFull(config)
		end
		return true
	end)

	common.runList(inlet, elist, config.host .. ':' .. config.targetdir)
end

-- Startup rsync judged by rsyncExitCodes, batches by rsyncExitCodes, ssh moves by
-- sshExitCodes (SPEC §10.4). Texts are upstream's, including their odd quoting.
function rsyncssh.collect(agent, exitcode)
	local config = agent.config

	if not agent.isList and agent.etype == 'Init' then
		return common.collectStartup(agent, exitcode)
	end

	if agent.isList then
		local rc = config.rsyncExitCodes[exitcode]
		if rc == 'ok' then
			log('Normal', 'Finished (list): ', exitcode)
		elseif rc == 'again' then
			log('Normal', 'Retrying (list): ', exitcode)
		elseif rc == 'die' then
			log('Error', 'Failure (list): ', exitcode)
		else
			log('Error', 'Unknown exitcode (list): ', exitcode)
			rc = 'die'
		end
		return rc
	end

	local rc = config.sshExitCodes[exitcode]
	if rc == 'ok' then
		log('Normal', 'Finished ', agent.etype, ' ', agent.sourcePath, ': ', exitcode)
	elseif rc == 'again' then
		log('Normal', 'Retrying ', agent.etype, ' ', agent.sourcePath, ': ', exitcode)
	elseif rc == 'die' then
		log('Normal', 'Failure ', agent.etype, ' ', agent.sourcePath, ': ', exitcode)
	else
		log('Error', 'Unknown exitcode ', agent.etype, ' ', agent.sourcePath, ': ', exitcode)
		rc = 'die'
	end
	return rc
end

-- Validates the config (SPEC §10.2): default.rsync's checks without target, then host,
-- targetdir and maxProcesses; computes ssh._computed and the matching `--rsh=ssh ...`
-- argument of rsync.
function rsyncssh.prepare(config, level)
	level = level or 2

	default.rsync.prepare(config, level + 1, true)

	if not config.host then
		error('default.rsyncssh needs "host" configured', level)
	end
	if not config.targetdir then
		error('default.rsyncssh needs "targetdir" configured', level)
	end

	local cssh = config.ssh
	if cssh._computed then
		-- (sic: upstream's message names rsync._computed here too)
		error('please do not use the internal rsync._computed parameter', level)
	end

	if config.maxProcesses ~= 1 then
		error('default.rsyncssh must have maxProcesses set to 1.', level)
	end

	local computed = {}
	local rsh = {}
	local function add(sshArgs, rshText)
		for _, arg in ipairs(sshArgs) do
			computed[#computed + 1] = arg
		end
		rsh[#rsh + 1] = rshText
	end

	if cssh.identityFile then
		add({ '-i', cssh.identityFile }, ' -i ' .. rshWord(cssh.identityFile))
	end

	if cssh.options then
		for _, key in ipairs(sortedOptionKeys(cssh.options)) do
			local option = key .. '=' .. cssh.options[key]
			add({ '-o', option }, ' -o ' .. rshWord(option))
		end
	end

	if cssh.port then
		add({ '-p', cssh.port }, ' -p ' .. rshWord(cssh.port))
	end

	if cssh._extra then
		for _, arg in ipairs(cssh._extra) do
			add({ arg }, ' ' .. rshWord(arg))
		end
	end

	cssh._computed = computed

	-- Literally `ssh`, not ssh.binary: upstream behaviour, kept.
	if #rsh > 0 then
		local rsyncComputed = config.rsync._computed
		rsyncComputed[#rsyncComputed + 1] = '--rsh=ssh' .. table.concat(rsh)
	end

	local last = string.sub(config.targetdir, -1)
	if last ~= '/' and last ~= ':' then
		config.targetdir = config.targetdir .. '/'
	end
end

rsyncssh.maxProcesses = 1

-- Moves reach the action unsplit.
rsyncssh.onMove = true

rsyncssh.delay = 15

-- Not judged by default.collect; this layer's collect uses the two tables below.
rsyncssh.exitcodes = false

rsyncssh.rsyncExitCodes = default.rsyncExitCodes

rsyncssh.sshExitCodes = default.sshExitCodes

rsyncssh.ssh = {
	binary = 'ssh',
	-- identityFile, options, port: unset
	_extra = {},
}

default.rsyncssh = rsyncssh
