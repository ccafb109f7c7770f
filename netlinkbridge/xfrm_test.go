package netlinkbridge

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/streams"
)

var (
	testEncKey  = bytes.Repeat([]byte{0x5e, 0xc1}, 8)
	testAuthKey = bytes.Repeat([]byte{0x5e, 0xa7}, 16)
)

// runXfrm bridges one NEWSA message on xfrm-sa with cfg and returns what
// was sent.
func runXfrm(t *testing.T, cfg *Config) ([]sent, []byte) {
	t.Helper()
	sa, _ := streams.Lookup("xfrm-sa")
	msg := testmsg.XfrmNewSA(t, testEncKey, testAuthKey)
	sink := &fakeSink{}
	cfg.Streams, cfg.JSONAlways, cfg.Logger, cfg.NoHeartbeats = []streams.Stream{sa}, true, quiet, true
	b, err := NewWithSource(cfg, newFakeSource([]kernel.Message{{Group: sa.Group, Data: bytes.Clone(msg)}}), nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	waitFor(t, "the event", func() bool { return b.Stats().Events >= 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cfg.XfrmKeys == (b.Stats().XfrmRedacted == 1) {
		t.Errorf("Stats.XfrmRedacted %d with XfrmKeys %v", b.Stats().XfrmRedacted, cfg.XfrmKeys)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return append([]sent(nil), sink.out...), msg
}

// By default the keys of an SA are zeroed in the raw frame, the message
// otherwise byte for byte the kernel's, and left out of JSON, which says
// so.
func TestXfrmKeysRedacted(t *testing.T) {
	out, msg := runXfrm(t, &Config{Private: map[string]Access{"xfrm-sa": {Cleartext: true}}})
	want := bytes.Clone(msg)
	if n := decode.RedactXfrm(want); n != 2 {
		t.Fatalf("RedactXfrm: %d keys", n)
	}
	var raw, js int
	for _, s := range out {
		for _, k := range [][]byte{testEncKey, testAuthKey, []byte("5ec15ec1"), []byte("5ea75ea7")} {
			if bytes.Contains(s.data, k[:4]) {
				t.Errorf("a datagram to %s holds key bytes: %q", s.dst, s.data)
			}
		}
		if s.data[0] == '{' {
			f, err := frame.ParseJSON(s.data)
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind == "event" {
				js++
				if !bytes.Contains(f.Event, []byte(`"keys_redacted":true`)) || !bytes.Contains(f.Event, []byte(`"key_bits":128`)) {
					t.Errorf("JSON event: %s", f.Event)
				}
			}
			continue
		}
		h, p, err := frame.Parse(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if h.Kind == frame.KindEvent {
			raw++
			if !bytes.Equal(p, want) {
				t.Errorf("raw frame:\n%x\nwant the kernel's message with zeroed keys:\n%x", p, want)
			}
		}
	}
	if raw != 1 || js != 1 {
		t.Errorf("%d raw and %d JSON events", raw, js)
	}
}

// XfrmKeys keeps the keys in a sealed stream's frames, and is refused
// for a stream in the clear.
func TestXfrmKeysSealedOnly(t *testing.T) {
	path, o := testPrivateKeys(t)
	sa, _ := streams.Lookup("xfrm-sa")
	var ce *ConfigError
	err := (&Config{Streams: []streams.Stream{sa}, XfrmKeys: true, Private: map[string]Access{"xfrm-sa": {Cleartext: true}}}).Validate()
	if !errors.As(err, &ce) || ce.Field != "XfrmKeys" {
		t.Fatalf("XfrmKeys with xfrm-sa in the clear: %v", err)
	}
	out, msg := runXfrm(t, &Config{XfrmKeys: true, Private: map[string]Access{"xfrm-sa": {KeyFile: path}}})
	events := 0
	for _, s := range out {
		if bytes.Contains(s.data, testEncKey[:4]) || bytes.Contains(s.data, testAuthKey[:4]) {
			t.Errorf("a sealed datagram holds key bytes in the clear")
		}
		if s.data[0] == '{' {
			continue
		}
		if err := o.Open(s.data, s.dst); err != nil {
			t.Fatal(err)
		}
		h, p, err := frame.Parse(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if h.Kind == frame.KindEvent {
			events++
			if !bytes.Equal(p, msg) {
				t.Errorf("sealed frame opened to\n%x\nwant the kernel's message, keys and all:\n%x", p, msg)
			}
		}
	}
	if events != 1 {
		t.Errorf("%d sealed events", events)
	}
	// Sealed without XfrmKeys: redacted all the same.
	out, msg = runXfrm(t, &Config{Private: map[string]Access{"xfrm-sa": {KeyFile: path}}})
	for _, s := range out {
		if s.data[0] == '{' || o.Open(s.data, s.dst) != nil {
			continue
		}
		if h, p, _ := frame.Parse(s.data); h.Kind == frame.KindEvent && (bytes.Contains(p, testEncKey[:4]) || len(p) != len(msg)) {
			t.Errorf("sealed without XfrmKeys: keys kept")
		}
	}
}
