package sockdiag

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DetachedInterface is the interface index Detach binds a socket to. No
// interface has it (the kernel numbers interfaces from 1 up, and binding to
// an index does not check that it exists), so a socket bound to it receives
// nothing, multicast included; List shows it as Socket.Interface.
const DetachedInterface = 0x7fffffff

// A Holder is a descriptor of a process that refers to a socket.
type Holder struct {
	PID, FD int
}

// Holders finds, for each inode of want, one process descriptor that
// refers to it, reading /proc/PID/fd of every process (those it may not
// read are passed over). An inode no process holds is absent from the
// answer.
func Holders(want map[uint32]bool) (map[uint32]Holder, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	found := map[uint32]Holder{}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, f := range fds {
			l, err := os.Readlink(dir + f.Name())
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(l[len("socket:["):], "]"), 10, 32)
			if err != nil || !want[uint32(ino)] {
				continue
			}
			if _, ok := found[uint32(ino)]; ok {
				continue
			}
			if fd, err := strconv.Atoi(f.Name()); err == nil {
				found[uint32(ino)] = Holder{PID: pid, FD: fd}
			}
		}
		if len(found) == len(want) {
			break
		}
	}
	return found, nil
}

// ErrNotHeld is returned by Detach when the holder's descriptor no longer
// refers to the socket (closed, or reused for another file).
var ErrNotHeld = errors.New("sockdiag: the descriptor no longer refers to the socket")

// Detach stops the socket of inode, which h holds, from receiving: it
// takes a copy of the holder's descriptor (pidfd_getfd(2)) and binds the
// socket to DetachedInterface (SO_BINDTOIFINDEX), an interface that does
// not exist, so that the kernel delivers it nothing, multicast included,
// and spends nothing on it but a comparison. Unlike SOCK_DESTROY this
// reaches any one of many sockets bound to the same address and port.
// The owner keeps its descriptor and the socket's memberships; it cannot
// undo the binding without CAP_NET_RAW (the kernel lets an unprivileged
// socket bind to an interface only while it is bound to none).
//
// It needs CAP_SYS_PTRACE over the holder (PTRACE_MODE_ATTACH_REALCREDS;
// Yama's ptrace_scope 3 forbids it to everyone) and CAP_NET_RAW.
func Detach(inode uint32, h Holder) error {
	pidfd, err := unix.PidfdOpen(h.PID, 0)
	if err != nil {
		return fmt.Errorf("sockdiag: pidfd_open %d: %w", h.PID, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, h.FD, 0)
	if err != nil {
		return fmt.Errorf("sockdiag: pidfd_getfd pid %d fd %d: %w", h.PID, h.FD, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("sockdiag: fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != uint64(inode) {
		return ErrNotHeld
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, DetachedInterface); err != nil {
		return fmt.Errorf("sockdiag: SO_BINDTOIFINDEX pid %d fd %d: %w", h.PID, h.FD, err)
	}
	return nil
}
