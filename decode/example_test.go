package decode_test

import (
	"encoding/json"
	"fmt"
	"log"
	"net"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
)

// Route decodes an rtnetlink message, here the RTM_NEWADDR that
// "ip addr add 192.0.2.1/24 dev eth0" makes, built with package rtnetlink.
// The Event is JSON; a Go program can unmarshal it into decode.Event.
func ExampleRoute() {
	body, err := (&rtnetlink.AddressMessage{
		Family: unix.AF_INET, PrefixLength: 24, Scope: unix.RT_SCOPE_UNIVERSE, Index: 2,
		Attributes: &rtnetlink.AddressAttributes{
			Address: net.IPv4(192, 0, 2, 1).To4(), Local: net.IPv4(192, 0, 2, 1).To4(),
			Flags: unix.IFA_F_PERMANENT,
		},
	}).MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	// The netlink header goes first, as the kernel sends a message (and as
	// the raw encoding carries it).
	msg, err := netlink.Message{
		Header: netlink.Header{Length: uint32(unix.SizeofNlMsghdr + len(body)), Type: unix.RTM_NEWADDR},
		Data:   body,
	}.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	names := func(index uint32) string { return map[uint32]string{2: "eth0"}[index] }

	r := decode.Route(msg, names)
	fmt.Println(r.Summary)
	fmt.Println(string(r.Event))

	var ev decode.Event
	if err := json.Unmarshal(r.Event, &ev); err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Type, ev.Addr.Local, ev.Addr.IfName)
	// Output:
	// new addr 192.0.2.1/24 dev eth0 scope global permanent
	// {"type":"RTM_NEWADDR","type_num":20,"nlmsg":{"len":56,"flags":0,"seq":0,"pid":0},"addr":{"family":"inet","index":2,"ifname":"eth0","prefixlen":24,"address":"192.0.2.1","local":"192.0.2.1","scope":"global","flags":["permanent"]}}
	// RTM_NEWADDR 192.0.2.1 eth0
}

// A link message decodes the same way; without names, the interface
// name comes from the message itself.
func ExampleRoute_link() {
	body, err := (&rtnetlink.LinkMessage{
		Type: unix.ARPHRD_ETHER, Index: 2, Flags: unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_MULTICAST,
		Attributes: &rtnetlink.LinkAttributes{Name: "eth0", MTU: 1500, OperationalState: rtnetlink.OperStateUp,
			Address: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}},
	}).MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	msg, err := netlink.Message{
		Header: netlink.Header{Length: uint32(unix.SizeofNlMsghdr + len(body)), Type: unix.RTM_NEWLINK},
		Data:   body,
	}.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(decode.Route(msg, nil).Summary)
	// Output:
	// new link 2: eth0 <UP,BROADCAST,MULTICAST> mtu 1500 state UP link/ether 02:00:00:00:00:01
}

// Uevent decodes a hotplug uevent as the kernel sends it: an
// ACTION@DEVPATH line, then KEY=VALUE pairs, each ending in a NUL byte.
func ExampleUevent() {
	msg := []byte("add@/devices/virtual/net/veth0\x00ACTION=add\x00DEVPATH=/devices/virtual/net/veth0\x00" +
		"SUBSYSTEM=net\x00INTERFACE=veth0\x00IFINDEX=7\x00SEQNUM=3071\x00")
	r := decode.Uevent(msg)
	fmt.Println(r.Summary)

	var ev decode.UeventEvent
	if err := json.Unmarshal(r.Event, &ev); err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Action, ev.Subsystem, ev.Properties["INTERFACE"], *ev.Seqnum)
	// Output:
	// kernel add /devices/virtual/net/veth0 (net) seqnum 3071
	// add net veth0 3071
}

// Names keeps interface names by index: filled from a dump of the links
// (kernel.LinkNames gives one), kept current by link events, and asked
// through Miss for an index it has not seen. Its Lookup method is what
// Route takes.
func ExampleNames() {
	var n decode.Names
	n.Miss = func(index uint32) string {
		fmt.Println("miss", index) // a real Miss asks the kernel (kernel.LinkName)
		return ""
	}
	n.Set(map[uint32]string{1: "lo", 2: "eth0"})

	// "ip link set eth0 name wan0" makes an RTM_NEWLINK with the new name.
	body, err := (&rtnetlink.LinkMessage{Index: 2, Attributes: &rtnetlink.LinkAttributes{Name: "wan0"}}).MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	msg, err := netlink.Message{
		Header: netlink.Header{Length: uint32(unix.SizeofNlMsghdr + len(body)), Type: unix.RTM_NEWLINK},
		Data:   body,
	}.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	n.Update(msg)

	fmt.Printf("%q %q\n", n.Lookup(1), n.Lookup(2))
	fmt.Printf("%q\n", n.Lookup(9))
	fmt.Printf("%q\n", n.Lookup(9)) // remembered: Miss is not asked again

	// An address on interface 2: Route names it with n.Lookup.
	body, err = (&rtnetlink.AddressMessage{Family: unix.AF_INET, PrefixLength: 24, Index: 2,
		Attributes: &rtnetlink.AddressAttributes{Address: net.IPv4(192, 0, 2, 1).To4(), Local: net.IPv4(192, 0, 2, 1).To4()}}).MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	msg, err = netlink.Message{
		Header: netlink.Header{Length: uint32(unix.SizeofNlMsghdr + len(body)), Type: unix.RTM_NEWADDR},
		Data:   body,
	}.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(decode.Route(msg, n.Lookup).Summary)
	// Output:
	// "lo" "wan0"
	// miss 9
	// ""
	// ""
	// new addr 192.0.2.1/24 dev wan0 scope global
}
