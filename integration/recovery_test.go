package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// rtnl is a netlink socket in a test namespace, for changes and dumps.
type rtnl struct {
	t *testing.T
	c *netlink.Conn
}

func (ns *netns) rtnl(t *testing.T) *rtnl {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: ns.fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rtnl{t, c}
}

// addrReq is an RTM_NEWADDR or RTM_DELADDR for 10.200.x.y/32 on ifindex.
func addrReq(typ uint16, ifindex int, i int) netlink.Message {
	body := make([]byte, unix.SizeofIfAddrmsg+8)
	body[0], body[1] = unix.AF_INET, 32
	binary.NativeEndian.PutUint32(body[4:], uint32(ifindex))
	a := body[unix.SizeofIfAddrmsg:]
	binary.NativeEndian.PutUint16(a, 8)
	binary.NativeEndian.PutUint16(a[2:], unix.IFA_LOCAL)
	copy(a[4:], []byte{10, 200, byte(i >> 8), byte(i)})
	flags := netlink.Request
	if typ == unix.RTM_NEWADDR {
		flags |= netlink.Create | netlink.Excl
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags}, Data: body}
}

// burst sends requests in batches: many messages per sendmsg, no acks.
func (r *rtnl) burst(msgs []netlink.Message) {
	r.t.Helper()
	const batch = 250
	for len(msgs) > 0 {
		n := min(batch, len(msgs))
		if _, err := r.c.SendMessages(msgs[:n]); err != nil {
			r.t.Fatalf("netlink send: %v", err)
		}
		msgs = msgs[n:]
	}
}

// dumpKeys dumps a table and returns the StateKey of every entry, sorted.
func (r *rtnl) dumpKeys(typ uint16, family uint8, hdrLen int) []string {
	r.t.Helper()
	body := make([]byte, hdrLen)
	body[0] = family
	msgs, err := r.c.Execute(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request | netlink.Dump}, Data: body})
	if err != nil {
		r.t.Fatalf("dump %d: %v", typ, err)
	}
	var keys []string
	for _, m := range msgs {
		b, _ := m.MarshalBinary()
		if k, _, ok := receiver.StateKey(b); ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// frameLog records the kinds and notices a receiver returns.
type frameLog struct {
	mu      sync.Mutex
	kinds   map[string]map[frame.Kind]int // by stream
	control map[string][]frame.Kind       // by stream, in order: every kind but events
	notices []receiver.Event
	epochs  []uint64
	done    chan struct{}
	changed signal // after each batch
}

func logFrames(r *receiver.Receiver) *frameLog {
	l := &frameLog{kinds: map[string]map[frame.Kind]int{}, control: map[string][]frame.Kind{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		evs := make([]receiver.Event, 64)
		for {
			n, err := r.ReadBatch(evs)
			if err != nil {
				return
			}
			l.mu.Lock()
			for _, ev := range evs[:n] {
				if ev.IsNotice() {
					l.notices = append(l.notices, ev)
					continue
				}
				if l.kinds[ev.Stream.Name] == nil {
					l.kinds[ev.Stream.Name] = map[frame.Kind]int{}
				}
				l.kinds[ev.Stream.Name][ev.Header.Kind]++
				if ev.Header.Kind != frame.KindEvent {
					l.control[ev.Stream.Name] = append(l.control[ev.Stream.Name], ev.Header.Kind)
				}
				if len(l.epochs) == 0 || l.epochs[len(l.epochs)-1] != ev.Header.Epoch {
					l.epochs = append(l.epochs, ev.Header.Epoch)
				}
			}
			l.mu.Unlock()
			l.changed.notify()
		}
	}()
	return l
}

func (l *frameLog) count(stream string, k frame.Kind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kinds[stream][k]
}

// followed reports whether the stream had a control frame of kind a and,
// after it, one of kind b.
func (l *frameLog) followed(stream string, a, b frame.Kind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.Index(l.control[stream], a)
	return i >= 0 && slices.Contains(l.control[stream][i:], b)
}

func (l *frameLog) noticeKinds() map[receiver.NoticeKind]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[receiver.NoticeKind]int{}
	for _, ev := range l.notices {
		m[ev.Notice.Kind]++
	}
	return m
}

// untilMirror waits until cond holds, checking it again after every
// change the mirror applies, and fails the test after max.
func untilMirror(t *testing.T, mir *receiver.Mirror, what func() string, max time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(max)
	for {
		changed := mir.Changed() // before the check: no change is missed
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			if cond() {
				return
			}
			t.Fatalf("after %v: %s", max, what())
		}
	}
}

