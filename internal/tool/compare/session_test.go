package compare

import (
	"context"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/streams"
)

// Run stops the readers it started when its context ends and closes no
// socket; Close does, once.
func TestSessionRunClosesNothingCloseReleases(t *testing.T) {
	check := testenv.NoLeaks(t)
	before := len(testenv.OpenFDs(t))
	link, _ := streams.Lookup("link")
	s, err := Open(&Config{Streams: []streams.Stream{link}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, func(Report) {})
		done <- err
	}()
	<-s.Reading()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if open := len(testenv.OpenFDs(t)); open <= before {
		t.Fatalf("Run closed the session's sockets (%d descriptors open, %d before Open)", open, before)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	check()
}
