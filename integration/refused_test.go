package integration

import (
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// TestRefusedGroupReported: a bridge without CAP_NET_ADMIN (root with it
// out of its bounding set) asked for ethtool:monitor, which anyone may
// join, and mptcp_pm:mptcp_pm_events, which the kernel keeps to
// CAP_NET_ADMIN: it starts, names the stream it could not join and the
// capability missing, sends nothing on that stream, and bridges the other
// (its heartbeats come).
func TestRefusedGroupReported(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	privileged := false
	for _, a := range kernel.Available() {
		if a.Stream.Name == "mptcp_pm:mptcp_pm_events" && a.OK && a.Access == kernel.AccessPrivileged {
			privileged = true
		}
	}
	if !privileged {
		testenv.Missing(t, "a generic netlink group the kernel keeps to CAP_NET_ADMIN (mptcp_pm:mptcp_pm_events, Linux 6.4+ with MPTCP)")
	}
	br := ns.start(t, notified, setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", nlmcast, "bridge",
		"--streams", "ethtool:monitor", "--cleartext-to-all-users", "mptcp_pm:mptcp_pm_events", "--heartbeat", "50ms",
		"--max-sockets-per-uid", "0")
	raw, _ := ns.receivers(t, streams.Map{}, "ethtool:monitor", "mptcp_pm:mptcp_pm_events")
	count := func(stream string) (n int) {
		for _, g := range raw.frames() {
			if g.stream == stream && g.kind == frame.KindHeartbeat {
				n++
			}
		}
		return n
	}
	waitFor(t, &raw.changed, "heartbeats of ethtool:monitor", func() bool { return count("ethtool:monitor") >= 3 })
	br.stop()
	if n := count("mptcp_pm:mptcp_pm_events"); n != 0 {
		t.Errorf("%d heartbeats on the refused stream", n)
	}
	if e := br.Stderr(); !strings.Contains(e, "stream not bridged: the kernel refuses its netlink group") ||
		!strings.Contains(e, "stream=mptcp_pm:mptcp_pm_events") || !strings.Contains(e, "needs=CAP_NET_ADMIN") {
		t.Errorf("the bridge did not name the stream refused and the capability missing:\n%s", e)
	}
}
