package kernel

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"

	"golang.org/x/sys/unix"
)

// A Socket blocks its reader's thread in recvmmsg (families that answer a
// NOOP) or epoll_wait (the others), never in the Go poller: a deadline set
// while it waits, and Close, must still end the wait. A socket with no
// group joined needs no privilege and never has anything to read.
func TestSocketDeadlineAndClose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		blocked func(testing.TB, int)
	}{
		{"route, recvmmsg", Config{ReadBuffer: 1 << 20}, testenv.WaitInRecvmmsg},
		{"generic, recvmmsg", Config{Family: unix.NETLINK_GENERIC, ReadBuffer: 1 << 20}, testenv.WaitInRecvmmsg},
		{"xfrm, recvmmsg", Config{Family: unix.NETLINK_XFRM, ReadBuffer: 1 << 20}, testenv.WaitInRecvmmsg},
		{"netfilter, recvmmsg", Config{Family: unix.NETLINK_NETFILTER, ReadBuffer: 1 << 20}, testenv.WaitInRecvmmsg},
		{"uevent, epoll_wait", Config{Family: unix.NETLINK_KOBJECT_UEVENT, Raw: true, ReadBuffer: 1 << 20}, testenv.WaitInEpollWait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := Open(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			ms := make([]Message, 4)
			read := func() <-chan error {
				t.Helper()
				done, tid := startRead(src, ms)
				tc.blocked(t, tid)
				return done
			}

			done := read()
			src.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			if err := waitRead(t, done, "deadline"); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("deadline: %v", err)
			}
			// A blocked recvmmsg was woken by the kernel's answer to the
			// socket's wake-up request (not by its own bound, maxBlock).
			if src.block && (src.wakes.Load() == 0 || src.wakeFailed.Load() != 0) {
				t.Fatalf("%d wake-ups answered, %d sends failed: want the kernel's answer", src.wakes.Load(), src.wakeFailed.Load())
			}
			src.SetReadDeadline(time.Time{})

			if src.block {
				// A near deadline is waited for in ppoll (SO_RCVTIMEO
				// counts in jiffies): the wake-up ends that wait too.
				defer func(p time.Duration) { preciseBelow = p }(preciseBelow)
				preciseBelow = 10 * time.Second // a window no machine misses
				src.SetReadDeadline(time.Now().Add(preciseBelow / 2))
				done, tid := startRead(src, ms)
				testenv.WaitInPpoll(t, tid)
				src.SetReadDeadline(time.Now().Add(time.Hour))
				testenv.WaitInRecvmmsg(t, tid) // woken, and waiting for the new one
				src.SetReadDeadline(time.Now())
				if err := waitRead(t, done, "deadline moved"); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("deadline moved while in ppoll: %v", err)
				}
				src.SetReadDeadline(time.Time{})
			}

			done = read()
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			if err := waitRead(t, done, "close"); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("after Close: %v, want net.ErrClosed", err)
			}
			if _, err := src.ReadBatch(ms); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadBatch after Close: %v", err)
			}
			if err := src.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			src.SetReadDeadline(time.Now()) // after Close: nothing happens
		})
	}
}

// The acknowledgement that wakes a blocked reader is never passed on as a
// message: woken with a later deadline, the reader goes back to waiting,
// and then returns the next real event, and only that.
func TestSocketWakeIsNotAMessage(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		src, err := Open(&Config{Groups: []uint32{unix.RTNLGRP_LINK}, ReadBuffer: 1 << 20})
		if err != nil {
			return err
		}
		defer src.Close()
		ms := make([]Message, 8)
		done, tid := startRead(src, ms)
		testenv.WaitInRecvmmsg(t, tid)
		src.SetReadDeadline(time.Now().Add(time.Hour)) // wakes the reader
		waitWoken(t, src, done)
		testenv.WaitInRecvmmsg(t, tid) // waiting again
		// An event: lo goes down (this thread is in the namespace).
		if err := testenv.SetLoUp(false); err != nil {
			return err
		}
		if err := waitRead(t, done, "event"); err != nil {
			return err
		}
		if ms[0].Group != unix.RTNLGRP_LINK || len(ms[0].Data) < unix.SizeofNlMsghdr {
			t.Fatalf("first message: group %d, %d bytes; want a link event", ms[0].Group, len(ms[0].Data))
		}
		if typ := binary.NativeEndian.Uint16(ms[0].Data[4:]); typ != unix.RTM_NEWLINK {
			t.Fatalf("first message has type %d, want RTM_NEWLINK", typ)
		}
		return nil
	})
}

