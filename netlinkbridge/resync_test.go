package netlinkbridge

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// kindSeq decodes the kind and sequence number of a raw or JSON frame.
func kindSeq(t *testing.T, d []byte) (frame.Kind, uint64) {
	t.Helper()
	if h, _, err := frame.Parse(d); err == nil {
		return h.Kind, h.Seq
	}
	f, err := frame.ParseJSON(d)
	if err != nil {
		t.Fatalf("neither a raw nor a JSON frame: %q", d)
	}
	h, _ := f.Header()
	return h.Kind, h.Seq
}

// running starts b.Run and returns a function that stops it and returns
// its error.
func running(t *testing.T, b *Bridge) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

// raws returns the raw frames the sink got for a stream, decoded.
func raws(t *testing.T, sink *fakeSink, s streams.Stream) (hs []frame.Header, ps [][]byte) {
	t.Helper()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	dst := streams.Map{}.Addr(s, streams.Raw)
	for _, o := range sink.out {
		if o.dst != dst {
			continue
		}
		h, p, err := frame.Parse(o.data)
		if err != nil {
			t.Fatalf("bad frame to %v: %v", dst, err)
		}
		hs, ps = append(hs, h), append(ps, p)
	}
	return hs, ps
}

func kinds(hs []frame.Header) []frame.Kind {
	var ks []frame.Kind
	for _, h := range hs {
		ks = append(ks, h.Kind)
	}
	return ks
}

