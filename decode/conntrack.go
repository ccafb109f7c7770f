package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ConntrackEvent is the JSON object of a conntrack event.
type ConntrackEvent struct {
	Event      string   `json:"event"`  // new, update, destroy
	Family     string   `json:"family"` // ipv4, ipv6
	Protocol   string   `json:"protocol,omitempty"`
	ProtoNum   *uint8   `json:"protocol_num,omitempty"`
	Orig       *Tuple   `json:"orig,omitempty"`
	Reply      *Tuple   `json:"reply,omitempty"`
	State      string   `json:"state,omitempty"` // TCP/SCTP/DCCP state
	Status     []string `json:"status,omitempty"`
	StatusBits *uint32  `json:"status_bits,omitempty"`
	Timeout    *uint32  `json:"timeout,omitempty"` // seconds
	Mark       *uint32  `json:"mark,omitempty"`
	Zone       *uint16  `json:"zone,omitempty"`
	ID         *uint32  `json:"id,omitempty"`
	Use        *uint32  `json:"use,omitempty"`
	Error      string   `json:"decode_error,omitempty"`
	Raw        string   `json:"data_hex,omitempty"`
}

// Tuple is one direction of a tracked connection.
type Tuple struct {
	Src      string  `json:"src,omitempty"`
	Dst      string  `json:"dst,omitempty"`
	SrcPort  *uint16 `json:"sport,omitempty"`
	DstPort  *uint16 `json:"dport,omitempty"`
	ICMPID   *uint16 `json:"icmp_id,omitempty"`
	ICMPType *uint8  `json:"icmp_type,omitempty"`
	ICMPCode *uint8  `json:"icmp_code,omitempty"`
	Zone     *uint16 `json:"zone,omitempty"`
	proto    uint8
}

// ctnetlink message types and attributes (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCtnetlink = 1
	ctMsgNew            = 0
	ctMsgDelete         = 2
	sizeofNfgenmsg      = 4

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoinfo  = 4
	ctaTimeout    = 7
	ctaMark       = 8
	ctaUse        = 11
	ctaID         = 12
	ctaZone       = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaTupleZone  = 3
)

var ctStatusNames = []string{"expected", "seen-reply", "assured", "confirmed", "src-nat", "dst-nat", "seq-adjust",
	"src-nat-done", "dst-nat-done", "dying", "fixed-timeout", "template", "untracked", "helper", "offload", "hw-offload"}

var tcpStates = []string{"none", "syn-sent", "syn-recv", "established", "fin-wait", "close-wait", "last-ack", "time-wait", "close", "syn-sent2"}

var sctpStates = []string{"none", "closed", "cookie-wait", "cookie-echoed", "established", "shutdown-sent", "shutdown-recd", "shutdown-ack-sent", "heartbeat-sent"}

func protoLabel(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	case unix.IPPROTO_SCTP:
		return "sctp"
	case unix.IPPROTO_DCCP:
		return "dccp"
	case unix.IPPROTO_UDPLITE:
		return "udplite"
	case unix.IPPROTO_GRE:
		return "gre"
	}
	return fmt.Sprintf("proto-%d", p)
}

// Conntrack decodes one ctnetlink event (netlink header included).
// It never fails: what does not decode is described by an error and hex.
func Conntrack(msg []byte) Result {
	var ev ConntrackEvent
	if len(msg) < unix.SizeofNlMsghdr+sizeofNfgenmsg {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than netlink and nfgenmsg headers", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed conntrack message")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	flags := binary.NativeEndian.Uint16(msg[6:])
	switch {
	case typ>>8 != nfnlSubsysCtnetlink:
		ev.Event = fmt.Sprintf("subsys-%d-msg-%d", typ>>8, typ&0xff)
	case typ&0xff == ctMsgDelete:
		ev.Event = "destroy"
	case typ&0xff == ctMsgNew && flags&(unix.NLM_F_CREATE|unix.NLM_F_EXCL) != 0:
		ev.Event = "new"
	case typ&0xff == ctMsgNew:
		ev.Event = "update"
	default:
		ev.Event = fmt.Sprintf("msg-%d", typ&0xff)
	}
	body := msg[unix.SizeofNlMsghdr:]
	switch body[0] {
	case unix.AF_INET:
		ev.Family = "ipv4"
	case unix.AF_INET6:
		ev.Family = "ipv6"
	default:
		ev.Family = fmt.Sprintf("af-%d", body[0])
	}
	if err := ev.decodeAttrs(body[sizeofNfgenmsg:]); err != nil {
		ev.Error = err.Error()
		ev.Raw = hex.EncodeToString(body[sizeofNfgenmsg:])
	}
	return encodeAny(&ev, ev.summary())
}

