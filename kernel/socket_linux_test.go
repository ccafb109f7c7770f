package kernel

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// A Socket blocks its reader's thread in epoll_wait, not in the Go
// poller: a deadline set while it waits, and Close, must still end the
// wait. An rtnetlink socket with no group joined needs no privilege and
// never has anything to read.
func TestSocketDeadlineAndClose(t *testing.T) {
	src, err := Open(&Config{ReadBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ms := make([]Message, 4)
	read := func() <-chan error {
		done := make(chan error, 1)
		go func() { _, err := src.ReadBatch(ms); done <- err }()
		return done
	}
	wait := func(done <-chan error, what string) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadBatch still blocked after 5s", what)
			return nil
		}
	}

	done := read()
	time.Sleep(20 * time.Millisecond) // blocked by now
	src.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if err := wait(done, "deadline"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	src.SetReadDeadline(time.Time{})

	done = read()
	time.Sleep(20 * time.Millisecond)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(done, "close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v, want net.ErrClosed", err)
	}
	if _, err := src.ReadBatch(ms); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	src.SetReadDeadline(time.Now()) // after Close: nothing happens
}
