package decode

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testmsg"
)

func marshal(t testing.TB, m encoding.BinaryMarshaler) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func u32(v uint32) *uint32 { return &v }

func ptr[T any](v T) *T { return &v }

// names knows one interface, index 7.
func names(i uint32) string {
	return map[uint32]string{7: "veth0"}[i]
}

// TestDecode compares Route's whole Result for each message with
// testdata/golden/route-NAME.json.
func TestDecode(t *testing.T) {
	attrs := func(f func(ae *netlink.AttributeEncoder)) []byte {
		ae := netlink.NewAttributeEncoder()
		f(ae)
		b, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inet := []byte{unix.AF_INET, 0, 0, 0} // netconfmsg, rtgenmsg: a family, padded
	netconf := append(inet, attrs(func(ae *netlink.AttributeEncoder) {
		ae.Int32(1, 7) // NETCONFA_IFINDEX
		ae.Int32(2, 1) // NETCONFA_FORWARDING
	})...)
	netconfAll := append(inet, attrs(func(ae *netlink.AttributeEncoder) {
		ae.Int32(1, -1) // NETCONFA_IFINDEX_ALL
		ae.Int32(3, 2)  // NETCONFA_RP_FILTER
		ae.Int32(6, 0)  // NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN
	})...)
	nsid := append([]byte{unix.AF_UNSPEC, 0, 0, 0}, attrs(func(ae *netlink.AttributeEncoder) {
		ae.Int32(1, 5) // NETNSA_NSID
	})...)
	// An IPv4 multicast route: decoded generically.
	mroute := append([]byte{128 /* RTNL_FAMILY_IPMR */, 32, 32, 0, unix.RT_TABLE_DEFAULT, unix.RTPROT_STATIC, unix.RT_SCOPE_UNIVERSE, unix.RTN_MULTICAST, 0, 0, 0, 0},
		attrs(func(ae *netlink.AttributeEncoder) {
			ae.Bytes(unix.RTA_SRC, []byte{10, 0, 0, 1})
			ae.Bytes(unix.RTA_DST, []byte{239, 1, 2, 3})
			ae.Uint32(unix.RTA_IIF, 7)
			ae.Uint32(unix.RTA_TABLE, unix.RT_TABLE_DEFAULT)
		})...)
	delLink := testmsg.Nlmsg(unix.RTM_DELLINK, marshal(t, &rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC, Type: unix.ARPHRD_ETHER, Index: 8, Flags: unix.IFF_BROADCAST | unix.IFF_MULTICAST,
		Attributes: &rtnetlink.LinkAttributes{Name: "veth1", MTU: 1500, OperationalState: rtnetlink.OperStateDown,
			Address: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Broadcast: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			Info: &rtnetlink.LinkInfo{Kind: "veth"}, Master: u32(3), QueueDisc: "noqueue"},
	}))
	withFlags := func(msg []byte, flags uint16) []byte {
		binary.NativeEndian.PutUint16(msg[6:], flags)
		binary.NativeEndian.PutUint32(msg[8:], 42)  // seq
		binary.NativeEndian.PutUint32(msg[12:], 99) // port id
		return msg
	}

	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"new-link", testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(t, &rtnetlink.LinkMessage{
			Family: unix.AF_UNSPEC, Type: unix.ARPHRD_ETHER, Index: 7, Flags: unix.IFF_UP | unix.IFF_BROADCAST,
			Attributes: &rtnetlink.LinkAttributes{Name: "veth0", MTU: 1500, OperationalState: rtnetlink.OperStateUp,
				Address: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		}))},
		{"del-link-veth", delLink},
		{"new-link-header-fields", withFlags(testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(t, &rtnetlink.LinkMessage{
			Type: unix.ARPHRD_LOOPBACK, Index: 1, Flags: unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING | unix.IFF_LOWER_UP | 1<<30,
			Change: 0xffffffff, Attributes: &rtnetlink.LinkAttributes{Name: "lo", MTU: 65536},
		})), unix.NLM_F_MULTI)},
		{"del-addr", testmsg.Nlmsg(unix.RTM_DELADDR, marshal(t, &rtnetlink.AddressMessage{
			Family: unix.AF_INET, PrefixLength: 24, Index: 7, Scope: unix.RT_SCOPE_UNIVERSE,
			Attributes: &rtnetlink.AddressAttributes{Address: net.IPv4(10, 0, 0, 1).To4(), Local: net.IPv4(10, 0, 0, 1).To4(),
				Broadcast: net.IPv4(10, 0, 0, 255).To4(), Label: "veth0", Flags: unix.IFA_F_PERMANENT},
		}))},
		{"new-addr-ipv6-unknown-dev", testmsg.Nlmsg(unix.RTM_NEWADDR, marshal(t, &rtnetlink.AddressMessage{
			Family: unix.AF_INET6, PrefixLength: 64, Flags: unix.IFA_F_PERMANENT, Scope: unix.RT_SCOPE_LINK, Index: 9,
			Attributes: &rtnetlink.AddressAttributes{Address: net.ParseIP("fe80::1"),
				Flags: unix.IFA_F_PERMANENT | unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE},
		}))},
		{"new-route-via-gateway", testmsg.Nlmsg(unix.RTM_NEWROUTE, marshal(t, &rtnetlink.RouteMessage{
			Family: unix.AF_INET, DstLength: 16, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT,
			Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(10, 1, 0, 0).To4(), Gateway: net.IPv4(10, 0, 0, 2).To4(), OutIface: 7},
		}))},
		{"new-route-local", testmsg.Nlmsg(unix.RTM_NEWROUTE, marshal(t, &rtnetlink.RouteMessage{
			Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL, Protocol: unix.RTPROT_KERNEL,
			Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
			Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(192, 0, 2, 1).To4(), Src: net.IPv4(192, 0, 2, 1).To4(),
				OutIface: 7, Table: unix.RT_TABLE_LOCAL},
		}))},
		{"del-route-ipv6-default", testmsg.Nlmsg(unix.RTM_DELROUTE, marshal(t, &rtnetlink.RouteMessage{
			Family: unix.AF_INET6, Table: unix.RT_TABLE_UNSPEC, Protocol: unix.RTPROT_RA,
			Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Gateway: net.ParseIP("fe80::2"), OutIface: 7, Priority: 1024, Table: 1000},
		}))},
		{"new-mroute-generic", testmsg.Nlmsg(unix.RTM_NEWROUTE, mroute)},
		{"new-neigh", testmsg.Nlmsg(unix.RTM_NEWNEIGH, marshal(t, &rtnetlink.NeighMessage{
			Family: unix.AF_INET, Index: 7, State: unix.NUD_PERMANENT,
			Attributes: &rtnetlink.NeighAttributes{Address: net.IPv4(10, 0, 0, 9).To4(), LLAddress: net.HardwareAddr{2, 0, 0, 0, 0, 9}},
		}))},
		{"del-neigh-ipv6-router", testmsg.Nlmsg(unix.RTM_DELNEIGH, marshal(t, &rtnetlink.NeighMessage{
			Family: unix.AF_INET6, Index: 7, State: unix.NUD_STALE, Flags: unix.NTF_ROUTER,
			Attributes: &rtnetlink.NeighAttributes{Address: net.ParseIP("fe80::2")},
		}))},
		{"new-rule", testmsg.Nlmsg(unix.RTM_NEWRULE, marshal(t, &rtnetlink.RuleMessage{
			Family: unix.AF_INET, Table: 100, Action: unix.FR_ACT_TO_TBL,
			Attributes: &rtnetlink.RuleAttributes{Priority: u32(1000)},
		}))},
		{"del-rule-selectors", testmsg.Nlmsg(unix.RTM_DELRULE, marshal(t, &rtnetlink.RuleMessage{
			Family: unix.AF_INET, SrcLength: 8, DstLength: 24, Table: unix.RT_TABLE_UNSPEC, Action: unix.FR_ACT_TO_TBL,
			Attributes: &rtnetlink.RuleAttributes{Priority: u32(32000), Src: ptr(net.IPv4(10, 0, 0, 0).To4()),
				Dst: ptr(net.IPv4(192, 0, 2, 0).To4()), IIFName: ptr("veth0"), FwMark: u32(0x10), Table: u32(unix.RT_TABLE_MAIN)},
		}))},
		{"new-rule-unreachable", testmsg.Nlmsg(unix.RTM_NEWRULE, marshal(t, &rtnetlink.RuleMessage{
			Family: unix.AF_INET6, Action: unix.FR_ACT_UNREACHABLE,
			Attributes: &rtnetlink.RuleAttributes{Priority: u32(5), OIFName: ptr("veth0")},
		}))},
		{"new-netconf-generic", testmsg.Nlmsg(unix.RTM_NEWNETCONF, netconf)},
		{"new-netconf-all", testmsg.Nlmsg(unix.RTM_NEWNETCONF, netconfAll)},
		{"new-nsid-generic", testmsg.Nlmsg(unix.RTM_NEWNSID, nsid)},
		{"unknown-type", testmsg.Nlmsg(200, []byte{1, 2, 3, 4})},
		{"unknown-type-attributes", testmsg.Nlmsg(201, []byte{8, 0, 1, 0, 42, 0, 0, 0, 5, 0, 2, 0, 9, 0, 0, 0})},
		{"addr-too-short", testmsg.Nlmsg(unix.RTM_NEWADDR, []byte{2, 24, 0})},
		{"bad-attributes", testmsg.Nlmsg(unix.RTM_NEWNETCONF, append(inet, 8, 0, 1, 0, 7, 0))},
		{"truncated-header", []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[Event](t, "route-"+tc.name, Route(tc.msg, names))
			sameAsRoute(t, tc.msg, names)
		})
	}
}

