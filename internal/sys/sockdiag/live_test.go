package sockdiag

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// These tests run as root, each in a fresh network namespace
// (testenv.InNewNetNS), so that the namespace holds only their sockets.

var (
	group = [4]byte{239, 77, 0, 1}
	lo    = [4]byte{127, 0, 0, 1}
)

// mcastSocket opens a UDP socket bound to group:port, joined to it on lo,
// non-blocking, with the smallest receive buffer.
func mcastSocket(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	steps := []error{
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1), // the kernel's minimum
		unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: group}),
		unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: group, Ifindex: 1}),
	}
	if err := errors.Join(steps...); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sender returns a socket that sends multicast on lo.
func sender() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Address: lo, Ifindex: 1}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func send(fd, port, n int) error {
	for range n {
		if err := unix.Sendto(fd, make([]byte, 100), 0, &unix.SockaddrInet4{Port: port, Addr: group}); err != nil {
			return err
		}
	}
	return nil
}

func inode(fd int) uint32 {
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	return uint32(st.Ino)
}

func cookie(fd int) uint64 {
	c, _ := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	return c
}

func byInode(ss []Socket, ino uint32) (Socket, bool) {
	i := slices.IndexFunc(ss, func(s Socket) bool { return s.Inode == ino })
	if i < 0 {
		return Socket{}, false
	}
	return ss[i], true
}

// asUser runs fn with the calling thread's effective uid set to uid (the
// thread's alone: a raw system call, not Go's all-threads setresuid), then
// back to root. The caller's thread must be locked and is discarded after.
func asUser(uid int, fn func() error) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
		return e
	}
	err := fn()
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)); e != 0 {
		return errors.Join(err, e)
	}
	return err
}

func TestListLive(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		idle, err := mcastSocket(6001)
		if err != nil {
			return err
		}
		defer unix.Close(idle)
		var other int
		if err := asUser(65534, func() error { other, err = mcastSocket(6002); return err }); err != nil {
			return err
		}
		defer unix.Close(other)
		tx, err := sender()
		if err != nil {
			return err
		}
		defer unix.Close(tx)
		if err := send(tx, 6001, 200); err != nil { // far more than the smallest buffer holds
			return err
		}
		all, err := List(Filter{})
		if err != nil {
			return err
		}
		s, ok := byInode(all, inode(idle))
		if !ok {
			t.Fatalf("socket inode %d not listed: %+v", inode(idle), all)
		}
		if s.Local != netip.MustParseAddrPort("239.77.0.1:6001") || s.UID != 0 || s.Cookie != cookie(idle) || s.Cookie == 0 || s.Interface != 0 {
			t.Errorf("listed %+v; want 239.77.0.1:6001, uid 0, cookie %d", s, cookie(idle))
		}
		if !s.HasMem || s.RecvQueue == 0 || s.Drops == 0 || !s.Full() || s.Rcvbuf == 0 {
			t.Errorf("an unread socket sent 200 datagrams: %+v; want a full queue and drops", s)
		}
		o, ok := byInode(all, inode(other))
		if !ok || o.UID != 65534 || o.Drops != 0 || o.RecvQueue != 0 || o.Full() {
			t.Errorf("the other socket: %+v (listed %v); want uid 65534, nothing queued", o, ok)
		}
		// The port filter is applied by the kernel.
		only, err := List(Filter{LocalPort: 6002})
		if err != nil {
			return err
		}
		if len(only) != 1 || only[0].Inode != inode(other) {
			t.Errorf("port 6002: got %+v", only)
		}
		if uids, err := Owners(netip.MustParseAddrPort("239.77.0.1:6002")); err != nil || !slices.Equal(uids, []uint32{65534}) {
			t.Errorf("Owners(:6002) = %v, %v; want [65534]", uids, err)
		}
		return nil
	})
}

