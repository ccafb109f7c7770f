package epollwait

import (
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"

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

// waited is what a Wait returned, and when.
type waited struct {
	ready []unix.EpollEvent
	err   error
	at    time.Time
}

// waitOn runs wait on a goroutine of its own and returns once that
// goroutine's thread is blocked in epoll_wait, so that what the test does
// next happens while Wait waits.
func waitOn(t *testing.T, wait func() ([]unix.EpollEvent, error)) <-chan waited {
	t.Helper()
	done := make(chan waited, 1)
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine
		tid <- unix.Gettid()
		ready, err := wait()
		done <- waited{slices.Clone(ready), err, time.Now()}
	}()
	testenv.WaitInEpollWait(t, <-tid)
	return done
}

// result returns what a waitOn's Wait returned, failing t after 5 s.
func result(t *testing.T, done <-chan waited) waited {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still blocked after 5s")
		return waited{}
	}
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
	done := waitOn(t, func() ([]unix.EpollEvent, error) { return w.Wait(time.Now().Add(5 * time.Second)) })
	unix.Write(w1, []byte("x"))
	res := result(t, done)
	ready, err := res.ready, res.err
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
	start := time.Now()
	done := waitOn(t, func() ([]unix.EpollEvent, error) { return w.Wait(time.Time{}) })
	w.Wake()
	if res := result(t, done); res.err != nil || len(res.ready) != 0 {
		t.Fatalf("woken: ready %v, err %v", res.ready, res.err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("woken after %v", d)
	}

	// A deadline set while blocked is seen; the earlier of it and until
	// applies.
	// The deadline is set once Wait blocks, 50ms after start.
	start = time.Now()
	done = waitOn(t, func() ([]unix.EpollEvent, error) {
		for {
			_, err := w.Wait(time.Now().Add(10 * time.Second))
			if errors.Is(err, os.ErrDeadlineExceeded) || err != nil || time.Since(start) > 5*time.Second {
				return nil, err
			}
		}
	})
	w.SetDeadline(start.Add(50 * time.Millisecond))
	res := result(t, done)
	if !errors.Is(res.err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v after %v", res.err, res.at.Sub(start))
	}
	if d := res.at.Sub(start); d < 45*time.Millisecond || d > 3*time.Second {
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

// tickingWaiter returns a Waiter watching a timerfd that fires every
// interval, and the timerfd (read it to rearm the level), both closed when
// the test ends.
func tickingWaiter(t *testing.T, every time.Duration) (*Waiter, int) {
	t.Helper()
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(tfd) })
	ts := unix.NsecToTimespec(int64(every))
	if err := unix.TimerfdSettime(tfd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		t.Fatal(err)
	}
	w := newWaiter(t)
	if err := w.Add(tfd); err != nil {
		t.Fatal(err)
	}
	return w, tfd
}

// threadSwitches sums the voluntary context switches of every thread of
// this process but the one with id except.
func threadSwitches(t *testing.T, except int) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skip("no /proc/self/task:", err)
	}
	sum := 0
	for _, d := range dirs {
		if d.Name() == strconv.Itoa(except) {
			continue
		}
		b, err := os.ReadFile("/proc/self/task/" + d.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				sum += n
			}
		}
	}
	return sum
}

// A goroutine that does nothing but Wait and read must not look to the Go
// runtime like one that never yields: if it did, the runtime's monitor
// thread would poll every 20 us and hand the P to other threads at every
// Wait, and the process's other threads would wake thousands of times.
func TestWaitLoopLeavesOtherThreadsAsleep(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, tfd := tickingWaiter(t, 100*time.Microsecond)
	const loop = 400 * time.Millisecond
	self := unix.Gettid()
	before := threadSwitches(t, self)
	var buf [8]byte
	wakes := 0
	for end := time.Now().Add(loop); time.Now().Before(end); {
		if _, err := w.Wait(time.Time{}); err != nil {
			t.Fatal(err)
		}
		unix.Read(tfd, buf[:])
		wakes++
	}
	others := threadSwitches(t, self) - before
	t.Logf("%d wake-ups of the waiting thread, %d of the others", wakes, others)
	// Without the yield they woke more often than the waiting thread
	// (4,564 times against 3,992); with it, about 250 times on a quiet
	// machine (the monitor's own ticks and a thread woken by each yield),
	// and up to 1,300 against 3,450 with both cores busy with other
	// processes, which delay every thread: half the waits still tells the
	// two apart.
	if others > wakes/2 {
		t.Errorf("other threads woke %d times while one thread waited %d times: the runtime takes the loop for one that never yields", others, wakes)
	}
}

// A loop woken less often than the runtime's time slice must not yield at
// every Wait: each yield wakes another thread, and the scheduler's fresh
// tick keeps the runtime's monitor polling (every 20 us at first, then
// less often) for 10 ms after each wake-up, where a loop that did not
// yield lets it sleep at once.
func TestSparseWaitLoopLeavesOtherThreadsAsleep(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w, tfd := tickingWaiter(t, 4*YieldEvery)
	const wakes = 25
	self := unix.Gettid()
	before := threadSwitches(t, self)
	var buf [8]byte
	for range wakes {
		if _, err := w.Wait(time.Time{}); err != nil {
			t.Fatal(err)
		}
		unix.Read(tfd, buf[:])
	}
	others := threadSwitches(t, self) - before
	t.Logf("%d wake-ups of the waiting thread, %d of the others", wakes, others)
	// 50 on a quiet machine, 93 to 171 with -race (under load too); with
	// a yield at every wait, 1,414 to 1,474.
	if others > 20*wakes {
		t.Errorf("other threads woke %d times while one thread waited %d times, 20 ms apart: the loop yields at every wait", others, wakes)
	}
}
