package netlinkbridge

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/streams"
)

func decodeInto[T any](t *testing.T, d Decoded) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(d.Event, &v); err != nil {
		t.Fatalf("event does not decode: %v: %s", err, d.Event)
	}
	return v
}

func TestDecodeUevent(t *testing.T) {
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
		d := DecodeUevent(tc.msg)
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
	cn := make([]byte, sizeofCnMsg)
	ne.PutUint32(cn, cnIdxProc)
	ne.PutUint32(cn[4:], cnValProc)
	ne.PutUint32(cn[8:], 77)
	ne.PutUint16(cn[16:], uint16(len(ev)))
	return nlmsg(unix.NLMSG_DONE, append(cn, ev...))
}

func TestDecodeProc(t *testing.T) {
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
		d := DecodeProc(tc.msg)
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
			ev := decodeInto[ProcEvent](t, DecodeProc(msg))
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
	m := nlmsg(nfnlSubsysCtnetlink<<8|msgType, append([]byte{unix.AF_INET, 0, 0, 0}, attrs...))
	binary.NativeEndian.PutUint16(m[6:], flags)
	return m
}

func TestDecodeConntrack(t *testing.T) {
	for _, tc := range []struct {
		msg   []byte
		event string
	}{
		{ctMsg(t, ctMsgNew, unix.NLM_F_CREATE|unix.NLM_F_EXCL), "new"},
		{ctMsg(t, ctMsgNew, 0), "update"},
		{ctMsg(t, ctMsgDelete, 0), "destroy"},
	} {
		d := DecodeConntrack(tc.msg)
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
	if ev := decodeInto[ConntrackEvent](t, DecodeConntrack(m)); ev.Error == "" || ev.Raw == "" {
		t.Errorf("truncated message decoded without error: %+v", ev)
	}
}

// ctrlMsg builds an nlctrl announcement of a family and its groups.
func ctrlMsg(t testing.TB, cmd uint8, name string, id uint16, groups map[string]uint32) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.Uint16(ctrlAttrFamilyID, id)
	ae.String(ctrlAttrFamilyName, name)
	if len(groups) > 0 {
		ae.Nested(ctrlAttrMcastGrps, func(arr *netlink.AttributeEncoder) error {
			i := uint16(1)
			for gname, gid := range groups {
				arr.Nested(i, func(g *netlink.AttributeEncoder) error {
					g.String(ctrlAttrMcastName, gname)
					g.Uint32(ctrlAttrMcastID, gid)
					return nil
				})
				i++
			}
			return nil
		})
	}
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return nlmsg(unix.GENL_ID_CTRL, append([]byte{cmd, 2, 0, 0}, attrs...))
}

// joinSource is a fake source that records group changes.
type joinSource struct {
	*fakeSource
	mu     sync.Mutex
	joined map[uint32]bool
}

func (s *joinSource) Join(g uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined[g] = true
	return nil
}

func (s *joinSource) Leave(g uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.joined, g)
	return nil
}

func (s *joinSource) has(g uint32) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.joined[g] }

