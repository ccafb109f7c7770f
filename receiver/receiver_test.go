package receiver

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

func TestTracker(t *testing.T) {
	const e1, e2 = 0x1111, 0x2222 // e2 started later
	const far = 1 << 62
	type in struct {
		kind  frame.Kind
		epoch uint64
		seq   uint64
		age   time.Duration // how much older than the receiver's clock the frame's time is
		at    time.Duration // the receiver's clock, from the start
	}
	ev := func(seq uint64) in { return in{kind: frame.KindEvent, epoch: e1, seq: seq} }
	ev2 := func(seq uint64) in { return in{kind: frame.KindEvent, epoch: e2, seq: seq} }
	hb := func(seq uint64) in { return in{kind: frame.KindHeartbeat, epoch: e1, seq: seq} }
	aged := func(x in, age time.Duration) in { x.age = age; return x }
	at := func(x in, at time.Duration) in { x.at = at; return x }
	for _, tc := range []struct {
		name string
		in   []in
		want string // notices and deliveries, in order
	}{
		{"in order", []in{ev(5), ev(6), ev(7)}, "5 6 7"},
		{"gap", []in{ev(1), ev(2), ev(5)}, "1 2 gap:3+2 5"},
		{"gap as wide as the window", []in{ev(1), ev(65)}, "1 gap:2+63 65"},
		{"duplicate", []in{ev(1), ev(2), ev(2)}, "1 2 duplicate:2"},
		{"reordered", []in{ev(1), ev(3), ev(2), ev(2)}, "1 gap:2+1 3 reordered:2 2 duplicate:2"},
		{"too old to tell", []in{ev(1), ev(60), ev(120), ev(20)}, "1 gap:2+58 60 gap:61+59 120 duplicate:20"},
		{"heartbeat reveals a lost tail", []in{ev(1), hb(1), hb(3), ev(4)}, "1 1 gap:2+2 3 4"},
		{"late frame after a heartbeat gap", []in{ev(1), hb(2), ev(2)}, "1 gap:2+1 2 reordered:2 2"},
		{"control kinds take numbers", []in{ev(1), {kind: frame.KindOverrun, epoch: e1, seq: 2},
			{kind: frame.KindResyncBegin, epoch: e1, seq: 3}, ev(4), {kind: frame.KindResyncEnd, epoch: e1, seq: 5}},
			"1 2 3 4 5"},

		// Restarts.
		{"restart after a goodbye", []in{ev(7), {kind: frame.KindGoodbye, epoch: e1, seq: 7}, ev2(1), ev2(2)},
			"7 7 restart:2222<-1111 1 2"},
		// A receiver started while the bridge stopped: its goodbye came
		// first.
		{"restart after a goodbye met first", []in{{kind: frame.KindGoodbye, epoch: e1, seq: 7}, ev2(1), ev2(2)},
			"7 restart:2222<-1111 1 2"},
		{"restart without a goodbye: the first frame is held", []in{ev(7), ev(8), ev2(1), ev2(2)},
			"7 8 restart:2222<-1111 gap:1+1 2"},
		{"restart seen first in heartbeats", []in{ev(7), {kind: frame.KindHeartbeat, epoch: e2, seq: 3}, {kind: frame.KindHeartbeat, epoch: e2, seq: 3}},
			"7 restart:2222<-1111 gap:1+3 3"},
		// A bridge restarting after a panic (netlinkbridge, isolate.go)
		// announces its new epoch with a heartbeat numbered 0: the
		// restart costs no event.
		{"restart announced by a heartbeat numbered 0", []in{ev(7), {kind: frame.KindHeartbeat, epoch: e2, seq: 0}, ev2(1), ev2(2)},
			"7 restart:2222<-1111 1 2"},
		{"restart announced, then idle", []in{ev(7), {kind: frame.KindHeartbeat, epoch: e2, seq: 0}, {kind: frame.KindHeartbeat, epoch: e2, seq: 0}, ev2(1)},
			"7 restart:2222<-1111 0 1"},
		{"a new epoch not continued", []in{ev(7), ev2(1), ev(8)}, "7 rejected-unconfirmed:1 8"},
		{"a new epoch with a stale time", []in{ev(7), aged(ev2(1), 6*time.Second), aged(ev2(2), 6*time.Second), ev(8)},
			"7 rejected-stale:1 rejected-stale:2 8"},
		{"an old epoch replayed", []in{ev2(5), ev2(6), ev(7), ev(8), ev2(7)},
			"5 6 rejected-old-epoch:7 rejected-old-epoch:8 7"},
		{"an older epoch after a silence: the clock was set back", []in{ev2(5), ev2(6), at(ev(1), 6*time.Second), at(ev(2), 6*time.Second)},
			"5 6 restart:1111<-2222 gap:1+1 2"},
		{"a forged goodbye ends nothing", []in{ev(1), {kind: frame.KindGoodbye, epoch: e1, seq: 1}, ev(2), ev2(1), ev(3)},
			"1 1 2 rejected-unconfirmed:1 3"},

		// Jumps.
		{"a jump to 2^62", []in{ev(1), ev(2), ev(far), ev(3), ev(4)}, "1 2 rejected-unconfirmed:4611686018427387904 3 4"},
		{"a far jump continued: a real loss", []in{ev(1), ev(1001), ev(1002)}, "1 gap:2+1000 1002"},
		{"a heartbeat at 2^62", []in{ev(1), hb(far), hb(1), ev(2)}, "1 rejected-unconfirmed:4611686018427387904 1 2"},
		{"a far heartbeat continued", []in{ev(1), hb(500), hb(500), ev(501)}, "1 gap:2+499 500 501"},
		{"two far jumps: the second one is held", []in{ev(1), ev(1000), ev(5000), ev(5001)},
			"1 rejected-unconfirmed:1000 gap:2+4999 5001"},

		// Frames the bridge's own frames contradict.
		{"a forged next frame, disowned by the heartbeat", []in{ev(1), ev(2), hb(1), ev(2)}, "1 2 disowned:2+1 1 2"},
		{"a heartbeat far behind", []in{ev(1), ev(60), ev(120), hb(10), ev(121)},
			"1 gap:2+58 60 gap:61+59 120 rejected-behind:10 121"},
		{"a forged first frame far ahead", []in{ev(far), ev(5), ev(6)},
			"4611686018427387904 disowned:4611686018427387904+1 gap:5+1 6"},
		{"a forged first frame with a newer epoch", []in{ev2(1), ev(5), ev(6)}, "1 disowned:1+1 gap:5+1 6"},

		// Clocks.
		{"a time in the future", []in{ev(1), aged(ev(2), -2*time.Second), ev(2)}, "1 rejected-future:2 2"},
		{"a stale first frame", []in{aged(ev(1), 6*time.Second), ev(2)}, "rejected-stale:1 2"},
		{"a late frame of the epoch is not stale", []in{ev(1), aged(ev(2), time.Hour)}, "1 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr tracker
			var got []string
			start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano()
			for _, x := range tc.in {
				now := start + int64(x.at)
				h := frame.Header{Kind: x.kind, Epoch: x.epoch, Seq: x.seq, Time: now - int64(x.age)}
				ok := tr.observe(&h, now, func(n Notice) {
					switch n.Kind {
					case Gap, Disowned:
						got = append(got, fmt.Sprintf("%s:%d+%d", n.Kind, n.From, n.Count))
					case Restart:
						got = append(got, fmt.Sprintf("restart:%x<-%x", n.Epoch, n.PrevEpoch))
					case Rejected:
						got = append(got, fmt.Sprintf("rejected-%s:%d", n.Reason, n.From))
					default:
						got = append(got, fmt.Sprintf("%s:%d", n.Kind, n.From))
					}
				})
				if ok {
					got = append(got, fmt.Sprint(x.seq))
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got  %s\nwant %s", g, tc.want)
			}
		})
	}
}

