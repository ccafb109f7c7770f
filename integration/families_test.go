package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// events returns the event frames received so far on a stream.
func (c *goCollector) events(stream string) []got {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []got
	for _, g := range c.raw {
		if g.stream == stream && g.kind == frame.KindEvent {
			out = append(out, g)
		}
	}
	return out
}

// receivers joins streams in both encodings in ns.
func (ns *netns) receivers(t *testing.T, m streams.Map, names ...string) (raw, js *goCollector) {
	t.Helper()
	return ns.receiversFrom(t, m, nil, false, names...)
}

// receiversFrom is receivers with the multicast config mc and Insecure.
func (ns *netns) receiversFrom(t *testing.T, m streams.Map, mc *mcast.ReceiverConfig, insecure bool, names ...string) (raw, js *goCollector) {
	t.Helper()
	ss, err := streams.Resolve(names...)
	if err != nil {
		t.Fatal(err)
	}
	raw = ns.collect(t, &receiver.Config{Streams: ss, Map: m, Mcast: mc, Insecure: insecure})
	js = ns.collect(t, &receiver.Config{Streams: ss, Map: m, Encoding: streams.JSON, Mcast: mc, Insecure: insecure})
	t.Cleanup(func() { raw.stop(); js.stop() })
	return raw, js
}

// bridged waits until the receiver c has got, on stream, every message of
// the direct subscriber's record, which the test has stopped, and returns
// those frames. c joined before the direct subscriber did, and the bridge
// before c, so the record must come through whole, as one run of c's
// events: byte for byte, in order, with consecutive sequence numbers (c may
// have more before the run, or after it, from changes before the direct
// subscriber joined or after it stopped).
func bridged(t *testing.T, who string, direct [][]byte, c *goCollector, stream string) []got {
	t.Helper()
	if len(direct) == 0 {
		t.Fatalf("%s: direct netlink got no events: the changes did not happen", who)
	}
	var run []got
	if !await(&c.changed, patience, func() bool {
		evs := c.events(stream)
		i := slices.IndexFunc(evs, func(g got) bool { return bytes.Equal(g.payload, direct[0]) })
		if i < 0 || len(evs)-i < len(direct) {
			return false
		}
		run = evs[i : i+len(direct)]
		return true
	}) {
		t.Fatalf("%s: after %v, the bridge delivered %d events, not the %d direct netlink got from its first",
			who, patience, len(c.events(stream)), len(direct))
	}
	for j := range run {
		if !bytes.Equal(direct[j], run[j].payload) {
			t.Fatalf("%s: event %d differs from direct netlink:\n%x\n%x", who, j, run[j].payload, direct[j])
		}
		if j > 0 && run[j].seq != run[j-1].seq+1 {
			t.Errorf("%s: sequence %d after %d", who, run[j].seq, run[j-1].seq)
		}
	}
	return run
}

// jsonOf waits until the JSON receiver c has the frames of run's events
// (the same sequence numbers on the same stream), and returns them in
// run's order.
func jsonOf(t *testing.T, c *goCollector, stream string, run []got) []got {
	t.Helper()
	var out []got
	if !await(&c.changed, patience, func() bool {
		bySeq := map[uint64]got{}
		for _, g := range c.events(stream) {
			if g.epoch == run[0].epoch {
				bySeq[g.seq] = g
			}
		}
		out = out[:0]
		for _, r := range run {
			g, ok := bySeq[r.seq]
			if !ok {
				return false
			}
			out = append(out, g)
		}
		return true
	}) {
		t.Fatalf("%s: after %v, %d of the %d events in JSON", stream, patience, len(out), len(run))
	}
	return out
}

// decodedEvents parses the JSON frames of a stream and unmarshals each
// event object into a fresh T.
func decodedEvents[T any](t *testing.T, stream string, frames []got) ([]T, []*frame.JSONFrame) {
	t.Helper()
	var evs []T
	var fs []*frame.JSONFrame
	for _, g := range frames {
		f, err := frame.ParseJSON(g.payload)
		if err != nil {
			t.Fatalf("%s: bad JSON frame: %v: %s", stream, err, g.payload)
		}
		var ev T
		if err := json.Unmarshal(f.Event, &ev); err != nil {
			t.Fatalf("%s: event does not decode: %v: %s", stream, err, f.Event)
		}
		evs, fs = append(evs, ev), append(fs, f)
	}
	return evs, fs
}

