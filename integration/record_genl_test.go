package integration

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// TestRecordGenl records a generic netlink stream (ethtool:monitor,
// whose group number the kernel chose when ethtool registered): tshark
// dissects its messages as generic netlink and shows the stream's
// comment; a replay in another namespace, recorded again, gives the same
// messages, in the same group.
func TestRecordGenl(t *testing.T) {
	nlmcast, _ := binaries(t)
	tshark := testenv.RequireCommand(t, "tshark")
	ethtool := testenv.RequireCommand(t, "ethtool")
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "g1.pcapng"), filepath.Join(dir, "g2.pcapng")
	const stream = "ethtool:monitor"
	ns := newNetNS(t)
	ns.ip(t, "link", "add", "eg0", "type", "veth", "peer", "name", "eg1")
	ns.start(t, notified, nlmcast, "bridge", "--streams", stream)
	rec := ns.start(t, notified, nlmcast, "record", "-o", f1, stream)
	listen := ns.start(t, notified, nlmcast, "listen", "--raw", stream)
	// ethtool sets features over generic netlink (ETHTOOL_MSG_FEATURES_SET);
	// the kernel notifies each change on the monitor group.
	for _, onoff := range []string{"off", "on"} {
		if out, err := exec.Command("ip", "netns", "exec", ns.name, ethtool, "-K", "eg0", "tx", onoff).CombinedOutput(); err != nil {
			t.Fatalf("ethtool -K: %v: %s", err, out)
		}
	}
	listen.waitStdout(t, "listen printed both ethtool events", func(out string) bool { return strings.Count(out, "event len ") >= 2 })
	rec.stop()
	evs, _ := readRecording(t, f1)
	if len(evs) < 2 {
		t.Fatalf("%d events recorded, want one per change:\n%s", len(evs), rec.Stderr())
	}
	for i, e := range evs {
		if e.stream != stream {
			t.Errorf("event %d of stream %q", i, e.stream)
		}
	}
	groups := groupsOf(evs)

	out, err := exec.Command(tshark, "-r", f1, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -r -V: %v\n%s", err, out)
	}
	for _, want := range []string{"Linux netlink (cooked header)", "Family: Generic", "Linux Generic Netlink protocol",
		"nlmcast stream=ethtool:monitor kind=event"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("tshark -V shows no %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("tshark -V:\n%s", out[:min(len(out), 20000)])
	}

	ns2 := newNetNS(t)
	rec2 := ns2.start(t, notified, nlmcast, "record", "-o", f2, stream)
	if out, err := exec.Command("ip", "netns", "exec", ns2.name, nlmcast, "replay", "--speed", "0", f1).CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	rec2.stop()
	evs2, _ := readRecording(t, f2)
	if len(evs2) != len(evs) {
		t.Fatalf("recorded %d events, %d after the replay", len(evs), len(evs2))
	}
	for i := range evs {
		if evs2[i].stream != stream || !bytes.Equal(evs[i].msg, evs2[i].msg) {
			t.Errorf("event %d differs after the replay", i)
		}
	}
	if g2 := groupsOf(evs2); !slices.Equal(groups, g2) {
		t.Errorf("groups of the events: %v recorded, %v after the replay", groups, g2)
	}
}

// groupsOf returns the netlink group of each event, in order.
func groupsOf(evs []recorded) []uint32 {
	gs := make([]uint32, len(evs))
	for i, e := range evs {
		gs[i] = e.group
	}
	return gs
}
