-- Example configuration for lsyncd, the Live Syncing Mirror Daemon.
--
-- Copy it to /etc/lsyncd/lsyncd.conf.lua, change the paths and hosts, check it with
--     lsyncd -t /etc/lsyncd/lsyncd.conf.lua
-- and start the service (systemctl start lsyncd, or /etc/init.d/lsyncd start).
-- The file is a Lua program; "man lsyncd" lists every key used below and many more.

-- Global settings. Give absolute paths: once lsyncd has detached, its working
-- directory is "/".
settings{
	-- Log messages are appended here; the file is opened anew for every message, so
	-- logrotate needs no signal. Without a logfile a detached lsyncd logs to syslog
	-- (and under systemd, which runs it with -nodaemon, to the journal).
	logfile = "/var/log/lsyncd/lsyncd.log",

	-- A report of every sync's queued events and of every watched directory,
	-- rewritten at most every statusInterval seconds while something happens.
	statusFile = "/var/log/lsyncd/lsyncd.status",
	statusInterval = 20,

	-- Keep running when a target cannot be reached at startup, and retry.
	insist = true,

	-- At most this many rsync processes at once, over all syncs.
	-- maxProcesses = 4,
}

-- Mirror a local tree to a second disk. Changes are collected for 15 seconds (the
-- default delay of default.rsync), then sent with one rsync call.
sync{
	default.rsync,
	source = "/srv/data",
	target = "/mnt/backup/data",

	-- Not mirrored: editor and temporary files anywhere, and the top-level cache
	-- directory. The patterns work as in rsync (see "Exclude and filter patterns" in
	-- the manual).
	exclude = { "*~", "*.swp", "*.tmp", "/cache/" },

	-- true: files deleted from the source are deleted from the target too.
	-- 'startup': only by the transfer at startup; 'running': only afterwards.
	delete = true,

	rsync = {
		archive = true,     -- permissions, times, owner, group, devices, links
		hard_links = true,
		-- bwlimit = 10000, -- KiB per second
	},
}

-- Mirror to another host over ssh. Renames and moves are done there with mv instead
-- of being sent again; everything else goes through rsync. The account needs
-- password-less (key) login and rsync installed on the remote host.
--[[
sync{
	default.rsyncssh,
	source = "/srv/www",
	host = "mirror@backup.example.org",
	targetdir = "/var/mirror/www",
	delay = 5,
	rsync = {
		archive = true,
		compress = true,
	},
	ssh = {
		port = 22,
		identityFile = "/root/.ssh/lsyncd_mirror",
		options = { ServerAliveInterval = 30 },
	},
}
--]]

-- Run a command of your own for each new file (Layer 3). ^sourcePathname is replaced
-- by the file's full path; do not quote it, lsyncd passes it safely to the shell.
-- A command that exits with a status other than 0 stops lsyncd unless "exitcodes"
-- says otherwise.
--[[
sync{
	source = "/srv/incoming",
	onCreate = "logger -t incoming new file ^sourcePathname",
	exitcodes = { [0] = 'ok', [1] = 'again' },
	delay = 1,
}
--]]