// mirrored is what TestOverrunResyncsTheMirror compares with the kernel.
var mirrored = []struct {
	stream string
	typ    uint16
	family uint8
	hdrLen int
}{
	{"link", unix.RTM_GETLINK, unix.AF_UNSPEC, unix.SizeofIfInfomsg},
	{"ipv4-ifaddr", unix.RTM_GETADDR, unix.AF_INET, unix.SizeofIfAddrmsg},
	{"ipv4-route", unix.RTM_GETROUTE, unix.AF_INET, unix.SizeofRtMsg},
}

// startMirror makes a Mirror of the mirrored streams in the namespace.
func startMirror(t *testing.T, ns *netns) (*receiver.Mirror, context.CancelFunc) {
	return startMirrorFrom(t, ns, nil)
}

// startMirrorFrom makes a Mirror of the mirrored streams in the namespace,
// reading the Source source makes there (nil: the loopback groups).
func startMirrorFrom(t *testing.T, ns *netns, source func() (receiver.Source, error)) (*receiver.Mirror, context.CancelFunc) {
	t.Helper()
	var ss []streams.Stream
	for _, m := range mirrored {
		s, _ := streams.Lookup(m.stream)
		ss = append(ss, s)
	}
	var mir *receiver.Mirror
	ns.do(t, func() (err error) {
		cfg := &receiver.MirrorConfig{Streams: ss, RequestEvery: 300 * time.Millisecond}
		if source != nil {
			if cfg.Source, err = source(); err != nil {
				return err
			}
		}
		mir, err = receiver.NewMirror(cfg)
		return err
	})
	t.Cleanup(func() { mir.Close() }) // after stop, below
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mir.Run(ctx); err != nil {
			t.Errorf("mirror: %v", err)
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return mir, stop
}

// mirrorMatches waits until the mirror's tables equal the kernel's. The
// test's changes are done (rtnetlink applies a request before its sendmsg
// returns), so one dump of each table is what the mirror must reach.
func mirrorMatches(t *testing.T, mir *receiver.Mirror, nl *rtnl) {
	t.Helper()
	want := map[string][]string{}
	for _, m := range mirrored {
		want[m.stream] = nl.dumpKeys(m.typ, m.family, m.hdrLen)
	}
	diff := func() string {
		var d string
		for _, m := range mirrored {
			s, _ := streams.Lookup(m.stream)
			got := mir.Keys(s)
			if !mir.Synced(s) || !slices.Equal(got, want[m.stream]) {
				d += fmt.Sprintf("\n%s: synced=%v, mirror has %d entries, kernel %d; only in the mirror: %s; only in the kernel: %s",
					m.stream, mir.Synced(s), len(got), len(want[m.stream]), missingFrom(want[m.stream], got), missingFrom(got, want[m.stream]))
			}
		}
		return d
	}
	var last string
	untilMirror(t, mir, func() string {
		return fmt.Sprintf("mirror still differs from the kernel:%s\nmirror %+v", last, mir.Stats())
	}, patience, func() bool { last = diff(); return last == "" })
}

// missingFrom returns, for a message, the first few of keys that are not in
// have (both sorted).
func missingFrom(have, keys []string) string {
	var out []string
	for _, k := range keys {
		if _, found := slices.BinarySearch(have, k); !found {
			out = append(out, fmt.Sprintf("%q", k))
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// TestOverrunResyncsTheMirror: a netlink buffer far too small for a burst
// of 20,000 address events makes the bridge overrun; it says so on every
// stream, resyncs, and a Mirror ends with exactly the kernel's tables.
func TestOverrunResyncsTheMirror(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	va := ns.veth(t)
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link,ipv4-ifaddr,ipv4-route",
		"--encodings", "raw", "--read-buffer", "32768", "--resync-interval", "200ms")

	var watch *receiver.Receiver
	ns.do(t, func() (err error) {
		watch, err = receiver.New(&receiver.Config{Streams: []streams.Stream{mustStream("ipv4-ifaddr")}})
		return err
	})
	log := logFrames(watch)
	mir, stopMirror := startMirror(t, ns)
	wctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := mir.WaitSynced(wctx); err != nil {
		t.Fatalf("mirror not synced at start: %v", err)
	}

	nl := ns.rtnl(t)
	// 12,000 additions, then 8,000 deletions: 20,000 address events (and
	// as many local route events), 4,000 addresses left.
	var msgs []netlink.Message
	for i := 0; i < 12000; i++ {
		msgs = append(msgs, addrReq(unix.RTM_NEWADDR, va, i))
	}
	for i := 0; i < 8000; i++ {
		msgs = append(msgs, addrReq(unix.RTM_DELADDR, va, i*3/2))
	}
	start := time.Now()
	// The first part of the burst meets a bridge stopped (SIGSTOP), as a
	// busy machine might stall it: its buffer overruns for certain. The
	// rest meets it running again, in the middle of the storm.
	bridge.cmd.Process.Signal(unix.SIGSTOP)
	nl.burst(msgs[:3000])
	bridge.cmd.Process.Signal(unix.SIGCONT)
	nl.burst(msgs[3000:])
	t.Logf("burst of %d requests sent in %v", len(msgs), time.Since(start))

	// The bridge overran: it says so on every stream, and resyncs.
	if !await(&log.changed, patience, func() bool { return log.followed("ipv4-ifaddr", frame.KindOverrun, frame.KindResyncEnd) }) {
		log.mu.Lock()
		t.Errorf("no overrun then resync frames at the watching receiver: %v, notices %v; bridge log:\n%s", log.control, log.notices, bridge.Stderr())
		log.mu.Unlock()
	}
	untilMirror(t, mir, func() string {
		return fmt.Sprintf("the mirror applied no resync after its first: %+v", mir.Stats())
	}, patience, func() bool { return mir.Stats().Resyncs >= 2 })
	// A dump made while the kernel changes a table can hold a route whose
	// deletion it has already announced (it notifies, then removes, and
	// route dumps do not wait for changes to end): a mirror would keep it.
	// A resync asked for once the changes are done, as any receiver may
	// ask, gives exactly the kernel's tables.
	var ss []streams.Stream
	for _, m := range mirrored {
		ss = append(ss, mustStream(m.stream))
	}
	ns.do(t, func() error { return mir.Receiver().RequestResync(ss...) })
	mirrorMatches(t, mir, nl)
	addr := mustStream("ipv4-ifaddr")
	if n := mir.Len(addr); n != 4001 {
		t.Errorf("mirror has %d addresses, want 4000 and lo's", n)
	}
	log.mu.Lock() // its reader still runs: heartbeats arrive
	watched := fmt.Sprint(log.kinds)
	log.mu.Unlock()
	t.Logf("mirror: %+v; watcher: %v; notices %v", mir.Stats(), watched, log.noticeKinds())
	stopMirror()
	watch.Close()
	bridge.stop()
	if !strings.Contains(bridge.Stderr(), "kernel events lost") || !strings.Contains(bridge.Stderr(), "netlink_read_buffer=") {
		t.Errorf("bridge log lacks the overrun warning or the buffer size:\n%s", bridge.Stderr())
	}
}

// veth adds the pair va/vb, both up, and returns va's index.
func (ns *netns) veth(t *testing.T) int {
	t.Helper()
	ns.ip(t, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	ns.ip(t, "link", "set", "va", "up")
	ns.ip(t, "link", "set", "vb", "up")
	va, _ := ns.ifindex(t, "va")
	return va
}

// rawGroups returns every stream's netlink group and raw GROUP:PORT.
func rawGroups() (groups []uint32, addrs []string) {
	for _, s := range streams.Default() {
		groups = append(groups, s.Group)
		addrs = append(addrs, streams.Map{}.Addr(s, streams.Raw).String())
	}
	return groups, addrs
}

// collect starts a receiver in the namespace and collects what it returns.
func (ns *netns) collect(t *testing.T, cfg *receiver.Config) *goCollector {
	t.Helper()
	var c *goCollector
	ns.do(t, func() error {
		r, err := receiver.New(cfg)
		c = &goCollector{r: r, json: map[uint32][][]byte{}, done: make(chan struct{})}
		return err
	})
	go c.run()
	return c
}

func mustStream(name string) streams.Stream {
	s, ok := streams.Lookup(name)
	if !ok {
		panic(name)
	}
	return s
}

func (ns *netns) ifindex(t *testing.T, name string) (int, error) {
	var idx int
	ns.do(t, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	return idx, nil
}

// TestBridgeKilledAndRestarted: kill -9 mid-stream, start again; receivers
// report the restart (no goodbye came), and the Mirror resyncs by itself.
func TestBridgeKilledAndRestarted(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	va := ns.veth(t)
	args := []string{nlmcast, "bridge", "--streams", "link,ipv4-ifaddr,ipv4-route", "--encodings", "raw"}
	bridge := ns.start(t, notified, args...)

	var watch *receiver.Receiver
	ns.do(t, func() (err error) {
		watch, err = receiver.New(&receiver.Config{Streams: []streams.Stream{mustStream("ipv4-ifaddr")}})
		return err
	})
	log := logFrames(watch)
	defer watch.Close()
	mir, _ := startMirror(t, ns)
	nl := ns.rtnl(t)
	mirrorMatches(t, mir, nl)

	nl.burst([]netlink.Message{addrReq(unix.RTM_NEWADDR, va, 1), addrReq(unix.RTM_NEWADDR, va, 2)})
	waitFor(t, &log.changed, "events before the kill", func() bool { return log.count("ipv4-ifaddr", frame.KindEvent) >= 2 })
	bridge.kill()
	// Changes while no bridge runs: only a resync can tell the mirror.
	nl.burst([]netlink.Message{addrReq(unix.RTM_DELADDR, va, 1), addrReq(unix.RTM_NEWADDR, va, 3)})
	bridge2 := ns.start(t, notified, args...)
	nl.burst([]netlink.Message{addrReq(unix.RTM_NEWADDR, va, 4)})

	waitFor(t, &log.changed, "a restart notice", func() bool { return log.noticeKinds()[receiver.Restart] == 1 })
	mirrorMatches(t, mir, nl)
	if k := mir.Keys(mustStream("ipv4-ifaddr")); len(k) != 4 {
		t.Errorf("mirror addresses %q, want lo's, .2, .3 and .4", k)
	}
	if log.count("ipv4-ifaddr", frame.KindGoodbye) != 0 {
		t.Error("a goodbye from a bridge killed with SIGKILL")
	}
	log.mu.Lock()
	epochs := slices.Clone(log.epochs)
	notices := slices.Clone(log.notices)
	log.mu.Unlock()
	if len(epochs) != 2 {
		t.Errorf("frames from %d epochs, want 2", len(epochs))
	}
	for _, n := range notices {
		if n.Notice.Kind == receiver.Restart && (n.Notice.PrevEpoch != epochs[0] || n.Notice.Epoch != epochs[len(epochs)-1]) {
			t.Errorf("restart notice %v, epochs %x", n.Notice, epochs)
		}
	}
	// A clean stop, this time: receivers are told.
	bridge2.stop()
	waitFor(t, &log.changed, "a goodbye after SIGTERM", func() bool { return log.count("ipv4-ifaddr", frame.KindGoodbye) == 1 })
}

// TestHostileSenderIsDropped: an unprivileged local process floods every
// group with garbage and with well-formed frames; receivers drop them all
// and still get every real event, in order and byte for byte. The kernel
// drops them for a Go receiver (its sockets are connected to the bridge's
// port), which neither reads nor counts them; one without that filter, and
// the C receiver, drop and count them as they read.
func TestHostileSenderIsDropped(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, crecv := binaries(t)
	// The system's python3: a per-user shim (pyenv) is not runnable as nobody.
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	testenv.RequireCommand(t, "setpriv")
	bridge := ns.start(t, notified, nlmcast, "bridge", "--encodings", "raw")

	groups, addrs := rawGroups()
	goRaw := ns.collect(t, nil)
	goPlain := ns.collect(t, &receiver.Config{Mcast: &mcast.ReceiverConfig{NoKernelFilter: true}})
	cProc := ns.start(t, printed("ready"), append([]string{crecv, "-x"}, addrs...)...)
	direct := ns.subscribe(t, groups) // last: the receivers must get all it records

	// The flood: per round, every group gets garbage, a short datagram and
	// a forged event with a plausible header, from an unprivileged port.
	flood := `
import socket, struct, sys, time, os
addrs = [a.rsplit(":", 1) for a in sys.argv[1:]]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
sent = 0
for rnd in range(150):
    for g, p in addrs:
        grp = int(g.split(".")[3])
        forged = b"NLMC" + struct.pack(">BBHHHIQQqII", 1, 1, 0, 48, 0, grp, 0x1234, rnd + 1, 0, 16, 0) + struct.pack("=IHHII", 16, 16, 0, 0, 0)
        for d in (os.urandom(64), b"NL", forged):
            s.sendto(d, (g, int(p)))
            sent += 1
    time.sleep(0.005)
print(sent)
`
	floodDone := make(chan string)
	go func() {
		argv := append([]string{"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", python, "-c", flood}, addrs...)
		out, err := execIn(ns, argv...)
		if err != nil {
			t.Errorf("flood: %v: %s", err, out)
		}
		floodDone <- strings.TrimSpace(out)
	}()
	makeChanges(t, ns)
	sent := <-floodDone
	direct.stop()
	want := direct.counts()
	var n int
	fmt.Sscan(sent, &n)
	if flooded := 150 * 3 * len(addrs); n != flooded {
		t.Fatalf("flood sent %q datagrams, want %d", sent, flooded)
	}
	// The unfiltered Go receiver drops the flood as it reads it; the
	// heartbeats of idle streams wake its reads even when no event follows
	// the last forgery.
	if !await(&goPlain.changed, patience, func() bool { return goPlain.r.Stats().Mcast.WrongSource >= uint64(n) }) {
		t.Fatalf("after %v, the unfiltered Go receiver has dropped %d of the %d flood datagrams: %+v", patience,
			goPlain.r.Stats().Mcast.WrongSource, n, goPlain.r.Stats())
	}
	// The kernel queues a multicast datagram on every member socket at
	// once: the C receiver's sockets hold the whole flood too, and it has
	// read all of it once each socket has given it a frame the bridge made
	// after now (an event, or an idle stream's heartbeat).
	since := time.Now().UnixNano()
	waitCollected(t, "go", goRaw, want, true)
	waitCollected(t, "go, unfiltered", goPlain, want, true)
	cProc.waitStdout(t, fmt.Sprintf("c: not every event, or no frame since the flood on every stream; direct netlink got %v", want),
		func(out string) bool { ty := tallyLines(out); return ty.has(want, true) && ty.since(groups, since) })
	cProc.stop()
	gotGo, gotPlain := goRaw.stop(), goPlain.stop()
	bridge.stop()

	expectKernelEvents(t, direct.byGrp)
	checkReceiver(t, "go", gotGo, direct.byGrp)
	checkReceiver(t, "go, unfiltered", gotPlain, direct.byGrp)
	checkReceiver(t, "c", parseLines(t, "c", cProc.Stdout()), direct.byGrp)
	if st := goPlain.r.Stats(); st.Mcast.WrongSource != uint64(n) || st.Malformed+st.Mismatch != 0 {
		t.Errorf("unfiltered go receiver: %+v, want all %d flood datagrams dropped as from a wrong source", st, n)
	}
	if st := goRaw.r.Stats(); st.Mcast.WrongSource+st.Mcast.KernelDrops+st.Malformed+st.Mismatch != 0 {
		t.Errorf("go receiver: %+v, want the flood kept from it by the kernel, unseen and uncounted", st)
	}
	for _, c := range []*goCollector{goRaw, goPlain} {
		if len(c.notices) != 0 {
			t.Errorf("go receiver reported %v: forged frames reached sequence tracking", c.notices)
		}
	}
	if m := regexp.MustCompile(`dropped: (\d+) wrong source`).FindStringSubmatch(cProc.Stderr()); m == nil || m[1] != sent {
		t.Errorf("C receiver: %q, want %s dropped as from a wrong source", cProc.Stderr(), sent)
	}
}

// execIn runs a command in the namespace and returns its stdout.
func execIn(ns *netns, argv ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, argv...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return errb.String(), err
	}
	return out.String(), nil
}

// TestLargeMessageArrivesWhole: a route with 4,094 nexthops makes the
// kernel send a notification of 65,552 bytes, more than one datagram can
// carry; it arrives whole, in both encodings.
func TestLargeMessageArrivesWhole(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	va := ns.veth(t)
	ns.ip(t, "addr", "add", "10.1.0.254/16", "dev", "va")
	route := mustStream("ipv4-route")
	raw := ns.collect(t, &receiver.Config{Streams: []streams.Stream{route}})
	// Joined before the bridge starts, so that it encodes JSON from its
	// first event (it checks the JSON groups' members every MembersInterval).
	js := ns.collect(t, &receiver.Config{Streams: []streams.Stream{route}, Encoding: streams.JSON})
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "ipv4-route")
	direct := ns.subscribe(t, []uint32{route.Group})

	var mp []byte
	for i := 0; i < 4094; i++ {
		nh := make([]byte, 16)
		binary.NativeEndian.PutUint16(nh[0:], 16) // rtnh_len
		binary.NativeEndian.PutUint32(nh[4:], uint32(va))
		binary.NativeEndian.PutUint16(nh[8:], 8)
		binary.NativeEndian.PutUint16(nh[10:], unix.RTA_GATEWAY)
		copy(nh[12:], []byte{10, 1, byte(i / 250), byte(i%250 + 1)})
		mp = append(mp, nh...)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_DST, []byte{10, 9, 0, 0})
	ae.Bytes(unix.RTA_MULTIPATH, mp)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	rtm := []byte{unix.AF_INET, 16, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	nl := ns.rtnl(t)
	if _, err := nl.c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWROUTE, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
		Data:   append(rtm, attrs...),
	}); err != nil {
		t.Fatalf("add a route with 4094 nexthops: %v", err)
	}
	direct.stop()
	var big []byte
	for _, m := range direct.byGrp[route.Group] {
		if len(m) > frame.MaxDatagram {
			big = m
		}
	}
	if big == nil {
		t.Fatalf("the kernel sent no message above %d bytes", frame.MaxDatagram)
	}
	// Wait for it through the bridge, in both encodings.
	found := func(gs []got) bool {
		return slices.ContainsFunc(gs, func(g got) bool { return g.kind == frame.KindEvent && bytes.Equal(g.payload, big) })
	}
	isJSON := func(b []byte) bool {
		f, err := frame.ParseJSON(b)
		return err == nil && bytes.Contains(f.Event, []byte("10.9.0.0"))
	}
	if !await(&raw.changed, patience, func() bool { return found(raw.frames()) }) {
		t.Errorf("the %d-byte message did not arrive whole on the raw stream", len(big))
	}
	if !await(&js.changed, patience, func() bool {
		return slices.ContainsFunc(js.frames(), func(g got) bool { return g.kind == frame.KindEvent && isJSON(g.payload) })
	}) {
		t.Errorf("no reassembled JSON event for the large route")
	}
	raw.stop()
	js.stop()
	bridge.stop()

	t.Logf("kernel message of %d bytes", len(big))
	if st := raw.r.Stats(); st.Reassembled != 1 || st.Missing != 0 {
		t.Errorf("raw receiver stats %+v", st)
	}
	for _, b := range js.json[route.Group] {
		if isJSON(b) {
			t.Logf("JSON event of %d bytes: %.300s", len(b), b)
		}
	}
	if !strings.Contains(bridge.Stderr(), "fragmented=1") {
		t.Errorf("bridge totals do not count the fragmented message:\n%s", bridge.Stderr())
	}
}
