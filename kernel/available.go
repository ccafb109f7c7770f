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
}

// Available checks every catalog stream and every generic netlink group
// the kernel has registered (those outside the catalog are added, with
// their hashed IDs). It opens sockets but joins nothing that needs
// privilege unless the caller has it.
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
				a.Note = "events once a rule uses conntrack"
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
				out = append(out, Availability{Stream: s, OK: true, Group: g.ID, Note: "not in the catalog"})
			}
		}
	}
	return out
}