func TestUeventStream(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "uevent", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "uevent")
	direct := ns.subscribeFamily(t, unix.NETLINK_KOBJECT_UEVENT, []uint32{1}, true, nil)

	ns.ip(t, "link", "add", "uev0", "type", "veth", "peer", "name", "uev1")
	ns.ip(t, "link", "del", "uev0")
	direct.stop()

	run := bridged(t, "uevent raw", direct.messages(1), raw, "uevent")
	evs, _ := decodedEvents[decode.UeventEvent](t, "uevent", jsonOf(t, js, "uevent", run))
	seen := map[string]bool{}
	var last uint64
	for i, ev := range evs {
		if ev.Seqnum == nil || *ev.Seqnum <= last {
			t.Errorf("event %d: seqnum %v not above %d", i, ev.Seqnum, last)
		} else {
			last = *ev.Seqnum
		}
		// The JSON carries every KEY=VALUE of the raw message.
		rawMsg := run[i].payload
		for _, kv := range bytes.Split(rawMsg, []byte{0})[1:] {
			if k, v, ok := strings.Cut(string(kv), "="); ok && ev.Properties[k] != v {
				t.Errorf("event %d: property %s = %q in JSON, %q raw", i, k, ev.Properties[k], v)
			}
		}
		if ev.Subsystem == "net" {
			seen[ev.Action+" "+ev.Devpath] = true
		}
	}
	for _, want := range []string{"add /devices/virtual/net/uev0", "add /devices/virtual/net/uev1", "remove /devices/virtual/net/uev0", "remove /devices/virtual/net/uev1"} {
		if !seen[want] {
			t.Errorf("no uevent %q; got %v", want, seen)
		}
	}
}

func TestEthtoolMonitorStream(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ethtool := testenv.RequireCommand(t, "ethtool")
	ns.ip(t, "link", "add", "eth0x", "type", "veth", "peer", "name", "eth1x")
	ns.start(t, notified, nlmcast, "bridge", "--streams", "ethtool:monitor,nlctrl:notify", "--json-always")
	var group uint32
	ns.do(t, func() error {
		c, err := genetlink.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		f, err := c.GetFamily("ethtool")
		if err != nil {
			return fmt.Errorf("ethtool netlink family: %w", err)
		}
		for _, g := range f.Groups {
			if g.Name == "monitor" {
				group = g.ID
			}
		}
		return nil
	})
	raw, js := ns.receivers(t, streams.Map{}, "ethtool:monitor")
	direct := ns.subscribeFamily(t, unix.NETLINK_GENERIC, []uint32{group}, false, nil)

	// ethtool (6.1 here) sets features with ETHTOOL_MSG_FEATURES_SET over
	// generic netlink when the kernel has ethtool netlink, as this one has.
	for _, onoff := range []string{"off", "on"} {
		if out, err := exec.Command("ip", "netns", "exec", ns.name, ethtool, "-K", "eth0x", "tx", onoff).CombinedOutput(); err != nil {
			t.Fatalf("ethtool -K: %v: %s", err, out)
		}
	}
	direct.stop()

	run := bridged(t, "ethtool:monitor raw", direct.messages(group), raw, "ethtool:monitor")
	evs, fs := decodedEvents[decode.GenlEvent](t, "ethtool:monitor", jsonOf(t, js, "ethtool:monitor", run))
	if len(evs) < 2 {
		t.Fatalf("%d ethtool JSON events, want one per change", len(evs))
	}
	for i, ev := range evs {
		if ev.Family != "ethtool" || ev.CmdName != "features-ntf" || ev.Dev != "eth0x" || fs[i].Group != group {
			t.Errorf("event %d: %+v in group %d, want a features notification for eth0x in group %d", i, ev, fs[i].Group, group)
		}
	}
}

