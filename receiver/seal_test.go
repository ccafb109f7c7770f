package receiver

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/streams"
)

// A receiver given a private stream's key file delivers only frames
// sealed under its keys, opened, fragments reassembled, and counts the
// others by reason: a clear frame (anyone can send one) and a signed one
// are not sealed. A receiver without the key delivers nothing of the
// stream: one Sealed notice, and a count.
func TestReceiverOpensPrivateStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "private.key")
	ring, err := keys.Create(path, "")
	if err != nil {
		t.Fatal(err)
	}
	good := frame.NewSealer(ring.Entries[0].Key)
	other := frame.NewSealer(frame.Key{ID: ring.Entries[0].ID, Secret: [32]byte{1}}) // its id, another secret
	link, _ := streams.Lookup("link")
	m := testMap()
	keyed := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, Private: map[string]string{"link": path}, NoSilentNotices: true})
	plain := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, NoSilentNotices: true})
	w := newWire(t, m)
	dst := m.Addr(link, streams.Raw)
	hdr := func(seq uint64) frame.Header {
		return frame.Header{Kind: frame.KindEvent, Family: link.Family, Group: link.Group, Epoch: 1, Seq: seq, Time: time.Now().UnixNano()}
	}
	big := bytes.Repeat([]byte("secret"), 30000)
	bad := good.SealRaw(nil, hdr(2), []byte("payload"), dst)
	bad[frame.HeaderLen+1] ^= 1
	var sends [][]byte
	sends = append(sends, good.SealRaw(nil, hdr(1), []byte("payload"), dst),
		frame.Append(nil, hdr(2), []byte("forged")),                                        // in the clear
		frame.NewSigner(ring.Entries[0].Key).AppendRaw(nil, hdr(2), []byte("forged"), dst), // signed, not sealed
		other.SealRaw(nil, hdr(2), []byte("forged"), dst),                                  // an impostor key
		bad, // altered
		good.SealRaw(nil, hdr(2), []byte("forged"), m.Addr(link, streams.JSON)), // sealed for another group
	)
	// A large event, sealed fragment by fragment as the bridge sends it.
	fh := hdr(2)
	fh.Kind, fh.Flags = frame.KindFragment, frame.FlagSealed
	frame.Split(big, frame.MaxPiece-frame.SealedTrailerLen, func(f frame.FragmentHeader, piece []byte) {
		var hb [frame.HeaderLen]byte
		var fb [frame.FragmentHeaderLen]byte
		fh.PayloadLen = uint32(frame.FragmentHeaderLen + len(piece))
		fh.Put(hb[:])
		f.Put(fb[:])
		sends = append(sends, good.Seal(nil, dst, hb[:], fb[:], piece))
	})
	for _, b := range sends {
		if err := w.snd.Send(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	evs := readN(t, keyed, 2)
	if evs[0].IsNotice() || evs[0].Header.Seq != 1 || string(evs[0].Payload) != "payload" || evs[0].Header.Flags&frame.FlagSealed == 0 {
		t.Errorf("first event %+v", evs[0])
	}
	if evs[1].IsNotice() || evs[1].Header.Seq != 2 || !bytes.Equal(evs[1].Payload, big) {
		t.Errorf("second event: %d bytes, seq %d, want the large event", len(evs[1].Payload), evs[1].Header.Seq)
	}
	st := keyed.Stats()
	if st.NotSealed != 2 || st.BadSeal != 3 || st.Events != 2 || st.Sealed != 0 {
		t.Errorf("keyed: %+v, want 2 not sealed, 3 bad seals, 2 events", st)
	}
	// Without the key: a Sealed notice, nothing of the events.
	evs = readN(t, plain, 3) // the notice, then the two forgeries in the clear (the source check is off here)
	if !evs[0].IsNotice() || evs[0].Notice.Kind != Sealed || evs[0].Notice.From != 1 {
		t.Fatalf("plain: first %+v, want a Sealed notice", evs[0])
	}
	for _, ev := range evs[1:] {
		if bytes.Contains(ev.Payload, []byte("payload")) || bytes.Contains(ev.Payload, []byte("secret")) {
			t.Errorf("a receiver without the key read %q", ev.Payload)
		}
	}
	if st := plain.Stats(); st.Sealed < 5 {
		t.Errorf("plain: %d sealed frames counted, want at least 5", st.Sealed)
	}
}

func TestPrivateConfig(t *testing.T) {
	link, _ := streams.Lookup("link")
	for _, tc := range []struct {
		cfg  Config
		text string
	}{
		{Config{Streams: []streams.Stream{link}, Private: map[string]string{"addr": "/k"}}, "Config.Private addr: is not a stream received"},
		{Config{Streams: []streams.Stream{link}, Private: map[string]string{"link": ""}}, "Config.Private link: needs a key file"},
		{Config{Streams: []streams.Stream{link}, Encoding: streams.JSON, Private: map[string]string{"link": "/k"}}, "sealed frames are raw"},
	} {
		var ce *ConfigError
		if err := tc.cfg.Validate(); !errors.As(err, &ce) || !bytes.Contains([]byte(err.Error()), []byte(tc.text)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.text)
		}
	}
	if err := (&MirrorConfig{Private: map[string]string{"uevent": "/k"}}).Validate(); err == nil {
		t.Error("a mirror of a stream it does not mirror")
	}
	// Every stream private: authenticated, so the port check is moot.
	if !(&Config{Streams: []streams.Stream{link}, Private: map[string]string{"link": "/k"}}).authenticated() {
		t.Error("a receiver of sealed streams only is not authenticated")
	}
}

// On the JSON group of a private stream come its heartbeats and goodbye
// alone, marked sealed: a JSON receiver says, with a Sealed notice, why it
// gets nothing else, and keeps the heartbeats for liveness. A JSON event
// marked sealed is no bridge's: dropped.
func TestJSONReceiverOfASealedStream(t *testing.T) {
	link, _ := streams.Lookup("link")
	m := testMap()
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{link}, Map: m, Encoding: streams.JSON, NoSilentNotices: true})
	w := newWire(t, m)
	h := frame.Header{Kind: frame.KindEvent, Flags: frame.FlagSealed, Family: link.Family, Group: link.Group, Epoch: 1, Seq: 1, Time: time.Now().UnixNano()}
	w.send(link, streams.JSON, frame.AppendJSON(nil, h, "link", "forged", nil))
	h.Kind = frame.KindHeartbeat
	w.send(link, streams.JSON, frame.AppendJSON(nil, h, "link", "sealed", nil))
	evs := readN(t, r, 2)
	if !evs[0].IsNotice() || evs[0].Notice.Kind != Sealed {
		t.Fatalf("first %+v, want a Sealed notice", evs[0])
	}
	if evs[1].IsNotice() || evs[1].Header.Kind != frame.KindHeartbeat || evs[1].Header.Flags&frame.FlagSealed == 0 {
		t.Fatalf("second %+v, want the heartbeat, marked sealed", evs[1])
	}
	if st := r.Stats(); st.Sealed != 1 || st.Events != 1 {
		t.Errorf("%+v: want the JSON event marked sealed dropped", st)
	}
}
