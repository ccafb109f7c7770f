package compare

import (
	"context"
	"runtime"
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

// While Run compares, each path's reader, Run's loop and one more have a
// Go processor each, so that no reader waits for another to stamp an
// arrival; GOMAXPROCS is as it was once Run returns.
func TestSessionRunGivesEachReaderAProcessor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	link, _ := streams.Lookup("link")
	s, err := Open(&Config{Streams: []streams.Stream{link}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, func(Report) {})
		done <- err
	}()
	<-s.Reading()
	during := runtime.GOMAXPROCS(0)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if during < MinProcs {
		t.Errorf("GOMAXPROCS %d while Run compares, want at least %d", during, MinProcs)
	}
	if after := runtime.GOMAXPROCS(0); after != 1 {
		t.Errorf("GOMAXPROCS %d after Run, want 1 as before", after)
	}
}
