package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ConntrackExpEvent is the JSON object of a conntrack expectation event,
// as `conntrack -E expect` shows it: a connection a helper (FTP, SIP, ...)
// expects, or one inserted from user space.
type ConntrackExpEvent struct {
	Event    string `json:"event"`  // new, update, destroy
	Family   string `json:"family"` // ipv4, ipv6
	Protocol string `json:"protocol,omitempty"`
	// Tuple is the expected connection, Mask which of its fields must
	// match, Master the connection that expects it.
	Tuple  *Tuple `json:"tuple,omitempty"`
	Mask   *Tuple `json:"mask,omitempty"`
	Master *Tuple `json:"master,omitempty"`
	// Timeout is in seconds; Helper the helper's name, Fn the function
	// that will set the new connection up (such as "sip").
	Timeout *uint32 `json:"timeout,omitempty"`
	ID      *uint32 `json:"id,omitempty"`
	Helper  string  `json:"helper,omitempty"`
	Zone    *uint16 `json:"zone,omitempty"`
	// Flags are permanent, inactive, userspace; FlagBits the number.
	Flags    []string `json:"flags,omitempty"`
	FlagBits *uint32  `json:"flag_bits,omitempty"`
	Class    *uint32  `json:"class,omitempty"`
	// NAT is where the expected connection will be NATed to, and in which
	// direction (CTA_EXPECT_NAT).
	NAT   *ExpNAT  `json:"nat,omitempty"`
	Fn    string   `json:"fn,omitempty"`
	Attrs []uint16 `json:"attrs,omitempty"`
	Error string   `json:"decode_error,omitempty"`
	Raw   string   `json:"data_hex,omitempty"`
}

// ExpNAT is an expectation's NAT setting.
type ExpNAT struct {
	Dir   uint32 `json:"dir"` // 0 original, 1 reply
	Tuple *Tuple `json:"tuple,omitempty"`
}

var expFlagNames = []string{"permanent", "inactive", "userspace"}

// ConntrackExp decodes one ctnetlink_exp event (netlink header included).
// It never fails: what does not decode is described by an error and hex.
func ConntrackExp(msg []byte) Result {
	var ev ConntrackExpEvent
	if len(msg) < unix.SizeofNlMsghdr+sizeofNfgenmsg {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than netlink and nfgenmsg headers", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed conntrack expectation")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	flags := binary.NativeEndian.Uint16(msg[6:])
	switch {
	case typ>>8 != nfnlSubsysCtnetlinkExp:
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
	body := xfrmBody(msg)
	if len(body) < sizeofNfgenmsg {
		ev.Error = "shorter than its nfgenmsg header"
		return encodeAny(&ev, ev.summary())
	}
	switch body[0] {
	case unix.AF_INET:
		ev.Family = "ipv4"
	case unix.AF_INET6:
		ev.Family = "ipv6"
	default:
		ev.Family = fmt.Sprintf("af-%d", body[0])
	}
	if err := ev.decodeAttrs(body[sizeofNfgenmsg:]); err != nil {
		ev.Error, ev.Raw = err.Error(), hex.EncodeToString(body[sizeofNfgenmsg:])
	}
	return encodeAny(&ev, ev.summary())
}

func (ev *ConntrackExpEvent) decodeAttrs(b []byte) error {
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
		case 1, 2, 3: // CTA_EXPECT_MASTER, _TUPLE, _MASK
			tp := &Tuple{}
			ad.Nested(tp.decode)
			switch t {
			case 1:
				ev.Master = tp
			case 2:
				ev.Tuple = tp
				if tp.proto != 0 {
					ev.Protocol = protoLabel(tp.proto)
				}
			case 3:
				ev.Mask = tp
			}
		case 4:
			v := ad.Uint32()
			ev.Timeout = &v
		case 5:
			v := ad.Uint32()
			ev.ID = &v
		case 6:
			ev.Helper = ad.String()
		case 7:
			v := ad.Uint16()
			ev.Zone = &v
		case 8:
			v := ad.Uint32()
			ev.FlagBits, ev.Flags = &v, flagWords(v, expFlagNames)
		case 9:
			v := ad.Uint32()
			ev.Class = &v
		case 10:
			n := &ExpNAT{}
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				nd.ByteOrder = binary.BigEndian
				for nd.Next() {
					switch nd.Type() {
					case 1:
						n.Dir = nd.Uint32()
					case 2:
						n.Tuple = &Tuple{}
						nd.Nested(n.Tuple.decode)
					}
				}
				return nil
			})
			ev.NAT = n
		case 11:
			ev.Fn = ad.String()
		default:
			ev.Attrs = append(ev.Attrs, t)
		}
	}
	return ad.Err()
}

// summary reads like conntrack -E expect.
func (ev *ConntrackExpEvent) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", strings.ToUpper(ev.Event), ev.Family)
	if ev.Timeout != nil {
		fmt.Fprintf(&b, " %d", *ev.Timeout)
	}
	if ev.Protocol != "" {
		b.WriteString(" " + ev.Protocol)
	}
	if ev.Tuple != nil {
		b.WriteString(" " + ev.Tuple.String())
	}
	if m := ev.Mask; m != nil {
		fmt.Fprintf(&b, " mask-src=%s mask-dst=%s", m.Src, m.Dst)
		if m.SrcPort != nil && m.DstPort != nil {
			fmt.Fprintf(&b, " sport=%d dport=%d", *m.SrcPort, *m.DstPort)
		}
	}
	if m := ev.Master; m != nil {
		fmt.Fprintf(&b, " master-src=%s master-dst=%s", m.Src, m.Dst)
		if m.SrcPort != nil && m.DstPort != nil {
			fmt.Fprintf(&b, " sport=%d dport=%d", *m.SrcPort, *m.DstPort)
		}
	}
	if len(ev.Flags) > 0 {
		b.WriteString(" " + strings.ToUpper(strings.Join(ev.Flags, ",")))
	}
	if ev.Class != nil {
		fmt.Fprintf(&b, " class=%d", *ev.Class)
	}
	if ev.Helper != "" {
		b.WriteString(" helper=" + ev.Helper)
	}
	if ev.Error != "" {
		b.WriteString(" (" + ev.Error + ")")
	}
	return b.String()
}
