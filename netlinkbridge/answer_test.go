package netlinkbridge

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

// sentTo returns what the sink sent to dst.
func sentTo(sink *fakeSink, dst netip.AddrPort) [][]byte {
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var out [][]byte
	for _, o := range sink.out {
		if o.dst == dst {
			out = append(out, o.data)
		}
	}
	return out
}

// TestRequestIsAnsweredToItsSenderAlone: a request is answered unicast to
// the address and port it came from: resync-begin, the dump, resync-end
// with the count, all flagged as an answer and numbered with the
// stream's last number; the stream's receivers see nothing of it, and
// the stream's numbering goes on as if it had not happened.
func TestRequestIsAnsweredToItsSenderAlone(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource([]kernel.Message{{Group: addr.Group, Data: addrMsg(2, 9)}})
	table := [][]byte{addrMsg(2, 1), addrMsg(2, 2), addrMsg(2, 3)}
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: table}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{addr}, NoHeartbeats: true, Logger: quiet}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	waitFor(t, "the first event", func() bool { return b.Stats().Events == 1 })
	requester := netip.MustParseAddrPort("127.0.0.1:40000")
	jsonRequester := netip.MustParseAddrPort("127.0.0.1:40001")
	// Both requests wait while the loop is parked, so that it takes them
	// in one round: that one dump serves both is what is tested.
	release := src.hold()
	waitFor(t, "the loop parked in its read", src.isParked)
	if !b.Answer(requester, addr.Group, false) || !b.Answer(jsonRequester, 0, true) {
		t.Fatal("requests refused")
	}
	release()
	waitFor(t, "the answers", func() bool { return b.Stats().Answers == 2 })
	src.push([]kernel.Message{{Group: addr.Group, Data: addrMsg(2, 8)}}, nil)
	waitFor(t, "the next event", func() bool { return b.Stats().Events == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Raw, to the requester.
	got := sentTo(sink, requester)
	if len(got) != 5 {
		t.Fatalf("%d datagrams to the requester, want begin, 3 entries, end", len(got))
	}
	for i, d := range got {
		h, p, err := frame.Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		want := frame.KindEvent
		switch i {
		case 0:
			want = frame.KindResyncBegin
		case 4:
			want = frame.KindResyncEnd
		}
		if h.Kind != want || h.Flags&frame.FlagAnswer == 0 || h.Seq != 1 || h.Epoch != b.Epoch() {
			t.Errorf("frame %d: %+v, want %v flagged answer with seq 1", i, h, want)
		}
		if want == frame.KindEvent && (h.Flags&frame.FlagDump == 0 || !bytes.Equal(p, table[i-1])) {
			t.Errorf("entry %d: flags %v payload %x", i, h.Flags, p)
		}
		if want == frame.KindResyncEnd && (len(p) != frame.AnswerEndLen || binary.BigEndian.Uint64(p) != 3) {
			t.Errorf("end's payload %x, want the count 3", p)
		}
	}
	// JSON, to the other requester.
	got = sentTo(sink, jsonRequester)
	if len(got) != 5 {
		t.Fatalf("%d datagrams to the JSON requester", len(got))
	}
	end, err := frame.ParseJSON(got[4])
	if err != nil || end.Kind != "resync-end" || !end.Answer || end.Count == nil || *end.Count != 3 || end.Seq != 1 {
		t.Fatalf("JSON end %s: %v", got[4], err)
	}
	// The stream: event #1, event #2, goodbye; no resync.
	hs, _ := raws(t, sink, addr)
	if ks := kinds(hs); len(ks) != 3 || ks[0] != frame.KindEvent || ks[1] != frame.KindEvent || hs[1].Seq != 2 || ks[2] != frame.KindGoodbye {
		t.Errorf("the stream's frames: %v", ks)
	}
	if st := b.Stats(); st.Resyncs != 0 || st.Requests != 2 || dump.calls != 1 {
		t.Errorf("stats %+v, %d dumps: want one dump for both answers", st, dump.calls)
	}
}

// TestRequestsOverTheBucketsAreRefused: a sender gets its burst and no
// more; many senders together get the shared burst; requests from off
// the host, or for streams not bridged, are not taken. Refusals are
// counted.
func TestRequestsOverTheBucketsAreRefused(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: {addrMsg(2, 1)}}}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{addr}, NoHeartbeats: true, Logger: quiet,
		RequestBurst: 3, RequestEvery: time.Hour, TotalRequestBurst: 5, TotalRequestEvery: time.Hour}, newFakeSource(), dump, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for i := 0; i < 1000; i++ {
		if b.Answer(netip.MustParseAddrPort("127.0.0.1:40000"), addr.Group, false) {
			taken++
		}
	}
	for p := uint16(0); p < 1000; p++ {
		if b.Answer(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 41000+p), addr.Group, false) {
			taken++
		}
	}
	if taken != 5 {
		t.Errorf("%d requests taken, want 3 from the first sender and 2 more of the shared 5", taken)
	}
	if st := b.Stats(); st.RequestsRefused != 1995 || st.Requests != 5 {
		t.Errorf("stats %+v", st)
	}
	if b.Answer(netip.MustParseAddrPort("192.0.2.1:40000"), addr.Group, false) || b.Answer(netip.MustParseAddrPort("127.0.0.1:40002"), 99, false) {
		t.Error("a request from off the host, or for a stream not bridged, was taken")
	}
	if st := b.Stats(); st.BadRequests != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestAnswerIsPacedAndEventsGoOn: an answer is sent at most AnswerRate
