package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/sys/sockdiag"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

// idleSockets is a Python program that, started as root, raises its own
// descriptor limit, becomes uid 65534 and opens argv[1] UDP sockets bound
// to the groups argv[3:] (ADDR:PORT, in turn), each joined on lo with a
// receive buffer of argv[2] bytes (0: the default), and never reads them:
// the "receivers slow everyone" attack of issue 14.
const idleSockets = `
import os, resource, signal, socket, struct, sys
n, rcvbuf, groups = int(sys.argv[1]), int(sys.argv[2]), [g.rsplit(":", 1) for g in sys.argv[3:]]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, n + 64))
os.setgroups([]); os.setgid(65534); os.setuid(65534)
socks = []
for i in range(n):
    addr, port = groups[i % len(groups)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((addr, int(port)))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(addr), socket.inet_aton("127.0.0.1")))
    socks.append(s)
print("ready: %d sockets" % len(socks), file=sys.stderr, flush=True)
signal.pause()
`

// startIdleSockets runs idleSockets in the namespace.
func (ns *netns) startIdleSockets(t *testing.T, n, rcvbuf int, groups []netip.AddrPort) *proc {
	t.Helper()
	python := testenv.RequireCommand(t, "python3")
	argv := []string{python, "-c", idleSockets, strconv.Itoa(n), strconv.Itoa(rcvbuf)}
	for _, g := range groups {
		argv = append(argv, g.String())
	}
	return ns.start(t, printed("ready:"), argv...)
}

// uidSockets counts the sockets of uid bound to ports in the namespace:
// those that still receive, and those detached.
func (ns *netns) uidSockets(t *testing.T, uid uint32, ports map[uint16]bool) (receiving, detached int) {
	t.Helper()
	ns.do(t, func() error {
		ss, err := sockdiag.List(sockdiag.Filter{})
		for _, s := range ss {
			switch {
			case s.UID != uid || !ports[s.Local.Port()]:
			case s.Interface == sockdiag.DetachedInterface:
				detached++
			default:
				receiving++
			}
		}
		return err
	})
	return receiving, detached
}

// TestIdleReceiversAreDetached: uid 65534 opens 2,000 sockets joined to
// the link stream's raw and JSON groups and never reads them. With the
// default limit the bridge detaches all but DefaultMaxSocketsPerUID on each
// of the two ports (they stay open and receive nothing more), reports the user's idle and detached
// sockets in its log and stats, and an honest receiver of another user
// then gets every event.
func TestIdleReceiversAreDetached(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	link, _ := streams.Lookup("link")
	var m streams.Map
	raw, js := m.Addr(link, streams.Raw), m.Addr(link, streams.JSON)
	ports := map[uint16]bool{raw.Port(): true, js.Port(): true}
	statsDir := t.TempDir()
	stats := filepath.Join(statsDir, "stats.json")

	const attack = 2000
	limit := 2 * netlinkbridge.DefaultMaxSocketsPerUID                       // per port: two ports
	attacker := ns.startIdleSockets(t, attack, 1, []netip.AddrPort{raw, js}) // the smallest buffer: full after a few events
	if r, d := ns.uidSockets(t, 65534, ports); r != attack || d != 0 {
		t.Fatalf("uid 65534 has %d receiving and %d detached sockets, want %d and 0", r, d, attack)
	}
	bridge := ns.start(t, notified, nlmcast, "bridge", "--stats", stats)
	waitFor(t, &bridge.changed, "the bridge detached the excess", func() bool {
		return strings.Contains(bridge.Stderr(), "detached sockets over the per-user limit")
	})
	r, d := ns.uidSockets(t, 65534, ports)
	if r != limit || d != attack-limit {
		t.Fatalf("after the bridge's scan uid 65534 has %d receiving and %d detached sockets, want %d and %d\n%s",
			r, d, limit, attack-limit, bridge.Stderr())
	}

	// An honest receiver, another user, joins after, and must get every
	// event: the kernel's own record (a direct subscriber) is the count.
	honest := ns.start(t, notified, setpriv, "--reuid=65533", "--regid=65533", "--clear-groups", nlmcast, "listen", "--json", "link")
	direct := ns.subscribe(t, []uint32{uint32(link.Group)})
	const links = 50 // veth pairs
	var batch strings.Builder
	for i := range links {
		fmt.Fprintf(&batch, "link add idle%d type veth peer name idlep%d\n", i, i)
	}
	for i := range links {
		fmt.Fprintf(&batch, "link del idle%d\n", i)
	}
	ns.batch(t, batch.String())
	direct.stop()
	want := direct.counts()[uint32(link.Group)]
	if want < 2*links {
		t.Fatalf("the kernel sent %d link events, want at least %d", want, 2*links)
	}
	honest.waitStdout(t, "the honest receiver printed every link event", func(out string) bool {
		return strings.Count(out, `"kind":"event"`) >= want
	})

	// The attacker's remaining sockets fill and drop: reported as idle
	// (it takes two scans to see drops rise).
	waitFor(t, &bridge.changed, "the bridge reported uid 65534's idle sockets", func() bool {
		return strings.Contains(bridge.Stderr(), "receivers that do not read") && strings.Contains(bridge.Stderr(), "uid=65534")
	})
	honest.stop()
	// listen prints its losses at exit, if any (frames missing, lost in
	// the socket buffer).
	if strings.Contains(honest.Stderr(), "dropped:") {
		t.Errorf("the honest receiver lost frames:\n%s", honest.Stderr())
	}
	if got := strings.Count(honest.Stdout(), `"kind":"event"`); got != want {
		t.Errorf("the honest receiver printed %d events, the kernel sent %d", got, want)
	}
	bridge.stop()
	attacker.stop()
	b, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	var rep netlinkbridge.StatsReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%s: %v", stats, err)
	}
	rc := rep.Receivers
	u := rc.ByUID["65534"]
	if rc.Limit != netlinkbridge.DefaultMaxSocketsPerUID || rc.Detached != uint64(attack-limit) || u.Detached != uint64(attack-limit) || u.Joined != limit || u.Idle == 0 {
		t.Errorf("stats receivers %+v; want uid 65534 with %d joined, %d detached, some idle", rc, limit, attack-limit)
	}
	if h := rc.ByUID["65533"]; h.Detached != 0 {
		t.Errorf("the honest user's sockets were detached: %+v", h)
	}
	if rep.Bridge.Source.Overruns != 0 {
		t.Errorf("the bridge overran %d times", rep.Bridge.Source.Overruns)
	}
}

// batch runs ip(8) commands, one a line, in the namespace with one
// process (ip -batch).
func (ns *netns) batch(t *testing.T, cmds string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns.name, "-batch", "-")
	cmd.Stdin = strings.NewReader(cmds)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
}
