# lsyncd: build, test, lint, install.
#
#   make build              release binary in target/release/lsyncd
#   make test               install the test dependencies when missing, then run all tests
#   make lint               rustfmt check and clippy with warnings as errors
#   make install            binary, man page and service files under $(DESTDIR)$(PREFIX)
#   make deb                a Debian package (lsyncd-rs) in target/
#   make uninstall          remove what install put there

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
BINDIR = $(DESTDIR)$(PREFIX)/bin
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man1
BIN = target/release/lsyncd
MAN = man/lsyncd.1

.PHONY: build test deps lint install uninstall

build:
	$(CARGO) build --release

test: deps
	$(CARGO) test --release

# The integration tests run the real rsync (and the rsyncssh tests their own sshd), so rsync,
# openssh-server and openssh-client must be installed; the packaging tests need
# systemd-analyze (systemd: only the tool is used, nothing is started), the LSB init functions
# (sysvinit-utils) and objdump/strip (binutils). Missing ones are installed with apt-get
# (root, or password-less sudo); otherwise this fails and names them.
deps:
	@missing=""; \
	command -v rsync >/dev/null 2>&1 || missing="$$missing rsync"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	{ command -v sshd >/dev/null 2>&1 || test -x /usr/sbin/sshd; } || missing="$$missing openssh-server"; \
	command -v groff >/dev/null 2>&1 || missing="$$missing groff-base"; \
	command -v kill >/dev/null 2>&1 && test -x /bin/kill || missing="$$missing procps"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	test -r /lib/lsb/init-functions || missing="$$missing sysvinit-utils"; \
	command -v objdump >/dev/null 2>&1 && command -v strip >/dev/null 2>&1 || missing="$$missing binutils"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "Installing test dependencies:$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "error: missing packages:$$missing. Install them as root (apt-get install$$missing) and run make test again." >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "error: missing packages:$$missing, and no apt-get to install them with. Install them and run make test again." >&2; exit 1; fi; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# install: everything under $(DESTDIR)$(PREFIX) unless asked otherwise: the binary, the man
# page, the example config and defaults file ($(PREFIX)/share/doc/lsyncd/examples), the systemd
# units ($(UNITDIR), which systemd reads for /usr/local too), the init script, logrotate and
# sysctl snippets ($(SYSCONFDIR)) and the log directory ($(LOGDIR)). The service files get the
# real paths of the binary, the config directory, the defaults file and the logs.
# A distribution layout sets them explicitly, as `make deb` does:
#   make install PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system LOGDIR=/var/log/lsyncd
# $(SYSCONFDIR)/lsyncd is created, but a config in it is never written, replaced or removed:
# the service starts once the administrator has put lsyncd.conf.lua there.
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
LOGDIR ?= $(PREFIX)/var/log/lsyncd
ETCDIR = $(DESTDIR)$(SYSCONFDIR)
SYSTEMDDIR = $(DESTDIR)$(UNITDIR)
DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/lsyncd
EXAMPLEDIR = $(DOCDIR)/examples
SUBST = sed -e 's|/usr/bin/lsyncd|$(PREFIX)/bin/lsyncd|g' -e 's|/etc/lsyncd/|$(SYSCONFDIR)/lsyncd/|g' \
	-e 's|/etc/default/lsyncd|$(SYSCONFDIR)/default/lsyncd|g' -e 's|/var/log/lsyncd|$(LOGDIR)|g'
UNITS = lsyncd.service lsyncd@.service

install:
	@test -x $(BIN) || { echo "error: $(BIN) not found; run make build first" >&2; exit 1; }
	install -d $(BINDIR) $(MANDIR) $(SYSTEMDDIR) $(ETCDIR)/init.d $(ETCDIR)/logrotate.d \
		$(ETCDIR)/sysctl.d $(ETCDIR)/lsyncd $(EXAMPLEDIR) $(DESTDIR)$(LOGDIR)
	install -m 0755 $(BIN) $(BINDIR)/lsyncd
	install -m 0644 $(MAN) $(MANDIR)/lsyncd.1
	for u in $(UNITS); do \
		$(SUBST) init/$$u > $(SYSTEMDDIR)/$$u && chmod 0644 $(SYSTEMDDIR)/$$u || exit 1; \
	done
	$(SUBST) init/lsyncd > $(ETCDIR)/init.d/lsyncd
	chmod 0755 $(ETCDIR)/init.d/lsyncd
	$(SUBST) init/lsyncd.logrotate > $(ETCDIR)/logrotate.d/lsyncd
	chmod 0644 $(ETCDIR)/logrotate.d/lsyncd
	install -m 0644 init/90-lsyncd-inotify.conf $(ETCDIR)/sysctl.d/90-lsyncd-inotify.conf
	install -m 0644 init/lsyncd.conf.lua $(EXAMPLEDIR)/lsyncd.conf.lua
	$(SUBST) init/lsyncd.default > $(EXAMPLEDIR)/default
	chmod 0644 $(EXAMPLEDIR)/default

