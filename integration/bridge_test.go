package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// got is one frame as a receiver printed or returned it.
type got struct {
	kind    frame.Kind
	group   uint32
	epoch   uint64
	seq     uint64
	payload []byte
	stream  string
	flags   frame.Flags
	nsid    int32
	time    int64 // when the bridge read the event or sent the control frame
}

// goCollector runs a receiver.Receiver and keeps what it returns.
type goCollector struct {
	r    *receiver.Receiver
	mu   sync.Mutex
	raw  []got
	json map[uint32][][]byte // whole JSON datagrams of events by group
	done chan struct{}

	notices []receiver.Notice
	changed signal // after each batch
}

func (c *goCollector) run() {
	defer close(c.done)
	evs := make([]receiver.Event, 64)
	for {
		n, err := c.r.ReadBatch(evs)
		if err != nil {
			return
		}
		c.mu.Lock()
		for _, ev := range evs[:n] {
			if ev.IsNotice() {
				c.notices = append(c.notices, ev.Notice)
				continue
			}
			p := append([]byte(nil), ev.Payload...)
			if ev.Encoding == streams.JSON && ev.Header.Kind == frame.KindEvent {
				c.json[ev.Header.Group] = append(c.json[ev.Header.Group], p)
			}
			c.raw = append(c.raw, got{ev.Header.Kind, ev.Header.Group, ev.Header.Epoch, ev.Header.Seq, p,
				ev.Stream.Name, ev.Header.Flags, ev.Header.NSID, ev.Header.Time})
		}
		c.mu.Unlock()
		c.changed.notify()
	}
}

// frames returns a copy of the frames received so far.
func (c *goCollector) frames() []got {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.raw)
}

func (c *goCollector) stop() []got {
	c.r.Close()
	<-c.done
	return c.raw
}

// parseLines reads the PROTOCOL.md line format printed by the C and Python
// receivers with -x.
func parseLines(t *testing.T, who, out string) []got {
	t.Helper()
	var gs []got
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "ok ") {
			t.Fatalf("%s printed a non-frame line: %q", who, line)
		}
		var g got
		for _, f := range strings.Fields(line[3:]) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "kind":
				n, _ := strconv.ParseUint(v, 10, 8)
				g.kind = frame.Kind(n)
			case "group":
				n, _ := strconv.ParseUint(v, 10, 32)
				g.group = uint32(n)
			case "epoch":
				g.epoch, _ = strconv.ParseUint(v, 16, 64)
			case "seq":
				g.seq, _ = strconv.ParseUint(v, 10, 64)
			case "time_ns":
				g.time, _ = strconv.ParseInt(v, 10, 64)
			case "payload":
				g.payload, _ = hex.DecodeString(v)
			}
		}
		gs = append(gs, g)
	}
	return gs
}

// checkReceiver asserts a receiver got exactly the direct subscriber's
// messages on every stream, in order, byte for byte, with consecutive
// sequence numbers and one epoch, and heartbeats on idle streams.
func checkReceiver(t *testing.T, who string, all []got, direct map[uint32][][]byte) {
	t.Helper()
	byGrp := make(map[uint32][]got)
	var gs []got
	beats := 0
	for _, g := range all {
		switch g.kind {
		case frame.KindEvent:
			gs = append(gs, g)
		case frame.KindHeartbeat:
			beats++
		default:
			t.Errorf("%s: unexpected frame kind %v", who, g.kind)
		}
	}
	if beats == 0 {
		t.Errorf("%s: no heartbeats on idle streams", who)
	}
	for _, g := range gs {
		byGrp[g.group] = append(byGrp[g.group], g)
		if g.epoch != gs[0].epoch {
			t.Errorf("%s: epoch changed from %016x to %016x", who, gs[0].epoch, g.epoch)
		}
	}
	for _, s := range streams.Default() {
		d, r := direct[s.Group], byGrp[s.Group]
		if len(d) != len(r) {
			t.Errorf("%s: stream %s: got %d events, direct netlink got %d", who, s.Name, len(r), len(d))
			continue
		}
		for i := range d {
			if !bytes.Equal(d[i], r[i].payload) {
				t.Errorf("%s: stream %s event %d: payload differs from the kernel's message\n got  %x\n want %x",
					who, s.Name, i, r[i].payload, d[i])
			}
			if r[i].seq != r[0].seq+uint64(i) {
				t.Errorf("%s: stream %s: sequence %d at position %d, want %d", who, s.Name, r[i].seq, i, r[0].seq+uint64(i))
			}
		}
	}
}

