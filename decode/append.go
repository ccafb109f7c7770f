package decode

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// AppendRoute appends Route's view of msg, its summary line to summary and
// its JSON object to event, byte for byte as Route writes them. The
// messages that everyday changes bring (links, addresses, routes,
// neighbours: an interface up or down, an address added, a lease renewed,
// a neighbour learnt) are written directly: without allocating once
// summary and event have room, when their numbers have names (a table,
// protocol, scope, route type or family without one is formatted by
// fmt) and names allocates nothing (a decode.Names asks its Miss for an
// index it does not know). Any other message, or one of those that holds something Route would render its
// own way (a malformed attribute, multipath, a name that JSON escapes,
// link data that a driver of rtnetlink decodes), goes through Route.
func AppendRoute(summary, event, msg []byte, names IfNames) ([]byte, []byte) {
	if s, e, ok := appendRouteDirect(summary, event, msg, names); ok {
		return s, e
	}
	r := Route(msg, names)
	return append(summary, r.Summary...), append(event, r.Event...)
}

// appendRouteDirect is AppendRoute's direct path. ok is false, and
// summary and event are returned as they came, for a message it leaves to
// Route.
func appendRouteDirect(summary, event, msg []byte, names IfNames) (s, e []byte, ok bool) {
	if len(msg) < unix.SizeofNlMsghdr {
		return summary, event, false
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	var obj string // the Event field, and the function that writes it
	var appendObj func(s, e, body []byte, names IfNames) ([]byte, []byte, bool)
	switch typ &^ 1 {
	case unix.RTM_NEWLINK:
		obj, appendObj = "link", appendLink
	case unix.RTM_NEWADDR:
		obj, appendObj = "addr", appendAddr
	case unix.RTM_NEWROUTE:
		obj, appendObj = "route", appendRouteObj
	case unix.RTM_NEWNEIGH:
		obj, appendObj = "neigh", appendNeigh
	default:
		return summary, event, false
	}
	if names == nil {
		names = noNames
	}
	verb := "new"
	if typ&1 == 1 {
		verb = "del"
	}
	s, e = append(summary, verb...), event
	e = append(e, `{"type":"`...)
	e = append(e, typeName(typ)...)
	e = append(e, `","type_num":`...)
	e = strconv.AppendUint(e, uint64(typ), 10)
	e = append(e, `,"nlmsg":{"len":`...)
	e = strconv.AppendUint(e, uint64(binary.NativeEndian.Uint32(msg)), 10)
	e = append(e, `,"flags":`...)
	e = strconv.AppendUint(e, uint64(binary.NativeEndian.Uint16(msg[6:])), 10)
	e = append(e, `,"seq":`...)
	e = strconv.AppendUint(e, uint64(binary.NativeEndian.Uint32(msg[8:])), 10)
	e = append(e, `,"pid":`...)
	e = strconv.AppendUint(e, uint64(binary.NativeEndian.Uint32(msg[12:])), 10)
	e = append(e, `},"`...)
	e = append(e, obj...)
	e = append(e, `":`...)
	s, e, ok = appendObj(s, e, msg[unix.SizeofNlMsghdr:], names)
	if !ok {
		return summary, event, false
	}
	return s, append(e, '}'), true
}

func noNames(uint32) string { return "" }

// attrTypeMask takes the nested and byte-order flags off an attribute's
// type.
const attrTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// attrWalk reads netlink attributes as mdlayher/netlink's decoder does
// (the rtnetlink package's decoders use it), and stops, bad, at anything
// that decoder rejects: a truncated header or an attribute shorter than
// its header or longer than what is left.
type attrWalk struct {
	b    []byte
	typ  uint16 // the attribute's type, without the nested and byte-order flags
	data []byte
	bad  bool
}

func (w *attrWalk) next() bool {
	if len(w.b) == 0 {
		return false
	}
	if len(w.b) < unix.SizeofNlAttr {
		w.bad = true
		return false
	}
	l := int(binary.NativeEndian.Uint16(w.b))
	if l < unix.SizeofNlAttr || l > len(w.b) {
		w.bad = true // a zero length too: read as an empty value by netlink, left to Route
		return false
	}
	w.typ = binary.NativeEndian.Uint16(w.b[2:]) & attrTypeMask
	w.data = w.b[unix.SizeofNlAttr:l]
	w.b = w.b[min(align4(l), len(w.b)):]
	return true
}

// appendAddr writes what addrEvent and addrSummary make of an ifaddrmsg
// and its attributes, as rtnetlink.AddressMessage reads them.
func appendAddr(s, e, body []byte, names IfNames) ([]byte, []byte, bool) {
	if len(body) < unix.SizeofIfAddrmsg {
		return s, e, false
	}
	var address, local, broadcast, label []byte
	flags := uint32(body[2])
	var attrFlags uint32
	w := attrWalk{b: body[unix.SizeofIfAddrmsg:]}
	for w.next() {
		switch w.typ {
		case unix.IFA_ADDRESS, unix.IFA_LOCAL, unix.IFA_BROADCAST, unix.IFA_ANYCAST, unix.IFA_MULTICAST:
			if !ipLen(w.data) {
				return s, e, false
			}
			switch w.typ {
			case unix.IFA_ADDRESS:
				address = w.data
			case unix.IFA_LOCAL:
				local = w.data
			case unix.IFA_BROADCAST:
				broadcast = w.data
			}
		case unix.IFA_LABEL:
			label = trimNUL(w.data)
		case unix.IFA_CACHEINFO:
			if len(w.data) != unix.SizeofIfaCacheinfo {
				return s, e, false
			}
		case unix.IFA_FLAGS:
			if len(w.data) != 4 {
				return s, e, false
			}
			attrFlags = binary.NativeEndian.Uint32(w.data)
		}
	}
	if w.bad || !plainJSON(label) {
		return s, e, false
	}
	if attrFlags != 0 {
		flags = attrFlags // IFA_FLAGS supersedes the 8-bit field
	}
	index := binary.NativeEndian.Uint32(body[4:])
	ifname := names(index)
	if !plainJSON(ifname) {
		return s, e, false
	}
	family, scope := familyName(body[0]), scopeName(body[3])

	e = append(e, `{"family":"`...)
	e = append(e, family...)
	e = append(e, `","index":`...)
	e = strconv.AppendUint(e, uint64(index), 10)
	e = appendField(e, "ifname", ifname)
	e = append(e, `,"prefixlen":`...)
	e = strconv.AppendUint(e, uint64(body[1]), 10)
	e = appendIPField(e, "address", address)
	e = appendIPField(e, "local", local)
	e = appendIPField(e, "broadcast", broadcast)
	e = appendField(e, "label", label)
	e = append(e, `,"scope":"`...)
	e = append(e, scope...)
	e = append(e, `","flags":`...)
	e = appendFlagArray(e, flags, ifaFlagNames)
	e = append(e, '}')

	s = append(s, " addr "...)
	if local != nil {
		s = appendIP(s, local)
	} else {
		s = appendIP(s, address)
	}
	s = append(s, '/')
	s = strconv.AppendUint(s, uint64(body[1]), 10)
	s = append(s, " dev "...)
	s = appendIfLabel(s, ifname, index)
	s = append(s, " scope "...)
	s = append(s, scope...)
	if flags != 0 {
		s = append(s, ' ')
		s = appendFlagWords(s, flags, ifaFlagNames, " ", "")
	}
	return s, e, true
}

// appendRouteObj writes what routeEvent and routeSummary make of an
// rtmsg and its attributes, as rtnetlink.RouteMessage reads them.
func appendRouteObj(s, e, body []byte, names IfNames) ([]byte, []byte, bool) {
	if len(body) < unix.SizeofRtMsg || (body[0] != unix.AF_INET && body[0] != unix.AF_INET6) {
		return s, e, false // multicast and MPLS routes are decoded generically
	}
	var dst, src, gateway []byte
	var oif, priority, attrTable uint32
	w := attrWalk{b: body[unix.SizeofRtMsg:]}
	for w.next() {
		switch w.typ {
		case unix.RTA_DST, unix.RTA_PREFSRC, unix.RTA_GATEWAY:
			if !ipLen(w.data) {
				return s, e, false
			}
			switch w.typ {
			case unix.RTA_DST:
				dst = w.data
			case unix.RTA_PREFSRC:
				src = w.data
			case unix.RTA_GATEWAY:
				gateway = w.data
			}
		case unix.RTA_OIF, unix.RTA_PRIORITY, unix.RTA_TABLE, unix.RTA_MARK, unix.RTA_EXPIRES:
			if len(w.data) != 4 {
				return s, e, false
			}
			v := binary.NativeEndian.Uint32(w.data)
			switch w.typ {
			case unix.RTA_OIF:
				oif = v
			case unix.RTA_PRIORITY:
				priority = v
			case unix.RTA_TABLE:
				attrTable = v
			}
		case unix.RTA_PREF:
			if len(w.data) != 1 {
				return s, e, false
			}
		case unix.RTA_METRICS: // not shown, but rtnetlink reads five of them
			if !metricsValid(w.data) {
				return s, e, false
			}
		case unix.RTA_MULTIPATH:
			return s, e, false // nested next hops: left to rtnetlink's decoder, and to Route
		}
	}
	if w.bad {
		return s, e, false
	}
	table := uint32(body[4])
	if attrTable != 0 {
		table = attrTable
	}
	var oifname string
	if oif != 0 {
		if oifname = names(oif); !plainJSON(oifname) {
			return s, e, false
		}
	}
	family, proto, scope, typ := familyName(body[0]), protoName(body[5]), scopeName(body[6]), routeTypeName(body[7])

	e = append(e, `{"family":"`...)
	e = append(e, family...)
	e = append(e, `","dst":"`...)
	e = appendDst(e, dst, body[1])
	e = append(e, '"')
	e = appendIPField(e, "src", src)
	e = appendIPField(e, "gateway", gateway)
	if oif != 0 {
		e = append(e, `,"oif":`...)
		e = strconv.AppendUint(e, uint64(oif), 10)
	}
	e = appendField(e, "oifname", oifname)
	e = append(e, `,"table":`...)
	e = strconv.AppendUint(e, uint64(table), 10)
	e = append(e, `,"protocol":"`...)
	e = append(e, proto...)
	e = append(e, `","scope":"`...)
	e = append(e, scope...)
	e = append(e, `","route_type":"`...)
	e = append(e, typ...)
	e = append(e, '"')
	if priority != 0 {
		e = append(e, `,"priority":`...)
		e = strconv.AppendUint(e, uint64(priority), 10)
	}
	e = append(e, '}')

	s = append(s, " route "...)
	if typ != "unicast" {
		s = append(s, typ...)
		s = append(s, ' ')
	}
	s = appendDst(s, dst, body[1])
	if gateway != nil {
		s = append(s, " via "...)
		s = appendIP(s, gateway)
	}
	if oif != 0 {
		s = append(s, " dev "...)
		s = appendIfLabel(s, oifname, oif)
	}
	s = append(s, " table "...)
	s = append(s, tableName(table)...)
	s = append(s, " proto "...)
	s = append(s, proto...)
	s = append(s, " scope "...)
	s = append(s, scope...)
	if src != nil {
		s = append(s, " src "...)
		s = appendIP(s, src)
	}
	if priority != 0 {
		s = append(s, " metric "...)
		s = strconv.AppendUint(s, uint64(priority), 10)
	}
	return s, e, true
}

// metricsValid reports whether rtnetlink reads a route's RTA_METRICS
// without an error: well-formed attributes, and 32 bits for each of the
// five it keeps.
func metricsValid(b []byte) bool {
	w := attrWalk{b: b}
	for w.next() {
		switch w.typ {
		case unix.RTAX_ADVMSS, unix.RTAX_FEATURES, unix.RTAX_INITCWND, unix.RTAX_INITRWND, unix.RTAX_MTU:
			if len(w.data) != 4 {
				return false
			}
		}
	}
	return !w.bad
}

// appendNeigh writes what neighEvent and neighSummary make of an ndmsg
// and its attributes, as rtnetlink.NeighMessage reads them.
func appendNeigh(s, e, body []byte, names IfNames) ([]byte, []byte, bool) {
	if len(body) < unix.SizeofNdMsg {
		return s, e, false
	}
	var dst, lladdr []byte
	w := attrWalk{b: body[unix.SizeofNdMsg:]}
	for w.next() {
		switch w.typ {
		case unix.NDA_DST:
			if !ipLen(w.data) {
				return s, e, false // rtnetlink takes any length, and Route prints it its way
			}
			dst = w.data
		case unix.NDA_LLADDR:
			if len(w.data) > 0 { // rtnetlink ignores an empty one
				lladdr = w.data
			}
		case unix.NDA_CACHEINFO:
			if len(w.data) != 16 {
				return s, e, false
			}
		case unix.NDA_IFINDEX:
			if len(w.data) != 4 {
				return s, e, false
			}
		}
	}
	if w.bad {
		return s, e, false
	}
	index := binary.NativeEndian.Uint32(body[4:])
	ifname := names(index)
	if !plainJSON(ifname) {
		return s, e, false
	}
	state, flags := uint32(binary.NativeEndian.Uint16(body[8:])), uint32(body[10])
	family := familyName(body[0])

	e = append(e, `{"family":"`...)
	e = append(e, family...)
	e = append(e, `","index":`...)
	e = strconv.AppendUint(e, uint64(index), 10)
	e = appendField(e, "ifname", ifname)
	e = appendIPField(e, "dst", dst)
	e = appendMACField(e, "lladdr", lladdr)
	e = append(e, `,"state":`...)
	e = appendFlagArray(e, state, nudStateNames)
	e = append(e, `,"flags":`...)
	e = appendFlagArray(e, flags, ntfFlagNames)
	e = append(e, '}')

	s = append(s, " neigh "...)
	s = appendIP(s, dst)
	s = append(s, " dev "...)
	s = appendIfLabel(s, ifname, index)
	if lladdr != nil {
		s = append(s, " lladdr "...)
		s = appendMAC(s, lladdr)
	}
	s = append(s, ' ')
	return appendFlagWords(s, state, nudStateNames, ",", ""), e, true
}

// ipLen reports whether b is as long as an IPv4 or IPv6 address, the two
// lengths rtnetlink's decoders accept.
func ipLen(b []byte) bool { return len(b) == 4 || len(b) == 16 }

// appendIP appends ip as net.IP's String writes it (an IPv4-mapped IPv6
// address as IPv4); nothing for nil.
func appendIP(dst, ip []byte) []byte {
	switch len(ip) {
	case 4:
		return netip.AddrFrom4([4]byte(ip)).AppendTo(dst)
	case 16:
		return netip.AddrFrom16([16]byte(ip)).Unmap().AppendTo(dst)
	}
	return dst
}

// appendDst appends a route's destination: "default", or the prefix.
func appendDst(dst, ip []byte, bits uint8) []byte {
	if ip == nil {
		return append(dst, "default"...)
	}
	dst = appendIP(dst, ip)
	dst = append(dst, '/')
	return strconv.AppendUint(dst, uint64(bits), 10)
}

// appendMAC appends a link-layer address as net.HardwareAddr's String
// writes it.
func appendMAC(dst, mac []byte) []byte {
	const hex = "0123456789abcdef"
	for i, c := range mac {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, hex[c>>4], hex[c&0xf])
	}
	return dst
}

