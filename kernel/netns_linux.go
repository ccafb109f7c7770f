package kernel

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// procNetInitIno is the inode number of the initial network namespace on
// kernels that fix it (PROC_NET_INIT_INO); older ones allocate it at boot.
const procNetInitIno = 0xEFFFFFF9

// InitialNetNS reports whether the network namespace netns (a file
// descriptor; 0: the calling thread's) is the host's initial one: by the
// kernel's fixed inode number, else against process 1's namespace (where
// that is unreadable, on kernels that fix the number, any other inode is
// another namespace). It returns an error when neither tells.
func InitialNetNS(netns int) (bool, error) {
	var own, init unix.Stat_t
	var err error
	if netns > 0 {
		err = unix.Fstat(netns, &own)
	} else {
		err = unix.Stat("/proc/thread-self/ns/net", &own)
	}
	if err != nil {
		return false, fmt.Errorf("network namespace: %w", err)
	}
	if own.Ino == procNetInitIno {
		return true, nil
	}
	if err := unix.Stat("/proc/1/ns/net", &init); err != nil {
		if fixedInitIno() {
			return false, nil // another inode than the fixed one: another namespace
		}
		return false, fmt.Errorf("cannot tell whether this is the initial network namespace: %w", err)
	}
	return own.Ino == init.Ino && own.Dev == init.Dev, nil
}

// fixedInitIno reports whether the running kernel gives the initial
// network namespace the inode procNetInitIno (Linux 3.8 and later), so
// that any other inode is another namespace.
func fixedInitIno() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 3 || (major == 3 && minor >= 8)
}

// OpenNetNS opens a network namespace by name (as `ip netns add` makes
// them, under /run/netns) or by path (/proc/PID/ns/net, a bind mount). The
// caller closes the returned descriptor.
func OpenNetNS(nameOrPath string) (int, error) {
	p := nameOrPath
	if !strings.Contains(p, "/") {
		p = "/run/netns/" + p
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return -1, fmt.Errorf("network namespace %q: %s does not exist (list them with 'ip netns list', or give a path such as /proc/PID/ns/net)", nameOrPath, p)
		}
		return -1, fmt.Errorf("network namespace %q: open %s: %w", nameOrPath, p, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err == nil && st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("network namespace %q: %s is not a namespace file", nameOrPath, p)
	}
	return fd, nil
}

// NetNSID returns the id that the network namespace from (a file
// descriptor; 0: the calling thread's) gives the namespace peer (a file
// descriptor), as `ip netns list-id` shows it there: the id that events
// of peer carry there (NETLINK_LISTEN_ALL_NSID). A peer without an id gets
// one, chosen by the kernel (RTM_NEWNSID with NETNSA_NSID -1, as `ip netns
// set NAME auto` does), which needs CAP_NET_ADMIN. same is true, and the
// id meaningless, when peer is from itself.
func NetNSID(from, peer int) (id int32, same bool, err error) {
	var a, b unix.Stat_t
	if from > 0 {
		err = unix.Fstat(from, &a)
	} else {
		err = unix.Stat("/proc/thread-self/ns/net", &a)
	}
	if err == nil {
		err = unix.Fstat(peer, &b)
	}
	if err != nil {
		return 0, false, fmt.Errorf("network namespace id: %w", err)
	}
	if a.Ino == b.Ino && a.Dev == b.Dev {
		return 0, true, nil
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: from})
	if err != nil {
		return 0, false, fmt.Errorf("network namespace id: %w", err)
	}
	defer c.Close()
	for range 2 { // a second look when another process assigned one meanwhile
		id, err := getNSID(c, peer)
		if err != nil || id != unix.NETNSA_NSID_NOT_ASSIGNED {
			return id, false, err
		}
		err = nsidRequest(c, unix.RTM_NEWNSID, peer, unix.NETNSA_NSID_NOT_ASSIGNED, nil)
		switch {
		case errors.Is(err, unix.EEXIST):
		case errors.Is(err, unix.EPERM):
			return 0, false, fmt.Errorf("the namespace has no id here, and giving it one needs CAP_NET_ADMIN (or give it one first: ip netns set NAME auto): %w", err)
		case err != nil:
			return 0, false, fmt.Errorf("network namespace id: assign one (RTM_NEWNSID): %w", err)
		}
	}
	id, err = getNSID(c, peer)
	return id, false, err
}

// getNSID asks for peer's id over c (RTM_GETNSID with NETNSA_FD).
func getNSID(c *netlink.Conn, peer int) (int32, error) {
	id := int32(unix.NETNSA_NSID_NOT_ASSIGNED)
	found := false
	err := nsidRequest(c, unix.RTM_GETNSID, peer, 0, func(m netlink.Message) error {
		if m.Header.Type != unix.RTM_NEWNSID || len(m.Data) < 4 {
			return nil
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:]) // after struct rtgenmsg, aligned
		if err != nil {
			return err
		}
		for ad.Next() {
			if ad.Type() == unix.NETNSA_NSID {
				id, found = ad.Int32(), true
			}
		}
		return ad.Err()
	})
	if err == nil && !found {
		err = errors.New("no NETNSA_NSID in the kernel's answer")
	}
	if err != nil {
		return 0, fmt.Errorf("network namespace id (RTM_GETNSID): %w", err)
	}
	return id, nil
}

// nsidRequest sends an RTM_GETNSID or RTM_NEWNSID request about the
// namespace fd (with NETNSA_NSID when typ is RTM_NEWNSID) and hands each
// answer to fn.
func nsidRequest(c *netlink.Conn, typ uint16, fd int, nsid int32, fn func(netlink.Message) error) error {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.NETNSA_FD, uint32(fd))
	flags := netlink.Request
	if typ == unix.RTM_NEWNSID {
		ae.Int32(unix.NETNSA_NSID, nsid)
		flags |= netlink.Acknowledge
	}
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags},
		Data:   append([]byte{unix.AF_UNSPEC, 0, 0, 0}, attrs...), // struct rtgenmsg, aligned
	})
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if fn != nil {
			if err := fn(m); err != nil {
				return err
			}
		}
	}
	return nil
}
