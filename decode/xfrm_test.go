package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testmsg"
)

// capturedXfrm are xfrm messages this kernel (6.18, x86_64) sent to the
// policy group of a fresh network namespace, read with a plain netlink
// socket, as these commands ran:
//
//	ip xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 proto tcp dport 443 dir out priority 100 \
//		tmpl src 10.0.0.1 dst 10.0.0.2 proto esp reqid 7 mode tunnel
//	ip xfrm policy update src 10.0.0.0/24 dst 10.0.1.0/24 proto tcp dport 443 dir out priority 200 action block
//	ip xfrm policy add src 2001:db8::/64 dst 2001:db8:1::/64 dir in mark 5 mask 0xff
//	ip xfrm policy delete src 10.0.0.0/24 dst 10.0.1.0/24 proto tcp dport 443 dir out
//	ip xfrm policy flush
//
// This kernel has no SA type (ESP, AH, IPComp): SA messages are built by
// xfrmSAMsg, from linux/xfrm.h's layout.
var capturedXfrm = map[string]string{
	"new-policy-tmpl":      "0801000013000000771b0d6b000000000a0001000000000000000000000000000a00000000000000000000000000000001bbffff0000000002001818060000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000761b0d6b00000000000000000000000064000000010000000100000000000000440005000a0000020000000000000000000000000000000032000000020000000a0000010000000000000000000000000700000001000000ffffffffffffffffffffffff0a0010000000000000000000",
	"upd-policy-block":     "c400000019000000771b0d6b000000000a0001000000000000000000000000000a00000000000000000000000000000001bbffff0000000002001818060000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000761b0d6b000000000000000000000000c80000000100000001010000000000000a0010000000000000000000",
	"new-policy-ipv6-mark": "d000000013000000771b0d6b0000000020010db800010000000000000000000020010db800000000000000000000000000000000000000000a004040000000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000761b0d6b000000000000000000000000000000000800000000000000000000000a00100000000000000000000c00150005000000ff000000",
	"del-policy":           "0801000014000000771b0d6b000000000a0001000000000000000000000000000a00000000000000000000000000000001bbffff00000000020018180600000000000000000000000000000001000000ac0007000a0001000000000000000000000000000a00000000000000000000000000000001bbffff0000000002001818060000000000000000000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000761b0d6b000000000000000000000000c80000000100000001010000000000000a0010000000000000000000",
	"flush-policy":         "1c0000001d000000771b0d6b000000000a0010000000000000000000",
}

func captured(t testing.TB, name string) []byte {
	t.Helper()
	b, err := hex.DecodeString(capturedXfrm[name])
	if err != nil || len(b) == 0 {
		t.Fatalf("captured %s: %v", name, err)
	}
	return b
}

// Test keys: recognisable, so that a test can look for them in any bytes.
var (
	xfrmEncKey  = bytes.Repeat([]byte{0xc1, 0xa5}, 8)  // 128 bits
	xfrmAuthKey = bytes.Repeat([]byte{0xa7, 0x4e}, 16) // 256 bits
	xfrmAEADKey = bytes.Repeat([]byte{0xae, 0xad}, 10) // 160 bits (rfc4106: key and salt)
)

// algo returns an algorithm attribute's payload: name, key length in bits,
// an extra u32 (truncation or ICV length) when extra is not nil, the key.
func algo(name string, key []byte, extra *uint32) []byte {
	b := make([]byte, sizeofXfrmAlgoName, sizeofXfrmAlgoName+8+len(key))
	copy(b, name)
	b = binary.NativeEndian.AppendUint32(b, uint32(8*len(key)))
	if extra != nil {
		b = binary.NativeEndian.AppendUint32(b, *extra)
	}
	return append(b, key...)
}

// usersa returns a struct xfrm_usersa_info: ESP in tunnel mode from
// 10.0.0.1 to 10.0.0.2, SPI 0x100, reqid 7.
func usersa() []byte {
	b := make([]byte, sizeofXfrmUsersaInfo)
	ne := binary.NativeEndian
	copy(b[0:], []byte{10, 0, 1, 0})  // sel.daddr
	copy(b[16:], []byte{10, 0, 0, 0}) // sel.saddr
	ne.PutUint16(b[40:], unix.AF_INET)
	b[42], b[43] = 24, 24
	copy(b[56:], []byte{10, 0, 0, 2}) // id.daddr
	binary.BigEndian.PutUint32(b[72:], 0x100)
	b[76] = unix.IPPROTO_ESP
	copy(b[80:], []byte{10, 0, 0, 1}) // saddr
	ne.PutUint32(b[208:], 7)          // reqid
	ne.PutUint16(b[212:], unix.AF_INET)
	b[214] = 1  // tunnel
	b[215] = 32 // replay window
	return b
}

