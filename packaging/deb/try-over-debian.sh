#!/bin/sh
# Installs a built lsyncd-rs package over Debian's lsyncd, configured the Debian way, and checks
# that the configuration keeps working: /etc/lsyncd/lsyncd.conf.lua, and /etc/default/lsyncd
# with Debian's DAEMON_ARGS (the whole argument list) and NICELEVEL.
#
#   sudo packaging/deb/try-over-debian.sh target/lsyncd-rs_*.deb
#
# Nothing on this machine changes: everything happens in a private mount namespace, on an
# overlay over / whose writes go to a tmpfs, inside a chroot. Debian's lsyncd is installed
# there with apt-get when the machine does not have it. Needs root, unshare and overlayfs.
# Exits 0 when every check passed.
set -eu

deb="$(readlink -f "${1:?usage: $0 PACKAGE.deb}")"
if [ "${TRY_OVER_DEBIAN_INNER:-}" != 1 ]; then
	exec unshare -m --propagation private env TRY_OVER_DEBIAN_INNER=1 sh "$0" "$deb"
fi

work="$(mktemp -d)"
trap 'umount -R "$work" 2>/dev/null || umount -l "$work"; rmdir "$work"' EXIT
mount -t tmpfs tmpfs "$work"
mkdir -p "$work/up" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/up,workdir=$work/work" "$work/root"
mount -t proc proc "$work/root/proc"
mount --rbind /dev "$work/root/dev"
mount -t tmpfs tmpfs "$work/root/run"
mount -t tmpfs tmpfs "$work/root/tmp"
mkdir -p "$work/root/run/lock"
cp "$deb" "$work/root/pkg.deb"

cat >"$work/root/try.sh" <<'EOF'
set -u
fail() { echo "FAILED: $*" >&2; exit 1; }
# Act as on a booted system: no policy-rc.d veto, no systemctl redirection.
rm -f /usr/sbin/policy-rc.d
export SYSTEMCTL_SKIP_REDIRECT=1 DEBIAN_FRONTEND=noninteractive
if ! dpkg -s lsyncd >/dev/null 2>&1; then
	apt-get install -y -q lsyncd >/dev/null || fail "cannot install Debian's lsyncd"
fi
mkdir -p /srv/src /srv/dst /etc/lsyncd /var/log/lsyncd
echo one >/srv/src/one
cat >/etc/lsyncd/lsyncd.conf.lua <<'L'
settings { logfile = "/var/log/lsyncd/lsyncd.log" }
sync { default.rsync, source = "/srv/src", target = "/srv/dst", delay = 1 }
L
cat >/etc/default/lsyncd <<'D'
DAEMON_ARGS="-insist -pidfile /var/run/lsyncd.pid /etc/lsyncd/lsyncd.conf.lua"
NICELEVEL=5
D
/etc/init.d/lsyncd start >/dev/null || fail "Debian's lsyncd does not start"
dpkg -i /pkg.deb >/dev/null || fail "dpkg -i"
dpkg -s lsyncd >/dev/null 2>&1 && dpkg -s lsyncd | grep -q '^Status: install ok installed' &&
	fail "Debian's lsyncd is still installed"
/usr/bin/lsyncd -version | sed -n 2p | grep -q '^lsyncd-rs ' || fail "/usr/bin/lsyncd is not ours"
# A boot starts it (invoke-rc.d in postinst cannot tell the runlevel inside a chroot).
/etc/init.d/lsyncd start >/dev/null || fail "start"
pid="$(cat /var/run/lsyncd.pid)" || fail "no pidfile from DAEMON_ARGS"
[ "$(readlink "/proc/$pid/exe")" = /usr/bin/lsyncd ] || fail "the running daemon is not ours"
tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '-insist -pidfile /var/run/lsyncd.pid /etc/lsyncd/lsyncd.conf.lua' ||
	fail "DAEMON_ARGS not used as the argument list"
[ "$(ps -o ni= -p "$pid" | tr -d ' ')" = 5 ] || fail "NICELEVEL not applied"
echo two >/srv/src/two
i=0
while [ ! -e /srv/dst/two ]; do
	i=$((i + 1)); [ "$i" -gt 100 ] && fail "no sync"; sleep 0.1
done
/etc/init.d/lsyncd status >/dev/null || fail "status"
/etc/init.d/lsyncd reload >/dev/null || fail "reload"
/etc/init.d/lsyncd stop >/dev/null || fail "stop"
[ ! -e /var/run/lsyncd.pid ] || fail "pidfile left after stop"
echo "OK: lsyncd-rs replaced Debian's lsyncd; its config and /etc/default/lsyncd keep working"
EOF
chroot "$work/root" /bin/sh /try.sh
