package decode

import (
	"encoding/binary"
	"strconv"

	"golang.org/x/sys/unix"
)

// appendLink writes what linkEvent and linkSummary make of an ifinfomsg
// and its attributes, as rtnetlink.LinkMessage reads them. It leaves to
// Route every message that rtnetlink rejects (statistics of a size it
// does not know, a hardware address shorter than 4 or longer than 32
// bytes) or stops reading early (an attribute its reader takes with a
// fixed size, a uint8 or uint32, that has another; a nested attribute
// that does not parse; driver data that a registered driver stops
// reading at, see driverDataValid), and one whose strings JSON would
// escape.
func appendLink(s, e, body []byte, _ IfNames) ([]byte, []byte, bool) {
	if len(body) < unix.SizeofIfInfomsg {
		return s, e, false
	}
	var name, address, broadcast, qdisc, kind []byte
	var mtu, master, txqlen uint32
	var operstate uint8
	w := attrWalk{b: body[unix.SizeofIfInfomsg:]}
	for w.next() {
		switch w.typ {
		case unix.IFLA_ADDRESS, unix.IFLA_BROADCAST:
			if len(w.data) < 4 || len(w.data) > 32 {
				return s, e, false
			}
			if w.typ == unix.IFLA_ADDRESS {
				address = w.data
			} else {
				broadcast = w.data
			}
		case unix.IFLA_IFNAME:
			name = trimNUL(w.data)
		case unix.IFLA_QDISC:
			qdisc = trimNUL(w.data)
		case unix.IFLA_MTU, unix.IFLA_MASTER, unix.IFLA_TXQLEN, unix.IFLA_LINK, unix.IFLA_GROUP,
			unix.IFLA_CARRIER_CHANGES, unix.IFLA_CARRIER_UP_COUNT, unix.IFLA_CARRIER_DOWN_COUNT:
			if len(w.data) != 4 {
				return s, e, false
			}
			switch v := binary.NativeEndian.Uint32(w.data); w.typ {
			case unix.IFLA_MTU:
				mtu = v
			case unix.IFLA_MASTER:
				master = v
			case unix.IFLA_TXQLEN:
				txqlen = v
			}
		case unix.IFLA_OPERSTATE, unix.IFLA_CARRIER, unix.IFLA_LINKMODE:
			if len(w.data) != 1 {
				return s, e, false
			}
			if w.typ == unix.IFLA_OPERSTATE {
				operstate = w.data[0]
			}
		case unix.IFLA_STATS:
			if l := len(w.data); l != 92 && l != 96 {
				return s, e, false
			}
		case unix.IFLA_STATS64:
			if l := len(w.data); l != 184 && l != 192 && l != 200 {
				return s, e, false
			}
		case unix.IFLA_LINKINFO:
			var ok bool
			if kind, ok = linkInfoKind(w.data); !ok {
				return s, e, false
			}
		case unix.IFLA_XDP:
			if !xdpValid(w.data) {
				return s, e, false
			}
		}
	}
	if w.bad || !plainJSON(name) || !plainJSON(qdisc) || !plainJSON(kind) {
		return s, e, false
	}
	attrs := len(body) > unix.SizeofIfInfomsg // rtnetlink's LinkMessage.Attributes is not nil
	index := binary.NativeEndian.Uint32(body[4:])
	flags, change := binary.NativeEndian.Uint32(body[8:]), binary.NativeEndian.Uint32(body[12:])
	linkType := binary.NativeEndian.Uint16(body[2:])

	e = append(e, `{"index":`...)
	e = strconv.AppendUint(e, uint64(index), 10)
	e = appendField(e, "name", name)
	e = append(e, `,"flags":`...)
	e = appendFlagArray(e, flags, ifFlagNames)
	e = append(e, `,"change":`...)
	e = strconv.AppendUint(e, uint64(change), 10)
	e = appendUintField(e, "mtu", mtu)
	e = appendMACField(e, "address", address)
	e = appendMACField(e, "broadcast", broadcast)
	if attrs {
		e = appendOperState(append(e, `,"operstate":"`...), operstate, false)
		e = append(e, '"')
	}
	e = appendField(e, "kind", kind)
	e = appendUintField(e, "master", master)
	e = appendUintField(e, "txqlen", txqlen)
	e = appendField(e, "qdisc", qdisc)
	e = appendArphrd(append(e, `,"link_type":"`...), linkType)
	e = append(e, '"', '}')

	s = append(s, " link "...)
	s = strconv.AppendUint(s, uint64(index), 10)
	s = append(s, ": "...)
	s = append(s, name...)
	s = append(s, " <"...)
	s = appendFlagWords(s, flags, ifFlagNames, ",", "")
	s = append(s, '>')
	if mtu != 0 {
		s = strconv.AppendUint(append(s, " mtu "...), uint64(mtu), 10)
	}
	if attrs {
		s = appendOperState(append(s, " state "...), operstate, true)
	}
	if len(kind) > 0 {
		s = append(append(s, " kind "...), kind...)
	}
	if address != nil {
		s = appendArphrd(append(s, " link/"...), linkType)
		s = append(s, ' ')
		s = appendMAC(s, address)
	}
	return s, e, true
}

