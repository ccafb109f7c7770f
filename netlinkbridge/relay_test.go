package netlinkbridge

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// slowSink records datagrams like fakeSink; each WriteBatch moves the
// clock by cost and, while hold is set, first waits for it to be closed.
type slowSink struct {
	fakeSink
	clock   *fakeClock
	mu      sync.Mutex
	cost    time.Duration
	hold    chan struct{}
	calling chan struct{} // closed by the next call that waits on hold
	free    int           // calls that pass before hold applies
}

func (s *slowSink) WriteBatch(ms []ipv4.Message) error {
	s.mu.Lock()
	hold, cost, calling := s.hold, s.cost, s.calling
	if s.free > 0 {
		s.free--
		hold, calling = nil, nil
	} else {
		s.calling = nil
	}
	s.mu.Unlock()
	if hold != nil {
		if calling != nil {
			close(calling)
		}
		<-hold
	}
	if s.clock != nil {
		s.clock.add(cost)
	}
	return s.fakeSink.WriteBatch(ms)
}

func (s *slowSink) set(cost time.Duration, hold chan struct{}) (calling <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cost, s.hold = cost, hold
	s.calling = make(chan struct{})
	return s.calling
}

func (s *slowSink) seqs() []uint64 {
	s.fakeSink.mu.Lock()
	defer s.fakeSink.mu.Unlock()
	var out []uint64
	for _, d := range s.out {
		h, _, err := frame.Parse(d.data)
		if err == nil {
			out = append(out, h.Seq)
		}
	}
	return out
}

// within runs fn and fails t if it does not return within 5 s: the
// reader must never wait for the slow sink.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5 s (the reader waits for the sink)", what)
	}
}

func TestOutboxHandsOffSlowSends(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	sink := &slowSink{clock: clock}
	var o outbox
	o.init(sink, 32, func(error) {}, nil) // the relay holds 32 datagrams, or a megabyte
	var handed []time.Duration
	dropped := 0
	o.now, o.bound = clock.now, time.Millisecond
	o.handed, o.dropped = func(d time.Duration) { handed = append(handed, d) }, func(n int) { dropped += n }
	o.startRelay(o.bound, func(error) {})
	o.relay.onIdle = notify // waitFor checks again
	defer o.stopRelay()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.0.0.1:5000"))
	seq := uint64(0)
	send := func(size int) {
		seq++
		o.raw(dst, frame.Header{Kind: frame.KindEvent, Seq: seq}, make([]byte, size), nil)
		o.flush()
	}

	// A slow send while the reader keeps up: still sent inline.
	sink.set(5*time.Millisecond, nil)
	send(10)
	if o.relaying || len(sink.seqs()) != 1 {
		t.Fatalf("a slow send with no backlog: relaying %v, sent %v", o.relaying, sink.seqs())
	}
	// A slow send while behind: the next batches go to the relay.
	o.behind = true
	send(10)
	if !o.relaying || !slices.Equal(handed, []time.Duration{5 * time.Millisecond}) || o.handoffs.Load() != 1 {
		t.Fatalf("after a slow send while behind: relaying %v, handed %v", o.relaying, handed)
	}
	// The relay's sends block: the reader goes on, and what does not fit
	// in the relay is dropped.
	hold := make(chan struct{})
	var release sync.Once
	defer release.Do(func() { close(hold) }) // before stopRelay, should the test fail
	calling := sink.set(0, hold)
	within(t, "hand-off to a blocked sink", func() { send(10) })
	<-calling // the relay holds seq 3 in the blocked send
	within(t, "hand-offs to a blocked sink", func() {
		for range 40 {
			send(60_000) // 17 fit in the relay's megabyte
		}
	})
	if dropped != 40-17 || o.handoffDropped.Load() != uint64(dropped) {
		t.Fatalf("dropped %d (counted %d), want %d", dropped, o.handoffDropped.Load(), 40-17)
	}
	release.Do(func() { close(hold) })
	want := []uint64{1, 2, 3}
	for s := uint64(4); s < 4+17; s++ {
		want = append(want, s)
	}
	waitFor(t, "the relay sent what it held", func() bool { return len(sink.seqs()) == len(want) })
	if got := sink.seqs(); !slices.Equal(got, want) {
		t.Fatalf("sent seqs %v, want %v (in order; the rest dropped: a gap)", got, want)
	}
	// Within relayHold of the last slow send, still relayed; after it,
	// once the relay is empty, inline again.
	send(10)
	if !o.relaying {
		t.Fatal("left the relay within relayHold of a slow send")
	}
	// The clock moves on only once the relay is done with that send: it
	// times each send on this clock, and a send that seemed to last
	// relayHold would count as slow.
	waitFor(t, "the relay sent it and is empty", func() bool {
		if len(sink.seqs()) != len(want)+1 {
			return false
		}
		o.relay.mu.Lock()
		defer o.relay.mu.Unlock()
		return !o.relay.busy && (o.relay.filling == nil || len(o.relay.filling.msgs) == 0)
	})
	clock.add(relayHold)
	if !o.relayIdle(clock.now()) {
		t.Fatal("the relay is not idle relayHold after its last slow send, empty")
	}
	o.behind = false
	send(10)
	if o.relaying || len(sink.seqs()) != len(want)+2 {
		t.Fatalf("relaying %v after relayHold; sent %d datagrams, want %d (inline)", o.relaying, len(sink.seqs()), len(want)+2)
	}
}

