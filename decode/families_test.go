package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net"
	"slices"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testmsg"
)

func decodeInto[T any](t *testing.T, d Result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(d.Event, &v); err != nil {
		t.Fatalf("event does not decode: %v: %s", err, d.Event)
	}
	return v
}

// TestUevent compares Uevent's whole Result for each message with
// testdata/golden/uevent-NAME.json.
func TestUevent(t *testing.T) {
	kernel := []byte("add@/devices/virtual/net/v0\x00ACTION=add\x00DEVPATH=/devices/virtual/net/v0\x00SUBSYSTEM=net\x00" +
		"INTERFACE=v0\x00IFINDEX=7\x00SEQNUM=4242\x00WEIRD=a=b=c\x00")
	udev := func(props string) []byte {
		hdr := make([]byte, 32)
		copy(hdr, "libudev\x00\xfe\xed\xca\xfe")
		binary.NativeEndian.PutUint32(hdr[12:], 32) // header size
		binary.NativeEndian.PutUint32(hdr[16:], 32) // properties offset
		binary.NativeEndian.PutUint32(hdr[20:], uint32(len(props)))
		return append(hdr, props...)
	}
	udevMsg := udev("ACTION=remove\x00DEVPATH=/devices/x\x00SUBSYSTEM=block\x00SEQNUM=9\x00")
	badUdev := bytes.Clone(udevMsg)
	binary.NativeEndian.PutUint32(badUdev[20:], 1000) // properties past the end
	badMagic := bytes.Clone(udevMsg)
	badMagic[11] = 0xff

	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"kernel", kernel},
		{"udev", udevMsg},
		{"header-only", []byte("change@/devices/y\x00")},
		{"no-header-line", []byte("ACTION=bind\x00DEVPATH=/devices/z\x00SEQNUM=not-a-number\x00junk\x00")},
		{"udev-properties-outside", badUdev},
		{"udev-bad-magic", badMagic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[UeventEvent](t, "uevent-"+tc.name, Uevent(tc.msg))
		})
	}
}

// procMsg builds a connector message carrying a proc_event.
func procMsg(what uint32, data ...uint32) []byte {
	ne := binary.NativeEndian
	ev := make([]byte, procEventData, procEventData+4*len(data))
	ne.PutUint32(ev, what)
	ne.PutUint32(ev[4:], 1) // cpu
	ne.PutUint64(ev[8:], 123456)
	for _, d := range data {
		ev = ne.AppendUint32(ev, d)
	}
	cn := make([]byte, SizeofCnMsg)
	ne.PutUint32(cn, CnIdxProc)
	ne.PutUint32(cn[4:], CnValProc)
	ne.PutUint32(cn[8:], 77)
	ne.PutUint16(cn[16:], uint16(len(ev)))
	return testmsg.Nlmsg(unix.NLMSG_DONE, append(cn, ev...))
}

// TestProc compares Proc's whole Result for each message with
// testdata/golden/proc-NAME.json.
func TestProc(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"fork", procMsg(procFork, 1, 1, 200, 200)},
		{"exec", procMsg(procExec, 200, 200)},
		{"uid", procMsg(procUID, 5, 5, 1000, 0)},
		{"gid", procMsg(procGID, 5, 5, 100, 100)},
		{"sid", procMsg(procSID, 5, 5)},
		{"ptrace", procMsg(procPtrace, 5, 5, 9, 9)},
		{"comm", procMsg(procComm, 10, 11, 0x74736574, 0x6d6f6364, 0, 0)}, // "testdcom"
		{"coredump", procMsg(procCoredump, 6, 6, 1, 1)},
		{"exit-status", procMsg(procExit, 200, 200, 7<<8, 17, 1, 1)},
		{"exit-signal", procMsg(procExit, 201, 201, 9, 17, 1, 1)},
		{"exit-no-parent", procMsg(procExit, 3, 3, 0, 17)},
		{"nonzero-exit", procMsg(procNonzero, 3, 3, 1<<8, 17, 1, 1)},
		{"nonzero-exit-truncated", procMsg(procNonzero, 3, 3, 1<<8)},
		{"fork-truncated", procMsg(procFork, 1, 1)},
		{"ack", procMsg(procNone, 1)},
		{"unknown-what", procMsg(0x1000, 1, 2)},
		{"malformed", []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[ProcEvent](t, "proc-"+tc.name, Proc(tc.msg))
		})
	}
}

