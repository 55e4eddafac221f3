--[[
lua/default-direct.lua — the `default.direct` layer of lsyncd-rs.

Mirrors a local source to a local `target` with one cp / mkdir / rm / mv per event
(SPEC §11); startup and Full events use default.rsync's recursive rsync. Failures of the
per-event commands are ignored (there is no network to retry); only the startup rsync is
judged, like rsyncssh's.

One deliberate difference from upstream: a symlink created while running is copied as a
symlink (`cp -P`), as the startup rsync (`-l`) does; upstream's plain `cp -p` follows it,
copying the referent instead, failing on a dangling link or on a link to a directory.

Loaded by the runtime after default-rsyncssh.lua, as chunk "@default-direct.lua".

Copyright (C) the lsyncd-rs authors.
SPDX-License-Identifier: GPL-2.0-or-later
This program is free software; you can redistribute it and/or modify it under the terms of
the GNU General Public License as published by the Free Software Foundation; either
version 2 of the License, or (at your option) any later version.
]]

if type(rawget(_G, 'default')) ~= 'table' or default.rsync == nil then
	error('default-direct.lua: default.lua and default-rsync.lua must be loaded first')
end
if default.direct ~= nil then
	error('default-direct.lua: default.direct exists already')
end

local common = default._rsyncCommon
local direct = {}

-- default.rsync's gauge (inherited as parent) plus this layer's own keys.
direct.checkgauge = {
	default.rsync.checkgauge,

	onMove = true,
	rsyncExitCodes = true,
}

-- Whether the delete mode allows deleting on the target while running (SPEC §9.6).
local function deletesWhileRunning(config)
	return config.delete == true or config.delete == 'running'
end

-- Target paths that must never be handed to `rm -rf` or `mv`.
local function refuseDangerous(targetPath)
	if not targetPath or targetPath == '' or targetPath == '/' then
		error('Refusing to erase your harddisk!')
	end
end

-- Whether `path` itself is a symbolic link. Plain Lua cannot lstat(), so this asks the
-- runtime; it answers nil when the runtime offers no such probe.
local function isSymlink(path)
	local core = rawget(_G, 'lsyncd')
	local probe = type(core) == 'table' and core.is_symlink
	if type(probe) ~= 'function' then
		return nil
	end
	return probe(path) and true or false
end

-- Copies a file (Create/Modify) into its target directory.
--
-- Regular files keep upstream's exact argv [cp, -p, --, SP, TPD]. Symlinks get
-- [cp, -P, -p, --, SP, TPD] so that the link itself arrives. -P only changes how a
-- symlink *source* is treated, so adding it to a regular-file copy would behave the same;
-- it is left out there solely to keep the documented argv (SPEC §11, MUST match). When
-- the runtime cannot tell (no lsyncd.is_symlink), -P is always added: the argv then
-- differs from upstream, but no symlink is ever turned into a copy of its referent.
local function copyFile(event)
	local sourcePath = event.sourcePath
	local symlink = isSymlink(sourcePath)
	if symlink == false then
		spawn(event, 'cp', '-p', '--', sourcePath, event.targetPathdir)
	else
		spawn(event, 'cp', '-P', '-p', '--', sourcePath, event.targetPathdir)
	end
end

function direct.action(inlet)
	local config = inlet.getConfig()
	local event, event2 = inlet.getEvent()
	if event == nil then
		return
	end
	local etype = event.etype

	if etype == 'Create' then
		if event.isdir then
			spawn(event, 'mkdir', '--', event.targetPath)
		else
			copyFile(event)
		end
	elseif etype == 'Modify' then
		if event.isdir then
			error("Do not know how to handle 'Modify' on dirs")
		end
		copyFile(event)
	elseif etype == 'Delete' then
		if not deletesWhileRunning(config) then
			inlet.discardEvent(event)
			return
		end
		local targetPath = event.targetPath
		refuseDangerous(targetPath)
		spawn(event, 'rm', '-rf', '--', targetPath)
	elseif etype == 'Move' then
		local targetPath = event.targetPath
		refuseDangerous(targetPath)
		-- Move on the target; if that fails (origin never arrived), delete the origin so
		-- nothing stale stays behind — unless deletes are off.
		local command = 'mv -- "$1" "$2" || rm -rf -- "$1"'
		if not deletesWhileRunning(config) then
			command = 'mv -- "$1" "$2"'
		end
		spawnShell(event, command, targetPath, event2.targetPath)
	elseif etype == 'Full' then
		refuseDangerous(event.targetPath)
		direct.full(event)
	else
		log('Warn', 'ignored an event of type "', etype, '"')
		inlet.discardEvent(event)
	end
end

-- Judges the startup rsync like rsyncssh does (SPEC §10.4); every other process counts
-- as done whatever its exit code (returns nil).
function direct.collect(agent, exitcode)
	if agent.isList or agent.etype ~= 'Init' then
		return nil
	end

	return common.collectStartup(agent, exitcode)
end

-- Startup and Full: the same recursive rsync as default.rsync.
direct.init = default.rsync.init
direct.full = default.rsync.full

-- default.rsync's validation, target required (and given its trailing slash).
function direct.prepare(config, level)
	level = level or 2
	default.rsync.prepare(config, level + 1)
end

-- Local copies are cheap: act almost at once.
direct.delay = 1

-- Moves reach the action unsplit.
direct.onMove = true

direct.rsync = default.rsync.rsync
direct.rsyncExitCodes = default.rsyncExitCodes

direct.delete = true

-- Parallel disk operations on one machine mostly slow each other down.
direct.maxProcesses = 1

default.direct = direct
