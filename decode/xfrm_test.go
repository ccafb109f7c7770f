package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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
	f.Add(xfrmSAMsg(f, xfrmMsgNewSA, false))
	f.Add(xfrmSAMsg(f, xfrmMsgDelSA, false))
	f.Add(xfrmSAMsg(f, xfrmMsgUpdSA, true))
	for name := range capturedXfrm {
		f.Add(captured(f, name))
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
