package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/streams"
)

// Access is what the kernel answered when a socket without capabilities
// tried to join a generic netlink multicast group.
type Access uint8

const (
	// AccessUnknown: not probed. The group is not registered now, or the
	// probe could not run (see the error of ProbeGenl).
	AccessUnknown Access = iota
	// AccessOpen: the kernel let a socket without capabilities join.
	AccessOpen
	// AccessPrivileged: the kernel refused it (EPERM): the group carries a
	// capability flag (GENL_MCAST_CAP_NET_ADMIN, GENL_MCAST_CAP_SYS_ADMIN).
	AccessPrivileged
)

func (a Access) String() string {
	switch a {
	case AccessOpen:
		return "open"
	case AccessPrivileged:
		return "privileged"
	}
	return "unknown"
}

// ProbeGenlGroups tries to join each generic netlink multicast group (by
// number, as nlctrl lists them) from a socket of the network namespace
// netns (a file descriptor; 0: the caller's) opened by a thread whose
// effective capability set is empty, and says which the kernel refused.
//
// The kernel does not list a group's capability flags (nlctrl sends only
// names and numbers), but it checks them against the joining thread's
// effective capabilities when a socket joins, so trying is the only way to
// know. Capabilities are per thread on Linux: the probe locks a goroutine
// to its thread, drops that thread's effective set (capset(2), the
// permitted set is untouched), and lets the thread end with the goroutine,
// so no other thread of the process ever runs without them. With a netns,
// the thread enters it first (setns needs CAP_SYS_ADMIN). Groups answered
// with anything but success or EPERM (a group that went away) stay
// AccessUnknown.
func ProbeGenlGroups(netns int, groups []uint32) (map[uint32]Access, error) {
	type result struct {
		m   map[uint32]Access
		err error
	}
	done := make(chan result, 1)
	probe := func() {
		// Never unlocked: the runtime ends the thread with the goroutine,
		// capabilities dropped and namespace changed.
		runtime.LockOSThread()
		m, err := probeOnThisThread(netns, groups)
		done <- result{m, err}
	}
	go func() {
		// Not on the main thread: the runtime cannot end that one (it
		// would park it for good), and /proc/self and /proc/PID/status
		// show its namespace and capabilities as the process's.
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			probe() // this lock too is for good
			return
		}
		// Locked to this goroutine, the main thread runs none of probe's.
		finished := make(chan struct{})
		go func() { defer close(finished); probe() }()
		<-finished
		runtime.UnlockOSThread()
	}()
	r := <-done
	return r.m, r.err
}

// probeOnThisThread runs on a locked thread that is thrown away after.
func probeOnThisThread(netns int, groups []uint32) (map[uint32]Access, error) {
	if netns > 0 {
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			return nil, fmt.Errorf("probe generic netlink groups: setns: %w", err)
		}
	}
	if err := dropEffectiveCaps(); err != nil {
		return nil, fmt.Errorf("probe generic netlink groups: capset: %w", err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("probe generic netlink groups: %w", err)
	}
	defer unix.Close(fd)
	out := make(map[uint32]Access, len(groups))
	for _, g := range groups {
		err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g))
		switch {
		case err == nil:
			out[g] = AccessOpen
			// Leave it: nothing is ever read from this socket, and a
			// group left is not counted against the next probes.
			_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_DROP_MEMBERSHIP, int(g))
		case errors.Is(err, unix.EPERM):
			out[g] = AccessPrivileged
		default:
			out[g] = AccessUnknown
		}
	}
	return out, nil
}

// dropEffectiveCaps empties the calling thread's effective capability set.
func dropEffectiveCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: this thread
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[0].Effective, data[1].Effective = 0, 0
	return unix.Capset(&hdr, &data[0])
}

// ProbeGenl probes the generic netlink streams of ss registered in the
// network namespace netns (0: the caller's) with ProbeGenlGroups, and
// returns the answer by stream name. Streams of other families, and
// generic netlink groups not registered now, are left out (unknown). The
// error says why nothing could be probed. Groups are listed, then probed
// by number: a family that unregisters and registers again in between
// (with other numbers) is probed at the numbers it had.
func ProbeGenl(netns int, ss []streams.Stream) (map[string]Access, error) {
	var want []streams.Stream
	for _, s := range ss {
		if s.Family == streams.FamilyGeneric {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	fams, err := GenlFamilies(netns)
	if err != nil {
		return nil, err
	}
	ids := map[string]uint32{}
	var groups []uint32
	for _, s := range want {
		for _, f := range fams {
			for _, g := range f.Groups {
				if f.Name == s.GenlFamily && g.Name == s.GenlGroup {
					ids[s.Name] = g.ID
					groups = append(groups, g.ID)
				}
			}
		}
	}
	if len(groups) == 0 {
		return nil, nil
	}
	byID, err := ProbeGenlGroups(netns, groups)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Access, len(ids))
	for name, id := range ids {
		out[name] = byID[id]
	}
	return out, nil
}