// testMap picks a random address block, so that parallel runs do not meet.
func testMap() streams.Map {
	return streams.Map{
		Base: netip.AddrFrom4([4]byte{239, 254, byte(rand.IntN(250)), 0}),
		Port: uint16(20000 + 2*rand.IntN(10000)),
	}
}

type wire struct {
	t   *testing.T
	snd *mcast.Sender
	m   streams.Map
}

func newWire(t *testing.T, m streams.Map) *wire {
	snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	return &wire{t, snd, m}
}

func (w *wire) send(s streams.Stream, enc streams.Encoding, b []byte) {
	w.t.Helper()
	if err := w.snd.Send(b, w.m.Addr(s, enc)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wire) frame(s streams.Stream, k frame.Kind, epoch, seq uint64, payload []byte) {
	w.send(s, streams.Raw, frame.Append(nil, frame.Header{Kind: k, Family: s.Family, Group: s.Group, Epoch: epoch, Seq: seq, Time: time.Now().UnixNano()}, payload))
}

func newTestReceiver(t *testing.T, cfg *Config) *Receiver {
	t.Helper()
	if cfg.Mcast == nil {
		cfg.Mcast = &mcast.ReceiverConfig{AnySource: true} // the test sends unprivileged
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// collect reads until stop says so or 5 s pass, describing each event.
func collect(t *testing.T, r *Receiver, stop func([]string) bool) []string {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	var out []string
	evs := make([]Event, 4) // small, so queued events carry over calls
	for !stop(out) {
		n, err := r.ReadBatch(evs)
		if err != nil {
			t.Fatalf("after %q: %v", out, err)
		}
		for _, ev := range evs[:n] {
			if ev.IsNotice() {
				out = append(out, ev.Notice.Kind.String())
				continue
			}
			out = append(out, fmt.Sprintf("%s#%d:%s", ev.Header.Kind, ev.Header.Seq, ev.Payload))
		}
	}
	return out
}

func TestReceiverReportsWhatHappened(t *testing.T) {
	m := testMap()
	link, _ := streams.Lookup("link")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, Silence: 300 * time.Millisecond})
	w := newWire(t, m)
	const e1, e2 = 0xaaaa, 0xbbbb
	big := strings.Repeat("x", 150000)

	w.frame(link, frame.KindEvent, e1, 1, []byte("one"))
	w.frame(link, frame.KindEvent, e1, 2, []byte("two"))
	w.send(link, streams.Raw, []byte("garbage"))                                                           // malformed
	w.send(link, streams.Raw, frame.Append(nil, frame.Header{Kind: 99, Group: 1, Epoch: e1, Seq: 3}, nil)) // unknown kind
	w.send(link, streams.Raw, frame.Append(nil, frame.Header{Kind: 1, Group: 5, Epoch: e1, Seq: 3}, nil))  // another stream's
	w.frame(link, frame.KindEvent, e1, 4, []byte("four"))
	w.frame(link, frame.KindEvent, e1, 4, []byte("four"))
	w.frame(link, frame.KindEvent, e1, 3, []byte("three"))
	frame.Split([]byte(big), frame.MaxPiece, func(f frame.FragmentHeader, piece []byte) {
		var fh [frame.FragmentHeaderLen]byte
		f.Put(fh[:])
		w.frame(link, frame.KindFragment, e1, 5, append(fh[:], piece...))
	})
	w.frame(link, frame.KindHeartbeat, e1, 7, nil)
	w.frame(link, frame.KindGoodbye, e1, 7, nil)
	w.frame(link, frame.KindEvent, e2, 1, []byte("new"))

	got := collect(t, r, func(out []string) bool { return len(out) > 0 && out[len(out)-1] == "silent" })
	for i := range got {
		if len(got[i]) > 40 {
			got[i] = got[i][:12] + fmt.Sprintf("...(%d)", len(got[i]))
		}
	}
	want := []string{
		"event#1:one", "event#2:two", "gap", "event#4:four", "duplicate", "reordered", "event#3:three",
		fmt.Sprintf("event#5:xxxx...(%d)", len("event#5:")+len(big)), "gap", "heartbeat#7:", "goodbye#7:",
		"restart", "event#1:new", "silent",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n  %q\nwant\n  %q", got, want)
	}
	st := r.Stats()
	if st.Malformed != 1 || st.UnknownKind != 1 || st.Mismatch != 1 || st.Missing != 3 || st.Duplicates != 1 || st.Reassembled != 1 {
		t.Errorf("stats %+v", st)
	}
	if s := r.Silence(link); s < 300*time.Millisecond {
		t.Errorf("Silence = %v after a Silent notice", s)
	}
	// The stream's own counters tell the same.
	if len(st.Streams) != 1 {
		t.Fatalf("per-stream stats %+v, want link's alone", st.Streams)
	}
	ls := st.Streams[0]
	var notices [UpstreamDrops + 1]uint64
	notices[Gap], notices[Duplicate], notices[Reordered], notices[Restart], notices[Silent] = 2, 1, 1, 1, 1
	if ls.Stream.Name != "link" || !ls.Joined || ls.Frames != 8 || ls.Events != 6 || ls.Missing != 3 || ls.Notices != notices ||
		ls.SocketDrops != 0 || ls.Rejected != [Behind + 1]uint64{} || time.Since(ls.Heard) < 300*time.Millisecond {
		t.Errorf("link's stats %+v", ls)
	}
	if err := r.Leave(link); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); len(st.Streams) != 1 || st.Streams[0].Joined || st.Streams[0].Frames != 8 {
		t.Errorf("after Leave: %+v", st.Streams)
	}
}

