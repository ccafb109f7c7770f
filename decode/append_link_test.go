package decode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	_ "github.com/jsimonetti/rtnetlink/v2/driver" // as nlmcast links it: Route then decodes with its drivers
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/testmsg"
)

// withAttr returns msg with one more attribute, its length updated.
func withAttr(t testing.TB, msg []byte, typ uint16, value []byte) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(typ, value)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	msg = append(bytes.Clone(msg), b...)
	binary.NativeEndian.PutUint32(msg, uint32(len(msg)))
	return msg
}

// TestAppendLink checks AppendRoute against Route for link messages, and
// that the direct path leaves to Route those that rtnetlink stops reading
// early.
func TestAppendLink(t *testing.T) {
	link := func(typ uint16, m rtnetlink.LinkMessage) []byte { return testmsg.Nlmsg(typ, marshal(t, &m)) }
	veth := rtnetlink.LinkMessage{Type: unix.ARPHRD_ETHER, Index: 8, Flags: unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_MULTICAST | 1<<19,
		Change: 1, Attributes: &rtnetlink.LinkAttributes{Name: "veth1", MTU: 1500, OperationalState: rtnetlink.OperStateLowerLayerDown,
			Address: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Broadcast: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			Info: &rtnetlink.LinkInfo{Kind: "veth"}, Master: u32(3), TxQueueLen: u32(1000), QueueDisc: "noqueue"}}
	plain := testmsg.Nlmsg(unix.RTM_NEWLINK, make([]byte, unix.SizeofIfInfomsg))
	info := func(attrs ...[]byte) []byte { return bytes.Join(attrs, nil) }
	attr := func(typ uint16, v []byte) []byte { return withAttr(t, make([]byte, 4), typ, v)[4:] }
	for _, tc := range []struct {
		name   string
		msg    []byte
		direct bool
	}{
		{"veth", link(unix.RTM_NEWLINK, veth), true},
		{"del", link(unix.RTM_DELLINK, veth), true},
		{"header-only", plain, true},
		{"no-attributes-but-name", withAttr(t, plain, unix.IFLA_IFNAME, []byte("eth0\x00\x00")), true},
		{"unknown-operstate-and-type", withAttr(t, link(unix.RTM_NEWLINK, rtnetlink.LinkMessage{Type: 999, Index: 2,
			Attributes: &rtnetlink.LinkAttributes{Name: "x", Address: net.HardwareAddr{1, 2, 3, 4}}}), unix.IFLA_OPERSTATE, []byte{9}), true},
		{"master-zero", withAttr(t, plain, unix.IFLA_MASTER, []byte{0, 0, 0, 0}), true},
		{"stats", withAttr(t, withAttr(t, plain, unix.IFLA_STATS, make([]byte, 96)), unix.IFLA_STATS64, make([]byte, 200)), true},
		{"stats-short", withAttr(t, plain, unix.IFLA_STATS, make([]byte, 90)), false},
		{"stats64-short", withAttr(t, plain, unix.IFLA_STATS64, make([]byte, 190)), false},
		{"mtu-short", withAttr(t, plain, unix.IFLA_MTU, []byte{1, 2}), false},
		{"carrier-long", withAttr(t, plain, unix.IFLA_CARRIER, []byte{1, 0}), false},
		{"group-short", withAttr(t, plain, unix.IFLA_GROUP, []byte{1}), false},
		{"address-short", withAttr(t, plain, unix.IFLA_ADDRESS, []byte{1, 2, 3}), false},
		{"broadcast-long", withAttr(t, plain, unix.IFLA_BROADCAST, make([]byte, 33)), false},
		{"name-html", withAttr(t, plain, unix.IFLA_IFNAME, []byte("a<b")), false},
		{"qdisc-utf8", withAttr(t, plain, unix.IFLA_QDISC, []byte("é")), false},
		{"kind-quote", withAttr(t, plain, unix.IFLA_LINKINFO, attr(unix.IFLA_INFO_KIND, []byte(`a"`))), false},
		{"linkinfo-truncated", withAttr(t, plain, unix.IFLA_LINKINFO, []byte{8, 0, 1, 0, 'v'}), false},
		{"linkinfo-empty", withAttr(t, plain, unix.IFLA_LINKINFO, nil), true},
		{"linkinfo-twice", withAttr(t, link(unix.RTM_NEWLINK, veth), unix.IFLA_LINKINFO, attr(unix.IFLA_INFO_SLAVE_KIND, []byte("bridge"))), true},
		{"bridge-data", withAttr(t, plain, unix.IFLA_LINKINFO, info(attr(unix.IFLA_INFO_KIND, []byte("bridge")),
			attr(unix.IFLA_INFO_DATA, []byte{1, 2, 3}))), true},
		{"bridge-port-data", withAttr(t, plain, unix.IFLA_LINKINFO, info(attr(unix.IFLA_INFO_SLAVE_KIND, []byte("bridge")),
			attr(unix.IFLA_INFO_SLAVE_DATA, []byte{1, 2, 3}), attr(unix.IFLA_INFO_KIND, []byte("veth")))), true},
		{"veth-data", withAttr(t, plain, unix.IFLA_LINKINFO, info(attr(unix.IFLA_INFO_KIND, []byte("veth")),
			attr(unix.IFLA_INFO_DATA, attr(1, nil)))), true},
		{"veth-data-overlong", withAttr(t, plain, unix.IFLA_LINKINFO, info(attr(unix.IFLA_INFO_KIND, []byte("veth")),
			attr(unix.IFLA_INFO_DATA, []byte{8, 0, 1, 0}))), true}, // veth's driver reads no attribute: netlink checks only headers
		{"veth-data-truncated", withAttr(t, plain, unix.IFLA_LINKINFO, info(attr(unix.IFLA_INFO_KIND, []byte("veth")),
			attr(unix.IFLA_INFO_DATA, []byte{1, 2, 3}))), false},
		{"data-before-kind", withAttr(t, plain, unix.IFLA_LINKINFO, info(attr(unix.IFLA_INFO_DATA, []byte{1}),
			attr(unix.IFLA_INFO_KIND, []byte("veth")))), true},
		{"xdp", withAttr(t, plain, unix.IFLA_XDP, info(attr(unix.IFLA_XDP_ATTACHED, []byte{0}), attr(unix.IFLA_XDP_PROG_ID, []byte{1, 0, 0, 0}))), true},
		{"xdp-short-fd", withAttr(t, plain, unix.IFLA_XDP, attr(unix.IFLA_XDP_FD, []byte{1, 0})), false},
		{"xdp-truncated", withAttr(t, plain, unix.IFLA_XDP, []byte{5, 0}), false},
		{"body-short", testmsg.Nlmsg(unix.RTM_NEWLINK, make([]byte, unix.SizeofIfInfomsg-1)), false},
		{"get", testmsg.Nlmsg(unix.RTM_GETLINK, marshal(t, &veth)), false},
		{"trailing-bytes", append(withAttr(t, plain, unix.IFLA_MTU, []byte{0, 5, 0, 0}), 1, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if direct := sameAsRoute(t, tc.msg, names); direct != tc.direct {
				t.Errorf("direct path %v, want %v", direct, tc.direct)
			}
		})
	}
	// Every attribute that rtnetlink reads with a fixed size: taken at
	// that size, left to Route at another (which stops rtnetlink there).
	for _, a := range []struct {
		typ  uint16
		size int
		xdp  bool
	}{
		{unix.IFLA_MTU, 4, false}, {unix.IFLA_MASTER, 4, false}, {unix.IFLA_TXQLEN, 4, false}, {unix.IFLA_LINK, 4, false},
		{unix.IFLA_GROUP, 4, false}, {unix.IFLA_CARRIER_CHANGES, 4, false}, {unix.IFLA_CARRIER_UP_COUNT, 4, false},
		{unix.IFLA_CARRIER_DOWN_COUNT, 4, false}, {unix.IFLA_OPERSTATE, 1, false}, {unix.IFLA_CARRIER, 1, false},
		{unix.IFLA_LINKMODE, 1, false}, {unix.IFLA_XDP_FD, 4, true}, {unix.IFLA_XDP_EXPECTED_FD, 4, true},
		{unix.IFLA_XDP_FLAGS, 4, true}, {unix.IFLA_XDP_PROG_ID, 4, true}, {unix.IFLA_XDP_ATTACHED, 1, true},
	} {
		for _, size := range []int{a.size, a.size + 1, a.size - 1} {
			msg := withAttr(t, plain, a.typ, make([]byte, size))
			if a.xdp {
				msg = withAttr(t, plain, unix.IFLA_XDP, attr(a.typ, make([]byte, size)))
			}
			// An MTU after it shows whether rtnetlink read on.
			msg = withAttr(t, msg, unix.IFLA_MTU, []byte{0xdc, 5, 0, 0})
			if direct := sameAsRoute(t, msg, names); direct != (size == a.size) {
				t.Errorf("attribute %d (XDP %v) of %d bytes: direct path %v", a.typ, a.xdp, size, direct)
			}
		}
	}
}

