package netlinkbridge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// activity is closed and replaced whenever a fake source's ReadBatch or a
// fake sink's WriteBatch is called. A bridge's loop blocks only in its
// source's ReadBatch, and calls it again once it is done with a batch, a
// resync or housekeeping: so whatever the loop changed is visible when
// the next notice comes, and waitFor re-checks its condition then.
var activity = struct {
	sync.Mutex
	ch chan struct{}
}{ch: make(chan struct{})}

func notify() {
	activity.Lock()
	close(activity.ch)
	activity.ch = make(chan struct{})
	activity.Unlock()
}

func nextActivity() <-chan struct{} {
	activity.Lock()
	defer activity.Unlock()
	return activity.ch
}

// patience is how long waitFor waits before it fails a test: a deadline
// that only fails a test (a loaded 2-core machine under -race takes
// seconds to move megabytes), never a pace it waits for.
const patience = 30 * time.Second

// waitFor waits until cond holds, checking it again on every call into
// a fake source or sink; it fails t after patience.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(patience)
	defer timeout.Stop()
	for {
		next := nextActivity() // before the check: no notice is lost
		if cond() {
			return
		}
		select {
		case <-next:
		case <-timeout.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fakeSource returns scripted batches and errors, then blocks until more
// are pushed, its read deadline passes, or it is closed.
type fakeSource struct {
	mu        sync.Mutex
	queue     []item
	deadline  time.Time
	deadlines []time.Time   // every deadline set, in order
	changed   chan struct{} // closed and replaced on every change
	closed    chan struct{}
	once      sync.Once
	held      chan struct{} // non-nil: ReadBatch waits for it to close, deadlines or not
	parked    bool          // a ReadBatch is waiting on held
}

// hold makes ReadBatch wait, once its queue is empty, until release is
// called, whatever the deadline: the loop stays parked there, so that
// what a test does meanwhile (requests, say) is all seen at once.
func (s *fakeSource) hold() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := make(chan struct{})
	s.held = held
	close(s.changed) // a ReadBatch waiting already parks
	s.changed = make(chan struct{})
	return func() {
		s.mu.Lock()
		s.held = nil
		s.mu.Unlock()
		close(held)
	}
}

// isParked reports whether a ReadBatch waits on a hold.
func (s *fakeSource) isParked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked
}

type item struct {
	batch []kernel.Message
	err   error
}

func newFakeSource(batches ...[]kernel.Message) *fakeSource {
	s := &fakeSource{changed: make(chan struct{}), closed: make(chan struct{})}
	for _, b := range batches {
		s.queue = append(s.queue, item{batch: b})
	}
	return s
}

func (s *fakeSource) ReadBatch(ms []kernel.Message) (int, error) {
	notify()
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			it := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			if it.err != nil {
				return 0, it.err
			}
			return copy(ms, it.batch), nil
		}
		if held := s.held; held != nil {
			s.parked = true
			s.mu.Unlock()
			notify()
			select {
			case <-held:
			case <-s.closed:
			}
			s.mu.Lock()
			s.parked = false
			s.mu.Unlock()
			continue
		}
		dl, ch := s.deadline, s.changed
		s.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-s.closed:
			return 0, net.ErrClosed
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-ch:
		}
	}
}

// push queues a batch or an error for ReadBatch.
func (s *fakeSource) push(batch []kernel.Message, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, item{batch, err})
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fakeSource) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	s.deadlines = append(s.deadlines, t)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *fakeSource) Stats() kernel.Stats { return kernel.Stats{} }
func (s *fakeSource) Close() error        { s.once.Do(func() { close(s.closed) }); return nil }

// fakeDumper answers dumps from tables, and can say a dump was interrupted.
type fakeDumper struct {
	mu          sync.Mutex
	tables      map[uint16][][]byte // by request type
	interrupted int                 // answers to flag NLM_F_DUMP_INTR, first
	calls       int
}

func (d *fakeDumper) Dump(req kernel.DumpRequest) ([][]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.interrupted > 0 {
		d.interrupted--
		return d.tables[req.Type][:1], true, nil
	}
	return d.tables[req.Type], false, nil
}

func (d *fakeDumper) Close() error { return nil }

// fakeSink records every datagram.
type fakeSink struct {
	mu  sync.Mutex
	out []sent
}

type sent struct {
	dst  netip.AddrPort
	data []byte
}

func (s *fakeSink) WriteBatch(ms []ipv4.Message) error {
	defer notify()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		s.out = append(s.out, sent{m.Addr.(*net.UDPAddr).AddrPort(), bytes.Join(m.Buffers, nil)})
	}
	return nil
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func linkMsg(index uint32, name string) []byte {
	// ifinfomsg + IFLA_IFNAME
	body := make([]byte, 16)
	body[4] = byte(index)
	attr := []byte{byte(4 + len(name) + 1), 0, unix.IFLA_IFNAME, 0}
	attr = append(attr, name...)
	attr = append(attr, 0)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	return testmsg.Nlmsg(unix.RTM_NEWLINK, append(body, attr...))
}