func TestIncompleteFragmentsTimeOut(t *testing.T) {
	m := testMap()
	link, _ := streams.Lookup("link")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, NoSilentNotices: true, FragmentTimeout: 100 * time.Millisecond})
	w := newWire(t, m)
	w.frame(link, frame.KindEvent, 1, 1, []byte("a"))
	n := 0
	frame.Split(make([]byte, 3*frame.MaxPiece), frame.MaxPiece, func(f frame.FragmentHeader, piece []byte) {
		if n++; n == 2 {
			return // lost
		}
		var fh [frame.FragmentHeaderLen]byte
		f.Put(fh[:])
		w.frame(link, frame.KindFragment, 1, 2, append(fh[:], piece...))
	})
	got := collect(t, r, func(out []string) bool { return len(out) == 2 })
	if !slices.Equal(got, []string{"event#1:a", "fragment-lost"}) {
		t.Fatalf("got %q", got)
	}
	w.frame(link, frame.KindEvent, 1, 3, []byte("c"))
	got = collect(t, r, func(out []string) bool { return len(out) == 2 })
	if !slices.Equal(got, []string{"gap", "event#3:c"}) {
		t.Fatalf("then %q", got)
	}
}

func TestJSONEncodingFragmentsAndNotices(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{addr}, Map: m, Encoding: streams.JSON, NoSilentNotices: true})
	w := newWire(t, m)
	h := frame.Header{Kind: frame.KindEvent, Family: 0, Group: addr.Group, Epoch: 9, Seq: 1, Time: time.Now().UnixNano()}
	w.send(addr, streams.JSON, frame.AppendJSON(nil, h, addr.Name, "small", nil))
	h.Seq = 3
	inner := frame.AppendJSON(nil, h, addr.Name, strings.Repeat("s", 100000), nil)
	frame.Split(inner, frame.JSONMaxPiece, func(f frame.FragmentHeader, piece []byte) {
		w.send(addr, streams.JSON, frame.AppendJSONFragment(nil, h, addr.Name, f, piece))
	})
	w.send(addr, streams.JSON, []byte(`{"v":1,"kind":"event"`)) // malformed
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []Event
	evs := make([]Event, 8)
	for len(got) < 3 {
		n, err := r.ReadBatch(evs)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs[:n]...)
	}
	if got[0].JSON.Summary != "small" || got[1].Notice.Kind != Gap || got[2].JSON == nil || len(got[2].JSON.Summary) != 100000 || got[2].Header.Seq != 3 {
		t.Fatalf("got %+v", got)
	}
}

