package integration

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// readerID is the uid and gid of the private streams' trusted reader in
// these tests: the group that may read the key file. uid 65534 (nobody)
// is everyone else.
const readerID = 65533

// privateKey makes a key file for private streams, owned by root and
// readable by group readerID alone, as an operator would make one for the
// group of readers allowed to see them.
func privateKey(t *testing.T) string {
	t.Helper()
	nlmcast, _ := binaries(t)
	path := keyFile(t, nlmcast)
	if err := os.Chown(path, 0, readerID); err != nil {
		t.Fatal(err)
	}
	return path
}

// captureAll prints, in hex, every datagram sent to the groups given, one
// per line; on SIGTERM it reads what is still queued and exits.
const captureAll = `
import select, signal, socket, sys
socks = []
for spec in sys.argv[1:]:
    addr, _, port = spec.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off
    s.bind((addr, int(port)))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(addr) + socket.inet_aton("127.0.0.1"))
    s.setblocking(False)
    socks.append(s)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
print("ready", file=sys.stderr, flush=True)
def drain(s):
    while True:
        try:
            print(s.recv(65536).hex(), flush=True)
        except BlockingIOError:
            return
while not stop:
    try:
        ready, _, _ = select.select(socks, [], [], 1)
    except InterruptedError:
        continue
    for s in ready:
        drain(s)
for s in socks:
    drain(s)
`

