package netlinkbridge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/streams"
)

func testKeys(t testing.TB) (string, *frame.Verifier) {
	t.Helper()
	path, r := testKeyFile(t, "keys")
	return path, frame.NewVerifier(r.Keys())
}

// testKeyFile makes a key file of one key, named name, in a directory of
// the test's.
func testKeyFile(t testing.TB, name string) (string, *keys.Ring) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	r, err := keys.Create(path, "")
	if err != nil {
		t.Fatal(err)
	}
	return path, r
}

// With a key file every datagram the bridge sends verifies where it was
// sent, whatever its kind and size: events, control frames, raw and JSON
// fragments.
func TestBridgeSignsEveryDatagram(t *testing.T) {
	path, v := testKeys(t)
	link, _ := streams.Lookup("link")
	huge := testmsg.Nlmsg(unix.RTM_NEWLINK, make([]byte, 3*frame.MaxPayload)) // fragments in both encodings
	small := linkMsg(3, "eth9")
	// Just short enough for one raw datagram without a trailer: with one,
	// it must be sent in fragments.
	edge := testmsg.Nlmsg(unix.RTM_NEWLINK, make([]byte, frame.MaxPayload-16-8))
	sink := &fakeSink{}
	src := newFakeSource([]kernel.Message{{Group: 1, Data: small}, {Group: 1, Data: huge}, {Group: 1, Data: edge}})
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, JSONAlways: true, KeyFile: path, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "three events", func() bool { return b.Stats().Events >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var raw, js, rawFrags, jsonFrags int
	for _, s := range sink.out {
		if s.data[0] == '{' {
			js++
			if err := v.VerifyJSON(s.data, s.dst); err != nil {
				t.Fatalf("JSON datagram to %v does not verify: %v\n%.200s", s.dst, err, s.data)
			}
			if strings.Contains(string(s.data[:100]), `"kind":"fragment"`) {
				jsonFrags++
			}
			if len(s.data) > frame.MaxDatagram {
				t.Fatalf("JSON datagram of %d bytes", len(s.data))
			}
			continue
		}
		raw++
		if err := v.VerifyRaw(s.data, s.dst); err != nil {
			t.Fatalf("raw datagram to %v does not verify: %v", s.dst, err)
		}
		h, _, err := frame.Parse(s.data)
		if err != nil || h.Flags&frame.FlagAuth == 0 || len(s.data) > frame.MaxDatagram {
			t.Fatalf("raw datagram: %+v %v, %d bytes", h, err, len(s.data))
		}
		if h.Kind == frame.KindFragment {
			rawFrags++
		}
		// A copy moved to the JSON group, or to another stream, does not.
		if v.VerifyRaw(s.data, streams.Map{}.Addr(link, streams.JSON)) == nil {
			t.Fatal("a raw frame verifies on the JSON group")
		}
	}
	if raw == 0 || js == 0 || rawFrags < 4+2 || jsonFrags < 2 {
		t.Errorf("raw %d (fragments %d), JSON %d (fragments %d): want both encodings and fragments of the large messages", raw, rawFrags, js, jsonFrags)
	}
}

func TestBridgeRefusesABadKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(path, []byte("not a key\n"), 0o600)
	if _, err := NewWithSource(&Config{KeyFile: path, Logger: quiet}, newFakeSource(), nil, &fakeSink{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("bad key file: %v", err)
	}
	os.Chmod(path, 0o644)
	var pe *keys.PermissionError
	if _, err := NewWithSource(&Config{KeyFile: path, Logger: quiet}, newFakeSource(), nil, &fakeSink{}); !errors.As(err, &pe) {
		t.Errorf("world-readable key file: %v", err)
	}
}

// Signing costs no allocation per event either.
func TestForwardSignedAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	path, _ := testKeys(t)
	b, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.Raw}, KeyFile: path, Logger: quiet}, newFakeSource(), nil, &discardSink{})
	if err != nil {
		t.Fatal(err)
	}
	_, msgs := rawBridge(t, &discardSink{})
	b.forward(msgs, 1) // the JSON buffers grow once
	if a := testing.AllocsPerRun(200, func() { b.forward(msgs, 1) }); a != 0 {
		t.Fatalf("signed forward allocates %v times per batch of %d", a, len(msgs))
	}
}

func BenchmarkForwardRawSigned(b *testing.B) {
	path, _ := testKeys(b)
	br, err := NewWithSource(&Config{Encodings: []streams.Encoding{streams.Raw}, KeyFile: path, Logger: quiet}, newFakeSource(), nil, &discardSink{})
	if err != nil {
		b.Fatal(err)
	}
	_, msgs := rawBridge(b, &discardSink{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		br.forward(msgs[:1], 1)
	}
}