// datagrams a second, in chunks between reads; a kernel event read
// meanwhile goes on the stream at once, with the next number, while the
// answer's frames keep the number of its dump.
func TestAnswerIsPacedAndEventsGoOn(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	src := newFakeSource()
	var table [][]byte
	for i := 0; i < 600; i++ {
		table = append(table, addrMsg(byte(i>>8), byte(i)))
	}
	dump := &fakeDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: table}}
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{addr}, Encodings: []streams.Encoding{streams.Raw},
		NoHeartbeats: true, AnswerRate: 1000, Logger: quiet}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	requester := netip.MustParseAddrPort("127.0.0.1:40000")
	start := time.Now()
	b.Answer(requester, addr.Group, false)
	waitFor(t, "the first chunk", func() bool { return len(sentTo(sink, requester)) > 0 })
	src.push([]kernel.Message{{Group: addr.Group, Data: addrMsg(9, 9)}}, nil)
	waitFor(t, "the event", func() bool { return b.Stats().Events == 1 })
	evAt := len(sentTo(sink, requester))
	waitFor(t, "the answer", func() bool { return b.Stats().Answers == 1 })
	took := time.Since(start)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// 600 entries at 1,000 a second in chunks of 256: the last chunk
	// is due 512 ms after the first.
	if took < 500*time.Millisecond {
		t.Errorf("answer of 600 entries at 1,000 a second sent in %v", took)
	}
	if evAt >= 1+len(table) {
		t.Errorf("the event waited for the whole answer (%d of its datagrams sent before)", evAt)
	}
	got := sentTo(sink, requester)
	if len(got) != len(table)+2 {
		t.Fatalf("%d datagrams of the answer, want %d", len(got), len(table)+2)
	}
	for _, d := range got {
		if h, _, err := frame.Parse(d); err != nil || h.Seq != 0 || h.Flags&frame.FlagAnswer == 0 {
			t.Fatalf("answer frame %+v %v: want the number of the dump, 0", h, err)
		}
	}
	// Each frame is stamped as it is sent: an answer paced over more than
	// MaxAge would otherwise reach receivers stale, and be refused.
	first, _, _ := frame.Parse(got[0])
	last, _, _ := frame.Parse(got[len(got)-1])
	if d := time.Duration(last.Time - first.Time); d < 400*time.Millisecond {
		t.Errorf("the answer's last frame is stamped %v after its first, sent over %v: want send times", d, took)
	}
	if hs, _ := raws(t, sink, addr); len(hs) != 2 || hs[0].Kind != frame.KindEvent || hs[0].Seq != 1 {
		t.Errorf("the stream's frames: %+v", hs)
	}
}

// reusingDumper answers every dump in one buffer, as the kernel's dump
// socket does: a dump's messages are overwritten by the next. After the
// first dump it answers from later, the tables as they changed.
type reusingDumper struct {
	mu            sync.Mutex
	tables, later map[uint16][][]byte
	buf           []byte
	calls         int
}

func (d *reusingDumper) Dump(req kernel.DumpRequest) ([][]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	d.buf = d.buf[:0]
	tables := d.tables
	if d.calls > 1 {
		tables = d.later
	}
	var msgs [][]byte
	for _, m := range tables[req.Type] {
		start := len(d.buf)
		d.buf = append(d.buf, m...)
		msgs = append(msgs, d.buf[start:len(d.buf):len(d.buf)])
	}
	return msgs, false, nil
}

func (d *reusingDumper) Close() error { return nil }

// TestAnswerOutlivesAResync: a multicast resync (after an overrun) in the
// middle of an answer dumps again into the dump socket's buffer; the rest
// of the answer is still the table it began with.
func TestAnswerOutlivesAResync(t *testing.T) {
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	var addrs, later, links [][]byte
	for i := 0; i < 600; i++ {
		addrs = append(addrs, addrMsg(byte(i>>8), byte(i)))
		later = append(later, addrMsg(9, byte(i)))
		links = append(links, linkMsg(uint32(i), "xxxxxxxxxxxxxxxx"))
	}
	dump := &reusingDumper{tables: map[uint16][][]byte{unix.RTM_GETADDR: addrs},
		later: map[uint16][][]byte{unix.RTM_GETADDR: later, unix.RTM_GETLINK: links}, buf: make([]byte, 0, 1<<20)}
	src := newFakeSource()
	sink := &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link, addr}, Encodings: []streams.Encoding{streams.Raw},
		NoHeartbeats: true, AnswerRate: 1000, Logger: quiet}, src, dump, sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	requester := netip.MustParseAddrPort("127.0.0.1:40000")
	b.Answer(requester, addr.Group, false)
	waitFor(t, "the first chunk", func() bool { return len(sentTo(sink, requester)) > 0 })
	src.push(nil, kernel.ErrOverrun)
	waitFor(t, "the multicast resync", func() bool { return b.Stats().Resyncs == 1 })
	waitFor(t, "the answer", func() bool { return b.Stats().Answers == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := sentTo(sink, requester)
	if len(got) != len(addrs)+2 {
		t.Fatalf("%d datagrams of the answer", len(got))
	}
	for i, d := range got[1 : len(got)-1] {
		if _, p, err := frame.Parse(d); err != nil || !bytes.Equal(p, addrs[i]) {
			t.Fatalf("entry %d of the answer: %x, want %x (%v)", i, p, addrs[i], err)
		}
	}
}
