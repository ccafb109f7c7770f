package kernel

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/streams"
)

// The probe answers from a thread without capabilities even when the
// process has them all: as root, nlctrl:notify (no flag) is open and
// mptcp_pm:mptcp_pm_events (GENL_MCAST_CAP_NET_ADMIN since Linux 6.7) is
// privileged, although root itself can join both. The catalog marks the
// second privileged; the probe is told nothing of that.
func TestProbeGenl(t *testing.T) {
	testenv.RequireRoot(t)
	defer testenv.NoLeaks(t)()
	priv := streams.Genl("mptcp_pm", "mptcp_pm_events")
	open := streams.Genl("nlctrl", "notify")
	fams, err := GenlFamilies(0)
	if err != nil {
		t.Fatal(err)
	}
	var privID uint32
	for _, f := range fams {
		for _, g := range f.Groups {
			if f.Name == priv.GenlFamily && g.Name == priv.GenlGroup {
				privID = g.ID
			}
		}
	}
	if privID == 0 {
		testenv.Missing(t, "generic netlink group mptcp_pm:mptcp_pm_events (CONFIG_MPTCP)")
	}
	// Root can join it: what the probe sees is the dropped capabilities.
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(privID))
	unix.Close(fd)
	if err != nil {
		t.Fatalf("root cannot join %s: %v", priv.Name, err)
	}

	gone := streams.Genl("nlmcast_none", "none")
	got, err := ProbeGenl(0, []streams.Stream{priv, open, gone, streams.Default()[0]})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Access{priv.Name: AccessPrivileged, open.Name: AccessOpen}
	if len(got) != len(want) {
		t.Errorf("ProbeGenl = %v, want %v", got, want)
	}
	for n, a := range want {
		if got[n] != a {
			t.Errorf("%s: %v, want %v", n, got[n], a)
		}
	}
	// The calling thread kept its capabilities.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(self)
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil { // needs CAP_SYS_ADMIN
		t.Errorf("setns after the probe: %v", err)
	}
}

// The probe runs in the namespace it is given: a new one has the same
// generic netlink families (they are registered in every namespace).
func TestProbeGenlNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	defer testenv.NoLeaks(t)()
	var ns int
	testenv.InNewNetNS(t, func() error {
		var err error
		ns, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	defer unix.Close(ns)
	open := streams.Genl("nlctrl", "notify")
	got, err := ProbeGenl(ns, []streams.Stream{open})
	if err != nil {
		t.Fatal(err)
	}
	if got[open.Name] != AccessOpen {
		t.Errorf("%s in a new namespace: %v, want open", open.Name, got[open.Name])
	}
}
