package receiver

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// StateKey says which entry of the kernel's tables an rtnetlink message is
// about: the key that identifies the link, address, route, neighbour,
// rule, nexthop, netconf or nsid entry, and whether the message removes it
// (RTM_DEL*) or sets it (RTM_NEW*). ok is false for messages that are not
// table entries, are malformed, or are route cache clones (which dumps do
// not list). It is a pure function of msg, a whole netlink message in host
// byte order as the raw encoding carries it.
func StateKey(msg []byte) (key string, remove bool, ok bool) {
	if len(msg) < unix.SizeofNlMsghdr {
		return "", false, false
	}
	l := int(binary.NativeEndian.Uint32(msg))
	if l < unix.SizeofNlMsghdr || l > len(msg) {
		return "", false, false
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	body := msg[unix.SizeofNlMsghdr:l]
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		if len(body) < unix.SizeofIfInfomsg {
			return "", false, false
		}
		key = fmt.Sprintf("link %d/%d", body[0], int32(binary.NativeEndian.Uint32(body[4:])))
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		if len(body) < unix.SizeofIfAddrmsg {
			return "", false, false
		}
		a := attrs(body[unix.SizeofIfAddrmsg:])
		key = fmt.Sprintf("addr %d/%d %s/%d peer %s", body[0], binary.NativeEndian.Uint32(body[4:]),
			ip(a[unix.IFA_LOCAL]), body[1], ip(a[unix.IFA_ADDRESS]))
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if len(body) < unix.SizeofRtMsg {
			return "", false, false
		}
		if binary.NativeEndian.Uint32(body[8:])&unix.RTM_F_CLONED != 0 {
			return "", false, false
		}
		a := attrs(body[unix.SizeofRtMsg:])
		table := uint32(body[4])
		if t := a[unix.RTA_TABLE]; len(t) == 4 {
			table = binary.NativeEndian.Uint32(t)
		}
		key = fmt.Sprintf("route %d table %d %s/%d from %s/%d tos %d metric %d", body[0], table,
			ip(a[unix.RTA_DST]), body[1], ip(a[unix.RTA_SRC]), body[2], body[3], u32(a[unix.RTA_PRIORITY]))
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		if len(body) < unix.SizeofNdMsg {
			return "", false, false
		}
		a := attrs(body[unix.SizeofNdMsg:])
		key = fmt.Sprintf("neigh %d/%d %s", body[0], int32(binary.NativeEndian.Uint32(body[4:])), ip(a[unix.NDA_DST]))
		if body[0] == unix.AF_BRIDGE { // forwarding entries: by MAC address and VLAN
			key += fmt.Sprintf(" %x vlan %d", a[unix.NDA_LLADDR], u16(a[unix.NDA_VLAN]))
		}
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		// A rule has no identifier: all of it is its identity.
		key = "rule " + hex.EncodeToString(body)
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		const sizeofNhmsg = 8
		if len(body) < sizeofNhmsg {
			return "", false, false
		}
		key = fmt.Sprintf("nexthop %d", u32(attrs(body[sizeofNhmsg:])[unix.NHA_ID]))
	case unix.RTM_NEWNETCONF, unix.RTM_DELNETCONF:
		if len(body) < 4 {
			return "", false, false
		}
		key = fmt.Sprintf("netconf %d/%d", body[0], int32(u32(attrs(body[4:])[netconfaIfindex])))
	case unix.RTM_NEWNSID, unix.RTM_DELNSID:
		if len(body) < 4 {
			return "", false, false
		}
		key = fmt.Sprintf("nsid %d", int32(u32(attrs(body[4:])[unix.NETNSA_NSID])))
	default:
		return "", false, false
	}
	remove = typ == unix.RTM_DELLINK || typ == unix.RTM_DELADDR || typ == unix.RTM_DELROUTE ||
		typ == unix.RTM_DELNEIGH || typ == unix.RTM_DELRULE || typ == unix.RTM_DELNEXTHOP ||
		typ == unix.RTM_DELNETCONF || typ == unix.RTM_DELNSID
	return key, remove, true
}

// PeerKey is the key under which a Mirror holds the entry of StateKey key
// when it came from a peer network namespace: an event whose frame carries
// that namespace's id (frame.FlagNSID, from a bridge with --all-nsid or
// --netns), as
// in "nsid 42: link 0/7". The bridged namespace's own entries are under
// their StateKey alone. So each namespace has a table of its own within
// the stream's, and a peer's link 7 is never taken for the bridged
// namespace's link 7.
func PeerKey(nsid int32, key string) string {
	return "nsid " + strconv.FormatInt(int64(nsid), 10) + ": " + key
}

// SplitPeerKey undoes PeerKey: for a key of a Mirror's table it returns
// the namespace id and StateKey of a peer's entry (peer true), or key
// itself for an entry of the bridged namespace.
func SplitPeerKey(k string) (nsid int32, peer bool, key string) {
	rest, ok := strings.CutPrefix(k, "nsid ")
	if !ok {
		return 0, false, k
	}
	id, key, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, false, k
	}
	n, err := strconv.ParseInt(id, 10, 32)
	if err != nil {
		return 0, false, k
	}
	return int32(n), true, key
}

// NETCONFA_IFINDEX, which x/sys/unix lacks.
const netconfaIfindex = 1

// attrs indexes the top-level attributes of b by type (the first of each
// type wins); it stops at the first malformed one.
func attrs(b []byte) map[uint16][]byte {
	m := map[uint16][]byte{}
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff // without the nested and byte-order flags
		if l < 4 || l > len(b) {
			break
		}
		if _, dup := m[typ]; !dup {
			m[typ] = b[4:l]
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return m
}

func ip(b []byte) string {
	if a, ok := netip.AddrFromSlice(b); ok {
		return a.String()
	}
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

func u16(b []byte) uint16 {
	if len(b) != 2 {
		return 0
	}
	return binary.NativeEndian.Uint16(b)
}

func u32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}
