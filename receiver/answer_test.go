package receiver

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// control joins the test map's control group, where requests go.
func control(t *testing.T, m streams.Map) *mcast.Receiver {
	t.Helper()
	ctl, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := ctl.Join(m.Control()); err != nil {
		t.Fatal(err)
	}
	return ctl
}

// nextRequest waits for a request on ctl and returns its header and
// where it came from.
func nextRequest(t *testing.T, ctl *mcast.Receiver) (frame.Header, netip.AddrPort) {
	t.Helper()
	ds := make([]mcast.Datagram, 1)
	if _, err := ctl.ReadBatchUntil(ds, time.Now().Add(3*time.Second)); err != nil {
		t.Fatalf("no request: %v", err)
	}
	h, _, err := frame.Parse(ds[0].Data)
	if err != nil || h.Kind != frame.KindRequest {
		t.Fatalf("not a request: %+v %v", h, err)
	}
	return h, ds[0].Source
}

// answerFrame is one raw frame of an answer for s.
func answerFrame(s streams.Stream, k frame.Kind, flags frame.Flags, epoch, seq uint64, payload []byte) []byte {
	h := frame.Header{Kind: k, Flags: flags | frame.FlagAnswer, Family: s.Family, Group: s.Group, Epoch: epoch, Seq: seq, Time: time.Now().UnixNano()}
	return frame.Append(nil, h, payload)
}

func countPayload(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// TestReceiverDeliversAnswers: an answer to our request, sent to the
// request socket, is delivered as the stream's resync-begin, dump events
// and resync-end, marked FlagAnswer and carrying the stream's number; an
// answer that arrives incomplete is an AnswerLost notice instead of its
// resync-end; anything else on that socket is dropped and counted.
func TestReceiverDeliversAnswers(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	ctl := control(t, m)
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{addr}, Map: m})
	if err := r.RequestResync(addr); err != nil {
		t.Fatal(err)
	}
	h, at := nextRequest(t, ctl)
	if h.Group != addr.Group || h.Flags&frame.FlagJSON != 0 {
		t.Fatalf("raw receiver's request: %+v", h)
	}
	w := newWire(t, m)
	send := func(b []byte) {
		t.Helper()
		if err := w.snd.Send(b, at); err != nil {
			t.Fatal(err)
		}
	}
	const epoch = 7
	send(answerFrame(addr, frame.KindResyncBegin, 0, epoch, 40, nil))
	send(answerFrame(addr, frame.KindEvent, frame.FlagDump, epoch, 40, []byte("a")))
	send(answerFrame(addr, frame.KindEvent, frame.FlagDump, epoch, 40, []byte("b")))
	send(answerFrame(addr, frame.KindResyncEnd, 0, epoch, 40, countPayload(2)))
	// Not an answer: no flag, or a dump event outside an answer.
	send(frame.Append(nil, frame.Header{Kind: frame.KindEvent, Family: addr.Family, Group: addr.Group, Epoch: epoch, Seq: 40, Time: time.Now().UnixNano()}, []byte("x")))
	send(answerFrame(addr, frame.KindEvent, frame.FlagDump, epoch, 40, []byte("y")))
	// Incomplete: says 3, brings 1.
	send(answerFrame(addr, frame.KindResyncBegin, 0, epoch, 41, nil))
	send(answerFrame(addr, frame.KindEvent, frame.FlagDump, epoch, 41, []byte("c")))
	send(answerFrame(addr, frame.KindResyncEnd, 0, epoch, 41, countPayload(3)))

	got := collect(t, r, func(out []string) bool { return len(out) == 7 })
	want := []string{"resync-begin#40:", "event#40:a", "event#40:b", "resync-end#40:\x00\x00\x00\x00\x00\x00\x00\x02", "resync-begin#41:", "event#41:c", "answer-lost"}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	st := r.Stats()
	if st.Answers != 6 || st.BadAnswers != 2 || st.Missing != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestJSONReceiverAsksForJSONAnswers: a JSON receiver's request says so,
