package decode

import (
	"encoding/binary"
	"encoding/json"
	"strings"
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

func TestUevent(t *testing.T) {
	kernel := []byte("add@/devices/virtual/net/v0\x00ACTION=add\x00DEVPATH=/devices/virtual/net/v0\x00SUBSYSTEM=net\x00" +
		"INTERFACE=v0\x00IFINDEX=7\x00SEQNUM=4242\x00WEIRD=a=b=c\x00")
	udev := []byte("libudev\x00\xfe\xed\xca\xfe")
	hdr := make([]byte, 32)
	copy(hdr, udev)
	props := []byte("ACTION=remove\x00DEVPATH=/devices/x\x00SUBSYSTEM=block\x00SEQNUM=9\x00")
	binary.NativeEndian.PutUint32(hdr[12:], 32)
	binary.NativeEndian.PutUint32(hdr[16:], 32)
	binary.NativeEndian.PutUint32(hdr[20:], uint32(len(props)))
	udevMsg := append(hdr, props...)
	badUdev := append([]byte(nil), udevMsg...)
	binary.NativeEndian.PutUint32(badUdev[20:], 1000) // properties past the end

	for _, tc := range []struct {
		name                            string
		msg                             []byte
		source, action, devpath, subsys string
		seq                             uint64
		summary                         string
		props                           map[string]string
		bad                             bool
	}{
		{"kernel", kernel, "kernel", "add", "/devices/virtual/net/v0", "net", 4242,
			"kernel add /devices/virtual/net/v0 (net) seqnum 4242", map[string]string{"WEIRD": "a=b=c", "IFINDEX": "7"}, false},
		{"udev", udevMsg, "udev", "remove", "/devices/x", "block", 9, "udev remove /devices/x (block) seqnum 9", nil, false},
		{"header only", []byte("change@/devices/y\x00"), "kernel", "change", "/devices/y", "", 0, "kernel change /devices/y", nil, false},
		{"bad udev", badUdev, "udev", "", "", "", 0, "udev: malformed message", nil, true},
	} {
		d := Uevent(tc.msg)
		ev := decodeInto[UeventEvent](t, d)
		if ev.Source != tc.source || ev.Action != tc.action || ev.Devpath != tc.devpath || ev.Subsystem != tc.subsys || d.Summary != tc.summary {
			t.Errorf("%s: %+v %q", tc.name, ev, d.Summary)
		}
		if (tc.seq == 0) != (ev.Seqnum == nil) || (ev.Seqnum != nil && *ev.Seqnum != tc.seq) {
			t.Errorf("%s: seqnum %v, want %d", tc.name, ev.Seqnum, tc.seq)
		}
		for k, v := range tc.props {
			if ev.Properties[k] != v {
				t.Errorf("%s: %s=%q, want %q", tc.name, k, ev.Properties[k], v)
			}
		}
		if tc.bad != (ev.Error != "") {
			t.Errorf("%s: decode_error %q", tc.name, ev.Error)
		}
	}
}

// procMsg builds a connector message carrying a proc_event.
func procMsg(what uint32, data ...uint32) []byte {
	ne := binary.NativeEndian
	ev := make([]byte, procEventData, procEventData+4*len(data))
	ne.PutUint32(ev, what)
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

func TestProc(t *testing.T) {
	comm := procMsg(procComm, 10, 11, 0x74736574, 0x6d6f6364, 0, 0) // "testdcom"
	for _, tc := range []struct {
		msg     []byte
		summary string
		check   func(ProcEvent) bool
	}{
		{procMsg(procFork, 1, 1, 200, 200), "fork parent 1/1 child 200/200", func(e ProcEvent) bool {
			return e.Event == "fork" && *e.ChildPID == 200 && *e.ParentTGID == 1 && e.Seq == 77 && e.TimestampNs == 123456
		}},
		{procMsg(procExec, 200, 200), "exec pid 200/200", func(e ProcEvent) bool { return *e.PID == 200 && e.ParentPID == nil }},
		{procMsg(procExit, 200, 200, 7<<8, 17, 1, 1), "exit pid 200/200 status 7", func(e ProcEvent) bool {
			return *e.Status == 7 && e.TermSignal == nil && *e.ExitSignal == 17 && *e.ParentPID == 1 && *e.ExitCode == 7<<8
		}},
		{procMsg(procExit, 201, 201, 9, 17, 1, 1), "exit pid 201/201 killed by signal 9", func(e ProcEvent) bool {
			return e.Status == nil && *e.TermSignal == 9
		}},
		{procMsg(procUID, 5, 5, 1000, 0), "uid pid 5/5 ruid 1000 euid 0", func(e ProcEvent) bool { return *e.RUID == 1000 && *e.EUID == 0 }},
		{procMsg(procPtrace, 5, 5, 9, 9), "ptrace pid 5/5 tracer 9/9", func(e ProcEvent) bool { return *e.TracerPID == 9 }},
		{comm, `comm pid 10/11 "testdcom"`, func(e ProcEvent) bool { return *e.Comm == "testdcom" }},
		{procMsg(procNone, 1), "ack seq 77 err 1", func(e ProcEvent) bool { return e.Event == "ack" && *e.AckErr == 1 }},
		{procMsg(procFork, 1, 1), "fork (truncated)", func(e ProcEvent) bool { return e.Error != "" }},
		{procMsg(procExit, 3, 3, 0, 17), "exit pid 3/3 status 0", func(e ProcEvent) bool { return e.ParentPID == nil && *e.ExitSignal == 17 }},
		{procMsg(procNonzero, 3, 3, 1<<8, 17, 1, 1), "nonzero-exit pid 3/3 status 1", func(e ProcEvent) bool { return *e.ParentPID == 1 }},
		{procMsg(procNonzero, 3, 3, 1<<8), "nonzero-exit (truncated)", func(e ProcEvent) bool { return e.Error != "" }},
		{[]byte{1, 2, 3}, "malformed process connector message", func(e ProcEvent) bool { return e.Event == "malformed" }},
	} {
		d := Proc(tc.msg)
		ev := decodeInto[ProcEvent](t, d)
		if d.Summary != tc.summary || !tc.check(ev) {
			t.Errorf("%q: %s", d.Summary, d.Event)
		}
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

// ctMsg builds a ctnetlink event for a UDP flow.
func ctMsg(t *testing.T, msgType uint16, flags uint16) []byte {
	t.Helper()
	tuple := func(src, dst [4]byte, sport, dport uint16) func(*netlink.AttributeEncoder) error {
		return func(ae *netlink.AttributeEncoder) error {
			ae.Nested(ctaTupleIP, func(ie *netlink.AttributeEncoder) error {
				ie.Bytes(1, src[:])
				ie.Bytes(2, dst[:])
				return nil
			})
			ae.Nested(ctaTupleProto, func(pe *netlink.AttributeEncoder) error {
				pe.Uint8(1, unix.IPPROTO_UDP)
				pe.Uint16(2, sport)
				pe.Uint16(3, dport)
				return nil
			})
			return nil
		}
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig, tuple([4]byte{10, 0, 0, 2}, [4]byte{10, 0, 0, 1}, 4444, 5555))
	ae.Nested(ctaTupleReply, tuple([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 5555, 4444))
	ae.Uint32(ctaStatus, 1<<1|1<<3) // seen-reply, confirmed
	ae.Uint32(ctaTimeout, 30)
	ae.Uint32(ctaMark, 5)
	ae.Uint16(ctaZone, 3)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := testmsg.Nlmsg(nfnlSubsysCtnetlink<<8|msgType, append([]byte{unix.AF_INET, 0, 0, 0}, attrs...))
	binary.NativeEndian.PutUint16(m[6:], flags)
	return m
}

func TestConntrack(t *testing.T) {
	for _, tc := range []struct {
		msg   []byte
		event string
	}{
		{ctMsg(t, ctMsgNew, unix.NLM_F_CREATE|unix.NLM_F_EXCL), "new"},
		{ctMsg(t, ctMsgNew, 0), "update"},
		{ctMsg(t, ctMsgDelete, 0), "destroy"},
	} {
		d := Conntrack(tc.msg)
		ev := decodeInto[ConntrackEvent](t, d)
		o, r := ev.Orig, ev.Reply
		if ev.Event != tc.event || ev.Family != "ipv4" || ev.Protocol != "udp" || o == nil || r == nil ||
			o.Src != "10.0.0.2" || o.Dst != "10.0.0.1" || *o.SrcPort != 4444 || *o.DstPort != 5555 ||
			r.Src != "10.0.0.1" || *r.SrcPort != 5555 || *ev.Mark != 5 || *ev.Zone != 3 || *ev.Timeout != 30 ||
			strings.Join(ev.Status, ",") != "seen-reply,confirmed" || ev.Error != "" {
			t.Errorf("%s: %s", tc.event, d.Event)
		}
		want := "[" + strings.ToUpper(tc.event) + "] ipv4 udp src=10.0.0.2 dst=10.0.0.1 sport=4444 dport=5555 reply src=10.0.0.1 dst=10.0.0.2 sport=5555 dport=4444 mark=5 zone=3"
		if d.Summary != want {
			t.Errorf("summary %q, want %q", d.Summary, want)
		}
	}
	// Truncated attributes are reported, not a panic.
	m := ctMsg(t, ctMsgNew, 0)
	m = m[:len(m)-3]
	binary.NativeEndian.PutUint32(m, uint32(len(m)))
	if ev := decodeInto[ConntrackEvent](t, Conntrack(m)); ev.Error == "" || ev.Raw == "" {
		t.Errorf("truncated message decoded without error: %+v", ev)
	}
}

func TestDecodeGenlCtrl(t *testing.T) {
	d := Genl(testmsg.Ctrl(t, testmsg.CtrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33}), nil)
	g := decodeInto[GenlEvent](t, d)
	if g.Family != "nlctrl" || g.CmdName != "new-family" || g.Control == nil || g.Control.Name != "nlmtest" || g.Control.Groups["events"] != 33 {
		t.Errorf("nlctrl decode: %s", d.Event)
	}
	n, ok := ParseCtrl(testmsg.Ctrl(t, testmsg.CtrlCmdDelFamily, "nlmtest", 40, nil))
	if !ok || n.Cmd != CtrlCmdDelFamily || n.Name != "nlmtest" || n.ID != 40 {
		t.Errorf("ParseCtrl: %+v %v", n, ok)
	}
}

// FuzzDecodeFamilies feeds the same bytes to every other family's decoder
// and parser: none may panic, and each must give valid JSON and a summary.
func FuzzDecodeFamilies(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00ACTION=add\x00SEQNUM=1\x00"))
	f.Add(procMsg(procExit, 1, 1, 256, 17, 1, 1))
	f.Add(testmsg.Ctrl(f, testmsg.CtrlCmdNewFamily, "x", 30, map[string]uint32{"g": 9}))
	f.Add([]byte("libudev\x00\xfe\xed\xca\xfe\x20\x00\x00\x00\x20\x00\x00\x00\xff\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, d := range map[string]Result{
			"uevent": Uevent(b), "proc": Proc(b), "conntrack": Conntrack(b),
			"genl": Genl(b, map[uint16]string{30: "x"}),
		} {
			if !json.Valid(d.Event) || d.Summary == "" {
				t.Fatalf("%s: % x gave %q %s", name, b, d.Summary, d.Event)
			}
		}
		ParseCtrl(b)
		parseProc(b)
	})
}