// linkInfoKind returns the IFLA_INFO_KIND of an IFLA_LINKINFO, as
// rtnetlink's LinkInfo reads it: ok is false if the attributes do not
// parse, or if they hold data that a driver would stop reading at
// (driverDataValid).
func linkInfoKind(b []byte) (kind []byte, ok bool) {
	var slaveKind []byte
	w := attrWalk{b: b}
	for w.next() {
		switch w.typ {
		case unix.IFLA_INFO_KIND:
			kind = trimNUL(w.data)
		case unix.IFLA_INFO_SLAVE_KIND:
			slaveKind = trimNUL(w.data)
		case unix.IFLA_INFO_DATA:
			if !driverDataValid(kind, false, w.data) {
				return nil, false
			}
		case unix.IFLA_INFO_SLAVE_DATA:
			if !driverDataValid(slaveKind, true, w.data) {
				return nil, false
			}
		}
	}
	return kind, !w.bad
}

// driverDataValid reports whether data, the IFLA_INFO_DATA (slave:
// IFLA_INFO_SLAVE_DATA) of a link of kind, reads without error in the
// driver rtnetlink hands it to, in a program that links
// github.com/jsimonetti/rtnetlink/v2/driver, as nlmcast does (for
// internal/tool/rtgen). A driver reads the data as nested attributes,
// each of the fixed size it reads it at: one that does not parse, or an
// attribute of another size, stops the reading of the whole message, and
// the direct path then leaves it to Route. Those drivers are bond (its
// ports too), netkit and veth; an unregistered kind's data is only
// copied, and reads whatever it holds. In a program that does not link
// the driver package, Route reads every kind's data that way, and driver
// data this rejects only costs it the direct path. It assumes that the
// driver package's are the only drivers registered
// (rtnetlink.RegisterDriver is global; a program that registers another,
// for a kind not listed here, would see AppendRoute and Route differ on
// that kind's malformed data). TestAppendLinkDrivers, which links the
// driver package, fails if a kind of its list of 43 that the package
// registers is missing here; TestAppendLinkDriverData holds each
// attribute that a driver reads to its size.
func driverDataValid(kind []byte, slave bool, data []byte) bool {
	switch string(kind) {
	case "bond":
		if slave {
			return driverAttrsValid(data, bondPortSize)
		}
		return driverAttrsValid(data, bondSize)
	case "netkit":
		return slave || driverAttrsValid(data, netkitSize)
	case "veth":
		return slave || driverAttrsValid(data, nil)
	}
	return true
}

// A sizer gives the size at which a driver reads an attribute of type
// typ: n bytes (any size if n is 0), or, if inner is not nil, nested
// attributes, each of the size inner gives.
type sizer func(typ uint16) (n int, inner sizer)

// driverAttrsValid reports whether b reads without error as the
// attributes of a netlink.AttributeDecoder that a driver reads, each at
// the size that size gives; nil size: a driver that reads none (veth's).
// It follows mdlayher/netlink's decoder, which is more lenient than
// attrWalk: NewAttributeDecoder only asks for a header at each
// attribute, and Next takes an attribute of length 0 as an empty one.
func driverAttrsValid(b []byte, size sizer) bool {
	for i := 0; i < len(b); { // NewAttributeDecoder
		if len(b)-i < unix.SizeofNlAttr {
			return false
		}
		i += align4(max(int(binary.NativeEndian.Uint16(b[i:])), unix.SizeofNlAttr))
	}
	if size == nil {
		return true
	}
	for i := 0; i < len(b); { // Next, and the driver's reading
		l := int(binary.NativeEndian.Uint16(b[i:]))
		if l > len(b)-i || l != 0 && l < unix.SizeofNlAttr {
			return false
		}
		var data []byte
		if l != 0 {
			data = b[i+unix.SizeofNlAttr : i+l]
		}
		switch n, inner := size(binary.NativeEndian.Uint16(b[i+2:]) & attrTypeMask); {
		case inner != nil:
			if !driverAttrsValid(data, inner) {
				return false
			}
		case n > 0 && len(data) != n:
			return false
		}
		i += align4(max(l, unix.SizeofNlAttr))
	}
	return true
}

// anySize is the sizer of attributes read at any size (nested ones that
// a driver takes as bytes).
func anySize(uint16) (int, sizer) { return 0, nil }