// A signal ends a wait in recvmmsg bounded by SO_RCVTIMEO (the kernel
// restarts none), and waiting again must not count that timeout afresh:
// signals sent more often than it lasts, as the Go runtime sends SIGURG to
// preempt, would postpone the deadline for as long as they come. A reader
// signalled every few milliseconds still returns at its deadline, long
// before the signals stop.
func TestSocketDeadlineDespiteSignals(t *testing.T) {
	src, err := Open(&Config{ReadBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !src.block {
		t.Fatal("rtnetlink socket does not block in recvmmsg")
	}
	// Far enough for a wait in recvmmsg, with an SO_RCVTIMEO of ~1s,
	// longer than the gap between signals.
	deadline := time.Now().Add(maxBlock)
	src.SetReadDeadline(deadline)
	done, tid := startRead(src, make([]Message, 4))
	testenv.WaitInRecvmmsg(t, tid)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	const margin = 5 * time.Second
	giveUp := time.After(time.Until(deadline) + margin)
	sent := 0
	for {
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadBatch: %v, want os.ErrDeadlineExceeded", err)
			}
			if sent == 0 {
				t.Fatal("ReadBatch returned before any signal was sent")
			}
			return
		case <-tick.C:
			// The thread may have just returned and exited: ESRCH.
			if err := unix.Tgkill(unix.Getpid(), tid, unix.SIGURG); err != nil && err != unix.ESRCH {
				t.Fatalf("tgkill: %v", err)
			}
			sent++
		case <-giveUp:
			t.Fatalf("ReadBatch still blocked %v after its deadline, %d signals later: each started SO_RCVTIMEO over", margin, sent)
		}
	}
}

// recvBlocking sets SO_RCVTIMEO only when the timeout it wants differs
// from the last one it set (a system call saved per wait without a
// deadline). Seen from outside: a value set on the descriptor behind the
// Socket's back survives the next wait for the same timeout.
func TestSocketRcvTimeoSetOnlyWhenChanged(t *testing.T) {
	src, err := Open(&Config{ReadBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	done, tid := startRead(src, make([]Message, 4))
	testenv.WaitInRecvmmsg(t, tid) // with SO_RCVTIMEO set to maxBlock
	rcvTimeo := func() time.Duration {
		t.Helper()
		tv, err := unix.GetsockoptTimeval(src.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO)
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(tv.Nano())
	}
	if got := rcvTimeo(); got != maxBlock {
		t.Fatalf("SO_RCVTIMEO %v while blocked with no deadline, want %v", got, maxBlock)
	}
	const behind = 7 * time.Second // read by the next recvmmsg, not this one
	tv := unix.NsecToTimeval(int64(behind))
	if err := unix.SetsockoptTimeval(src.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	src.SetReadDeadline(time.Time{}) // no deadline still; wakes the reader
	waitWoken(t, src, done)
	testenv.WaitInRecvmmsg(t, tid) // blocked again, for the same maxBlock
	if got := rcvTimeo(); got != behind {
		t.Fatalf("SO_RCVTIMEO %v after a second wait with no deadline, want %v left alone: set again though unchanged", got, behind)
	}
	src.Close()
	if err := waitRead(t, done, "close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v, want net.ErrClosed", err)
	}
}

// startRead starts a ReadBatch on a thread of its own and returns its
// result channel and the thread's id.
func startRead(src *Socket, ms []Message) (<-chan error, int) {
	done := make(chan error, 1)
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine
		tid <- unix.Gettid()
		_, err := src.ReadBatch(ms)
		done <- err
	}()
	return done, <-tid
}

func waitRead(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: ReadBatch still blocked after 5s", what)
		return nil
	}
}

// waitWoken waits until src's reader has taken in the kernel's answer to a
// wake-up (done must not return meanwhile: a wake-up is no message).
func waitWoken(t *testing.T, src *Socket, done <-chan error) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); src.wakes.Load() == 0; {
		select {
		case err := <-done:
			t.Fatalf("ReadBatch returned on a wake-up: %v", err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatal("no wake-up acknowledged after 5s")
		}
	}
}
