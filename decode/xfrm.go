package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// XfrmEvent is the JSON object of an xfrm (IPsec) event, as `ip xfrm
// monitor` shows it. Key material is never in it unless Xfrm was asked
// for it: each algorithm says its key's length and KeyRedacted instead.
type XfrmEvent struct {
	// Event is the message type: new-sa, del-sa, upd-sa, new-policy,
	// del-policy, upd-policy, acquire, expire, pol-expire, flush-sa,
	// flush-policy, new-ae, report, migrate, mapping; msg-N for others.
	Event string `json:"event"`
	// SA is the security association of new-sa, upd-sa, del-sa,
	// expire and new-ae (its id, replay state and lifetime counters for
	// the last), or the one acquire asks for.
	SA *XfrmSA `json:"sa,omitempty"`
	// Policy is the policy of new-policy, upd-policy, del-policy,
	// pol-expire and acquire; the selector and direction of migrate.
	Policy *XfrmPolicy `json:"policy,omitempty"`
	// Hard is true for an expire or pol-expire at the hard limit (the SA
	// or policy is gone), false at the soft one; nil for other events.
	Hard *bool `json:"hard,omitempty"`
	// Proto is the protocol flushed (flush-sa) or reported (report), or
	// that acquire asks an SA of.
	Proto string `json:"proto,omitempty"`
	// Selector is the traffic a report or an acquire is about.
	Selector *XfrmSelector `json:"selector,omitempty"`
	// Mapping is a NAT-T mapping change (mapping).
	Mapping *XfrmMapping `json:"mapping,omitempty"`
	// AEFlags is new-ae's flags (XFRM_AE_*), AECause what of them says
	// why it was sent: replay-update, timer-expired, policy-updated.
	AEFlags *uint32  `json:"ae_flags,omitempty"`
	AECause []string `json:"ae_cause,omitempty"`
	// Seq is acquire's sequence number, Algos the algorithm masks of its
	// template.
	Seq   *uint32        `json:"seq,omitempty"`
	Algos *XfrmAlgoMasks `json:"algos,omitempty"`
	// CoAddr is a report's care-of address (XFRMA_COADDR).
	CoAddr string `json:"coaddr,omitempty"`
	// Migrate lists a migrate's SAs (XFRMA_MIGRATE), KMAddress the
	// addresses the key manager should use (XFRMA_KMADDRESS).
	Migrate   []XfrmMigrate  `json:"migrate,omitempty"`
	KMAddress *XfrmKMAddress `json:"kmaddress,omitempty"`
	// Attrs lists the types of the attributes no field above holds.
	Attrs []uint16 `json:"attrs,omitempty"`
	// KeysRedacted is true when the message held key material that the
	// bridge overwrote with zeros, in the raw frame too (lengths kept):
	// see PROTOCOL.md, "xfrm key material".
	KeysRedacted bool   `json:"keys_redacted,omitempty"`
	Error        string `json:"decode_error,omitempty"`
	Raw          string `json:"data_hex,omitempty"`
}

// XfrmSelector is struct xfrm_selector: the traffic an SA or policy
// applies to.
type XfrmSelector struct {
	Src     string `json:"src"` // prefix, such as 10.0.0.0/24
	Dst     string `json:"dst"`
	Proto   string `json:"proto,omitempty"` // empty: any
	SrcPort uint16 `json:"sport,omitempty"`
	DstPort uint16 `json:"dport,omitempty"`
	Ifindex int32  `json:"ifindex,omitempty"`
}

// XfrmSA is an IPsec security association (struct xfrm_usersa_info and
// its attributes).
type XfrmSA struct {
	Src      string        `json:"src,omitempty"`
	Dst      string        `json:"dst"`
	Proto    string        `json:"proto"` // esp, ah, comp, route2, hao, ...
	SPI      string        `json:"spi"`   // 0x hex, as ip xfrm shows it
	Reqid    *uint32       `json:"reqid,omitempty"`
	Mode     string        `json:"mode,omitempty"` // transport, tunnel, ro, in_trigger, beet
	Family   string        `json:"family,omitempty"`
	Replay   *uint8        `json:"replay_window,omitempty"`
	Flags    *uint8        `json:"flags,omitempty"`
	Selector *XfrmSelector `json:"selector,omitempty"`
	// Auth, Enc, AEAD and Comp are the algorithms (XFRMA_ALG_AUTH or
	// XFRMA_ALG_AUTH_TRUNC, XFRMA_ALG_CRYPT, XFRMA_ALG_AEAD,
	// XFRMA_ALG_COMP).
	Auth *XfrmAlgo `json:"auth,omitempty"`
	Enc  *XfrmAlgo `json:"enc,omitempty"`
	AEAD *XfrmAlgo `json:"aead,omitempty"`
	Comp *XfrmAlgo `json:"comp,omitempty"`
	Mark *uint32   `json:"mark,omitempty"`
	IfID *uint32   `json:"if_id,omitempty"`
	// ReplayState (XFRMA_REPLAY_VAL) or ReplayESN (XFRMA_REPLAY_ESN_VAL)
	// is the anti-replay state; Lifetime the current lifetime counters
	// (XFRMA_LTIME_VAL); ReplayThresh the replay sequence difference and
	// ETimerThresh the time, in tenths of a second, that trigger a
	// new-ae (XFRMA_REPLAY_THRESH, XFRMA_ETIMER_THRESH).
	ReplayState  *XfrmReplay    `json:"replay,omitempty"`
	ReplayESN    *XfrmReplayESN `json:"replay_esn,omitempty"`
	Lifetime     *XfrmLifetime  `json:"lifetime,omitempty"`
	ReplayThresh *uint32        `json:"replay_thresh,omitempty"`
	ETimerThresh *uint32        `json:"etimer_thresh,omitempty"`
}