// TestProcAck reads the connector's answer to a subscription.
func TestProcAck(t *testing.T) {
	msg := procMsg(procNone, 95)
	binary.NativeEndian.PutUint32(msg[unix.SizeofNlMsghdr+12:], 1235) // cn_msg ack: cookie+1
	if ack, errno, ok := ProcAck(msg); !ok || ack != 1235 || errno != 95 {
		t.Errorf("ProcAck = %d, %d, %v; want 1235, 95, true", ack, errno, ok)
	}
	if _, _, ok := ProcAck(procMsg(procFork, 1, 1, 2, 2)); ok {
		t.Error("ProcAck took a fork event for an ack")
	}
}

// TestDecodeProcShortest decodes every kind of event at exactly its
// least length, and one byte short of it: procDataLen must cover every
// read the decoder makes (the fuzzer once found it did not).
func TestDecodeProcShortest(t *testing.T) {
	for what, n := range procDataLen {
		for _, size := range []int{n, n - 1} {
			data := make([]uint32, (size+3)/4)
			msg := procMsg(what, data...)
			if size%4 != 0 { // shorten the event by the odd bytes, in both length fields
				msg = msg[:len(msg)-(4-size%4)]
				binary.NativeEndian.PutUint32(msg, uint32(len(msg)))
				binary.NativeEndian.PutUint16(msg[unix.SizeofNlMsghdr+16:], uint16(procEventData+size))
			}
			ev := decodeInto[ProcEvent](t, Proc(msg))
			if truncated := size < n; truncated != (ev.Error != "") {
				t.Errorf("%s with %d bytes of event data: decode_error %q", procNames[what], size, ev.Error)
			}
		}
	}
}

// ctFlow is the flow a ctnetlink test message describes.
type ctFlow struct {
	family        uint8 // AF_INET or AF_INET6
	proto         uint8
	src, dst      []byte
	sport, dport  uint16 // ports, or ICMP id and type
	tcpState      uint8  // CTA_PROTOINFO_TCP_STATE, when proto is TCP
	status        uint32
	mark, id, use uint32
	zone          uint16
	timeout       uint32
}