func TestConntrackStreams(t *testing.T) {
	a, b := newNetNS(t), newNetNS(t)
	nlmcast, _ := binaries(t)
	nft := testenv.RequireCommand(t, "nft")
	conntrack := testenv.RequireCommand(t, "conntrack")
	vethPair(t, a, b, "10.77.0.1", "10.77.0.2")
	// Track connections in a, in zone 5 both ways, marked 7 as they
	// enter; the bridge's own datagrams on lo are left untracked, or every
	// new stream address would make an event.
	for _, rule := range []string{
		"add table ip nlmt",
		"add chain ip nlmt pre { type filter hook prerouting priority -300; }",
		`add rule ip nlmt pre iifname "nva*" ct zone set 5`,
		"add chain ip nlmt in { type filter hook input priority 0; }",
		"add rule ip nlmt in ct state new ct mark set 7",
		"add chain ip nlmt raw { type filter hook output priority -300; }",
		"add rule ip nlmt raw oifname lo notrack",
		`add rule ip nlmt raw oifname "nva*" ct zone set 5`,
	} {
		if out, err := exec.Command("ip", "netns", "exec", a.name, nft, rule).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", rule, err, out)
		}
	}
	// Conntrack streams are private: refused without a key, or the loud
	// flag (which this test takes, to read them in both encodings).
	out, err := exec.Command("ip", "netns", "exec", a.name, nlmcast, "bridge", "--streams", "conntrack").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--expose conntrack-new=") {
		t.Fatalf("bridge --streams conntrack: %v: %s; want a refusal that names --expose", err, out)
	}
	a.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "conntrack", "--json-always")
	raw, js := a.receivers(t, streams.Map{}, "conntrack")
	direct := a.subscribeFamily(t, unix.NETLINK_NETFILTER, []uint32{1, 2, 3}, false, nil)

	// b sends to a UDP echo in a: new, then update (the reply), then
	// destroy (the table flushed).
	var echo *net.UDPConn
	a.do(t, func() (err error) {
		echo, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.77.0.1"), Port: 5555})
		return err
	})
	defer echo.Close()
	go func() {
		buf := make([]byte, 100)
		n, from, err := echo.ReadFromUDP(buf)
		if err == nil {
			echo.WriteToUDP(buf[:n], from)
		}
	}()
	b.do(t, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.77.0.2"), Port: 4444}, &net.UDPAddr{IP: net.ParseIP("10.77.0.1"), Port: 5555})
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(patience))
		_, err = c.Read(make([]byte, 10))
		return err
	})
	// The new and update events were sent as the request and the reply
	// passed; the flush sends the destroy events before it returns.
	if out, err := exec.Command("ip", "netns", "exec", a.name, conntrack, "-F").CombinedOutput(); err != nil {
		t.Fatalf("conntrack -F: %v: %s", err, out)
	}
	direct.stop()

	runs := map[string][]got{}
	for g, name := range map[uint32]string{1: "conntrack-new", 2: "conntrack-update", 3: "conntrack-destroy"} {
		runs[name] = bridged(t, name+" raw", direct.messages(g), raw, name)
	}
	want := map[string]bool{"conntrack-new": false, "conntrack-update": false, "conntrack-destroy": false}
	for name := range want {
		evs, _ := decodedEvents[decode.ConntrackEvent](t, name, jsonOf(t, js, name, runs[name]))
		for _, ev := range evs {
			o, r := ev.Orig, ev.Reply
			if o == nil || r == nil || o.SrcPort == nil || r.SrcPort == nil {
				continue
			}
			if ev.Protocol == "udp" && ev.Family == "ipv4" && o.Src == "10.77.0.2" && o.Dst == "10.77.0.1" &&
				*o.SrcPort == 4444 && *o.DstPort == 5555 && r.Src == "10.77.0.1" && *r.SrcPort == 5555 &&
				ev.Event == strings.TrimPrefix(name, "conntrack-") && ev.Zone != nil && *ev.Zone == 5 && ev.Mark != nil && *ev.Mark == 7 {
				want[name] = true
			}
		}
	}
	for name, ok := range want {
		if !ok {
			t.Errorf("%s: no JSON event for the UDP flow 10.77.0.2:4444 -> 10.77.0.1:5555 in zone 5 with mark 7", name)
		}
	}
}

