package kernel

import (
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// Config.PartialJoin, with the kernel refusing for real: a thread in a
// namespace of its own drops its effective capabilities, as a bridge
// without CAP_NET_ADMIN would run. Generic netlink: nlctrl's notify group
// is open to anyone, mptcp_pm's events need CAP_NET_ADMIN (Linux 6.7+), so
// Open joins the one, lists the other as refused, and without PartialJoin
// fails naming it. Netfilter: every group needs CAP_NET_ADMIN, so Open
// fails even with PartialJoin.
func TestPartialJoin(t *testing.T) {
	testenv.RequireRoot(t)
	defer testenv.NoLeaks(t)()
	fams, err := GenlFamilies(0)
	if err != nil {
		t.Fatal(err)
	}
	var notify, mptcp uint32
	for _, f := range fams {
		for _, g := range f.Groups {
			switch {
			case f.Name == "nlctrl" && g.Name == "notify":
				notify = g.ID
			case f.Name == "mptcp_pm" && g.Name == "mptcp_pm_events":
				mptcp = g.ID
			}
		}
	}
	if notify == 0 || mptcp == 0 {
		testenv.Missing(t, "generic netlink groups nlctrl:notify and mptcp_pm:mptcp_pm_events (CONFIG_MPTCP)")
	}
	testenv.InNewNetNS(t, func() error {
		if err := dropEffectiveCaps(); err != nil { // this thread only; it ends after
			return err
		}
		s, err := Open(&Config{Family: unix.NETLINK_GENERIC, Groups: []uint32{notify, mptcp}, PartialJoin: true})
		if err != nil {
			t.Errorf("some groups refused: Open with PartialJoin: %v", err)
		} else {
			if r := s.Refused(); !slices.Equal(r, []uint32{mptcp}) {
				t.Errorf("Refused() = %v, want [%d] (mptcp_pm_events)", r, mptcp)
			}
			s.Close()
		}
		if s, err := Open(&Config{Family: unix.NETLINK_GENERIC, Groups: []uint32{notify, mptcp}}); !errors.Is(err, unix.EPERM) {
			t.Errorf("some groups refused, no PartialJoin: Open = %v, want EPERM", err)
			if s != nil {
				s.Close()
			}
		}
		if s, err := Open(&Config{Family: unix.NETLINK_NETFILTER, Groups: []uint32{7, 9}, PartialJoin: true}); !errors.Is(err, unix.EPERM) {
			t.Errorf("every group refused: Open with PartialJoin = %v, want EPERM", err)
			if s != nil {
				s.Close()
			}
		}
		return nil
	})
	// With the capability, nothing is refused.
	s, err := Open(&Config{Family: unix.NETLINK_GENERIC, Groups: []uint32{notify, mptcp}, PartialJoin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r := s.Refused(); r != nil {
		t.Errorf("as root: Refused() = %v, want none", r)
	}
}
