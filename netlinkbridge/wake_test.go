package netlinkbridge

import (
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/streams"
)

// A wake-up (Request, cancellation) sets a past read deadline. With
// nothing else due (no heartbeats, no resync pending), the loop must clear
// it again, or every read returns at once and the loop spins.
func TestWakeWithNothingDueClearsTheDeadline(t *testing.T) {
	link, _ := streams.Lookup("link")
	src := newFakeSource()
	b, err := NewWithSource(&Config{Streams: []streams.Stream{link}, Encodings: []streams.Encoding{streams.Raw},
		NoHeartbeats: true, Logger: quiet}, src, nil, &fakeSink{})
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, b)
	defer stop()
	<-b.Ready()
	deadline := func() time.Time {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.deadline
	}
	b.wake()
	if deadline().IsZero() {
		t.Fatal("wake set no deadline")
	}
	waitFor(t, "the loop to clear the past deadline", func() bool { return deadline().IsZero() })
}