func TestHeartbeatsOnIdleStreams(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource([]kernel.Message{{Group: 1, Data: linkMsg(2, "a")}})
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr}, Heartbeat: 20 * time.Millisecond, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	waitFor(t, "heartbeats", func() bool { return b.Stats().Heartbeats >= 6 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []streams.Stream{link, addr} {
		hs, _ := raws(t, sink, s)
		var last uint64
		beats := 0
		for _, h := range hs {
			switch h.Kind {
			case frame.KindEvent:
				last = h.Seq
			case frame.KindHeartbeat:
				beats++
				if h.Seq != last {
					t.Errorf("%s: heartbeat seq %d, want the last sent, %d", s.Name, h.Seq, last)
				}
			}
		}
		if beats < 2 {
			t.Errorf("%s: %d heartbeats, kinds %v", s.Name, beats, kinds(hs))
		}
		if hs[len(hs)-1].Kind != frame.KindGoodbye {
			t.Errorf("%s: last frame %v, want goodbye", s.Name, hs[len(hs)-1].Kind)
		}
	}
}

func addrMsg(ifindex byte, last byte) []byte {
	body := []byte{unix.AF_INET, 24, 0, 0, ifindex, 0, 0, 0}
	body = append(body, 8, 0, unix.IFA_LOCAL, 0, 10, 0, 0, last)
	return testmsg.Nlmsg(unix.RTM_NEWADDR, body)
}

func TestOverrunThenResync(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	stats, _ := streams.Lookup("stats") // cannot be resynced
	src := newFakeSource()
	dump := &fakeDumper{tables: map[uint16][][]byte{
		unix.RTM_GETLINK: {linkMsg(1, "lo"), linkMsg(2, "eth0")},
		unix.RTM_GETADDR: {addrMsg(2, 1), addrMsg(2, 2), addrMsg(2, 3)},
	}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{
		Streams: []streams.Stream{link, addr, stats}, Encodings: []streams.Encoding{streams.Raw},
		NoHeartbeats: true, ResyncInterval: 50 * time.Millisecond, Logger: quiet,
	}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	src.push([]kernel.Message{{Group: 5, Data: addrMsg(2, 9)}}, nil)
	src.push(nil, kernel.ErrOverrun)
	waitFor(t, "a resync", func() bool { return b.Stats().Resyncs == 1 })
	// Two overruns within the rate limit: one announcement, one resync.
	t0 := time.Now()
	src.push(nil, kernel.ErrOverrun)
	src.push(nil, kernel.ErrOverrun)
	waitFor(t, "a second resync", func() bool { return b.Stats().Resyncs == 2 })
	if time.Since(t0) < 30*time.Millisecond {
		t.Errorf("second resync %v after the first, the limit is 50ms", time.Since(t0))
	}
	src.push([]kernel.Message{{Group: 5, Data: addrMsg(2, 4)}}, nil)
	waitFor(t, "the event after the resync", func() bool { return b.Stats().Events >= 2+2*5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Overruns != 2 || st.Resyncs != 2 {
		t.Errorf("stats %+v: want two overrun announcements and two resyncs", st)
	}

	hs, ps := raws(t, sink, addr)
	resync := []frame.Kind{frame.KindOverrun, frame.KindResyncBegin, frame.KindEvent, frame.KindEvent, frame.KindEvent, frame.KindResyncEnd}
	want := append(append(append([]frame.Kind{frame.KindEvent}, resync...), resync...), frame.KindEvent, frame.KindGoodbye)
	if got := kinds(hs); len(got) != len(want) {
		t.Fatalf("ipv4-ifaddr kinds %v, want %v", got, want)
	}
	for i, h := range hs {
		if h.Kind != want[i] {
			t.Fatalf("frame %d: kind %v, want %v (all: %v)", i, h.Kind, want[i], kinds(hs))
		}
		wantSeq := uint64(i + 1)
		if h.Kind == frame.KindGoodbye {
			wantSeq = uint64(i)
		}
		if h.Seq != wantSeq {
			t.Errorf("frame %d (%v): seq %d, want %d", i, h.Kind, h.Seq, wantSeq)
		}
		dumped := (i >= 3 && i <= 5) || (i >= 9 && i <= 11)
		if (h.Flags&frame.FlagDump != 0) != dumped {
			t.Errorf("frame %d: flags %v", i, h.Flags)
		}
		if dumped && !bytes.Equal(ps[i], addrMsg(2, byte((i-3)%6+1))) {
			t.Errorf("frame %d: dump payload %x", i, ps[i])
		}
	}
	lh, _ := raws(t, sink, link)
	if got := kinds(lh); len(got) != 11 || got[0] != frame.KindOverrun || got[1] != frame.KindResyncBegin || got[4] != frame.KindResyncEnd {
		t.Errorf("link kinds %v", got)
	}
	// A stream without a dump is told of the overrun, and nothing more.
	sh, _ := raws(t, sink, stats)
	if got := kinds(sh); len(got) != 3 || got[0] != frame.KindOverrun || got[1] != frame.KindOverrun || got[2] != frame.KindGoodbye {
		t.Errorf("stats kinds %v", got)
	}
}

func TestRequestsAreCoalescedAndRateLimited(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource()
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: {addrMsg(2, 1)}}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{
		Streams: []streams.Stream{addr}, Encodings: []streams.Encoding{streams.Raw},
		NoHeartbeats: true, ResyncInterval: 300 * time.Millisecond, Logger: quiet,
	}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	b.Request(addr.Group)
	waitFor(t, "the first resync", func() bool { return b.Stats().Resyncs == 1 })
	start := time.Now()
	for i := 0; i < 10; i++ {
		b.Request(0)
		b.Request(addr.Group)
	}
	b.Request(99) // not bridged: ignored
	waitFor(t, "the second resync", func() bool { return b.Stats().Resyncs == 2 })
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("second resync after %v, rate limit is 300ms", el)
	}
	// Kept: the sleep gives a wrongly scheduled third resync (due 300ms
	// after the second) time to happen. The test passes whatever the
	// sleep's real length, so no load can make it fail falsely; a shorter
	// sleep would only make it less sure to catch that bug. (Waiting for
	// the loop to block with no deadline armed would be exact, but with
	// heartbeats off the bridge never clears the past deadline a wake-up
	// set, and spins: see the report.)
	time.Sleep(400 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Resyncs != 2 || dump.calls != 2 {
		t.Errorf("21 requests made %d resyncs and %d dumps, want 2", st.Resyncs, dump.calls)
	}
}

func TestInterruptedDumpIsRepeated(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource()
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: {addrMsg(2, 1), addrMsg(2, 2)}}, interrupted: 2}
	sink := &fakeSink{}
	b, _ := NewWithSource(&Config{Streams: []streams.Stream{addr}, Encodings: []streams.Encoding{streams.Raw}, NoHeartbeats: true, Logger: quiet}, src, dump, sink)
	stop := running(t, b)
	b.Request(0)
	waitFor(t, "a resync", func() bool { return b.Stats().Resyncs == 1 })
	stop()
	hs, _ := raws(t, sink, addr)
	if dump.calls != 3 || len(hs) != 5 { // begin, 2 events, end, goodbye
		t.Fatalf("%d dump calls, frames %v: want 3 calls and only the complete answer sent", dump.calls, kinds(hs))
	}
}

func TestLargeMessageIsFragmented(t *testing.T) {
	route, _ := streams.Lookup("ipv4-route")
	big := testmsg.Nlmsg(unix.RTM_NEWROUTE, bytes.Repeat([]byte{0xab}, 150000))
	src := newFakeSource([]kernel.Message{{Group: 7, Data: big}, {Group: 7, Data: addrMsg(1, 1)}})
	sink := &fakeSink{}
	b, _ := NewWithSource(&Config{Streams: []streams.Stream{route}, NoHeartbeats: true, Logger: quiet}, src, nil, sink)
	stop := running(t, b)
	waitFor(t, "events", func() bool { return b.Stats().Events == 2 })
	stop()
	if b.Stats().Fragmented != 1 {
		t.Fatalf("stats %+v", b.Stats())
	}
	var raw, js frame.Reassembler
	var gotRaw, gotJSON []byte
	seqs := map[uint64]bool{}
	for _, o := range sink.out {
		if len(o.data) > frame.MaxDatagram {
			t.Fatalf("datagram of %d bytes", len(o.data))
		}
		if h, p, err := frame.Parse(o.data); err == nil {
			if h.Kind == frame.KindFragment {
				seqs[h.Seq] = true
				if m, ok, _, err := raw.Add(h, p, time.Now()); err != nil {
					t.Fatal(err)
				} else if ok {
					gotRaw = bytes.Clone(m)
				}
			}
			continue
		}
		f, err := frame.ParseJSON(o.data)
		if err != nil {
			t.Fatal(err)
		}
		if f.Fragment != nil {
			h, _ := f.Header()
			if m, ok, _, err := js.AddPiece(h, *f.Fragment, f.Data, time.Now()); err != nil {
				t.Fatal(err)
			} else if ok {
				gotJSON = bytes.Clone(m)
			}
		}
	}
	if !bytes.Equal(gotRaw, big) {
		t.Fatalf("raw fragments reassemble to %d bytes, want the %d-byte message", len(gotRaw), len(big))
	}
	if len(seqs) != 1 || !seqs[1] {
		t.Errorf("fragments carry seqs %v, want only the message's, 1", seqs)
	}
	f, err := frame.ParseJSON(gotJSON)
	if err != nil || f.Kind != "event" || f.Seq != 1 || len(f.Event) < 100000 {
		t.Fatalf("JSON fragments reassemble to %.200s: %v", gotJSON, err)
	}
}

// TestMessagesOverTheLimitsAreNotSent: receivers reassemble nothing over
// frame.MaxRawMessage and frame.MaxJSONMessage, so the bridge sends
// nothing larger: such a message is dropped (raw) or its JSON frame is
// (JSON receivers then see a gap), counted and logged.
func TestMessagesOverTheLimitsAreNotSent(t *testing.T) {
	if kernel.MaxDatagram > frame.MaxRawMessage {
		t.Fatalf("the kernel socket passes messages of %d bytes, receivers accept %d", kernel.MaxDatagram, frame.MaxRawMessage)
	}
	route, _ := streams.Lookup("ipv4-route")
	huge := testmsg.Nlmsg(unix.RTM_NEWROUTE, make([]byte, frame.MaxRawMessage))
	// Many empty attributes: each 4 bytes make about 70 of JSON.
	body := make([]byte, 8, 8+300000)
	for len(body) < cap(body) {
		body = append(body, 4, 0, 16, 0)
	}
	wordy := testmsg.Nlmsg(unix.RTM_NEWNEXTHOP, body)
	src := newFakeSource([]kernel.Message{{Group: 7, Data: huge}, {Group: 7, Data: wordy}, {Group: 7, Data: addrMsg(1, 1)}})
	sink := &fakeSink{}
	b, _ := NewWithSource(&Config{Streams: []streams.Stream{route}, NoHeartbeats: true, Logger: quiet}, src, nil, sink)
	stop := running(t, b)
	waitFor(t, "events", func() bool { return b.Stats().Events == 2 })
	stop()
	if st := b.Stats(); st.TooLarge != 1 || st.JSONTooLarge != 1 || st.Fragmented != 1 {
		t.Fatalf("stats %+v", st)
	}
	raw, js := map[uint64]int{}, map[uint64]int{}
	for _, o := range sink.out {
		if h, _, err := frame.Parse(o.data); err == nil {
			raw[h.Seq] += len(o.data)
			continue
		}
		k, seq := kindSeq(t, o.data)
		if k != frame.KindGoodbye {
			js[seq] += len(o.data)
		}
	}
	if len(raw) != 2 || raw[1] < len(wordy) || raw[2] == 0 {
		t.Errorf("raw frames by sequence number (bytes): %v, want #1 the %d-byte message, #2 the next", raw, len(wordy))
	}
	if len(js) != 1 || js[2] == 0 {
		t.Errorf("JSON frames by sequence number (bytes): %v, want only #2", js)
	}
}

func TestRunLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	for i := 0; i < 20; i++ {
		src := newFakeSource()
		b, _ := NewWithSource(&Config{Heartbeat: time.Millisecond, Logger: quiet}, src, &fakeDumper{}, &fakeSink{})
		stop := running(t, b)
		b.Request(0)
		waitFor(t, "the requested resync", func() bool { return b.Stats().Resyncs >= 1 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	// A goroutine's end sends no notice; goleak looks until its own
	// deadline.
	goleak.VerifyNone(t, before)
}

func TestDumpTableMatchesCatalog(t *testing.T) {
	for _, s := range streams.Default() {
		if _, ok := kernel.DumpFor(s.Group); ok != s.Resync {
			t.Errorf("%s: catalog says resync=%v, dump table %v", s.Name, s.Resync, ok)
		}
	}
}
