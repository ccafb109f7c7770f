// Package privdrop switches a running Go program to an unprivileged user
// on every thread, keeping a chosen set of capabilities, and reads the
// privileges of a process or thread back from /proc.
//
// Capabilities, like the no_new_privs bit, belong to each thread, and a Go
// program has several: Drop changes every one of them with
// syscall.AllThreadsSyscall. That works only in a program built without
// cgo (CGO_ENABLED=0, or the netgo and osusergo tags and no other cgo
// package); elsewhere Drop returns ErrCgo having changed nothing.
package privdrop

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Caps is a set of capabilities: bit n is capability n (capability(7)).
type Caps uint64

// The capabilities nlmcast names.
const (
	Chown          Caps = 1 << 0
	DacOverride    Caps = 1 << 1
	DacReadSearch  Caps = 1 << 2
	Setgid         Caps = 1 << 6
	Setuid         Caps = 1 << 7
	NetBindService Caps = 1 << 10
	NetAdmin       Caps = 1 << 12
	NetRaw         Caps = 1 << 13
	SysPtrace      Caps = 1 << 19
	SysAdmin       Caps = 1 << 21
	AuditRead      Caps = 1 << 37
)

// capNames are the kernel's names, by number, up to CAP_CHECKPOINT_RESTORE.
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// String names the capabilities of c in increasing order, joined by ",";
// "none" for the empty set.
func (c Caps) String() string {
	if c == 0 {
		return "none"
	}
	var names []string
	for c != 0 {
		n := bits.TrailingZeros64(uint64(c))
		c &^= 1 << n
		if n < len(capNames) {
			names = append(names, capNames[n])
		} else {
			names = append(names, fmt.Sprintf("CAP_%d", n))
		}
	}
	return strings.Join(names, ",")
}

// ErrCgo is returned by Drop in a program that uses cgo, where Go cannot
// make a system call on every thread.
var ErrCgo = errors.New("privdrop: dropping privileges on every thread needs a program built without cgo (CGO_ENABLED=0)")

// User is who Drop switches to.
type User struct {
	UID, GID int
	// Groups are the supplementary groups; empty: none.
	Groups []int
}
