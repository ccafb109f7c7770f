package decode

import (
	"bytes"
	"net"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
)

// sameAsRoute checks that AppendRoute writes, after what the buffers
// already hold, exactly what Route returns for msg, and reports whether
// its direct path wrote it.
func sameAsRoute(t testing.TB, msg []byte, names IfNames) (direct bool) {
	t.Helper()
	want := Route(msg, names)
	s, e := AppendRoute([]byte("S:"), []byte("E:"), msg, names)
	if !bytes.Equal(s, append([]byte("S:"), want.Summary...)) || !bytes.Equal(e, append([]byte("E:"), want.Event...)) {
		t.Fatalf("AppendRoute of % x:\n%s\n%s\nRoute:\n%s\n%s", msg, s[2:], e[2:], want.Summary, want.Event)
	}
	_, _, direct = appendRouteDirect(nil, nil, msg, names)
	return direct
}

// TestAppendRoute checks AppendRoute against Route, message by message,
// and that the direct path takes the everyday messages and leaves the
// others to Route.
func TestAppendRoute(t *testing.T) {
	ip4 := func(a, b, c, d byte) net.IP { return net.IPv4(a, b, c, d).To4() }
	addr := func(m rtnetlink.AddressMessage) []byte { return testmsg.Nlmsg(unix.RTM_NEWADDR, marshal(t, &m)) }
	route := func(typ uint16, m rtnetlink.RouteMessage) []byte { return testmsg.Nlmsg(typ, marshal(t, &m)) }
	neigh := func(m rtnetlink.NeighMessage) []byte { return testmsg.Nlmsg(unix.RTM_NEWNEIGH, marshal(t, &m)) }
	withAttr := func(msg []byte, typ uint16, value []byte) []byte { return withAttr(t, msg, typ, value) }
	local := rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL, Protocol: unix.RTPROT_KERNEL,
		Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
		Attributes: rtnetlink.RouteAttributes{Dst: ip4(10, 9, 9, 9), Src: ip4(10, 9, 9, 9), Table: unix.RT_TABLE_LOCAL, OutIface: 7}}
	addr4 := rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 24, Scope: unix.RT_SCOPE_UNIVERSE, Index: 7,
		Attributes: &rtnetlink.AddressAttributes{Address: ip4(10, 9, 9, 9), Local: ip4(10, 9, 9, 9),
			Broadcast: ip4(10, 9, 9, 255), Label: "veth0", Flags: unix.IFA_F_PERMANENT,
			CacheInfo: rtnetlink.CacheInfo{Preferred: 0xffffffff, Valid: 0xffffffff}}}
	for _, tc := range []struct {
		name   string
		msg    []byte
		names  IfNames
		direct bool
	}{
		{"addr", addr(addr4), names, true},
		{"addr-no-names", addr(addr4), nil, true},
		{"addr-header-only", addr(rtnetlink.AddressMessage{Family: unix.AF_INET6, Flags: 0x80, Scope: 7, Index: 3}), names, true},
		{"addr-ipv4-mapped", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET6, PrefixLength: 96, Index: 7}),
			unix.IFA_ADDRESS, net.ParseIP("::ffff:10.0.0.1").To16()), names, true},
		{"addr-ipv6", addr(rtnetlink.AddressMessage{Family: unix.AF_INET6, PrefixLength: 64, Index: 7,
			Attributes: &rtnetlink.AddressAttributes{Address: net.ParseIP("2001:db8::1"), Local: net.ParseIP("2001:db8::1"), Flags: 1 << 20}}), names, true},
		{"addr-label-html", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_LABEL, []byte("a<b")), names, false},
		{"addr-label-quote", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_LABEL, []byte(`a"b`)), names, false},
		{"addr-label-utf8", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_LABEL, []byte("é\xff")), names, false},
		{"addr-label-nuls", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_LABEL, []byte("eth0\x00\x00\x00")), names, true},
		{"addr-short-ip", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_LOCAL, []byte{10, 0, 0}), names, false},
		{"addr-short-flags", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_FLAGS, []byte{1, 0}), names, false},
		{"addr-nested-flag-bit", withAttr(addr(rtnetlink.AddressMessage{Family: unix.AF_INET, Index: 7}), unix.IFA_LOCAL|unix.NLA_F_NESTED, []byte{10, 0, 0, 2}), names, true},
		{"addr-unknown-attribute", withAttr(addr(addr4), 200, []byte{1, 2, 3}), names, true},
		{"addr-truncated-attribute", append(addr(addr4), 8, 0), names, false},
		{"addr-name-escaped", addr(addr4), func(uint32) string { return "tab\there" }, false},
		{"addr-name-ampersand", addr(addr4), func(uint32) string { return "a&b" }, false},
		{"route-local", route(unix.RTM_NEWROUTE, local), names, true},
		{"route-del-default-ipv6", route(unix.RTM_DELROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN,
			Protocol: unix.RTPROT_RA, Type: unix.RTN_UNICAST, Attributes: rtnetlink.RouteAttributes{Gateway: net.ParseIP("fe80::1"),
				OutIface: 9, Priority: 1024, Table: unix.RT_TABLE_MAIN, Pref: ptr(uint8(0))}}), names, true},
		{"route-odd-numbers", route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 8, Table: 200, Protocol: 99,
			Scope: 77, Type: 42, Attributes: rtnetlink.RouteAttributes{Dst: ip4(10, 0, 0, 0), Mark: 5, Expires: u32(3), OutIface: 3}}), names, true},
		// A default route from a router advertisement: its hop limit in RTA_METRICS.
		{"route-ra-default-metrics", withAttr(route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN,
			Protocol: unix.RTPROT_RA, Type: unix.RTN_UNICAST, Attributes: rtnetlink.RouteAttributes{Gateway: net.ParseIP("fe80::1"),
				OutIface: 7, Priority: 1024, Table: unix.RT_TABLE_MAIN, Expires: u32(1800)}}), unix.RTA_METRICS, []byte{8, 0, unix.RTAX_HOPLIMIT, 0, 64, 0, 0, 0}), names, true},
		{"route-metrics", route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Metrics: &rtnetlink.RouteMetrics{MTU: 1400, AdvMSS: 1360}}}), names, true},
		{"route-metrics-short-mtu", withAttr(route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET}),
			unix.RTA_METRICS, []byte{6, 0, unix.RTAX_MTU, 0, 1, 2, 0, 0}), names, false},
		{"route-metrics-truncated", withAttr(route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET}),
			unix.RTA_METRICS, []byte{8, 0, unix.RTAX_MTU, 0, 1, 2}), names, false},
		{"route-multipath", withAttr(route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET}),
			unix.RTA_MULTIPATH, []byte{16, 0, 0, 0, 7, 0, 0, 0, 8, 0, unix.RTA_GATEWAY, 0, 10, 0, 0, 1}), names, false},
		{"route-mpls", route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_MPLS}), names, false},
		{"route-short-oif", withAttr(route(unix.RTM_NEWROUTE, rtnetlink.RouteMessage{Family: unix.AF_INET}), unix.RTA_OIF, []byte{7}), names, false},
		{"neigh", neigh(rtnetlink.NeighMessage{Family: unix.AF_INET, Index: 7, State: unix.NUD_REACHABLE, Flags: unix.NTF_ROUTER | 0x80,
			Attributes: &rtnetlink.NeighAttributes{Address: ip4(10, 0, 0, 9), LLAddress: net.HardwareAddr{2, 0, 0, 0, 0xab, 9}}}), names, true},
		{"neigh-no-attributes", neigh(rtnetlink.NeighMessage{Family: unix.AF_BRIDGE, Index: 8, State: 0x300}), names, true},
		{"neigh-empty-lladdr", withAttr(neigh(rtnetlink.NeighMessage{Family: unix.AF_INET, Index: 7}), unix.NDA_LLADDR, nil), names, true},
		{"neigh-long-dst", withAttr(neigh(rtnetlink.NeighMessage{Family: unix.AF_INET, Index: 7}), unix.NDA_DST, []byte{1, 2, 3, 4, 5}), names, false},
		{"link", testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(t, &rtnetlink.LinkMessage{Index: 1, Attributes: &rtnetlink.LinkAttributes{Name: "lo"}})), names, true},
		{"get-addr", testmsg.Nlmsg(unix.RTM_GETADDR, marshal(t, &addr4)), names, false},
		{"truncated", []byte{1, 2, 3}, names, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if direct := sameAsRoute(t, tc.msg, tc.names); direct != tc.direct {
				t.Errorf("direct path %v, want %v", direct, tc.direct)
			}
		})
	}
}

