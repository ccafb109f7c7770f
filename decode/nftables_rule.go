package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
)

// This file renders a rule's expressions, a set's elements and a traced
// packet's headers as nft prints them, for the common forms: what it does
// not recognise stays in the bracketed form ([name]), so nothing is hidden.

// nftExpr is one expression of a rule: its name and its data attributes.
type nftExpr struct {
	name  string
	attrs map[uint16][]byte
}

func parseNftExprs(b []byte) []nftExpr {
	var out []nftExpr
	ld, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ld.Next() {
		e := nftExpr{name: "?", attrs: map[uint16][]byte{}}
		ld.Nested(func(ed *netlink.AttributeDecoder) error {
			for ed.Next() {
				switch ed.Type() {
				case 1:
					e.name = ed.String()
				case 2:
					if dd, err := netlink.NewAttributeDecoder(ed.Bytes()); err == nil {
						for dd.Next() {
							e.attrs[dd.Type()] = dd.Bytes()
						}
					}
				}
			}
			return nil
		})
		out = append(out, e)
	}
	return out
}

func (e nftExpr) u32(t uint16) (uint32, bool) {
	b, ok := e.attrs[t]
	if !ok || len(b) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(b), true
}

// data returns the value of a nested NFTA_DATA_VALUE attribute.
func (e nftExpr) data(t uint16) ([]byte, bool) {
	var v []byte
	ok := false
	if dd, err := netlink.NewAttributeDecoder(e.attrs[t]); err == nil {
		for dd.Next() {
			if dd.Type() == 1 {
				v, ok = dd.Bytes(), true
			}
		}
	}
	return v, ok
}

// verdict returns a nested NFTA_DATA_VERDICT as nft prints it.
func nftDataVerdict(b []byte) (string, bool) {
	dd, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "", false
	}
	for dd.Next() {
		if dd.Type() != 2 {
			continue
		}
		code, chain, ok := int32(0), "", false
		dd.Nested(func(vd *netlink.AttributeDecoder) error {
			vd.ByteOrder = binary.BigEndian
			for vd.Next() {
				switch vd.Type() {
				case 1:
					code, ok = int32(vd.Uint32()), true
				case 2:
					chain = vd.String()
				}
			}
			return nil
		})
		if !ok {
			return "", false
		}
		v := nftVerdict(code)
		if chain != "" {
			v += " " + chain
		}
		return v, true
	}
	return "", false
}

// nftField is what a register holds: a header field, a meta or ct key.
type nftField struct {
	name string // as nft prints it: "ip daddr", "meta mark", "ct state"
	kind string // how its value prints: addr, port, proto, dec, hex, mark, ifname, nfproto, ctstate, raw
	mask []byte // a bitwise mask applied (ct state), nil for none
	slot int    // the output part the load took
	gte  string // the value of a ">=" match, which a "<=" may make a range
	dep  string // nfproto or l4proto: a protocol dependency nft hides
}

var ipProtoNames = map[byte]string{1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}

type nftRuleCtx struct {
	family string
	parts  []string
	regs   map[uint32]*nftField
	l3     string // ip or ip6, once known
	l4     byte   // the transport protocol, once known
	l3dep  int    // the part of a "meta nfproto" match, or -1
	l4dep  int    // the part of a "meta l4proto" match, or -1
}

