package netlinkbridge

import (
	"bytes"
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

func testPrivateKeys(t testing.TB) (string, *frame.Opener) {
	t.Helper()
	path, r := testKeyFile(t, "private.key")
	return path, frame.NewOpener(r.Keys())
}

// A stream sealed under a key file (Config.Private) is sent sealed, every
// datagram of it: events, fragments and control frames. Each opens, where
// it was sent, to exactly what a clear frame would carry; none has a byte
// of an event in the clear; nothing goes to its JSON group. A stream not
// named stays in the clear, and signed with Config.KeyFile.
func TestBridgeSealsPrivateStreams(t *testing.T) {
	path, o := testPrivateKeys(t)
	authPath, v := testKeys(t)
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	small := linkMsg(3, "secret-eth9")
	huge := testmsg.Nlmsg(unix.RTM_NEWLINK, bytes.Repeat([]byte("secret!!"), 3*frame.MaxPayload/8)) // fragments
	// Fits one clear datagram, but not one with a sealed trailer.
	edge := testmsg.Nlmsg(unix.RTM_NEWLINK, make([]byte, frame.MaxPayload-16-20))
	addrMsg := testmsg.Nlmsg(unix.RTM_NEWADDR, make([]byte, 24))
	sink := &fakeSink{}
	src := newFakeSource([]kernel.Message{{Group: link.Group, Data: small}, {Group: link.Group, Data: huge}, {Group: link.Group, Data: edge}, {Group: addr.Group, Data: addrMsg}})
	cfg := &Config{Streams: []streams.Stream{link, addr}, JSONAlways: true, KeyFile: authPath,
		Private: map[string]Access{"link": {KeyFile: path}}, Logger: quiet}
	b, err := NewWithSource(cfg, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "four events", func() bool { return b.Stats().Events >= 4 })
	if f := b.Stats().Fragmented; f != 2 {
		t.Errorf("Stats.Fragmented %d, want 2: the edge event is sent in fragments once sealed", f)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	linkRaw, linkJSON := cfg.Map.Addr(link, streams.Raw), cfg.Map.Addr(link, streams.JSON)
	var r frame.Reassembler
	var got [][]byte
	kinds := map[frame.Kind]int{}
	var addrFrames int
	for _, s := range sink.out {
		switch s.dst {
		case linkJSON:
			// Heartbeats and the goodbye alone, marked sealed, signed.
			f, err := frame.ParseJSON(s.data)
			if err != nil || !f.Sealed || (f.Kind != "heartbeat" && f.Kind != "goodbye") || bytes.Contains(s.data, []byte("secret")) {
				t.Fatalf("a sealed stream's JSON group got %s (%v)", s.data, err)
			}
			if err := v.VerifyJSON(s.data, s.dst); err != nil {
				t.Fatalf("JSON heartbeat of a sealed stream: %v", err)
			}
			kinds[frame.Kind(100)]++
			continue
		case linkRaw:
		default:
			if s.dst == cfg.Map.Addr(addr, streams.Raw) {
				if err := v.VerifyRaw(s.data, s.dst); err != nil {
					t.Fatalf("clear stream's frame: %v", err)
				}
				addrFrames++
			}
			continue
		}
		if bytes.Contains(s.data, []byte("secret")) {
			t.Fatal("a sealed datagram holds an event in the clear")
		}
		if len(s.data) > frame.MaxDatagram {
			t.Fatalf("sealed datagram of %d bytes", len(s.data))
		}
		moved := append([]byte(nil), s.data...)
		if o.Open(moved, linkJSON) == nil {
			t.Fatal("a sealed frame opens on another group")
		}
		if err := o.Open(s.data, s.dst); err != nil {
			t.Fatalf("sealed datagram does not open: %v", err)
		}
		h, p, err := frame.Parse(s.data)
		if err != nil || h.Flags&frame.FlagSealed == 0 || h.Flags&frame.FlagAuth != 0 {
			t.Fatalf("opened datagram: %+v %v", h, err)
		}
		kinds[h.Kind]++
		switch h.Kind {
		case frame.KindEvent:
			got = append(got, append([]byte(nil), p...))
		case frame.KindFragment:
			if m, ok, _, err := r.Add(h, p, time.Now()); err != nil {
				t.Fatal(err)
			} else if ok {
				got = append(got, append([]byte(nil), m...))
			}
		}
	}
	want := [][]byte{small, huge, edge}
	if len(got) != len(want) {
		t.Fatalf("%d events opened, want %d (kinds %v)", len(got), len(want), kinds)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("event %d opened to %d bytes, want the %d sent", i, len(got[i]), len(want[i]))
		}
	}
	if kinds[frame.KindGoodbye] != 1 || kinds[frame.KindFragment] < 4 || addrFrames == 0 || kinds[frame.Kind(100)] == 0 {
		t.Errorf("kinds %v, clear addr frames %d: want a sealed goodbye, fragments of both large events, the clear stream, and JSON control frames marked sealed", kinds, addrFrames)
	}
}

// A JSON answer is not sent for a sealed stream: it is raw only.
func TestJSONAnswerOfASealedStreamIsRefused(t *testing.T) {
	path, _ := testPrivateKeys(t)
	link, _ := streams.Lookup("link")
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, Private: map[string]Access{"link": {KeyFile: path}}, Logger: quiet},
		newFakeSource(), &fakeDumper{}, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.streams[0].seal == nil {
		t.Fatal("a sealed stream has no seal")
	}
	var set kernel.GroupSet
	set.Add(link.Group)
	b.startAnswer([]answerReq{{set: set, json: true}}, 0)
	if b.cur != nil || b.Stats().BadRequests != 1 {
		t.Errorf("a JSON answer of a sealed stream was started (bad requests %d)", b.Stats().BadRequests)
	}
}

// Sealing costs no allocation per event either.
func TestForwardSealedAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	path, _ := testPrivateKeys(t)
	b, err := NewWithSource(&Config{Private: sealedAll(path), Encodings: []streams.Encoding{streams.Raw}, Logger: quiet},
		newFakeSource(), nil, &discardSink{})
	if err != nil {
		t.Fatal(err)
	}
	_, msgs := rawBridge(t, &discardSink{})
	if b.byGroup[msgs[0].Group].seal == nil {
		t.Fatal("the stream is not sealed")
	}
	b.forward(msgs, 1) // the buffers grow once
	if a := testing.AllocsPerRun(200, func() { b.forward(msgs, 1) }); a != 0 {
		t.Fatalf("sealed forward allocates %v times per batch of %d", a, len(msgs))
	}
}

func BenchmarkForwardRawSealed(b *testing.B) {
	path, _ := testPrivateKeys(b)
	br, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.Raw}, Private: sealedAll(path), Logger: quiet},
		newFakeSource(), nil, &discardSink{})
	if err != nil {
		b.Fatal(err)
	}
	_, msgs := rawBridge(b, &discardSink{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		br.forward(msgs[:1], 1)
	}
}

// sealedAll seals every default stream under path.
func sealedAll(path string) map[string]Access {
	m := map[string]Access{}
	for _, s := range streams.Default() {
		m[s.Name] = Access{KeyFile: path}
	}
	return m
}