func TestRequestResyncReachesTheControlGroup(t *testing.T) {
	m := testMap()
	ctl, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if err := ctl.Join(m.Control()); err != nil {
		t.Fatal(err)
	}
	addr, _ := streams.Lookup("ipv4-ifaddr")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{addr}, Map: m})
	if err := r.RequestResync(addr); err != nil {
		t.Fatal(err)
	}
	if err := r.RequestResync(); err != nil {
		t.Fatal(err)
	}
	ctl.SetReadDeadline(time.Now().Add(3 * time.Second))
	ds := make([]mcast.Datagram, 4)
	var groups []uint32
	for len(groups) < 2 {
		n, err := ctl.ReadBatch(ds)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds[:n] {
			h, _, err := frame.Parse(d.Data)
			if err != nil || h.Kind != frame.KindRequest {
				t.Fatalf("not a request: %v %v", h, err)
			}
			groups = append(groups, h.Group)
		}
	}
	if !slices.Equal(groups, []uint32{addr.Group, 0}) {
		t.Fatalf("requests for groups %v", groups)
	}
}

func TestCloseUnblocksReadAndLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	for i := 0; i < 10; i++ {
		r, err := New(&Config{Map: testMap(), Insecure: true}) // whatever the host's port start
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		tid := make(chan int, 1)
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine
			tid <- unix.Gettid()
			_, err := r.ReadBatch(make([]Event, 4))
			done <- err
		}()
		testenv.WaitInEpollWait(t, <-tid) // Close wakes a reader that waits
		r.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("ReadBatch returned nil after Close")
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Close did not unblock ReadBatch")
		}
	}
	// A goroutine's end sends no notice; goleak looks until its own
	// deadline.
	goleak.VerifyNone(t, before)
}