// nftRuleText renders a rule's expressions as nft list ruleset does.
func nftRuleText(family string, exprs []nftExpr) string {
	c := &nftRuleCtx{family: family, regs: map[uint32]*nftField{}, l3dep: -1, l4dep: -1}
	switch family {
	case "ip":
		c.l3 = "ip"
	case "ip6":
		c.l3 = "ip6"
	}
	for _, e := range exprs {
		if !c.expr(e) {
			c.parts = append(c.parts, "["+e.name+"]")
		}
	}
	var out []string
	for _, p := range c.parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// load records that a register now holds f, reserving an output part
// that shows the bare expression unless something consumes it.
func (c *nftRuleCtx) load(e nftExpr, dreg uint32, f *nftField) {
	f.slot = len(c.parts)
	c.parts = append(c.parts, "["+e.name+"]")
	c.regs[dreg] = f
}

func (c *nftRuleCtx) expr(e nftExpr) bool {
	switch e.name {
	case "payload":
		dreg, ok := e.u32(1)
		base, ok2 := e.u32(2)
		off, ok3 := e.u32(3)
		n, ok4 := e.u32(4)
		if !ok || !ok2 || !ok3 || !ok4 {
			return false
		}
		f := c.payloadField(base, off, n)
		if f == nil {
			return false
		}
		c.load(e, dreg, f)
		return true
	case "meta":
		key, ok := e.u32(2)
		if !ok {
			return false
		}
		name, kind := nftMetaKey(key)
		if name == "" {
			return false
		}
		if dreg, ok := e.u32(1); ok {
			f := &nftField{name: name, kind: kind}
			if key == 15 || key == 16 {
				f.dep = name
			}
			c.load(e, dreg, f)
			return true
		}
		sreg, ok := e.u32(3)
		src := c.regs[sreg]
		if !ok || src == nil || src.kind != "imm" {
			return false
		}
		c.parts[src.slot] = ""
		delete(c.regs, sreg)
		c.parts = append(c.parts, "meta "+strings.TrimPrefix(name, "meta ")+" set "+nftValue(kind, src.mask))
		return true
	case "ct":
		dreg, ok := e.u32(1)
		key, ok2 := e.u32(2)
		if !ok || !ok2 || e.attrs[3] != nil {
			return false
		}
		switch key {
		case 0:
			c.load(e, dreg, &nftField{name: "ct state", kind: "ctstate"})
		case 3:
			c.load(e, dreg, &nftField{name: "ct mark", kind: "mark"})
		default:
			return false
		}
		return true
	case "bitwise":
		sreg, ok := e.u32(1)
		dreg, ok2 := e.u32(2)
		f := c.regs[sreg]
		mask, ok3 := e.data(4)
		xor, ok4 := e.data(5)
		if !ok || !ok2 || !ok3 || !ok4 || f == nil || f.mask != nil || strings.Trim(string(xor), "\x00") != "" {
			return false
		}
		f.mask = mask
		c.parts[f.slot] += " [bitwise]"
		c.regs[dreg] = f
		return true
	case "cmp":
		sreg, ok := e.u32(1)
		op, ok2 := e.u32(2)
		v, ok3 := e.data(3)
		f := c.regs[sreg]
		if !ok || !ok2 || !ok3 || f == nil || op > 5 {
			return false
		}
		ops := []string{"", "!= ", "< ", "<= ", "> ", ">= "}[op]
		val := nftValue(f.kind, v)
		if f.gte != "" {
			// A range (tcp dport 1-100): >= then <= on the same load.
			if op != 3 {
				return false
			}
			c.parts[f.slot] = f.name + " " + f.gte + "-" + val
			f.gte = ""
			delete(c.regs, sreg)
			return true
		}
		if f.mask != nil {
			// ct state established,related: (state & mask) != 0.
			if f.kind != "ctstate" || op != 1 || strings.Trim(string(v), "\x00") != "" {
				return false
			}
			ops, val = "", nftValue("ctstate", f.mask)
		}
		c.parts[f.slot] = f.name + " " + ops + val
		delete(c.regs, sreg)
		if op == 5 && f.mask == nil {
			f.gte = val
			c.regs[sreg] = f
		}
		if op == 0 && len(v) == 1 {
			switch f.dep {
			case "meta nfproto":
				c.l3dep = f.slot
				c.l3 = map[byte]string{2: "ip", 10: "ip6"}[v[0]]
			case "meta l4proto":
				c.l4dep, c.l4 = f.slot, v[0]
			case "ip protocol", "ip6 nexthdr":
				c.l4 = v[0]
			}
		}
		return true
	case "lookup":
		sreg, ok := e.u32(2)
		set := e.attrs[1]
		f := c.regs[sreg]
		if !ok || set == nil || f == nil || f.mask != nil || e.attrs[3] != nil {
			return false
		}
		neg := ""
		if fl, ok := e.u32(5); ok && fl&1 != 0 {
			neg = "!= "
		}
		c.parts[f.slot] = f.name + " " + neg + "@" + strings.TrimRight(string(set), "\x00")
		delete(c.regs, sreg)
		return true
	case "immediate":
		dreg, ok := e.u32(1)
		if !ok {
			return false
		}
		if dreg == 0 {
			v, ok := nftDataVerdict(e.attrs[2])
			if ok {
				c.parts = append(c.parts, v)
			}
			return ok
		}
		v, ok := e.data(2)
		if !ok {
			return false
		}
		c.load(e, dreg, &nftField{kind: "imm", mask: v})
		return true
	case "log":
		// Only the plain form: an optional prefix, the default level (warn).
		text := "log"
		for t := range e.attrs {
			switch v, _ := e.u32(t); {
			case t == 2:
				text += " prefix " + strconv.Quote(strings.TrimRight(string(e.attrs[t]), "\x00"))
			case t == 5 && v == 4:
			default:
				return false
			}
		}
		c.parts = append(c.parts, text)
		return true
	case "counter":
		b, p := e.attrs[1], e.attrs[2]
		if len(b) != 8 || len(p) != 8 {
			return false
		}
		c.parts = append(c.parts, fmt.Sprintf("counter packets %d bytes %d", binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(b)))
		return true
	}
	return false
}

// payloadField names a header field as nft does, dropping the protocol
// match nft adds as its dependency (and hides when printing).
func (c *nftRuleCtx) payloadField(base, off, n uint32) *nftField {
	type k struct{ off, n uint32 }
	switch base {
	case 1: // network header
		var fields map[k][2]string
		switch c.l3 {
		case "ip":
			fields = map[k][2]string{{12, 4}: {"saddr", "addr"}, {16, 4}: {"daddr", "addr"}, {9, 1}: {"protocol", "proto"},
				{8, 1}: {"ttl", "dec"}, {4, 2}: {"id", "dec"}, {2, 2}: {"length", "dec"}}
		case "ip6":
			fields = map[k][2]string{{8, 16}: {"saddr", "addr"}, {24, 16}: {"daddr", "addr"}, {6, 1}: {"nexthdr", "proto"},
				{7, 1}: {"hoplimit", "dec"}, {4, 2}: {"length", "dec"}}
		}
		fd, ok := fields[k{off, n}]
		if !ok {
			return nil
		}
		if c.l3dep >= 0 {
			c.parts[c.l3dep] = ""
			c.l3dep = -1
		}
		f := &nftField{name: c.l3 + " " + fd[0], kind: fd[1]}
		if fd[0] == "protocol" || fd[0] == "nexthdr" {
			f.dep = f.name
		}
		return f
	case 2: // transport header
		proto := "th"
		switch c.l4 {
		case 6, 17:
			proto = ipProtoNames[c.l4]
		}
		var name, kind string
		switch {
		case off == 0 && n == 2 && proto != "":
			name, kind = "sport", "dec"
		case off == 2 && n == 2:
			name, kind = "dport", "dec"
		case proto == "udp" && off == 4 && n == 2:
			name, kind = "length", "dec"
		case c.l4 == 1 && off == 0 && n == 1:
			proto, name, kind = "icmp", "type", "dec"
		case c.l4 == 1 && off == 1 && n == 1:
			proto, name, kind = "icmp", "code", "dec"
		default:
			return nil
		}
		if c.l4dep >= 0 && proto != "th" {
			c.parts[c.l4dep] = ""
			c.l4dep = -1
		}
		return &nftField{name: proto + " " + name, kind: kind}
	}
	return nil
}

// nftMetaKey names enum nft_meta_keys as nft does, and how values print.
func nftMetaKey(key uint32) (string, string) {
	switch key {
	case 3:
		return "meta mark", "mark"
	case 4:
		return "iif", "index"
	case 5:
		return "oif", "index"
	case 6:
		return "iifname", "ifname"
	case 7:
		return "oifname", "ifname"
	case 10:
		return "meta skuid", "hostdec"
	case 11:
		return "meta skgid", "hostdec"
	case 12:
		return "meta nftrace", "hostdec"
	case 15:
		return "meta nfproto", "nfproto"
	case 16:
		return "meta l4proto", "proto"
	}
	return "", ""
}

// nftValue prints a value of a kind as nft does; hex for anything odd.
func nftValue(kind string, v []byte) string {
	switch {
	case kind == "addr" && (len(v) == 4 || len(v) == 16):
		a, _ := netip.AddrFromSlice(v)
		return a.String()
	case kind == "dec" && len(v) <= 8 && len(v) > 0:
		var x uint64
		for _, c := range v {
			x = x<<8 | uint64(c)
		}
		return strconv.FormatUint(x, 10)
	case (kind == "hostdec" || kind == "index") && len(v) == 4:
		return strconv.FormatUint(uint64(binary.NativeEndian.Uint32(v)), 10)
	case kind == "hostdec" && len(v) == 1:
		return strconv.Itoa(int(v[0]))
	case kind == "mark" && len(v) == 4:
		return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(v))
	case kind == "proto" && len(v) == 1:
		if n, ok := ipProtoNames[v[0]]; ok {
			return n
		}
		return strconv.Itoa(int(v[0]))
	case kind == "nfproto" && len(v) == 1:
		switch v[0] {
		case 2:
			return "ipv4"
		case 10:
			return "ipv6"
		}
		return strconv.Itoa(int(v[0]))
	case kind == "ifname":
		s, exact := strings.CutSuffix(string(v), "\x00")
		s = strings.TrimRight(s, "\x00")
		if !exact {
			s += "*" // a prefix match: nft compares fewer bytes, no NUL
		}
		return strconv.Quote(s)
	case kind == "ctstate" && len(v) == 4:
		x := binary.NativeEndian.Uint32(v)
		var names []string
		for i, n := range []string{"invalid", "established", "related", "new"} {
			if x&(1<<i) != 0 {
				names = append(names, n)
				x &^= 1 << i
			}
		}
		if x&64 != 0 {
			names = append(names, "untracked")
			x &^= 64
		}
		if x != 0 {
			names = append(names, fmt.Sprintf("0x%x", x))
		}
		return strings.Join(names, ",")
	}
	return "0x" + hex.EncodeToString(v)
}