// Owners works for an unprivileged caller: what a receiver needs.
func TestOwnersUnprivileged(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 1021, Addr: lo}); err != nil {
			return err
		}
		var uids []uint32
		err = asUser(65534, func() error {
			uids, err = Owners(netip.MustParseAddrPort("127.0.0.1:1021"))
			return err
		})
		if err != nil {
			return err
		}
		if !slices.Equal(uids, []uint32{0}) {
			t.Errorf("Owners as uid 65534 = %v; want [0]", uids)
		}
		return nil
	})
}

func TestDestroyLive(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		c, err := Open()
		if err != nil {
			return err
		}
		defer c.Close()
		fd, err := mcastSocket(6003)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ss, err := c.List(Filter{LocalPort: 6003})
		if err != nil || len(ss) != 1 {
			t.Fatalf("list: %+v, %v", ss, err)
		}
		gone := ss[0]
		gone.Cookie++
		if err := c.Destroy(gone); !errors.Is(err, unix.ENOENT) {
			t.Errorf("Destroy with a wrong cookie: %v, want ENOENT", err)
		}
		if err := c.Destroy(ss[0]); err != nil {
			return err
		}
		if _, err := unix.Read(fd, make([]byte, 10)); !errors.Is(err, unix.ECONNABORTED) {
			t.Errorf("read after SOCK_DESTROY: %v, want ECONNABORTED", err)
		}
		// What the package documentation says: the socket is still bound
		// and joined, and multicast still reaches it.
		tx, err := sender()
		if err != nil {
			return err
		}
		defer unix.Close(tx)
		if err := send(tx, 6003, 1); err != nil {
			return err
		}
		if _, err := unix.Read(fd, make([]byte, 200)); err != nil {
			t.Errorf("read after SOCK_DESTROY and a send: %v; the kernel no longer delivers to a destroyed bound socket (update the documentation)", err)
		}
		if err := c.Close(); err != nil || c.Close() != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := c.List(Filter{}); err == nil {
			t.Error("List after Close succeeded")
		}
		return nil
	})
}

func TestDetachLive(t *testing.T) {
	testenv.InNewNetNS(t, func() error {
		var victim, keep int
		var err error
		// The victim belongs to uid 65534, as a hostile receiver would.
		if err := asUser(65534, func() error { victim, err = mcastSocket(6004); return err }); err != nil {
			return err
		}
		defer unix.Close(victim)
		if keep, err = mcastSocket(6004); err != nil {
			return err
		}
		defer unix.Close(keep)
		holders, err := Holders(map[uint32]bool{inode(victim): true})
		if err != nil {
			return err
		}
		h, ok := holders[inode(victim)]
		if !ok || h.PID != os.Getpid() || h.FD != victim {
			t.Fatalf("holders %+v; want pid %d fd %d", holders, os.Getpid(), victim)
		}
		if err := Detach(inode(keep), h); !errors.Is(err, ErrNotHeld) {
			t.Errorf("Detach of another inode: %v, want ErrNotHeld", err)
		}
		if err := Detach(inode(victim), h); err != nil {
			return err
		}
		tx, err := sender()
		if err != nil {
			return err
		}
		defer unix.Close(tx)
		if err := send(tx, 6004, 1); err != nil {
			return err
		}
		// Delivery to every member is done when sendto returns.
		if _, err := unix.Read(keep, make([]byte, 200)); err != nil {
			t.Errorf("the other socket: %v", err)
		}
		if _, err := unix.Read(victim, make([]byte, 200)); !errors.Is(err, unix.EAGAIN) {
			t.Errorf("the detached socket read: %v, want EAGAIN (nothing delivered)", err)
		}
		ss, err := List(Filter{LocalPort: 6004})
		if err != nil {
			return err
		}
		if s, _ := byInode(ss, inode(victim)); s.Interface != DetachedInterface {
			t.Errorf("listed %+v; want interface %d", s, DetachedInterface)
		}
		// Its owner cannot undo it.
		err = asUser(65534, func() error {
			return unix.SetsockoptInt(victim, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, 0)
		})
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("the owner unbinding: %v, want EPERM", err)
		}
		return nil
	})
}
