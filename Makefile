# nlmcast: kernel netlink events on loopback IP multicast.
GO      ?= go
CC      ?= cc
BIN     := bin
FUZZTIME ?= 500000x

.PHONY: all deps build examples test unit integration allocs fuzz benchmarks bench demo vet staticcheck clean install

all: build examples

# Without cgo: --user changes every thread's privileges (syscall.AllThreadsSyscall).
# -buildvcs=auto stamps the commit (nlmcast version) from a git checkout, even
# where GOFLAGS says -buildvcs=false, and builds without it elsewhere.
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o $(BIN)/nlmcast ./cmd/nlmcast

examples: build
	$(CC) -O2 -Wall -Wextra -Werror -o $(BIN)/nlmcast_recv examples/c/nlmcast_recv.c -lcrypto
	$(GO) build -o $(BIN)/recv ./examples/go/recv

# What the tests need from Debian's packages (asks first, unless CI=true).
deps:
	bash scripts/deps.sh

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# staticcheck at the version pinned in go.mod (a Go tool dependency).
staticcheck:
	$(GO) tool staticcheck ./...

# Every test: unit tests, the examples against the test vectors, and the
# integration tests, which need root (they make their own network
# namespaces). Under CI=true, anything missing fails instead of skipping.
test: deps vet staticcheck examples
	$(GO) test -race -count=1 ./...
	$(MAKE) allocs
	$(MAKE) benchmarks BENCHTIME=200x
	$(MAKE) fuzz FUZZTIME=200000x

# The zero-allocation guards of the per-event path and of the bridge's
# membership watch (skipped under -race).
allocs:
	$(GO) test -count=1 -run 'Allocates' -v ./frame ./mcast ./receiver ./decode ./netlinkbridge

# Go benchmarks of the per-event path (encoders, the bridge's forwarding).
# They report; they never fail on a timing. BENCHTIME=2s for steadier numbers.
BENCHTIME ?= 1s
benchmarks:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./frame ./decode ./netlinkbridge ./mcast ./receiver ./internal/metrics

# The benchmark command (root): loss, latency and cost against direct
# netlink, in a namespace of its own. BENCHFLAGS="--json" and so on.
bench: build
	$(BIN)/nlmcast bench $(BENCHFLAGS)

unit: vet
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: build
	$(GO) test -race -count=1 -v ./integration

# Each fuzz target briefly: FUZZTIME is a count of inputs (Nx) or a duration
# (e.g. 1m) for a longer hunt. A count avoids a spurious "context deadline
# exceeded" that short durations can end with.
fuzz:
	$(GO) test ./frame -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./frame -run '^$$' -fuzz '^FuzzParseJSON$$' -fuzztime $(FUZZTIME)
	$(GO) test ./frame -run '^$$' -fuzz '^FuzzReassemble$$' -fuzztime $(FUZZTIME)
	$(GO) test ./frame -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./frame -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME)
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzDecodeFamilies$$' -fuzztime $(FUZZTIME)
	$(GO) test ./capture -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/tool/recording -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME)
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzRedactXfrm$$' -fuzztime $(FUZZTIME)
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzAppendRoute$$' -fuzztime $(FUZZTIME)
	$(GO) test ./frame -run '^$$' -fuzz '^FuzzAppendJSONSummaryBytes$$' -fuzztime $(FUZZTIME)

# The self-contained demo (root): a throwaway namespace, the bridge, direct
# netlink and multicast side by side, real changes.
demo: deps build
	./examples/demo.sh $(BIN)/nlmcast

# Install the program, the systemd unit, its sysusers.d user, the man page
# and the reference configuration (CONFIG, dist/nlmcast.toml; skipped when
# CONFIG names no file), under DESTDIR (a staging root for packages; empty:
# /) and PREFIX. Units and sysusers.d files go under $(PREFIX)/lib, where
# systemd looks for both /usr/local and /usr; the unit's ExecStart names
# $(BINDIR)/nlmcast and $(SYSCONFDIR)/nlmcast/nlmcast.toml. The
# configuration goes to SYSCONFDIR (/etc, whatever PREFIX), never over an
# existing file.
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
CONFIG      ?= dist/nlmcast.toml

install: build
	@set -e; umask 022; \
	run() { echo "$$*"; "$$@"; }; \
	run install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(MANDIR)/man8; \
	run install -m 0755 $(BIN)/nlmcast $(DESTDIR)$(BINDIR)/nlmcast; \
	echo "sed -e 's|/usr/local/bin/nlmcast|$(BINDIR)/nlmcast|g' -e 's|/etc/nlmcast/|$(SYSCONFDIR)/nlmcast/|g' dist/systemd/nlmcast.service > $(DESTDIR)$(UNITDIR)/nlmcast.service"; \
	sed -e 's|/usr/local/bin/nlmcast|$(BINDIR)/nlmcast|g' -e 's|/etc/nlmcast/|$(SYSCONFDIR)/nlmcast/|g' dist/systemd/nlmcast.service > $(DESTDIR)$(UNITDIR)/nlmcast.service; \
	run chmod 0644 $(DESTDIR)$(UNITDIR)/nlmcast.service; \
	run install -m 0644 dist/sysusers.d/nlmcast.conf $(DESTDIR)$(SYSUSERSDIR)/nlmcast.conf; \
	run install -m 0644 dist/nlmcast.8 $(DESTDIR)$(MANDIR)/man8/nlmcast.8; \
	if [ -f $(CONFIG) ]; then \
		run install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/nlmcast; \
		if [ -e $(DESTDIR)$(SYSCONFDIR)/nlmcast/nlmcast.toml ]; then \
			echo "install: $(DESTDIR)$(SYSCONFDIR)/nlmcast/nlmcast.toml exists: left as it is ($(CONFIG) is the reference)"; \
		else \
			run install -m 0644 $(CONFIG) $(DESTDIR)$(SYSCONFDIR)/nlmcast/nlmcast.toml; \
		fi; \
	fi

clean:
	rm -rf $(BIN)