// XfrmReplay is struct xfrm_replay_state.
type XfrmReplay struct {
	Seq    uint32 `json:"seq"`
	OSeq   uint32 `json:"oseq"`
	Bitmap uint32 `json:"bitmap"`
}

// XfrmReplayESN is struct xfrm_replay_state_esn (extended sequence
// numbers); Bitmap is its bmp words, first to last.
type XfrmReplayESN struct {
	Seq          uint32   `json:"seq"`
	SeqHi        uint32   `json:"seq_hi"`
	OSeq         uint32   `json:"oseq"`
	OSeqHi       uint32   `json:"oseq_hi"`
	ReplayWindow uint32   `json:"replay_window"`
	BmpLen       uint32   `json:"bmp_len"`
	Bitmap       []uint32 `json:"bitmap,omitempty"`
}

// XfrmLifetime is struct xfrm_lifetime_cur; the times are Unix seconds,
// 0 for never.
type XfrmLifetime struct {
	Bytes   uint64 `json:"bytes"`
	Packets uint64 `json:"packets"`
	AddTime uint64 `json:"add_time"`
	UseTime uint64 `json:"use_time"`
}

// XfrmAlgoMasks are the bit masks of algorithms (SADB ids) an acquire's
// template allows.
type XfrmAlgoMasks struct {
	Auth uint32 `json:"aalgos"`
	Enc  uint32 `json:"ealgos"`
	Comp uint32 `json:"calgos"`
}

// XfrmMigrate is struct xfrm_user_migrate: one SA moved from old
// addresses to new ones.
type XfrmMigrate struct {
	OldSrc string `json:"old_src"`
	OldDst string `json:"old_dst"`
	NewSrc string `json:"new_src"`
	NewDst string `json:"new_dst"`
	Proto  string `json:"proto"`
	Mode   string `json:"mode"`
	Reqid  uint32 `json:"reqid"`
}

// XfrmKMAddress is struct xfrm_user_kmaddress.
type XfrmKMAddress struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
}

// XfrmAlgo is one algorithm of an SA.
type XfrmAlgo struct {
	Name    string `json:"name"`
	KeyBits uint32 `json:"key_bits"`
	// ICVBits is the AEAD's integrity check value length, TruncBits the
	// authentication algorithm's truncation (XFRMA_ALG_AUTH_TRUNC).
	ICVBits   *uint32 `json:"icv_bits,omitempty"`
	TruncBits *uint32 `json:"trunc_bits,omitempty"`
	// Key is the key in hex, only when Xfrm was asked for keys.
	Key string `json:"key,omitempty"`
	// KeyRedacted is true when the key is left out (and, in the
	// bridge's frames, zeroed).
	KeyRedacted bool `json:"key_redacted,omitempty"`
}

// XfrmPolicy is an IPsec policy (struct xfrm_userpolicy_info, or the id of
// one that was deleted, and its templates).
type XfrmPolicy struct {
	Selector *XfrmSelector  `json:"selector"`
	Dir      string         `json:"dir"` // in, out, fwd, or dir-N
	Action   string         `json:"action,omitempty"`
	Priority *uint32        `json:"priority,omitempty"`
	Index    uint32         `json:"index"`
	Tmpls    []XfrmTemplate `json:"tmpl,omitempty"`
	Mark     *uint32        `json:"mark,omitempty"`
	IfID     *uint32        `json:"if_id,omitempty"`
}

// XfrmTemplate is one template of a policy (struct xfrm_user_tmpl).
type XfrmTemplate struct {
	Src   string `json:"src,omitempty"`
	Dst   string `json:"dst,omitempty"`
	Proto string `json:"proto"`
	SPI   string `json:"spi"`
	Reqid uint32 `json:"reqid"`
	Mode  string `json:"mode"`
}