// TestAppendRouteAllocatesNothing is the guard of the JSON path of the
// everyday events: an address, its route, a neighbour.
func TestAppendRouteAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	ip := net.IPv4(10, 9, 9, 9).To4()
	msgs := [][]byte{
		testmsg.Nlmsg(unix.RTM_NEWADDR, marshal(t, &rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 24, Index: 7,
			Attributes: &rtnetlink.AddressAttributes{Address: ip, Local: ip, Label: "veth0", Flags: unix.IFA_F_PERMANENT}})),
		testmsg.Nlmsg(unix.RTM_NEWROUTE, marshal(t, &rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL,
			Protocol: unix.RTPROT_KERNEL, Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
			Attributes: rtnetlink.RouteAttributes{Dst: ip, Src: ip, Table: unix.RT_TABLE_LOCAL, OutIface: 7}})),
		testmsg.Nlmsg(unix.RTM_DELNEIGH, marshal(t, &rtnetlink.NeighMessage{Family: unix.AF_INET6, Index: 7, State: unix.NUD_STALE,
			Attributes: &rtnetlink.NeighAttributes{Address: net.ParseIP("fe80::2"), LLAddress: net.HardwareAddr{2, 0, 0, 0, 0, 2}}})),
	}
	var n Names
	n.Set(map[uint32]string{7: "veth0"})
	lookup := n.Lookup
	var s, e []byte
	for _, m := range msgs {
		if !sameAsRoute(t, m, lookup) {
			t.Fatalf("% x: not on the direct path", m)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		for _, m := range msgs {
			s, e = AppendRoute(s[:0], e[:0], m, lookup)
		}
	}); a != 0 {
		t.Errorf("%v allocations for %d messages", a, len(msgs))
	}
}