// vethPair links two namespaces with addresses on a /24.
func vethPair(t *testing.T, a, b *netns, addrA, addrB string) {
	t.Helper()
	var r [3]byte
	rand.Read(r[:])
	va, vb := fmt.Sprintf("nva%x", r), fmt.Sprintf("nvb%x", r)
	a.ip(t, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", b.name)
	a.ip(t, "addr", "add", addrA+"/24", "dev", va)
	b.ip(t, "addr", "add", addrB+"/24", "dev", vb)
	a.ip(t, "link", "set", va, "up")
	b.ip(t, "link", "set", vb, "up")
}

// procListen sends PROC_CN_MCAST_LISTEN on a connector socket.
func procListen(fd int) error {
	msg := make([]byte, unix.SizeofNlMsghdr+20+4)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.NLMSG_DONE)
	ne.PutUint32(msg[16:], 1) // CN_IDX_PROC
	ne.PutUint32(msg[20:], 1) // CN_VAL_PROC
	ne.PutUint16(msg[32:], 4)
	ne.PutUint32(msg[36:], 1) // PROC_CN_MCAST_LISTEN
	return unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// procPids reads a connector message's event kind and pids.
func procPids(msg []byte) (what uint32, a, b, c, d int32) {
	ne := binary.NativeEndian
	ev := msg[unix.SizeofNlMsghdr+20:]
	if len(ev) < 32 {
		return 0, 0, 0, 0, 0
	}
	return ne.Uint32(ev), int32(ne.Uint32(ev[16:])), int32(ne.Uint32(ev[20:])), int32(ne.Uint32(ev[24:])), int32(ne.Uint32(ev[28:]))
}

// TestProcStream runs in the host's initial namespace (the connector lives
// only there) with a private address map, sending only on loopback.
func TestProcStream(t *testing.T) {
	testenv.RequireRoot(t)
	nlmcast, _ := binaries(t)
	host := &netns{fd: -1}
	var r [2]byte
	rand.Read(r[:])
	m := streams.Map{Base: netip.AddrFrom4([4]byte{239, 254, r[0] &^ 1, 0}), Port: 20000 + uint16(r[1])*8}
	args := []string{"bridge", "--streams", "uevent", "--base", m.Base.String(), "--port", strconv.Itoa(int(m.Port)),
		"--source-port", "1017", "--requests=false", "--json-always"}
	out, err := exec.Command(nlmcast, "bridge", "--streams", "proc").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stream proc is private") {
		t.Fatalf("bridge --streams proc: %v: %s; want a refusal", err, out)
	}
	host.start(t, notified, append([]string{nlmcast}, append(args, "--cleartext-to-all-users", "proc")...)...)
	// From the bridge's port, whatever the host's port start: the host's
	// setting is not this test's to change.
	// Every process of the host makes events, and a test run beside this
	// one (the other packages' builds) makes thousands at once: buffers
	// that hold such a burst, so that the child's events are not dropped
	// with it (a drop would be a notice, printed below, not silence).
	from := &mcast.ReceiverConfig{Source: netip.AddrPortFrom(mcast.LoopbackSource, 1017), ReadBuffer: 32 << 20}
	raw, js := host.receiversFrom(t, m, from, true, "proc")
	direct := host.subscribeFamily(t, unix.NETLINK_CONNECTOR, []uint32{1}, false, procListen)

	child := exec.Command("/bin/sh", "-c", "exit 7")
	if err := child.Run(); err == nil || child.ProcessState.ExitCode() != 7 {
		t.Fatalf("child: %v", err)
	}
	pid := int32(child.Process.Pid)
	// Wait for the child's exit to come through both paths.
	has := func(msgs [][]byte) map[uint32][]byte {
		found := map[uint32][]byte{}
		for _, msg := range msgs {
			what, p1, _, p3, _ := procPids(msg)
			switch {
			case what == 1 && p3 == pid: // fork: child pid third
				found[what] = msg
			case (what == 2 || what == 0x80000000) && p1 == pid:
				found[what] = msg
			}
		}
		return found
	}
	rawMsgs := func() [][]byte {
		var out [][]byte
		for _, g := range raw.events("proc") {
			out = append(out, g.payload)
		}
		return out
	}
	// The kernel sent them as the child forked, ran and exited: wait until
	// both paths have them.
	waitFor(t, &direct.changed, "the child's fork, exec and exit directly", func() bool { return len(has(direct.messages(1))) == 3 })
	waitFor(t, &raw.changed, "the child's fork, exec and exit through the bridge", func() bool { return len(has(rawMsgs())) == 3 })
	d, b := has(direct.messages(1)), has(rawMsgs())
	for what, msg := range d {
		if !bytes.Equal(msg, b[what]) {
			t.Errorf("event %#x differs:\nbridge %x\ndirect %x", what, b[what], msg)
		}
	}
	// The JSON receiver has sockets of its own: wait for the JSON frames of
	// the same three events, which carry the raw frames' sequence numbers.
	type key struct{ epoch, seq uint64 }
	keys := map[uint32]key{}
	for _, g := range raw.events("proc") {
		what, p1, _, p3, _ := procPids(g.payload)
		if what == 1 && p3 == pid || (what == 2 || what == 0x80000000) && p1 == pid {
			keys[what] = key{g.epoch, g.seq}
		}
	}
	if len(keys) != 3 {
		t.Fatalf("the raw frames of the child's events: %v", keys)
	}
	byWhat := map[uint32]got{}
	if !await(&js.changed, patience, func() bool {
		for _, g := range js.events("proc") {
			for what, k := range keys {
				if g.epoch == k.epoch && g.seq == k.seq {
					byWhat[what] = g
				}
			}
		}
		return len(byWhat) == 3
	}) {
		js.mu.Lock()
		notices := slices.Clone(js.notices)
		js.mu.Unlock()
		t.Fatalf("JSON frames of the child's events (by number %v): only %d; the JSON receiver's notices: %v; stats %+v",
			keys, len(byWhat), notices, js.r.Stats())
	}
	evs, _ := decodedEvents[decode.ProcEvent](t, "proc", []got{byWhat[1], byWhat[2], byWhat[0x80000000]})
	fork, exec, exit := evs[0], evs[1], evs[2]
	if fork.Event != "fork" || *fork.ChildPID != pid || *fork.ParentTGID != int32(unix.Getpid()) {
		t.Errorf("JSON fork: %s; want child %d, parent %d", byWhat[1].payload, pid, unix.Getpid())
	}
	if exec.Event != "exec" || *exec.PID != pid {
		t.Errorf("JSON exec: %s; want pid %d", byWhat[2].payload, pid)
	}
	// The exit's parent is the one the kernel says in the same event's raw
	// message (the forking thread's process, or whoever reaped it).
	var exitParent int32 = -1
	if m := d[0x80000000]; len(m) >= unix.SizeofNlMsghdr+20+40 { // cn_msg, then proc_event's exit: parent_tgid at 36
		exitParent = int32(binary.NativeEndian.Uint32(m[unix.SizeofNlMsghdr+20+36:]))
	}
	if exitParent != int32(unix.Getpid()) {
		t.Logf("the child exited with parent %d, not this process (%d): it was reparented", exitParent, unix.Getpid())
	}
	if exit.Event != "exit" || *exit.PID != pid || exit.Status == nil || *exit.Status != 7 || exit.TermSignal != nil ||
		exit.ParentTGID == nil || *exit.ParentTGID != exitParent {
		t.Errorf("JSON exit: %s; want pid %d, status 7, parent %d (raw message %x)", byWhat[0x80000000].payload, pid, exitParent, d[0x80000000])
	}
}