// xfrmSAMsg builds an SA message of type typ with the algorithms the
// kernel would send for an SA with these keys (copy_to_user_state_extra).
func xfrmSAMsg(t testing.TB, typ uint16, aead bool) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	trunc, icv := uint32(128), uint32(128)
	if aead {
		ae.Bytes(xfrmaAlgAEAD, algo("rfc4106(gcm(aes))", xfrmAEADKey, &icv))
	} else {
		ae.Bytes(xfrmaAlgAuthTrunc, algo("hmac(sha256)", xfrmAuthKey, &trunc))
		ae.Bytes(xfrmaAlgAuth, algo("hmac(sha256)", xfrmAuthKey, nil))
		ae.Bytes(xfrmaAlgCrypt, algo("cbc(aes)", xfrmEncKey, nil))
		ae.Bytes(xfrmaAlgComp, algo("deflate", nil, nil))
	}
	ae.Uint32(xfrmaMark, 9)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	switch typ {
	case xfrmMsgDelSA: // xfrm_usersa_id, the SA in XFRMA_SA, then its attributes
		id := make([]byte, sizeofXfrmUsersaID)
		copy(id, []byte{10, 0, 0, 2})
		binary.BigEndian.PutUint32(id[16:], 0x100)
		binary.NativeEndian.PutUint16(id[20:], unix.AF_INET)
		id[22] = unix.IPPROTO_ESP
		sa := netlink.NewAttributeEncoder()
		sa.Bytes(xfrmaSA, usersa())
		b, err := sa.Encode()
		if err != nil {
			t.Fatal(err)
		}
		body = append(append(id, b...), attrs...)
	default:
		body = append(usersa(), attrs...)
	}
	return testmsg.Nlmsg(typ, body)
}

// xfrmSelector returns a struct xfrm_selector of an IPv4 or IPv6 family.
func xfrmSelector(fam uint16, src, dst []byte, slen, dlen, proto uint8, dport uint16) []byte {
	b := make([]byte, sizeofXfrmSelector)
	copy(b[0:], dst)
	copy(b[16:], src)
	if dport != 0 {
		binary.BigEndian.PutUint16(b[32:], dport)
		binary.BigEndian.PutUint16(b[34:], 0xffff)
	}
	binary.NativeEndian.PutUint16(b[40:], fam)
	b[42], b[43], b[44] = dlen, slen, proto
	return b
}