# Removes what install put there. The config in $(SYSCONFDIR)/lsyncd and logs stay; their
# directories are removed only when empty.
uninstall:
	rm -f $(BINDIR)/lsyncd $(MANDIR)/lsyncd.1 $(SYSTEMDDIR)/lsyncd.service \
		$(SYSTEMDDIR)/lsyncd@.service $(ETCDIR)/init.d/lsyncd $(ETCDIR)/logrotate.d/lsyncd \
		$(ETCDIR)/sysctl.d/90-lsyncd-inotify.conf $(EXAMPLEDIR)/lsyncd.conf.lua \
		$(EXAMPLEDIR)/default
	for d in $(EXAMPLEDIR) $(DOCDIR) $(ETCDIR)/lsyncd $(DESTDIR)$(LOGDIR); do \
		rmdir "$$d" 2>/dev/null || true; \
	done

# deb: a Debian package, target/lsyncd-rs_VERSION_ARCH.deb, of the distribution layout above.
# It provides, conflicts with and replaces Debian's lsyncd, whose /etc/lsyncd/lsyncd.conf.lua
# and /etc/default/lsyncd keep working; its version (2.3.1+rsCRATE-1) sorts after 2.2.3.
# `make package-deb` packages the binary already built ($(BIN)) into $(DEBOUT).
CRATE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB_VERSION = 2.3.1+rs$(CRATE_VERSION)-1
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_MAINTAINER ?= lsyncd-rs packagers <packagers@lsyncd-rs.invalid>
DEBOUT ?= target
DEBROOT = $(DEBOUT)/deb-root
DEB = $(DEBOUT)/lsyncd-rs_$(DEB_VERSION)_$(DEB_ARCH).deb

.PHONY: deb package-deb
deb: build
	$(MAKE) --no-print-directory package-deb

package-deb:
	rm -rf $(DEBROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEBROOT)) PREFIX=/usr \
		SYSCONFDIR=/etc UNITDIR=/lib/systemd/system LOGDIR=/var/log/lsyncd BIN=$(BIN)
	strip --strip-unneeded $(DEBROOT)/usr/bin/lsyncd
	gzip -9n $(DEBROOT)/usr/share/man/man1/lsyncd.1
	install -D -m 0644 packaging/deb/copyright $(DEBROOT)/usr/share/doc/lsyncd-rs/copyright
	install -d $(DEBROOT)/DEBIAN
	install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm \
		$(DEBROOT)/DEBIAN/
	cd $(DEBROOT) && find etc -type f | sed 's|^|/|' | LC_ALL=C sort > DEBIAN/conffiles
	glibc=$$(objdump -T $(DEBROOT)/usr/bin/lsyncd | grep -o 'GLIBC_[0-9.]*' | \
		sed 's/GLIBC_//' | sort -uV | tail -n 1); \
	size=$$(du -sk --exclude=DEBIAN $(DEBROOT) | cut -f1); \
	sed -e 's|@VERSION@|$(DEB_VERSION)|g' -e 's|@ARCH@|$(DEB_ARCH)|' \
		-e 's|@MAINTAINER@|$(DEB_MAINTAINER)|' -e "s|@SIZE@|$$size|" \
		-e "s|@GLIBC@|$$glibc|" packaging/deb/control.in > $(DEBROOT)/DEBIAN/control
	cd $(DEBROOT) && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort | \
		xargs md5sum > DEBIAN/md5sums
	dpkg-deb --root-owner-group --build $(DEBROOT) $(DEB)

# Side-by-side benchmark against upstream lsyncd 2.2.3 (installs lsyncd, inotify-tools and rsync
# with apt-get when missing; run as root so it can raise the inotify limits). Report:
# target/bench/report.md. `make bench BENCH_ARGS=--quick` runs one round of small sizes;
# `make bench BENCH_ARGS=--help` lists the options.
BENCH_ARGS ?=

.PHONY: bench
bench: build
	$(CARGO) bench --bench compare -- $(BENCH_ARGS)
