package netlinkbridge

import (
	"slices"
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
	// The loop may clear the wake-up's deadline before this goroutine
	// looks: wait for the whole history, a past deadline then none.
	cleared := func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		d := src.deadlines
		i := slices.Index(d, pastDeadline)
		return i >= 0 && slices.ContainsFunc(d[i+1:], time.Time.IsZero)
	}
	b.wake()
	waitFor(t, "the loop to clear the past deadline", cleared)
}
