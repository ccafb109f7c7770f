package netlinkbridge

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// panicky is a family driver whose decoding panics on one message.
type panicky struct {
	driver
	on        []byte
	past      int  // 0: the index panics
	inObserve bool // observe panics, not decode
}

func (p panicky) observe(b *Bridge, m *kernel.Message) {
	if p.inObserve && bytes.Equal(m.Data, p.on) {
		_ = m.Data[len(m.Data)+p.past]
	}
	p.driver.observe(b, m)
}

func (p panicky) decode(b *Bridge, m *kernel.Message) decode.Result {
	if !p.inObserve && bytes.Equal(m.Data, p.on) {
		_ = m.Data[len(m.Data)+p.past] // a decoder's bug: index out of range
	}
	return p.driver.decode(b, m)
}

// appendJSON panics as decode does: the bridge writes live rtnetlink
// events' JSON this way (jsonAppender), answers' with decode.
func (p panicky) appendJSON(b *Bridge, m *kernel.Message, summary, event []byte) ([]byte, []byte) {
	if !p.inObserve && bytes.Equal(m.Data, p.on) {
		_ = m.Data[len(m.Data)+p.past]
	}
	if a, ok := p.driver.(jsonAppender); ok {
		return a.appendJSON(b, m, summary, event)
	}
	r := p.driver.decode(b, m)
	return append(summary, r.Summary...), append(event, r.Event...)
}

// syncBuffer is a log destination for the bridges' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncBuffer) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.buf.String() }

