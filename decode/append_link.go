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
// that does not parse; driver data that a registered driver decodes, see
// driverKind), and one whose strings JSON would escape.
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
// parse, or if they hold data that a driver would decode.
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
			if driverKind(kind, false) {
				return nil, false
			}
		case unix.IFLA_INFO_SLAVE_DATA:
			if driverKind(slaveKind, true) {
				return nil, false
			}
		}
	}
	return kind, !w.bad
}

// driverKind reports whether kind is a kind of link whose IFLA_INFO_DATA
// (slave: IFLA_INFO_SLAVE_DATA) rtnetlink hands to a driver, in a program
// that links github.com/jsimonetti/rtnetlink/v2/driver, as nlmcast does
// (for internal/tool/rtgen). A driver's Decode can stop the reading of the
// whole message, and an unregistered kind's data is only copied, so what
// Route makes of the same message depends on the program: the direct path
// leaves these kinds to Route. It assumes that the driver package's are
// the only drivers registered (rtnetlink.RegisterDriver is global; a
// program that registers another, for a kind not listed here, would see
// AppendRoute and Route differ on that kind's malformed data).
// TestAppendLinkDrivers, which links the driver package, fails if a kind
// of its list of 43 that the package registers is missing here.
func driverKind(kind []byte, slave bool) bool {
	switch string(kind) {
	case "bond":
		return true
	case "netkit", "veth":
		return !slave
	}
	return false
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
