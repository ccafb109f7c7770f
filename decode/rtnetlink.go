package decode

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// IfNames maps interface indexes to names, for decoding. It may be nil.
type IfNames func(index uint32) string

// Result is the JSON encoding's view of one message: a one-line summary and a JSON object.
type Result struct {
	Summary string // one line, in the spirit of ip monitor
	Event   []byte // a JSON object
}

// Event is the JSON object of a decoded message. Exactly one of the object
// fields is set; Attrs is set (and Header) when the message type has no
// dedicated decoder or its decoder failed.
type Event struct {
	Type    string      `json:"type"`     // e.g. "RTM_NEWLINK"
	TypeNum uint16      `json:"type_num"` // nlmsg_type
	Nlmsg   NlmsgHeader `json:"nlmsg"`
	Link    *LinkEvent  `json:"link,omitempty"`
	Addr    *AddrEvent  `json:"addr,omitempty"`
	Route   *RouteEvent `json:"route,omitempty"`
	Neigh   *NeighEvent `json:"neigh,omitempty"`
	Rule    *RuleEvent  `json:"rule,omitempty"`
	Header  string      `json:"header_hex,omitempty"` // the family header, for generic decoding
	Raw     string      `json:"data_hex,omitempty"`   // what follows the family header, when it is not attributes
	Attrs   []Attr      `json:"attrs,omitempty"`
	Error   string      `json:"decode_error,omitempty"`
}

// NlmsgHeader is the netlink message header.
type NlmsgHeader struct {
	Len   uint32 `json:"len"`
	Flags uint16 `json:"flags"`
	Seq   uint32 `json:"seq"`
	Pid   uint32 `json:"pid"`
}

// LinkEvent is RTM_NEWLINK/RTM_DELLINK.
type LinkEvent struct {
	Index     uint32   `json:"index"`
	Name      string   `json:"name,omitempty"`
	Flags     []string `json:"flags"`
	Change    uint32   `json:"change"`
	MTU       uint32   `json:"mtu,omitempty"`
	Address   string   `json:"address,omitempty"`
	Broadcast string   `json:"broadcast,omitempty"`
	OperState string   `json:"operstate,omitempty"`
	Kind      string   `json:"kind,omitempty"`
	Master    uint32   `json:"master,omitempty"`
	TxQueue   uint32   `json:"txqlen,omitempty"`
	Qdisc     string   `json:"qdisc,omitempty"`
	Type      string   `json:"link_type,omitempty"`
}

// AddrEvent is RTM_NEWADDR/RTM_DELADDR.
type AddrEvent struct {
	Family    string   `json:"family"`
	Index     uint32   `json:"index"`
	IfName    string   `json:"ifname,omitempty"`
	PrefixLen uint8    `json:"prefixlen"`
	Address   string   `json:"address,omitempty"`
	Local     string   `json:"local,omitempty"`
	Broadcast string   `json:"broadcast,omitempty"`
	Label     string   `json:"label,omitempty"`
	Scope     string   `json:"scope"`
	Flags     []string `json:"flags"`
}