func TestBridgeFrames(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr4, _ := streams.Lookup("ipv4-ifaddr")
	m1, m2 := linkMsg(3, "eth9"), linkMsg(4, "eth10")
	a1 := testmsg.Nlmsg(unix.RTM_NEWADDR, []byte{unix.AF_INET, 24, 0, 0, 3, 0, 0, 0})
	src := newFakeSource(
		[]kernel.Message{{Group: 1, Data: m1}, {Group: 5, Data: a1}},
		[]kernel.Message{{Group: 1, Data: m2}, {Group: 7, Data: a1}}, // group 7 is not bridged
	)
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr4}, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "three events", func() bool { return b.Stats().Events >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	m := streams.Map{}
	type want struct {
		dst     netip.AddrPort
		seq     uint64
		payload []byte
	}
	// A batch that is no backlog: its raw frames, then its JSON.
	wants := []want{
		{m.Addr(link, streams.Raw), 1, m1}, {m.Addr(addr4, streams.Raw), 1, a1},
		{m.Addr(link, streams.JSON), 1, nil}, {m.Addr(addr4, streams.JSON), 1, nil},
		{m.Addr(link, streams.Raw), 2, m2}, {m.Addr(link, streams.JSON), 2, nil},
	}
	// Then a goodbye on each stream and encoding, repeating the last seq.
	if len(sink.out) != len(wants)+4 {
		t.Fatalf("sent %d datagrams, want %d events and 4 goodbyes", len(sink.out), len(wants))
	}
	for i, g := range sink.out[len(wants):] {
		k, seq := kindSeq(t, g.data)
		if k != frame.KindGoodbye || seq != []uint64{2, 2, 1, 1}[i] {
			t.Errorf("goodbye %d: kind %v seq %d", i, k, seq)
		}
	}
	for i, w := range wants {
		got := sink.out[i]
		if got.dst != w.dst {
			t.Errorf("datagram %d to %v, want %v", i, got.dst, w.dst)
		}
		if w.payload != nil {
			h, p, err := frame.Parse(got.data)
			if err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
			if h.Seq != w.seq || h.Epoch != b.Epoch() || h.Kind != frame.KindEvent || !bytes.Equal(p, w.payload) {
				t.Errorf("datagram %d: %+v payload %x", i, h, p)
			}
			continue
		}
		f, err := frame.ParseJSON(got.data)
		if err != nil {
			t.Fatalf("datagram %d: %v: %s", i, err, got.data)
		}
		if f.Seq != w.seq {
			t.Errorf("JSON datagram %d: seq %d, want %d", i, f.Seq, w.seq)
		}
	}
	// The address event names its interface from the link event before it.
	if !bytes.Contains(sink.out[3].data, []byte(`"ifname":"eth9"`)) {
		t.Errorf("address JSON lacks the interface name: %s", sink.out[3].data)
	}
	if st := b.Stats(); st.Events != 3 || st.NotStreams != 1 || st.Datagrams != 10 {
		t.Errorf("stats %+v", st)
	}
}

func TestBridgeSurvivesOverrun(t *testing.T) {
	src := newFakeSource()
	src.push(nil, kernel.ErrOverrun)
	src.push(nil, kernel.ErrOverrun)
	src.push([]kernel.Message{{Group: 1, Data: linkMsg(1, "lo")}}, nil)
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.Raw}, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "the event after the overruns", func() bool { return b.Stats().Events != 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after overruns: %v", err)
	}
	if b.Stats().Events != 1 {
		t.Fatalf("the event after the overruns was not bridged")
	}
}

func TestBridgeReturnsFatalErrors(t *testing.T) {
	src := newFakeSource()
	boom := errors.New("boom")
	src.push(nil, boom)
	b, err := NewWithSource(&Config{Logger: quiet}, src, nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want boom", err)
	}
}

func TestBridgeRejectsBadMap(t *testing.T) {
	_, err := NewWithSource(&Config{Map: streams.Map{Base: netip.MustParseAddr("10.0.0.0")}}, newFakeSource(), nil, &fakeSink{})
	if err == nil {
		t.Fatal("unicast base accepted")
	}
}

// discardSink is a Sink that keeps nothing, for allocation counts.
type discardSink struct{ n int }

func (s *discardSink) WriteBatch(ms []ipv4.Message) error { s.n += len(ms); return nil }

