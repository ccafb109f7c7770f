package kernel

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"

	"golang.org/x/sys/unix"
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
	// read starts a ReadBatch and returns once its thread is blocked in
	// epoll_wait, so that what follows wakes a reader that waits.
	read := func() <-chan error {
		t.Helper()
		done := make(chan error, 1)
		tid := make(chan int, 1)
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine
			tid <- unix.Gettid()
			_, err := src.ReadBatch(ms)
			done <- err
		}()
		testenv.WaitInEpollWait(t, <-tid)
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
	src.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if err := wait(done, "deadline"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	src.SetReadDeadline(time.Time{})

	done = read()
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
