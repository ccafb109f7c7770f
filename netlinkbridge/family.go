package netlinkbridge

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/kernel"
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
	observe(b *Bridge, m *kernel.Message)
	// decode returns the JSON view of one message.
	decode(b *Bridge, m *kernel.Message) decode.Result
}

// A jsonAppender is a driver that can also write a message's JSON view
// into buffers the bridge reuses, what decode returns, so that the event
// path does not allocate.
type jsonAppender interface {
	appendJSON(b *Bridge, m *kernel.Message, summary, event []byte) ([]byte, []byte)
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
		return netfilterDriver{}
	case streams.FamilyGeneric:
		return newGenlDriver()
	case streams.FamilyXfrm:
		return xfrmDriver{}
	case streams.FamilyAudit:
		return auditDriver{}
	case streams.FamilySELinux:
		return plainDriver{family: unix.NETLINK_SELINUX, what: "SELinux notices", initialOnly: true,
			needs: "a kernel with SELinux enabled", dec: decode.SELinux}
	case streams.FamilyRDMA:
		return plainDriver{family: unix.NETLINK_RDMA, what: "RDMA notices",
			needs: "a kernel with RDMA (CONFIG_INFINIBAND) and its monitor group (Linux 6.13+)", dec: decode.RDMA}
	}
	return nil
}

func kernelConfig(b *Bridge, cfg *Config, family int) *kernel.Config {
	return &kernel.Config{Family: family, Groups: b.groups(), NetNS: cfg.NetNS, ReadBuffer: cfg.ReadBuffer, Batch: cfg.Batch,
		PartialJoin: true} // a group refused is reported (Bridge.Refused); the others go on
}

// routeDriver: rtnetlink. JSON names interfaces, learnt from link events.
type routeDriver struct{}

func (routeDriver) open(b *Bridge, cfg *Config) (Source, error) {
	kc := kernelConfig(b, cfg, unix.NETLINK_ROUTE)
	kc.AllNSID = cfg.AllNSID
	return kernel.Open(kc)
}

func (routeDriver) watches(b *Bridge, g uint32) bool { return b.json && g == unix.RTNLGRP_LINK }

func (routeDriver) observe(b *Bridge, m *kernel.Message) {
	// Links of peer namespaces (--all-nsid) have their own indexes.
	if b.json && m.Group == unix.RTNLGRP_LINK && !m.HasNSID {
		b.names.Update(m.Data)
	}
}

func (routeDriver) decode(b *Bridge, m *kernel.Message) decode.Result {
	return decode.Route(m.Data, routeNames(b, m))
}

// appendJSON writes what decode returns into the bridge's buffers: for
// the everyday messages (links, addresses, routes, neighbours) without
// allocating (decode.AppendRoute).
func (routeDriver) appendJSON(b *Bridge, m *kernel.Message, summary, event []byte) ([]byte, []byte) {
	return decode.AppendRoute(summary, event, m.Data, routeNames(b, m))
}

// routeNames names the interfaces of m's namespace: none for another
// namespace's events (AllNSID), which carry indexes only.
func routeNames(b *Bridge, m *kernel.Message) decode.IfNames {
	if m.HasNSID {
		return nil
	}
	return b.lookup
}

// ueventDriver: NETLINK_KOBJECT_UEVENT. Datagrams have no netlink header;
// udevd's group 2 is sent by udevd, not the kernel.
type ueventDriver struct{}

func (ueventDriver) open(b *Bridge, cfg *Config) (Source, error) {
	kc := kernelConfig(b, cfg, unix.NETLINK_KOBJECT_UEVENT)
	kc.Raw, kc.UserGroups = true, []uint32{2}
	return kernel.Open(kc)
}

func (ueventDriver) watches(*Bridge, uint32) bool     { return false }
func (ueventDriver) observe(*Bridge, *kernel.Message) {}
func (ueventDriver) decode(_ *Bridge, m *kernel.Message) decode.Result {
	return decode.Uevent(m.Data)
}

// netfilterDriver: NETLINK_NETFILTER's groups: conntrack, nftables,
// nfacct quotas. Each message is decoded by its subsystem.
type netfilterDriver struct{}

func (netfilterDriver) open(b *Bridge, cfg *Config) (Source, error) {
	src, err := kernel.Open(kernelConfig(b, cfg, unix.NETLINK_NETFILTER))
	if err != nil {
		return nil, fmt.Errorf("netfilter events: %w (they need CAP_NET_ADMIN, and a kernel with nf_conntrack_netlink for conntrack, nf_tables for nftables)", err)
	}
	return src, nil
}

func (netfilterDriver) watches(*Bridge, uint32) bool { return false }