// RouteEvent is RTM_NEWROUTE/RTM_DELROUTE.
type RouteEvent struct {
	Family   string `json:"family"`
	Dst      string `json:"dst"`
	Src      string `json:"src,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	Oif      uint32 `json:"oif,omitempty"`
	OifName  string `json:"oifname,omitempty"`
	Table    uint32 `json:"table"`
	Protocol string `json:"protocol"`
	Scope    string `json:"scope"`
	Type     string `json:"route_type"`
	Priority uint32 `json:"priority,omitempty"`
}

// NeighEvent is RTM_NEWNEIGH/RTM_DELNEIGH.
type NeighEvent struct {
	Family string   `json:"family"`
	Index  uint32   `json:"index"`
	IfName string   `json:"ifname,omitempty"`
	Dst    string   `json:"dst,omitempty"`
	LLAddr string   `json:"lladdr,omitempty"`
	State  []string `json:"state"`
	Flags  []string `json:"flags"`
}

// RuleEvent is RTM_NEWRULE/RTM_DELRULE.
type RuleEvent struct {
	Family   string `json:"family"`
	Priority uint32 `json:"priority"`
	Src      string `json:"src,omitempty"`
	Dst      string `json:"dst,omitempty"`
	IIFName  string `json:"iifname,omitempty"`
	OIFName  string `json:"oifname,omitempty"`
	FwMark   uint32 `json:"fwmark,omitempty"`
	Table    uint32 `json:"table"`
	Action   string `json:"action"`
}

// Attr is one netlink attribute of a generically decoded message.
type Attr struct {
	Type  uint16 `json:"type"`
	Name  string `json:"name,omitempty"`
	Value string `json:"value_hex"`
	U32   *int64 `json:"u32,omitempty"` // the value read as a native-endian 32-bit integer, when 4 bytes long
}

// Route decodes one rtnetlink message (netlink header included). It never
// fails: what has no dedicated decoder, or does not decode, is described by
// its type and a dump of its attributes.
func Route(msg []byte, names IfNames) Result {
	if names == nil {
		names = func(uint32) string { return "" }
	}
	var ev Event
	if len(msg) < unix.SizeofNlMsghdr {
		ev.Type = "truncated"
		ev.Error = fmt.Sprintf("message of %d bytes is shorter than a netlink header", len(msg))
		ev.Header = hex.EncodeToString(msg)
		return encode(&ev, "truncated netlink message")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	ev.TypeNum = typ
	ev.Type = typeName(typ)
	ev.Nlmsg = NlmsgHeader{
		Len:   binary.NativeEndian.Uint32(msg),
		Flags: binary.NativeEndian.Uint16(msg[6:]),
		Seq:   binary.NativeEndian.Uint32(msg[8:]),
		Pid:   binary.NativeEndian.Uint32(msg[12:]),
	}
	body := msg[unix.SizeofNlMsghdr:]
	verb := "new"
	if typ%4 == 1 { // RTM_DEL* follow RTM_NEW* in every rtnetlink family of four
		verb = "del"
	}
	summary, err := decodeKnown(&ev, typ, body, names, verb)
	if err == nil && summary != "" {
		return encode(&ev, summary)
	}
	ev.Link, ev.Addr, ev.Route, ev.Neigh, ev.Rule = nil, nil, nil, nil, nil
	if err != nil {
		ev.Error = err.Error()
	}
	generic(&ev, typ, body)
	return encode(&ev, genericSummary(verb, &ev, names))
}

// genericSummary names the object and lists its named attributes.
func genericSummary(verb string, ev *Event, names IfNames) string {
	obj := strings.ToLower(ev.Type)
	for _, p := range []string{"rtm_new", "rtm_del", "rtm_"} {
		if strings.HasPrefix(obj, p) {
			obj = obj[len(p):]
			break
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", verb, obj)
	for _, a := range ev.Attrs {
		switch {
		case a.Name == "ifindex" && a.U32 != nil:
			idx := int32(uint32(*a.U32))
			switch idx {
			case -1:
				b.WriteString(" all")
			case -2:
				b.WriteString(" default")
			default:
				b.WriteString(" dev " + ifLabel(names(uint32(idx)), uint32(idx)))
			}
		case a.Name != "" && a.U32 != nil:
			fmt.Fprintf(&b, " %s %d", a.Name, *a.U32)
		case a.Name != "":
			fmt.Fprintf(&b, " %s 0x%s", a.Name, a.Value)
		}
	}
	if len(ev.Attrs) == 0 && ev.Header != "" {
		fmt.Fprintf(&b, " header 0x%s", ev.Header)
	}
	return b.String()
}

func encode(ev *Event, summary string) Result {
	b, err := json.Marshal(ev)
	if err != nil { // cannot happen: every field is JSON-safe
		b = []byte(`{"type":"unencodable"}`)
	}
	return Result{Summary: summary, Event: b}
}

func decodeKnown(ev *Event, typ uint16, body []byte, names IfNames, verb string) (string, error) {
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		var m rtnetlink.LinkMessage
		if err := m.UnmarshalBinary(body); err != nil {
			return "", err
		}
		ev.Link = linkEvent(&m)
		return linkSummary(verb, ev.Link), nil
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		var m rtnetlink.AddressMessage
		if err := m.UnmarshalBinary(body); err != nil {
			return "", err
		}
		ev.Addr = addrEvent(&m, names)
		return addrSummary(verb, ev.Addr), nil
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if len(body) > 0 && body[0] != unix.AF_INET && body[0] != unix.AF_INET6 {
			return "", nil // multicast and MPLS routes: generic
		}
		var m rtnetlink.RouteMessage
		if err := m.UnmarshalBinary(body); err != nil {
			return "", err
		}
		ev.Route = routeEvent(&m, names)
		return routeSummary(verb, ev.Route), nil
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		var m rtnetlink.NeighMessage
		if err := m.UnmarshalBinary(body); err != nil {
			return "", err
		}
		ev.Neigh = neighEvent(&m, names)
		return neighSummary(verb, ev.Neigh), nil
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		var m rtnetlink.RuleMessage
		if err := m.UnmarshalBinary(body); err != nil {
			return "", err
		}
		ev.Rule = ruleEvent(&m)
		return ruleSummary(verb, ev.Rule), nil
	}
	return "", nil
}

func linkEvent(m *rtnetlink.LinkMessage) *LinkEvent {
	e := &LinkEvent{Index: m.Index, Flags: flagWords(m.Flags, ifFlagNames), Change: m.Change, Type: arphrdName(m.Type)}
	if a := m.Attributes; a != nil {
		e.Name, e.MTU, e.Qdisc = a.Name, a.MTU, a.QueueDisc
		if len(a.Address) > 0 {
			e.Address = a.Address.String()
		}
		if len(a.Broadcast) > 0 {
			e.Broadcast = a.Broadcast.String()
		}
		e.OperState = operStateName(a.OperationalState)
		if a.Info != nil {
			e.Kind = a.Info.Kind
		}
		if a.Master != nil {
			e.Master = *a.Master
		}
		if a.TxQueueLen != nil {
			e.TxQueue = *a.TxQueueLen
		}
	}
	return e
}

func linkSummary(verb string, e *LinkEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s link %d: %s <%s>", verb, e.Index, e.Name, strings.Join(e.Flags, ","))
	if e.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", e.MTU)
	}
	if e.OperState != "" {
		fmt.Fprintf(&b, " state %s", strings.ToUpper(e.OperState))
	}
	if e.Kind != "" {
		fmt.Fprintf(&b, " kind %s", e.Kind)
	}
	if e.Address != "" {
		fmt.Fprintf(&b, " link/%s %s", e.Type, e.Address)
	}
	return b.String()
}

func addrEvent(m *rtnetlink.AddressMessage, names IfNames) *AddrEvent {
	e := &AddrEvent{
		Family: familyName(m.Family), Index: m.Index, IfName: names(m.Index),
		PrefixLen: m.PrefixLength, Scope: scopeName(m.Scope),
	}
	flags := uint32(m.Flags)
	if a := m.Attributes; a != nil {
		e.Address, e.Local, e.Broadcast = ipString(a.Address), ipString(a.Local), ipString(a.Broadcast)
		e.Label = a.Label
		if a.Flags != 0 {
			flags = a.Flags // IFA_FLAGS supersedes the 8-bit field
		}
	}
	e.Flags = flagWords(flags, ifaFlagNames)
	return e
}

func addrSummary(verb string, e *AddrEvent) string {
	addr := e.Local
	if addr == "" {
		addr = e.Address
	}
	s := fmt.Sprintf("%s addr %s/%d dev %s scope %s", verb, addr, e.PrefixLen, ifLabel(e.IfName, e.Index), e.Scope)
	if len(e.Flags) > 0 {
		s += " " + strings.Join(e.Flags, " ")
	}
	return s
}

func routeEvent(m *rtnetlink.RouteMessage, names IfNames) *RouteEvent {
	a := &m.Attributes
	e := &RouteEvent{
		Family: familyName(m.Family), Dst: "default",
		Src: ipString(a.Src), Gateway: ipString(a.Gateway),
		Oif: a.OutIface, Table: uint32(m.Table), Protocol: protoName(m.Protocol),
		Scope: scopeName(m.Scope), Type: routeTypeName(m.Type), Priority: a.Priority,
	}
	if a.Dst != nil {
		e.Dst = fmt.Sprintf("%s/%d", a.Dst, m.DstLength)
	}
	if a.Table != 0 {
		e.Table = a.Table
	}
	if e.Oif != 0 {
		e.OifName = names(e.Oif)
	}
	return e
}

func routeSummary(verb string, e *RouteEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s route ", verb)
	if e.Type != "unicast" {
		b.WriteString(e.Type + " ")
	}
	b.WriteString(e.Dst)
	if e.Gateway != "" {
		fmt.Fprintf(&b, " via %s", e.Gateway)
	}
	if e.Oif != 0 {
		fmt.Fprintf(&b, " dev %s", ifLabel(e.OifName, e.Oif))
	}
	fmt.Fprintf(&b, " table %s proto %s scope %s", tableName(e.Table), e.Protocol, e.Scope)
	if e.Src != "" {
		fmt.Fprintf(&b, " src %s", e.Src)
	}
	if e.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", e.Priority)
	}
	return b.String()
}

func neighEvent(m *rtnetlink.NeighMessage, names IfNames) *NeighEvent {
	e := &NeighEvent{
		Family: familyName(uint8(m.Family)), Index: m.Index, IfName: names(m.Index),
		State: flagWords(uint32(m.State), nudStateNames), Flags: flagWords(uint32(m.Flags), ntfFlagNames),
	}
	if a := m.Attributes; a != nil {
		e.Dst = ipString(a.Address)
		if len(a.LLAddress) > 0 {
			e.LLAddr = a.LLAddress.String()
		}
	}
	return e
}

func neighSummary(verb string, e *NeighEvent) string {
	s := fmt.Sprintf("%s neigh %s dev %s", verb, e.Dst, ifLabel(e.IfName, e.Index))
	if e.LLAddr != "" {
		s += " lladdr " + e.LLAddr
	}
	return s + " " + strings.Join(e.State, ",")
}

func ruleEvent(m *rtnetlink.RuleMessage) *RuleEvent {
	e := &RuleEvent{Family: familyName(m.Family), Table: uint32(m.Table), Action: ruleActionName(m.Action)}
	if a := m.Attributes; a != nil {
		if a.Priority != nil {
			e.Priority = *a.Priority
		}
		if a.Src != nil {
			e.Src = fmt.Sprintf("%s/%d", *a.Src, m.SrcLength)
		}
		if a.Dst != nil {
			e.Dst = fmt.Sprintf("%s/%d", *a.Dst, m.DstLength)
		}
		if a.IIFName != nil {
			e.IIFName = *a.IIFName
		}
		if a.OIFName != nil {
			e.OIFName = *a.OIFName
		}
		if a.FwMark != nil {
			e.FwMark = *a.FwMark
		}
		if a.Table != nil {
			e.Table = *a.Table
		}
	}
	return e
}

func ruleSummary(verb string, e *RuleEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s rule %d: from %s", verb, e.Priority, orAll(e.Src))
	if e.Dst != "" {
		fmt.Fprintf(&b, " to %s", e.Dst)
	}
	if e.IIFName != "" {
		fmt.Fprintf(&b, " iif %s", e.IIFName)
	}
	if e.OIFName != "" {
		fmt.Fprintf(&b, " oif %s", e.OIFName)
	}
	if e.FwMark != 0 {
		fmt.Fprintf(&b, " fwmark %#x", e.FwMark)
	}
	if e.Action == "to_tbl" {
		fmt.Fprintf(&b, " lookup %s", tableName(e.Table))
	} else {
		b.WriteString(" " + e.Action)
	}
	return b.String()
}

// generic fills Header and Attrs from the fixed header and attributes of a
// message type, so nothing is lost when there is no dedicated decoder.
func generic(ev *Event, typ uint16, body []byte) {
	hl := familyHeaderLen(typ)
	if hl > len(body) {
		hl = len(body)
	}
	ev.Header = hex.EncodeToString(body[:hl])
	if align4(hl) >= len(body) {
		return
	}
	rest := body[align4(hl):]
	ad, err := netlink.NewAttributeDecoder(rest)
	if err != nil {
		ev.Error = "attributes: " + err.Error()
		ev.Raw = hex.EncodeToString(rest) // nothing is lost, even undecodable
		return
	}
	names := attrNames(typ)
	for ad.Next() {
		v := ad.Bytes()
		a := Attr{Type: ad.Type(), Value: hex.EncodeToString(v)}
		if int(a.Type) < len(names) {
			a.Name = names[a.Type]
		}
		if len(v) == 4 {
			u := int64(binary.NativeEndian.Uint32(v))
			a.U32 = &u
		}
		ev.Attrs = append(ev.Attrs, a)
	}
	if err := ad.Err(); err != nil {
		ev.Error = "attributes: " + err.Error()
		ev.Raw = hex.EncodeToString(rest)
	}
}

func ipString(ip net.IP) string {
	if len(ip) == 0 {
		return ""
	}
	return ip.String()
}

func ifLabel(name string, index uint32) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("if%d", index)
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

// encodeAny marshals the JSON object of a family's decoder.
func encodeAny(v any, summary string) Result {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: decoders build JSON-safe values
		b = []byte(`{"type":"unencodable"}`)
	}
	return Result{Summary: summary, Event: b}
}

func align4(n int) int { return (n + 3) &^ 3 }
