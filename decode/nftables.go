package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NftEvent is the JSON object of an nftables event: a ruleset change
// (NFNLGRP_NFTABLES), as `nft monitor` shows it, or a packet trace
// (NFNLGRP_NFTRACE), as `nft monitor trace` does.
type NftEvent struct {
	// Event is the change, "add", "delete" or "destroy" with the object
	// ("add table", "delete rule", ...), "new generation" (the end of a
	// transaction), "trace", or "msg-N".
	Event  string `json:"event"`
	Family string `json:"family"` // inet, ip, ip6, arp, bridge, netdev, or af-N
	Table  string `json:"table,omitempty"`
	Chain  string `json:"chain,omitempty"`
	// Name is the set's, object's or flowtable's name (the chain has
	// Chain, the table Table).
	Name   string  `json:"name,omitempty"`
	Handle *uint64 `json:"handle,omitempty"`
	// Hook, Priority, Type, Policy and Device describe a base chain.
	Hook     string  `json:"hook,omitempty"`
	Priority *int32  `json:"priority,omitempty"`
	Type     string  `json:"type,omitempty"`
	Policy   string  `json:"policy,omitempty"`
	Device   string  `json:"device,omitempty"`
	Flags    *uint32 `json:"flags,omitempty"`
	// Exprs are the names of a rule's expressions, in order; Rule is
	// the rule as nft prints it, where it does not know an expression
	// that expression's name in brackets.
	Exprs []string `json:"exprs,omitempty"`
	Rule  string   `json:"rule,omitempty"`
	// KeyLen, KeyType: a set's key. Elements: how many elements a
	// setelem message adds or deletes.
	KeyLen   *uint32 `json:"key_len,omitempty"`
	KeyType  *uint32 `json:"key_type,omitempty"`
	Elements *int    `json:"elements,omitempty"`
	// Keys are a setelem message's element keys as text, guessed from
	// their length (the message does not say the set's type).
	Keys []string `json:"keys,omitempty"`
	// Gen, PID and Proc: a new generation's number and the process that
	// committed it.
	Gen  *uint32 `json:"gen,omitempty"`
	PID  *uint32 `json:"pid,omitempty"`
	Proc string  `json:"proc,omitempty"`
	// Trace is a packet trace's.
	Trace *NftTrace `json:"trace,omitempty"`
	// Attrs lists the types of the top-level attributes no field holds.
	Attrs []uint16 `json:"attrs,omitempty"`
	Error string   `json:"decode_error,omitempty"`
	Raw   string   `json:"data_hex,omitempty"`
}

// NftTrace is one step of a traced packet (NFT_MSG_TRACE).
type NftTrace struct {
	ID         string  `json:"id"`   // the packet's trace id, 8 hex digits
	Type       string  `json:"type"` // rule, return, policy (the chain's), or type-N
	RuleHandle *uint64 `json:"rule_handle,omitempty"`
	// Verdict is accept, drop, continue, return, jump, goto, queue,
	// stolen, repeat, break, or verdict-N; VerdictChain the target of a
	// jump or goto.
	Verdict      string  `json:"verdict,omitempty"`
	VerdictChain string  `json:"verdict_chain,omitempty"`
	IIF          *uint32 `json:"iif,omitempty"`
	OIF          *uint32 `json:"oif,omitempty"`
	Mark         *uint32 `json:"mark,omitempty"`
	NFProto      *uint32 `json:"nfproto,omitempty"`
	// Headers of the packet, in hex, as far as the kernel copied them.
	LLHeader        string `json:"ll_header,omitempty"`
	NetworkHeader   string `json:"network_header,omitempty"`
	TransportHeader string `json:"transport_header,omitempty"`
	// Packet is the headers as nft monitor trace prints them
	// ("packet: iif 3 ether saddr ... udp dport 9999").
	Packet string `json:"packet,omitempty"`
}

// nfnetlink subsystems (linux/netfilter/nfnetlink.h).
const (
	nfnlSubsysCtnetlinkExp = 2
	nfnlSubsysAcct         = 7
	nfnlSubsysNftables     = 10
)

const nftMsgTrace = 17

// nfacctFOverquota is NFACCT_F_OVERQUOTA.
const nfacctFOverquota = 4