// The attack of issue 14 through the bridge loop: every send blocks, and
// the bridge still reads every netlink batch. What the relay has no room
// for is dropped, and the goodbye still goes out, last.
func TestSlowSinkDoesNotHoldUpReads(t *testing.T) {
	link, _ := streams.Lookup("link")
	var batches [][]kernel.Message
	for range 2000 {
		// Batch 1: a read of one message or more is a full one, so the
		// bridge is behind.
		batches = append(batches, []kernel.Message{{Group: 1, Data: linkMsg(3, "eth9")}, {Group: 1, Data: linkMsg(4, "eth10")}})
	}
	src := newFakeSource(batches...)
	sink := &slowSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, Encodings: []streams.Encoding{streams.Raw},
		Batch: 1, HandoffAfter: time.Nanosecond, NoHeartbeats: true, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	var release sync.Once
	sink.set(0, hold) // from the second send on: a sink that never returns, until the test says
	sink.free = 1     // the first, inline, returns (slower than a nanosecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { release.Do(func() { close(hold) }); cancel(); <-done }) // should the test fail
	waitFor(t, "every batch read while the sink blocks", func() bool { return b.Stats().Events == 4000 })
	st := b.Stats()
	if st.Handoffs != 1 || st.HandoffDropped == 0 {
		t.Errorf("stats %+v: want one hand-off and datagrams dropped", st)
	}
	release.Do(func() { close(hold) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the cleanup
	st = b.Stats()
	seqs := sink.seqs()
	if uint64(len(seqs)) != st.Datagrams || st.Datagrams+st.HandoffDropped != 4000+1 {
		t.Errorf("sent %d datagrams (counted %d), dropped %d; want 4001 (4000 events and a goodbye) in all", len(seqs), st.Datagrams, st.HandoffDropped)
	}
	if !slices.IsSorted(seqs) || seqs[len(seqs)-1] != 4000 {
		t.Errorf("sequence numbers out of order, or the goodbye (repeating 4000) not last: %v", seqs[max(0, len(seqs)-5):])
	}
	last := sink.out[len(sink.out)-1]
	if h, _, _ := frame.Parse(last.data); h.Kind != frame.KindGoodbye {
		t.Errorf("last datagram %+v, want the goodbye", h)
	}
}

// Handing off allocates nothing either, once the relay's buffers exist.
func TestRelayAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	var o outbox
	sink := &discardSink{}
	o.init(sink, 8, func(error) {}, nil)
	o.bound, o.handed, o.dropped = time.Millisecond, func(time.Duration) {}, func(int) {}
	o.startRelay(o.bound, func(error) {})
	defer o.stopRelay()
	o.relaying = true
	o.relay.lastSlow.Store(time.Now().Add(time.Hour).UnixNano()) // stay relayed
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.0.0.1:5000"))
	payload := make([]byte, 100)
	batch := func() {
		for range 8 {
			o.raw(dst, frame.Header{Kind: frame.KindEvent}, payload, nil)
		}
		o.flush()
	}
	batch() // makes the buffers
	if a := testing.AllocsPerRun(200, batch); a != 0 {
		t.Fatalf("a relayed batch allocates %v times", a)
	}
}

// With the relay full, the reader waits for it while the source's buffer
// (Backlog) has more than a quarter of its room and 2 MiB free: the kernel
// holds the events meanwhile, and nothing is dropped. Otherwise, when the
// source cannot tell, or once the relay has been full for 2 s, what does
// not fit is dropped and the reader goes on reading, asking the source
// once a batch. A burst after a quiet spell waits again.
func TestRelayFullWaitsWhileTheKernelHasRoom(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	sink := &slowSink{clock: clock}
	var o outbox
	o.init(sink, 8, func(error) {}, nil) // the relay holds 8 datagrams per buffer
	dropped := 0
	o.now, o.bound, o.waitFor = clock.now, time.Millisecond, relayWaitFor
	o.handed, o.dropped = func(time.Duration) {}, func(n int) { dropped += n }
	var queued, limit, asks atomic.Int64
	var backlogErr error
	asked := make(chan struct{}, 1) // the reader found the relay full
	o.backlog = func() (int, int, error) {
		asks.Add(1)
		select {
		case asked <- struct{}{}:
		default:
		}
		return int(queued.Load()), int(limit.Load()), backlogErr
	}
	o.startRelay(o.bound, func(error) {})
	o.relay.onIdle = notify // waitFor checks again
	defer o.stopRelay()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("239.0.0.1:5000"))
	seq := uint64(0)
	sendN := func(n int) {
		for range n {
			seq++
			o.raw(dst, frame.Header{Kind: frame.KindEvent, Seq: seq}, make([]byte, 10), nil)
		}
		o.flush()
	}
	send := func() { sendN(1) }
	upTo := func(n uint64) []uint64 {
		var s []uint64
		for i := uint64(1); i <= n; i++ {
			s = append(s, i)
		}
		return s
	}
	// A slow send while behind: the batches after it go to the relay.
	sink.set(5*time.Millisecond, nil)
	o.behind = true
	send()
	if !o.relaying {
		t.Fatal("no hand-off after a slow send while behind")
	}
	// blockRelay makes the relay's next send block, hands it a datagram,
	// and fills the relay's other buffer: the reader's next datagram finds
	// the relay full.
	blockRelay := func(hold chan struct{}) {
		t.Helper()
		calling := sink.set(0, hold)
		send()
		<-calling
		within(t, "filling the relay", func() {
			for range 8 {
				send()
			}
		})
	}

	// 16 MiB, 26% free: the reader waits for the relay.
	queued.Store(16 << 20 / 100 * 74)
	limit.Store(16 << 20)
	hold := make(chan struct{})
	var release sync.Once
	defer release.Do(func() { close(hold) }) // should the test fail
	blockRelay(hold)
	waited := make(chan struct{})
	go func() { defer close(waited); send() }()
	select {
	case <-asked: // and waits: the relay is full, the kernel has room
	case <-waited:
		t.Fatalf("with the relay full, the reader neither waited nor asked the source (dropped %d)", dropped)
	}
	release.Do(func() { close(hold) })
	<-waited
	if dropped != 0 {
		t.Fatalf("with room in the kernel: dropped %d, want none", dropped)
	}
	waitFor(t, "the relay sent everything", func() bool { return len(sink.seqs()) == int(seq) })
	if got := sink.seqs(); !slices.Equal(got, upTo(seq)) {
		t.Fatalf("with room in the kernel: sent %v; want 1 to %d in order", got, seq)
	}

	// No wait: a batch of three datagrams over the full relay is dropped.
	for _, tc := range []struct {
		name          string
		queued, limit int64
		err           error
		waiting       bool  // the relay has been full for relayWaitFor already
		asks          int64 // Backlog calls for the batch
	}{
		{"75% full", 12 << 20, 16 << 20, nil, false, 1},
		{"less than 2 MiB free", 0, 1 << 20, nil, false, 1},
		{"Backlog failed", 0, 16 << 20, errors.New("closed"), false, 1},
		{"full for 2 s already", 0, 16 << 20, nil, true, 0},
	} {
		queued.Store(tc.queued)
		limit.Store(tc.limit)
		backlogErr = tc.err
		if tc.waiting {
			// Found full a moment ago (the case before), and since the
			// first wait relayWaitFor ago.
			o.waitFrom = clock.now()
			clock.add(relayWaitFor)
			o.lastFull = clock.now()
			o.relay.lastSlow.Store(clock.now().UnixNano()) // its sends slow all along: still relaying
		}
		hold := make(chan struct{})
		blockRelay(hold)
		before, asksBefore := dropped, asks.Load()
		within(t, tc.name+": three datagrams with the relay full", func() { sendN(3) })
		close(hold)
		if dropped != before+3 || o.handoffDropped.Load() != uint64(dropped) {
			t.Fatalf("%s: dropped %d (counted %d), want %d", tc.name, dropped, o.handoffDropped.Load(), before+3)
		}
		if n := asks.Load() - asksBefore; n != tc.asks {
			t.Errorf("%s: asked the source %d times for the batch, want %d", tc.name, n, tc.asks)
		}
		waitFor(t, "the relay sent what it held", func() bool { return len(sink.seqs()) == int(seq)-dropped })
	}

	// A quiet spell longer than relayWaitFor with the relay never full
	// (its sends still slow: still relaying), then a burst: it waits.
	clock.add(relayWaitFor + time.Millisecond)
	o.relay.lastSlow.Store(clock.now().UnixNano())
	queued.Store(0)
	before := dropped
	hold = make(chan struct{})
	var release2 sync.Once
	defer release2.Do(func() { close(hold) })
	blockRelay(hold)
	select {
	case <-asked: // an earlier case's question
	default:
	}
	waited = make(chan struct{})
	go func() { defer close(waited); send() }()
	select {
	case <-asked:
	case <-waited:
		t.Fatalf("a burst after a quiet spell: the reader neither waited nor asked the source (dropped %d)", dropped-before)
	}
	release2.Do(func() { close(hold) })
	<-waited
	if dropped != before {
		t.Fatalf("a burst after a quiet spell: dropped %d, want none", dropped-before)
	}
}

// The reader waits for a full relay for relayWaitFor at most, or for two
// heartbeat intervals if that is shorter: a longer wait would hold back
// heartbeats until receivers take the bridge for stalled (three missed).
func TestRelayWaitWithinTheHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{Heartbeat: 500 * time.Millisecond}, time.Second},
		{Config{Heartbeat: 5 * time.Second}, relayWaitFor},
		{Config{NoHeartbeats: true}, relayWaitFor},
	} {
		tc.cfg.Logger = quiet
		b, err := NewWithSource(&tc.cfg, newFakeSource(), nil, &fakeSink{})
		if err != nil {
			t.Fatal(err)
		}
		b.setWaitFor()
		if b.out.waitFor != tc.want {
			t.Errorf("heartbeat %v (off: %v): waits %v at most, want %v", tc.cfg.Heartbeat, tc.cfg.NoHeartbeats, b.out.waitFor, tc.want)
		}
	}
}