// bondSize is the size at which rtnetlink's driver.Bond reads each
// attribute of a bond's IFLA_INFO_DATA.
func bondSize(typ uint16) (int, sizer) {
	switch typ {
	case unix.IFLA_BOND_MODE, unix.IFLA_BOND_USE_CARRIER, unix.IFLA_BOND_PRIMARY_RESELECT,
		unix.IFLA_BOND_FAIL_OVER_MAC, unix.IFLA_BOND_XMIT_HASH_POLICY, unix.IFLA_BOND_NUM_PEER_NOTIF,
		unix.IFLA_BOND_ALL_SLAVES_ACTIVE, unix.IFLA_BOND_AD_LACP_ACTIVE, unix.IFLA_BOND_AD_LACP_RATE,
		unix.IFLA_BOND_AD_SELECT, unix.IFLA_BOND_TLB_DYNAMIC_LB, unix.IFLA_BOND_MISSED_MAX:
		return 1, nil
	case unix.IFLA_BOND_AD_ACTOR_SYS_PRIO, unix.IFLA_BOND_AD_USER_PORT_KEY:
		return 2, nil
	case unix.IFLA_BOND_ACTIVE_SLAVE, unix.IFLA_BOND_MIIMON, unix.IFLA_BOND_UPDELAY, unix.IFLA_BOND_DOWNDELAY,
		unix.IFLA_BOND_PEER_NOTIF_DELAY, unix.IFLA_BOND_ARP_INTERVAL, unix.IFLA_BOND_ARP_VALIDATE,
		unix.IFLA_BOND_ARP_ALL_TARGETS, unix.IFLA_BOND_PRIMARY, unix.IFLA_BOND_RESEND_IGMP,
		unix.IFLA_BOND_MIN_LINKS, unix.IFLA_BOND_LP_INTERVAL, unix.IFLA_BOND_PACKETS_PER_SLAVE:
		return 4, nil
	case unix.IFLA_BOND_ARP_IP_TARGET, unix.IFLA_BOND_NS_IP6_TARGET:
		return 0, anySize
	case unix.IFLA_BOND_AD_INFO:
		return 0, bondADInfoSize
	}
	return 0, nil
}

// bondADInfoSize is bondSize's for the attributes of IFLA_BOND_AD_INFO.
func bondADInfoSize(typ uint16) (int, sizer) {
	switch typ {
	case unix.IFLA_BOND_AD_INFO_AGGREGATOR, unix.IFLA_BOND_AD_INFO_NUM_PORTS,
		unix.IFLA_BOND_AD_INFO_ACTOR_KEY, unix.IFLA_BOND_AD_INFO_PARTNER_KEY:
		return 2, nil
	}
	return 0, nil
}

// bondPortSize is the size at which rtnetlink's driver.BondSlave reads
// each attribute of a bond port's IFLA_INFO_SLAVE_DATA.
func bondPortSize(typ uint16) (int, sizer) {
	switch typ {
	case unix.IFLA_BOND_SLAVE_STATE, unix.IFLA_BOND_SLAVE_MII_STATUS, unix.IFLA_BOND_SLAVE_AD_ACTOR_OPER_PORT_STATE:
		return 1, nil
	case unix.IFLA_BOND_SLAVE_QUEUE_ID, unix.IFLA_BOND_SLAVE_AD_AGGREGATOR_ID, unix.IFLA_BOND_SLAVE_AD_PARTNER_OPER_PORT_STATE:
		return 2, nil
	case unix.IFLA_BOND_SLAVE_LINK_FAILURE_COUNT, unix.IFLA_BOND_SLAVE_PRIO:
		return 4, nil
	}
	return 0, nil
}

// netkitSize is the size at which rtnetlink's driver.Netkit reads each
// attribute of a netkit device's IFLA_INFO_DATA.
func netkitSize(typ uint16) (int, sizer) {
	switch typ {
	case unix.IFLA_NETKIT_PRIMARY:
		return 1, nil
	case unix.IFLA_NETKIT_MODE, unix.IFLA_NETKIT_POLICY, unix.IFLA_NETKIT_PEER_POLICY:
		return 4, nil
	}
	return 0, nil
}

// xdpValid reports whether an IFLA_XDP reads without error in rtnetlink's
// LinkXDP.
func xdpValid(b []byte) bool {
	w := attrWalk{b: b}
	for w.next() {
		switch w.typ {
		case unix.IFLA_XDP_FD, unix.IFLA_XDP_EXPECTED_FD, unix.IFLA_XDP_FLAGS, unix.IFLA_XDP_PROG_ID:
			if len(w.data) != 4 {
				return false
			}
		case unix.IFLA_XDP_ATTACHED:
			if len(w.data) != 1 {
				return false
			}
		}
	}
	return !w.bad
}

// appendOperState appends operStateName(v), in capitals if upper (as
// strings.ToUpper writes it, without its copy), and without fmt's
// allocation for a state with no name.
func appendOperState(dst []byte, v uint8, upper bool) []byte {
	if int(v) >= len(operStateNames) {
		return strconv.AppendUint(dst, uint64(v), 10)
	}
	name := operStateNames[v]
	if !upper {
		return append(dst, name...)
	}
	for i := 0; i < len(name); i++ {
		dst = append(dst, name[i]-('a'-'A')) // the names are lower-case letters only
	}
	return dst
}

// appendArphrd appends arphrdName(t), without fmt's allocation for a
// type with no name.
func appendArphrd(dst []byte, t uint16) []byte {
	if w := arphrdWord(t); w != "" {
		return append(dst, w...)
	}
	return strconv.AppendUint(dst, uint64(t), 10)
}
