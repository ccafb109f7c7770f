package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// keyFile makes a key file with nlmcast keygen in a directory every user
// can traverse, owned by root and readable by group 65534 (nogroup), as
// an operator would share it with the readers they trust.
func keyFile(t *testing.T, nlmcast string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nlmcast-keys-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys")
	if out, err := exec.Command(nlmcast, "keygen", "--group", "nogroup", path).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v: %s", err, out)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("keygen made %v (%v), want mode 0640", fi.Mode(), err)
	}
	return path
}

// forgeAsBindService sends, as uid 65534 holding CAP_NET_BIND_SERVICE (the
// `setcap cap_net_bind_service+ep` recipe), from the bridge's own address
// and port, frames that pass every check but the key: a raw event and a
// JSON event without a trailer, and each with a made-up trailer.
func forgeAsBindService(t *testing.T, ns *netns, python string) {
	t.Helper()
	const forger = `
import socket, struct, time
raw = ("239.255.78.1", 17802)
js = ("239.255.79.1", 17803)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
s.bind(("127.0.0.1", 1021))
now = time.time_ns()
msg = b"\x20\x00\x00\x00\x10\x00" + b"\x00" * 26
def raw_frame(flags, trailer):
    h = b"NLMC" + struct.pack(">BBHHHIQQqII", 1, 1, flags, 48, 0, 1, (int(now / 1e6) << 20) | 1, 1, now, len(msg), 0)
    return h + msg + trailer
s.sendto(raw_frame(0, b""), raw)
s.sendto(raw_frame(1, b"\x00\x00\x00\x01" + b"\x42" * 16), raw)
stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(now / 1e9))
body = '{"v":1,"kind":"event","stream":"link","family":0,"group":1,"epoch":"%016x","seq":1,"time":"%s","summary":"new link 99: evil0"' % ((int(now / 1e6) << 20) | 1, stamp)
s.sendto((body + "}\n").encode(), js)
s.sendto((body + ',"auth":"00000001:' + "42" * 16 + '"}\n').encode(), js)
`
	cmd := exec.Command("ip", "netns", "exec", ns.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service", python, "-c", forger)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("forger: %v: %s", err, out)
	}
}