// TestDecodeNilNames decodes with no interface names: events carry the
// index alone.
func TestDecodeNilNames(t *testing.T) {
	msg := testmsg.Nlmsg(unix.RTM_NEWNEIGH, marshal(t, &rtnetlink.NeighMessage{
		Family: unix.AF_INET, Index: 7, State: unix.NUD_REACHABLE,
		Attributes: &rtnetlink.NeighAttributes{Address: net.IPv4(10, 0, 0, 9).To4()},
	}))
	d := Route(msg, nil)
	if want := "new neigh 10.0.0.9 dev if7 REACHABLE"; d.Summary != want {
		t.Errorf("summary %q, want %q", d.Summary, want)
	}
	if strings.Contains(string(d.Event), "ifname") {
		t.Errorf("an ifname with no names: %s", d.Event)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(f, &rtnetlink.LinkMessage{Index: 1, Attributes: &rtnetlink.LinkAttributes{Name: "lo"}})))
	f.Add(testmsg.Nlmsg(unix.RTM_NEWADDR, marshal(f, &rtnetlink.AddressMessage{Family: unix.AF_INET6, Attributes: &rtnetlink.AddressAttributes{Address: net.IPv6loopback}})))
	f.Add(testmsg.Nlmsg(unix.RTM_NEWNETCONF, []byte{2, 0, 0, 0, 8, 0, 1, 0, 1, 0, 0, 0}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := Route(b, names)
		sameAsRoute(t, b, names)
		if !json.Valid(d.Event) {
			t.Fatalf("invalid JSON for % x: %s", b, d.Event)
		}
		if d.Summary == "" {
			t.Fatalf("empty summary for % x", b)
		}
	})
}

func TestFlagWords(t *testing.T) {
	got := strings.Join(flagWords(unix.IFF_UP|1<<30, ifFlagNames), ",")
	if got != "UP,0x40000000" {
		t.Errorf("got %s", got)
	}
}
