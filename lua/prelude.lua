--============================================================================
-- prelude.lua: the runner glue between the daemon core and Lua configs.
--
-- Loaded first into every fresh Lua state. Defines the globals configs see
-- (settings, sync, spawn, spawnShell, log, terminate, now, readdir, alarm,
-- the lsyncd table, ...), the inheritance used by sync{}, the inlet, event
-- and event-list objects handed to layer code, and the Layer 3 translation
-- of string actions. The queue, the watches and the processes live in the
-- core; this file reaches them only through the `core` table it is given.
--
-- Returns a table of hooks the core calls (initialize, action, collect, ...).
--
-- License: GPL-2.0-or-later
--============================================================================

local core = ...

-- Most garbage here (event tables, path strings) dies young.
collectgarbage( "generational" )

local type, pairs, ipairs, select, tostring, error, rawget, rawset, setmetatable =
	type, pairs, ipairs, select, tostring, error, rawget, rawset, setmetatable
local sub, match, concat = string.sub, string.match, table.concat

-- "FILE:LINE: " of the function `level` frames up (1 = the caller of
-- callerPos), with the whole file name: Lua's own positions (short_src, used
-- by error( msg, level )) cut long paths to "...tail".
local function callerPos( level )
	local info = debug.getinfo( level + 1, 'Sl' )
	if info and info.currentline and info.currentline > 0 then
		local src = info.source
		if sub( src, 1, 1 ) == '@' then src = sub( src, 2 ) else src = info.short_src end
		return src .. ':' .. info.currentline .. ': '
	end
	return ''
end

-- error( msg, level ) with the whole file name in the position.
local function raise( msg, level )
	error( callerPos( level + 1 ) .. msg, 0 )
end

lsyncd_version = '2.3.1'
_LUA_VERSION_MAJOR = 5
_LUA_VERSION_MINOR = 4