// A panic in one family's decoder restarts that family's bridge with a
// new epoch, numbered from 1 and announced at once; the message is logged
// in hex and counted; the other family of the Set keeps its epoch and
// numbering.
func TestPanicRestartsOnlyItsFamily(t *testing.T) {
	link, _ := streams.Lookup("link")
	ue, _ := streams.Lookup("uevent")
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	bad := linkMsg(66, "bad0")
	routeSrc := newFakeSource([]kernel.Message{
		{Group: 1, Data: linkMsg(3, "eth0")}, {Group: 1, Data: bad}, {Group: 1, Data: linkMsg(4, "eth1")},
	})
	routeSink := &fakeSink{}
	// Batch 3: the three messages are a backlog, framed in one pass (a
	// panic in forward's JSON pass is TestPanicInJSONPass's).
	rb, err := NewWithSource(&Config{Streams: []streams.Stream{link}, NoHeartbeats: true, Logger: log, Batch: 3}, routeSrc, nil, routeSink)
	if err != nil {
		t.Fatal(err)
	}
	rb.fam = panicky{driver: rb.fam, on: bad}
	uev := []byte("add@/devices/x\x00ACTION=add\x00DEVPATH=/devices/x\x00SUBSYSTEM=x\x00SEQNUM=1\x00")
	ueSrc := newFakeSource([]kernel.Message{{Group: 1, Data: uev}})
	ueSink := &fakeSink{}
	ub, err := NewWithSource(&Config{Streams: []streams.Stream{ue}, NoHeartbeats: true, Logger: log}, ueSrc, nil, ueSink)
	if err != nil {
		t.Fatal(err)
	}
	epoch0, ueEpoch := rb.Epoch(), ub.Epoch()

	set := &Set{bridges: []*Bridge{rb, ub}, ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- set.Run(ctx) }()
	waitFor(t, "the events around the panic", func() bool {
		return rb.Stats().Events == 2 && rb.Stats().Panics == 1 && ub.Stats().Events == 1
	})
	// Both go on: one more event each.
	routeSrc.push([]kernel.Message{{Group: 1, Data: linkMsg(5, "eth2")}}, nil)
	ueSrc.push([]kernel.Message{{Group: 1, Data: uev}}, nil)
	waitFor(t, "the events after the panic", func() bool { return rb.Stats().Events == 3 && ub.Stats().Events == 2 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Set.Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Set.Run did not return")
	}

	epoch1 := rb.Epoch()
	if epoch1 <= epoch0 {
		t.Fatalf("epoch after the panic %x, want larger than %x", epoch1, epoch0)
	}
	type fr struct {
		kind  frame.Kind
		epoch uint64
		seq   uint64
		json  bool
		data  []byte
	}
	frames := func(sink *fakeSink) []fr {
		var out []fr
		for _, s := range sink.out {
			if h, p, err := frame.Parse(s.data); err == nil {
				out = append(out, fr{h.Kind, h.Epoch, h.Seq, false, p})
				continue
			}
			f, err := frame.ParseJSON(s.data)
			if err != nil {
				t.Fatalf("neither raw nor JSON: %q", s.data)
			}
			h, _ := f.Header()
			out = append(out, fr{h.Kind, h.Epoch, h.Seq, true, nil})
		}
		return out
	}
	ev, hb, bye := frame.KindEvent, frame.KindHeartbeat, frame.KindGoodbye
	want := []fr{
		{ev, epoch0, 1, false, linkMsg(3, "eth0")}, {ev, epoch0, 1, true, nil},
		// The bad message is dropped, raw frame and all; the new epoch
		// is announced with a heartbeat numbered 0.
		{hb, epoch1, 0, false, nil}, {hb, epoch1, 0, true, nil},
		{ev, epoch1, 1, false, linkMsg(4, "eth1")}, {ev, epoch1, 1, true, nil},
		{ev, epoch1, 2, false, linkMsg(5, "eth2")}, {ev, epoch1, 2, true, nil},
		{bye, epoch1, 2, false, nil}, {bye, epoch1, 2, true, nil},
	}
	got := frames(routeSink)
	if len(got) != len(want) {
		t.Fatalf("route frames:\n got %+v\nwant %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.kind != w.kind || g.epoch != w.epoch || g.seq != w.seq || g.json != w.json || (w.data != nil && !bytes.Equal(g.data, w.data)) {
			t.Errorf("route frame %d: got %+v, want %+v", i, g, w)
		}
	}

	if ub.Epoch() != ueEpoch || ub.Stats().Panics != 0 {
		t.Errorf("uevent bridge: epoch %x (was %x), %d panics", ub.Epoch(), ueEpoch, ub.Stats().Panics)
	}
	var seqs []uint64
	for _, f := range frames(ueSink) {
		if f.epoch != ueEpoch {
			t.Errorf("uevent frame of epoch %x, want %x", f.epoch, ueEpoch)
		}
		if f.kind == ev && !f.json {
			seqs = append(seqs, f.seq)
		}
	}
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 2 {
		t.Errorf("uevent raw event numbers %v, want [1 2]", seqs)
	}

	l := logs.String()
	for _, s := range []string{"panic recovered", hex.EncodeToString(bad), "index out of range", "panics_total=1"} {
		if !bytes.Contains([]byte(l), []byte(s)) {
			t.Errorf("log lacks %q:\n%s", s, l)
		}
	}
}

// Epochs after a panic always grow, even within a millisecond or after
// the clock went back.
func TestNextEpochGrows(t *testing.T) {
	now := time.Now()
	old := frame.NewEpoch(now)
	for _, at := range []time.Time{now, now.Add(-time.Hour), now.Add(time.Millisecond)} {
		if e := nextEpoch(old, at); e <= old {
			t.Errorf("at %v: epoch %x not above %x", at.Sub(now), e, old)
		}
	}
}

// panicSource panics in its first read: a failure of the loop itself,
// outside any message.
type panicSource struct {
	*fakeSource
	once sync.Once
}

func (s *panicSource) ReadBatch(ms []kernel.Message) (int, error) {
	s.once.Do(func() { panic("read broke") })
	return s.fakeSource.ReadBatch(ms)
}

// A panic in the loop outside a message restarts the bridge the same way,
// with nothing to blame in the log.
func TestPanicInLoopRestarts(t *testing.T) {
	logs := &syncBuffer{}
	src := &panicSource{fakeSource: newFakeSource([]kernel.Message{{Group: 1, Data: linkMsg(3, "eth0")}})}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.Raw}, NoHeartbeats: true,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	epoch0 := b.Epoch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "the event after the panic", func() bool { return b.Stats().Events == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if b.Stats().Panics != 1 || b.Epoch() <= epoch0 {
		t.Fatalf("%d panics, epoch %x (was %x); want 1 and a larger one", b.Stats().Panics, b.Epoch(), epoch0)
	}
	for _, s := range sink.out {
		h, _, err := frame.Parse(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if h.Epoch != b.Epoch() || h.Kind == frame.KindEvent && h.Seq != 1 {
			t.Errorf("frame %+v: want epoch %x, the event numbered 1", h, b.Epoch())
		}
	}
	if l := logs.String(); !strings.Contains(l, "read broke") || strings.Contains(l, "message_hex") {
		t.Errorf("log:\n%s", l)
	}
}

// Bridges a process makes take ever larger epochs, even one made in the
// same millisecond as another's restart (whose epoch is the next
// millisecond's): a replay's bridge restarted by --inject goodbye right
// after an injected restart took a smaller epoch, which receivers refused
// as an old one.
func TestEpochsOfAProcessOnlyGrow(t *testing.T) {
	now := time.Now()
	prev := freshEpoch(frame.NewEpoch(now))
	for i := range 1000 {
		restarted := freshEpoch(nextEpoch(prev, now)) // a panic recovered: the next millisecond
		made := freshEpoch(frame.NewEpoch(now))       // a bridge made now
		if restarted <= prev || made <= restarted {
			t.Fatalf("round %d: epochs %016x, %016x, %016x: not growing", i, prev, restarted, made)
		}
		prev = made
	}
}

// A panic in either pass of a batch that is no backlog (raw frames, then
// JSON) drops its message, raw frames and JSON; the rest of the batch goes
// on in its epoch on both encodings, and the bridge restarts after it,
// announced on both: JSON receivers lose nothing but that message (a gap,
// when it had been numbered), and nothing is lost unannounced.
func TestPanicInEitherPass(t *testing.T) {
	link, _ := streams.Lookup("link")
	bad := linkMsg(66, "bad0")
	type fr struct {
		kind  frame.Kind
		epoch uint64
		seq   uint64
		json  bool
	}
	ev, hb := frame.KindEvent, frame.KindHeartbeat
	for _, tc := range []struct {
		name      string
		inObserve bool
		want      func(e0, e1 uint64) []fr
	}{
		{"JSON pass", false, func(e0, e1 uint64) []fr {
			return []fr{
				{ev, e0, 1, false}, {ev, e0, 2, false}, {ev, e0, 3, false}, // raw, the bad one's included
				{ev, e0, 1, true}, {ev, e0, 3, true}, // JSON: the bad one's is not (a gap)
				{hb, e1, 0, false}, {hb, e1, 0, true},
			}
		}},
		{"raw pass", true, func(e0, e1 uint64) []fr {
			return []fr{
				{ev, e0, 1, false}, {ev, e0, 2, false}, // the bad one is not numbered
				{ev, e0, 1, true}, {ev, e0, 2, true},
				{hb, e1, 0, false}, {hb, e1, 0, true},
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &fakeSink{}
			b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, NoHeartbeats: true, Logger: quiet}, newFakeSource(), nil, sink)
			if err != nil {
				t.Fatal(err)
			}
			b.fam = panicky{driver: b.fam, on: bad, inObserve: tc.inObserve}
			epoch0 := b.Epoch()
			b.out.behind = false
			b.forward([]kernel.Message{{Group: 1, Data: linkMsg(3, "eth0")}, {Group: 1, Data: bad}, {Group: 1, Data: linkMsg(4, "eth1")}}, 1)
			epoch1 := b.Epoch()
			if epoch1 == epoch0 || b.Stats().Panics != 1 || b.late != nil || len(b.jsonLater) != 0 {
				t.Fatalf("epoch %x (was %x), %d panics, late %v, %d JSON left: want one restart, nothing left", epoch1, epoch0, b.Stats().Panics, b.late, len(b.jsonLater))
			}
			var got []fr
			for _, s := range sink.out {
				if h, _, err := frame.Parse(s.data); err == nil {
					got = append(got, fr{h.Kind, h.Epoch, h.Seq, false})
					continue
				}
				f, err := frame.ParseJSON(s.data)
				if err != nil {
					t.Fatalf("neither raw nor JSON: %q", s.data)
				}
				h, _ := f.Header()
				got = append(got, fr{h.Kind, h.Epoch, h.Seq, true})
			}
			if want := tc.want(epoch0, epoch1); !slices.Equal(got, want) {
				t.Errorf("frames:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}
