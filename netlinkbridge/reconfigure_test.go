package netlinkbridge

import (
	"context"
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// refusingJoin is a joinSource that refuses to join one group, as the
// kernel refuses a privileged group to a bridge that gave up CAP_NET_ADMIN.
type refusingJoin struct {
	*joinSource
	refuse uint32
}

func (s *refusingJoin) Join(g uint32) error {
	if g == s.refuse {
		return unix.EPERM
	}
	return s.joinSource.Join(g)
}

// SetStreams changes a running bridge's streams: a stream dropped says
// goodbye and its group is left, a stream added is joined and bridged (here
// sealed, under a key file opened then), the others go on in the same
// epoch, and a stream the kernel refuses is reported while the rest apply.
func TestSetStreamsWhileRunning(t *testing.T) {
	path, o := testPrivateKeys(t)
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	route, _ := streams.Lookup("ipv4-route")
	neigh, _ := streams.Lookup("neigh")
	src := &refusingJoin{joinSource: &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}, refuse: neigh.Group}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr}, Encodings: []streams.Encoding{streams.Raw}, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.SetStreams([]streams.Stream{link}, nil); err == nil {
		t.Error("SetStreams before Run: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	<-b.ready
	epoch := b.Epoch()

	// The wrong family, or a bad config: refused, nothing changed.
	ue, _ := streams.Lookup("uevent")
	if err := b.SetStreams([]streams.Stream{ue}, nil); err == nil {
		t.Error("a stream of another family was taken")
	}
	proc, _ := streams.Lookup("proc")
	var pe *PrivilegedError
	if err := b.SetStreams([]streams.Stream{link, proc}, nil); !errors.As(err, &pe) {
		t.Errorf("a private stream without an entry: %v", err)
	}

	err = b.SetStreams([]streams.Stream{link, route, neigh}, map[string]Access{"ipv4-route": {KeyFile: path}})
	var se *StreamsError
	if !errors.As(err, &se) || len(se.Failed) != 1 || !errors.Is(se.Failed["neigh"], unix.EPERM) {
		t.Fatalf("SetStreams: %v, want neigh refused alone", err)
	}
	if !src.has(route.Group) || src.has(addr.Group) || src.has(neigh.Group) {
		t.Errorf("joined %v: want route joined, addr left, neigh not joined", src.joined)
	}
	if b.Epoch() != epoch {
		t.Error("the epoch changed")
	}
	src.push([]kernel.Message{
		{Group: route.Group, Data: testmsg.Nlmsg(unix.RTM_NEWROUTE, make([]byte, 28))},
		{Group: addr.Group, Data: testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 24))},
		{Group: link.Group, Data: linkMsg(4, "eth4")},
	}, nil)
	waitFor(t, "the events after the change", func() bool { return b.Stats().Events >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m := streams.Map{}
	var routeSealed, linkEvents, addrGoodbye, addrEvents int
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, s := range sink.out {
		switch s.dst {
		case m.Addr(route, streams.Raw):
			if err := o.Open(s.data, s.dst); err != nil {
				t.Fatalf("a frame of the sealed stream added: %v", err)
			}
			if h, _, _ := frame.Parse(s.data); h.Kind == frame.KindEvent && h.Seq == 1 {
				routeSealed++
			}
		case m.Addr(addr, streams.Raw):
			h, _, _ := frame.Parse(s.data)
			switch h.Kind {
			case frame.KindGoodbye:
				addrGoodbye++
			case frame.KindEvent:
				addrEvents++
			}
		case m.Addr(link, streams.Raw):
			if h, _, _ := frame.Parse(s.data); h.Kind == frame.KindEvent {
				linkEvents++
			}
		}
	}
	if routeSealed != 1 || linkEvents != 1 || addrGoodbye != 1 || addrEvents != 0 {
		t.Errorf("route sealed events %d (want 1, seq 1), link events %d (want 1), addr goodbyes %d (want 1) and events %d (want 0)",
			routeSealed, linkEvents, addrGoodbye, addrEvents)
	}
	if b.Stats().NotStreams != 1 {
		t.Errorf("the dropped stream's event: NotStreams %d, want 1", b.Stats().NotStreams)
	}
}

// A stream SetStreams drops says a goodbye of its own (FlagDropped, and
// "dropped" in JSON): receivers must not take the bridge's socket, which
// stays open, for closing. Added back in the same epoch, its numbers go on
// from that goodbye's, with an overrun first; the goodbye of a bridge
// that stops has no such flag.
func TestSetStreamsDroppedGoodbye(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr}, Encodings: []streams.Encoding{streams.Raw, streams.JSON}, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	<-b.ready
	src.push([]kernel.Message{{Group: addr.Group, Data: testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 24))}}, nil)
	waitFor(t, "the event before the drop", func() bool { return b.Stats().Events >= 1 })
	if err := b.SetStreams([]streams.Stream{link}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.SetStreams([]streams.Stream{link, addr}, nil); err != nil {
		t.Fatal(err)
	}
	src.push([]kernel.Message{{Group: addr.Group, Data: testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 24))}}, nil)
	waitFor(t, "the event after it was added back", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		n := 0
		for _, s := range sink.out {
			if h, _, err := frame.Parse(s.data); err == nil && h.Kind == frame.KindEvent && h.Group == addr.Group {
				n++
			}
		}
		return n >= 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m := streams.Map{}
	var got []frame.Header
	jsonDropped := 0
	var jsonOverruns []string
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, s := range sink.out {
		switch s.dst {
		case m.Addr(addr, streams.Raw):
			h, _, err := frame.Parse(s.data)
			if err != nil {
				t.Fatal(err)
			}
			if h.Kind != frame.KindHeartbeat && h.Flags&frame.FlagDump == 0 && h.Kind != frame.KindResyncBegin && h.Kind != frame.KindResyncEnd {
				got = append(got, h)
			}
		case m.Addr(addr, streams.JSON):
			f, err := frame.ParseJSON(s.data)
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind == "goodbye" && f.Dropped {
				jsonDropped++
			}
			if f.Kind == "overrun" {
				jsonOverruns = append(jsonOverruns, f.Summary)
			}
		}
	}
	want := []struct {
		kind  frame.Kind
		flags frame.Flags
		seq   uint64
	}{
		{frame.KindEvent, 0, 1},
		{frame.KindGoodbye, frame.FlagDropped, 1}, // dropped
		{frame.KindOverrun, 0, 2},                 // added back: the numbers go on
		{frame.KindEvent, 0, 3},
		{frame.KindGoodbye, 0, 3}, // the bridge stops
	}
	if len(got) != len(want) {
		t.Fatalf("the stream's frames: %+v, want %+v", got, want)
	}
	for i, w := range want {
		if h := got[i]; h.Kind != w.kind || h.Flags != w.flags || h.Seq != w.seq || h.Epoch != b.Epoch() {
			t.Errorf("frame %d: %v flags %#x #%d of epoch %016x, want %v flags %#x #%d of the bridge's epoch", i, h.Kind, h.Flags, h.Seq, h.Epoch, w.kind, w.flags, w.seq)
		}
	}
	if jsonDropped != 1 {
		t.Errorf("JSON goodbyes marked dropped: %d, want 1", jsonDropped)
	}
	// The JSON overrun says why, and promises no resync (no dump here).
	if want := []string{readdedSummary}; !slices.Equal(jsonOverruns, want) {
		t.Errorf("JSON overruns' summaries %q, want %q", jsonOverruns, want)
	}
}

// A JSON overrun promises a resync only where one follows: on a stream
// with a dump, from a bridge with a dump socket.
func TestOverrunSummarySaysWhetherAResyncFollows(t *testing.T) {
	link, _ := streams.Lookup("link")
	uevent, _ := streams.Lookup("uevent")
	overrun := frame.Header{Kind: frame.KindOverrun}
	for _, tc := range []struct {
		s    streams.Stream
		dump Dumper
		want string
	}{
		{link, &fakeDumper{}, controlSummary[frame.KindOverrun]},
		{link, nil, overrunNoResyncSummary},
		{uevent, &fakeDumper{}, overrunNoResyncSummary},
	} {
		b := &Bridge{dump: tc.dump}
		if got := b.jsonSummary(&streamState{stream: tc.s}, overrun); got != tc.want {
			t.Errorf("%s, dump %v: %q, want %q", tc.s.Name, tc.dump != nil, got, tc.want)
		}
	}
}