// nftElementKey prints a set element's key. The element message does not
// say the set's type, so the key's length chooses: 4 bytes an IPv4
// address, 2 a port, 16 an IPv6 address or an interface name, 6 a MAC
// address; other lengths in hex.
func nftElementKey(v []byte) string {
	switch len(v) {
	case 2:
		return nftValue("dec", v)
	case 4:
		return nftValue("addr", v)
	case 6:
		return macString(v)
	case 16:
		if s := strings.TrimRight(string(v), "\x00"); s != "" && len(s) < 16 && printable(s) {
			return strconv.Quote(s)
		}
		return nftValue("addr", v)
	}
	return "0x" + hex.EncodeToString(v)
}

func macString(v []byte) string {
	parts := make([]string, len(v))
	for i, c := range v {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(parts, ":")
}

func printable(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

// nftElements returns the keys of NFTA_SET_ELEM_LIST_ELEMENTS.
func nftElements(b []byte) []string {
	var out []string
	ld, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ld.Next() {
		key, end := "", false
		ld.Nested(func(ed *netlink.AttributeDecoder) error {
			ed.ByteOrder = binary.BigEndian
			for ed.Next() {
				switch ed.Type() {
				case 1: // NFTA_SET_ELEM_KEY
					if v, ok := (nftExpr{attrs: map[uint16][]byte{1: ed.Bytes()}}).data(1); ok {
						key = nftElementKey(v)
					}
				case 3: // NFTA_SET_ELEM_FLAGS; a malformed one must not end the walk (ed.Uint32 would)
					if b := ed.Bytes(); len(b) == 4 {
						end = binary.BigEndian.Uint32(b)&1 != 0
					}
				}
			}
			return nil
		})
		if key == "" {
			key = "?"
		}
		if end {
			key += " (interval end)"
		}
		out = append(out, key)
	}
	return out
}

// nftSetTypes are nft's datatype names by number (datatype.h), for a
// set's key type; concatenations pack 6 bits a type, the first highest.
var nftSetTypes = map[uint32]string{1: "verdict", 2: "nf_proto", 4: "integer", 5: "string", 7: "ipv4_addr", 8: "ipv6_addr",
	9: "ether_addr", 10: "ether_type", 12: "inet_proto", 13: "inet_service", 14: "icmp_type", 19: "mark", 20: "iface_index",
	24: "uid", 25: "gid", 26: "ct_state", 35: "devgroup", 36: "dscp", 41: "ifname"}

func nftSetType(t uint32) string {
	if n, ok := nftSetTypes[t]; ok {
		return n
	}
	var names []string
	for ; t != 0; t >>= 6 {
		n, ok := nftSetTypes[t&63]
		if !ok {
			return fmt.Sprintf("type-%d", t)
		}
		names = append([]string{n}, names...)
	}
	return strings.Join(names, " . ")
}

// nftPriority names a base chain's priority as nft does: a standard
// priority of the family and hook, give or take 10, else the number.
func nftPriority(family, hook string, p int32) string {
	type std struct {
		val   int32
		name  string
		hooks string // where the name applies; "" everywhere
	}
	prios := []std{{-300, "raw", ""}, {-150, "mangle", ""}, {-100, "dstnat", "prerouting output"}, {0, "filter", ""},
		{50, "security", ""}, {100, "srcnat", "postrouting input"}}
	switch family {
	case "bridge":
		prios = []std{{-300, "dstnat", "prerouting"}, {-200, "filter", ""}, {100, "out", "output"}, {300, "srcnat", "postrouting"}}
	case "arp", "netdev":
		prios = []std{{0, "filter", ""}}
	}
	for _, s := range prios {
		off := int64(p) - int64(s.val)
		if off < -10 || off > 10 {
			continue
		}
		if s.hooks != "" && !strings.Contains(" "+s.hooks+" ", " "+hook+" ") {
			break
		}
		switch {
		case off > 0:
			return fmt.Sprintf("%s + %d", s.name, off)
		case off < 0:
			return fmt.Sprintf("%s - %d", s.name, -off)
		}
		return s.name
	}
	return strconv.Itoa(int(p))
}
