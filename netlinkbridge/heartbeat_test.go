package netlinkbridge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/streams"
)

// SetHeartbeat changes a running bridge's interval at once: a bridge with
// heartbeats an hour apart sends them every 20 ms once told, and none
// once turned off. Values Validate refuses change nothing.
func TestSetHeartbeat(t *testing.T) {
	link, _ := streams.Lookup("link")
	src, sink := newFakeSource(), &fakeSink{}
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, Heartbeat: time.Hour, Logger: quiet}, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		every time.Duration
		off   bool
	}{{-time.Second, false}, {time.Second, true}} {
		var ce *ConfigError
		if err := b.SetHeartbeat(bad.every, bad.off); !errors.As(err, &ce) || ce.Field != "Heartbeat" {
			t.Errorf("SetHeartbeat(%v, %v): %v, want a *ConfigError of Heartbeat", bad.every, bad.off, err)
		}
	}
	if b.newHeartbeat.Load() != nil {
		t.Fatal("a refused SetHeartbeat left a change for the loop")
	}
	heartbeats := func() int {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		n := 0
		for _, s := range sink.out {
			if h, _, err := frame.Parse(s.data); err == nil && h.Kind == frame.KindHeartbeat {
				n++
			}
		}
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-b.Ready()
	if err := b.SetHeartbeat(20*time.Millisecond, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three heartbeats 20 ms apart", func() bool { return heartbeats() >= 3 })

	if err := b.SetHeartbeat(0, true); err != nil {
		t.Fatal(err)
	}
	// Off, nothing is due: the loop's read waits without a deadline.
	waitFor(t, "a read without deadline", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return b.newHeartbeat.Load() == nil && src.deadline.IsZero()
	})
	n := heartbeats()
	if err := b.SetHeartbeat(0, false); err != nil { // zero: the default
		t.Fatal(err)
	}
	waitFor(t, "a deadline a default interval ahead", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return b.newHeartbeat.Load() == nil && time.Until(src.deadline) > DefaultHeartbeat/2
	})
	if got := heartbeats(); got != n {
		t.Errorf("%d heartbeats while they were off", got-n)
	}
}