func TestSocketDropsAreReported(t *testing.T) {
	m := testMap()
	link, _ := streams.Lookup("link")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, NoSilentNotices: true,
		Mcast: &mcast.ReceiverConfig{AnySource: true, ReadBuffer: 4096}})
	w := newWire(t, m)
	// Far more than a 4 KiB buffer holds, while nobody reads.
	for seq := uint64(1); seq <= 300; seq++ {
		w.frame(link, frame.KindEvent, 7, seq, make([]byte, 200))
	}
	r.SetReadDeadline(time.Now().Add(3 * time.Second))
	evs := make([]Event, 64)
	var drops, missing uint64
	// The kernel reports drops with the next datagram queued after them:
	// the heartbeat, sent once the buffer has room again. Far ahead of
	// what was read, it is held until the next heartbeat, a second later
	// from a bridge, continues it.
	sent := false
	for {
		if !sent && r.Stats().Mcast.Received > 0 {
			w.frame(link, frame.KindHeartbeat, 7, 300, nil)
			w.frame(link, frame.KindHeartbeat, 7, 300, nil)
			sent = true
		}
		n, err := r.ReadBatch(evs)
		if err != nil {
			t.Fatal(err)
		}
		done := false
		for _, ev := range evs[:n] {
			switch {
			case ev.Notice.Kind == SocketDrops:
				drops += ev.Notice.Count
			case ev.Notice.Kind == Gap:
				missing += ev.Notice.Count
			case ev.Header.Kind == frame.KindHeartbeat:
				done = true
			}
		}
		if done {
			break
		}
	}
	if drops == 0 || r.Stats().Mcast.KernelDrops != drops {
		t.Fatalf("socket drops reported %d, kernel counted %d", drops, r.Stats().Mcast.KernelDrops)
	}
	// Every frame the kernel dropped after the first one we got is a gap
	// (drops before it are not: the first frame is the baseline).
	if missing == 0 || missing > drops {
		t.Errorf("gaps of %d frames for %d socket drops", missing, drops)
	}
}