func (ev *ConntrackEvent) decodeAttrs(b []byte) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	var proto uint8
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig, ctaTupleReply:
			t := &Tuple{}
			ad.Nested(t.decode)
			if ad.Type() == ctaTupleOrig {
				ev.Orig = t
			} else {
				ev.Reply = t
			}
			if t.proto != 0 {
				proto = t.proto
			}
		case ctaStatus:
			v := ad.Uint32()
			ev.StatusBits = &v
			ev.Status = flagWords(v, ctStatusNames)
		case ctaProtoinfo:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					kind := nad.Type() // 1 tcp, 2 dccp, 3 sctp
					nad.Nested(func(sad *netlink.AttributeDecoder) error {
						for sad.Next() {
							if sad.Type() == 1 { // CTA_PROTOINFO_*_STATE
								s := sad.Uint8()
								names := tcpStates
								if kind == 3 {
									names = sctpStates
								}
								if int(s) < len(names) && kind != 2 {
									ev.State = names[s]
								} else {
									ev.State = fmt.Sprintf("state-%d", s)
								}
							}
						}
						return nil
					})
				}
				return nil
			})
		case ctaTimeout:
			v := ad.Uint32()
			ev.Timeout = &v
		case ctaMark:
			v := ad.Uint32()
			ev.Mark = &v
		case ctaUse:
			v := ad.Uint32()
			ev.Use = &v
		case ctaID:
			v := ad.Uint32()
			ev.ID = &v
		case ctaZone:
			v := ad.Uint16()
			ev.Zone = &v
		}
	}
	if proto != 0 {
		ev.ProtoNum = &proto
		ev.Protocol = protoLabel(proto)
	}
	return ad.Err()
}

func (t *Tuple) decode(ad *netlink.AttributeDecoder) error {
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleIP:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					a, ok := netip.AddrFromSlice(nad.Bytes())
					if !ok {
						continue
					}
					switch nad.Type() {
					case 1, 3: // CTA_IP_V4_SRC, CTA_IP_V6_SRC
						t.Src = a.String()
					case 2, 4:
						t.Dst = a.String()
					}
				}
				return nil
			})
		case ctaTupleProto:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case 1: // CTA_PROTO_NUM
						t.proto = nad.Uint8()
					case 2:
						v := nad.Uint16()
						t.SrcPort = &v
					case 3:
						v := nad.Uint16()
						t.DstPort = &v
					case 4, 7: // ICMP, ICMPv6 id
						v := nad.Uint16()
						t.ICMPID = &v
					case 5, 8:
						v := nad.Uint8()
						t.ICMPType = &v
					case 6, 9:
						v := nad.Uint8()
						t.ICMPCode = &v
					}
				}
				return nil
			})
		case ctaTupleZone:
			v := ad.Uint16()
			t.Zone = &v
		}
	}
	return nil
}

func (t *Tuple) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "src=%s dst=%s", t.Src, t.Dst)
	if t.SrcPort != nil && t.DstPort != nil {
		fmt.Fprintf(&b, " sport=%d dport=%d", *t.SrcPort, *t.DstPort)
	}
	if t.ICMPType != nil {
		fmt.Fprintf(&b, " type=%d", *t.ICMPType)
	}
	return b.String()
}

// summary reads like conntrack -E.
func (ev *ConntrackEvent) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", strings.ToUpper(ev.Event), ev.Family)
	if ev.Protocol != "" {
		b.WriteString(" " + ev.Protocol)
	}
	if ev.State != "" {
		b.WriteString(" " + strings.ToUpper(ev.State))
	}
	if ev.Orig != nil {
		b.WriteString(" " + ev.Orig.String())
	}
	if ev.Reply != nil {
		b.WriteString(" reply " + ev.Reply.String())
	}
	if ev.Mark != nil && *ev.Mark != 0 {
		fmt.Fprintf(&b, " mark=%d", *ev.Mark)
	}
	if ev.Zone != nil {
		fmt.Fprintf(&b, " zone=%d", *ev.Zone)
	}
	return b.String()
}
