--[[
lua/default-direct.lua — the `default.direct` layer of lsyncd-rs.

Mirrors a local source to a local `target` with one cp / mkdir / rm / mv per event
(SPEC §11); startup and Full events use default.rsync's recursive rsync. Failures of the
per-event commands are ignored (there is no network to retry); only the startup rsync is
judged, like rsyncssh's.

Deliberate differences from upstream, each keeping upstream's argv where it is safe:
- a symlink created while running is copied as a symlink (`cp -P`), as the startup rsync
  (`-l`) does; upstream's plain `cp -p` follows it, copying the referent instead, failing on
  a dangling link or on a link to a directory;
- a file copied onto a target path that is a symlink (a link replaced by a file: the Delete
  is folded into the Create) replaces the link (`--remove-destination`); plain `cp` would
  write through it, possibly outside the target;
- a move whose destination exists on the target as a directory or a symlink (rename(2)
  replaced an empty directory or a symlink in the source) clears it first: plain `mv`
  would move into that directory, or through the symlink to wherever it points;
- a FIFO, socket or device node is never opened (upstream's `cp -p` blocks on a FIFO for
  ever and copies a device's contents): it is created on the target as the same special
  file (`cp -R`, as `cp -a` and rsync -D do) when the sync's rsync copies such files at
  startup (rsync.archive, rsync.devices / rsync.specials, or -D in _extra), else skipped
  with a log line, as the startup rsync skips it;
- a target that names the root directory ('/', '', '//', '/tmp/..') is refused while any
  delete mode is on, before anything runs: the startup rsync --delete would erase it.
  Upstream only checks the paths of single Delete and Move events, after the startup.

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

-- True if `path` names the root directory: '' or nothing but '/' and '.' components, or
-- '..' components climbing back to it ('/tmp/..'). Symlinks are not resolved.
local function isRoot(path)
	if path == '' then
		return true
	end
	if path:sub(1, 1) ~= '/' then
		return false
	end
	local depth = 0
	for part in path:gmatch('[^/]+') do
		if part == '..' then
			if depth > 0 then
				depth = depth - 1
			end
		elseif part ~= '.' then
			depth = depth + 1
		end
	end
	return depth == 0
end

-- Target paths that must never be handed to `rm -rf` or `mv`.
local function refuseDangerous(targetPath)
	if not targetPath or isRoot(targetPath) then
		error('Refusing to erase your harddisk!')
	end
end

-- Whether any delete mode is on (startup, running or both; SPEC §9.6).
local function deletesAtAll(config)
	return config.delete == true or config.delete == 'startup' or config.delete == 'running'
end

-- Whether the startup / Full rsync gets --delete.
local function deletesAtStartup(config)
	return config.delete == true or config.delete == 'startup'
end

-- The runtime's lsyncd.NAME probe, nil when it offers none (plain Lua cannot lstat()).
local function runtimeProbe(name)
	local core = rawget(_G, 'lsyncd')
	local probe = type(core) == 'table' and core[name]
	if type(probe) ~= 'function' then
		return nil
	end
	return probe
end

-- Whether `path` itself is a symbolic link; nil when the runtime cannot tell.
local function isSymlink(path)
	local probe = runtimeProbe('is_symlink')
	if probe == nil then
		return nil
	end
	return probe(path) and true or false
end

-- Whether a move onto `destination` (a target path) would go *into* something instead of
-- replacing it, as rename(2) did in the source: `mv` moves into an existing directory, or
-- into the directory a symlink points at (possibly outside the target). In the source
-- this happens when a directory is renamed over an empty one, or a file over a symlink.
local function replacesSomething(destination)
	local bare = destination:gsub('/+$', '')
	if bare == '' then
		return false
	end
	return isSymlink(bare) == true or lsyncd.realdir(bare) ~= nil
end

-- Shell prefix that clears the move's destination "$2" first (its trailing slash cut off,
-- so a symlink itself is removed, never what it points at). With deletes on, whatever is
-- there goes, as the rename did in the source; with deletes off only an empty directory
-- or a symlink is removed, so nothing the target keeps on purpose is lost.
local function clearDestination(config)
	if deletesWhileRunning(config) then
		return 'rm -rf -- "${2%/}"; '
	end
	return '{ rmdir -- "${2%/}" || rm -f -- "${2%/}"; } 2>/dev/null; '
end

-- The kind of `path` without following a symlink ('file', 'directory', 'symlink', 'fifo',
-- 'socket', 'char', 'block'), nil when it is gone or the runtime offers no probe.
local function fileType(path)
	local probe = runtimeProbe('file_type')
	return probe and probe(path)
end

local SPECIAL = { fifo = 'specials', socket = 'specials', char = 'devices', block = 'devices' }

-- Whether the rsync of this sync (its startup and Full transfers) copies special files of
-- class `class` ('devices' or 'specials'): the keys (archive expanded them already), or
-- an _extra word that turns them on or off, the last one winning as in rsync.
local function rsyncCopies(config, class)
	local crsync = config.rsync or {}
	local on = crsync[class] == true
	for _, arg in ipairs(crsync._extra or {}) do
		if arg == '--' .. class or arg == '--archive' then
			on = true
		elseif arg == '--no-' .. class or arg == '--no-D' then
			on = false
		elseif arg:match('^%-%a+$') and arg:match('[aD]') then
			on = true
		end
	end
	return on
end

-- A FIFO, socket or device node (Create/Modify): created on the target as the same kind
-- of file, or skipped with a log line when the sync's rsync would skip it too. Returns
-- false for anything else.
local function copySpecial(inlet, event, kind)
	local class = SPECIAL[kind]
	if class == nil then
		return false
	end
	if not rsyncCopies(event.config, class) then
		log(
			'Normal', 'not copying ', kind, ' ', event.sourcePath,
			': this sync copies no ', class, ' (see rsync.archive, rsync.', class, ')'
		)
		inlet.discardEvent(event)
	elseif event.etype == 'Modify' and fileType(event.targetPath) == kind then
		-- written to (a FIFO): the special file on the target is the same already
		inlet.discardEvent(event)
	else
		spawn(event, 'cp', '-p', '-R', '--remove-destination', '--', event.sourcePath, event.targetPathdir)
	end
	return true
end

-- Copies a file (Create/Modify) into its target directory.
--
-- Regular files keep upstream's exact argv [cp, -p, --, SP, TPD]. Symlinks get
-- [cp, -P, -p, --, SP, TPD] so that the link itself arrives. -P only changes how a
-- symlink *source* is treated, so adding it to a regular-file copy would behave the same;
-- it is left out there solely to keep the documented argv (SPEC §11, MUST match). When
-- the runtime cannot tell (no lsyncd.is_symlink), -P is always added: the argv then
-- differs from upstream, but no symlink is ever turned into a copy of its referent.
--
-- When the target path is a symlink (typically: a link replaced by a regular file, whose
-- Delete was folded into the Create), `--remove-destination` makes cp replace the link
-- instead of writing through it into whatever it points at.
local function copyFile(event)
	local sourcePath = event.sourcePath
	local symlink = isSymlink(sourcePath)
	local replaceLink = nil
	if isSymlink(event.targetPath) then
		replaceLink = '--remove-destination'
	end
	if symlink == false then
		spawn(event, 'cp', '-p', replaceLink, '--', sourcePath, event.targetPathdir)
	else
		spawn(event, 'cp', '-P', '-p', replaceLink, '--', sourcePath, event.targetPathdir)
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
		elseif not copySpecial(inlet, event, fileType(event.sourcePath)) then
			copyFile(event)
		end
	elseif etype == 'Modify' then
		if event.isdir then
			error("Do not know how to handle 'Modify' on dirs")
		end
		if not copySpecial(inlet, event, fileType(event.sourcePath)) then
			copyFile(event)
		end
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
		local destination = event2.targetPath
		refuseDangerous(targetPath)
		refuseDangerous(destination)
		-- Move on the target; if that fails (origin never arrived), delete the origin so
		-- nothing stale stays behind — unless deletes are off.
		local command = 'mv -- "$1" "$2" || rm -rf -- "$1"'
		if not deletesWhileRunning(config) then
			command = 'mv -- "$1" "$2"'
		end
		if replacesSomething(destination) then
			command = clearDestination(config) .. command
		end
		spawnShell(event, command, targetPath, destination)
	elseif etype == 'Full' then
		-- (only reached when `full` is not a function; direct.full refuses the root)
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

-- Startup and Full: the same recursive rsync as default.rsync, never with --delete onto
-- the root directory (prepare refuses such a target already; this guards configs that
-- change `target` later).
function direct.full(event)
	if deletesAtStartup(event.config) and isRoot(event.config.target) then
		error('Refusing to erase your harddisk!')
	end
	return default.rsync.full(event)
end

function direct.init(event)
	return direct.full(event)
end

-- default.rsync's validation, target required (and given its trailing slash). A target
-- naming the root directory is refused while deletes are on: the startup rsync would
-- delete everything there that is not in the source.
function direct.prepare(config, level)
	level = level or 2
	default.rsync.prepare(config, level + 1)
	if deletesAtAll(config) and isRoot(config.target) then
		error('Refusing to erase your harddisk!', level)
	end
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
