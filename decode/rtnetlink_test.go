package decode

import (
	"encoding"
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

func names(i uint32) string {
	return map[uint32]string{7: "veth0"}[i]
}

func TestDecode(t *testing.T) {
	netconf := func() []byte {
		ae := netlink.NewAttributeEncoder()
		ae.Int32(1, 7) // ifindex
		ae.Int32(2, 1) // forwarding
		b, _ := ae.Encode()
		return append([]byte{unix.AF_INET, 0, 0, 0}, b...)
	}()
	tests := []struct {
		name    string
		msg     []byte
		summary string
		check   func(t *testing.T, ev *Event)
	}{
		{
			name: "new link",
			msg: testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(t, &rtnetlink.LinkMessage{
				Family: unix.AF_UNSPEC, Type: unix.ARPHRD_ETHER, Index: 7, Flags: unix.IFF_UP | unix.IFF_BROADCAST,
				Attributes: &rtnetlink.LinkAttributes{Name: "veth0", MTU: 1500, OperationalState: rtnetlink.OperStateUp,
					Address: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
			})),
			summary: "new link 7: veth0 <UP,BROADCAST> mtu 1500 state UP link/ether 02:00:00:00:00:01",
			check: func(t *testing.T, ev *Event) {
				if ev.Type != "RTM_NEWLINK" || ev.Link == nil || ev.Link.Name != "veth0" || ev.Link.Index != 7 || ev.Link.OperState != "up" {
					t.Errorf("%+v %+v", ev, ev.Link)
				}
			},
		},
		{
			name: "del address with interface name",
			msg: testmsg.Nlmsg(unix.RTM_DELADDR, marshal(t, &rtnetlink.AddressMessage{
				Family: unix.AF_INET, PrefixLength: 24, Index: 7, Scope: unix.RT_SCOPE_UNIVERSE,
				Attributes: &rtnetlink.AddressAttributes{Address: net.IPv4(10, 0, 0, 1).To4(), Local: net.IPv4(10, 0, 0, 1).To4(),
					Flags: unix.IFA_F_PERMANENT},
			})),
			summary: "del addr 10.0.0.1/24 dev veth0 scope global permanent",
			check: func(t *testing.T, ev *Event) {
				if ev.Addr == nil || ev.Addr.IfName != "veth0" || ev.Addr.Family != "inet" || ev.Addr.Flags[0] != "permanent" {
					t.Errorf("%+v", ev.Addr)
				}
			},
		},
		{
			name: "route via gateway",
			msg: testmsg.Nlmsg(unix.RTM_NEWROUTE, marshal(t, &rtnetlink.RouteMessage{
				Family: unix.AF_INET, DstLength: 16, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT,
				Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
				Attributes: rtnetlink.RouteAttributes{Dst: net.IPv4(10, 1, 0, 0).To4(), Gateway: net.IPv4(10, 0, 0, 2).To4(), OutIface: 7},
			})),
			summary: "new route 10.1.0.0/16 via 10.0.0.2 dev veth0 table main proto boot scope global",
			check: func(t *testing.T, ev *Event) {
				if ev.Route == nil || ev.Route.Gateway != "10.0.0.2" || ev.Route.OifName != "veth0" || ev.Route.Table != 254 {
					t.Errorf("%+v", ev.Route)
				}
			},
		},
		{
			name: "neighbour",
			msg: testmsg.Nlmsg(unix.RTM_NEWNEIGH, marshal(t, &rtnetlink.NeighMessage{
				Family: unix.AF_INET, Index: 7, State: unix.NUD_PERMANENT,
				Attributes: &rtnetlink.NeighAttributes{Address: net.IPv4(10, 0, 0, 9).To4(), LLAddress: net.HardwareAddr{2, 0, 0, 0, 0, 9}},
			})),
			summary: "new neigh 10.0.0.9 dev veth0 lladdr 02:00:00:00:00:09 PERMANENT",
		},
		{
			name: "rule",
			msg: testmsg.Nlmsg(unix.RTM_NEWRULE, marshal(t, &rtnetlink.RuleMessage{
				Family: unix.AF_INET, Table: 100, Action: unix.FR_ACT_TO_TBL,
				Attributes: &rtnetlink.RuleAttributes{Priority: u32(1000)},
			})),
			summary: "new rule 1000: from all lookup 100",
		},
		{
			name:    "netconf decoded generically, with names",
			msg:     testmsg.Nlmsg(unix.RTM_NEWNETCONF, netconf),
			summary: "new netconf dev veth0 forwarding 1",
			check: func(t *testing.T, ev *Event) {
				if len(ev.Attrs) != 2 || ev.Attrs[1].Name != "forwarding" || *ev.Attrs[1].U32 != 1 || ev.Header != "02000000" {
					t.Errorf("%+v", ev)
				}
			},
		},
		{
			name:    "unknown type keeps its bytes",
			msg:     testmsg.Nlmsg(200, []byte{1, 2, 3, 4}),
			summary: "new 200",
			check: func(t *testing.T, ev *Event) {
				if ev.Type != "RTM_200" || ev.TypeNum != 200 {
					t.Errorf("%+v", ev)
				}
			},
		},
		{
			name:    "address too short falls back to a dump",
			msg:     testmsg.Nlmsg(unix.RTM_NEWADDR, []byte{2, 24, 0}),
			summary: "new addr",
			check: func(t *testing.T, ev *Event) {
				if ev.Error == "" || ev.Addr != nil || ev.Header != "021800" {
					t.Errorf("want a decode error, no addr and the bytes: %+v", ev)
				}
			},
		},
		{
			name:    "truncated header",
			msg:     []byte{1, 2, 3},
			summary: "truncated netlink message",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Route(tc.msg, names)
			if !strings.HasPrefix(d.Summary, tc.summary) {
				t.Errorf("summary\n got %q\nwant %q", d.Summary, tc.summary)
			}
			var ev Event
			if err := json.Unmarshal(d.Event, &ev); err != nil {
				t.Fatalf("event is not JSON: %v: %s", err, d.Event)
			}
			if tc.check != nil {
				tc.check(t, &ev)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(testmsg.Nlmsg(unix.RTM_NEWLINK, marshal(f, &rtnetlink.LinkMessage{Index: 1, Attributes: &rtnetlink.LinkAttributes{Name: "lo"}})))
	f.Add(testmsg.Nlmsg(unix.RTM_NEWADDR, marshal(f, &rtnetlink.AddressMessage{Family: unix.AF_INET6, Attributes: &rtnetlink.AddressAttributes{Address: net.IPv6loopback}})))
	f.Add(testmsg.Nlmsg(unix.RTM_NEWNETCONF, []byte{2, 0, 0, 0, 8, 0, 1, 0, 1, 0, 0, 0}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := Route(b, names)
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