func appendIfLabel(dst []byte, name string, index uint32) []byte {
	if name != "" {
		return append(dst, name...)
	}
	return strconv.AppendUint(append(dst, "if"...), uint64(index), 10)
}

// appendField appends `,"key":"value"`, or nothing for an empty value
// (omitempty). The value must be plainJSON.
func appendField[S string | []byte](dst []byte, key string, value S) []byte {
	if len(value) == 0 {
		return dst
	}
	dst = append(appendKey(dst, key), '"')
	dst = append(dst, value...)
	return append(dst, '"')
}

// appendIPField appends `,"key":"ip"`, or nothing for nil (omitempty).
func appendIPField(dst []byte, key string, ip []byte) []byte {
	if ip == nil {
		return dst
	}
	dst = appendIP(append(appendKey(dst, key), '"'), ip)
	return append(dst, '"')
}

// appendMACField appends `,"key":"mac"`, or nothing for nil (omitempty).
func appendMACField(dst []byte, key string, mac []byte) []byte {
	if mac == nil {
		return dst
	}
	dst = appendMAC(append(appendKey(dst, key), '"'), mac)
	return append(dst, '"')
}

// appendUintField appends `,"key":v`, or nothing for 0 (omitempty).
func appendUintField(dst []byte, key string, v uint32) []byte {
	if v == 0 {
		return dst
	}
	return strconv.AppendUint(appendKey(dst, key), uint64(v), 10)
}