// makeChanges makes the kernel send events on most streams.
func makeChanges(t *testing.T, ns *netns) {
	for _, c := range [][]string{
		{"link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1"},
		{"link", "set", "nlt1", "up"},
		{"link", "set", "nlt0", "up"},
		{"addr", "add", "10.77.0.1/24", "dev", "nlt0"},
		{"-6", "addr", "add", "2001:db8:77::1/64", "dev", "nlt0", "nodad"},
		{"route", "add", "10.78.0.0/16", "via", "10.77.0.2"},
		{"-6", "route", "add", "2001:db8:78::/48", "via", "2001:db8:77::2"},
		{"neigh", "add", "10.77.0.9", "lladdr", "02:00:00:00:00:09", "dev", "nlt0", "nud", "permanent"},
		{"rule", "add", "from", "10.77.0.0/24", "table", "100", "priority", "1000"},
		{"-6", "rule", "add", "from", "2001:db8:77::/64", "table", "100", "priority", "1000"},
		{"route", "del", "10.78.0.0/16"},
		{"addr", "del", "10.77.0.1/24", "dev", "nlt0"},
		{"link", "set", "nlt0", "down"},
		{"link", "del", "nlt0"},
	} {
		ns.ip(t, c...)
	}
}

// expectKernelEvents asserts that the direct record holds the events the
// changes must cause, so that an empty run cannot pass.
func expectKernelEvents(t *testing.T, direct map[uint32][][]byte) {
	t.Helper()
	want := map[string]bool{}
	for _, w := range []string{"link 16 nlt0", "link 17 nlt0", "ipv4-ifaddr 20", "ipv4-ifaddr 21", "ipv6-ifaddr 20",
		"ipv4-route 24", "ipv4-route 25", "ipv6-route 24", "neigh 28", "ipv4-rule 32", "ipv6-rule 32"} {
		want[w] = false
	}
	for g, msgs := range direct {
		s, _ := streams.ByGroup(0, g)
		for _, m := range msgs {
			typ := binary.NativeEndian.Uint16(m[4:])
			key := fmt.Sprintf("%s %d", s.Name, typ)
			if s.Name == "link" && bytes.Contains(m, []byte("nlt0\x00")) {
				key += " nlt0"
			}
			if _, ok := want[key]; ok {
				want[key] = true
			}
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("the kernel did not send %q: the changes did not happen", k)
		}
	}
}