// encodeAttrs encodes attributes given as type and payload, in order.
func encodeAttrs(t testing.TB, attrs ...any) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	for i := 0; i+1 < len(attrs); i += 2 {
		ae.Bytes(uint16(attrs[i].(int)), attrs[i+1].([]byte))
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ne32b(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// xfrmAcquireMsg is the acquire the kernel sends (build_acquire) when a
// TCP packet from 10.0.0.5 to 10.0.1.9:443 matches capturedXfrm's
// new-policy-tmpl with mark 5 and no SA: struct xfrm_user_acquire, then
// the policy's templates, type and mark.
func xfrmAcquireMsg(t testing.TB) []byte {
	pol := captured(t, "new-policy-tmpl")
	b := make([]byte, 0, sizeofXfrmAcquire)
	id := make([]byte, 24) // struct xfrm_id: the template's dst, SPI 0, proto
	copy(id, []byte{10, 0, 0, 2})
	id[20] = unix.IPPROTO_ESP
	b = append(b, id...)
	b = append(append(b, 10, 0, 0, 1), make([]byte, 12)...)                                                               // saddr
	b = append(b, xfrmSelector(unix.AF_INET, []byte{10, 0, 0, 5}, []byte{10, 0, 1, 9}, 32, 32, unix.IPPROTO_TCP, 443)...) // the flow's
	b = append(b, pol[unix.SizeofNlMsghdr:unix.SizeofNlMsghdr+sizeofXfrmPolicyInfo]...)
	b = append(b, ne32b(0xffffffff)...) // aalgos
	b = append(b, ne32b(0xfffffffe)...) // ealgos
	b = append(b, ne32b(0x0000000f)...) // calgos
	b = append(b, ne32b(3)...)          // seq
	tmpl := make([]byte, sizeofXfrmTmpl)
	copy(tmpl, []byte{10, 0, 0, 2})
	tmpl[20] = unix.IPPROTO_ESP
	binary.NativeEndian.PutUint16(tmpl[24:], unix.AF_INET)
	copy(tmpl[28:], []byte{10, 0, 0, 1})
	binary.NativeEndian.PutUint32(tmpl[44:], 7)
	tmpl[48] = 1 // tunnel
	return testmsg.Nlmsg(xfrmMsgAcquire, append(b, encodeAttrs(t,
		xfrmaTmpl, tmpl,
		16, make([]byte, 6), // XFRMA_POLICY_TYPE: main
		xfrmaMark, append(ne32b(5), ne32b(0xff)...))...))
}

// xfrmAEMsg is a new-ae (build_aevent) of the SA usersa describes: struct
// xfrm_aevent_id with flags, then the replay state (XFRMA_REPLAY_ESN_VAL
// with a 2-word bitmap when esn, else XFRMA_REPLAY_VAL), the lifetime
// counters and, as the flags ask, the thresholds.
func xfrmAEMsg(t testing.TB, flags uint32, esn bool) []byte {
	id := make([]byte, sizeofXfrmAeventID)
	copy(id, []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint32(id[16:], 0x100)
	binary.NativeEndian.PutUint16(id[20:], unix.AF_INET)
	id[22] = unix.IPPROTO_ESP
	copy(id[24:], []byte{10, 0, 0, 1})
	binary.NativeEndian.PutUint32(id[40:], flags)
	binary.NativeEndian.PutUint32(id[44:], 7)
	var attrs []any
	if esn {
		r := slices.Concat(ne32b(2), ne32b(0x2a), ne32b(0x29), ne32b(1), ne32b(1), ne32b(64), ne32b(0xfffffffe), ne32b(0x80000000))
		attrs = append(attrs, xfrmaReplayESNVal, r)
	} else {
		attrs = append(attrs, xfrmaReplayVal, slices.Concat(ne32b(0x11), ne32b(0x10), ne32b(0x0000ffff))) // oseq, seq, bitmap
	}
	lt := make([]byte, sizeofXfrmLifetime)
	binary.NativeEndian.PutUint64(lt, 1500)
	binary.NativeEndian.PutUint64(lt[8:], 17)
	binary.NativeEndian.PutUint64(lt[16:], 1780000000)
	binary.NativeEndian.PutUint64(lt[24:], 1780000042)
	attrs = append(attrs, xfrmaLtimeVal, lt)
	if flags&1 != 0 { // XFRM_AE_RTHR
		attrs = append(attrs, xfrmaReplayThresh, ne32b(2))
	}
	if flags&8 != 0 { // XFRM_AE_ETHR
		attrs = append(attrs, xfrmaETimerThresh, ne32b(100))
	}
	attrs = append(attrs, xfrmaMark, append(ne32b(9), ne32b(0xffffffff)...))
	return testmsg.Nlmsg(xfrmMsgNewAE, append(id, encodeAttrs(t, attrs...)...))
}

// xfrmReportMsg is a mobile IPv6 report (build_report): struct
// xfrm_user_report for route2 and an IPv6 selector, then the care-of
// address.
func xfrmReportMsg(t testing.TB) []byte {
	src, dst := netip.MustParseAddr("2001:db8::1").As16(), netip.MustParseAddr("2001:db8:1::1").As16()
	coa := netip.MustParseAddr("2001:db8:2::1").As16()
	body := append([]byte{unix.IPPROTO_ROUTING, 0, 0, 0}, xfrmSelector(unix.AF_INET6, src[:], dst[:], 128, 128, 0, 0)...)
	return testmsg.Nlmsg(xfrmMsgReport, append(body, encodeAttrs(t, xfrmaCoAddr, coa[:])...))
}

// xfrmMigrateMsg is a migrate (build_migrate): struct xfrm_userpolicy_id
// of an out policy, the key manager's addresses, the policy type, and one
// SA moved from 10.0.0.1-10.0.0.2 to 192.0.2.1-192.0.2.2.
func xfrmMigrateMsg(t testing.TB) []byte {
	pid := make([]byte, sizeofXfrmPolicyID)
	copy(pid, xfrmSelector(unix.AF_INET, []byte{10, 0, 0, 0}, []byte{10, 0, 1, 0}, 24, 24, 0, 0))
	pid[60] = 1 // out
	km := make([]byte, 40)
	copy(km, []byte{192, 0, 2, 1})
	copy(km[16:], []byte{192, 0, 2, 2})
	binary.NativeEndian.PutUint16(km[36:], unix.AF_INET)
	m := make([]byte, sizeofXfrmMigrate)
	copy(m[0:], []byte{10, 0, 0, 2})   // old_daddr
	copy(m[16:], []byte{10, 0, 0, 1})  // old_saddr
	copy(m[32:], []byte{192, 0, 2, 2}) // new_daddr
	copy(m[48:], []byte{192, 0, 2, 1}) // new_saddr
	m[64], m[65] = unix.IPPROTO_ESP, 1
	binary.NativeEndian.PutUint32(m[68:], 7)
	binary.NativeEndian.PutUint16(m[72:], unix.AF_INET)
	binary.NativeEndian.PutUint16(m[74:], unix.AF_INET)
	return testmsg.Nlmsg(xfrmMsgMigrate, append(pid, encodeAttrs(t, xfrmaKMAddress, km, 16, make([]byte, 6), xfrmaMigrate, m)...))
}

// xfrmBuilt are the messages built from the kernel's layouts, for
// TestXfrm and the fuzz targets' seeds.
func xfrmBuilt(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"acquire":    xfrmAcquireMsg(t),
		"new-ae":     xfrmAEMsg(t, 32, false), // XFRM_AE_CE: the timer expired
		"new-ae-esn": xfrmAEMsg(t, 1|8|16, true),
		"report":     xfrmReportMsg(t),
		"migrate":    xfrmMigrateMsg(t),
	}
}

// xfrmSeeds are fuzz seeds: every message the tests build or captured.
func xfrmSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{xfrmSAMsg(t, xfrmMsgNewSA, false), xfrmSAMsg(t, xfrmMsgDelSA, false), xfrmSAMsg(t, xfrmMsgUpdSA, true)}
	for _, b := range xfrmBuilt(t) {
		seeds = append(seeds, b)
	}
	for name := range capturedXfrm {
		seeds = append(seeds, captured(t, name))
	}
	return seeds
}

// TestXfrm compares Xfrm's whole Result for each message with
// testdata/golden/xfrm-NAME.json. Keys are redacted but where asked for.
func TestXfrm(t *testing.T) {
	expire := append(usersa(), 1, 0, 0, 0, 0, 0, 0, 0) // hard
	polExpire := append(captured(t, "new-policy-tmpl")[unix.SizeofNlMsghdr:unix.SizeofNlMsghdr+sizeofXfrmPolicyInfo], 0, 0, 0, 0, 0, 0, 0, 0)
	mapping := make([]byte, sizeofXfrmMapping)
	copy(mapping, []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint32(mapping[16:], 0x100)
	binary.NativeEndian.PutUint16(mapping[20:], unix.AF_INET)
	mapping[22] = unix.IPPROTO_ESP
	binary.NativeEndian.PutUint32(mapping[24:], 7)
	copy(mapping[28:], []byte{192, 0, 2, 1})
	copy(mapping[44:], []byte{192, 0, 2, 9})
	binary.BigEndian.PutUint16(mapping[60:], 4500)
	binary.BigEndian.PutUint16(mapping[62:], 61000)
	truncated := xfrmSAMsg(t, xfrmMsgNewSA, false)[:unix.SizeofNlMsghdr+100]
	badAttrs := append(xfrmSAMsg(t, xfrmMsgNewSA, true), 9, 0, 1)
	binary.NativeEndian.PutUint32(badAttrs, uint32(len(badAttrs)))

	for _, tc := range []struct {
		name string
		msg  []byte
		keys bool
	}{
		{"new-sa", xfrmSAMsg(t, xfrmMsgNewSA, false), false},
		{"new-sa-keys", xfrmSAMsg(t, xfrmMsgNewSA, false), true},
		{"upd-sa-aead", xfrmSAMsg(t, xfrmMsgUpdSA, true), false},
		{"del-sa", xfrmSAMsg(t, xfrmMsgDelSA, false), false},
		{"expire-hard", testmsg.Nlmsg(xfrmMsgExpire, expire), false},
		{"pol-expire", testmsg.Nlmsg(xfrmMsgPolExpire, polExpire), false},
		{"mapping", testmsg.Nlmsg(xfrmMsgMapping, mapping), false},
		{"flush-sa", testmsg.Nlmsg(xfrmMsgFlushSA, []byte{unix.IPPROTO_ESP, 0, 0, 0}), false},
		{"truncated", truncated, false},
		{"bad-attributes", badAttrs, false},
		{"unknown-type", testmsg.Nlmsg(0x99, []byte{1, 2, 3, 4}), false},
		{"malformed", []byte{1, 2, 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[XfrmEvent](t, "xfrm-"+tc.name, Xfrm(tc.msg, tc.keys))
		})
	}
	for name := range capturedXfrm {
		t.Run(name, func(t *testing.T) {
			checkGolden[XfrmEvent](t, "xfrm-"+name, Xfrm(captured(t, name), false))
		})
	}
	for name, msg := range xfrmBuilt(t) {
		t.Run(name, func(t *testing.T) {
			checkGolden[XfrmEvent](t, "xfrm-"+name, Xfrm(msg, false))
		})
	}
}

// TestXfrmPolicyFields checks the captured policies field by field, as
// ip xfrm monitor printed them.
func TestXfrmPolicyFields(t *testing.T) {
	ev := decodeInto[XfrmEvent](t, Xfrm(captured(t, "new-policy-tmpl"), false))
	p := ev.Policy
	if ev.Event != "new-policy" || p == nil || p.Selector.Src != "10.0.0.0/24" || p.Selector.Dst != "10.0.1.0/24" ||
		p.Selector.Proto != "tcp" || p.Selector.DstPort != 443 || p.Dir != "out" || *p.Priority != 100 || p.Action != "allow" ||
		len(p.Tmpls) != 1 || p.Tmpls[0] != (XfrmTemplate{Src: "10.0.0.1", Dst: "10.0.0.2", Proto: "esp", SPI: "0x00000000", Reqid: 7, Mode: "tunnel"}) {
		t.Errorf("new policy: %+v %+v", ev, p)
	}
	ev = decodeInto[XfrmEvent](t, Xfrm(captured(t, "del-policy"), false))
	if p := ev.Policy; ev.Event != "del-policy" || p == nil || p.Dir != "out" || p.Selector.Dst != "10.0.1.0/24" || p.Priority == nil || *p.Priority != 200 {
		t.Errorf("deleted policy: %+v %+v", ev, p)
	}
	ev = decodeInto[XfrmEvent](t, Xfrm(captured(t, "new-policy-ipv6-mark"), false))
	if p := ev.Policy; p == nil || p.Selector.Src != "2001:db8::/64" || p.Dir != "in" || p.Mark == nil || *p.Mark != 5 {
		t.Errorf("IPv6 policy: %+v %+v", ev, p)
	}
}

// TestXfrmMonitorFields checks acquire, new-ae, report and migrate field
// by field against what their builders put in, which is what ip xfrm
// monitor prints of them (and, for new-ae, the counters it leaves out).
func TestXfrmMonitorFields(t *testing.T) {
	built := xfrmBuilt(t)
	ev := decodeInto[XfrmEvent](t, Xfrm(built["acquire"], false))
	if sa, p := ev.SA, ev.Policy; ev.Event != "acquire" || ev.Proto != "esp" || sa == nil || sa.Src != "10.0.0.1" || sa.Dst != "10.0.0.2" ||
		sa.SPI != "0x00000000" || sa.Mark != nil || ev.Selector == nil || *ev.Selector != (XfrmSelector{Src: "10.0.0.5/32", Dst: "10.0.1.9/32", Proto: "tcp", DstPort: 443}) ||
		p == nil || p.Dir != "out" || p.Selector.Dst != "10.0.1.0/24" || p.Priority == nil || *p.Priority != 100 || len(p.Tmpls) != 1 || p.Tmpls[0].Reqid != 7 ||
		p.Mark == nil || *p.Mark != 5 || ev.Seq == nil || *ev.Seq != 3 || ev.Algos == nil || *ev.Algos != (XfrmAlgoMasks{Auth: 0xffffffff, Enc: 0xfffffffe, Comp: 0xf}) {
		t.Errorf("acquire: %+v sa %+v policy %+v", ev, ev.SA, ev.Policy)
	}
	ev = decodeInto[XfrmEvent](t, Xfrm(built["new-ae"], false))
	if sa := ev.SA; ev.Event != "new-ae" || sa == nil || sa.Src != "10.0.0.1" || sa.Dst != "10.0.0.2" || sa.SPI != "0x00000100" || *sa.Reqid != 7 ||
		sa.ReplayState == nil || *sa.ReplayState != (XfrmReplay{Seq: 0x10, OSeq: 0x11, Bitmap: 0xffff}) ||
		sa.Lifetime == nil || *sa.Lifetime != (XfrmLifetime{Bytes: 1500, Packets: 17, AddTime: 1780000000, UseTime: 1780000042}) ||
		sa.ReplayThresh != nil || sa.ETimerThresh != nil || ev.AEFlags == nil || *ev.AEFlags != 32 || strings.Join(ev.AECause, ",") != "timer-expired" || len(ev.Attrs) != 0 {
		t.Errorf("new-ae: %+v sa %+v", ev, ev.SA)
	}
	ev = decodeInto[XfrmEvent](t, Xfrm(built["new-ae-esn"], false))
	if sa := ev.SA; sa == nil || sa.ReplayState != nil || sa.ReplayESN == nil || sa.ReplayESN.Seq != 0x29 || sa.ReplayESN.OSeq != 0x2a ||
		sa.ReplayESN.SeqHi != 1 || sa.ReplayESN.ReplayWindow != 64 || !slices.Equal(sa.ReplayESN.Bitmap, []uint32{0xfffffffe, 0x80000000}) ||
		sa.ReplayThresh == nil || *sa.ReplayThresh != 2 || sa.ETimerThresh == nil || *sa.ETimerThresh != 100 || sa.Mark == nil || *sa.Mark != 9 ||
		strings.Join(ev.AECause, ",") != "replay-update" {
		t.Errorf("new-ae with ESN: %+v sa %+v", ev, ev.SA)
	}
	ev = decodeInto[XfrmEvent](t, Xfrm(built["report"], false))
	if ev.Event != "report" || ev.Proto != "route2" || ev.Selector == nil || ev.Selector.Src != "2001:db8::1/128" || ev.Selector.Dst != "2001:db8:1::1/128" ||
		ev.CoAddr != "2001:db8:2::1" {
		t.Errorf("report: %+v", ev)
	}
	ev = decodeInto[XfrmEvent](t, Xfrm(built["migrate"], false))
	if ev.Event != "migrate" || ev.Policy == nil || ev.Policy.Dir != "out" || ev.Policy.Selector.Src != "10.0.0.0/24" || len(ev.Migrate) != 1 ||
		ev.Migrate[0] != (XfrmMigrate{OldSrc: "10.0.0.1", OldDst: "10.0.0.2", NewSrc: "192.0.2.1", NewDst: "192.0.2.2", Proto: "esp", Mode: "tunnel", Reqid: 7}) ||
		ev.KMAddress == nil || *ev.KMAddress != (XfrmKMAddress{Local: "192.0.2.1", Remote: "192.0.2.2"}) {
		t.Errorf("migrate: %+v", ev)
	}
	// Attributes too short for their structure are listed, not read.
	short := testmsg.Nlmsg(xfrmMsgNewAE, append(make([]byte, sizeofXfrmAeventID), encodeAttrs(t, xfrmaReplayVal, []byte{1, 2, 3, 4},
		xfrmaLtimeVal, make([]byte, 8), xfrmaReplayESNVal, make([]byte, 20), xfrmaETimerThresh, []byte{1})...))
	ev = decodeInto[XfrmEvent](t, Xfrm(short, false))
	if sa := ev.SA; sa == nil || sa.ReplayState != nil || sa.Lifetime != nil || sa.ReplayESN != nil || sa.ETimerThresh != nil ||
		!slices.Equal(ev.Attrs, []uint16{xfrmaReplayVal, xfrmaLtimeVal, xfrmaReplayESNVal, xfrmaETimerThresh}) {
		t.Errorf("short attributes: %+v sa %+v", ev, ev.SA)
	}
}

// RedactXfrm zeroes every key byte, and nothing else; the JSON of the
// result says the keys were redacted and holds none.
func TestRedactXfrm(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		keys int
	}{
		{"new-sa", xfrmSAMsg(t, xfrmMsgNewSA, false), 3},
		{"upd-sa-aead", xfrmSAMsg(t, xfrmMsgUpdSA, true), 1},
		{"del-sa", xfrmSAMsg(t, xfrmMsgDelSA, false), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.msg)
			if n := RedactXfrm(tc.msg); n != tc.keys {
				t.Errorf("RedactXfrm redacted %d keys, want %d", n, tc.keys)
			}
			if len(orig) != len(tc.msg) {
				t.Fatal("length changed")
			}
			for _, k := range [][]byte{xfrmEncKey, xfrmAuthKey, xfrmAEADKey} {
				if bytes.Contains(tc.msg, k[:4]) {
					t.Errorf("key %x left in %x", k, tc.msg)
				}
			}
			// Every byte changed was a key byte: it is zero now, and the
			// original held a key there.
			changed := 0
			for i := range orig {
				if orig[i] != tc.msg[i] {
					changed++
					if tc.msg[i] != 0 {
						t.Fatalf("byte %d: %#x, not zero", i, tc.msg[i])
					}
				}
			}
			want := 0
			for _, k := range [][]byte{xfrmEncKey, xfrmAuthKey, xfrmAEADKey} {
				want += bytes.Count(orig, k) * len(k)
			}
			if changed != want {
				t.Errorf("%d bytes changed, the keys are %d", changed, want)
			}
			ev := decodeInto[XfrmEvent](t, Xfrm(tc.msg, false))
			if !ev.KeysRedacted || ev.SA == nil {
				t.Fatalf("JSON does not say the keys are redacted: %+v", ev)
			}
			if again := RedactXfrm(tc.msg); again != tc.keys {
				t.Errorf("a second RedactXfrm counts %d keys, want %d", again, tc.keys)
			}
		})
	}
	for name := range capturedXfrm { // no keys: untouched
		msg := captured(t, name)
		if n := RedactXfrm(msg); n != 0 || !bytes.Equal(msg, captured(t, name)) {
			t.Errorf("%s: RedactXfrm changed a message without keys (%d)", name, n)
		}
	}
	// Attributes that do not parse: everything after the header goes.
	bad := xfrmSAMsg(t, xfrmMsgNewSA, false)
	binary.NativeEndian.PutUint16(bad[unix.SizeofNlMsghdr+sizeofXfrmUsersaInfo:], 3) // first attribute's length
	if n := RedactXfrm(bad); n != 1 || !allZero(bad[unix.SizeofNlMsghdr+sizeofXfrmUsersaInfo:]) {
		t.Errorf("bad attributes: %d, %x", n, bad[unix.SizeofNlMsghdr+sizeofXfrmUsersaInfo:])
	}
}

