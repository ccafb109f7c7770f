package testenv

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// WaitInEpollWait returns once the thread tid of this process is blocked
// in epoll_wait (or epoll_pwait), as /proc/self/task/TID/syscall shows, so
// that a test can wake a reader that is certainly waiting. The kernel
// sends no notice when a thread blocks, so it looks again after yielding;
// it fails t after 5 s. Where the file cannot be read it returns at once:
// the tests that use it pass either way, only less pointedly.
func WaitInEpollWait(t testing.TB, tid int) {
	t.Helper()
	if epollKnown {
		waitIn(t, tid, "epoll_wait", isEpollWait)
	}
}

// WaitInRecvmmsg is WaitInEpollWait for a thread blocked in recvmmsg.
func WaitInRecvmmsg(t testing.TB, tid int) {
	t.Helper()
	waitIn(t, tid, "recvmmsg", func(nr int) bool { return nr == unix.SYS_RECVMMSG })
}

// WaitInPpoll is WaitInEpollWait for a thread blocked in ppoll.
func WaitInPpoll(t testing.TB, tid int) {
	t.Helper()
	waitIn(t, tid, "ppoll", func(nr int) bool { return nr == unix.SYS_PPOLL })
}

func waitIn(t testing.TB, tid int, name string, is func(nr int) bool) {
	t.Helper()
	path := "/proc/self/task/" + strconv.Itoa(tid) + "/syscall"
	for end := time.Now().Add(5 * time.Second); ; {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("cannot tell whether thread %d waits: %v", tid, err)
			return
		}
		nr, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if n, err := strconv.Atoi(nr); err == nil && is(n) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("thread %d not blocked in %s after 5s: %s", tid, name, b)
		}
		runtime.Gosched()
	}
}

func isEpollWait(nr int) bool {
	return nr == unix.SYS_EPOLL_PWAIT || nr == unix.SYS_EPOLL_PWAIT2 || nr == epollWait
}
