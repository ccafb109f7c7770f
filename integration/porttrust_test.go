package integration

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

// untrusted is what every receiver says where any user may bind the
// bridge's port.
const untrusted = "net.ipv4.ip_unprivileged_port_start is 0 in this network namespace, so any user can send from port 1021: " +
	"the source check proves nothing"

// forgeFrom sends, as uid 65534 from 127.0.0.1:port, each datagram to its
// group: the frames a local user makes where it may bind any port.
func (ns *netns) forgeFrom(t *testing.T, port int, datagrams map[string][]byte) {
	t.Helper()
	python := testenv.RequireCommand(t, "/usr/bin/python3") // a per-user shim is not runnable as nobody
	forger := `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
for a in sys.argv[2:]:
    addr, data = a.split("=")
    g, p = addr.rsplit(":", 1)
    s.sendto(bytes.fromhex(data), (g, int(p)))
print("sent", len(sys.argv) - 2)
`
	argv := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", forger, fmt.Sprint(port)}
	for addr, d := range datagrams {
		argv = append(argv, addr+"="+hex.EncodeToString(d))
	}
	if out, err := execIn(ns, argv...); err != nil || strings.TrimSpace(out) != fmt.Sprint("sent ", len(datagrams)) {
		t.Fatalf("forger as uid 65534 from port %d: %v: %s", port, err, out)
	}
}

// TestUntrustedPort: in a network namespace where every user may bind
// every port (net.ipv4.ip_unprivileged_port_start 0, as container runtimes
// set it), the bridge warns, in its log and its stats; nlmcast listen run
// as uid 65534, and the C and Python examples, refuse to start and say
// why. With --insecure they start and warn; then a uid 65534 forger's
// valid frames, raw and JSON, sent from 127.0.0.1:1000, are not printed
// (they are not from the bridge's port, and for listen the kernel keeps
// them from its sockets), while the bridge's events are. A listener that
// accepts any source prints them: they would have passed every other check.
func TestUntrustedPort(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, crecv := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	ns.do(t, func() error { return testenv.SetPortStart(0) })

	dir := t.TempDir()
	stats := filepath.Join(dir, "stats.json")
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--json-always", "--stats", stats)
	bridge.waitStderr(t, "level=WARN msg=\"net.ipv4.ip_unprivileged_port_start is 0 in this network namespace, "+
		"so any user can send from the bridge's source port 1021")

	link := mustStream("link")
	rawAddr, jsonAddr := streams.Map{}.Addr(link, streams.Raw).String(), streams.Map{}.Addr(link, streams.JSON).String()
	refusals := []struct {
		name string
		argv []string
		want string
	}{
		{"nlmcast listen", append(argv(asNobody, nlmcast), "listen", "link"), untrusted + ". Give the receiver the bridge's key " +
			"(frames are then authenticated) or, knowing the risk, use --insecure"},
		{"nlmcast listen --raw", append(argv(asNobody, nlmcast), "listen", "--raw", "link"), untrusted},
		{"C example", append(argv(asNobody, crecv), rawAddr), "nlmcast_recv: " + untrusted + ". Give the receiver the bridge's key"},
		{"Python example", append(argv(asNobody, python), "../examples/python/nlmcast_recv.py", rawAddr), "nlmcast_recv.py: " + untrusted},
	}
	for _, r := range refusals {
		_, stderr, err := ns.runIn(t, patience, r.argv...)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr, r.want) {
			t.Errorf("%s: %v, stderr %q; want exit code 1 and %q", r.name, err, stderr, r.want)
		}
	}

	// With --insecure they start, and warn.
	text := ns.start(t, notified, append(argv(asNobody, nlmcast), "listen", "--insecure", "link")...)
	raw := ns.start(t, notified, append(argv(asNobody, nlmcast), "listen", "--insecure", "--raw", "link")...)
	cProc := ns.start(t, printed("ready"), append(argv(asNobody, crecv), "--insecure", "-x", rawAddr)...)
	pyProc := ns.start(t, printed("ready"), append(argv(asNobody, python), "../examples/python/nlmcast_recv.py", "--insecure", "-x", rawAddr)...)
	for _, p := range []*proc{text, raw, cProc, pyProc} {
		p.waitStderr(t, untrusted+", and frames are not authenticated") // listen: level=WARN msg="..."
	}
	// Controls: listeners that accept any source print what is forged.
	anyJSON := ns.start(t, notified, append(argv(asNobody, nlmcast), "listen", "--any-source", "--json", "--heartbeats", "link")...)
	anyRaw := ns.start(t, notified, append(argv(asNobody, nlmcast), "listen", "--any-source", "--raw", "link")...)

	// The forger continues the bridge's numbering, as one who watched a
	// heartbeat would: both frames are the stream's next event.
	var epoch string
	var seq uint64
	anyJSON.waitStdout(t, "a heartbeat", func(out string) bool {
		for _, l := range strings.Split(out, "\n") {
			var f struct {
				Kind, Epoch string
				Seq         uint64
			}
			if json.Unmarshal([]byte(l), &f) == nil && f.Kind == "heartbeat" {
				epoch, seq = f.Epoch, f.Seq
				return true
			}
		}
		return false
	})
	var e uint64
	fmt.Sscanf(epoch, "%x", &e)
	evil := newLinkMsg(t, 99, "evil0")
	forgedJSON := fmt.Sprintf(`{"v":1,"kind":"event","stream":"link","family":0,"group":1,"epoch":%q,"seq":%d,"time":%q,`+
		`"summary":"new link 99: evil0","event":{"type":"RTM_NEWLINK","link":{"index":99,"name":"evil0"}}}`,
		epoch, seq+1, time.Now().UTC().Format(time.RFC3339Nano))
	forgedRaw := frame.Append(nil, frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: e, Seq: seq + 1,
		Time: time.Now().UnixNano()}, evil)
	ns.forgeFrom(t, 1000, map[string][]byte{jsonAddr: []byte(forgedJSON), rawAddr: forgedRaw})

	// Then a real change: once it is printed, anything forged before it
	// would have been too.
	ns.ip(t, "link", "add", "nlpt0", "type", "veth", "peer", "name", "nlpt1")
	evilHex, realHex := hex.EncodeToString([]byte("evil0")), hex.EncodeToString([]byte("nlpt0"))
	anyJSON.waitStdout(t, "the control printed the forged JSON frame", func(out string) bool { return strings.Contains(out, "evil0") })
	anyRaw.waitStdout(t, "the control printed the forged raw frame", func(out string) bool { return strings.Contains(out, evilHex) })
	for _, c := range []struct {
		p          *proc
		real, evil string
	}{{text, "nlpt0", "evil0"}, {raw, realHex, evilHex}, {cProc, realHex, evilHex}, {pyProc, realHex, evilHex}} {
		c.p.waitStdout(t, "the bridge's event printed", func(out string) bool { return strings.Contains(out, c.real) })
		c.p.stop()
		if strings.Contains(c.p.Stdout(), c.evil) {
			t.Errorf("%v printed the forged frame:\n%s", c.p.cmd.Args, c.p.Stdout())
		}
	}
	// nlmcast listen never read them (the kernel dropped them), the
	// examples did and dropped them.
	if m := regexp.MustCompile(`(\d+) from a wrong sender`).FindStringSubmatch(raw.Stderr()); m != nil && m[1] != "0" {
		t.Errorf("nlmcast listen --raw read forged datagrams:\n%s", raw.Stderr())
	}
	if !strings.Contains(cProc.Stderr(), "dropped: 1 wrong source") || !strings.Contains(pyProc.Stderr(), "dropped: 1 from a wrong source") {
		t.Errorf("the examples did not drop the forged frame:\n%s\n%s", cProc.Stderr(), pyProc.Stderr())
	}

	bridge.stop()
	b, err := os.ReadFile(stats)
	var report netlinkbridge.StatsReport
	if err == nil {
		err = json.Unmarshal(b, &report)
	}
	if err != nil || len(report.Warnings) != 1 || !strings.Contains(report.Warnings[0], "so any user can send from the bridge's source port 1021") {
		t.Errorf("--stats: %v, warnings %q", err, report.Warnings)
	}
}