function string.starts( s, prefix )
	return sub( s, 1, #prefix ) == prefix
end

function string.ends( s, suffix )
	return suffix == '' or sub( s, -#suffix ) == suffix
end

function table.contains( t, value )
	for _, v in ipairs( t ) do
		if v == value then return true end
	end
	return false
end

-- Whether sync{} is still allowed (configuration phase).
local running = false
-- Whether this is the first run of the process (not a HUP/overflow restart).
local firstRun = true

------------------------------------------------------------------------------
-- log(category, ...)
------------------------------------------------------------------------------
local function logValue( v )
	local t = type( v )
	if t == 'string' then return v end
	if t == 'number' then return tostring( v ) end
	if v == nil then return '(nil)' end
	if t == 'boolean' then return v and '(true)' or '(false)' end
	if t == 'table' then return '(Table: ' .. sub( tostring( v ), 8 ) .. ')' end
	if t == 'userdata' and core.isTimestamp( v ) then
		return '(Timestamp: ' .. string.format( '%.14g', core.tsSeconds( v ) ) .. ')'
	end
	return '(' .. tostring( v ) .. ')'
end

function log( category, ... )
	if not core.logEnabled( category ) then return end
	local n = select( '#', ... )
	local parts = { ... }
	for i = 1, n do parts[ i ] = logValue( parts[ i ] ) end
	core.log( category, concat( parts, '', 1, n ) )
end

-- Forward declaration: the tunnel processes a terminate() must not leave behind.
local killTunnelProcesses

-- `v` as an integer (a number or numeric string with an integral value), or an error
-- naming function `fname` and what `v` stands for (NaN, infinities, fractions, tables...).
local function integerArg( fname, what, v )
	local i = math.tointeger( tonumber( v ) or 0/0 )
	if i == nil then
		raise( fname .. ': ' .. what .. ' must be an integer (got ' .. type( v ) .. ' ' .. tostring( v ) .. ')', 3 )
	end
	return i
end

function terminate( code )
	code = code == nil and 0 or integerArg( 'terminate', 'the exit code', code )
	if killTunnelProcesses then killTunnelProcesses( ) end
	core.terminate( code )
end

function now( )
	return core.now( )
end

function readdir( path )
	return core.readdir( path )
end

------------------------------------------------------------------------------
-- settings{} (SPEC §2.4)
------------------------------------------------------------------------------
local settingsKeys = {
	logfile = true, pidfile = true, nodaemon = true, onepass = true,
	statusFile = true, statusInterval = true, logfacility = true,
	logident = true, insist = true, inotifyMode = true,
	maxProcesses = true, maxDelays = true, maxBackoff = true, maxPending = true, stopGrace = true, monitor = true,
	statusFormat = true, metricsFile = true, metricsListen = true,
}

local settingsTable = { }
-- command-line settings, merged over the config's at initialization
local cliSettings = { }

local function settingsFn( a )
	if type( a ) == 'string' then
		return settingsTable[ a ]
	end
	if type( a ) ~= 'table' then
		raise( 'settings takes a table or a setting name', 2 )
	end
	for k, v in pairs( a ) do
		if type( k ) == 'number' then
			if not settingsKeys[ v ] then
				raise( 'setting "' .. tostring( v ) .. '" unknown.', 2 )
			end
			local bad = default._validate.settings( v, true )
			if bad then raise( bad, 2 ) end
			settingsTable[ v ] = true
		else
			if not settingsKeys[ k ] then
				raise( 'setting "' .. tostring( k ) .. '" unknown.', 2 )
			end
			local bad = default._validate.settings( k, v )
			if bad then raise( bad, 2 ) end
			settingsTable[ k ] = v
		end
	end
end
settings = settingsFn

------------------------------------------------------------------------------
-- Inheritance (SPEC §2.6)
------------------------------------------------------------------------------
local inherit

local function inheritKV( dst, k, v )
	if k == '_merge' or k == '_verbatim' then return end
	local dv = dst[ k ]
	if k == 'tunnel' then
		-- a tunnel object is shared by reference (SPEC §2.5 step 2)
		if dv == nil then dst[ k ] = v end
		return
	end
	if type( v ) == 'table' then
		if dv == nil then
			dv = { }
			dst[ k ] = dv
			inherit( dv, v, k == 'exitcodes' )
		elseif type( dv ) == 'table' and v._merge ~= false then
			inherit( dv, v, k == 'exitcodes' )
		end
	elseif dv == nil then
		dst[ k ] = v
	end
end

inherit = function( dst, src, verbatim )
	local merge = src._merge
	if type( merge ) ~= 'table' then merge = nil end
	verbatim = verbatim or src._verbatim == true
	for k, v in pairs( src ) do
		if ( verbatim or type( k ) ~= 'number' )
		and ( merge == nil or merge[ k ] == true )
		then
			inheritKV( dst, k, v )
		end
	end
	if not verbatim then
		for _, v in ipairs( src ) do
			if type( v ) == 'table' then
				inherit( dst, v )
			else
				dst[ #dst + 1 ] = v
			end
		end
	end
end

------------------------------------------------------------------------------
-- Events, event lists and inlets (SPEC §7.2-7.4)
------------------------------------------------------------------------------

-- per sync id: { config = , inlet = , name = }
local syncsL = { }
-- per sync id: delay id -> event (move origin), and -> move destination
local evcache = { }
local evcache2 = { }
-- event -> { sid, did, isDestination, etype, path, path2, spawned }; a delay's type and
-- paths never change, only its status. Weak keys: an entry lives as long as its event
-- table, which user code may keep after the delay is gone (upstream's events hold their
-- delay object, so their fields stay readable); hooks.forget only drops the cache.
local evinfo = setmetatable( { }, { __mode = 'k' } )
-- event list -> { sid, dids }
local elinfo = setmetatable( { }, { __mode = 'k' } )
-- running pid -> agent
local agents = { }
-- inlet -> sync id
local inletSid = setmetatable( { }, { __mode = 'k' } )

local function lastComponent( p )
	return match( p, '([^/]+/?)$' )
end

local function dirPart( p )
	return match( p, '^(.*/)[^/]+/?$' ) or ''
end

local function stripSlash( p )
	return match( p, '^(.-)/?$' )
end

-- P of an event: its path, or the destination path for a move destination.
local function evpath( info )
	if info[ 3 ] then return info[ 6 ] end
	return info[ 5 ]
end

local eventFields = {
	etype = function( ev, info ) return info[ 4 ] end,
	-- a delay that is gone keeps the status it had last, as upstream's delay objects do:
	-- 'active' once a process was spawned for it (then collected), else 'wait' (discarded)
	status = function( ev, info )
		return core.dstatus( info[ 1 ], info[ 2 ] ) or ( info[ 7 ] and 'active' or 'wait' )
	end,
	config = function( ev, info ) return syncsL[ info[ 1 ] ].config end,
	inlet = function( ev, info ) return syncsL[ info[ 1 ] ].inlet end,
	isList = function( ) return false end,
	-- true only on the Full event handed to `full` for changes collapsed above maxPending
	collapsed = function( ) return false end,
	isdir = function( ev, info ) return sub( evpath( info ), -1 ) == '/' end,
	name = function( ev, info ) return lastComponent( evpath( info ) ) end,
	basename = function( ev, info )
		return match( evpath( info ), '([^/]+)/?$' )
	end,
	path = function( ev, info ) return sub( evpath( info ), 2 ) end,
	pathdir = function( ev, info ) return dirPart( sub( evpath( info ), 2 ) ) end,
	pathname = function( ev, info ) return stripSlash( sub( evpath( info ), 2 ) ) end,
	source = function( ev, info ) return syncsL[ info[ 1 ] ].config.source end,
	sourcePath = function( ev, info )
		return syncsL[ info[ 1 ] ].config.source .. evpath( info )
	end,
	sourcePathdir = function( ev, info )
		return syncsL[ info[ 1 ] ].config.source .. dirPart( evpath( info ) )
	end,
	sourcePathname = function( ev, info )
		return syncsL[ info[ 1 ] ].config.source .. stripSlash( evpath( info ) )
	end,
	target = function( ev, info ) return syncsL[ info[ 1 ] ].config.target end,
	targetPath = function( ev, info )
		return syncsL[ info[ 1 ] ].config.target .. evpath( info )
	end,
	targetPathdir = function( ev, info )
		return syncsL[ info[ 1 ] ].config.target .. dirPart( evpath( info ) )
	end,
	targetPathname = function( ev, info )
		return syncsL[ info[ 1 ] ].config.target .. stripSlash( evpath( info ) )
	end,
}

local eventMeta = {
	__index = function( ev, k )
		local f = eventFields[ k ]
		if f == nil then
			if k == 'move' then return nil end
			raise( 'event does not have field "' .. tostring( k ) .. '"', 2 )
		end
		return f( ev, evinfo[ ev ] )
	end,
}

-- The event table of a delay; the same table for as long as the delay lives.
local function mkevent( sid, did, destination )
	local cache = destination and evcache2[ sid ] or evcache[ sid ]
	local ev = cache[ did ]
	if ev then return ev end
	local etype, _, path, path2 = core.dinfo( sid, did )
	ev = { }
	evinfo[ ev ] = { sid, did, destination, etype, path or '', path2 }
	if destination then
		rawset( ev, 'move', 'To' )
	elseif etype == 'Move' then
		rawset( ev, 'move', 'Fr' )
	end
	setmetatable( ev, eventMeta )
	cache[ did ] = ev
	return ev
end

local function getPaths( info, mutator )
	local sid, dids = info[ 1 ], info[ 2 ]
	local r, n = { }, 0
	local cache = evcache[ sid ]
	for i = 1, #dids do
		local did = dids[ i ]
		local ev = cache[ did ]
		local etype, path, path2
		if ev then
			local ei = evinfo[ ev ]
			etype, path, path2 = ei[ 4 ], ei[ 5 ], ei[ 6 ]
		else
			etype, _, path, path2 = core.dinfo( sid, did )
		end
		if mutator then
			local a, b = mutator( etype, path, path2 )
			if a ~= nil then n = n + 1; r[ n ] = a end
			if b ~= nil then n = n + 1; r[ n ] = b end
		else
			n = n + 1; r[ n ] = path
			if path2 then n = n + 1; r[ n ] = path2 end
		end
	end
	return r
end

local listFunctions = {
	getPaths = function( info, mutator ) return getPaths( info, mutator ) end,
	size = function( info ) return #info[ 2 ] end,
	getList = function( info )
		local r = { }
		for i, did in ipairs( info[ 2 ] ) do
			local etype, status, path, path2 = core.dinfo( info[ 1 ], did )
			r[ i ] = { etype = etype, status = status, path = path, path2 = path2 }
		end
		return r
	end,
}

local listMeta = {
	__index = function( list, k )
		local info = elinfo[ list ]
		if k == 'isList' then return true end
		if k == 'config' then return syncsL[ info[ 1 ] ].config end
		local f = listFunctions[ k ]
		if f == nil then
			raise( 'event list does not have function "' .. tostring( k ) .. '"', 2 )
		end
		return function( ... ) return f( info, ... ) end
	end,
}

local function mklist( sid, dids )
	local list = { }
	elinfo[ list ] = { sid, dids }
	return setmetatable( list, listMeta )
end

local function mkinlet( sid )
	local fns = { }
	function fns.getEvent( )
		local did = core.nextWait( sid )
		if did == nil then return nil end
		local ev = mkevent( sid, did )
		if rawget( ev, 'move' ) == 'Fr' then
			return ev, mkevent( sid, did, true )
		end
		return ev
	end
	function fns.getEvents( test )
		local wrapped
		if test then
			wrapped = function( did ) return test( mkevent( sid, did ) ) end
		end
		return mklist( sid, core.getEvents( sid, wrapped ) )
	end
	function fns.discardEvent( ev )
		local info = evinfo[ ev ]
		if info == nil then raise( 'discardEvent needs an event', 2 ) end
		core.discard( sid, info[ 2 ] )
	end
	function fns.getConfig( ) return syncsL[ sid ].config end
	function fns.addExclude( p ) core.addExclude( sid, p ) end
	function fns.rmExclude( p ) core.rmExclude( sid, p ) end
	function fns.getExcludes( ) return core.getExcludes( sid ) end
	function fns.getFilters( ) return core.getFilters( sid ) end
	function fns.hasFilters( ) return core.hasFilters( sid ) end
	function fns.appendFilter( line ) core.appendFilter( sid, line ) end
	function fns.createBlanketEvent( ) return mkevent( sid, core.blanket( sid ) ) end
	function fns.createFullEvent( path ) return mkevent( sid, core.fullEvent( sid, path ) ) end
	local facade = {
		processes = { size = function( ) return core.processCount( sid ) end },
		config = nil,
	}
	function fns.getSync( )
		facade.config = syncsL[ sid ].config
		return facade
	end
	function fns.getSubstitutionData( event, data )
		local tun = syncsL[ sid ].config.tunnel
		if type( tun ) == 'table' and getmetatable( tun ) == Tunnel then
			return tun:substitution( data )
		end
		return data
	end
	return setmetatable( { }, {
		__index = function( _, k )
			local f = fns[ k ]
			if f == nil then
				raise( 'inlet does not have function "' .. tostring( k ) .. '"', 2 )
			end
			return f
		end,
		__newindex = function( _, k )
			raise( 'inlet does not have function "' .. tostring( k ) .. '"', 2 )
		end,
	} )
end

------------------------------------------------------------------------------
-- spawn / spawnShell (SPEC §6.1, §6.2)
------------------------------------------------------------------------------

-- Remembers that a process was spawned for these delays: the status their event
-- tables keep once the delays are gone.
local function markSpawned( sid, dids )
	local c, c2 = evcache[ sid ], evcache2[ sid ]
	for i = 1, #dids do
		local ev, ev2 = c[ dids[ i ] ], c2[ dids[ i ] ]
		if ev then evinfo[ ev ][ 7 ] = true end
		if ev2 then evinfo[ ev2 ][ 7 ] = true end
	end
end

function spawn( agent, binary, ... )
	if type( agent ) ~= 'table' then
		raise( 'spawning with an invalid agent', 2 )
	end
	if core.fading( ) then
		log( 'Normal', 'ignored process spawning while fading' )
		return
	end
	if type( binary ) ~= 'string' then
		raise( 'calling spawn(agent, binary, ...): binary is not a string', 2 )
	end
	local sid, dids, isList
	local info = evinfo[ agent ]
	if info then
		sid, dids, isList = info[ 1 ], info[ 2 ], false
	else
		local li = elinfo[ agent ]
		if li == nil then raise( 'spawning with an unknown agent', 2 ) end
		sid, dids, isList = li[ 1 ], li[ 2 ], true
	end
	local argv, n = { binary }, 1
	local nargs = select( '#', ... )
	local args = { ... }
	for i = 1, nargs do
		local a = args[ i ]
		local t = type( a )
		if t == 'table' then
			for _, x in ipairs( a ) do
				local tx = type( x )
				if tx ~= 'string' and tx ~= 'number' then
					raise( 'spawn: argument of type ' .. tx .. ' in a table', 2 )
				end
				n = n + 1; argv[ n ] = tostring( x )
			end
		elseif t == 'string' or t == 'number' then
			n = n + 1; argv[ n ] = tostring( a )
		elseif a ~= nil then
			raise( 'spawn: argument of type ' .. t, 2 )
		end
	end
	local stdin
	if argv[ 2 ] == '<' then
		stdin = argv[ 3 ]
		if type( stdin ) ~= 'string' then
			core.log( 'Error', "in spawn(), expected a string after pipe '<'" )
			core.terminate( -1 )
		end
		table.remove( argv, 2 )
		table.remove( argv, 2 )
	end
	local pid = core.spawn( sid, dids, isList, argv, stdin )
	if pid then
		agents[ pid ] = agent
		markSpawned( sid, isList and dids or { dids } )
	end
end

function spawnShell( agent, command, ... )
	return spawn( agent, 'sh', '-c', command, 'sh', ... )
end

------------------------------------------------------------------------------
-- alarms (SPEC §2.2)
------------------------------------------------------------------------------
local alarms = { }

function alarm( timestamp, func, extra )
	if not core.isTimestamp( timestamp ) or core.tsSeconds( timestamp ) ~= core.tsSeconds( timestamp ) then
		raise( 'alarm: the time must be a timestamp (now() + seconds)', 2 )
	end
	if type( func ) ~= 'function' then
		raise( 'alarm: the second argument must be a function', 2 )
	end
	local pos = #alarms + 1
	for i = 1, #alarms do
		if timestamp < alarms[ i ].timestamp then pos = i; break end
	end
	table.insert( alarms, pos, { timestamp = timestamp, func = func, extra = extra } )
	core.setAlarm( alarms[ 1 ].timestamp )
end

-- fd -> { ready, writey }: callbacks for fds the main loop watches (SPEC §2.2).
local observers = { }

function observefd( fd, ready, writey )
	if math.type( fd ) ~= 'integer' or fd < 0 then
		raise( 'observefd: the fd must be an integer >= 0', 2 )
	end
	if observers[ fd ] then log( 'Masterloop', 'updating fd observance' ) end
	observers[ fd ] = { ready = ready, writey = writey }
	core.observeFd( fd, ready ~= nil, writey ~= nil )
end

function nonobservefd( fd )
	if math.type( fd ) ~= 'integer' or fd < 0 then
		raise( 'nonobservefd: the fd must be an integer >= 0', 2 )
	end
	observers[ fd ] = nil
	core.observeFd( fd, false, false )
end

------------------------------------------------------------------------------
-- Tunnels (SPEC §14.2): helper processes (an ssh port forward, say) that must
-- be up before a sync's transfers run. States DOWN -> CONNECTING -> UP, plus
-- RETRY_TIMEOUT after a failed start. The core calls hooks.tunnelTick every
-- cycle (and at least once a second) while tunnels exist, and
-- hooks.childExit for children it does not know (tunnel processes).
------------------------------------------------------------------------------
local tunnels = { }
local tunnelByPid = { }

Tunnel = { }
Tunnel.__index = Tunnel

-- Splits a command string like Layer 3 direct mode: at spaces outside double
-- quotes (the quotes are kept).
local function splitCommand( s )
	local args, cur, quoted = { }, { }, false
	for i = 1, #s do
		local c = sub( s, i, i )
		if c == '"' then quoted = not quoted end
		if c == ' ' and not quoted then
			if #cur > 0 then args[ #args + 1 ] = concat( cur ); cur = { } end
		else
			cur[ #cur + 1 ] = c
		end
	end
	if #cur > 0 then args[ #args + 1 ] = concat( cur ) end
	return args
end

function tunnel( opts )
	if type( opts ) ~= 'table' then raise( 'tunnel needs a table', 2 ) end
	local o = {
		mode = 'command', parallel = 1, distribution = 'rr', retryDelay = 10,
		readyDelay = 5, localhost = 'localhost', checkExitCodes = { 0 },
		checkMaxFailed = 5,
	}
	for k, v in pairs( opts ) do o[ k ] = v end
	if o.command == nil then raise( 'tunnel needs a command', 2 ) end
	local bad = default._validate.tunnel( o )
	if bad then raise( bad, 2 ) end
	if type( o.command ) == 'string' then o.command = splitCommand( o.command ) end
	o.name = o.name or ( 'Tunnel' .. ( #tunnels + 1 ) )
	local t = setmetatable( {
		options = o, state = 'DOWN', processes = { }, rr = 0, retryAt = nil,
	}, Tunnel )
	tunnels[ #tunnels + 1 ] = t
	core.tunnelsExist( )
	return t
end

function Tunnel:counts( t )
	local alive, ready = 0, 0
	for _, p in pairs( self.processes ) do
		alive = alive + 1
		if not p.ready and t - p.started >= self.options.readyDelay then p.ready = true end
		if p.ready then ready = ready + 1 end
	end
	return alive, ready
end

function Tunnel:spawnOne( )
	local o = self.options
	local data = { localhost = o.localhost }
	if o.mode == 'pool' then data.localport = core.freePort( ) end
	local argv = substitudeCommands( o.command, data )
	local pid = core.exec( argv )
	if pid then
		self.processes[ pid ] = { started = now( ), localport = data.localport, ready = false }
		tunnelByPid[ pid ] = self
		log( 'Tunnel', 'Tunnel ', o.name, ' started process ', pid )
	end
	return pid
end

function Tunnel:tick( t )
	local o = self.options
	if self.state == 'RETRY_TIMEOUT' then
		if t < self.retryAt then return end
		self.state = 'DOWN'
	end
	if self.state == 'DOWN' then
		if o.mode ~= 'command' and o.mode ~= 'pool' then
			error( 'unknown tunnel mode:' .. tostring( o.mode ) )
		end
		self.state = 'CONNECTING'
		log( 'Tunnel', 'Tunnel ', o.name, ' connecting' )
	end
	local alive, ready = self:counts( t )
	if self.state == 'CONNECTING' and ready > 0 then
		self.state = 'UP'
		log( 'Normal', 'Tunnel ', o.name, ' is up' )
	elseif self.state == 'UP' and ready == 0 then
		self.state = 'CONNECTING'
	end
	-- after a failed start no process starts before retryDelay, whatever the state
	if self.retryAt and t < self.retryAt then return end
	while alive < o.parallel do
		if not self:spawnOne( ) then break end
		alive = alive + 1
	end
end

-- A tunnel process exited.
function Tunnel:exited( pid, code )
	local p = self.processes[ pid ]
	self.processes[ pid ] = nil
	tunnelByPid[ pid ] = nil
	log( 'Tunnel', 'Tunnel ', self.options.name, ' process ', pid, ' exited: ', code )
	local _, ready = self:counts( now( ) )
	if not ( p and p.ready ) then
		-- a failed start of any process (not only the first of several) waits retryDelay;
		-- a second failure while waiting must not end the wait
		self.retryAt = now( ) + self.options.retryDelay
		if ready == 0 and self.state ~= 'RETRY_TIMEOUT' then
			self.state = 'RETRY_TIMEOUT'
			log( 'Warning', 'Starting tunnel failed.' )
		end
	elseif ready == 0 and self.state ~= 'RETRY_TIMEOUT' then
		self.state = 'CONNECTING'
	end
end

-- Substitution data of a ready process, round robin (pool mode).
function Tunnel:substitution( data )
	local ready = { }
	for pid, p in pairs( self.processes ) do
		if p.ready then ready[ #ready + 1 ] = pid end
	end
	table.sort( ready )
	data.localhost = self.options.localhost
	if #ready > 0 then
		self.rr = self.rr % #ready + 1
		data.localport = self.processes[ ready[ self.rr ] ].localport
	end
	return data
end

------------------------------------------------------------------------------
-- 2.3 helpers
------------------------------------------------------------------------------
function substitudeCommands( cmd, data )
	local function subst( s )
		if type( s ) ~= 'string' then return s end
		for k, v in pairs( data ) do
			s = string.gsub( s, '%^' .. k, ( string.gsub( tostring( v ), '%%', '%%%%' ) ) )
		end
		return s
	end
	if type( cmd ) == 'table' then
		local r = { }
		for i, v in ipairs( cmd ) do r[ i ] = subst( v ) end
		return r
	end
	return subst( cmd )
end

-- Queue: the double-ended list upstream's runner gives scripts. Queue.new( ) makes one;
-- q:push( v ) appends and returns the position, q:inject( v ) prepends, q:remove( pos ) takes
-- an entry out (the entries after it move down one place), q:replace( pos, v ), q:size( ),
-- q:first( ) and q:last( ) the end values, q:qpairs( ) and q:qpairsReverse( ) iterate over
-- ( position, value ). Entries are read as q[ pos ]; assigning to a queue is an error.
Queue = { }
do
	local state = { } -- the private key of a queue's { lo, hi, n, items }
	local mt = {
		__index = function( q, k )
			if type( k ) ~= 'number' then
				raise( 'Key "' .. tostring( k ) .. '" invalid for Queue', 2 )
			end
			return rawget( q, state ).items[ k ]
		end,
		__newindex = function( )
			raise( 'Queues are not directly assignable.', 2 )
		end,
	}
	local function st( q ) return rawget( q, state ) end
	local methods = { }
	function methods.size( q ) return st( q ).n end
	function methods.first( q ) local s = st( q ); return s.items[ s.lo ] end
	function methods.last( q ) local s = st( q ); return s.items[ s.hi ] end
	function methods.push( q, value )
		if value == nil then raise( 'Queue pushing nil value', 2 ) end
		local s = st( q )
		s.hi = s.hi + 1
		s.items[ s.hi ] = value
		s.n = s.n + 1
		return s.hi
	end
	function methods.inject( q, value )
		if value == nil then raise( 'Queue injecting nil value', 2 ) end
		local s = st( q )
		if s.n == 0 then return methods.push( q, value ) end
		s.lo = s.lo - 1
		s.items[ s.lo ] = value
		s.n = s.n + 1
		return s.lo
	end
	function methods.remove( q, pos )
		local s = st( q )
		if s.items[ pos ] == nil then raise( 'Removing nonexisting item in Queue', 2 ) end
		if pos == s.lo then
			s.items[ pos ] = nil
			s.lo = pos + 1
		else
			for i = pos, s.hi - 1 do s.items[ i ] = s.items[ i + 1 ] end
			s.items[ s.hi ] = nil
			s.hi = s.hi - 1
		end
		s.n = s.n - 1
		if s.n == 0 then s.lo, s.hi = 1, 0 end
	end
	function methods.replace( q, pos, value )
		local s = st( q )
		if s.items[ pos ] == nil then raise( 'Trying to replace an unset Queue entry.', 2 ) end
		s.items[ pos ] = value
	end
	function methods.qpairs( q )
		local s = st( q )
		return function( _, pos )
			pos = pos + 1
			if pos <= s.hi then return pos, s.items[ pos ] end
		end, q, s.lo - 1
	end
	function methods.qpairsReverse( q )
		local s = st( q )
		return function( _, pos )
			pos = pos - 1
			if pos >= s.lo then return pos, s.items[ pos ] end
		end, q, s.hi + 1
	end
	function Queue.new( )
		local q = { [ state ] = { lo = 1, hi = 0, n = 0, items = { } } }
		for name, f in pairs( methods ) do q[ name ] = f end
		return setmetatable( q, mt )
	end
end

function dump( tbl, indent )
	indent = indent or ''
	for k, v in pairs( tbl ) do
		if type( v ) == 'table' then
			print( indent .. tostring( k ) .. ':' )
			dump( v, indent .. '  ' )
		else
			print( indent .. tostring( k ) .. ': ' .. tostring( v ) )
		end
	end
end

local function splitQuotedString( s )
	local words = core.splitQuoted( s )
	return words
end

lsyncd = {
	log = function( cat, msg ) core.log( cat, msg ) end,
	now = function( ) return core.now( ) end,
	terminate = function( code ) terminate( code ) end,
	readdir = function( p ) return core.readdir( p ) end,
	realdir = function( p ) return ( core.realdir( p ) ) end,
	get_file_size = function( p ) return core.fileSize( p ) end,
	is_symlink = function( p ) return core.isSymlink( p ) end,
	file_type = function( p ) return core.fileType( p ) end,
	get_process_info = function( ) return core.processInfo( ) end,
	kill = function( pid, sig )
		return core.kill( integerArg( 'kill', 'the pid', pid ), integerArg( 'kill', 'the signal', sig ) )
	end,
	get_free_port = function( ) return core.freePort( ) end,
	observe_fd = function( fd, ready, writey ) observefd( fd, ready, writey ) end,
	nonobserve_fd = function( fd ) nonobservefd( fd ) end,
	jiffies_from_seconds = function( n )
		if type( n ) ~= 'number' then
			raise( 'jiffies_from_seconds: the seconds must be a number (got ' .. type( n ) .. ')', 2 )
		end
		return n * 100
	end,
	splitQuotedString = splitQuotedString,
	exec = function( binary, ... )
		local argv = { binary, ... }
		for i, v in ipairs( argv ) do argv[ i ] = tostring( v ) end
		return core.exec( argv )
	end,
	dump = dump,
	-- Internal fast paths of the bundled rsync layers (the same results as
	-- inlet.getEvents with a test on etype only, and as building the include
	-- list from elist.getPaths in Lua), computed in the core.
	_getEventsExcept = function( inlet, etypes )
		local sid = inletSid[ inlet ]
		return mklist( sid, core.getEventsExcept( sid, etypes ) )
	end,
	_includeList = function( elist )
		local info = elinfo[ elist ]
		return core.includeList( info[ 1 ], info[ 2 ] )
	end,
}

------------------------------------------------------------------------------
-- sync{} (SPEC §2.5)
------------------------------------------------------------------------------
local syncCount = 0

local function badSettingsAssignment( )
	core.log( 'Error', 'Do not use settings = { ... }\n'
		.. '      please use settings{ ... } (without the equal sign)' )
	core.terminate( -1 )
end

local addSync

function sync( opts )
	if running then
		raise( 'Sync can only be created during initialization.', 2 )
	end
	local inlet = addSync( opts, callerPos( 2 ) )
	return inlet
end

addSync = function( opts, where )
	if rawget( _G, 'settings' ) ~= settingsFn then badSettingsAssignment( ) end
	if type( opts ) ~= 'table' then raise( 'sync needs a table', 3 ) end
	syncCount = syncCount + 1
	local config = { }
	inherit( config, opts )
	inherit( config, default )
	for _, k in ipairs { 'delay', 'maxDelays', 'maxProcesses' } do
		if settingsTable[ k ] then config[ k ] = settingsTable[ k ] end
		if cliSettings[ k ] then config[ k ] = cliSettings[ k ] end
	end
	local bad = default._validate.sync( config )
	if bad then error( where .. bad, 0 ) end
	if type( config.prepare ) == 'function' then
		config.prepare( config, 4 )
	end
	if not config.source then
		core.log( 'Error', where .. 'source missing from sync.' )
		core.terminate( -1 )
	end
	local src = config.source
	local real, err = core.realdir( src )
	-- after a restart, a source that was there before and is away now is waited for
	if not real and type( src ) == 'string' then real = core.sourceAway( src ) end
	if not real then
		if err then
			core.log( 'Error', "cannot get absolute path of dir '" .. tostring( src ) .. "': " .. err )
		else
			core.log( 'Error', 'failure getting absolute path of [' .. tostring( src ) .. ']' )
		end
		core.log( 'Error', 'Cannot access source directory: ' .. tostring( src ) )
		core.terminate( -1 )
	end
	config._source = src
	config.source = real
	if not config.action and not config.onAttrib and not config.onCreate
	and not config.onModify and not config.onDelete and not config.onMove
	and not config.onFull
	then
		core.log( 'Error', where .. 'no actions specified.' )
		core.terminate( -1 )
	end
	-- -monitor wins; a sync naming none gets settings{}'s at initialization (settings{} may
	-- come after sync{} in the config)
	local monitor = cliSettings.monitor or config.monitor
	if monitor ~= nil and monitor ~= 'inotify' and monitor ~= 'fanotify' and monitor ~= 'auto' then
		core.log( 'Error', where .. 'event monitor "' .. tostring( monitor ) .. '" unknown.' )
		core.terminate( -1 )
	end
	config.monitor = monitor
	if config.name == nil then config.name = 'Sync' .. syncCount end
	local sid = core.addSync( config )
	evcache[ sid ] = { }
	evcache2[ sid ] = { }
	local inlet = mkinlet( sid )
	inletSid[ inlet ] = sid
	syncsL[ sid ] = { config = config, inlet = inlet }
	return inlet
end

------------------------------------------------------------------------------
-- Layer 3: string actions (SPEC §8)
------------------------------------------------------------------------------

-- variable token, event field, which event (1 = first, 2 = second);
-- in precedence order: a longer token comes before its prefixes.
local transVars = {
	{ '^pathname', 'pathname', 1 },
	{ '^pathdir', 'pathdir', 1 },
	{ '^path', 'path', 1 },
	{ '^sourcePathname', 'sourcePathname', 1 },
	{ '^sourcePathdir', 'sourcePathdir', 1 },
	{ '^sourcePath', 'sourcePath', 1 },
	{ '^source', 'source', 1 },
	{ '^targetPathname', 'targetPathname', 1 },
	{ '^targetPathdir', 'targetPathdir', 1 },
	{ '^targetPath', 'targetPath', 1 },
	{ '^target', 'target', 1 },
	{ '^o.pathname', 'pathname', 1 },
	{ '^o.path', 'path', 1 },
	{ '^o.sourcePathname', 'sourcePathname', 1 },
	{ '^o.sourcePathdir', 'sourcePathdir', 1 },
	{ '^o.sourcePath', 'sourcePath', 1 },
	{ '^o.targetPathname', 'targetPathname', 1 },
	{ '^o.targetPathdir', 'targetPathdir', 1 },
	{ '^o.targetPath', 'targetPath', 1 },
	{ '^d.pathname', 'pathname', 2 },
	{ '^d.path', 'path', 2 },
	{ '^d.sourcePathname', 'sourcePathname', 2 },
	{ '^d.sourcePathdir', 'sourcePathdir', 2 },
	{ '^d.sourcePath', 'sourcePath', 2 },
	{ '^d.targetPathname', 'targetPathname', 2 },
	{ '^d.targetPathdir', 'targetPathdir', 2 },
	{ '^d.targetPath', 'targetPath', 2 },
}

-- Splits s into a list of literal strings and variable indexes.
local function tokenize( s )
	local parts = { }
	local lit = { }
	local i, n = 1, #s
	while i <= n do
		local c = sub( s, i, i )
		local found
		if c == '^' then
			for vi, v in ipairs( transVars ) do
				if sub( s, i, i + #v[ 1 ] - 1 ) == v[ 1 ] then found = vi; break end
			end
		end
		if found then
			if #lit > 0 then parts[ #parts + 1 ] = concat( lit ); lit = { } end
			parts[ #parts + 1 ] = found
			i = i + #transVars[ found ][ 1 ]
		else
			lit[ #lit + 1 ] = c
			i = i + 1
		end
	end
	if #lit > 0 then parts[ #parts + 1 ] = concat( lit ) end
	return parts
end

local function varValue( vi, event, event2 )
	local v = transVars[ vi ]
	local ev = v[ 3 ] == 2 and event2 or event
	if ev == nil then
		raise( 'action uses ' .. v[ 1 ] .. ' but has no second event', 2 )
	end
	return ev[ v[ 2 ] ]
end

local function translate( command )
	command = match( command, '^%s*(.-)%s*$' )
	local first = sub( command, 1, 1 )
	if first == '/' then
		-- direct exec: split at spaces outside double quotes, quotes kept; as
		-- upstream, all whitespace (tabs, newlines) after a separating space is
		-- dropped, while other whitespace stays in the argument
		local args, cur, quoted, separating = { }, { }, false, false
		for i = 1, #command do
			local c = sub( command, i, i )
			if not ( separating and match( c, '^%s$' ) ) then
				separating = false
				if c == '"' then quoted = not quoted end
				if c == ' ' and not quoted then
					if #cur > 0 then args[ #args + 1 ] = concat( cur ); cur = { } end
					separating = true
				else
					cur[ #cur + 1 ] = c
				end
			end
		end
		if #cur > 0 then args[ #args + 1 ] = concat( cur ) end
		local targs = { }
		for i, a in ipairs( args ) do targs[ i ] = tokenize( a ) end
		log( 'FWrite', 'direct exec of "', command, '"' )
		return function( event, event2 )
			local argv = { }
			for i, parts in ipairs( targs ) do
				local s = { }
				for j, p in ipairs( parts ) do
					if type( p ) == 'number' then
						s[ j ] = varValue( p, event, event2 )
					else
						s[ j ] = p
					end
				end
				argv[ i ] = concat( s )
			end
			log( 'Normal', 'Event ', event.etype, ' spawns action "', command, '"' )
			spawn( event, argv[ 1 ], table.unpack( argv, 2 ) )
		end
	end
	if first == '^' then command = sub( command, 2 ) end
	local parts = tokenize( command )
	-- number the distinct variables in precedence order
	local used = { }
	for _, p in ipairs( parts ) do
		if type( p ) == 'number' then used[ p ] = true end
	end
	local order, num = { }, { }
	for vi = 1, #transVars do
		if used[ vi ] then order[ #order + 1 ] = vi; num[ vi ] = #order end
	end
	local rewritten = { }
	for i, p in ipairs( parts ) do
		if type( p ) == 'number' then
			rewritten[ i ] = '"$' .. num[ p ] .. '"'
		else
			rewritten[ i ] = p
		end
	end
	rewritten = concat( rewritten )
	log( 'FWrite', 'shell command "', rewritten, '"' )
	return function( event, event2 )
		local values = { }
		for i, vi in ipairs( order ) do values[ i ] = varValue( vi, event, event2 ) end
		if core.logEnabled( 'Normal' ) then
			local shown = { }
			for i, p in ipairs( parts ) do
				if type( p ) == 'number' then
					shown[ i ] = values[ num[ p ] ]
				else
					shown[ i ] = p
				end
			end
			log( 'Normal', 'Event ', event.etype, ' spawns shell "', concat( shown ), '"' )
		end
		spawnShell( event, rewritten, table.unpack( values, 1, #order ) )
	end
end

local translatedKeys = { 'onAttrib', 'onCreate', 'onDelete', 'onModify', 'onMove', 'onStartup' }

------------------------------------------------------------------------------
-- Global locking (SPEC §2.3)
------------------------------------------------------------------------------
local function lockGlobals( )
	setmetatable( _G, {
		__index = function( _, k )
			if k == '_' or ( type( k ) == 'string' and sub( k, 1, 2 ) == '__' ) then
				return nil
			end
			raise( 'Access of non-existing global "' .. tostring( k ) .. '"', 2 )
		end,
		__newindex = function( t, k, v )
			if k == '_' or ( type( k ) == 'string' and sub( k, 1, 2 ) == '__' ) then
				rawset( t, k, v )
				return
			end
			error( 'Lsyncd does not allow GLOBALS to be created on the fly. '
				.. 'Declare "' .. tostring( k ) .. '" local or declare global on load.', 2 )
		end,
	} )
end

------------------------------------------------------------------------------
-- Hooks for the core
------------------------------------------------------------------------------
local hooks = { }

-- Before the config runs: command-line settings that sync{} applies.
function hooks.setCli( cli, isFirstRun )
	for k, v in pairs( cli ) do cliSettings[ k ] = v end
	firstRun = isFirstRun
end

-- Initialization after the config file ran (SPEC §2.1 step 8).
-- shortcuts: array of { kind = 'rsync'|'rsyncssh'|'direct', ... }
function hooks.initialize( shortcuts )
	if rawget( _G, 'settings' ) ~= settingsFn then badSettingsAssignment( ) end
	lockGlobals( )
	for k, v in pairs( cliSettings ) do settingsTable[ k ] = v end
	if not firstRun then settingsTable.insist = true end
	for _, s in ipairs( shortcuts ) do
		if s.kind == 'rsync' then
			addSync( { default.rsync, source = s.source, target = s.target }, '' )
		elseif s.kind == 'rsyncssh' then
			local o = { default.rsyncssh, source = s.source, host = s.host, targetdir = s.targetdir }
			if s.sshopts then o.ssh = { _extra = s.sshopts } end
			addSync( o, '' )
		else
			addSync( { default.direct, source = s.source, target = s.target }, '' )
		end
	end
	for _, s in pairs( syncsL ) do
		if s.config.monitor == nil then s.config.monitor = settingsTable.monitor or 'inotify' end
	end
	if settingsTable.statusInterval == nil then
		settingsTable.statusInterval = default.statusInterval
	end
	running = true
	return settingsTable
end

-- Layer 3 translation, after the startup line was logged (SPEC §2.1 step 8j).
function hooks.translate( )
	for _, s in pairs( syncsL ) do
		local config = s.config
		for _, k in ipairs( translatedKeys ) do
			if type( config[ k ] ) == 'string' then
				config[ k ] = translate( config[ k ] )
			end
		end
	end
end

function hooks.init( sid, did )
	local s = syncsL[ sid ]
	s.config.init( mkevent( sid, did ) )
end

function hooks.full( sid, did, collapsed )
	local s = syncsL[ sid ]
	local ev = mkevent( sid, did )
	if collapsed then rawset( ev, 'collapsed', true ) end
	s.config.full( ev )
end

function hooks.action( sid )
	local s = syncsL[ sid ]
	s.config.action( s.inlet )
end

function hooks.hasFull( sid )
	return type( syncsL[ sid ].config.full ) == 'function'
end

-- A child of a sync exited: returns what its collect said.
function hooks.collect( sid, pid, exitcode )
	local agent = agents[ pid ]
	agents[ pid ] = nil
	if agent == nil then return nil end
	log( 'Delay', agent.isList and 'collected a list' or 'collected an event' )
	local config = syncsL[ sid ].config
	if type( config.collect ) ~= 'function' then return nil end
	local rc = config.collect( agent, exitcode )
	if type( rc ) ~= 'string' then return nil end
	return rc
end

-- A child whose exit is not judged by collect (killed by a signal, or never started).
function hooks.dropAgent( pid )
	agents[ pid ] = nil
end

-- Delays that are gone: forget their event tables.
-- list: flat array sid1, did1, sid2, did2, ...
function hooks.forget( list )
	for i = 1, #list, 2 do
		local sid, did = list[ i ], list[ i + 1 ]
		evcache[ sid ][ did ] = nil
		evcache2[ sid ][ did ] = nil
	end
end

-- An observed fd is ready: its callbacks get the fd.
function hooks.fdReady( fd, readable, writable )
	local o = observers[ fd ]
	if o == nil then return end
	if readable and o.ready then o.ready( fd ) end
	o = observers[ fd ]
	if writable and o and o.writey then o.writey( fd ) end
end

-- Tunnels: start, watch and restart their processes; hold the syncs whose
-- tunnel is not up.
function hooks.tunnelTick( )
	local t = now( )
	for _, tun in ipairs( tunnels ) do tun:tick( t ) end
	for sid, s in pairs( syncsL ) do
		local tun = s.config.tunnel
		if type( tun ) == 'table' and getmetatable( tun ) == Tunnel then
			core.holdSync( sid, tun.state ~= 'UP' )
		end
	end
end

-- A child the core does not know exited: a tunnel process, or lsyncd.exec's.
function hooks.childExit( pid, code )
	local tun = tunnelByPid[ pid ]
	if tun then tun:exited( pid, code ) end
end

-- The end of a run, or terminate(): tunnel processes are killed (SPEC §14.2).
killTunnelProcesses = function( )
	for pid in pairs( tunnelByPid ) do core.kill( pid, 9 ) end
end
hooks.killTunnels = killTunnelProcesses

-- The tunnel section of the status file (SPEC §12.1).
function hooks.tunnelStatus( )
	local out = { }
	for _, tun in ipairs( tunnels ) do
		local n = 0
		for _ in pairs( tun.processes ) do n = n + 1 end
		out[ #out + 1 ] = 'Tunnel: name=' .. tun.options.name .. ' status=' .. tun.state .. '\n'
		out[ #out + 1 ] = 'Running processes: ' .. n .. '\n'
		for pid, p in pairs( tun.processes ) do
			out[ #out + 1 ] = '  pid=' .. pid .. ' type=' .. tun.options.mode
				.. ' started=' .. p.started.string .. '\n'
		end
		out[ #out + 1 ] = '\n\n'
	end
	return concat( out )
end

-- Runs the user alarms that are due; tells the core when the next one is.
function hooks.runAlarms( )
	local t = core.now( )
	while alarms[ 1 ] and alarms[ 1 ].timestamp <= t do
		local a = table.remove( alarms, 1 )
		a.func( a.timestamp, a.extra )
	end
	core.setAlarm( alarms[ 1 ] and alarms[ 1 ].timestamp )
end

-- The config test mode's summary: one line per sync.
function hooks.summary( )
	local lines = { }
	for sid = 0, #syncsL do
		local s = syncsL[ sid ]
		if s then
			local c = s.config
			local target = c.target
			if target == nil and c.host then
				target = tostring( c.host ) .. ':' .. tostring( c.targetdir )
			end
			lines[ #lines + 1 ] = tostring( c.name ) .. ': ' .. c.source .. ' -> '
				.. tostring( target ) .. ' (delay ' .. tostring( c.delay or 0 ) .. ')'
		end
	end
	return table.concat( lines, '\n' )
end

function hooks.settings( )
	return settingsTable
end

function hooks.syncConfig( sid )
	return syncsL[ sid ].config
end

return hooks