// observe gives nfacct's over-quota notices their group: the kernel sends
// them with netlink_broadcast alone, which leaves the group that
// NETLINK_PKTINFO reports at 0.
func (netfilterDriver) observe(_ *Bridge, m *kernel.Message) {
	const nfnlSubsysAcct, nfnlgrpAcctQuota = 7, 8
	if m.Group == 0 && len(m.Data) >= unix.SizeofNlMsghdr && binary.NativeEndian.Uint16(m.Data[4:])>>8 == nfnlSubsysAcct {
		m.Group = nfnlgrpAcctQuota
	}
}
func (netfilterDriver) decode(_ *Bridge, m *kernel.Message) decode.Result {
	return decode.Netfilter(m.Data)
}

// xfrmDriver: NETLINK_XFRM (IPsec). SA messages carry key material:
// observe zeroes it in the message itself before it is framed, raw or
// JSON, unless Config.XfrmKeys keeps it for a sealed stream.
type xfrmDriver struct{}

func (xfrmDriver) open(b *Bridge, cfg *Config) (Source, error) {
	src, err := kernel.Open(kernelConfig(b, cfg, unix.NETLINK_XFRM))
	if err != nil {
		return nil, fmt.Errorf("xfrm events: %w (they need CAP_NET_ADMIN and a kernel with CONFIG_XFRM_USER)", err)
	}
	return src, nil
}

func (xfrmDriver) watches(*Bridge, uint32) bool { return false }

// observe redacts keys, in place: m.Data is the bridge's read buffer,
// passed on to nothing but this message's frames.
func (xfrmDriver) observe(b *Bridge, m *kernel.Message) {
	if m.Group < uint32(len(b.byGroup)) {
		if st := b.byGroup[m.Group]; st != nil && b.xfrmKeys && st.seal != nil {
			return
		}
	}
	if decode.RedactXfrm(m.Data) > 0 {
		b.xfrmRedacted.Add(1)
	}
}

func (xfrmDriver) decode(_ *Bridge, m *kernel.Message) decode.Result {
	return decode.Xfrm(m.Data, false) // never keys in JSON: sealed streams have none
}

// auditDriver: NETLINK_AUDIT's read-only multicast group
// (AUDIT_NLGRP_READLOG), which the kernel fills from the initial network
// namespace only.
type auditDriver struct{}

func (auditDriver) open(b *Bridge, cfg *Config) (Source, error) {
	initial, err := kernel.InitialNetNS(cfg.NetNS)
	if err != nil {
		b.log.Warn("audit records arrive only in the initial network namespace, and this one may not be it", "err", err)
	} else if !initial {
		return nil, errors.New("audit records (stream audit) are multicast only in the host's initial network namespace; " +
			"this bridge reads from another one: bridge audit from a bridge running in the initial namespace, without --netns")
	}
	src, err := kernel.Open(kernelConfig(b, cfg, unix.NETLINK_AUDIT))
	if err != nil {
		return nil, fmt.Errorf("audit records: %w (joining AUDIT_NLGRP_READLOG needs CAP_AUDIT_READ and a kernel with CONFIG_AUDIT)", err)
	}
	return src, nil
}

func (auditDriver) watches(*Bridge, uint32) bool                      { return false }
func (auditDriver) observe(*Bridge, *kernel.Message)                  {}
func (auditDriver) decode(_ *Bridge, m *kernel.Message) decode.Result { return decode.Audit(m.Data) }

// plainDriver: a family whose messages need nothing of the bridge but
// their decoder (SELinux, RDMA).
type plainDriver struct {
	family      int
	what, needs string // for errors: "SELinux notices", what it takes
	initialOnly bool   // the kernel has the family in the initial network namespace only
	dec         func([]byte) decode.Result
}

func (d plainDriver) open(b *Bridge, cfg *Config) (Source, error) {
	if d.initialOnly {
		if initial, err := kernel.InitialNetNS(cfg.NetNS); err == nil && !initial {
			return nil, fmt.Errorf("%s come only in the host's initial network namespace; this bridge reads from another one: "+
				"bridge them from a bridge running in the initial namespace, without --netns", d.what)
		}
	}
	src, err := kernel.Open(kernelConfig(b, cfg, d.family))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (they need %s)", d.what, err, d.needs)
	}
	return src, nil
}

func (plainDriver) watches(*Bridge, uint32) bool                        { return false }
func (plainDriver) observe(*Bridge, *kernel.Message)                    {}
func (d plainDriver) decode(_ *Bridge, m *kernel.Message) decode.Result { return d.dec(m.Data) }

// readBuffer returns a source's granted receive buffer, if it says.
func readBuffer(src Source) int {
	if ks, ok := src.(interface{ ReadBuffer() int }); ok {
		return ks.ReadBuffer()
	}
	return 0
}
