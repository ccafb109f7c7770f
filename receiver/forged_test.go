package receiver

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// fakeBridge plays the bridge for one stream of addresses: it numbers its
// frames, keeps the true table, and answers resync requests with a dump.
type fakeBridge struct {
	w *wire
	s streams.Stream

	mu       sync.Mutex
	epoch    uint64
	seq      uint64
	table    map[string][]byte
	requests int
}

func (b *fakeBridge) send(k frame.Kind, flags frame.Flags, payload []byte) {
	if k.Sequenced() {
		b.seq++
	}
	h := frame.Header{Kind: k, Flags: flags, Family: b.s.Family, Group: b.s.Group, Epoch: b.epoch, Seq: b.seq, Time: time.Now().UnixNano()}
	b.w.send(b.s, streams.Raw, frame.Append(nil, h, payload))
}

// event changes the table and sends the change.
func (b *fakeBridge) event(msg []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, remove, _ := StateKey(msg)
	if remove {
		delete(b.table, key)
	} else {
		b.table[key] = msg
	}
	b.send(frame.KindEvent, 0, msg)
}

func (b *fakeBridge) heartbeat() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.send(frame.KindHeartbeat, 0, nil)
}

// serve answers every request on ctl with a resync to its sender alone,
// as the bridge does (PROTOCOL.md, Answers), until ctl closes.
func (b *fakeBridge) serve(ctl *mcast.Receiver) {
	ds := make([]mcast.Datagram, 8)
	for {
		n, err := ctl.ReadBatch(ds)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.requests += n
		b.answer(ds[n-1].Source)
		b.mu.Unlock()
	}
}

// answer sends the table to dst as an answer: every frame with the last
// sequence number sent. b.mu is held.
func (b *fakeBridge) answer(dst netip.AddrPort) {
	send := func(k frame.Kind, flags frame.Flags, payload []byte) {
		h := frame.Header{Kind: k, Flags: flags | frame.FlagAnswer, Family: b.s.Family, Group: b.s.Group, Epoch: b.epoch, Seq: b.seq, Time: time.Now().UnixNano()}
		if err := b.w.snd.Send(frame.Append(nil, h, payload), dst); err != nil {
			b.w.t.Error(err)
		}
	}
	send(frame.KindResyncBegin, 0, nil)
	for _, k := range slices.Sorted(maps.Keys(b.table)) {
		send(frame.KindEvent, frame.FlagDump, b.table[k])
	}
	send(frame.KindResyncEnd, 0, binary.BigEndian.AppendUint64(nil, uint64(len(b.table))))
}

func (b *fakeBridge) keys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.table))
}

