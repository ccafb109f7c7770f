package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
)

// runIn runs argv in the namespace to completion and returns its output.
func (ns *netns) runIn(t *testing.T, max time.Duration, argv ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name}, argv...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// compare --generate makes real changes; every event arrives on both paths.
func TestCompareGenerated(t *testing.T) {
	nlmcast, _ := binaries(t)
	ns := newNetNS(t)
	ns.start(t, notified, nlmcast, "bridge")
	out, errOut, err := ns.runIn(t, 60*time.Second, nlmcast, "compare", "--generate", "--rounds", "2", "--interval", "20ms", "--json")
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, errOut)
	}
	var tot compare.Totals
	if err := json.Unmarshal([]byte(out), &tot); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out)
	}
	// Two rounds of 15 changes make well over 60 events (links, netconf,
	// addresses, routes, neighbours).
	if tot.Netlink < 60 || tot.Multicast != tot.Netlink || tot.Matched != tot.Netlink {
		t.Errorf("events: %d netlink, %d multicast, %d matched", tot.Netlink, tot.Multicast, tot.Matched)
	}
	if tot.MissingMulticast+tot.MissingNetlink+tot.Waiting+tot.OrderDiffs+tot.NetlinkOverruns+tot.Notices != 0 {
		t.Errorf("differences: %+v", tot)
	}
	a := tot.Added
	if a.Count != tot.Matched || !(a.Min <= a.P50 && a.P50 <= a.P90 && a.P90 <= a.P99 && a.P99 <= a.Max) {
		t.Errorf("latency distribution %+v", a)
	}
}

// Without a bridge, compare reports every event missing on multicast, and
// says why.
func TestCompareWithoutBridge(t *testing.T) {
	nlmcast, _ := binaries(t)
	ns := newNetNS(t)
	out, errOut, err := ns.runIn(t, 60*time.Second, nlmcast, "compare", "--generate", "--rounds", "1",
		"--interval", "10ms", "--wait", "300ms", "--json", "link", "addr")
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, errOut)
	}
	var tot compare.Totals
	if err := json.Unmarshal([]byte(out), &tot); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out)
	}
	// compare stops Wait+100ms after its last change: an event it read late
	// (a loaded machine) may still count as waiting rather than missing.
	if tot.Netlink < 10 || tot.Multicast != 0 || tot.MissingMulticast == 0 || tot.MissingMulticast+tot.Waiting != tot.Netlink {
		t.Errorf("%+v: want every netlink event missing on multicast", tot)
	}
	if !strings.Contains(errOut, "is 'nlmcast bridge' running") {
		t.Errorf("no hint about the bridge:\n%s", errOut)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// The side-by-side view marks each event, and the README's demo runs
// end to end and removes its namespace.
func TestDemo(t *testing.T) {
	nlmcast, _ := binaries(t)
	newNetNS(t)                          // root and namespaces are there
	testenv.RequireCommand(t, "socat")   // reads READY=1
	testenv.RequireCommand(t, "setpriv") // runs listen unprivileged
	demo := exec.Command("bash", "../examples/demo.sh", nlmcast)
	demo.Env = append(demo.Environ(), "ROUNDS=1")
	outb, err := demo.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"---- ip link add nlmc0 type veth peer name nlmc1",
		"new addr 192.0.2.1/24 dev nlmc0",
		"new neigh 192.0.2.9 dev nlmc0 lladdr 02:00:00:00:00:09 PERMANENT",
		"missing:         0 on multicast, 0 on netlink",
		"added latency:",
		"(no privilege), printed",
		"removed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "MISSING") || strings.Contains(out, "printed 0 events") {
		t.Errorf("demo lost events:\n%s", out)
	}
	if strings.Contains(out, "level=WARN") {
		t.Errorf("demo warned (listen started before the bridge could tell it its events are encoded?):\n%s", out)
	}
	// listen was ready (its events encoded) before compare made any: it
	// printed every event compare got through multicast.
	multicast := regexp.MustCompile(`(?m)^events: .* (\d+) multicast`).FindStringSubmatch(out)
	listened := regexp.MustCompile(`printed (\d+) events`).FindStringSubmatch(out)
	if multicast == nil || listened == nil {
		t.Errorf("demo output lacks compare's or listen's count:\n%s", out)
	} else if m, l := atoi(multicast[1]), atoi(listened[1]); l < m {
		t.Errorf("listen printed %d events, compare got %d through multicast:\n%s", l, m, out)
	}
	// Its own namespace only: other runs may have theirs.
	name := fmt.Sprintf("nlmcast-demo-%d", demo.Process.Pid)
	if !strings.Contains(out, "namespace "+name+" removed") {
		t.Errorf("demo did not say it removed %s:\n%s", name, out)
	}
	if names, _ := exec.Command("ip", "netns", "list").Output(); slices.Contains(strings.Fields(string(names)), name) {
		t.Errorf("demo left its namespace %s behind: %s", name, names)
	}
}
