package integration

import (
	"fmt"
	"strings"
	"testing"
)

// hostEvents returns the netlink messages nlmcast listen --host all --raw
// printed for one host (its lines start with [HOST/link]).
func hostEvents(out, host string) [][]byte {
	prefix := "[" + host + "/link]"
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l + "\n")
		}
	}
	msgs, _ := fleetEvents(b.String())
	return msgs
}

// TestFleetNewHost: nlmcast listen --host all follows the hosts that start
// publishing after it started: one listener started before any host (it
// waits for the first), one after host a published; host b's bridge and
// publisher started after both. Both get every event of b, from its
// first, byte-identical to b's direct netlink record (new frames only
// would have lost those stored before its consumer was made), and a's.
func TestFleetNewHost(t *testing.T) {
	nlmcast, _ := binaries(t)
	c := newNetNS(t)
	hosts := []*fleetHost{{name: "a"}, {name: "b"}}
	for i, h := range hosts {
		h.ns = newNetNS(t)
		h.url = wire(t, h.ns, c, i+1)
	}
	startNATS(t, c, t.TempDir())
	listen := func() *proc {
		return c.start(t, notified, nlmcast, "listen", "--nats", "nats://127.0.0.1:4222", "--host", "all", "--hosts-every", "200ms", "--raw", "link")
	}
	// record makes n link events on h, and returns them as a netlink
	// subscriber there got them.
	record := func(h *fleetHost, n int) [][]byte {
		direct := h.ns.subscribe(t, []uint32{1})
		linkChanges(t, h.ns, "d"+h.name, n)
		direct.stop()
		return direct.messages(1)
	}
	first := listen() // no stream yet: it waits
	waitFor(t, &first.changed, "the first listener saying it waits for a host", func() bool {
		return strings.Contains(first.Stderr(), "waiting for the first")
	})
	a, b := hosts[0], hosts[1]
	a.bridge = a.ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw")
	a.publish(t, nlmcast)
	recA := record(a, 5)
	first.waitStdout(t, "host a's events at the first listener", func(out string) bool { return len(hostEvents(out, "a")) >= len(recA) })
	second := listen() // host a published: it is there at the start

	b.bridge = b.ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw")
	b.publish(t, nlmcast)
	recB := record(b, 10)
	more := record(a, 5)
	recA = append(recA, more...)
	for _, l := range []*proc{first, second} {
		l.waitStdout(t, fmt.Sprintf("host b's %d events", len(recB)), func(out string) bool { return len(hostEvents(out, "b")) >= len(recB) })
		if got := hostEvents(l.Stdout(), "b"); !sameMsgs(got, recB) {
			t.Errorf("host b: %d events, not the %d of its direct record:\n%s", len(got), len(recB), l.Stdout())
		}
		if !strings.Contains(l.Stderr(), "a new host publishes") || !strings.Contains(l.Stderr(), "host=b") {
			t.Errorf("no line saying host b was found:\n%s", l.Stderr())
		}
	}
	// Host a: all of it at the first listener (found late), what came
	// after its start at the second (new frames only).
	first.waitStdout(t, fmt.Sprintf("host a's %d events", len(recA)), func(out string) bool { return len(hostEvents(out, "a")) >= len(recA) })
	if got := hostEvents(first.Stdout(), "a"); !sameMsgs(got, recA) {
		t.Errorf("host a at the first listener: %d events, not the %d of its direct record", len(got), len(recA))
	}
	second.waitStdout(t, fmt.Sprintf("host a's last %d events", len(more)), func(out string) bool { return len(hostEvents(out, "a")) >= len(more) })
	if got := hostEvents(second.Stdout(), "a"); !sameMsgs(got, more) {
		t.Errorf("host a at the second listener: %d events, not the %d made after it started", len(got), len(more))
	}
	if strings.Contains(second.Stderr(), "host=a") {
		t.Errorf("the second listener found host a late:\n%s", second.Stderr())
	}
	for _, l := range []*proc{first, second} {
		if _, notices := fleetEvents(l.Stdout()); len(notices) > 0 {
			t.Errorf("notices: %q", notices)
		}
		l.stop()
	}
	for _, h := range hosts {
		h.pub.stop()
	}
}
