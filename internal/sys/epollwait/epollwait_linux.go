package epollwait

import (
	"encoding/binary"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// YieldEvery is how long a goroutine looping on blocking system calls may
// go without yielding: half the Go runtime's time slice (forcePreemptNS,
// 10 ms). Any loop that only blocks in system calls needs the same: see
// Yielder.
const YieldEvery = 5 * time.Millisecond

// A Yielder tells a loop that blocks in system calls when to yield to the
// Go scheduler (runtime.Gosched), for the reason the package comment
// gives; Wait uses one, and so does any loop that blocks in a system call
// of its own. The zero Yielder is ready to use; it is not safe for
// concurrent use.
//
// The loop yields before a blocking call once YieldEvery has passed since
// it last did, unless its last wait began twice that ago, the runtime's
// whole time slice: since then it has slept through the slice, or run
// through it and been preempted by the runtime, and gains nothing from a
// yield. The yield would wake another thread to look for work and renew
// the scheduler's tick, so that the runtime's monitor, instead of taking
// the P of the blocked loop at once and sleeping, would poll (every 20 us
// at first, then less often) for 10 ms after every wake-up. At 20
// wake-ups a second that polling was half a bridge's CPU time (LATENCY.md,
// "Why the monitor polled, and the CPU it cost").
type Yielder struct {
	since time.Time // when the loop last yielded, or let a quiet wait stand for a yield
	last  time.Time // when BeforeWait was last called: the last wait began
}

// BeforeWait is called just before each blocking call, and yields when
// it is due (see Yielder).
func (y *Yielder) BeforeWait() {
	now := time.Now()
	quiet := now.Sub(y.last) >= 2*YieldEvery
	y.last = now
	if now.Sub(y.since) >= YieldEvery {
		if !quiet {
			runtime.Gosched()
			now = time.Now()
		}
		y.since = now
	}
}

// ErrDeadline is returned by Wait once the deadline has passed: it is
// os.ErrDeadlineExceeded, as a poller-managed socket returns.
var ErrDeadline = os.ErrDeadlineExceeded

// A Waiter is an epoll set of readable-level-triggered descriptors plus an
// eventfd that Wake signals. Wait may be called from one goroutine at a
// time; Add, Del, Wake and SetDeadline from any, even after Close (they do
// nothing then); Close once no Wait runs.
type Waiter struct {
	epfd, wakefd int
	events       []unix.EpollEvent
	deadline     atomic.Int64 // unix ns; 0: none
	yield        Yielder

	mu     sync.RWMutex // held for writing by Close: no descriptor is used once closed
	closed bool
}

// New returns a Waiter whose Wait reports up to n ready descriptors.
func New(n int) (*Waiter, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	w := &Waiter{epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, max(n, 1)+1)}
	if err := w.Add(wakefd); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Add watches fd for readability.
func (w *Waiter) Add(fd int) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return net.ErrClosed
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev))
}

// Del stops watching fd. Call it before closing fd, so that a stale event
// cannot name a reused descriptor.
func (w *Waiter) Del(fd int) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return net.ErrClosed
	}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil))
}

// Wake makes a blocked Wait, or the next one, return at once with no
// descriptors ready.
func (w *Waiter) Wake() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(w.wakefd, one[:])
}

// SetDeadline makes Wait return ErrDeadline once t has passed with nothing
// ready; the zero time means none. A blocked Wait sees the new deadline.
func (w *Waiter) SetDeadline(t time.Time) {
	if t.IsZero() {
		w.deadline.Store(0)
	} else {
		w.deadline.Store(t.UnixNano())
	}
	w.Wake()
}

// Wait blocks until a watched descriptor is readable, Wake is called, or
// the deadline passes: SetDeadline's or until, whichever is earlier (the
// zero until adds none; unlike SetDeadline it costs no system call). It
// returns the ready descriptors' events, valid until the next Wait; none
// after a Wake.
func (w *Waiter) Wait(until time.Time) ([]unix.EpollEvent, error) {
	w.yield.BeforeWait()
	for {
		timeout := -1
		d := w.deadline.Load()
		if !until.IsZero() && (d == 0 || until.UnixNano() < d) {
			d = until.UnixNano()
		}
		if d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return nil, ErrDeadline
			}
			timeout = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		n, err := unix.EpollWait(w.epfd, w.events, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("epoll_wait", err)
		}
		ready := w.events[:0]
		for _, ev := range w.events[:n] {
			if ev.Fd == int32(w.wakefd) {
				var buf [8]byte
				_, _ = unix.Read(w.wakefd, buf[:])
				continue
			}
			ready = append(ready, ev)
		}
		if len(ready) > 0 || n > 0 {
			return ready, nil // readable, or woken
		}
		// A timeout: loop to tell a passed deadline from a rounded one.
	}
}

// Close releases the epoll set and the eventfd. It must not race a Wait:
// Wake the waiter and wait for it to return first. Closing twice is a
// no-op.
func (w *Waiter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err1 := unix.Close(w.epfd)
	err2 := unix.Close(w.wakefd)
	if err1 != nil {
		return os.NewSyscallError("close", err1)
	}
	return os.NewSyscallError("close", err2)
}
