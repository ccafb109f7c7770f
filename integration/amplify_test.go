package integration

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// routeReq is an RTM_NEWROUTE or RTM_DELROUTE for 10.x.y.z/32 (x, y, z
// from i) out of ifindex, in the main table.
func routeReq(typ uint16, ifindex int, i int) netlink.Message {
	body := make([]byte, unix.SizeofRtMsg+8+8)
	body[0], body[1] = unix.AF_INET, 32
	body[4], body[5], body[6], body[7] = unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_LINK, unix.RTN_UNICAST
	a := body[unix.SizeofRtMsg:]
	binary.NativeEndian.PutUint16(a, 8)
	binary.NativeEndian.PutUint16(a[2:], unix.RTA_DST)
	copy(a[4:], []byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	binary.NativeEndian.PutUint16(a[8:], 8)
	binary.NativeEndian.PutUint16(a[10:], unix.RTA_OIF)
	binary.NativeEndian.PutUint32(a[12:], uint32(ifindex))
	flags := netlink.Request
	if typ == unix.RTM_NEWROUTE {
		flags |= netlink.Create | netlink.Excl
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags}, Data: body}
}

// unprivilegedPython returns a python3 that uid 65534 can run (a python3
// found first in root's PATH, such as a pyenv shim under /root, may not
// be one).
func unprivilegedPython(t *testing.T, setpriv string) string {
	t.Helper()
	candidates := []string{testenv.RequireCommand(t, "python3"), "/usr/bin/python3", "/usr/local/bin/python3"}
	for _, py := range candidates {
		if exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", py, "-c", "pass").Run() == nil {
			return py
		}
	}
	testenv.Missing(t, fmt.Sprintf("no python3 that uid 65534 can run among %v", candidates))
	return ""
}

// flood is the attacker: as uid 65534, one socket sends 1,000 requests
// for the ipv4-route stream, then counts the answer frames it gets from
// the bridge until nothing comes for 3 s.
const flood = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.bind(("127.0.0.1", 0))
print("ready", file=sys.stderr, flush=True)
req = b"NLMC" + struct.pack(">BBHHHIQQqII", 1, 8, 0, 48, 0, 7, 0, 0, 0, 0, 0)
for i in range(1000):
    s.sendto(req, ("239.255.78.0", 17800))
print("sent", flush=True)
s.settimeout(3.0)
frames = 0
alln = 0
try:
    while True:
        d, src = s.recvfrom(70000)
        alln += 1
        if alln == 1: print("first", src, d[:8].hex(), file=sys.stderr, flush=True)
        if src == ("127.0.0.1", 1021) and d[:4] == b"NLMC" and struct.unpack(">H", d[6:8])[0] & 0x0008:
            frames += 1
except socket.timeout:
    pass
