package kernel

import (
	"fmt"
	"os"
	"strings"

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
