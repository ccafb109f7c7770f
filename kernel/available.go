package kernel

import (
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/streams"
)

// Availability says whether this kernel, seen from the calling thread's
// network namespace, can provide a stream now.
type Availability struct {
	Stream streams.Stream
	OK     bool
	Group  uint32 // the generic netlink group number, when resolved
	Note   string // why not, or a condition
	// Access is what the kernel answered a socket without capabilities
	// that tried to join the generic netlink group (ProbeGenlGroups):
	// AccessPrivileged makes the stream privileged whatever its catalog
	// mark. AccessUnknown for other families and for groups not
	// registered now.
	Access Access
}

// Available checks every catalog stream and every generic netlink group
// the kernel has registered (those outside the catalog are added, with
// their hashed IDs), and probes which of those groups a socket without
// capabilities may join (ProbeGenlGroups). It opens sockets but joins
// nothing that needs privilege.
func Available() []Availability {
	var out []Availability
	have := func(family int) error {
		c, err := netlink.Dial(family, nil)
		if err == nil {
			c.Close()
		}
		return err
	}
	var fams []genetlink.Family
	genlErr := func() error {
		c, err := genetlink.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		fams, err = c.ListFamilies()
		return err
	}()
	var ids []uint32
	for _, f := range fams {
		for _, g := range f.Groups {
			ids = append(ids, g.ID)
		}
	}
	var access map[uint32]Access
	var probeErr error
	if len(ids) > 0 {
		access, probeErr = ProbeGenlGroups(0, ids)
	}
	probed := func(a *Availability) {
		a.Access = access[a.Group]
		if probeErr != nil {
			a.Note = join(a.Note, "privilege not probed: "+probeErr.Error())
		}
	}
	inCatalog := map[string]bool{}
	for _, s := range streams.All() {
		a := Availability{Stream: s, OK: true}
		switch s.Family {
		case streams.FamilyUevent:
			if err := have(unix.NETLINK_KOBJECT_UEVENT); err != nil {
				a.OK, a.Note = false, err.Error()
			} else if s.Group == 2 {
				if _, err := os.Stat("/run/udev/control"); err != nil {
					a.OK, a.Note = false, "no udevd running (/run/udev/control)"
				}
			}
		case streams.FamilyConnector:
			if init, err := InitialNetNS(0); err == nil && !init {
				a.OK, a.Note = false, "only in the initial network namespace"
			} else if err := have(unix.NETLINK_CONNECTOR); err != nil {
				a.OK, a.Note = false, err.Error()
			} else {
				a.Note = "needs root on the host"
			}
		case streams.FamilyNetfilter:
			if err := have(unix.NETLINK_NETFILTER); err != nil {
				a.OK, a.Note = false, err.Error()
			} else {
				switch s.Group {
				case nfnlgrpNftables:
				case nfnlgrpNftrace:
					a.Note = "packets a rule marks with meta nftrace set 1"
				case nfnlgrpAcctQuota:
					a.Note = "nfacct objects with a quota"
				case nfnlgrpExpNew, nfnlgrpExpUpdate, nfnlgrpExpDestroy:
					a.Note = "events once a connection has a helper (ct helper set) or user space inserts one"
				default:
					a.Note = "events once a rule uses conntrack"
				}
			}
		case streams.FamilyAudit:
			if init, err := InitialNetNS(0); err == nil && !init {
				a.OK, a.Note = false, "only in the initial network namespace"
			} else if err := have(unix.NETLINK_AUDIT); err != nil {
				a.OK, a.Note = false, "no NETLINK_AUDIT (CONFIG_AUDIT): "+err.Error()
			} else {
				a.Note = "needs CAP_AUDIT_READ; the kernel logs every join"
			}
		case streams.FamilySELinux:
			if init, err := InitialNetNS(0); err == nil && !init {
				a.OK, a.Note = false, "only in the initial network namespace"
			} else if err := have(unix.NETLINK_SELINUX); err != nil {
				a.OK, a.Note = false, "no NETLINK_SELINUX: "+err.Error()
			} else if _, err := os.Stat("/sys/fs/selinux"); err != nil {
				a.OK, a.Note = false, "SELinux is not enabled in this kernel (no /sys/fs/selinux): no notices come"
			}
		case streams.FamilyRDMA:
			if err := have(unix.NETLINK_RDMA); err != nil {
				a.OK, a.Note = false, "no NETLINK_RDMA: this kernel has no RDMA (CONFIG_INFINIBAND): "+err.Error()
			} else {
				a.Note = "notices from Linux 6.13 on; earlier kernels refuse the group"
			}
		case streams.FamilyXfrm:
			if err := have(unix.NETLINK_XFRM); err != nil {
				a.OK, a.Note = false, "no NETLINK_XFRM (CONFIG_XFRM_USER): "+err.Error()
			} else if s.Group == xfrmGroupSA {
				a.Note = "keys zeroed unless sealed with bridge --xfrm-keys"
			}
		case streams.FamilyGeneric:
			inCatalog[s.Name] = true
			a.OK, a.Note = false, "family not registered now (joined when it appears)"
			if genlErr != nil {
				a.Note = genlErr.Error()
			}
			for _, f := range fams {
				for _, g := range f.Groups {
					if f.Name == s.GenlFamily && g.Name == s.GenlGroup {
						a.OK, a.Group, a.Note = true, g.ID, ""
						probed(&a)
					}
				}
			}
		}
		out = append(out, a)
	}
	for _, f := range fams {
		for _, g := range f.Groups {
			s := streams.Genl(f.Name, g.Name)
			if !inCatalog[s.Name] {
				a := Availability{Stream: s, OK: true, Group: g.ID, Note: "not in the catalog"}
				probed(&a)
				out = append(out, a)
			}
		}
	}
	return out
}

// xfrmGroupSA is XFRMNLGRP_SA.
const xfrmGroupSA = 3

// NETLINK_NETFILTER groups (linux/netfilter/nfnetlink.h).
const (
	nfnlgrpExpNew     = 4
	nfnlgrpExpUpdate  = 5
	nfnlgrpExpDestroy = 6
	nfnlgrpNftables   = 7
	nfnlgrpAcctQuota  = 8
	nfnlgrpNftrace    = 9
)

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