// TestBridgeOtherNamespace bridges b's events from a bridge running in a
// (--netns), and with --all-nsid a peer's events marked with its id.
func TestBridgeOtherNamespace(t *testing.T) {
	a, b := newNetNS(t), newNetNS(t)
	nlmcast, _ := binaries(t)

	// --netns: sockets in b, multicast in a.
	a.start(t, notified, nlmcast, "bridge", "--streams", "addr", "--netns", b.name, "--cleartext-to-all-users", "all", "--json-always")
	raw, js := a.receivers(t, streams.Map{}, "ipv4-ifaddr")
	direct := b.subscribe(t, []uint32{unix.RTNLGRP_IPV4_IFADDR})
	b.ip(t, "addr", "add", "10.55.0.1/32", "dev", "lo")
	b.ip(t, "addr", "del", "10.55.0.1/32", "dev", "lo")
	direct.stop()
	run := bridged(t, "--netns", direct.messages(unix.RTNLGRP_IPV4_IFADDR), raw, "ipv4-ifaddr")
	jsonOf(t, js, "ipv4-ifaddr", run)
	if n := len(js.events("ipv4-ifaddr")); n != 2 || len(run) != 2 {
		t.Errorf("--netns: %d raw and %d JSON events, want 2", len(run), n)
	}

	// --all-nsid: a bridge in a sees b's events, marked with b's id in a.
	c := newNetNS(t)
	if out, err := exec.Command("ip", "netns", "exec", c.name, "ip", "netns", "set", b.name, "42").CombinedOutput(); err != nil {
		t.Fatalf("ip netns set: %v: %s", err, out)
	}
	c.start(t, notified, nlmcast, "bridge", "--streams", "addr", "--all-nsid", "--cleartext-to-all-users", "all", "--json-always")
	raw2, js2 := c.receivers(t, streams.Map{}, "ipv4-ifaddr")
	direct2 := b.subscribe(t, []uint32{unix.RTNLGRP_IPV4_IFADDR})
	b.ip(t, "addr", "add", "10.55.0.2/32", "dev", "lo")
	c.ip(t, "addr", "add", "10.56.0.1/32", "dev", "lo") // c's own: no nsid
	direct2.stop()
	for _, r := range []*goCollector{raw2, js2} {
		waitFor(t, &r.changed, "--all-nsid: b's and c's address events through the bridge", func() bool {
			return len(r.events("ipv4-ifaddr")) >= 2
		})
	}
	var peer, own int
	for _, g := range raw2.events("ipv4-ifaddr") {
		switch {
		case g.flags&frame.FlagNSID != 0 && g.nsid == 42 && bytes.Equal(g.payload, direct2.messages(unix.RTNLGRP_IPV4_IFADDR)[0]):
			peer++
		case g.flags&frame.FlagNSID == 0:
			own++
		default:
			t.Errorf("--all-nsid: unexpected frame flags %v nsid %d", g.flags, g.nsid)
		}
	}
	if peer != 1 || own != 1 {
		t.Errorf("--all-nsid: %d events from b with nsid 42 (want 1, identical to b's direct subscriber), %d of c's own (want 1)", peer, own)
	}
	for _, g := range js2.events("ipv4-ifaddr") {
		f, err := frame.ParseJSON(g.payload)
		if err != nil {
			t.Fatal(err)
		}
		isPeer := strings.Contains(f.Summary, "10.55.0.2")
		if isPeer != (f.NSID != nil && *f.NSID == 42) {
			t.Errorf("--all-nsid JSON: %q has nsid %v", f.Summary, f.NSID)
		}
	}
	// Without a key (or the loud flag), other namespaces' events are
	// refused: every local user of a could read them.
	for _, args := range [][]string{{"--netns", b.name}, {"--all-nsid"}} {
		cmd := append([]string{"netns", "exec", a.name, nlmcast, "bridge", "--streams", "addr", "--source-port", "1015"}, args...)
		out, err := exec.Command("ip", cmd...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--expose all=") || !strings.Contains(string(out), "nlmcast keygen") {
			t.Errorf("bridge %v without a key: %v: %s", args, err, out)
		}
	}
	// Process events need the initial namespace: a clear refusal elsewhere.
	out, err := exec.Command("ip", "netns", "exec", a.name, nlmcast, "bridge", "--streams", "uevent", "--cleartext-to-all-users", "proc", "--source-port", "1015").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "initial network namespace") {
		t.Errorf("proc outside the initial namespace: %v: %s", err, out)
	}
}