func rawBridge(t testing.TB, sink Sink) (*Bridge, []kernel.Message) {
	b, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.Raw}, Logger: quiet}, newFakeSource(), nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]kernel.Message, 32)
	for i := range msgs {
		msgs[i] = kernel.Message{Group: 5, Data: testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 60))}
	}
	return b, msgs
}

// The raw path must not allocate per event: this is the guard.
func TestForwardRawAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	b, msgs := rawBridge(t, &discardSink{})
	if a := testing.AllocsPerRun(200, func() { b.forward(msgs, 1) }); a != 0 {
		t.Fatalf("raw forward allocates %v times per batch of %d", a, len(msgs))
	}
}

func BenchmarkForwardRaw(b *testing.B) {
	br, msgs := rawBridge(b, &discardSink{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		br.forward(msgs[:1], 1)
	}
}

func BenchmarkForwardJSON(b *testing.B) {
	br, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.JSON}, Logger: quiet}, newFakeSource(), nil, &discardSink{})
	if err != nil {
		b.Fatal(err)
	}
	msgs := []kernel.Message{{Group: 1, Data: linkMsg(3, "eth0")}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		br.forward(msgs, 1)
	}
}

// BenchmarkForwardRawLoopback sends through a real loopback multicast
// socket (no receivers), from an unprivileged port.
func BenchmarkForwardRawLoopback(b *testing.B) {
	snd, err := mcast.NewSender(&mcast.SenderConfig{Source: netip.AddrPortFrom(netip.Addr{}, 0xfff0)})
	if err != nil {
		b.Skip("no loopback multicast here:", err)
	}
	defer snd.Close()
	br, msgs := rawBridge(b, snd)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		br.forward(msgs, 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
}

// JSON is encoded only for joined JSON groups; raw frames and the sequence
// go on regardless, so a JSON receiver that joins late sees the numbers of
// the raw stream.
func TestJSONOnlyWhenJoined(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr4, _ := streams.Lookup("ipv4-ifaddr")
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr4}, NoHeartbeats: true, Logger: quiet}, newFakeSource(), nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	m := streams.Map{}
	joined := map[netip.Addr]int{}
	var failure error
	b.members = func() (map[netip.Addr]int, error) { return joined, failure }
	a1 := testmsg.Nlmsg(unix.RTM_NEWADDR, []byte{unix.AF_INET, 24, 0, 0, 3, 0, 0, 0})
	batch := []kernel.Message{{Group: 1, Data: linkMsg(3, "eth9")}, {Group: 5, Data: a1}}
	count := func() (raw, json int) {
		for _, s := range sink.out {
			if _, e, _ := m.Stream(s.dst); e == streams.JSON {
				json++
			} else {
				raw++
			}
		}
		sink.out = nil
		return
	}

	b.refreshMembers() // nobody joined
	b.forward(batch, 1)
	if raw, json := count(); raw != 2 || json != 0 {
		t.Errorf("nobody joined: %d raw, %d JSON datagrams; want 2, 0", raw, json)
	}
	joined[m.Addr(addr4, streams.JSON).Addr()] = 1
	joined[m.Addr(link, streams.Raw).Addr()] = 1 // raw membership does not ask for JSON
	b.refreshMembers()
	b.forward(batch, 2)
	out := sink.out
	if raw, json := count(); raw != 2 || json != 1 {
		t.Fatalf("addr JSON joined: %d raw, %d JSON; want 2, 1", raw, json)
	}
	for _, s := range out {
		if s.dst == m.Addr(addr4, streams.JSON) {
			f, err := frame.ParseJSON(s.data)
			if err != nil || f.Seq != 2 {
				t.Errorf("JSON frame %s: seq %d, %v; want seq 2", s.data, f.Seq, err)
			}
		}
	}
	failure = errors.New("no /proc")
	b.refreshMembers() // unreadable: JSON for all, never less
	b.forward(batch, 3)
	if raw, json := count(); raw != 2 || json != 2 {
		t.Errorf("memberships unreadable: %d raw, %d JSON; want 2, 2", raw, json)
	}
	if st := b.Stats(); st.JSONSkipped != 3 || st.Events != 6 {
		t.Errorf("stats: %d skipped, %d events; want 3, 6", st.JSONSkipped, st.Events)
	}
}

// batchSink records each WriteBatch's datagrams' destinations.
type batchSink struct{ batches [][]netip.AddrPort }

func (s *batchSink) WriteBatch(ms []ipv4.Message) error {
	var dsts []netip.AddrPort
	for _, m := range ms {
		dsts = append(dsts, m.Addr.(*net.UDPAddr).AddrPort())
	}
	s.batches = append(s.batches, dsts)
	return nil
}