// A link type or operational state without a name is written as its
// number, as Route writes it, without allocating.
func TestAppendLinkNumbersAllocateNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	msg := withAttr(t, testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(t, &rtnetlink.LinkMessage{Type: unix.ARPHRD_TUNNEL6, Index: 2,
		Attributes: &rtnetlink.LinkAttributes{Name: "ip6tnl0", Address: net.HardwareAddr{0, 0, 0, 0}}})), unix.IFLA_OPERSTATE, []byte{9})
	if !sameAsRoute(t, msg, names) {
		t.Fatal("not on the direct path")
	}
	var s, e []byte
	if a := testing.AllocsPerRun(100, func() { s, e = AppendRoute(s[:0], e[:0], msg, names) }); a != 0 {
		t.Errorf("%v allocations", a)
	}
}

// TestAppendLinkDrivers checks driverDataValid against the drivers that
// rtnetlink's driver package registers (this test binary links it, as
// nlmcast does): for each kind of link the kernel has, and as a master's
// kind, a message whose driver data does not parse, followed by an MTU.
// A registered driver stops Route before the MTU; the direct path must
// then have left the message to Route, and taken it otherwise.
func TestAppendLinkDrivers(t *testing.T) {
	kinds := []string{"bareudp", "bond", "bridge", "can", "dummy", "erspan", "geneve", "gre", "gretap", "gtp", "hsr",
		"ifb", "ip6erspan", "ip6gre", "ip6gretap", "ip6tnl", "ipip", "ipoib", "ipvlan", "ipvtap", "lowpan", "macsec",
		"macvlan", "macvtap", "netdevsim", "netkit", "nlmon", "openvswitch", "rmnet", "sit", "team", "tun", "vcan",
		"veth", "virt_wifi", "vlan", "vrf", "vti", "vti6", "vxcan", "vxlan", "wireguard", "xfrm"}
	bad := []byte{1, 2, 3} // shorter than an attribute header
	stopped := 0
	for _, kind := range kinds {
		for _, slave := range []bool{false, true} {
			kindAttr, dataAttr := uint16(unix.IFLA_INFO_KIND), uint16(unix.IFLA_INFO_DATA)
			if slave {
				kindAttr, dataAttr = unix.IFLA_INFO_SLAVE_KIND, unix.IFLA_INFO_SLAVE_DATA
			}
			ae := netlink.NewAttributeEncoder()
			ae.String(unix.IFLA_IFNAME, "x0")
			ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
				nae.String(kindAttr, kind)
				nae.Bytes(dataAttr, bad)
				return nil
			})
			ae.Uint32(unix.IFLA_MTU, 1500)
			attrs, err := ae.Encode()
			if err != nil {
				t.Fatal(err)
			}
			msg := testmsg.Nlmsg(unix.RTM_NEWLINK, append(make([]byte, unix.SizeofIfInfomsg), attrs...))
			read := strings.Contains(Route(msg, names).Summary, " mtu 1500")
			if !read {
				stopped++
			}
			if direct := sameAsRoute(t, msg, names); direct != read {
				t.Errorf("kind %q (slave %v): direct path %v, but Route read the whole message: %v", kind, slave, direct, read)
			}
		}
	}
	if stopped == 0 {
		t.Fatal("no driver stopped Route: is github.com/jsimonetti/rtnetlink/v2/driver still linked into this test?")
	}
}