// and reads a JSON answer.
func TestJSONReceiverAsksForJSONAnswers(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	ctl := control(t, m)
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{addr}, Map: m, Encoding: streams.JSON})
	if err := r.RequestResync(addr); err != nil {
		t.Fatal(err)
	}
	h, at := nextRequest(t, ctl)
	if h.Flags&frame.FlagJSON == 0 {
		t.Fatalf("JSON receiver's request: %+v", h)
	}
	w := newWire(t, m)
	hd := frame.Header{Kind: frame.KindResyncBegin, Flags: frame.FlagAnswer, Group: addr.Group, Epoch: 9, Seq: 3, Time: time.Now().UnixNano()}
	w.snd.Send(frame.AppendJSON(nil, hd, addr.Name, "", nil), at)
	hd.Kind, hd.Flags = frame.KindEvent, frame.FlagAnswer|frame.FlagDump
	w.snd.Send(frame.AppendJSON(nil, hd, addr.Name, "an entry", []byte(`{}`)), at)
	w.snd.Send(frame.AppendJSONAnswerEnd(nil, hd, addr.Name, "", 1), at)
	var kinds []string
	r.SetReadDeadline(time.Now().Add(3 * time.Second))
	evs := make([]Event, 4)
	for len(kinds) < 3 {
		n, err := r.ReadBatch(evs)
		if err != nil {
			t.Fatalf("after %v: %v", kinds, err)
		}
		for _, ev := range evs[:n] {
			if ev.IsNotice() || ev.Header.Flags&frame.FlagAnswer == 0 || ev.JSON == nil || ev.Header.Seq != 3 {
				t.Fatalf("not an answer frame: %+v", ev)
			}
			kinds = append(kinds, ev.Header.Kind.String())
		}
	}
	if !slices.Equal(kinds, []string{"resync-begin", "event", "resync-end"}) {
		t.Fatalf("got %v", kinds)
	}
}

