package privdrop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Drop switches every thread of the process to u (supplementary groups,
// then real, effective and saved gid and uid), keeps of its capabilities
// only keep (effective and permitted; inheritable and ambient are
// cleared), and sets no_new_privs, so that nothing it executes can gain a
// privilege. The process must hold CAP_SETUID and CAP_SETGID (root does)
// and every capability of keep. It then checks every thread against what
// it asked for.
//
// In a program that uses cgo Drop returns ErrCgo and changes nothing. On
// any other error the threads may be left half changed: the program must
// exit.
func Drop(u User, keep Caps) error {
	// A cheap call that fails at once, changing nothing, where
	// AllThreadsSyscall is not available.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		if errors.Is(err, syscall.ENOTSUP) {
			return ErrCgo
		}
		return fmt.Errorf("privdrop: prctl(PR_SET_KEEPCAPS): %w", err)
	}
	groups := u.Groups
	if groups == nil {
		groups = []int{}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("privdrop: setgroups: %w", err)
	}
	if err := syscall.Setresgid(u.GID, u.GID, u.GID); err != nil {
		return fmt.Errorf("privdrop: setresgid(%d): %w", u.GID, err)
	}
	if err := syscall.Setresuid(u.UID, u.UID, u.UID); err != nil {
		return fmt.Errorf("privdrop: setresuid(%d): %w", u.UID, err)
	}
	if err := SetCaps(keep); err != nil {
		return err
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		return fmt.Errorf("privdrop: prctl(PR_SET_KEEPCAPS, 0): %w", err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("privdrop: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	return Check(os.Getpid(), Status{UID: u.UID, GID: u.GID, Effective: keep, Permitted: keep, NoNewPrivs: true})
}

// Trim keeps of every thread's capabilities only keep (effective and
// permitted; inheritable and ambient are cleared) without changing users,
// and sets no_new_privs: for a program started without root, with the
// capabilities it needs to start (as systemd's AmbientCapabilities gives
// them). keep must be a subset of what it holds. It returns ErrCgo in a
// program that uses cgo, having changed nothing; on any other error the
// program must exit.
func Trim(keep Caps) error {
	if err := SetCaps(keep); err != nil {
		return err
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("privdrop: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	self, err := ReadStatus("/proc/self/status")
	if err != nil {
		return err
	}
	return Check(os.Getpid(), Status{UID: self.UID, GID: self.GID, Effective: keep, Permitted: keep, NoNewPrivs: true})
}

// SetCaps sets the effective and permitted capabilities of every thread to
// keep, and the inheritable (and so the ambient) ones to none, without
// changing users. keep must be a subset of what every thread holds.
func SetCaps(keep Caps) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i].Effective = uint32(keep >> (32 * i))
		data[i].Permitted = uint32(keep >> (32 * i))
	}
	err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if errors.Is(err, syscall.ENOTSUP) {
		return ErrCgo
	}
	if err != nil {
		return fmt.Errorf("privdrop: capset(%v): %w", keep, err)
	}
	return nil
}

func allThreads(trap, a1, a2, a3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3); e != 0 {
		return e
	}
	return nil
}

// Effective returns the calling thread's effective capabilities.
func Effective() (Caps, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("privdrop: capget: %w", err)
	}
	return Caps(data[0].Effective) | Caps(data[1].Effective)<<32, nil
}

// Check reads the status of every thread of process pid and returns an
// error naming the first that differs from want.
func Check(pid int, want Status) error {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("privdrop: no threads of process %d in /proc (%v)", pid, err)
	}
	for _, path := range tasks {
		st, err := ReadStatus(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited
			}
			return err
		}
		if d := st.Diff(want); d != "" {
			return fmt.Errorf("privdrop: %s: %s", path, d)
		}
	}
	return nil
}