// ctMsg builds a ctnetlink event of flow f.
func ctMsg(t *testing.T, msgType uint16, flags uint16, f ctFlow) []byte {
	t.Helper()
	ipv4 := f.family == unix.AF_INET
	tuple := func(src, dst []byte, sport, dport uint16) func(*netlink.AttributeEncoder) error {
		return func(ae *netlink.AttributeEncoder) error {
			ae.Nested(ctaTupleIP, func(ie *netlink.AttributeEncoder) error {
				if ipv4 {
					ie.Bytes(1, src) // CTA_IP_V4_SRC
					ie.Bytes(2, dst)
				} else {
					ie.Bytes(3, src) // CTA_IP_V6_SRC
					ie.Bytes(4, dst)
				}
				return nil
			})
			ae.Nested(ctaTupleProto, func(pe *netlink.AttributeEncoder) error {
				pe.Uint8(1, f.proto)
				if f.proto == unix.IPPROTO_ICMP {
					pe.Uint16(4, sport) // CTA_PROTO_ICMP_ID
					pe.Uint8(5, uint8(dport))
					pe.Uint8(6, 0)
				} else {
					pe.Uint16(2, sport)
					pe.Uint16(3, dport)
				}
				return nil
			})
			return nil
		}
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig, tuple(f.src, f.dst, f.sport, f.dport))
	if f.proto == unix.IPPROTO_ICMP {
		ae.Nested(ctaTupleReply, tuple(f.dst, f.src, f.sport, 0)) // echo reply
	} else {
		ae.Nested(ctaTupleReply, tuple(f.dst, f.src, f.dport, f.sport))
	}
	if f.proto == unix.IPPROTO_TCP {
		ae.Nested(ctaProtoinfo, func(pe *netlink.AttributeEncoder) error {
			pe.Nested(1, func(te *netlink.AttributeEncoder) error { // CTA_PROTOINFO_TCP
				te.Uint8(1, f.tcpState)
				return nil
			})
			return nil
		})
	}
	ae.Uint32(ctaStatus, f.status)
	ae.Uint32(ctaTimeout, f.timeout)
	ae.Uint32(ctaMark, f.mark)
	if f.use != 0 {
		ae.Uint32(ctaUse, f.use)
	}
	if f.id != 0 {
		ae.Uint32(ctaID, f.id)
	}
	if f.zone != 0 {
		ae.Uint16(ctaZone, f.zone)
	}
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := testmsg.Nlmsg(nfnlSubsysCtnetlink<<8|msgType, append([]byte{f.family, 0, 0, 0}, attrs...))
	binary.NativeEndian.PutUint16(m[6:], flags)
	return m
}

// TestConntrack compares Conntrack's whole Result for each message with
// testdata/golden/conntrack-NAME.json.
func TestConntrack(t *testing.T) {
	udp := ctFlow{family: unix.AF_INET, proto: unix.IPPROTO_UDP, src: []byte{10, 0, 0, 2}, dst: []byte{10, 0, 0, 1},
		sport: 4444, dport: 5555, status: 1<<1 | 1<<3, timeout: 30, mark: 5, zone: 3} // seen-reply, confirmed
	tcp6 := ctFlow{family: unix.AF_INET6, proto: unix.IPPROTO_TCP,
		src: net.ParseIP("2001:db8::1"), dst: net.ParseIP("2001:db8::2"), sport: 40000, dport: 443,
		tcpState: 3, status: 1<<1 | 1<<2 | 1<<3 | 1<<30, timeout: 432000, id: 0xdeadbeef, use: 1} // established; bit 30 unnamed
	icmp := ctFlow{family: unix.AF_INET, proto: unix.IPPROTO_ICMP, src: []byte{10, 0, 0, 2}, dst: []byte{10, 0, 0, 1},
		sport: 77, dport: 8, status: 1 << 3, timeout: 30} // echo request, id 77
	truncated := ctMsg(t, ctMsgNew, 0, udp)
	truncated = truncated[:len(truncated)-3]
	binary.NativeEndian.PutUint32(truncated, uint32(len(truncated)))

	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"new-udp", ctMsg(t, ctMsgNew, unix.NLM_F_CREATE|unix.NLM_F_EXCL, udp)},
		{"update-udp", ctMsg(t, ctMsgNew, 0, udp)},
		{"destroy-udp", ctMsg(t, ctMsgDelete, 0, udp)},
		{"update-tcp-ipv6", ctMsg(t, ctMsgNew, 0, tcp6)},
		{"new-icmp", ctMsg(t, ctMsgNew, unix.NLM_F_CREATE, icmp)},
		{"truncated", truncated},
		{"other-subsystem", testmsg.Nlmsg(2<<8|1, []byte{unix.AF_INET, 0, 0, 0})},
		{"malformed", []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[ConntrackEvent](t, "conntrack-"+tc.name, Conntrack(tc.msg))
		})
	}
}