func TestBackoff(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, 0}, {1, s}, {2, 2 * s}, {3, 4 * s}, {5, 16 * s}, {6, 30 * s}, {60, 30 * s}} {
		if got := backoff(s, 30*s, tc.n); got != tc.want {
			t.Errorf("backoff after %d requests: %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestMirrorBacksOff: with a clock of the test's own, a stream out of sync
// is asked for at once, then after 1, 2, 4 ... intervals up to the cap,
// and at once again after it was in sync.
func TestMirrorBacksOff(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	ctl := control(t, m)
	mir, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Map: m, Mcast: &mcast.ReceiverConfig{AnySource: true},
		RequestEvery: time.Second, MaxRequestEvery: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer mir.Close()
	t0 := time.Unix(1e9, 0)
	var asked []time.Duration
	tick := func(from, to time.Duration) {
		for d := from; d <= to; d += 100 * time.Millisecond {
			before := mir.Stats().Requests
			mir.request(t0.Add(d))
			if mir.Stats().Requests != before {
				asked = append(asked, d)
				nextRequest(t, ctl)
			}
		}
	}
	mir.mu.Lock()
	mir.outOfSync(addr.ID)
	mir.mu.Unlock()
	tick(0, 20*time.Second)
	s := time.Second
	if want := []time.Duration{0, s, 3 * s, 7 * s, 11 * s, 15 * s, 19 * s}; !slices.Equal(asked, want) {
		t.Fatalf("asked at %v, want %v", asked, want)
	}
	// In sync, then out again: at once, then after one interval.
	mir.mu.Lock()
	mir.inSync(addr.ID)
	mir.outOfSync(addr.ID)
	mir.mu.Unlock()
	asked = nil
	tick(30*time.Second, 32*time.Second)
	if want := []time.Duration{30 * s, 31 * s}; !slices.Equal(asked, want) {
		t.Fatalf("after being in sync, asked at %v, want %v", asked, want)
	}
}

// TestMirrorMergesAnswerWithOvertakingLiveEvents: the answer comes on the
// request socket, live events on the stream's: events numbered after the
// dump that are read before the answer's resync-end (here, all of them,
// and one between its frames) are applied after the dump replaces the
// table, and the mirror ends with the bridge's table. Without that, the
// dump would undo them.
func TestMirrorMergesAnswerWithOvertakingLiveEvents(t *testing.T) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	ctl := control(t, m)
	mir, _, stop := runMirror(t, &MirrorConfig{Streams: []streams.Stream{addr}, Map: m, Mcast: &mcast.ReceiverConfig{AnySource: true},
		RequestEvery: time.Minute})
	defer stop()
	_, at := nextRequest(t, ctl)

	w := newWire(t, m)
	epoch := frame.NewEpoch(time.Now())
	live := func(seq uint64, msg []byte) {
		t.Helper()
		w.frame(addr, frame.KindEvent, epoch, seq, msg)
	}
	answer := func(k frame.Kind, flags frame.Flags, seq uint64, payload []byte) {
		t.Helper()
		if err := w.snd.Send(answerFrame(addr, k, flags, epoch, seq, payload), at); err != nil {
			t.Fatal(err)
		}
	}
	applied := func(n uint64) {
		t.Helper()
		waitMirror(t, mir, func() bool { return mir.Stats().Applied >= n }, func() string { return fmt.Sprintf("%+v", mir.Stats()) })
	}
	key := func(last byte) string { return fmt.Sprintf("addr 2/2 10.0.0.%d/24 peer -", last) }

	// The bridge's table at its dump, after event #2: .1 and .2.
	live(1, addrMsg(unix.RTM_NEWADDR, 2, 1))
	live(2, addrMsg(unix.RTM_NEWADDR, 2, 2))
	// After the dump, before the answer is read: .3 added, .1 removed.
	live(3, addrMsg(unix.RTM_NEWADDR, 2, 3))
	live(4, addrMsg(unix.RTM_DELADDR, 2, 1))
	applied(4)
	answer(frame.KindResyncBegin, 0, 2, nil)
	answer(frame.KindEvent, frame.FlagDump, 2, addrMsg(unix.RTM_NEWADDR, 2, 1))
	answer(frame.KindEvent, frame.FlagDump, 2, addrMsg(unix.RTM_NEWADDR, 2, 2))
	applied(4 + 2)
	live(5, addrMsg(unix.RTM_NEWADDR, 2, 5)) // between the answer's frames
	applied(4 + 2 + 1)
	if mir.Synced(addr) {
		t.Fatal("synced before the answer's end")
	}
	answer(frame.KindResyncEnd, 0, 2, countPayload(2))
	want := []string{key(2), key(3), key(5)}
	waitMirror(t, mir, func() bool { return mir.Synced(addr) && slices.Equal(mir.Keys(addr), want) },
		func() string {
			return fmt.Sprintf("synced %v, table %q, want %q", mir.Synced(addr), mir.Keys(addr), want)
		})

	// A gap after the dump of the next answer: that answer cannot be
	// completed, and the mirror stays out of sync until one can.
	live(7, addrMsg(unix.RTM_NEWADDR, 2, 7)) // #6 lost
	_, at = nextRequest(t, ctl)
	answer(frame.KindResyncBegin, 0, 5, nil)
	for _, k := range []byte{2, 3, 5} {
		answer(frame.KindEvent, frame.FlagDump, 5, addrMsg(unix.RTM_NEWADDR, 2, k))
	}
	answer(frame.KindResyncEnd, 0, 5, countPayload(3))
	live(8, addrMsg(unix.RTM_NEWADDR, 2, 8)) // read after the end: the answer was taken
	applied(7 + 1 + 3 + 1)
	if mir.Synced(addr) {
		t.Fatalf("synced by an answer dumped before a gap: %q", mir.Keys(addr))
	}
}