// checkJSON asserts the JSON frames carry the same sequence numbers as the
// raw ones and decode to the fields an independent decode of the kernel's
// messages gives.
func checkJSON(t *testing.T, jsonByGrp map[uint32][][]byte, direct map[uint32][][]byte) {
	t.Helper()
	checked := 0
	for _, s := range streams.Default() {
		frames, d := jsonByGrp[s.Group], direct[s.Group]
		if len(frames) != len(d) {
			t.Errorf("json: stream %s: %d frames, direct netlink got %d", s.Name, len(frames), len(d))
			continue
		}
		for i, b := range frames {
			f, err := frame.ParseJSON(b)
			if err != nil {
				t.Fatalf("json: stream %s: %v: %s", s.Name, err, b)
			}
			if f.Stream != s.Name || f.Summary == "" {
				t.Errorf("json: frame %d of %s names stream %q, summary %q", i, s.Name, f.Stream, f.Summary)
			}
			var ev decode.Event
			if err := json.Unmarshal(f.Event, &ev); err != nil {
				t.Fatalf("json: event: %v", err)
			}
			if ev.TypeNum != binary.NativeEndian.Uint16(d[i][4:]) || int(ev.Nlmsg.Len) != len(d[i]) {
				t.Errorf("json: %s #%d: type %d len %d, kernel sent type %d len %d", s.Name, i,
					ev.TypeNum, ev.Nlmsg.Len, binary.NativeEndian.Uint16(d[i][4:]), len(d[i]))
			}
			if compareFields(t, s.Name, &ev, d[i][unix.SizeofNlMsghdr:]) {
				checked++
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d JSON events had their fields compared", checked)
	}
}

// compareFields compares decoded JSON fields with rtnetlink's own decoding.
func compareFields(t *testing.T, stream string, ev *decode.Event, body []byte) bool {
	t.Helper()
	ip := func(x net.IP) string {
		if x == nil {
			return ""
		}
		return x.String()
	}
	switch {
	case ev.Link != nil:
		var m rtnetlink.LinkMessage
		if err := m.UnmarshalBinary(body); err != nil {
			t.Fatal(err)
		}
		if ev.Link.Index != m.Index || ev.Link.Name != m.Attributes.Name || ev.Link.MTU != m.Attributes.MTU {
			t.Errorf("json %s: link %+v, kernel: index %d name %q mtu %d", stream, ev.Link, m.Index, m.Attributes.Name, m.Attributes.MTU)
		}
	case ev.Addr != nil:
		var m rtnetlink.AddressMessage
		if err := m.UnmarshalBinary(body); err != nil {
			t.Fatal(err)
		}
		if ev.Addr.Index != m.Index || ev.Addr.PrefixLen != m.PrefixLength || ev.Addr.Address != ip(m.Attributes.Address) {
			t.Errorf("json %s: addr %+v, kernel: %+v %+v", stream, ev.Addr, m, m.Attributes)
		}
		if ev.Addr.IfName == "" {
			t.Errorf("json %s: address event without an interface name: %+v", stream, ev.Addr)
		}
	case ev.Route != nil:
		var m rtnetlink.RouteMessage
		if err := m.UnmarshalBinary(body); err != nil {
			t.Fatal(err)
		}
		if ev.Route.Gateway != ip(m.Attributes.Gateway) || ev.Route.Oif != m.Attributes.OutIface {
			t.Errorf("json %s: route %+v, kernel: %+v", stream, ev.Route, m.Attributes)
		}
	case ev.Neigh != nil:
		var m rtnetlink.NeighMessage
		if err := m.UnmarshalBinary(body); err != nil {
			t.Fatal(err)
		}
		if ev.Neigh.Dst != ip(m.Attributes.Address) || ev.Neigh.Index != m.Index {
			t.Errorf("json %s: neigh %+v, kernel: %+v", stream, ev.Neigh, m.Attributes)
		}
	case ev.Rule != nil:
		var m rtnetlink.RuleMessage
		if err := m.UnmarshalBinary(body); err != nil {
			t.Fatal(err)
		}
		if m.Attributes.Priority == nil || ev.Rule.Priority != *m.Attributes.Priority {
			t.Errorf("json %s: rule %+v, kernel: %+v", stream, ev.Rule, m.Attributes)
		}
	default:
		if len(ev.Attrs) == 0 && ev.Header == "" {
			t.Errorf("json %s: event %s decoded to nothing", stream, ev.Type)
		}
		return false
	}
	return true
}

// tally counts a receiver's frames: events and the latest frame time on
// each group, and heartbeats.
type tally struct {
	events map[uint32]int
	latest map[uint32]int64
	beats  int
}

func tallyOf(gs []got) tally {
	ty := tally{events: map[uint32]int{}, latest: map[uint32]int64{}}
	for _, g := range gs {
		ty.add(g.kind, g.group, g.time)
	}
	return ty
}

// tallyLines counts the frames the C and Python receivers printed, without
// decoding payloads.
func tallyLines(out string) tally {
	ty := tally{events: map[uint32]int{}, latest: map[uint32]int64{}}
	for _, line := range strings.Split(out, "\n") {
		head, _, _ := strings.Cut(line, " payload=")
		if !strings.HasPrefix(head, "ok ") {
			continue
		}
		var kind, group uint64
		var tm int64
		for _, f := range strings.Fields(head[3:]) {
			switch k, v, _ := strings.Cut(f, "="); k {
			case "kind":
				kind, _ = strconv.ParseUint(v, 10, 8)
			case "group":
				group, _ = strconv.ParseUint(v, 10, 32)
			case "time_ns":
				tm, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		ty.add(frame.Kind(kind), uint32(group), tm)
	}
	return ty
}

func (ty *tally) add(k frame.Kind, group uint32, tm int64) {
	switch k {
	case frame.KindEvent:
		ty.events[group]++
	case frame.KindHeartbeat:
		ty.beats++
	}
	ty.latest[group] = max(ty.latest[group], tm)
}

// has reports whether the receiver got at least want events on each group,
// and a heartbeat if beat.
func (ty tally) has(want map[uint32]int, beat bool) bool {
	for g, n := range want {
		if ty.events[g] < n {
			return false
		}
	}
	return !beat || ty.beats > 0
}

// since reports whether every group has a frame the bridge made after t:
// every datagram queued on the receiver's sockets before t has been read.
func (ty tally) since(groups []uint32, t int64) bool {
	for _, g := range groups {
		if ty.latest[g] <= t {
			return false
		}
	}
	return true
}

// waitCollected waits until c has got want's events and, if beat, a
// heartbeat.
func waitCollected(t *testing.T, who string, c *goCollector, want map[uint32]int, beat bool) {
	t.Helper()
	var ty tally
	if !await(&c.changed, patience, func() bool { ty = tallyOf(c.frames()); return ty.has(want, beat) }) {
		t.Fatalf("%s: after %v, events by group %v and %d heartbeats; direct netlink got %v", who, patience, ty.events, ty.beats, want)
	}
}

// waitPrinted waits until a C or Python receiver has printed want's events
// and, if beat, a heartbeat.
func waitPrinted(t *testing.T, who string, p *proc, want map[uint32]int, beat bool) {
	t.Helper()
	p.waitStdout(t, fmt.Sprintf("%s: not every event printed; direct netlink got %v", who, want), func(out string) bool {
		return tallyLines(out).has(want, beat)
	})
}

// TestEndToEnd runs the bridge in a fresh namespace with a direct netlink
// subscriber and five receivers of four kinds at once, makes real changes,
// and checks that every receiver got every event, in order, intact.
func TestEndToEnd(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, crecv := binaries(t)
	python := testenv.RequireCommand(t, "python3")
	socat := testenv.RequireCommand(t, "socat")

	// The receivers join before the bridge starts: it encodes JSON only for
	// groups it has seen joined, checking every MembersInterval, so a JSON
	// receiver that joined after it would miss the events until the next
	// check. Joined before, every check finds it.
	groups, rawAddrs := rawGroups()
	goRaw := ns.collect(t, nil)
	goJSON := ns.collect(t, &receiver.Config{Encoding: streams.JSON})
	cProc := ns.start(t, printed("ready"), append([]string{crecv, "-x"}, rawAddrs...)...)
	pyProc := ns.start(t, printed("ready"), append([]string{python, "../examples/python/nlmcast_recv.py", "-x"}, rawAddrs...)...)
	goExample := ns.start(t, printed("ready"), bins.gorecv, "link", "addr")
	linkJSON := streams.Map{}.Addr(streams.Default()[0], streams.JSON)
	// socat -d -d says this once its address is open (the group joined).
	socatProc := ns.start(t, printed("starting data transfer loop"), socat, "-d", "-d", "-u",
		fmt.Sprintf("UDP4-RECV:%d,bind=%s,ip-add-membership=%s:127.0.0.1,reuseaddr", linkJSON.Port(), linkJSON.Addr(), linkJSON.Addr()), "-")
	bridge := ns.start(t, notified, nlmcast, "bridge")
	// The direct subscriber joins last: every event it records happens
	// after the bridge and every receiver joined, so each must get all.
	direct := ns.subscribe(t, groups)

	makeChanges(t, ns)
	direct.stop() // the record of what the changes caused is complete
	want := direct.counts()
	link := mustStream("link")
	var wantLines []string // what the Go example prints of them
	for _, name := range []string{"link", "ipv4-ifaddr", "ipv6-ifaddr"} {
		s, _ := streams.Lookup(name)
		for _, m := range direct.byGrp[s.Group] {
			wantLines = append(wantLines, fmt.Sprintf("%s nlmsg_type=%d len=%d", name, binary.NativeEndian.Uint16(m[4:]), len(m)))
		}
	}
	// Wait until every receiver has got every event, and a heartbeat on an
	// idle stream (one second after the bridge started).
	waitCollected(t, "go", goRaw, want, true)
	waitCollected(t, "go json", goJSON, want, false)
	waitPrinted(t, "c", cProc, want, true)
	waitPrinted(t, "python", pyProc, want, true)
	goExample.waitStdout(t, fmt.Sprintf("the Go example printed fewer than %d events", len(wantLines)), func(out string) bool {
		return len(exampleLines(out)) >= len(wantLines)
	})
	socatProc.waitStdout(t, fmt.Sprintf("socat printed fewer than %d link events", want[link.Group]), func(out string) bool {
		return strings.Count(out, `"kind":"event"`) >= want[link.Group]
	})
	cProc.stop()
	pyProc.stop()
	socatProc.stop()
	goExample.stop()
	rawGot, jsonGot := goRaw.stop(), goJSON.stop()
	bridge.stop()

	expectKernelEvents(t, direct.byGrp)
	t.Logf("kernel sent %d events; bridge log:\n%s", direct.count(), bridge.Stderr())

	checkReceiver(t, "go", rawGot, direct.byGrp)
	checkReceiver(t, "c", parseLines(t, "c", cProc.Stdout()), direct.byGrp)
	checkReceiver(t, "python", parseLines(t, "python", pyProc.Stdout()), direct.byGrp)
	checkJSON(t, goJSON.json, direct.byGrp)

	// JSON and raw frames of one event carry the same sequence number.
	seqs := func(gs []got) map[uint32][]uint64 {
		m := map[uint32][]uint64{}
		for _, g := range gs {
			if g.kind == frame.KindEvent {
				m[g.group] = append(m[g.group], g.seq)
			}
		}
		return m
	}
	if r, j := seqs(rawGot), seqs(jsonGot); fmt.Sprint(r) != fmt.Sprint(j) {
		t.Errorf("raw and JSON sequence numbers differ:\nraw  %v\njson %v", r, j)
	}

	// socat, knowing nothing of nlmcast, printed the link stream's JSON
	// datagrams exactly as the Go receiver got them.
	var wantSocat bytes.Buffer
	for _, b := range goJSON.json[link.Group] {
		wantSocat.Write(b)
	}
	var socatEvents strings.Builder
	for _, l := range strings.SplitAfter(socatProc.Stdout(), "\n") {
		if strings.Contains(l, `"kind":"event"`) {
			socatEvents.WriteString(l)
		}
	}
	if socatEvents.String() != wantSocat.String() {
		t.Errorf("socat output differs from the link JSON stream:\n%s\nwant:\n%s", socatProc.Stdout(), wantSocat.String())
	}
	// The Go example printed one line per link and address event, in
	// stream order, with the kernel's message type.
	gotLines := exampleLines(goExample.Stdout())
	sortLines := func(ls []string) string { // streams interleave differently; order within a stream is kept by seq
		byStream := map[string][]string{}
		for _, l := range ls {
			k, _, _ := strings.Cut(l, " ")
			byStream[k] = append(byStream[k], l)
		}
		return fmt.Sprint(byStream)
	}
	if sortLines(gotLines) != sortLines(wantLines) || len(wantLines) == 0 {
		t.Errorf("Go example printed\n%s\nwant\n%s", strings.Join(gotLines, "\n"), strings.Join(wantLines, "\n"))
	}
	if !strings.Contains(cProc.Stderr(), "dropped: 0 wrong source, 0 wrong interface; invalid or not authenticated frames: 0") {
		t.Errorf("C receiver dropped datagrams: %s", cProc.Stderr())
	}
	for _, c := range []*goCollector{goRaw, goJSON} {
		st := c.r.Stats()
		if st.Malformed+st.Mismatch+st.Mcast.WrongSource+st.Mcast.WrongInterface+st.Mcast.KernelDrops != 0 {
			t.Errorf("go receiver dropped datagrams: %+v", st)
		}
		if len(c.notices) != 0 {
			t.Errorf("go receiver reported %v on a clean run", c.notices)
		}
	}
}

// exampleLines returns "stream nlmsg_type=T len=N" for each event line the
// Go example printed.
func exampleLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 5 {
			lines = append(lines, f[0]+" "+f[3]+" "+f[4])
		}
	}
	return lines
}

// TestBridgeRefusesNonLoopback: without --allow-non-loopback, a real
// interface is refused with a message that says how to allow it.
func TestBridgeRefusesNonLoopback(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1")
	ns.ip(t, "link", "set", "nlt0", "up")
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--interface", "nlt0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("bridge on nlt0: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "not a loopback interface") || !strings.Contains(string(out), "allowed explicitly") {
		t.Errorf("message does not explain the refusal: %s", out)
	}
}

// TestBridgeWithoutPrivilege: run as an unprivileged user, the bridge exits
// with a message naming the missing capability.
func TestBridgeWithoutPrivilege(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	out, err := exec.Command("ip", "netns", "exec", ns.name, setpriv, "--reuid=65534", "--regid=65534",
		"--clear-groups", nlmcast, "bridge").CombinedOutput()
	if err == nil {
		t.Fatalf("unprivileged bridge started:\n%s", out)
	}
	if !strings.Contains(string(out), "CAP_NET_BIND_SERVICE") {
		t.Errorf("message does not name the missing privilege: %s", out)
	}
}

// TestReceiverDropsForgedFrames: well-formed frames that a local
// unprivileged process sends to a stream's group never reach a receiver:
// the kernel keeps them from its sockets, connected to the bridge's port,
// and one without that filter drops and counts them itself. The bridge's
// frames still arrive.
func TestReceiverDropsForgedFrames(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw")
	link, _ := streams.Lookup("link")
	var filtered, plain *receiver.Receiver
	var forger *mcast.Sender
	ns.do(t, func() error {
		var err error
		if filtered, err = receiver.New(&receiver.Config{Streams: []streams.Stream{link}}); err != nil {
			return err
		}
		if plain, err = receiver.New(&receiver.Config{Streams: []streams.Stream{link}, Mcast: &mcast.ReceiverConfig{NoKernelFilter: true}}); err != nil {
			return err
		}
		forger, err = mcast.NewSender(&mcast.SenderConfig{Source: netipPort(40000)})
		return err
	})
	defer filtered.Close()
	defer plain.Close()
	defer forger.Close()
	forged := frame.Append(nil, frame.Header{Kind: frame.KindEvent, Group: 1, Seq: 1}, []byte("forged"))
	dst := net.UDPAddrFromAddrPort(streams.Map{}.Addr(link, streams.Raw))
	for i := 0; i < 10; i++ {
		if err := forger.WriteBatch(msgs(forged, dst)); err != nil {
			t.Fatal(err)
		}
	}
	ns.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1")
	// Read until the link event has come and, without the filter, every
	// forged frame has been dropped: a forged datagram may be read after
	// the event (they come from two senders), but the link stream's
	// heartbeats keep coming. With the filter, the forged frames were
	// queued before the event, if at all: none was.
	for _, c := range []struct {
		r     *receiver.Receiver
		wrong uint64
	}{{plain, 10}, {filtered, 0}} {
		c.r.Mcast().SetReadDeadline(time.Now().Add(patience))
		evs := make([]receiver.Event, 8)
		event := false
		for !event || c.r.Stats().Mcast.WrongSource < c.wrong {
			n, err := c.r.ReadBatch(evs)
			if err != nil {
				t.Fatalf("link event seen: %v; receiver %+v: %v", event, c.r.Stats(), err)
			}
			for _, ev := range evs[:n] {
				if string(ev.Payload) == "forged" || !ev.IsNotice() && ev.Source != bridgeSource {
					t.Fatalf("forged frame accepted from %v", ev.Source)
				}
				event = event || !ev.IsNotice() && ev.Header.Kind == frame.KindEvent
			}
		}
		if st := c.r.Stats(); st.Mcast.WrongSource != c.wrong || st.Mcast.KernelDrops != 0 {
			t.Errorf("wrong-source count %d, want %d; kernel drops %d, want 0", st.Mcast.WrongSource, c.wrong, st.Mcast.KernelDrops)
		}
	}
}

func netipPort(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }

func msgs(b []byte, dst *net.UDPAddr) []ipv4.Message {
	return []ipv4.Message{{Buffers: [][]byte{b}, Addr: dst}}
}