print("answer-frames", frames, "all", alln, flush=True)
`

// TestRequestFloodCostsOthersNothing: with 100,000 routes, uid 65534 sends
// 1,000 resync requests. Before, each was a dump multicast to every
// receiver of the route stream (10 requests made 1,000,250 datagrams, and
// receivers lost frames, which made Mirrors ask again). Now the attacker
// alone is answered, at its token bucket's rate: an honest receiver of the
// stream sees no resync and misses nothing, and a Mirror stays in sync
// with the kernel through changes made meanwhile.
func TestRequestFloodCostsOthersNothing(t *testing.T) {
	const routes = 100000
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	python := unprivilegedPython(t, setpriv)
	va := ns.veth(t)
	nl := ns.rtnl(t)
	msgs := make([]netlink.Message, routes)
	for i := range msgs {
		msgs[i] = routeReq(unix.RTM_NEWROUTE, va, i)
	}
	nl.burst(msgs) // rtnetlink applies each before its sendmsg returns

	stats := filepath.Join(t.TempDir(), "stats.json")
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link,ipv4-ifaddr,ipv4-route", "--encodings", "raw", "--stats", stats)
	route := mustStream("ipv4-route")
	var honest *receiver.Receiver
	ns.do(t, func() (err error) {
		honest, err = receiver.New(&receiver.Config{Streams: []streams.Stream{route}})
		return err
	})
	log := logFrames(honest)
	defer honest.Close()
	mir, _ := startMirror(t, ns)
	mirrorMatches(t, mir, nl)
	before := mir.Stats()

	start := time.Now()
	attacker := ns.start(t, printed("ready"), setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", flood)
	attacker.waitStdout(t, "the requests sent", func(out string) bool { return strings.Contains(out, "sent") })
	// Changes while the bridge answers: the mirror must follow them.
	var changes []netlink.Message
	for i := 0; i < 50; i++ {
		changes = append(changes, routeReq(unix.RTM_DELROUTE, va, i), routeReq(unix.RTM_NEWROUTE, va, routes+i))
	}
	nl.burst(changes)
	attacker.waitStdout(t, "the attacker's count of answer frames", func(out string) bool { return strings.Contains(out, "answer-frames") })
	elapsed := time.Since(start)
	mirrorMatches(t, mir, nl)

	var answered int
	fmt.Sscanf(attacker.Stdout()[strings.Index(attacker.Stdout(), "answer-frames"):], "answer-frames %d", &answered)
	if answered == 0 {
		t.Errorf("the requester got no answer frame:\n%s\n%s", attacker.Stdout(), attacker.Stderr())
	}
	// The honest receiver: every frame, and no resync.
	waitFor(t, &log.changed, "the 100 changes on the route stream", func() bool { return log.count("ipv4-route", frame.KindEvent) >= 100 })
	if n := log.count("ipv4-route", frame.KindResyncBegin) + log.count("ipv4-route", frame.KindEvent) - 100; n != 0 {
		t.Errorf("the honest receiver got %d frames of resyncs (%d resync-begin)", n, log.count("ipv4-route", frame.KindResyncBegin))
	}
	if k := log.noticeKinds(); len(k) != 0 {
		t.Errorf("the honest receiver reported %v", k)
	}
	if st := honest.Stats(); st.Missing != 0 || st.Mcast.KernelDrops != 0 {
		t.Errorf("the honest receiver lost frames: %+v", st)
	}
	if after := mir.Stats(); after.Receiver.Missing != before.Receiver.Missing || after.Requests != before.Requests {
		t.Errorf("the mirror missed frames or asked again during the flood: %+v, before %+v", after, before)
	}

	// The bridge answered at the bucket's rate and refused the rest.
	bridge.stop()
	b, err := os.ReadFile(stats)
	var rep netlinkbridge.StatsReport
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil {
		t.Fatalf("bridge stats: %v\n%s", err, bridge.Stderr())
	}
	st := rep.Families["route"]
	// Requests the bridge read (its request socket drops what it cannot
	// hold): at most a burst and one a second taken from the attacker's
	// port, beside the mirror's (one per stream per time it asked).
	allowed := uint64(netlinkbridge.DefaultRequestBurst) + uint64(elapsed/netlinkbridge.DefaultRequestEvery) + 1
	mirrors := 3 * before.Requests
	if st.Requests > allowed+mirrors || st.RequestsRefused == 0 || st.Resyncs != 0 {
		t.Errorf("1,000 requests in %v: %d taken (%d of them the mirror's at most), %d refused, %d multicast resyncs; want at most %d of the attacker's taken",
			elapsed.Round(time.Millisecond), st.Requests, mirrors, st.RequestsRefused, st.Resyncs, allowed)
	}
	t.Logf("1,000 requests in %v: %d taken, %d refused, %d answers (the mirror's included); the attacker got %d answer frames; bridge: %d datagrams, %v CPU",
		elapsed.Round(time.Millisecond), st.Requests, st.RequestsRefused, st.Answers, answered, st.Datagrams, time.Duration(rep.Process.CPU()))
}