func BenchmarkAppendRoute(b *testing.B) {
	msg := testmsg.Nlmsg(unix.RTM_NEWROUTE, marshal(b, &rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 32, Table: unix.RT_TABLE_LOCAL,
		Protocol: unix.RTPROT_KERNEL, Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL,
		Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(10, 9, 9, 9).To4(), Src: net.IPv4(10, 9, 9, 9).To4(), Table: unix.RT_TABLE_LOCAL, OutIface: 7}}))
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		var s, e []byte
		for b.Loop() {
			s, e = AppendRoute(s[:0], e[:0], msg, names)
		}
	})
	b.Run("route", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Route(msg, names)
		}
	})
}

// FuzzAppendRoute checks AppendRoute against Route for bodies of the
// message types its direct path takes, with any interface name (links
// with the drivers of rtnetlink's driver package, which this test binary
// links).
func FuzzAppendRoute(f *testing.F) {
	ip := net.IPv4(10, 9, 9, 9).To4()
	f.Add(uint8(0), marshal(f, &rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 24, Index: 7,
		Attributes: &rtnetlink.AddressAttributes{Address: ip, Local: ip, Label: "veth0", Flags: unix.IFA_F_PERMANENT}}), "veth0")
	f.Add(uint8(2), marshal(f, &rtnetlink.RouteMessage{Family: unix.AF_INET6, DstLength: 64, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
		Attributes: rtnetlink.RouteAttributes{Dst: net.ParseIP("2001:db8::"), Gateway: net.ParseIP("fe80::1"), OutIface: 7, Priority: 256}}), "")
	f.Add(uint8(5), marshal(f, &rtnetlink.NeighMessage{Family: unix.AF_INET, Index: 7, State: unix.NUD_REACHABLE,
		Attributes: &rtnetlink.NeighAttributes{Address: ip, LLAddress: net.HardwareAddr{2, 0, 0, 0, 0, 9}}}), "x<y")
	f.Add(uint8(6), marshal(f, &rtnetlink.LinkMessage{Type: unix.ARPHRD_ETHER, Index: 8, Flags: unix.IFF_UP,
		Attributes: &rtnetlink.LinkAttributes{Name: "veth1", MTU: 1500, OperationalState: rtnetlink.OperStateUp,
			Address: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Info: &rtnetlink.LinkInfo{Kind: "veth"}, Master: u32(3), QueueDisc: "noqueue",
			XDP: &rtnetlink.LinkXDP{}}}), "")
	for _, m := range kernelDriverLinks(f) {
		f.Add(uint8(6), m[unix.SizeofNlMsghdr:], "")
	}
	types := []uint16{unix.RTM_NEWADDR, unix.RTM_DELADDR, unix.RTM_NEWROUTE, unix.RTM_DELROUTE, unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH,
		unix.RTM_NEWLINK, unix.RTM_DELLINK}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte, name string) {
		sameAsRoute(t, testmsg.Nlmsg(types[int(typ)%len(types)], body), func(i uint32) string {
			if i%2 == 1 {
				return name
			}
			return ""
		})
	})
}

// Names.Update learns a link's name from its event, keeps it through a
// deletion, and costs nothing when the name is known already.
func TestNamesUpdate(t *testing.T) {
	link := func(typ uint16, index uint32, name string) []byte {
		return testmsg.Nlmsg(typ, marshal(t, &rtnetlink.LinkMessage{Index: index, Attributes: &rtnetlink.LinkAttributes{Name: name, MTU: 1500}}))
	}
	var n Names
	n.Update(link(unix.RTM_NEWLINK, 7, "veth0"))
	if got := n.Lookup(7); got != "veth0" {
		t.Fatalf("Lookup(7) = %q after its link event", got)
	}
	n.Update(link(unix.RTM_DELLINK, 7, "other"))
	n.Update([]byte{1, 2, 3})
	n.Update(append(link(unix.RTM_NEWLINK, 7, "veth0")[:unix.SizeofNlMsghdr+unix.SizeofIfInfomsg], 9, 0)) // a truncated attribute
	if got := n.Lookup(7); got != "veth0" {
		t.Fatalf("Lookup(7) = %q after a deletion and bad messages", got)
	}
	n.Update(link(unix.RTM_NEWLINK, 7, "wan0"))
	if got := n.Lookup(7); got != "wan0" {
		t.Fatalf("Lookup(7) = %q after a rename", got)
	}
	testenv.SkipUnderRace(t)
	again := link(unix.RTM_NEWLINK, 7, "wan0")
	if a := testing.AllocsPerRun(100, func() { n.Update(again) }); a != 0 {
		t.Errorf("a link event of a known name: %v allocations", a)
	}
}
