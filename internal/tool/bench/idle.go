package bench

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/streams"
)

// openIdleSockets opens n UDP sockets owned by uid 65534, bound to the
// bridged stream's raw group and port and joined to it on lo, that nobody
// reads, and returns a function that closes them. The sockets are made on
// a thread of their own whose effective uid is changed alone (a raw
// setresuid, not Go's, which changes every thread), and which is thrown
// away after.
func openIdleSockets(n int) (closeAll func(), err error) {
	s, _ := streams.Lookup("ipv4-ifaddr")
	ap := streams.Map{}.Addr(s, streams.Raw)
	group := ap.Addr().As4()
	type result struct {
		fds []int
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var r result
		defer func() { res <- r }()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 65534, ^uintptr(0)); e != 0 {
			r.err = fmt.Errorf("bench: idle sockets: setresuid: %w", e)
			return
		}
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				r.err = fmt.Errorf("bench: idle socket %d: %w", len(r.fds), err)
				return
			}
			r.fds = append(r.fds, fd)
			if err := errors.Join(
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
				unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: group}),
				unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: group, Ifindex: 1}),
			); err != nil {
				r.err = fmt.Errorf("bench: idle socket %d on %s: %w", len(r.fds), ap, err)
				return
			}
		}
	}()
	r := <-res
	closeAll = func() {
		for _, fd := range r.fds {
			unix.Close(fd)
		}
	}
	if r.err != nil {
		closeAll()
		return nil, r.err
	}
	return closeAll, nil
}
