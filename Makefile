# nlmcast: kernel netlink events on loopback IP multicast.
GO      ?= go
CC      ?= cc
BIN     := bin
FUZZTIME ?= 500000x

.PHONY: all deps build examples test unit integration allocs fuzz benchmarks bench demo vet staticcheck clean

all: build examples

# Without cgo: --user changes every thread's privileges (syscall.AllThreadsSyscall).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/nlmcast ./cmd/nlmcast

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

# The zero-allocation guards of the per-event path (skipped under -race).
allocs:
	$(GO) test -count=1 -run 'Allocates' -v ./frame ./mcast ./receiver ./netlinkbridge

# Go benchmarks of the per-event path (encoders, the bridge's forwarding).
# They report; they never fail on a timing. BENCHTIME=2s for steadier numbers.
BENCHTIME ?= 1s
benchmarks:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./frame ./netlinkbridge ./mcast ./receiver

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
	$(GO) test ./decode -run '^$$' -fuzz '^FuzzRedactXfrm$$' -fuzztime $(FUZZTIME)

# The self-contained demo (root): a throwaway namespace, the bridge, direct
# netlink and multicast side by side, real changes.
demo: deps build
	./examples/demo.sh $(BIN)/nlmcast

clean:
	rm -rf $(BIN)