// With a JSON group joined, a batch that is no backlog has all its raw
// frames sent before any JSON is encoded, in a send of their own, then its
// JSON (one more send per batch); a backlog is sent in one.
func TestRawSentBeforeJSONEncodingWhenNotBehind(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr4, _ := streams.Lookup("ipv4-ifaddr")
	sink := &batchSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr4}, NoHeartbeats: true, Logger: quiet}, newFakeSource(), nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	m := streams.Map{}
	b.members = func() (map[netip.Addr]int, error) {
		return map[netip.Addr]int{m.Addr(addr4, streams.JSON).Addr(): 1, m.Addr(link, streams.JSON).Addr(): 1}, nil
	}
	b.refreshMembers()
	a1 := testmsg.Nlmsg(unix.RTM_NEWADDR, []byte{unix.AF_INET, 24, 0, 0, 3, 0, 0, 0})
	batch := []kernel.Message{{Group: 5, Data: a1}, {Group: 1, Data: linkMsg(3, "eth9")}}
	raw4, json4 := m.Addr(addr4, streams.Raw), m.Addr(addr4, streams.JSON)
	rawL, jsonL := m.Addr(link, streams.Raw), m.Addr(link, streams.JSON)

	b.out.behind = false
	b.forward(batch, 1)
	want := [][]netip.AddrPort{{raw4, rawL}, {json4, jsonL}}
	if !reflect.DeepEqual(sink.batches, want) {
		t.Errorf("no backlog: sends %v, want %v", sink.batches, want)
	}
	sink.batches = nil
	b.out.behind = true
	b.forward(batch, 2)
	if want := [][]netip.AddrPort{{raw4, json4, rawL, jsonL}}; !reflect.DeepEqual(sink.batches, want) {
		t.Errorf("backlog: sends %v, want %v", sink.batches, want)
	}
}

// A JSON group gets heartbeats only while its JSON is encoded, and one at
// once when a check of the memberships finds it newly joined, with the
// stream's current number: a JSON receiver's first frame tells it that
// the events after it are encoded (nlmcast listen's readiness).
func TestJSONHeartbeatSaysEncoded(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr4, _ := streams.Lookup("ipv4-ifaddr")
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr4}, Heartbeat: time.Hour, Logger: quiet}, newFakeSource(), nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	m := streams.Map{}
	joined := map[netip.Addr]int{}
	b.members = func() (map[netip.Addr]int, error) { return joined, nil }
	heartbeats := func() (raw, json []netip.AddrPort) {
		for _, s := range sink.out {
			_, e, _ := m.Stream(s.dst)
			if e == streams.JSON {
				f, err := frame.ParseJSON(s.data)
				if err != nil {
					t.Fatalf("JSON datagram %q: %v", s.data, err)
				}
				if f.Kind == frame.KindHeartbeat.String() {
					if f.Seq != 1 {
						t.Errorf("JSON heartbeat with seq %d, want the stream's 1", f.Seq)
					}
					json = append(json, s.dst)
				}
				continue
			}
			if h, _, err := frame.Parse(s.data); err == nil && h.Kind == frame.KindHeartbeat {
				raw = append(raw, s.dst)
			}
		}
		sink.out = nil
		return
	}

	b.refreshMembers() // nobody joined
	now := time.Now()
	b.sendHeartbeats(now.Add(2 * time.Hour))
	if raw, json := heartbeats(); len(raw) != 2 || len(json) != 0 {
		t.Errorf("nobody joined: heartbeats to %v raw, %v JSON; want 2 raw, no JSON", raw, json)
	}
	b.forward([]kernel.Message{{Group: 5, Data: testmsg.Nlmsg(unix.RTM_NEWADDR, []byte{unix.AF_INET, 24, 0, 0, 3, 0, 0, 0})}}, 1)
	sink.out = nil

	joined[m.Addr(addr4, streams.JSON).Addr()] = 1
	b.nextHeartbeat = now.Add(time.Hour)
	b.refreshMembers()
	if !b.announce.Load() {
		t.Fatal("a JSON group newly joined: no heartbeat due")
	}
	b.housekeep(now) // the loop, woken: long before the next heartbeat
	_, json := heartbeats()
	if want := []netip.AddrPort{m.Addr(addr4, streams.JSON)}; !reflect.DeepEqual(json, want) {
		t.Fatalf("after the join: JSON heartbeats to %v, want %v", json, want)
	}
	b.refreshMembers() // still joined: nothing more to say
	b.housekeep(now)
	if _, json := heartbeats(); len(json) != 0 {
		t.Errorf("no new join: JSON heartbeats to %v, want none", json)
	}
	joined[m.Addr(addr4, streams.JSON).Addr()] = 2 // a second receiver
	b.refreshMembers()
	b.housekeep(now)
	if _, json := heartbeats(); len(json) != 1 {
		t.Errorf("a second receiver joined: JSON heartbeats to %v, want one", json)
	}
}