// TestReadBatchSetsEveryField: decode builds an event field by field in the
// caller's slice, over whatever the slot held before. Nothing of that may
// show through.
func TestReadBatchSetsEveryField(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{addr}, Map: m, NoSilentNotices: true})
	w := newWire(t, m)
	w.frame(addr, frame.KindEvent, 7, 1, []byte("payload"))
	link, _ := streams.Lookup("link")
	stale := Event{Stream: link, Encoding: streams.JSON, Header: frame.Header{Kind: frame.KindGoodbye, Seq: 99},
		Payload: []byte("stale"), JSON: &frame.JSONFrame{}, Source: netip.MustParseAddrPort("10.0.0.1:1"),
		Notice: Notice{Kind: Gap, Count: 3}}
	evs := []Event{stale, stale}
	n, err := r.ReadBatch(evs)
	if err != nil || n != 1 {
		t.Fatalf("ReadBatch: %d, %v", n, err)
	}
	got := evs[0]
	if got.Stream.Name != addr.Name || got.Encoding != streams.Raw || got.Header.Kind != frame.KindEvent ||
		got.Header.Epoch != 7 || got.Header.Seq != 1 || string(got.Payload) != "payload" || got.JSON != nil ||
		got.Source.Addr() != netip.MustParseAddr("127.0.0.1") || got.IsNotice() {
		t.Fatalf("event %+v\nshows the stale slot's fields", got)
	}
	// Every field is checked above: a new one must be set by decode, and
	// checked here.
	if nf := reflect.TypeOf(Event{}).NumField(); nf != 7 {
		t.Fatalf("Event has %d fields, this test knows 7: set the new ones in decode and check them here", nf)
	}
}

// The timers visit exactly the joined streams: a stream left is silent
// without a notice, a stream joined twice is reported once.
func TestTimersVisitJoinedStreams(t *testing.T) {
	m := testMap()
	var ss []streams.Stream
	for _, name := range []string{"link", "ipv4-ifaddr", "neigh"} {
		s, _ := streams.Lookup(name)
		ss = append(ss, s)
	}
	r := newTestReceiver(t, &Config{Streams: ss, Map: m, Silence: 100 * time.Millisecond})
	if err := r.Leave(ss[1]); err != nil {
		t.Fatal(err)
	}
	if err := r.Join(ss[0]); err != nil { // a second time: nothing changes
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
	silent := map[string]int{}
	evs := make([]Event, 4)
	for {
		n, err := r.ReadBatch(evs)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs[:n] {
			if ev.IsNotice() && ev.Notice.Kind == Silent {
				silent[ev.Stream.Name]++
			}
		}
	}
	if want := map[string]int{"link": 1, "neigh": 1}; !maps.Equal(silent, want) {
		t.Errorf("Silent notices %v, want %v", silent, want)
	}
}

// Heard is closed once a frame came on every stream joined, a heartbeat
// as well as an event, and a stream left is no longer waited for.
func TestHeardWhenEveryStreamSpoke(t *testing.T) {
	m := testMap()
	link, _ := streams.Lookup("link")
	addr4, _ := streams.Lookup("ipv4-ifaddr")
	route4, _ := streams.Lookup("ipv4-route")
	r := newTestReceiver(t, &Config{Map: m, Streams: []streams.Stream{link, addr4, route4}, NoOwnerCheck: true})
	w := newWire(t, m)
	heard := func() bool {
		select {
		case <-r.Heard():
			return true
		default:
			return false
		}
	}

	w.frame(link, frame.KindHeartbeat, 7, 0, nil)
	w.frame(addr4, frame.KindEvent, 7, 1, []byte("a"))
	collect(t, r, func(out []string) bool { return slices.Contains(out, "event#1:a") }) // sent after the heartbeat, from one socket
	if heard() {
		t.Fatal("Heard closed with no frame on ipv4-route yet")
	}
	if err := r.Leave(route4); err != nil {
		t.Fatal(err)
	}
	if !heard() {
		t.Fatal("Heard still open with every stream left heard from")
	}
}