// XfrmMapping is struct xfrm_user_mapping: a NAT-T peer moved.
type XfrmMapping struct {
	Dst     string `json:"dst"`
	SPI     string `json:"spi"`
	Reqid   uint32 `json:"reqid"`
	OldSrc  string `json:"old_src"`
	NewSrc  string `json:"new_src"`
	OldPort uint16 `json:"old_sport"`
	NewPort uint16 `json:"new_sport"`
}

// xfrm message types (linux/xfrm.h).
const (
	xfrmMsgNewSA       = 0x10
	xfrmMsgDelSA       = 0x11
	xfrmMsgNewPolicy   = 0x13
	xfrmMsgDelPolicy   = 0x14
	xfrmMsgAcquire     = 0x17
	xfrmMsgExpire      = 0x18
	xfrmMsgUpdPolicy   = 0x19
	xfrmMsgUpdSA       = 0x1a
	xfrmMsgPolExpire   = 0x1b
	xfrmMsgFlushSA     = 0x1c
	xfrmMsgFlushPolicy = 0x1d
	xfrmMsgNewAE       = 0x1e
	xfrmMsgReport      = 0x20
	xfrmMsgMigrate     = 0x21
	xfrmMsgMapping     = 0x26
)

// xfrm attributes.
const (
	xfrmaAlgAuth      = 1
	xfrmaAlgCrypt     = 2
	xfrmaAlgComp      = 3
	xfrmaTmpl         = 5
	xfrmaSA           = 6
	xfrmaPolicy       = 7
	xfrmaLtimeVal     = 9
	xfrmaReplayVal    = 10
	xfrmaReplayThresh = 11
	xfrmaETimerThresh = 12
	xfrmaCoAddr       = 14
	xfrmaMigrate      = 17
	xfrmaAlgAEAD      = 18
	xfrmaKMAddress    = 19
	xfrmaAlgAuthTrunc = 20
	xfrmaMark         = 21
	xfrmaReplayESNVal = 23
	xfrmaPad          = 27
	xfrmaIfID         = 31
)

// XFRM_AE_* causes of a new-ae.
var xfrmAECauses = []struct {
	bit  uint32
	name string
}{{16, "replay-update"}, {32, "timer-expired"}, {64, "policy-updated"}}

// Sizes of the kernel's structures on 64-bit Linux (the ones holding
// 64-bit counters are padded to 8 bytes there; 32-bit x86 differs).
const (
	sizeofXfrmSelector   = 56
	sizeofXfrmUsersaInfo = 224
	sizeofXfrmUsersaID   = 24
	sizeofXfrmPolicyInfo = 168
	sizeofXfrmPolicyID   = 64
	sizeofXfrmExpire     = 232
	sizeofXfrmPolExpire  = 176
	sizeofXfrmAcquire    = 280
	sizeofXfrmAeventID   = 48
	sizeofXfrmReport     = 60
	sizeofXfrmMapping    = 64
	sizeofXfrmTmpl       = 64
	sizeofXfrmAlgoName   = 64
	sizeofXfrmMigrate    = 76
	sizeofXfrmKMAddress  = 38 // 40 with its tail padding
	sizeofXfrmReplay     = 12
	sizeofXfrmReplayESN  = 24 // without its bitmap
	sizeofXfrmLifetime   = 32
	sizeofXfrmAddress    = 16
)

var xfrmEvents = map[uint16]string{
	xfrmMsgNewSA: "new-sa", xfrmMsgDelSA: "del-sa", xfrmMsgUpdSA: "upd-sa",
	xfrmMsgNewPolicy: "new-policy", xfrmMsgDelPolicy: "del-policy", xfrmMsgUpdPolicy: "upd-policy",
	xfrmMsgAcquire: "acquire", xfrmMsgExpire: "expire", xfrmMsgPolExpire: "pol-expire",
	xfrmMsgFlushSA: "flush-sa", xfrmMsgFlushPolicy: "flush-policy", xfrmMsgNewAE: "new-ae",
	xfrmMsgReport: "report", xfrmMsgMigrate: "migrate", xfrmMsgMapping: "mapping",
}

// xfrmHeader is the length of each message type's fixed part, before its
// attributes; zero for types without attributes this package reads.
func xfrmHeader(typ uint16) int {
	switch typ {
	case xfrmMsgNewSA, xfrmMsgUpdSA:
		return sizeofXfrmUsersaInfo
	case xfrmMsgDelSA:
		return sizeofXfrmUsersaID
	case xfrmMsgNewPolicy, xfrmMsgUpdPolicy:
		return sizeofXfrmPolicyInfo
	case xfrmMsgDelPolicy, xfrmMsgMigrate:
		return sizeofXfrmPolicyID
	case xfrmMsgExpire:
		return sizeofXfrmExpire
	case xfrmMsgPolExpire:
		return sizeofXfrmPolExpire
	case xfrmMsgAcquire:
		return sizeofXfrmAcquire
	case xfrmMsgNewAE:
		return sizeofXfrmAeventID
	case xfrmMsgReport:
		return sizeofXfrmReport
	case xfrmMsgMapping:
		return sizeofXfrmMapping
	}
	return 0
}

