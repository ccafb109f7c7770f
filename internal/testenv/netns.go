package testenv

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// InNewNetNS runs fn on an OS thread in a network namespace of its own
// (unshare(CLONE_NEWNET)), with lo up, so that the sockets fn opens are off
// the host's network and its ports, and the namespace's settings (see
// SetPortStart) are fn's to change. The namespace lives as long as a
// socket in it; the thread is never reused, so fn may also change the
// thread's credentials. It needs root (RequireRoot) and fails t with fn's
// error.
func InNewNetNS(t testing.TB, fn func() error) {
	t.Helper()
	RequireRoot(t)
	errc := make(chan error, 1)
	go offMainThread(func() {
		inFn := false
		defer func() {
			if inFn { // fn called t.FailNow (t.Fatal), which said why
				errc <- errors.New("stopped by t.FailNow in the network namespace")
			}
		}()
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		if err := loUp(); err != nil {
			errc <- err
			return
		}
		inFn = true
		err := fn()
		inFn = false
		errc <- err
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// offMainThread runs fn, which locks its thread for good, on a thread
// other than the process's main thread: /proc/self/net shows the main
// thread's namespace, which must stay the process's.
func offMainThread(fn func()) {
	runtime.LockOSThread()
	if unix.Gettid() != unix.Getpid() {
		fn() // this lock too is for good: the thread exits with the goroutine
		return
	}
	// Locked to this goroutine, the main thread runs none of fn's.
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	<-done
	runtime.UnlockOSThread()
}

// SetPortStart sets net.ipv4.ip_unprivileged_port_start in the network
// namespace of the calling thread (as in InNewNetNS's fn): /proc/sys/net
// is the namespace of the thread that opens it.
func SetPortStart(port int) error {
	return os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte(strconv.Itoa(port)), 0)
}

// BecomeNobody makes the calling thread, and only it, uid and gid 65534
// with no supplementary groups, and so no capability: in InNewNetNS's fn,
// whose thread is never reused, a user other than root.
func BecomeNobody() error {
	for _, c := range []struct {
		nr   uintptr
		args [3]uintptr
	}{
		{unix.SYS_SETGROUPS, [3]uintptr{0, 0, 0}},
		{unix.SYS_SETRESGID, [3]uintptr{65534, 65534, 65534}},
		{unix.SYS_SETRESUID, [3]uintptr{65534, 65534, 65534}},
	} {
		if _, _, e := unix.RawSyscall(c.nr, c.args[0], c.args[1], c.args[2]); e != 0 {
			return fmt.Errorf("system call %d: %w", c.nr, e)
		}
	}
	if unix.Getuid() != 65534 || unix.Geteuid() != 65534 {
		return fmt.Errorf("still uid %d, euid %d", unix.Getuid(), unix.Geteuid())
	}
	return nil
}

// loUp brings the calling thread's loopback interface up.
func loUp() error { return SetLoUp(true) }

// SetLoUp brings the loopback interface of the calling thread's network
// namespace up or down (a link event, for a test in its own namespace).
func SetLoUp(up bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	flags := ifr.Uint16() &^ unix.IFF_UP
	if up {
		flags |= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up %v: %w", up, err)
	}
	return nil
}