// TestMirrorKeepsPeerNamespacesApart: a Mirror of a bridge with --all-nsid
// keeps a table per namespace. p and its peer q (nsid 42 in p) both get
// links 77 and 78; the bridged namespace's table stays the kernel's, q's
// holds q's links under PeerKey, and deleting in one leaves the other.
func TestMirrorKeepsPeerNamespacesApart(t *testing.T) {
	p, q := newNetNS(t), newNetNS(t)
	nlmcast, _ := binaries(t)
	if out, err := exec.Command("ip", "netns", "exec", p.name, "ip", "netns", "set", q.name, "42").CombinedOutput(); err != nil {
		t.Fatalf("ip netns set: %v: %s", err, out)
	}
	// Sealed: q's events are private to q, and to p's key holders.
	key := privateKey(t)
	p.start(t, notified, nlmcast, "bridge", "--streams", "link", "--all-nsid", "--expose", "all="+key, "--encodings", "raw")
	link := mustStream("link")
	var mir *receiver.Mirror
	p.do(t, func() (err error) {
		mir, err = receiver.NewMirror(&receiver.MirrorConfig{Streams: []streams.Stream{link}, RequestEvery: 300 * time.Millisecond,
			Private: map[string]string{"link": key}})
		return err
	})
	t.Cleanup(func() { mir.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mir.Run(ctx); err != nil {
			t.Errorf("mirror: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, patience)
	defer wcancel()
	if err := mir.WaitSynced(wctx); err != nil {
		t.Fatalf("mirror not synced at start: %v", err)
	}

	// The same indexes in both namespaces, told apart by their names.
	p.ip(t, "link", "add", "pa", "index", "77", "type", "veth", "peer", "name", "pb", "index", "78")
	q.ip(t, "link", "add", "qa", "index", "77", "type", "veth", "peer", "name", "qb", "index", "78")
	nl := p.rtnl(t)
	// tables returns the mirror's tables: the bridged namespace's keys,
	// and each peer's entries by key with their interface names.
	tables := func() (own []string, peers map[int32]map[string]string) {
		peers = map[int32]map[string]string{}
		for _, k := range mir.Keys(link) {
			nsid, isPeer, key := receiver.SplitPeerKey(k)
			if !isPeer {
				own = append(own, k)
				continue
			}
			if peers[nsid] == nil {
				peers[nsid] = map[string]string{}
			}
			msg, _ := mir.Get(link, k)
			peers[nsid][key] = linkName(msg)
		}
		return own, peers
	}
	expect := func(when string, wantPeers map[int32]map[string]string) {
		t.Helper()
		wantOwn := nl.dumpKeys(unix.RTM_GETLINK, unix.AF_UNSPEC, unix.SizeofIfInfomsg)
		var last string
		untilMirror(t, mir, func() string { return when + ": " + last }, patience, func() bool {
			own, peers := tables()
			ok := mir.Synced(link) && slices.Equal(own, wantOwn) && fmt.Sprint(peers) == fmt.Sprint(wantPeers)
			if ok {
				// The bridged namespace's entries are its own links.
				for _, k := range own {
					msg, _ := mir.Get(link, k)
					if name := linkName(msg); strings.HasPrefix(name, "q") {
						ok = false
						last = fmt.Sprintf("the bridged namespace's %s is q's %s", k, name)
					}
				}
			} else {
				last = fmt.Sprintf("synced %v, own %q (kernel %q), peers %v (want %v)", mir.Synced(link), own, wantOwn, peers, wantPeers)
			}
			return ok
		})
	}
	expect("after adding links 77 and 78 in both", map[int32]map[string]string{42: {"link 0/77": "qa", "link 0/78": "qb"}})
	if slices.Index(nl.dumpKeys(unix.RTM_GETLINK, unix.AF_UNSPEC, unix.SizeofIfInfomsg), "link 0/77") < 0 {
		t.Fatal("p has no link 77") // the check above would prove nothing
	}
	p.ip(t, "link", "del", "pa") // and pb
	expect("after deleting p's", map[int32]map[string]string{42: {"link 0/77": "qa", "link 0/78": "qb"}})
	q.ip(t, "link", "add", "qc", "index", "79", "type", "veth", "peer", "name", "qd", "index", "80")
	p.ip(t, "link", "add", "pa", "index", "77", "type", "veth", "peer", "name", "pb", "index", "78")
	q.ip(t, "link", "del", "qa") // and qb
	expect("after deleting q's", map[int32]map[string]string{42: {"link 0/79": "qc", "link 0/80": "qd"}})
}

// linkName returns the IFLA_IFNAME of an RTM_NEWLINK message.
func linkName(msg []byte) string {
	const off = unix.SizeofNlMsghdr + unix.SizeofIfInfomsg
	if len(msg) < off {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(msg[off:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.IFLA_IFNAME {
			return ad.String()
		}
	}
	return ""
}