// TestTrustedPort: with the default setting (1024), everything starts
// without a warning, as before, and the bridge's events arrive.
func TestTrustedPort(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, crecv := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	rawAddr := streams.Map{}.Addr(mustStream("link"), streams.Raw).String()
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--json-always")
	text := ns.start(t, notified, append(argv(asNobody, nlmcast), "listen", "link")...)
	cProc := ns.start(t, printed("ready"), append(argv(asNobody, crecv), "-x", rawAddr)...)
	pyProc := ns.start(t, printed("ready"), append(argv(asNobody, python), "../examples/python/nlmcast_recv.py", "-x", rawAddr)...)
	ns.ip(t, "link", "add", "nlpt0", "type", "veth", "peer", "name", "nlpt1")
	realHex := hex.EncodeToString([]byte("nlpt0"))
	text.waitStdout(t, "listen printed the event", func(out string) bool { return strings.Contains(out, "nlpt0") })
	for _, p := range []*proc{cProc, pyProc} {
		p.waitStdout(t, "the example printed the event", func(out string) bool { return strings.Contains(out, realHex) })
	}
	for _, p := range []*proc{bridge, text, cProc, pyProc} {
		if s := p.Stderr(); strings.Contains(s, "ip_unprivileged_port_start") || strings.Contains(strings.ToLower(s), "warn") {
			t.Errorf("%v warned:\n%s", p.cmd.Args, s)
		}
	}
}

// argv returns a new slice of a's elements and then b's.
func argv(a []string, b ...string) []string { return append(append([]string(nil), a...), b...) }

// waitStderr waits until what the program has printed on stderr holds
// want, and fails the test after patience. (A program's readiness can
// come before the lines it printed before it reach the test.)
func (p *proc) waitStderr(t *testing.T, want string) {
	t.Helper()
	if !await(&p.changed, patience, func() bool { return strings.Contains(p.Stderr(), want) }) {
		t.Errorf("%v printed on stderr\n%s\nwant it to hold %q", p.cmd.Args, p.Stderr(), want)
	}
}
