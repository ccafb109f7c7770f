package epollwait

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pair(t *testing.T) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func newWaiter(t *testing.T) *Waiter {
	t.Helper()
	w, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestWaitReportsReadable(t *testing.T) {
	w := newWaiter(t)
	r1, w1 := pair(t)
	r2, _ := pair(t)
	for _, fd := range []int{r1, r2} {
		if err := w.Add(fd); err != nil {
			t.Fatal(err)
		}
	}
	go func() { time.Sleep(20 * time.Millisecond); unix.Write(w1, []byte("x")) }()
	ready, err := w.Wait(time.Now().Add(5 * time.Second))
	if err != nil || len(ready) != 1 || ready[0].Fd != int32(r1) {
		t.Fatalf("ready %v, err %v; want only %d", ready, err, r1)
	}
	// Level-triggered: still readable until read.
	if ready, err := w.Wait(time.Time{}); err != nil || len(ready) != 1 {
		t.Fatalf("again: ready %v, err %v", ready, err)
	}
	if err := w.Del(r1); err != nil {
		t.Fatal(err)
	}
	if ready, err := w.Wait(time.Now().Add(30 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after Del: ready %v, err %v; want the deadline", ready, err)
	}
}

func TestWakeAndDeadlines(t *testing.T) {
	w := newWaiter(t)
	r, _ := pair(t)
	if err := w.Add(r); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(20 * time.Millisecond); w.Wake() }()
	start := time.Now()
	if ready, err := w.Wait(time.Time{}); err != nil || len(ready) != 0 {
		t.Fatalf("woken: ready %v, err %v", ready, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("woken after %v", d)
	}

	// A deadline set while blocked is seen; the earlier of it and until
	// applies.
	go func() { time.Sleep(20 * time.Millisecond); w.SetDeadline(time.Now().Add(30 * time.Millisecond)) }()
	start = time.Now()
	for {
		_, err := w.Wait(time.Now().Add(10 * time.Second))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil || time.Since(start) > 5*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
	}
	if d := time.Since(start); d < 45*time.Millisecond || d > 3*time.Second {
		t.Fatalf("deadline passed after %v, want about 50ms", d)
	}
	w.SetDeadline(time.Time{}) // wakes the next Wait, which returns nothing
	if ready, err := w.Wait(time.Time{}); err != nil || len(ready) != 0 {
		t.Fatalf("woken by SetDeadline: ready %v, err %v", ready, err)
	}
	start = time.Now()
	if _, err := w.Wait(time.Now().Add(40 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("until: err %v", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("until passed after %v, want 40ms", d)
	}
	w.SetDeadline(time.Unix(1, 0))
	if _, err := w.Wait(time.Time{}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a past deadline: err %v", err)
	}
}

// After Close, Wake, SetDeadline, Add and Del touch no descriptor (one may
// have been reused by then) and Close again is a no-op.
func TestAfterClose(t *testing.T) {
	w, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := pair(t)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Reuse the freed numbers, as any open would.
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	w.Wake()
	w.SetDeadline(time.Now())
	if err := w.Add(r); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if err := w.Del(r); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Del after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Nothing was written into the descriptors that took the old numbers.
	var buf [8]byte
	if n, err := unix.Read(fds[0], buf[:]); err != unix.EAGAIN {
		t.Errorf("a reused descriptor got %d bytes (%v)", n, err)
	}
}
