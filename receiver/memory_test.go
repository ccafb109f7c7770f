package receiver

import (
	"fmt"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/streams"
)

// TestForgedFragmentsHoldLittle: a forger sends, on every stream, the
// first fragment of a message far over the limit and the first pieces of
// one at the limit. The receiver refuses the first (counted, reported
// lost), holds no more than what arrived of the second, and lets it go
// when it times out.
func TestForgedFragmentsHoldLittle(t *testing.T) {
	m := testMap()
	ss := streams.Default()
	r := newTestReceiver(t, &Config{Streams: ss, Map: m, NoSilentNotices: true, FragmentTimeout: 200 * time.Millisecond})
	w := newWire(t, m)
	const pieces = 2 // few: an unprivileged socket buffer holds them
	for _, s := range ss {
		huge := frame.FragmentHeader{Total: 16 << 20, Count: 2}
		fh := make([]byte, frame.FragmentHeaderLen+100)
		huge.Put(fh)
		w.frame(s, frame.KindFragment, 1, 1, fh)
		n := 0
		frame.Split(make([]byte, frame.MaxRawMessage), frame.MaxPiece, func(f frame.FragmentHeader, piece []byte) {
			if n++; n > pieces {
				return
			}
			var fh [frame.FragmentHeaderLen]byte
			f.Put(fh[:])
			w.frame(s, frame.KindFragment, 1, 2, append(fh[:], piece...))
		})
		w.frame(s, frame.KindHeartbeat, 1, 0, nil) // read after the fragments
	}
	count := func(out []string, what string) (n int) {
		for _, o := range out {
			if o == what {
				n++
			}
		}
		return n
	}
	// Message 1 of every stream is abandoned by message 2.
	got := collect(t, r, func(out []string) bool { return count(out, "heartbeat#0:") == len(ss) })
	st := r.Stats()
	perStream := uint64(2*pieces*frame.MaxPiece + 8<<10)
	if st.Reassembly > uint64(len(ss))*perStream {
		t.Fatalf("%d streams hold %d bytes after %d pieces each (%s per stream)", len(ss), st.Reassembly, pieces, mib(st.Reassembly/uint64(len(ss))))
	}
	if n := count(got, "fragment-lost"); n != len(ss) {
		t.Fatalf("%d fragment-lost notices, want one per stream (%d): %q", n, len(ss), got)
	}
	if st.TooLarge != uint64(len(ss)) || st.BadFragment != 0 {
		t.Errorf("stats %+v: want the %d fragments of too large messages counted as TooLarge", st, len(ss))
	}
	// Message 2 of every stream expires, and its buffer is let go.
	collect(t, r, func(out []string) bool { return count(out, "fragment-lost") == len(ss) })
	if st := r.Stats(); st.Reassembly > uint64(len(ss))*(128<<10+8<<10) {
		t.Fatalf("%d streams hold %d bytes after their partial messages expired (%s per stream)", len(ss), st.Reassembly, mib(st.Reassembly/uint64(len(ss))))
	}
	// Leaving a stream gives up its partial message: no timer would.
	var fh [frame.FragmentHeaderLen]byte
	(&frame.FragmentHeader{Total: 1000, Count: 2}).Put(fh[:])
	w.frame(ss[0], frame.KindFragment, 1, 3, append(fh[:], make([]byte, 500)...))
	w.frame(ss[0], frame.KindHeartbeat, 1, 0, nil)
	collect(t, r, func(out []string) bool { return count(out, "heartbeat#0:") == 1 })
	pending := func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.trackers[ss[0].ID].reasm.Pending() }
	if !pending() {
		t.Fatal("no partial message")
	}
	r.Leave(ss[0])
	if pending() {
		t.Error("a stream left keeps its partial message")
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// TestMaxMessageDefaultsToWhatABridgeSends: each encoding's limit is the
// largest message a bridge sends in it.
func TestMaxMessageDefaultsToWhatABridgeSends(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want int
	}{
		{Config{}, frame.MaxRawMessage},
		{Config{Encoding: streams.JSON}, frame.MaxJSONMessage},
		{Config{MaxMessage: 1000}, 1000},
	} {
		tc.cfg.Map = testMap()
		r := newTestReceiver(t, &tc.cfg)
		if r.maxMsg != tc.want {
			t.Errorf("%+v: MaxMessage %d, want %d", tc.cfg, r.maxMsg, tc.want)
		}
	}
}