func TestGenlFamilyAppearsAndGoes(t *testing.T) {
	st := streams.Genl("nlmtest", "events")
	src := &joinSource{fakeSource: newFakeSource(), joined: map[uint32]bool{}}
	sink := &fakeSink{}
	cfg := &Config{Streams: []streams.Stream{st}, Encodings: []streams.Encoding{streams.Raw}, Logger: quiet}
	if _, err := NewWithSource(cfg, src, nil, sink); !errors.As(err, new(*PrivilegedError)) {
		t.Fatalf("a generic netlink group outside the catalog was bridged without ExposePrivileged: %v", err)
	}
	cfg.ExposePrivileged = true
	b, err := NewWithSource(cfg, src, nil, sink)
	if err != nil {
		t.Fatal(err)
	}
	if g := b.groups(); len(g) != 1 || g[0] != genlCtrlGroup {
		t.Fatalf("joins %v at start, want only nlctrl's group", g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()

	ev := nlmsg(40, []byte{1, 1, 0, 0}) // family 40, cmd 1
	src.push([]Message{{Group: 33, Data: ev}}, nil)
	waitFor(t, "an event on an unknown group to be skipped", func() bool { return b.Stats().NotStreams == 1 })

	src.push([]Message{{Group: genlCtrlGroup, Data: ctrlMsg(t, ctrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33, "other": 34})}}, nil)
	waitFor(t, "the new family's group to be joined", func() bool { return src.has(33) && b.Stats().GenlJoined == 1 })
	if src.has(34) {
		t.Error("joined a group nobody asked for")
	}
	src.push([]Message{{Group: 33, Data: ev}}, nil)
	waitFor(t, "the event to be bridged", func() bool { return b.Stats().Events == 1 })

	src.push([]Message{{Group: genlCtrlGroup, Data: ctrlMsg(t, ctrlCmdDelFamily, "nlmtest", 40, nil)}}, nil)
	waitFor(t, "the family to be reported gone", func() bool { return b.Stats().GenlGone == 1 && !src.has(33) })
	src.push([]Message{{Group: 33, Data: ev}}, nil)
	waitFor(t, "events of the gone group to be skipped", func() bool { return b.Stats().NotStreams == 4 }) // and the two nlctrl messages
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var events []frame.Header
	for _, s := range sink.out {
		h, p, err := frame.Parse(s.data)
		if err != nil {
			t.Fatal(err)
		}
		if s.dst != (streams.Map{}).Addr(st, streams.Raw) {
			t.Errorf("frame sent to %v", s.dst)
		}
		if h.Kind == frame.KindEvent {
			events = append(events, h)
			if string(p) != string(ev) {
				t.Errorf("payload %x", p)
			}
		}
	}
	if len(events) != 1 || events[0].Group != 33 || events[0].Family != streams.FamilyGeneric || events[0].Seq != 1 {
		t.Errorf("events sent: %+v, want one in group 33", events)
	}
	d := DecodeGenl(ctrlMsg(t, ctrlCmdNewFamily, "nlmtest", 40, map[string]uint32{"events": 33}), nil)
	g := decodeInto[GenlEvent](t, d)
	if g.Family != "nlctrl" || g.CmdName != "new-family" || g.Control == nil || g.Control.Name != "nlmtest" || g.Control.Groups["events"] != 33 {
		t.Errorf("nlctrl decode: %s", d.Event)
	}
}

func TestBridgeRefusesMixedFamiliesAndPrivileged(t *testing.T) {
	link, _ := streams.Lookup("link")
	proc, _ := streams.Lookup("proc")
	ue, _ := streams.Lookup("uevent")
	_, err := NewWithSource(&Config{Streams: []streams.Stream{link, ue}, Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	if err == nil || !strings.Contains(err.Error(), "Set") {
		t.Errorf("mixed families: %v", err)
	}
	_, err = NewWithSource(&Config{Streams: []streams.Stream{proc}, Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	var pe *PrivilegedError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "--expose proc") {
		t.Errorf("privileged stream: %v", err)
	}
	_, err = NewWithSource(&Config{Streams: []streams.Stream{ue}, AllNSID: true, Logger: quiet}, newFakeSource(), nil, &fakeSink{})
	if err == nil {
		t.Error("all-nsid accepted for uevents")
	}
}

// FuzzDecodeFamilies feeds the same bytes to every other family's decoder
// and parser: none may panic, and each must give valid JSON and a summary.
func FuzzDecodeFamilies(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00ACTION=add\x00SEQNUM=1\x00"))
	f.Add(procMsg(procExit, 1, 1, 256, 17, 1, 1))
	f.Add(ctrlMsg(f, ctrlCmdNewFamily, "x", 30, map[string]uint32{"g": 9}))
	f.Add([]byte("libudev\x00\xfe\xed\xca\xfe\x20\x00\x00\x00\x20\x00\x00\x00\xff\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, d := range map[string]Decoded{
			"uevent": DecodeUevent(b), "proc": DecodeProc(b), "conntrack": DecodeConntrack(b),
			"genl": DecodeGenl(b, map[uint16]string{30: "x"}),
		} {
			if !json.Valid(d.Event) || d.Summary == "" {
				t.Fatalf("%s: % x gave %q %s", name, b, d.Summary, d.Event)
			}
		}
		parseCtrl(b)
		parseProc(b)
	})
}
