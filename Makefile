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

install:
	@test -x $(BIN) || { echo "error: $(BIN) not found; run make build first" >&2; exit 1; }
	install -d $(BINDIR)
	install -m 0755 $(BIN) $(BINDIR)/lsyncd
	if [ -f $(MAN) ]; then install -d $(MANDIR) && install -m 0644 $(MAN) $(MANDIR)/lsyncd.1; fi

uninstall:
	rm -f $(BINDIR)/lsyncd $(MANDIR)/lsyncd.1