// TestGenl compares Genl's whole Result for each message with
// testdata/golden/genl-NAME.json.
func TestGenl(t *testing.T) {
	const ethtoolID = 20
	ethtool := func(cmd uint8) []byte {
		ae := netlink.NewAttributeEncoder()
		ae.Nested(1, func(he *netlink.AttributeEncoder) error { // ETHTOOL_A_*_HEADER
			he.Uint32(1, 7)       // ETHTOOL_A_HEADER_DEV_INDEX
			he.String(2, "veth0") // ETHTOOL_A_HEADER_DEV_NAME
			return nil
		})
		ae.Uint32(2, 1000) // a u32 attribute
		attrs, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return testmsg.Nlmsg(ethtoolID, append([]byte{cmd, 1, 0, 0}, attrs...))
	}
	families := map[uint16]string{ethtoolID: "ethtool", 30: "thermal"}

	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"nlctrl-new-family", testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33})},
		{"nlctrl-del-family", testmsg.Ctrl(t, testmsg.CtrlCmdDelFamily, "nlmtest", 40, nil)},
		{"ethtool-linkinfo-ntf", ethtool(3)},
		{"ethtool-unknown-cmd", ethtool(99)},
		{"named-family", testmsg.Nlmsg(30, []byte{2, 1, 0, 0})},
		{"unknown-family", testmsg.Nlmsg(31, []byte{2, 1, 0, 0, 8, 0, 1, 0, 42, 0, 0, 0})},
		{"bad-attributes", testmsg.Nlmsg(30, []byte{2, 1, 0, 0, 8, 0, 1, 0, 42})},
		{"malformed", testmsg.Nlmsg(30, []byte{2})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[GenlEvent](t, "genl-"+tc.name, Genl(tc.msg, families))
		})
	}
}

func TestParseCtrl(t *testing.T) {
	n, ok := ParseCtrl(testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33}))
	if !ok || n.Cmd != CtrlCmdNewFamily || n.Name != "nlmtest" || n.ID != 40 ||
		len(n.Groups) != 1 || n.Groups[0] != (GenlGroup{Name: "events", ID: 33}) {
		t.Errorf("ParseCtrl: %+v %v", n, ok)
	}
	if _, ok := ParseCtrl(testmsg.Nlmsg(30, []byte{1, 2, 0, 0})); ok {
		t.Error("ParseCtrl took another family's message")
	}
}

// FuzzDecodeFamilies feeds the same bytes to every other family's decoder
// and parser: none may panic, and each must give valid JSON and a summary.
func FuzzDecodeFamilies(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00ACTION=add\x00SEQNUM=1\x00"))
	f.Add(procMsg(procExit, 1, 1, 256, 17, 1, 1))
	f.Add(testmsg.Ctrl(f, testmsg.CtrlCmdNewFamily, "x", 30, map[string]uint32{"g": 9}))
	f.Add([]byte("libudev\x00\xfe\xed\xca\xfe\x20\x00\x00\x00\x20\x00\x00\x00\xff\x00\x00\x00"))
	if b, err := hex.DecodeString(capturedAudit); err == nil {
		f.Add(b)
	}
	f.Add(rdmaMsg(f, 2, true))
	f.Add(selinuxMsg(selnlMsgSetenforce, 1))
	for _, b := range xfrmSeeds(f) {
		f.Add(b)
	}
	for _, c := range slices.Concat(capturedNft, capturedNftForms, capturedExp) {
		if b, err := hex.DecodeString(c.hex); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, d := range map[string]Result{
			"uevent": Uevent(b), "proc": Proc(b), "conntrack": Conntrack(b),
			"genl": Genl(b, map[uint16]string{30: "x"}), "xfrm": Xfrm(b, false), "xfrm-keys": Xfrm(b, true),
			"netfilter": Netfilter(b), "nftables": Nftables(b), "nfacct": NfAcct(b), "expect": ConntrackExp(b), "audit": Audit(b),
			"selinux": SELinux(b), "rdma": RDMA(b),
		} {
			if !json.Valid(d.Event) || d.Summary == "" {
				t.Fatalf("%s: % x gave %q %s", name, b, d.Summary, d.Event)
			}
		}
		ParseCtrl(b)
		parseProc(b)
	})
}