// xfrmKeyOffset returns where the key starts in an algorithm attribute of
// type typ (struct xfrm_algo, xfrm_algo_auth, xfrm_algo_aead), or 0 when
// the attribute holds no key.
func xfrmKeyOffset(typ uint16) int {
	switch typ {
	case xfrmaAlgAuth, xfrmaAlgCrypt, xfrmaAlgComp:
		return sizeofXfrmAlgoName + 4
	case xfrmaAlgAuthTrunc, xfrmaAlgAEAD:
		return sizeofXfrmAlgoName + 8
	}
	return 0
}

// RedactXfrm overwrites with zeros, in place, the key material of an xfrm
// message (netlink header included): every byte after the fixed part of
// each algorithm attribute (XFRMA_ALG_AUTH, _AUTH_TRUNC, _CRYPT, _AEAD,
// _COMP), to the end of the attribute. The kernel sends keys in SA
// messages (new-sa, upd-sa, del-sa); every message whose attributes Xfrm
// reads is redacted alike. Lengths, key lengths and every other byte stay.
// It returns how many algorithms had key bytes. If the attributes do not
// parse, every byte after the message's fixed part is zeroed (and counted
// as one): nothing that could be a key is left. It never panics. Unlike
// the decoders, it writes to msg.
func RedactXfrm(msg []byte) int {
	if len(msg) < unix.SizeofNlMsghdr {
		return 0
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	attrs, ok := xfrmAttrs(typ, xfrmBody(msg))
	if !ok {
		return 0
	}
	redacted := 0
	for len(attrs) > 0 {
		if len(attrs) < 4 {
			return redacted + zero(attrs)
		}
		l := int(binary.NativeEndian.Uint16(attrs))
		if l < 4 || l > len(attrs) {
			return redacted + zero(attrs)
		}
		t := binary.NativeEndian.Uint16(attrs[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if off := xfrmKeyOffset(t); off != 0 {
			if p := attrs[4:l]; len(p) > off {
				redacted += zero(p[off:])
			} else if len(p) < off {
				redacted += zero(p) // too short to be an algorithm: nothing to keep
			}
		}
		step := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if step > len(attrs) {
			step = len(attrs)
		}
		attrs = attrs[step:]
	}
	return redacted
}

// xfrmBody returns the message after its netlink header, to its length.
func xfrmBody(msg []byte) []byte {
	n := int(binary.NativeEndian.Uint32(msg))
	if n < unix.SizeofNlMsghdr || n > len(msg) {
		n = len(msg)
	}
	return msg[unix.SizeofNlMsghdr:n]
}

// xfrmAttrs returns the attributes of a message of type typ, and whether
// it has any that Xfrm reads.
func xfrmAttrs(typ uint16, body []byte) ([]byte, bool) {
	hdr := xfrmHeader(typ)
	if (hdr == 0 && typ != xfrmMsgFlushPolicy) || len(body) < hdr {
		return nil, false
	}
	return body[min(len(body), (hdr+3)&^3):], true
}

// zero clears b and returns 1 if it held any byte, else 0.
func zero(b []byte) int {
	clear(b)
	if len(b) > 0 {
		return 1
	}
	return 0
}

// Xfrm decodes one xfrm message (netlink header included). keys says
// whether algorithms show their keys; without it Xfrm decodes a copy of
// msg redacted by RedactXfrm, so that no byte of a key is in the event (not
// in data_hex either), and each key is marked key_redacted. It never
// fails: what does not decode is described by an error and hex.
func Xfrm(msg []byte, keys bool) Result {
	var ev XfrmEvent
	if !keys && len(msg) >= unix.SizeofNlMsghdr {
		msg = bytes.Clone(msg)
		if RedactXfrm(msg) > 0 {
			ev.KeysRedacted = true
		}
	}
	if len(msg) < unix.SizeofNlMsghdr {
		ev.Event, ev.Error, ev.Raw = "malformed", "shorter than a netlink header", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed xfrm message")
	}
	typ := binary.NativeEndian.Uint16(msg[4:])
	ev.Event = xfrmEvents[typ]
	if ev.Event == "" {
		ev.Event = fmt.Sprintf("msg-%d", typ)
	}
	body := xfrmBody(msg)
	hdr := xfrmHeader(typ)
	if len(body) < hdr {
		ev.Error, ev.Raw = fmt.Sprintf("%s: %d bytes, shorter than its %d-byte header", ev.Event, len(body), hdr), hex.EncodeToString(body)
		return encodeAny(&ev, ev.summary())
	}
	d := xfrmDecoder{keys: keys, ev: &ev}
	switch typ {
	case xfrmMsgNewSA, xfrmMsgUpdSA:
		ev.SA = usersaInfo(body)
	case xfrmMsgDelSA:
		ev.SA = usersaID(body)
	case xfrmMsgNewPolicy, xfrmMsgUpdPolicy:
		ev.Policy = policyInfo(body)
	case xfrmMsgDelPolicy, xfrmMsgMigrate:
		ev.Policy = &XfrmPolicy{Selector: selector(body), Index: ne32(body[56:]), Dir: xfrmDir(body[60])}
	case xfrmMsgExpire:
		ev.SA, ev.Hard = usersaInfo(body), boolp(body[sizeofXfrmUsersaInfo] != 0)
	case xfrmMsgPolExpire:
		ev.Policy, ev.Hard = policyInfo(body), boolp(body[sizeofXfrmPolicyInfo] != 0)
	case xfrmMsgAcquire: // struct xfrm_user_acquire
		ev.Proto = xfrmProto(body[20])
		// The SA's addresses have the selector's family, else the
		// policy's, as ip xfrm monitor reads them.
		d.family = binary.NativeEndian.Uint16(body[40+40:])
		if d.family == 0 {
			d.family = binary.NativeEndian.Uint16(body[96+40:])
		}
		ev.SA = &XfrmSA{Dst: xaddr(body[0:16], d.family), Src: xaddr(body[24:40], d.family), Proto: ev.Proto, SPI: spi(body[16:])}
		ev.Selector = selector(body[40:])
		ev.Policy = policyInfo(body[96:])
		ev.Algos = &XfrmAlgoMasks{Auth: ne32(body[264:]), Enc: ne32(body[268:]), Comp: ne32(body[272:])}
		seq := ne32(body[276:])
		ev.Seq = &seq
		d.policyAttrs = true // the kernel adds the policy's templates, mark and if_id
	case xfrmMsgNewAE: // struct xfrm_aevent_id
		ev.SA = usersaIDAt(body)
		ev.SA.Src = xaddr(body[24:40], binary.NativeEndian.Uint16(body[20:]))
		r, flags := ne32(body[44:]), ne32(body[40:])
		ev.SA.Reqid, ev.AEFlags = &r, &flags
		for _, c := range xfrmAECauses {
			if flags&c.bit != 0 {
				ev.AECause = append(ev.AECause, c.name)
			}
		}
	case xfrmMsgFlushSA:
		if len(body) > 0 {
			ev.Proto = xfrmProto(body[0])
		}
	case xfrmMsgReport: // struct xfrm_user_report
		ev.Proto, ev.Selector = xfrmProto(body[0]), selector(body[4:])
		d.family = binary.NativeEndian.Uint16(body[4+40:])
	case xfrmMsgMapping:
		id := usersaIDAt(body)
		fam := binary.NativeEndian.Uint16(body[20:])
		ev.Mapping = &XfrmMapping{Dst: id.Dst, SPI: id.SPI, Reqid: ne32(body[24:]),
			OldSrc: xaddr(body[28:44], fam), NewSrc: xaddr(body[44:60], fam),
			OldPort: binary.BigEndian.Uint16(body[60:]), NewPort: binary.BigEndian.Uint16(body[62:])}
	}
	if attrs, ok := xfrmAttrs(typ, body); ok {
		if err := d.attrs(attrs); err != nil {
			ev.Error, ev.Raw = err.Error(), hex.EncodeToString(attrs)
		}
	}
	return encodeAny(&ev, ev.summary())
}

type xfrmDecoder struct {
	keys bool
	ev   *XfrmEvent
	// family is that of address attributes (XFRMA_COADDR); policyAttrs
	// says XFRMA_MARK and XFRMA_IF_ID are the policy's though the event
	// has an SA too (acquire).
	family      uint16
	policyAttrs bool
}

func (d *xfrmDecoder) attrs(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	ev := d.ev
	sa := func() *XfrmSA {
		if ev.SA == nil {
			ev.SA = &XfrmSA{}
		}
		return ev.SA
	}
	for ad.Next() {
		p := ad.Bytes()
		switch t := ad.Type(); t {
		case xfrmaAlgAuth, xfrmaAlgCrypt, xfrmaAlgComp, xfrmaAlgAEAD, xfrmaAlgAuthTrunc:
			a := d.algo(t, p)
			if a == nil {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			switch t {
			case xfrmaAlgAuth: // the kernel sends both; the truncated one says more
				if sa().Auth == nil || sa().Auth.TruncBits == nil {
					sa().Auth = a
				}
			case xfrmaAlgAuthTrunc:
				sa().Auth = a
			case xfrmaAlgCrypt:
				sa().Enc = a
			case xfrmaAlgAEAD:
				sa().AEAD = a
			case xfrmaAlgComp:
				sa().Comp = a
			}
		case xfrmaSA: // del-sa: the whole SA
			if len(p) >= sizeofXfrmUsersaInfo {
				id := ev.SA
				ev.SA = usersaInfo(p)
				if id != nil && ev.SA.Dst == "" {
					ev.SA.Dst = id.Dst
				}
			}
		case xfrmaPolicy: // del-policy: the whole policy
			if len(p) >= sizeofXfrmPolicyInfo {
				tm := []XfrmTemplate(nil)
				if ev.Policy != nil {
					tm = ev.Policy.Tmpls
				}
				ev.Policy = policyInfo(p)
				ev.Policy.Tmpls = tm
			}
		case xfrmaTmpl:
			if ev.Policy == nil {
				ev.Policy = &XfrmPolicy{}
			}
			for ; len(p) >= sizeofXfrmTmpl; p = p[sizeofXfrmTmpl:] {
				fam := binary.NativeEndian.Uint16(p[24:])
				ev.Policy.Tmpls = append(ev.Policy.Tmpls, XfrmTemplate{Dst: xaddr(p[0:16], fam), Src: xaddr(p[28:44], fam),
					Proto: xfrmProto(p[20]), SPI: spi(p[16:]), Reqid: ne32(p[44:]), Mode: xfrmMode(p[48])})
			}
		case xfrmaMark:
			if len(p) >= 4 {
				v := ne32(p)
				if ev.Policy != nil && (ev.SA == nil || d.policyAttrs) {
					ev.Policy.Mark = &v
				} else {
					sa().Mark = &v
				}
			}
		case xfrmaIfID:
			if len(p) >= 4 {
				v := ne32(p)
				if ev.Policy != nil && (ev.SA == nil || d.policyAttrs) {
					ev.Policy.IfID = &v
				} else {
					sa().IfID = &v
				}
			}
		case xfrmaReplayVal: // struct xfrm_replay_state
			if len(p) < sizeofXfrmReplay {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			sa().ReplayState = &XfrmReplay{OSeq: ne32(p), Seq: ne32(p[4:]), Bitmap: ne32(p[8:])}
		case xfrmaReplayESNVal: // struct xfrm_replay_state_esn
			if len(p) < sizeofXfrmReplayESN {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			r := &XfrmReplayESN{BmpLen: ne32(p), OSeq: ne32(p[4:]), Seq: ne32(p[8:]), OSeqHi: ne32(p[12:]),
				SeqHi: ne32(p[16:]), ReplayWindow: ne32(p[20:])}
			for b := p[sizeofXfrmReplayESN:]; len(b) >= 4 && uint32(len(r.Bitmap)) < r.BmpLen; b = b[4:] {
				r.Bitmap = append(r.Bitmap, ne32(b))
			}
			sa().ReplayESN = r
		case xfrmaLtimeVal: // struct xfrm_lifetime_cur
			if len(p) < sizeofXfrmLifetime {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			ne := binary.NativeEndian
			sa().Lifetime = &XfrmLifetime{Bytes: ne.Uint64(p), Packets: ne.Uint64(p[8:]), AddTime: ne.Uint64(p[16:]), UseTime: ne.Uint64(p[24:])}
		case xfrmaReplayThresh, xfrmaETimerThresh:
			if len(p) < 4 {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			v := ne32(p)
			if t == xfrmaReplayThresh {
				sa().ReplayThresh = &v
			} else {
				sa().ETimerThresh = &v
			}
		case xfrmaCoAddr:
			if len(p) < sizeofXfrmAddress || d.family == 0 {
				// Its family is known for acquire and report only; an SA's
				// care-of address stays listed, never shown in the wrong
				// family.
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			ev.CoAddr = xaddr(p, d.family)
		case xfrmaMigrate: // one or more struct xfrm_user_migrate
			if len(p) < sizeofXfrmMigrate {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			for ; len(p) >= sizeofXfrmMigrate; p = p[sizeofXfrmMigrate:] {
				oldFam, newFam := binary.NativeEndian.Uint16(p[72:]), binary.NativeEndian.Uint16(p[74:])
				ev.Migrate = append(ev.Migrate, XfrmMigrate{
					OldDst: xaddr(p[0:16], oldFam), OldSrc: xaddr(p[16:32], oldFam),
					NewDst: xaddr(p[32:48], newFam), NewSrc: xaddr(p[48:64], newFam),
					Proto: xfrmProto(p[64]), Mode: xfrmMode(p[65]), Reqid: ne32(p[68:])})
			}
		case xfrmaKMAddress: // struct xfrm_user_kmaddress
			if len(p) < sizeofXfrmKMAddress {
				ev.Attrs = append(ev.Attrs, t)
				continue
			}
			fam := binary.NativeEndian.Uint16(p[36:])
			ev.KMAddress = &XfrmKMAddress{Local: xaddr(p[0:16], fam), Remote: xaddr(p[16:32], fam)}
		case xfrmaPad: // alignment of a 64-bit attribute, nothing to show
		default:
			ev.Attrs = append(ev.Attrs, t)
		}
	}
	return ad.Err()
}

// algo reads an algorithm attribute; nil when too short to be one.
func (d *xfrmDecoder) algo(t uint16, p []byte) *XfrmAlgo {
	off := xfrmKeyOffset(t)
	if len(p) < off {
		return nil
	}
	a := &XfrmAlgo{Name: cstring(p[:sizeofXfrmAlgoName]), KeyBits: ne32(p[64:])}
	switch t {
	case xfrmaAlgAuthTrunc:
		v := ne32(p[68:])
		a.TruncBits = &v
	case xfrmaAlgAEAD:
		v := ne32(p[68:])
		a.ICVBits = &v
	}
	key := p[off:]
	if n := int(a.KeyBits+7) / 8; a.KeyBits <= 1<<16 && n < len(key) {
		key = key[:n]
	}
	switch {
	case len(key) == 0:
	case d.keys:
		a.Key = hex.EncodeToString(key)
	default:
		a.KeyRedacted = true
		d.ev.KeysRedacted = true
	}
	return a
}

func ne32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

func boolp(b bool) *bool { return &b }

func cstring(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func spi(b []byte) string { return fmt.Sprintf("0x%08x", binary.BigEndian.Uint32(b)) }

// xaddr formats an xfrm_address_t of a family.
func xaddr(b []byte, family uint16) string {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4])).String()
	}
	if family == unix.AF_INET6 {
		return netip.AddrFrom16([16]byte(b[:16])).String()
	}
	if a, ok := netip.AddrFromSlice(b[:16]); ok && !a.IsUnspecified() {
		return a.String()
	}
	return ""
}

func selector(b []byte) *XfrmSelector {
	fam := binary.NativeEndian.Uint16(b[40:])
	s := &XfrmSelector{
		Src:     prefix(xaddr(b[16:32], fam), b[43], fam),
		Dst:     prefix(xaddr(b[0:16], fam), b[42], fam),
		DstPort: binary.BigEndian.Uint16(b[32:]),
		SrcPort: binary.BigEndian.Uint16(b[36:]),
		Ifindex: int32(ne32(b[48:])),
	}
	if b[44] != 0 {
		s.Proto = protoLabel(b[44])
	}
	return s
}

func prefix(a string, bits uint8, fam uint16) string {
	if a == "" {
		if fam == unix.AF_INET6 {
			a = "::"
		} else {
			a = "0.0.0.0"
		}
	}
	return fmt.Sprintf("%s/%d", a, bits)
}

func usersaInfo(b []byte) *XfrmSA {
	fam := binary.NativeEndian.Uint16(b[212:])
	reqid, replay, flags := ne32(b[208:]), b[215], b[216]
	return &XfrmSA{
		Src: xaddr(b[80:96], fam), Dst: xaddr(b[56:72], fam), Proto: xfrmProto(b[76]), SPI: spi(b[72:]),
		Reqid: &reqid, Mode: xfrmMode(b[214]), Family: afName(fam), Replay: &replay, Flags: &flags,
		Selector: selector(b),
	}
}

// usersaIDAt reads struct xfrm_usersa_id.
func usersaIDAt(b []byte) *XfrmSA {
	fam := binary.NativeEndian.Uint16(b[20:])
	return &XfrmSA{Dst: xaddr(b[0:16], fam), SPI: spi(b[16:]), Family: afName(fam), Proto: xfrmProto(b[22])}
}

func usersaID(b []byte) *XfrmSA { return usersaIDAt(b) }

func policyInfo(b []byte) *XfrmPolicy {
	prio := ne32(b[152:])
	p := &XfrmPolicy{Selector: selector(b), Priority: &prio, Index: ne32(b[156:]), Dir: xfrmDir(b[160])}
	switch b[161] {
	case 0:
		p.Action = "allow"
	case 1:
		p.Action = "block"
	default:
		p.Action = fmt.Sprintf("action-%d", b[161])
	}
	return p
}

func afName(f uint16) string {
	switch f {
	case unix.AF_INET:
		return "ipv4"
	case unix.AF_INET6:
		return "ipv6"
	}
	return fmt.Sprintf("af-%d", f)
}

func xfrmDir(d uint8) string {
	switch d {
	case 0:
		return "in"
	case 1:
		return "out"
	case 2:
		return "fwd"
	}
	return fmt.Sprintf("dir-%d", d)
}

func xfrmMode(m uint8) string {
	switch m {
	case 0:
		return "transport"
	case 1:
		return "tunnel"
	case 2:
		return "ro"
	case 3:
		return "in_trigger"
	case 4:
		return "beet"
	case 5:
		return "iptfs"
	}
	return fmt.Sprintf("mode-%d", m)
}

func xfrmProto(p uint8) string {
	switch p {
	case unix.IPPROTO_ESP:
		return "esp"
	case unix.IPPROTO_AH:
		return "ah"
	case unix.IPPROTO_COMP:
		return "comp"
	case unix.IPPROTO_ROUTING:
		return "route2"
	case unix.IPPROTO_DSTOPTS:
		return "hao"
	case 0:
		return "any"
	}
	return protoLabel(p)
}

// summary reads like ip xfrm monitor.
func (ev *XfrmEvent) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]", strings.ToUpper(ev.Event))
	if sa := ev.SA; sa != nil {
		if sa.Src != "" {
			b.WriteString(" src " + sa.Src)
		}
		fmt.Fprintf(&b, " dst %s proto %s spi %s", sa.Dst, sa.Proto, sa.SPI)
		if sa.Reqid != nil {
			fmt.Fprintf(&b, " reqid %d", *sa.Reqid)
		}
		if sa.Mode != "" {
			b.WriteString(" mode " + sa.Mode)
		}
		for _, a := range []struct {
			what string
			a    *XfrmAlgo
		}{{"auth", sa.Auth}, {"enc", sa.Enc}, {"aead", sa.AEAD}, {"comp", sa.Comp}} {
			if a.a != nil {
				fmt.Fprintf(&b, " %s %s", a.what, a.a.Name)
				if a.a.KeyRedacted {
					fmt.Fprintf(&b, " <%d-bit key redacted>", a.a.KeyBits)
				} else if a.a.Key != "" {
					b.WriteString(" 0x" + a.a.Key)
				}
			}
		}
		if r := sa.ReplayState; r != nil {
			fmt.Fprintf(&b, " replay seq 0x%x oseq 0x%x bitmap 0x%08x", r.Seq, r.OSeq, r.Bitmap)
		}
		if r := sa.ReplayESN; r != nil {
			fmt.Fprintf(&b, " replay-esn seq-hi 0x%x seq 0x%x oseq-hi 0x%x oseq 0x%x window %d", r.SeqHi, r.Seq, r.OSeqHi, r.OSeq, r.ReplayWindow)
		}
		if l := sa.Lifetime; l != nil {
			fmt.Fprintf(&b, " %d bytes %d packets", l.Bytes, l.Packets)
		}
	}
	if ev.AEFlags != nil {
		fmt.Fprintf(&b, " flags 0x%x", *ev.AEFlags)
		for _, c := range ev.AECause {
			b.WriteString(" " + c)
		}
	}
	if ev.Proto != "" && ev.SA == nil {
		b.WriteString(" proto " + ev.Proto)
	}
	if s := ev.Selector; s != nil { // report, acquire: the traffic
		fmt.Fprintf(&b, " sel src %s dst %s", s.Src, s.Dst)
		if s.Proto != "" {
			b.WriteString(" proto " + s.Proto)
		}
	}
	if ev.CoAddr != "" {
		b.WriteString(" coa " + ev.CoAddr)
	}
	if p := ev.Policy; p != nil && p.Selector != nil {
		if ev.SA != nil { // acquire: its policy, after the SA it asks for
			b.WriteString(" policy")
		}
		fmt.Fprintf(&b, " src %s dst %s", p.Selector.Src, p.Selector.Dst)
		if p.Selector.Proto != "" {
			b.WriteString(" proto " + p.Selector.Proto)
		}
		fmt.Fprintf(&b, " dir %s", p.Dir)
		if p.Priority != nil {
			fmt.Fprintf(&b, " priority %d", *p.Priority)
		}
		if p.Action != "" {
			b.WriteString(" action " + p.Action)
		}
		for _, t := range p.Tmpls {
			fmt.Fprintf(&b, " tmpl src %s dst %s proto %s reqid %d mode %s", t.Src, t.Dst, t.Proto, t.Reqid, t.Mode)
		}
	}
	for _, m := range ev.Migrate {
		fmt.Fprintf(&b, " migrate proto %s mode %s reqid %d from src %s dst %s to src %s dst %s", m.Proto, m.Mode, m.Reqid, m.OldSrc, m.OldDst, m.NewSrc, m.NewDst)
	}
	if k := ev.KMAddress; k != nil {
		fmt.Fprintf(&b, " kmaddress local %s remote %s", k.Local, k.Remote)
	}
	if ev.Hard != nil {
		fmt.Fprintf(&b, " hard %v", *ev.Hard)
	}
	if m := ev.Mapping; m != nil {
		fmt.Fprintf(&b, " dst %s spi %s reqid %d from %s:%d to %s:%d", m.Dst, m.SPI, m.Reqid, m.OldSrc, m.OldPort, m.NewSrc, m.NewPort)
	}
	if ev.Error != "" {
		b.WriteString(" (" + ev.Error + ")")
	}
	return b.String()
}