// driverLink returns an RTM_NEWLINK of a link of kind (slave: a port of
// a kind) whose driver data is data, followed by an MTU of 1500: Route
// writes the MTU only if it read the whole message.
func driverLink(t testing.TB, kind string, slave bool, data []byte) []byte {
	t.Helper()
	kindAttr, dataAttr := uint16(unix.IFLA_INFO_KIND), uint16(unix.IFLA_INFO_DATA)
	if slave {
		kindAttr, dataAttr = unix.IFLA_INFO_SLAVE_KIND, unix.IFLA_INFO_SLAVE_DATA
	}
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, "x0")
	ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
		nae.String(kindAttr, kind)
		nae.Bytes(dataAttr, data)
		return nil
	})
	ae.Uint32(unix.IFLA_MTU, 1500)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return testmsg.Nlmsg(unix.RTM_NEWLINK, append(make([]byte, unix.SizeofIfInfomsg), attrs...))
}

// attrs encodes attributes of the given types and values, in order.
func attrs(t testing.TB, kv ...any) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	for i := 0; i < len(kv); i += 2 {
		ae.Bytes(kv[i].(uint16), kv[i+1].([]byte))
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendLinkDriverData checks driverDataValid against rtnetlink's
// drivers (bond, a bond's port, netkit, veth), attribute by attribute:
// driver data of one attribute, of every type up to past the last a
// driver reads and of several sizes, and for the attributes a driver
// reads as nested ones, one nested attribute of each type and size. The
// direct path must take the message exactly when Route read it whole
// (the MTU after the data), and write the same bytes.
func TestAppendLinkDriverData(t *testing.T) {
	nested := map[string][]uint16{"bond": {unix.IFLA_BOND_ARP_IP_TARGET, unix.IFLA_BOND_NS_IP6_TARGET, unix.IFLA_BOND_AD_INFO}}
	sizes := []int{0, 1, 2, 3, 4, 6, 8, 16}
	direct, left := 0, 0
	check := func(kind string, slave bool, data []byte, what string) {
		msg := driverLink(t, kind, slave, data)
		read := strings.Contains(Route(msg, names).Summary, " mtu 1500")
		if d := sameAsRoute(t, msg, names); d != read {
			t.Errorf("%s (slave %v), %s: direct path %v, but Route read the whole message: %v", kind, slave, what, d, read)
		} else if d {
			direct++
		} else {
			left++
		}
	}
	for _, kind := range []string{"bond", "netkit", "veth", "bridge"} {
		for _, slave := range []bool{false, true} {
			for typ := uint16(0); typ < 48; typ++ {
				for _, n := range sizes {
					check(kind, slave, attrs(t, typ, make([]byte, n)), fmt.Sprintf("attribute %d of %d bytes", typ, n))
				}
			}
			check(kind, slave, []byte{8, 0, 1, 0}, "truncated")
			check(kind, slave, nil, "empty")
		}
		for _, typ := range nested[kind] {
			for inner := uint16(0); inner < 8; inner++ {
				for _, n := range sizes {
					check(kind, false, attrs(t, typ, attrs(t, inner, make([]byte, n))),
						fmt.Sprintf("attribute %d holding attribute %d of %d bytes", typ, inner, n))
				}
			}
			check(kind, false, attrs(t, typ, []byte{1, 2, 3}), fmt.Sprintf("attribute %d holding a truncated one", typ))
		}
	}
	if direct == 0 || left == 0 {
		t.Fatalf("%d messages on the direct path, %d left to Route: a driver should have taken some, and stopped at others", direct, left)
	}
}

// driverData is the driver data of a link of kind (slave: of a port of
// a kind).
type driverData struct {
	kind  string
	slave bool
	data  []byte
}

// kernelDriverData returns driver data laid out as the kernel sends it
// (bond_fill_info, bond_fill_slave_info, netkit_fill_info; no bond or
// netkit can be made here): of a bond in 802.3ad mode with ARP and NS
// targets, of one of its ports, and of a netkit device.
func kernelDriverData(t testing.TB) []driverData {
	u8 := func(v uint8) []byte { return []byte{v} }
	u16 := func(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
	bond := attrs(t,
		uint16(unix.IFLA_BOND_MODE), u8(4), uint16(unix.IFLA_BOND_ACTIVE_SLAVE), u32(5), uint16(unix.IFLA_BOND_MIIMON), u32(100),
		uint16(unix.IFLA_BOND_UPDELAY), u32(0), uint16(unix.IFLA_BOND_DOWNDELAY), u32(0), uint16(unix.IFLA_BOND_PEER_NOTIF_DELAY), u32(0),
		uint16(unix.IFLA_BOND_USE_CARRIER), u8(1), uint16(unix.IFLA_BOND_ARP_INTERVAL), u32(0),
		uint16(unix.IFLA_BOND_ARP_IP_TARGET), attrs(t, uint16(0), []byte{10, 0, 0, 1}, uint16(1), []byte{10, 0, 0, 2}),
		uint16(unix.IFLA_BOND_ARP_VALIDATE), u32(0), uint16(unix.IFLA_BOND_ARP_ALL_TARGETS), u32(0),
		uint16(unix.IFLA_BOND_PRIMARY_RESELECT), u8(0), uint16(unix.IFLA_BOND_FAIL_OVER_MAC), u8(0),
		uint16(unix.IFLA_BOND_XMIT_HASH_POLICY), u8(1), uint16(unix.IFLA_BOND_RESEND_IGMP), u32(1),
		uint16(unix.IFLA_BOND_NUM_PEER_NOTIF), u8(1), uint16(unix.IFLA_BOND_ALL_SLAVES_ACTIVE), u8(0),
		uint16(unix.IFLA_BOND_MIN_LINKS), u32(0), uint16(unix.IFLA_BOND_LP_INTERVAL), u32(1),
		uint16(unix.IFLA_BOND_PACKETS_PER_SLAVE), u32(1), uint16(unix.IFLA_BOND_AD_LACP_ACTIVE), u8(1),
		uint16(unix.IFLA_BOND_AD_LACP_RATE), u8(0), uint16(unix.IFLA_BOND_AD_SELECT), u8(0),
		uint16(unix.IFLA_BOND_TLB_DYNAMIC_LB), u8(1), uint16(unix.IFLA_BOND_MISSED_MAX), u8(2),
		uint16(unix.IFLA_BOND_NS_IP6_TARGET), attrs(t, uint16(0), make([]byte, 16)),
		uint16(unix.IFLA_BOND_COUPLED_CONTROL), u8(1),
		uint16(unix.IFLA_BOND_AD_INFO), attrs(t, uint16(unix.IFLA_BOND_AD_INFO_AGGREGATOR), u16(1),
			uint16(unix.IFLA_BOND_AD_INFO_NUM_PORTS), u16(2), uint16(unix.IFLA_BOND_AD_INFO_ACTOR_KEY), u16(9),
			uint16(unix.IFLA_BOND_AD_INFO_PARTNER_KEY), u16(9), uint16(unix.IFLA_BOND_AD_INFO_PARTNER_MAC), []byte{2, 0, 0, 0, 0, 9}),
		uint16(unix.IFLA_BOND_AD_ACTOR_SYS_PRIO), u16(65535), uint16(unix.IFLA_BOND_AD_USER_PORT_KEY), u16(0),
		uint16(unix.IFLA_BOND_AD_ACTOR_SYSTEM), []byte{2, 0, 0, 0, 0, 1})
	port := attrs(t,
		uint16(unix.IFLA_BOND_SLAVE_STATE), u8(0), uint16(unix.IFLA_BOND_SLAVE_MII_STATUS), u8(0),
		uint16(unix.IFLA_BOND_SLAVE_LINK_FAILURE_COUNT), u32(0), uint16(unix.IFLA_BOND_SLAVE_PERM_HWADDR), []byte{2, 0, 0, 0, 0, 5},
		uint16(unix.IFLA_BOND_SLAVE_QUEUE_ID), u16(0), uint16(unix.IFLA_BOND_SLAVE_PRIO), u32(0),
		uint16(unix.IFLA_BOND_SLAVE_AD_AGGREGATOR_ID), u16(1), uint16(unix.IFLA_BOND_SLAVE_AD_ACTOR_OPER_PORT_STATE), u8(61),
		uint16(unix.IFLA_BOND_SLAVE_AD_PARTNER_OPER_PORT_STATE), u16(61))
	netkit := attrs(t,
		uint16(unix.IFLA_NETKIT_PRIMARY), u8(1), uint16(unix.IFLA_NETKIT_POLICY), u32(0), uint16(unix.IFLA_NETKIT_PEER_POLICY), u32(0),
		uint16(unix.IFLA_NETKIT_MODE), u32(1), uint16(6), u32(0), uint16(7), u32(0), uint16(8), u16(0), uint16(9), u16(0))
	return []driverData{{"bond", false, bond}, {"bond", true, port}, {"netkit", false, netkit}}
}

// kernelDriverLinks returns link messages of kernelDriverData's, each
// followed by an MTU (driverLink).
func kernelDriverLinks(t testing.TB) [][]byte {
	var msgs [][]byte
	for _, d := range kernelDriverData(t) {
		msgs = append(msgs, driverLink(t, d.kind, d.slave, d.data))
	}
	return msgs
}

// TestAppendLinkDriverKernel checks driver data as the kernel sends it
// (kernelDriverLinks): the direct path takes it, writes what Route
// writes, and allocates nothing.
func TestAppendLinkDriverKernel(t *testing.T) {
	msgs := kernelDriverLinks(t)
	for i, m := range msgs {
		if !strings.Contains(Route(m, names).Summary, " mtu 1500") {
			t.Fatalf("message %d: Route did not read it whole: the driver data is not as the kernel lays it out", i)
		}
		if !sameAsRoute(t, m, names) {
			t.Errorf("message %d (%s): not on the direct path", i, Route(m, names).Summary)
		}
	}
	testenv.SkipUnderRace(t)
	var s, e []byte
	if a := testing.AllocsPerRun(50, func() {
		for _, m := range msgs {
			s, e = AppendRoute(s[:0], e[:0], m, names)
		}
	}); a != 0 {
		t.Errorf("%v allocations for %d link messages", a, len(msgs))
	}
}

// TestAppendLinkKernel checks link messages as the kernel sent them
// (testdata/kernel-links.hex: a veth pair, a bridge, a bridge port): the
// direct path takes them, writes what Route writes, and allocates nothing.
func TestAppendLinkKernel(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the captured messages are little-endian")
	}
	f, err := os.Open("testdata/kernel-links.hex")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			b, err := hex.DecodeString(line)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, b)
		}
	}
	if err := sc.Err(); err != nil || len(msgs) < 5 {
		t.Fatalf("%d messages read, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if !sameAsRoute(t, m, names) {
			t.Errorf("message %d (%s): not on the direct path", i, Route(m, names).Summary)
		}
	}
	testenv.SkipUnderRace(t)
	var s, e []byte
	if a := testing.AllocsPerRun(50, func() {
		for _, m := range msgs {
			s, e = AppendRoute(s[:0], e[:0], m, names)
		}
	}); a != 0 {
		t.Errorf("%v allocations for %d link messages", a, len(msgs))
	}
}

