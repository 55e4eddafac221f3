# lsyncd: build, test, lint, install.
#
#   make build              release binary in target/release/lsyncd
#   make test               install the test dependencies when missing, then run all tests
#   make lint               rustfmt check and clippy with warnings as errors
#   make install            binary (and man page) under $(DESTDIR)$(PREFIX)
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
# openssh-server and openssh-client must be installed. Missing ones are installed with apt-get
# (root, or password-less sudo); otherwise this fails and names them.
deps:
	@missing=""; \
	command -v rsync >/dev/null 2>&1 || missing="$$missing rsync"; \
	command -v ssh >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	{ command -v sshd >/dev/null 2>&1 || test -x /usr/sbin/sshd; } || missing="$$missing openssh-server"; \
	command -v groff >/dev/null 2>&1 || missing="$$missing groff-base"; \
	command -v kill >/dev/null 2>&1 && test -x /bin/kill || missing="$$missing procps"; \
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

# install: the binary and the man page under $(PREFIX); the service files where systemd, init,
# logrotate and sysctl look for them, which is /etc and /lib whatever PREFIX is; the example
# config under $(PREFIX)/share/doc. The unit and the init script get the binary's real path.
# /etc/lsyncd is created, but a config in it is never written, replaced or removed: the
# service starts once the administrator has put lsyncd.conf.lua there.
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
LOGDIR ?= /var/log/lsyncd
ETCDIR = $(DESTDIR)$(SYSCONFDIR)
SYSTEMDDIR = $(DESTDIR)$(UNITDIR)
DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/lsyncd
EXAMPLEDIR = $(DOCDIR)/examples
SUBST_BIN = sed 's|/usr/bin/lsyncd|$(PREFIX)/bin/lsyncd|g'

install:
	@test -x $(BIN) || { echo "error: $(BIN) not found; run make build first" >&2; exit 1; }
	install -d $(BINDIR) $(MANDIR) $(SYSTEMDDIR) $(ETCDIR)/init.d $(ETCDIR)/logrotate.d \
		$(ETCDIR)/sysctl.d $(ETCDIR)/lsyncd $(EXAMPLEDIR) $(DESTDIR)$(LOGDIR)
	install -m 0755 $(BIN) $(BINDIR)/lsyncd
	install -m 0644 $(MAN) $(MANDIR)/lsyncd.1
	$(SUBST_BIN) init/lsyncd.service > $(SYSTEMDDIR)/lsyncd.service
	chmod 0644 $(SYSTEMDDIR)/lsyncd.service
	$(SUBST_BIN) init/lsyncd > $(ETCDIR)/init.d/lsyncd
	chmod 0755 $(ETCDIR)/init.d/lsyncd
	install -m 0644 init/lsyncd.logrotate $(ETCDIR)/logrotate.d/lsyncd
	install -m 0644 init/90-lsyncd-inotify.conf $(ETCDIR)/sysctl.d/90-lsyncd-inotify.conf
	install -m 0644 init/lsyncd.conf.lua $(EXAMPLEDIR)/lsyncd.conf.lua

# Removes what install put there. The config in /etc/lsyncd and logs stay; their directories
# are removed only when empty.
uninstall:
	rm -f $(BINDIR)/lsyncd $(MANDIR)/lsyncd.1 $(SYSTEMDDIR)/lsyncd.service \
		$(ETCDIR)/init.d/lsyncd $(ETCDIR)/logrotate.d/lsyncd \
		$(ETCDIR)/sysctl.d/90-lsyncd-inotify.conf $(EXAMPLEDIR)/lsyncd.conf.lua
	for d in $(EXAMPLEDIR) $(DOCDIR) $(ETCDIR)/lsyncd $(DESTDIR)$(LOGDIR); do \
		rmdir "$$d" 2>/dev/null || true; \
	done

# Side-by-side benchmark against upstream lsyncd 2.2.3 (installs lsyncd, inotify-tools and rsync
# with apt-get when missing; run as root so it can raise the inotify limits). Report:
# target/bench/report.md. `make bench BENCH_ARGS=--quick` runs one round of small sizes;
# `make bench BENCH_ARGS=--help` lists the options.
BENCH_ARGS ?=

.PHONY: bench
bench: build
	$(CARGO) bench --bench compare -- $(BENCH_ARGS)