// TestPrivateStreamsStayPrivate: a bridge in namespace P reads namespace
// Q's events (--netns), which are Q's alone: every stream is private, and
// sealed under a key file only group readerID can read. P's uid 65534,
// capturing every datagram of every group of those streams, raw and JSON,
// learns nothing of Q: not an interface name, a MAC address or an address,
// in any byte (their JSON groups carry heartbeats marked sealed, nothing
// else); listen, the examples and the library without the key say the
// streams are sealed, and it cannot read the key to open them. The
// readers with the key get every event, byte for byte as Q's kernel sent
// it. Without a key file the bridge refuses, saying how to make one.
func TestPrivateStreamsStayPrivate(t *testing.T) {
	p, q := newNetNS(t), newNetNS(t)
	nlmcast, crecv := binaries(t)
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	setpriv := testenv.RequireCommand(t, "setpriv")
	key := privateKey(t)

	out, err := exec.Command("ip", "netns", "exec", p.name, nlmcast, "bridge", "--netns", q.name, "--streams", "link,addr", "--source-port", "1015").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stream link is private") || !strings.Contains(string(out), "nlmcast keygen --group") {
		t.Fatalf("bridge --netns without a key: %v: %s; want a refusal saying how to make a key", err, out)
	}
	p.start(t, notified, nlmcast, "bridge", "--netns", q.name, "--streams", "link,addr", "--expose", "all="+key, "--json-always")

	var groups []string
	ss, _ := streams.Resolve("link", "addr")
	for _, s := range ss {
		for _, enc := range []streams.Encoding{streams.Raw, streams.JSON} {
			groups = append(groups, streams.Map{}.Addr(s, enc).String())
		}
	}
	link := streams.Map{}.Addr(mustStream("link"), streams.Raw).String()
	nobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	reader := []string{setpriv, "--reuid=65533", "--regid=65533", "--clear-groups"}
	capture := p.start(t, printed("ready"), append(append(nobody, python, "-c", captureAll), groups...)...)
	blind := p.start(t, notified, append(nobody, nlmcast, "listen", "link", "addr")...)
	blindPy := p.start(t, printed("ready"), append(nobody, python, "../examples/python/nlmcast_recv.py", "-x", link)...)
	blindC := p.start(t, printed("ready"), append(nobody, crecv, "-x", link)...)
	seeing := p.start(t, notified, append(reader, nlmcast, "listen", "--private", "all="+key, "link", "addr")...)
	seeingPy := p.start(t, printed("ready"), append(reader, python, "../examples/python/nlmcast_recv.py", "-x", "--private", key, link)...)
	raw := p.collect(t, &receiver.Config{Streams: ss, Private: map[string]string{"link": key, "ipv4-ifaddr": key, "ipv6-ifaddr": key}})
	t.Cleanup(func() { raw.stop() })
	direct := q.subscribe(t, []uint32{unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR})

	q.ip(t, "link", "add", "qsecret0", "address", "02:00:00:51:00:77", "type", "veth", "peer", "name", "qsecret1")
	q.ip(t, "addr", "add", "198.51.100.77/24", "dev", "qsecret0")
	direct.stop()

	// With the key: every event, as Q's kernel sent it.
	links := bridged(t, "with the key", direct.messages(unix.RTNLGRP_LINK), raw, "link")
	addrs := bridged(t, "with the key", direct.messages(unix.RTNLGRP_IPV4_IFADDR), raw, "ipv4-ifaddr")
	for _, g := range links {
		if g.flags&frame.FlagSealed == 0 {
			t.Errorf("an event came in the clear: flags %v", g.flags)
		}
	}
	seeing.waitStdout(t, "listen --private printed Q's link and address", func(out string) bool {
		return strings.Contains(out, "qsecret0") && strings.Contains(out, "198.51.100.77")
	})
	// And every one of Q's events: listen prints each by its number (the
	// root reader's frames above are the same frames), the Python example
	// each link message whole.
	want := map[string]bool{}
	for stream, run := range map[string][]got{"link": links, "ipv4-ifaddr": addrs} {
		for _, g := range run {
			want[fmt.Sprintf("[%s] #%d", stream, g.seq)] = true
		}
	}
	seeing.waitStdout(t, fmt.Sprintf("listen --private printed all %d of Q's events", len(want)), func(out string) bool {
		return listedAll(out, want)
	})
	secretName := hex.EncodeToString([]byte("qsecret0"))
	seeingPy.waitStdout(t, "the Python example with the key printed each of Q's link messages", func(out string) bool {
		for _, m := range direct.messages(unix.RTNLGRP_LINK) {
			if !strings.Contains(out, hex.EncodeToString(m)) {
				return false
			}
		}
		return strings.Contains(out, secretName)
	})

	// Without it: what they print says the streams are sealed, and holds
	// nothing of Q.
	blind.waitStdout(t, "listen without the key said the stream is sealed", func(out string) bool {
		return strings.Contains(out, "!! a private stream: its frames are sealed")
	})
	// Their headers are in the clear: flags SEALED and NSID (4), with Q's id in P.
	nsid := nsidIn(t, p, q)
	blindPy.waitStdout(t, "the Python example without the key printed sealed frames", func(out string) bool {
		return strings.Contains(out, fmt.Sprintf("sealed ok kind=1 flags=36 nsid=%d ", nsid))
	})
	blindC.waitStdout(t, "the C example printed sealed frames", func(out string) bool { return strings.Contains(out, "sealed kind=1 flags=36") })
	out, err = exec.Command("ip", append([]string{"netns", "exec", p.name}, append(nobody, nlmcast, "listen", "--private", "all="+key, "--count", "1", "link")...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("uid 65534 opening the key file: %v: %s", err, out)
	}
	capture.stop() // it reads what is queued first
	var sealed int
	secrets := map[string][]byte{
		"the interface name": []byte("qsecret"),
		"the MAC address":    {0x02, 0x00, 0x00, 0x51, 0x00, 0x77},
		"the address":        {198, 51, 100, 77},
		"the address, text":  []byte("198.51.100.77"),
	}
	for _, line := range strings.Fields(capture.Stdout()) {
		d, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		for what, b := range secrets {
			if bytes.Contains(d, b) {
				t.Errorf("uid 65534 captured %s: %x", what, d)
			}
		}
		if d[0] == '{' { // a JSON group's: heartbeats and goodbye alone, marked sealed
			if f, err := frame.ParseJSON(d); err != nil || !f.Sealed || (f.Kind != "heartbeat" && f.Kind != "goodbye") || f.Event != nil {
				t.Errorf("captured on a JSON group of a private stream: %s", d)
			}
			continue
		}
		h, _, err := frame.Parse(d)
		switch {
		case err != nil:
			t.Errorf("captured a datagram that is not a frame: %.80q", d)
		case h.Flags&frame.FlagSealed == 0:
			t.Errorf("captured a frame in the clear: %+v", h)
		case h.Kind == frame.KindEvent:
			sealed++
		}
	}
	if want := len(direct.messages(unix.RTNLGRP_LINK)) + len(direct.messages(unix.RTNLGRP_IPV4_IFADDR)); sealed < want {
		t.Errorf("uid 65534 captured %d sealed events, want at least the %d Q's kernel sent: the capture proves nothing", sealed, want)
	}
	for name, pr := range map[string]*proc{"listen": blind, "Python": blindPy, "C": blindC} {
		if out := pr.Stdout(); strings.Contains(out, "qsecret") || strings.Contains(out, secretName) || strings.Contains(out, "198.51.100.77") {
			t.Errorf("%s without the key printed Q's secrets:\n%s", name, out)
		}
	}
}

// listedAll reports whether listen's output out has an event line for
// each of want's "[stream] #seq".
func listedAll(out string, want map[string]bool) bool {
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		// [stream] 15:04:05.000000 #seq ...
		f := strings.Fields(line)
		if len(f) >= 3 && strings.HasPrefix(f[0], "[") && strings.HasPrefix(f[2], "#") {
			seen[f[0]+" "+f[2]] = true
		}
	}
	for k := range want {
		if !seen[k] {
			return false
		}
	}
	return true
}
