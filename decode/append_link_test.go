package decode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
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
			attr(unix.IFLA_INFO_DATA, attr(1, nil)))), false},
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

// TestAppendLinkDrivers checks driverKind against the drivers that
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
