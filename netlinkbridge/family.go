package netlinkbridge

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/streams"
)

// A driver adapts the bridge to one netlink family: how its socket is
// opened, what the bridge learns from the messages it reads, and how an
// event reads in JSON. Everything else (framing, sequence numbers,
// heartbeats, overruns, sending) is the same for every family.
type driver interface {
	// open opens the kernel source for b's streams (New only).
	open(b *Bridge, cfg *Config) (Source, error)
	// watches reports whether group is joined for the driver's own use,
	// bridged or not.
	watches(b *Bridge, group uint32) bool
	// observe sees every message read, before it is forwarded.
	observe(b *Bridge, m *Message)
	// decode returns the JSON view of one message.
	decode(b *Bridge, m *Message) Decoded
}

func newDriver(family uint16) driver {
	switch family {
	case streams.FamilyRoute:
		return routeDriver{}
	case streams.FamilyUevent:
		return ueventDriver{}
	case streams.FamilyConnector:
		return &procDriver{}
	case streams.FamilyNetfilter:
		return conntrackDriver{}
	case streams.FamilyGeneric:
		return newGenlDriver()
	}
	return nil
}

func kernelConfig(b *Bridge, cfg *Config, family int) *KernelConfig {
	return &KernelConfig{Family: family, Groups: b.groups(), NetNS: cfg.NetNS, ReadBuffer: cfg.ReadBuffer, Batch: cfg.Batch}
}

// routeDriver: rtnetlink. JSON names interfaces, learnt from link events.
type routeDriver struct{}

func (routeDriver) open(b *Bridge, cfg *Config) (Source, error) {
	kc := kernelConfig(b, cfg, unix.NETLINK_ROUTE)
	kc.AllNSID = cfg.AllNSID
	return NewKernelSource(kc)
}

func (routeDriver) watches(b *Bridge, g uint32) bool { return b.json && g == unix.RTNLGRP_LINK }

func (routeDriver) observe(b *Bridge, m *Message) {
	// Links of peer namespaces (--all-nsid) have their own indexes.
	if b.json && m.Group == unix.RTNLGRP_LINK && !m.HasNSID {
		b.names.update(m.Data)
	}
}

func (routeDriver) decode(b *Bridge, m *Message) Decoded {
	if m.HasNSID {
		return Decode(m.Data, nil) // another namespace's interfaces: indexes only
	}
	return Decode(m.Data, b.names.lookup)
}

// ueventDriver: NETLINK_KOBJECT_UEVENT. Datagrams have no netlink header;
// udevd's group 2 is sent by udevd, not the kernel.
type ueventDriver struct{}

func (ueventDriver) open(b *Bridge, cfg *Config) (Source, error) {
	kc := kernelConfig(b, cfg, unix.NETLINK_KOBJECT_UEVENT)
	kc.Raw, kc.UserGroups = true, []uint32{2}
	return NewKernelSource(kc)
}

func (ueventDriver) watches(*Bridge, uint32) bool         { return false }
func (ueventDriver) observe(*Bridge, *Message)            {}
func (ueventDriver) decode(_ *Bridge, m *Message) Decoded { return DecodeUevent(m.Data) }

// conntrackDriver: NETLINK_NETFILTER's conntrack groups.
type conntrackDriver struct{}

func (conntrackDriver) open(b *Bridge, cfg *Config) (Source, error) {
	src, err := NewKernelSource(kernelConfig(b, cfg, unix.NETLINK_NETFILTER))
	if err != nil {
		return nil, fmt.Errorf("conntrack events: %w (they need CAP_NET_ADMIN and a kernel with nf_conntrack_netlink)", err)
	}
	return src, nil
}

func (conntrackDriver) watches(*Bridge, uint32) bool         { return false }
func (conntrackDriver) observe(*Bridge, *Message)            {}
func (conntrackDriver) decode(_ *Bridge, m *Message) Decoded { return DecodeConntrack(m.Data) }

// procNetInitIno is the inode number of the initial network namespace on
// kernels that fix it (PROC_NET_INIT_INO); older ones allocate it at boot.
const procNetInitIno = 0xEFFFFFF9

// InitialNetNS reports whether the network namespace netns (a file
// descriptor; 0: the calling thread's) is the host's initial one: by the
// kernel's fixed inode number, else against process 1's namespace. It
// returns an error when neither tells.
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
		return false, fmt.Errorf("cannot tell whether this is the initial network namespace: %w", err)
	}
	return own.Ino == init.Ino && own.Dev == init.Dev, nil
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

// readBuffer returns a source's granted receive buffer, if it says.
func readBuffer(src Source) int {
	if ks, ok := src.(interface{ ReadBuffer() int }); ok {
		return ks.ReadBuffer()
	}
	return 0
}