var nftObjects = []string{"table", "table", "table", "chain", "chain", "chain", "rule", "rule", "rule",
	"set", "set", "set", "element", "element", "element", "gen", "gen", "trace", "obj", "obj", "obj", "obj",
	"flowtable", "flowtable", "flowtable", "rule", "table", "chain", "rule", "set", "element", "obj", "flowtable", "element"}

// Netfilter decodes one NETLINK_NETFILTER message by its subsystem:
// ctnetlink (Conntrack), ctnetlink_exp (ConntrackExp), nf_tables
// (Nftables), nfnetlink_acct (NfAcct); others as Conntrack shows them.
func Netfilter(msg []byte) Result {
	if len(msg) >= unix.SizeofNlMsghdr {
		switch binary.NativeEndian.Uint16(msg[4:]) >> 8 {
		case nfnlSubsysNftables:
			return Nftables(msg)
		case nfnlSubsysAcct:
			return NfAcct(msg)
		case nfnlSubsysCtnetlinkExp:
			return ConntrackExp(msg)
		}
	}
	return Conntrack(msg)
}

func nfFamily(f uint8) string {
	switch f {
	case unix.NFPROTO_INET:
		return "inet"
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	case unix.NFPROTO_ARP:
		return "arp"
	case unix.NFPROTO_BRIDGE:
		return "bridge"
	case unix.NFPROTO_NETDEV:
		return "netdev"
	case unix.NFPROTO_UNSPEC:
		return "unspec"
	}
	return fmt.Sprintf("af-%d", f)
}

// Nftables decodes one nf_tables message (netlink header included). It
// never fails: what does not decode is described by an error and hex.
func Nftables(msg []byte) Result {
	var ev NftEvent
	if len(msg) < unix.SizeofNlMsghdr+sizeofNfgenmsg {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than netlink and nfgenmsg headers", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed nftables message")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	m := int(typ & 0xff)
	switch {
	case typ>>8 != nfnlSubsysNftables:
		ev.Event = fmt.Sprintf("subsys-%d-msg-%d", typ>>8, m)
	case m == nftMsgTrace:
		ev.Event, ev.Trace = "trace", &NftTrace{}
	case m == 15:
		ev.Event = "new generation"
	case m < len(nftObjects):
		verb := []string{"add", "get", "delete"}[m%3]
		switch {
		case m >= 26 && m <= 32:
			verb = "destroy"
		case m >= 18 && m <= 21:
			verb = []string{"add", "get", "delete", "reset"}[m-18]
		case m >= 22 && m <= 24:
			verb = []string{"add", "get", "delete"}[m-22]
		case m == 25 || m == 33:
			verb = "reset"
		}
		ev.Event = verb + " " + nftObjects[m]
	default:
		ev.Event = fmt.Sprintf("msg-%d", m)
	}
	body := xfrmBody(msg)
	if len(body) < sizeofNfgenmsg {
		ev.Error = "shorter than its nfgenmsg header"
		return encodeAny(&ev, ev.summary())
	}
	ev.Family = nfFamily(body[0])
	if err := ev.attrs(m, body[sizeofNfgenmsg:]); err != nil {
		ev.Error, ev.Raw = err.Error(), hex.EncodeToString(body[sizeofNfgenmsg:])
	}
	if tr := ev.Trace; tr != nil && (tr.LLHeader != "" || tr.NetworkHeader != "") {
		ll, _ := hex.DecodeString(tr.LLHeader)
		nh, _ := hex.DecodeString(tr.NetworkHeader)
		th, _ := hex.DecodeString(tr.TransportHeader)
		tr.Packet = nftTracePacket(tr, ll, nh, th)
	}
	return encodeAny(&ev, ev.summary())
}