// BenchmarkAppendLinkDrivers times the three messages of
// kernelDriverLinks (a bond, a bond's port, a netkit device), through the
// direct path and through Route.
func BenchmarkAppendLinkDrivers(b *testing.B) {
	msgs := kernelDriverLinks(b)
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		var s, e []byte
		for b.Loop() {
			for _, m := range msgs {
				s, e = AppendRoute(s[:0], e[:0], m, names)
			}
		}
	})
	b.Run("route", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, m := range msgs {
				Route(m, names)
			}
		}
	})
}

// FuzzAppendLinkDriverData is TestAppendLinkDriverData's fuzzer: driver
// data of any bytes, for each driver and a kind with none.
func FuzzAppendLinkDriverData(f *testing.F) {
	kinds := []string{"bond", "netkit", "veth", "bridge"}
	for _, d := range kernelDriverData(f) {
		f.Add(uint8(slices.Index(kinds, d.kind)), d.slave, d.data)
	}
	f.Fuzz(func(t *testing.T, k uint8, slave bool, data []byte) {
		kind := kinds[int(k)%len(kinds)]
		msg := driverLink(t, kind, slave, data)
		read := strings.Contains(Route(msg, names).Summary, " mtu 1500")
		if d := sameAsRoute(t, msg, names); d != read {
			t.Errorf("%s (slave %v), % x: direct path %v, but Route read the whole message: %v", kind, slave, data, d, read)
		}
	})
}
