package rtgen

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A Step is one change of a scenario.
type Step struct {
	Desc string // what it does, like an ip(8) command
	Do   func() error
}

// Scenario makes a veth pair and walks it through the changes users watch
// for: links up and down, IPv4 and IPv6 addresses, a route, a neighbour,
// then removes everything again, leaving the namespace as it found it.
type Scenario struct {
	c     *rtnetlink.Conn
	a, b  string // the veth pair's names
	index uint32 // of a, once made
}

// NewScenario opens an rtnetlink socket in the namespace netns (0: the
// caller's). name names the veth pair: name+"0" and name+"1".
func NewScenario(netns int, name string) (*Scenario, error) {
	if len(name)+1 >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("rtgen: interface name %q too long", name)
	}
	c, err := rtnetlink.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("rtgen: %w", err)
	}
	return &Scenario{c: c, a: name + "0", b: name + "1"}, nil
}

// Close closes the socket.
func (s *Scenario) Close() error { return s.c.Close() }

// Documentation addresses (RFC 5737, RFC 3849): they route nowhere.
var (
	addr4  = netip.MustParsePrefix("192.0.2.1/24")
	addr6  = netip.MustParsePrefix("2001:db8::1/64")
	route4 = netip.MustParsePrefix("198.51.100.0/24")
	gw4    = netip.MustParseAddr("192.0.2.254")
	neigh4 = netip.MustParseAddr("192.0.2.9")
	lladdr = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}
)

// Steps returns the scenario's changes, in order. Run them all: the last
// ones undo the first.
func (s *Scenario) Steps() []Step {
	return []Step{
		{fmt.Sprintf("link add %s type veth peer name %s", s.a, s.b), s.addVeth},
		{fmt.Sprintf("link set %s up", s.b), func() error { return s.setUp(s.b, true) }},
		{fmt.Sprintf("link set %s up", s.a), func() error { return s.setUp(s.a, true) }},
		{fmt.Sprintf("addr add %s dev %s", addr4, s.a), func() error { return s.addr(unix.RTM_NEWADDR, addr4) }},
		{fmt.Sprintf("addr add %s dev %s nodad", addr6, s.a), func() error { return s.addr(unix.RTM_NEWADDR, addr6) }},
		{fmt.Sprintf("route add %s via %s", route4, gw4), func() error { return s.route(true) }},
		{fmt.Sprintf("neigh add %s lladdr %s dev %s nud permanent", neigh4, lladdr, s.a), func() error { return s.neigh(unix.RTM_NEWNEIGH) }},
		{fmt.Sprintf("link set %s down", s.b), func() error { return s.setUp(s.b, false) }},
		{fmt.Sprintf("link set %s up", s.b), func() error { return s.setUp(s.b, true) }},
		{fmt.Sprintf("neigh del %s dev %s", neigh4, s.a), func() error { return s.neigh(unix.RTM_DELNEIGH) }},
		{fmt.Sprintf("route del %s", route4), func() error { return s.route(false) }},
		{fmt.Sprintf("addr del %s dev %s", addr6, s.a), func() error { return s.addr(unix.RTM_DELADDR, addr6) }},
		{fmt.Sprintf("addr del %s dev %s", addr4, s.a), func() error { return s.addr(unix.RTM_DELADDR, addr4) }},
		{fmt.Sprintf("link set %s down", s.a), func() error { return s.setUp(s.a, false) }},
		{fmt.Sprintf("link del %s", s.a), s.delVeth},
	}
}

// Cleanup removes the veth pair if a scenario was cut short.
func (s *Scenario) Cleanup() {
	if i, err := s.ifindex(s.a); err == nil && i == s.index {
		_ = s.c.Link.Delete(i)
	}
}

func (s *Scenario) addVeth() error {
	err := s.c.Link.New(&rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC,
		Attributes: &rtnetlink.LinkAttributes{
			Name: s.a,
			Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{
				PeerInfo: &rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: s.b}},
			}},
		},
	})
	if err != nil {
		return fmt.Errorf("create veth %s: %w", s.a, err)
	}
	i, err := s.ifindex(s.a)
	s.index = i
	return err
}

func (s *Scenario) delVeth() error {
	if err := s.c.Link.Delete(s.index); err != nil {
		return fmt.Errorf("delete %s: %w", s.a, err)
	}
	s.index = 0
	return nil
}

// ifindex finds a link by name in the scenario's namespace.
func (s *Scenario) ifindex(name string) (uint32, error) {
	links, err := s.c.Link.List()
	if err != nil {
		return 0, err
	}
	for _, l := range links {
		if l.Attributes != nil && l.Attributes.Name == name {
			return l.Index, nil
		}
	}
	return 0, fmt.Errorf("no link %s", name)
}

func (s *Scenario) setUp(name string, up bool) error {
	i, err := s.ifindex(name)
	if err != nil {
		return err
	}
	var flags uint32
	if up {
		flags = unix.IFF_UP
	}
	return s.c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: i, Flags: flags, Change: unix.IFF_UP})
}

func (s *Scenario) addr(typ uint16, p netip.Prefix) error {
	family, flags := uint8(unix.AF_INET), uint8(0)
	if p.Addr().Is6() {
		family, flags = unix.AF_INET6, unix.IFA_F_NODAD
	}
	m := &rtnetlink.AddressMessage{
		Family: family, PrefixLength: uint8(p.Bits()), Flags: flags, Index: s.index,
		Attributes: &rtnetlink.AddressAttributes{Local: p.Addr().AsSlice(), Address: p.Addr().AsSlice()},
	}
	hf := netlink.Request | netlink.Acknowledge
	if typ == unix.RTM_NEWADDR {
		hf |= netlink.Create | netlink.Excl
	}
	_, err := s.c.Execute(m, typ, hf)
	return err
}

func (s *Scenario) route(add bool) error {
	m := &rtnetlink.RouteMessage{
		Family: unix.AF_INET, DstLength: uint8(route4.Bits()), Table: unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_STATIC, Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{Dst: route4.Addr().AsSlice(), Gateway: gw4.AsSlice(), OutIface: s.index},
	}
	if add {
		return s.c.Route.Add(m)
	}
	return s.c.Route.Delete(m)
}

func (s *Scenario) neigh(typ uint16) error {
	m := &rtnetlink.NeighMessage{
		Family: unix.AF_INET, Index: s.index, State: unix.NUD_PERMANENT,
		Attributes: &rtnetlink.NeighAttributes{Address: neigh4.AsSlice(), LLAddress: lladdr},
	}
	hf := netlink.Request | netlink.Acknowledge
	if typ == unix.RTM_NEWNEIGH {
		hf |= netlink.Create | netlink.Excl
	}
	_, err := s.c.Execute(m, typ, hf)
	return err
}

// Run runs every step, calling before(step) first, and stops at the first
// failure (after Cleanup).
func (s *Scenario) Run(before func(Step)) error {
	for _, st := range s.Steps() {
		if before != nil {
			before(st)
		}
		if err := st.Do(); err != nil {
			s.Cleanup()
			return fmt.Errorf("rtgen: %s: %w", st.Desc, err)
		}
	}
	return nil
}