func (ev *NftEvent) attrs(m int, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	u64 := func() *uint64 { v := ad.Uint64(); return &v }
	u32 := func() *uint32 { v := ad.Uint32(); return &v }
	obj := nftObjects[min(m, len(nftObjects)-1)]
	if m >= len(nftObjects) {
		obj = ""
	}
	for ad.Next() {
		t := ad.Type()
		switch {
		case ev.Trace != nil:
			ev.traceAttr(ad, t)
		case m == 15: // NFTA_GEN_*
			switch t {
			case 1:
				ev.Gen = u32()
			case 2:
				ev.PID = u32()
			case 3:
				ev.Proc = ad.String()
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		case obj == "table":
			switch t {
			case 1:
				ev.Table = ad.String()
			case 2:
				ev.Flags = u32()
			case 4:
				ev.Handle = u64()
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		case obj == "chain":
			switch t {
			case 1:
				ev.Table = ad.String()
			case 2:
				ev.Handle = u64()
			case 3:
				ev.Chain = ad.String()
			case 4:
				ad.Nested(func(hd *netlink.AttributeDecoder) error {
					hd.ByteOrder = binary.BigEndian
					for hd.Next() {
						switch hd.Type() {
						case 1:
							ev.Hook = hookName(ev.Family, hd.Uint32())
						case 2:
							v := int32(hd.Uint32())
							ev.Priority = &v
						case 3:
							ev.Device = hd.String()
						}
					}
					return nil
				})
			case 5:
				switch p := ad.Uint32(); p {
				case 0:
					ev.Policy = "drop"
				case 1:
					ev.Policy = "accept"
				default:
					ev.Policy = fmt.Sprintf("policy-%d", p)
				}
			case 7:
				ev.Type = ad.String()
			case 10:
				ev.Flags = u32()
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		case obj == "rule":
			switch t {
			case 1:
				ev.Table = ad.String()
			case 2:
				ev.Chain = ad.String()
			case 3:
				ev.Handle = u64()
			case 4:
				exprs := parseNftExprs(ad.Bytes())
				for _, e := range exprs {
					ev.Exprs = append(ev.Exprs, e.name)
				}
				ev.Rule = nftRuleText(ev.Family, exprs)
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		case obj == "set" || obj == "element":
			switch {
			case t == 1:
				ev.Table = ad.String()
			case t == 2:
				ev.Name = ad.String()
			case obj == "set" && t == 3:
				ev.Flags = u32()
			case obj == "set" && t == 4:
				ev.KeyType = u32()
			case obj == "set" && t == 5:
				ev.KeyLen = u32()
			case obj == "set" && t == 16:
				ev.Handle = u64()
			case obj == "element" && t == 3:
				ev.Keys = nftElements(ad.Bytes())
				n := len(ev.Keys)
				ev.Elements = &n
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		case obj == "obj" || obj == "flowtable":
			switch {
			case t == 1:
				ev.Table = ad.String()
			case t == 2:
				ev.Name = ad.String()
			case obj == "obj" && t == 3:
				v := ad.Uint32()
				ev.Type = fmt.Sprintf("type-%d", v)
				if int(v) < len(nftObjTypes) && nftObjTypes[v] != "" {
					ev.Type = nftObjTypes[v]
				}
			case (obj == "obj" && t == 6) || (obj == "flowtable" && t == 5):
				ev.Handle = u64()
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		default:
			ev.Attrs = append(ev.Attrs, t)
		}
	}
	return ad.Err()
}

var nftObjTypes = []string{"", "counter", "quota", "ct helper", "limit", "ct timeout", "secmark", "ct expectation", "synproxy", "tunnel"}

func (ev *NftEvent) traceAttr(ad *netlink.AttributeDecoder, t uint16) {
	tr := ev.Trace
	u32 := func() *uint32 { v := ad.Uint32(); return &v }
	switch t {
	case 1:
		ev.Table = ad.String()
	case 2:
		ev.Chain = ad.String()
	case 3:
		v := ad.Uint64()
		tr.RuleHandle = &v
	case 4:
		switch v := ad.Uint32(); v { // enum nft_trace_types
		case 1:
			tr.Type = "policy"
		case 2:
			tr.Type = "return"
		case 3:
			tr.Type = "rule"
		default:
			tr.Type = fmt.Sprintf("type-%d", v)
		}
	case 5:
		ad.Nested(func(vd *netlink.AttributeDecoder) error {
			vd.ByteOrder = binary.BigEndian
			for vd.Next() {
				switch vd.Type() {
				case 1:
					tr.Verdict = nftVerdict(int32(vd.Uint32()))
				case 2:
					tr.VerdictChain = vd.String()
				}
			}
			return nil
		})
	case 6:
		tr.ID = fmt.Sprintf("%08x", ad.Uint32())
	case 7:
		tr.LLHeader = hex.EncodeToString(ad.Bytes())
	case 8:
		tr.NetworkHeader = hex.EncodeToString(ad.Bytes())
	case 9:
		tr.TransportHeader = hex.EncodeToString(ad.Bytes())
	case 10:
		tr.IIF = u32()
	case 12:
		tr.OIF = u32()
	case 14:
		tr.Mark = u32()
	case 15:
		tr.NFProto = u32()
	case 16:
		switch p := ad.Uint32(); p {
		case 0:
			tr.Verdict = "drop"
		case 1:
			tr.Verdict = "accept"
		default:
			tr.Verdict = fmt.Sprintf("verdict-%d", p)
		}
	default:
		ev.Attrs = append(ev.Attrs, t)
	}
}

func nftVerdict(v int32) string {
	switch v {
	case 0:
		return "drop"
	case 1:
		return "accept"
	case 2:
		return "stolen"
	case 3:
		return "queue"
	case 4:
		return "repeat"
	case 5:
		return "stop"
	case -1:
		return "continue"
	case -2:
		return "break"
	case -3:
		return "jump"
	case -4:
		return "goto"
	case -5:
		return "return"
	}
	return fmt.Sprintf("verdict-%d", v)
}

// hookName names a base chain's hook number in a family.
func hookName(family string, num uint32) string {
	names := []string{"prerouting", "input", "forward", "output", "postrouting", "ingress"}
	switch family {
	case "netdev":
		names = []string{"ingress", "egress"}
	case "arp":
		names = []string{"input", "output"}
	}
	if int(num) < len(names) {
		return names[num]
	}
	return fmt.Sprintf("hook-%d", num)
}

// summary reads like nft monitor.
func (ev *NftEvent) summary() string {
	var b strings.Builder
	if ev.Trace != nil {
		tr := ev.Trace
		fmt.Fprintf(&b, "trace id %s %s %s %s", tr.ID, ev.Family, ev.Table, ev.Chain)
		if tr.Packet != "" {
			// nft prints the packet on a line of its own, before the rule's.
			b.WriteString(" " + tr.Packet + ";")
		}
		if tr.Type == "policy" {
			fmt.Fprintf(&b, " policy %s", tr.Verdict)
		} else {
			if tr.RuleHandle != nil {
				fmt.Fprintf(&b, " rule handle %d", *tr.RuleHandle)
			} else if tr.Type != "" {
				b.WriteString(" " + tr.Type)
			}
			if tr.Verdict != "" {
				fmt.Fprintf(&b, " (verdict %s", tr.Verdict)
				if tr.VerdictChain != "" {
					b.WriteString(" " + tr.VerdictChain)
				}
				b.WriteString(")")
			}
		}
	} else if ev.Gen != nil {
		fmt.Fprintf(&b, "# new generation %d", *ev.Gen)
		if ev.PID != nil {
			fmt.Fprintf(&b, " by process %d (%s)", *ev.PID, ev.Proc)
		}
	} else {
		b.WriteString(ev.Event)
		if ev.Family != "" {
			b.WriteString(" " + ev.Family)
		}
		for _, s := range []string{ev.Table, ev.Chain, ev.Name} {
			if s != "" {
				b.WriteString(" " + s)
			}
		}
		if ev.Hook != "" || ev.Type != "" && ev.Chain != "" {
			fmt.Fprintf(&b, " { type %s hook %s", ev.Type, ev.Hook)
			if ev.Device != "" {
				fmt.Fprintf(&b, " device %s", ev.Device)
			}
			if ev.Priority != nil {
				fmt.Fprintf(&b, " priority %s", nftPriority(ev.Family, ev.Hook, *ev.Priority))
			}
			b.WriteString(";")
			if ev.Policy != "" {
				fmt.Fprintf(&b, " policy %s;", ev.Policy)
			}
			b.WriteString(" }")
		} else if ev.Type != "" {
			b.WriteString(" " + ev.Type)
		}
		if ev.KeyType != nil && strings.HasSuffix(ev.Event, " set") {
			fmt.Fprintf(&b, " { type %s;%s }", nftSetType(*ev.KeyType), nftSetFlags(ev.Flags))
		}
		deleteRule := ev.Event == "delete rule" || ev.Event == "destroy rule"
		if ev.Rule != "" && !deleteRule {
			b.WriteString(" " + ev.Rule)
		}
		if ev.Keys != nil {
			b.WriteString(" { " + strings.Join(ev.Keys, ", ") + " }")
		}
		if ev.Handle != nil {
			// As nft monitor -a, but nft prints a deleted rule's handle
			// without the "#".
			if deleteRule {
				fmt.Fprintf(&b, " handle %d", *ev.Handle)
			} else {
				fmt.Fprintf(&b, " # handle %d", *ev.Handle)
			}
		}
	}
	if ev.Error != "" {
		b.WriteString(" (" + ev.Error + ")")
	}
	return b.String()
}

// NfAcctEvent is the JSON object of an nfnetlink_acct message: a quota
// reached (NFNLGRP_ACCT_QUOTA), as `nfacct` shows it.
type NfAcctEvent struct {
	// Event is overquota (as the kernel sends it: type new, the over-quota
	// flag set; or type NFNL_MSG_ACCT_OVERQUOTA), new, get, get-reset,
	// del, or msg-N.
	Event   string  `json:"event"`
	Name    string  `json:"name,omitempty"`
	Packets *uint64 `json:"packets,omitempty"`
	Bytes   *uint64 `json:"bytes,omitempty"`
	Quota   *uint64 `json:"quota,omitempty"`
	// Flags are NFACCT_F_QUOTA_PKTS (1), _BYTES (2), _OVERQUOTA (4).
	Flags *uint32  `json:"flags,omitempty"`
	Attrs []uint16 `json:"attrs,omitempty"`
	Error string   `json:"decode_error,omitempty"`
	Raw   string   `json:"data_hex,omitempty"`
}

// NfAcct decodes one nfnetlink_acct message (netlink header included).
// It never fails.
func NfAcct(msg []byte) Result {
	var ev NfAcctEvent
	if len(msg) < unix.SizeofNlMsghdr+sizeofNfgenmsg {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than netlink and nfgenmsg headers", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed nfacct message")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	switch m := typ & 0xff; {
	case typ>>8 != nfnlSubsysAcct:
		ev.Event = fmt.Sprintf("subsys-%d-msg-%d", typ>>8, m)
	case m <= 3:
		ev.Event = []string{"new", "get", "get-reset", "del"}[m]
	case m == 4:
		ev.Event = "overquota"
	default:
		ev.Event = fmt.Sprintf("msg-%d", m)
	}
	body := xfrmBody(msg)
	if len(body) < sizeofNfgenmsg {
		ev.Error = "shorter than its nfgenmsg header"
		return encodeAny(&ev, ev.Event)
	}
	err := func() error {
		b := body[sizeofNfgenmsg:]
		if len(b) == 0 {
			return nil
		}
		ad, err := netlink.NewAttributeDecoder(b)
		if err != nil {
			return err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			switch t := ad.Type(); t {
			case 1:
				ev.Name = ad.String()
			case 2:
				v := ad.Uint64()
				ev.Packets = &v
			case 3:
				v := ad.Uint64()
				ev.Bytes = &v
			case 5:
				v := ad.Uint32()
				ev.Flags = &v
			case 6:
				v := ad.Uint64()
				ev.Quota = &v
			default:
				ev.Attrs = append(ev.Attrs, t)
			}
		}
		return ad.Err()
	}()
	if err != nil {
		ev.Error, ev.Raw = err.Error(), hex.EncodeToString(body[sizeofNfgenmsg:])
	}
	// The kernel sends its over-quota notice with the type of "new"
	// (nfnl_overquota_report), the object's over-quota flag set.
	if ev.Event == "new" && ev.Flags != nil && *ev.Flags&nfacctFOverquota != 0 {
		ev.Event = "overquota"
	}
	sum := fmt.Sprintf("[%s] %s", strings.ToUpper(ev.Event), ev.Name)
	if ev.Packets != nil && ev.Bytes != nil {
		sum += fmt.Sprintf(" pkts=%d bytes=%d", *ev.Packets, *ev.Bytes)
	}
	if ev.Quota != nil {
		sum += fmt.Sprintf(" quota=%d", *ev.Quota)
	}
	return encodeAny(&ev, sum)
}

// nftSetFlags prints the set flags nft shows in a set's declaration.
func nftSetFlags(f *uint32) string {
	if f == nil {
		return ""
	}
	var names []string
	for bit, n := range map[uint32]string{2: "constant", 4: "interval", 16: "timeout", 32: "dynamic"} {
		if *f&bit != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return " flags " + strings.Join(names, ",") + ";"
}