// appendKey appends `,"key":`, a field after the first.
func appendKey(dst []byte, key string) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, key...)
	return append(dst, `":`...)
}

// appendFlagArray appends flagWords(v, names) as encoding/json writes it.
func appendFlagArray(dst []byte, v uint32, names []string) []byte {
	return append(appendFlagWords(append(dst, '['), v, names, ",", `"`), ']')
}

// appendFlagWords appends flagWords(v, names), each word between quote,
// joined by sep.
func appendFlagWords(dst []byte, v uint32, names []string, sep, quote string) []byte {
	for i, n := 0, 0; v != 0; i++ {
		if v&(1<<i) == 0 {
			continue
		}
		v &^= 1 << i
		if n++; n > 1 {
			dst = append(dst, sep...)
		}
		dst = append(dst, quote...)
		if i < len(names) && names[i] != "" {
			dst = append(dst, names[i]...)
		} else {
			dst = strconv.AppendUint(append(dst, "0x"...), uint64(1)<<i, 16)
		}
		dst = append(dst, quote...)
	}
	return dst
}

// trimNUL is nlenc.String's trimming of a string attribute: every
// trailing NUL goes.
func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// plainJSON reports whether encoding/json writes s as it is between
// quotes: printable ASCII without '"', '\\' and the HTML characters it
// escapes.
func plainJSON[S string | []byte](s S) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