// TestAuthenticatedFrames: a bridge with a key file, receivers (as uid
// 65534, in a namespace where any user may bind any port, as container
// runtimes set it) with the same file. Genuine events arrive in both
// encodings, across a key rotation, and frames of a sender that has
// everything but the key (the bridge's address and port, held while the
// bridge is down, by an unprivileged user with CAP_NET_BIND_SERVICE) are
// refused and counted by reason.
func TestAuthenticatedFrames(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, crecv := binaries(t)
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	setpriv := testenv.RequireCommand(t, "setpriv")
	if out, err := exec.Command("ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	key := keyFile(t, nlmcast)
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", nlmcast}
	bridgeArgs := []string{nlmcast, "bridge", "--streams", "link", "--json-always", "--key", key}
	bridge := ns.start(t, notified, bridgeArgs...)
	text := ns.start(t, notified, append(asNobody, "listen", "--key", key, "link")...)
	raw := ns.start(t, notified, append(asNobody, "listen", "--raw", "--key", key, "link")...)
	// The examples, as the same user: C and Python raw, Python JSON, Go.
	nobody := asNobody[:len(asNobody)-1]
	cEx := ns.start(t, printed("ready"), append(nobody, crecv, "--key", key, "239.255.78.1:17802")...)
	pyRaw := ns.start(t, printed("ready"), append(nobody, python, "../examples/python/nlmcast_recv.py", "--key", key, "239.255.78.1:17802")...)
	pyJSON := ns.start(t, printed("ready"), append(nobody, python, "../examples/python/nlmcast_recv.py", "--json", "--key", key, "239.255.79.1:17803")...)
	goEx := ns.start(t, printed("ready"), append(nobody, bins.gorecv, "-key", key, "link")...)
	events := func(out string) int { return strings.Count(out, "ok kind=1 ") }

	ns.ip(t, "link", "add", "va0", "type", "veth", "peer", "name", "vb0")
	text.waitStdout(t, "listen --key printed the new link", func(out string) bool { return strings.Contains(out, "new link") && strings.Contains(out, "va0") })
	raw.waitStdout(t, "listen --raw --key printed an event", func(out string) bool { return strings.Contains(out, " event len ") })
	for _, p := range []*proc{cEx, pyRaw} {
		p.waitStdout(t, "an example printed an event", func(out string) bool { return events(out) > 0 })
	}
	pyJSON.waitStdout(t, "the Python example printed the new link", func(out string) bool { return strings.Contains(out, "va0") })
	goEx.waitStdout(t, "the Go example printed an event", func(out string) bool { return strings.Contains(out, "nlmsg_type=16") })

	// Rotate: receivers load the new key within a second, the bridge signs
	// with it once its grace is over.
	if out, err := exec.Command(nlmcast, "keygen", "--rotate", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen --rotate: %v: %s", err, out)
	}
	waitFor(t, &bridge.changed, "the bridge signing with key 2", func() bool {
		return strings.Contains(bridge.Stderr(), "signing_key=00000002")
	})
	ns.ip(t, "link", "add", "va1", "type", "veth", "peer", "name", "vb1")
	text.waitStdout(t, "an event signed with the new key", func(out string) bool { return strings.Contains(out, "va1") })
	pyJSON.waitStdout(t, "the Python example printed an event signed with the new key", func(out string) bool { return strings.Contains(out, "va1") })
	// An answer to a request, sent to the requester alone, is
	// authenticated for its address.
	state := ns.start(t, notified, append(asNobody, "listen", "--resync", "--key", key, "link")...)
	state.waitStdout(t, "listen --resync --key printed the links' state", func(out string) bool { return strings.Contains(out, "state") && strings.Contains(out, "va1") })
	state.stop()
	if strings.Contains(state.Stderr(), "refused") {
		t.Errorf("listen --resync refused frames:\n%s", state.Stderr())
	}
	before := map[*proc]int{cEx: events(cEx.Stdout()), pyRaw: events(pyRaw.Stdout())}

	bridge.stop()
	forgeAsBindService(t, ns, python)
	// The bridge again: its frames come after the forged ones on every
	// socket, so once they are printed the forged ones were read.
	ns.start(t, notified, bridgeArgs...)
	ns.ip(t, "link", "add", "va2", "type", "veth", "peer", "name", "vb2")
	text.waitStdout(t, "an event of the restarted bridge", func(out string) bool { return strings.Contains(out, "va2") })
	raw.waitStdout(t, "an event of the restarted bridge, raw", func(out string) bool {
		return strings.Count(out, " event len ") >= 3*2 // va0, va1, va2 and their peers, at least
	})
	for _, p := range []*proc{cEx, pyRaw} {
		p.waitStdout(t, "an example printed an event of the restarted bridge", func(out string) bool { return events(out) > before[p] })
	}
	pyJSON.waitStdout(t, "the Python example printed an event of the restarted bridge", func(out string) bool { return strings.Contains(out, "va2") })
	for p, want := range map[*proc]string{
		cEx:    "invalid or not authenticated frames: 2",
		pyRaw:  "2 not authenticated",
		pyJSON: "2 not authenticated",
	} {
		p.stop()
		if !strings.Contains(p.Stderr(), want) || strings.Contains(p.Stdout(), "evil0") || strings.Contains(p.Stdout(), evilHex) {
			t.Errorf("%v: want %q on stderr and no forged frame printed; stdout:\n%s\nstderr:\n%s", p.cmd.Args, want, p.Stdout(), p.Stderr())
		}
	}
	goEx.stop()
	text.stop()
	raw.stop()
	for _, p := range []*proc{text, raw} {
		if strings.Contains(p.Stdout(), "evil0") || strings.Contains(p.Stdout(), evilHex) {
			t.Errorf("%v printed a forged frame:\n%s", p.cmd.Args, p.Stdout())
		}
		want := fmt.Sprintf("refused: 1 not authenticated, 0 with a key not in %s, 1 with a bad tag", key)
		if !strings.Contains(p.Stderr(), want) {
			t.Errorf("%v: want %q on stderr, got:\n%s", p.cmd.Args, want, p.Stderr())
		}
		if strings.Contains(p.Stdout(), "!! gap") {
			t.Errorf("%v reported a gap (lost frames across the rotation?):\n%s", p.cmd.Args, p.Stdout())
		}
	}
}

// evilHex is the forged link's name, "evil0", as raw outputs print it
// (hex): a forged frame shows either way. (A fixed number was checked
// before, and a random epoch contained it.)
const evilHex = "6576696c30"