// TestMirrorRecoversFromOneForgedFrame: whatever the header of one frame
// that is not the bridge's, a Mirror keeps applying the bridge's frames
// and ends with the bridge's table, asking for a resync only when the
// forged frame was applied, and not again once it has one.
func TestMirrorRecoversFromOneForgedFrame(t *testing.T) {
	fake := addrMsg(unix.RTM_NEWADDR, 2, 99)
	for _, tc := range []struct {
		name   string
		forged func(epoch, last uint64) frame.Header
		resync bool // the forged frame is applied: a resync must repair it
	}{
		{"a jump to 2^62", func(e, last uint64) frame.Header { return frame.Header{Kind: frame.KindEvent, Epoch: e, Seq: 1 << 62} }, false},
		{"a heartbeat at 2^62", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindHeartbeat, Epoch: e, Seq: 1 << 62}
		}, false},
		{"a newer epoch", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindEvent, Epoch: frame.NewEpoch(time.Now()), Seq: 1}
		}, false},
		{"an older epoch", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindEvent, Epoch: frame.NewEpoch(time.Now().Add(-time.Hour)), Seq: last + 1}
		}, false},
		{"a time ahead", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindEvent, Epoch: e, Seq: last + 1, Time: time.Now().Add(time.Hour).UnixNano()}
		}, false},
		{"a stale newer epoch", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindEvent, Epoch: e + 1, Seq: 1, Time: time.Now().Add(-time.Minute).UnixNano()}
		}, false},
		{"the next number", func(e, last uint64) frame.Header { return frame.Header{Kind: frame.KindEvent, Epoch: e, Seq: last + 1} }, true},
		{"a jump within the window", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindEvent, Epoch: e, Seq: last + 10}
		}, true},
		{"a number taken", func(e, last uint64) frame.Header { return frame.Header{Kind: frame.KindEvent, Epoch: e, Seq: last} }, true},
		{"a resync end", func(e, last uint64) frame.Header {
			return frame.Header{Kind: frame.KindResyncEnd, Epoch: e, Seq: last + 1}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMap()
			addr, _ := streams.Lookup("ipv4-ifaddr")
			w := newWire(t, m)
			b := &fakeBridge{w: w, s: addr, epoch: frame.NewEpoch(time.Now().Add(-time.Second)), table: map[string][]byte{}}
			ctl, err := mcast.NewReceiver(&mcast.ReceiverConfig{AnySource: true})
			if err != nil {
				t.Fatal(err)
			}
			ctl.Join(m.Control())
			served := make(chan struct{})
			go func() { defer close(served); b.serve(ctl) }()
			defer func() { ctl.Close(); <-served }()
			mir, _, stop := runMirror(t, &MirrorConfig{Streams: []streams.Stream{addr}, Map: m,
				Mcast: &mcast.ReceiverConfig{AnySource: true}, RequestEvery: 50 * time.Millisecond})
			defer stop()

			// matches waits until the mirror holds the bridge's table
			// and is synced.
			matches := func(what string) {
				t.Helper()
				want := b.keys()
				waitMirror(t, mir, func() bool { return mir.Synced(addr) && slices.Equal(mir.Keys(addr), want) },
					func() string {
						return fmt.Sprintf("%s: synced %v, table %q, want %q; %+v", what, mir.Synced(addr), mir.Keys(addr), want, mir.Stats())
					})
			}
			b.event(addrMsg(unix.RTM_NEWADDR, 2, 1))
			b.event(addrMsg(unix.RTM_NEWADDR, 2, 2))
			matches("at start")
			before := mir.Stats()

			b.mu.Lock()
			h := tc.forged(b.epoch, b.seq)
			h.Family, h.Group = addr.Family, addr.Group
			if h.Time == 0 {
				h.Time = time.Now().UnixNano()
			}
			w.send(addr, streams.Raw, frame.Append(nil, h, fake))
			b.mu.Unlock()

			// The bridge goes on: a change, a removal, an idle second.
			b.event(addrMsg(unix.RTM_NEWADDR, 2, 3))
			b.event(addrMsg(unix.RTM_DELADDR, 2, 1))
			b.heartbeat()
			matches("after the forged frame")
			after := mir.Stats()
			asked := after.Requests - before.Requests
			if !tc.resync && (asked != 0 || after.Resyncs != before.Resyncs) {
				t.Errorf("%d requests and %d resyncs for a frame that was never applied", asked, after.Resyncs-before.Resyncs)
			}
			if tc.resync && asked == 0 {
				t.Errorf("no resync asked for after a forged frame was applied")
			}
			if st := after.Receiver; st.Rejected+st.Duplicates+st.Disowned+st.Missing == 0 {
				t.Errorf("the forged frame left no trace in the receiver's counters: %+v", st)
			}

			// Synced again, it stays so: more of the bridge's frames, and
			// no request.
			b.event(addrMsg(unix.RTM_NEWADDR, 2, 4))
			b.heartbeat()
			matches("later")
			if n := mir.Stats().Requests; n != after.Requests {
				t.Errorf("%d more requests once synced again", n-after.Requests)
			}
		})
	}
}

// TestReceiverRejectsFramesThatAreNotTheBridges: through the sockets, the
// frames PROTOCOL.md's rules reject are counted and reported, and the
// bridge's frames around them are delivered.
func TestReceiverRejectsFramesThatAreNotTheBridges(t *testing.T) {
	m := testMap()
	link, _ := streams.Lookup("link")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, NoSilentNotices: true})
	w := newWire(t, m)
	e := frame.NewEpoch(time.Now().Add(-time.Second))
	send := func(k frame.Kind, epoch, seq uint64, at time.Time) {
		h := frame.Header{Kind: k, Family: link.Family, Group: link.Group, Epoch: epoch, Seq: seq, Time: at.UnixNano()}
		w.send(link, streams.Raw, frame.Append(nil, h, nil))
	}
	now := time.Now()
	send(frame.KindEvent, e, 1, now)
	send(frame.KindEvent, e, 2, now)
	send(frame.KindEvent, e, 1<<62, now)                      // held, then rejected
	send(frame.KindEvent, e, 3, now)                          //
	send(frame.KindEvent, e, 4, now.Add(time.Hour))           // ahead of the clock
	send(frame.KindEvent, e-1<<frame.EpochRandomBits, 4, now) // an older epoch
	send(frame.KindEvent, e+1, 1, now.Add(-time.Minute))      // a newer epoch, stale
	send(frame.KindEvent, e, 4, now)                          // forged: the bridge's heartbeat disowns it
	send(frame.KindHeartbeat, e, 3, now)                      //
	send(frame.KindEvent, e, 4, now)                          // the bridge's #4
	got := collect(t, r, func(out []string) bool { return len(out) >= 11 })
	want := []string{"event#1:", "event#2:", "rejected", "event#3:", "rejected", "rejected", "rejected",
		"event#4:", "disowned", "heartbeat#3:", "event#4:"}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n  %q\nwant\n  %q", got, want)
	}
	if st := r.Stats(); st.Rejected != 4 || st.Disowned != 1 || st.Missing != 0 || st.Duplicates != 0 {
		t.Errorf("stats %+v", st)
	}
}
