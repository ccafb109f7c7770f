package receiver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/streams"
)

// A receiver with a key file delivers only frames that verify, in either
// encoding, and counts the others by reason; one without keys skips the
// trailer of an authenticated frame and delivers it.
func TestReceiverVerifiesFrames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	ring, err := keys.Create(path, "")
	if err != nil {
		t.Fatal(err)
	}
	good := frame.NewSigner(ring.Entries[0].Key)
	other := frame.NewSigner(frame.Key{ID: 7})
	link, _ := streams.Lookup("link")
	for _, enc := range []streams.Encoding{streams.Raw, streams.JSON} {
		m := testMap()
		keyed := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, Encoding: enc, KeyFile: path, NoSilentNotices: true})
		plain := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, Encoding: enc, NoSilentNotices: true})
		w := newWire(t, m)
		dst := m.Addr(link, enc)
		mk := func(s *frame.Signer, seq uint64, to streams.Encoding) []byte {
			h := frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: 1, Seq: seq, Time: time.Now().UnixNano()}
			if enc == streams.JSON {
				b := frame.AppendJSON(nil, h, "link", "x", nil)
				if s == nil {
					return b
				}
				return s.SealJSON(b, m.Addr(link, to))
			}
			if s == nil {
				return frame.Append(nil, h, []byte("payload"))
			}
			return s.AppendRaw(nil, h, []byte("payload"), m.Addr(link, to))
		}
		bad := mk(good, 2, enc)
		bad[len(bad)-5] ^= 1
		for _, b := range [][]byte{
			mk(good, 1, enc),
			mk(nil, 2, enc),    // not authenticated
			mk(other, 2, enc),  // a key not in the file
			bad,                // altered
			mk(good, 2, 1-enc), // signed for the other encoding's group
			mk(good, 2, enc),
		} {
			if err := w.snd.Send(b, dst); err != nil {
				t.Fatal(err)
			}
		}
		evs := readN(t, keyed, 2)
		for i, ev := range evs {
			if ev.IsNotice() || ev.Header.Seq != uint64(i+1) {
				t.Fatalf("%v keyed: event %d: %+v", enc, i, ev)
			}
		}
		st := keyed.Stats()
		if st.Unauthenticated != 1 || st.UnknownKey != 1 || st.BadTag != 2 || st.Events != 2 {
			t.Errorf("%v keyed: %+v, want 1 unauthenticated, 1 unknown key, 2 bad tags, 2 events", enc, st)
		}
		// Without keys: the first frame, then the forgeries are
		// duplicates or pass as the source check lets them.
		if evs := readN(t, plain, 2); evs[0].Header.Seq != 1 || evs[1].Header.Seq != 2 {
			t.Errorf("%v plain: %+v", enc, evs)
		} else if enc == streams.Raw && string(evs[0].Payload) != "payload" {
			t.Errorf("plain receiver: payload %q, want the trailer skipped", evs[0].Payload)
		}
	}
}

func readN(t *testing.T, r *Receiver, n int) []Event {
	t.Helper()
	var out []Event
	evs := make([]Event, 8)
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(out) < n {
		k, err := r.ReadBatch(evs)
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		out = append(out, evs[:k]...)
	}
	return out
}

// A receiver with keys wakes to look at its key file even when nothing
// arrives, so that it has a rotated key before the bridge uses it.
func TestIdleReceiverChecksItsKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	if _, err := keys.Create(path, ""); err != nil {
		t.Fatal(err)
	}
	link, _ := streams.Lookup("link")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: testMap(), KeyFile: path, NoSilentNotices: true})
	now := time.Now()
	if next := r.nextTimer(now); next.IsZero() || next.After(now.Add(keys.ReloadEvery)) {
		t.Errorf("next wake-up %v, want within %v", next, keys.ReloadEvery)
	}
	plain := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: testMap(), NoSilentNotices: true})
	if next := plain.nextTimer(now); !next.IsZero() {
		t.Errorf("a receiver without keys wakes at %v for nothing", next)
	}
}