func allZero(b []byte) bool {
	return !strings.ContainsFunc(string(b), func(r rune) bool { return r != 0 })
}

// FuzzRedactXfrm: RedactXfrm never panics, keeps the length, changes bytes
// only to zero, and leaves no byte of an algorithm attribute's key; Xfrm
// never panics and gives valid JSON, without keys unless asked.
func FuzzRedactXfrm(f *testing.F) {
	for _, b := range xfrmSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		RedactXfrm(b)
		if len(b) != len(orig) {
			t.Fatal("length changed")
		}
		for i := range b {
			if b[i] != orig[i] && b[i] != 0 {
				t.Fatalf("byte %d changed to %#x", i, b[i])
			}
		}
		for _, keys := range []bool{false, true} {
			d := Xfrm(orig, keys)
			if !json.Valid(d.Event) || d.Summary == "" {
				t.Fatalf("% x gave %q %s", orig, d.Summary, d.Event)
			}
		}
		if d := Xfrm(orig, false); bytes.Contains(d.Event, []byte(`"key":`)) {
			t.Fatalf("a key in JSON without keys: %s", d.Event)
		}
		// What Xfrm would show as keys, after redaction, is zeros.
		var ev XfrmEvent
		if err := json.Unmarshal(Xfrm(b, true).Event, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.SA != nil {
			for _, a := range []*XfrmAlgo{ev.SA.Auth, ev.SA.Enc, ev.SA.AEAD, ev.SA.Comp} {
				if a != nil && strings.Trim(a.Key, "0") != "" {
					t.Fatalf("key %s left after RedactXfrm(% x)", a.Key, orig)
				}
			}
		}
	})
}
