package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// A generic netlink group the kernel refuses to a socket without
// capabilities is shown privileged, though the catalog says it is not.
func TestGroupsShowProbe(t *testing.T) {
	ev, _ := streams.Lookup("thermal:event")
	sampling, _ := streams.Lookup("thermal:sampling")
	other := streams.Genl("nlmtest", "events")
	if ev.Privileged || sampling.Privileged || !other.Privileged {
		t.Fatal("catalog marks changed: pick other streams")
	}
	avail := []kernel.Availability{
		{Stream: ev, OK: true, Group: 3, Access: kernel.AccessPrivileged},
		{Stream: sampling, OK: true, Group: 2, Access: kernel.AccessOpen},
		{Stream: other, OK: true, Group: 9, Access: kernel.AccessOpen},
	}
	out := groupEntries(streams.Map{}, nil, avail)
	want := map[string]struct {
		priv  bool
		probe string
		col   string
	}{
		ev.Name:       {true, "privileged", "yes (kernel)"},
		sampling.Name: {false, "open", "- (probed)"},
		other.Name:    {true, "open", "yes (catalog)"},
	}
	if len(out) != 2*len(want) {
		t.Fatalf("%d entries, want %d", len(out), 2*len(want))
	}
	for _, g := range out {
		w := want[g.Name]
		if g.Privileged != w.priv || g.Probe != w.probe {
			t.Errorf("%s %s: privileged %v, probe %q; want %v, %q", g.Name, g.Encoding, g.Privileged, g.Probe, w.priv, w.probe)
		}
	}
	var buf bytes.Buffer
	if err := printGroups(&buf, out, streams.Map{}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if w, ok := want[f[0]]; ok && !strings.Contains(line, "  "+w.col+"  ") {
			t.Errorf("line %q: want privileged column %q", line, w.col)
		}
	}
}

// As root, 'nlmcast groups' probes this kernel: nlctrl:notify is open and
// mptcp_pm:mptcp_pm_events (GENL_MCAST_CAP_NET_ADMIN) is privileged.
func TestGroupsProbesKernel(t *testing.T) {
	testenv.RequireRoot(t)
	var out, errOut bytes.Buffer
	if err := runGroups(context.Background(), []string{"--json", "nlctrl:notify", "mptcp_pm:mptcp_pm_events"}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	var got []groupEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	probes := map[string]string{}
	for _, g := range got {
		probes[g.Name] = g.Probe
		if g.Name == "mptcp_pm:mptcp_pm_events" && !g.Available {
			testenv.Missing(t, "generic netlink group mptcp_pm:mptcp_pm_events (CONFIG_MPTCP)")
		}
	}
	if probes["nlctrl:notify"] != "open" || probes["mptcp_pm:mptcp_pm_events"] != "privileged" {
		t.Errorf("probes %v, want nlctrl:notify open, mptcp_pm:mptcp_pm_events privileged", probes)
	}
}
