// Package layers holds the test that enforces the layer rule of
// ARCHITECTURE.md: which package of this module may depend on which.
package layers

import (
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/nlmcast/nlmcast"

// allowed maps a package (a path below the module; a trailing /... covers
// the packages below it) to the packages of this module it may depend on,
// directly or not. A package not listed here fails the test: a new package
// takes its place in the rule when it is added.
var allowed = map[string][]string{
	// The wire and the catalog: nothing of ours.
	"frame":   nil,
	"streams": nil,
	// Pure decoding: no I/O of ours.
	"decode": nil,
	// Key files: their keys are the frame codec's.
	"keys": {"frame"},
	// System call primitives: only each other.
	"internal/sys/...": {"internal/sys/..."},
	// The capture file format (pcapng) stands alone.
	"capture": nil,
	// Test helpers.
	"internal/testenv": nil,
	"internal/testmsg": nil,
	// Kernel I/O reads netlink and may decode what it must understand
	// (the process connector's acknowledgement).
	"kernel": {"decode", "streams", "internal/sys/..."},
	// Multicast knows nothing of netlink.
	"mcast": {"internal/sys/..."},
	// Receivers need multicast and the frame codec, never netlink.
	"receiver": {"frame", "keys", "streams", "mcast", "internal/sys/..."},
	// The fleet carries frames through NATS: a receiver of its own kind.
	"fleet": {"receiver", "frame", "keys", "streams", "mcast", "internal/sys/..."},
	// The bridge ties the layers together.
	"netlinkbridge": {"kernel", "decode", "frame", "keys", "streams", "mcast", "internal/sys/..."},
	// Prometheus metrics: collectors reading the libraries' Stats
	// snapshots at scrape time.
	"internal/metrics": {"netlinkbridge", "receiver", "kernel", "decode", "frame", "keys", "streams", "mcast", "internal/sys/..."},
	// Tools behind the command.
	"internal/tool/...": {"internal/tool/...", "capture", "fleet", "netlinkbridge", "receiver", "kernel", "decode", "frame", "keys", "streams", "mcast", "internal/sys/..."},
	// The command only turns flags into configs; it may use anything but
	// tests.
	"cmd/nlmcast": {"internal/tool/...", "internal/metrics", "capture", "fleet", "netlinkbridge", "receiver", "kernel", "decode", "frame", "keys", "streams", "mcast", "internal/sys/..."},
	// Examples are receivers like a user's program.
	"examples/go/recv": {"receiver", "frame", "keys", "streams", "mcast", "internal/sys/..."},
	"integration":      {"*"},
	"examples":         nil, // tests of the examples only
	"dist":             nil, // tests of the unit, man page and install only
	"internal/layers":  nil,
}

// netlinkFree are packages that must not depend on a netlink library at
// all: a receiver never opens a netlink socket.
var netlinkFree = []string{"frame", "keys", "streams", "mcast", "receiver", "fleet", "examples/go/recv"}

// natsUsers are the packages that may depend on the NATS client: the
// fleet, and what may use it.
var natsUsers = []string{"fleet", "internal/tool/...", "cmd/nlmcast", "integration"}

// metricsOnly are the packages that may depend on Prometheus's client
// library: the libraries count with atomics and hand out snapshots, and
// only internal/metrics turns them into metrics (with the command that
// serves them, and tests).
var metricsOnly = []string{"internal/metrics", "cmd/nlmcast", "integration"}

func match(pattern, pkg string) bool {
	if pattern == "*" {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pkg == pattern
}

func rule(pkg string) ([]string, bool) {
	for p, deps := range allowed {
		if match(p, pkg) {
			return deps, true
		}
	}
	return nil, false
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

func TestLayers(t *testing.T) {
	pkgs := goList(t, "./...")
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %v", pkgs)
	}
	for _, full := range pkgs {
		pkg := strings.TrimPrefix(strings.TrimPrefix(full, module), "/")
		deps, ok := rule(pkg)
		if !ok {
			t.Errorf("package %s has no place in the layer rule: add it to ARCHITECTURE.md and to allowed", pkg)
			continue
		}
		for _, dep := range goList(t, "-deps", "-test=false", full) {
			if dep == full {
				continue
			}
			if !strings.HasPrefix(dep, module+"/") {
				if slices.Contains(netlinkFree, pkg) && strings.HasPrefix(dep, "github.com/mdlayher/netlink") {
					t.Errorf("%s depends on %s: receivers and the wire format must not need netlink", pkg, dep)
				}
				if !slices.Contains(metricsOnly, pkg) && strings.HasPrefix(dep, "github.com/prometheus/") {
					t.Errorf("%s depends on %s: only internal/metrics may use Prometheus; give the library a Stats snapshot instead", pkg, dep)
				}
				if strings.HasPrefix(dep, "github.com/nats-io/") && !slices.ContainsFunc(natsUsers, func(p string) bool { return match(p, pkg) }) {
					t.Errorf("%s depends on %s: only package fleet (and the command) may use NATS", pkg, dep)
				}
				continue
			}
			d := strings.TrimPrefix(dep, module+"/")
			if !slices.ContainsFunc(deps, func(p string) bool { return match(p, d) }) {
				t.Errorf("%s depends on %s, which the layer rule does not allow (see ARCHITECTURE.md)", pkg, d)
			}
		}
	}
}

// TestRuleCatches makes sure the matching itself would catch a breach.
func TestRuleCatches(t *testing.T) {
	deps, _ := rule("mcast")
	if slices.ContainsFunc(deps, func(p string) bool { return match(p, "kernel") }) {
		t.Error("the rule lets mcast depend on kernel")
	}
	if deps, _ := rule("internal/sys/epollwait"); !slices.ContainsFunc(deps, func(p string) bool { return match(p, "internal/sys/mmsg") }) {
		t.Error("internal/sys packages may not use each other")
	}
	if _, ok := rule("internal/newthing"); ok {
		t.Error("an unlisted package matched a rule")
	}
	if !match("internal/tool/...", path.Join("internal/tool", "bench")) {
		t.Error("/... does not match a package below it")
	}
}
