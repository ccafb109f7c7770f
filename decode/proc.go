package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"golang.org/x/sys/unix"
)

// ProcEvent is the JSON object of a process connector event. Fields that
// the event's kind does not carry are left out.
type ProcEvent struct {
	Event       string `json:"event"` // fork, exec, uid, gid, sid, ptrace, comm, coredump, exit, ack, ...
	What        uint32 `json:"what"`  // enum proc_event's what
	CPU         uint32 `json:"cpu"`
	TimestampNs uint64 `json:"timestamp_ns"` // CLOCK_MONOTONIC when the kernel made it

	PID        *int32  `json:"pid,omitempty"` // the process (thread) concerned
	TGID       *int32  `json:"tgid,omitempty"`
	ParentPID  *int32  `json:"parent_pid,omitempty"`
	ParentTGID *int32  `json:"parent_tgid,omitempty"`
	ChildPID   *int32  `json:"child_pid,omitempty"` // fork
	ChildTGID  *int32  `json:"child_tgid,omitempty"`
	RUID       *uint32 `json:"ruid,omitempty"` // uid change
	EUID       *uint32 `json:"euid,omitempty"`
	RGID       *uint32 `json:"rgid,omitempty"` // gid change
	EGID       *uint32 `json:"egid,omitempty"`
	TracerPID  *int32  `json:"tracer_pid,omitempty"` // ptrace; 0 on detach
	TracerTGID *int32  `json:"tracer_tgid,omitempty"`
	Comm       *string `json:"comm,omitempty"` // comm change

	// Exit: ExitCode is the wait status as the kernel keeps it; Status
	// is the exit status when the process exited, TermSignal the signal
	// that killed it; ExitSignal is the signal its parent is sent.
	ExitCode   *uint32 `json:"exit_code,omitempty"`
	Status     *uint32 `json:"status,omitempty"`
	TermSignal *uint32 `json:"term_signal,omitempty"`
	ExitSignal *uint32 `json:"exit_signal,omitempty"`

	AckErr *uint32 `json:"ack_err,omitempty"` // ack: errno of a listen request

	Seq   uint32 `json:"cn_seq"` // cn_msg sequence number
	Raw   string `json:"data_hex,omitempty"`
	Error string `json:"decode_error,omitempty"`
}

// The process connector (cn_proc): a NETLINK_CONNECTOR group that carries
// process events once a listener has asked for them. Every message is a
// netlink header, a cn_msg and a proc_event, all in host byte order.
const (
	CnIdxProc     = 1  // CN_IDX_PROC, also the multicast group
	CnValProc     = 1  // CN_VAL_PROC
	SizeofCnMsg   = 20 // struct cn_msg: id{idx,val}, seq, ack, len u16, flags u16
	procEventData = 16 // offset of event_data in struct proc_event
)

// proc_event what values.
const (
	procNone     = 0x00000000
	procFork     = 0x00000001
	procExec     = 0x00000002
	procUID      = 0x00000004
	procGID      = 0x00000040
	procSID      = 0x00000080
	procPtrace   = 0x00000100
	procComm     = 0x00000200
	procNonzero  = 0x20000000
	procCoredump = 0x40000000
	procExit     = 0x80000000
)

var procNames = map[uint32]string{
	procNone: "ack", procFork: "fork", procExec: "exec", procUID: "uid", procGID: "gid", procSID: "sid",
	procPtrace: "ptrace", procComm: "comm", procNonzero: "nonzero-exit", procCoredump: "coredump", procExit: "exit",
}

// procDataLen is the least event_data length of each kind of event: the
// bytes Proc reads unconditionally. Exit and nonzero-exit share
// struct exit_proc_event, whose parent fields (bytes 16-23) arrived in
// Linux 4.x and are decoded only when present.
var procDataLen = map[uint32]int{procNone: 4, procFork: 16, procExec: 8, procUID: 16, procGID: 16, procSID: 8,
	procPtrace: 16, procComm: 24, procCoredump: 16, procExit: 16, procNonzero: 16}

// procRaw is the fixed part of a connector message, for the handshake.
type procRaw struct {
	what, seq, ack, ackErr uint32
	body                   []byte // event_data
	cpu                    uint32
	ts                     uint64
}

// parseProc reads the cn_msg and proc_event headers of a connector message.
func parseProc(msg []byte) (procRaw, bool) {
	ne := binary.NativeEndian
	off := unix.SizeofNlMsghdr
	if len(msg) < off+SizeofCnMsg+procEventData {
		return procRaw{}, false
	}
	cn := msg[off:]
	if ne.Uint32(cn[0:]) != CnIdxProc || ne.Uint32(cn[4:]) != CnValProc {
		return procRaw{}, false
	}
	n := int(ne.Uint16(cn[16:]))
	ev := cn[SizeofCnMsg:]
	if n < procEventData || n > len(ev) {
		return procRaw{}, false
	}
	ev = ev[:n]
	r := procRaw{what: ne.Uint32(ev[0:]), cpu: ne.Uint32(ev[4:]), ts: ne.Uint64(ev[8:]), seq: ne.Uint32(cn[8:]), ack: ne.Uint32(cn[12:]), body: ev[procEventData:]}
	if r.what == procNone && len(r.body) >= 4 {
		r.ackErr = ne.Uint32(r.body)
	}
	return r, true
}

// ProcAck reads the connector's answer to a PROC_CN_MCAST_* request: a
// PROC_EVENT_NONE event whose cn_msg ack field is the request's cookie+1,
// carrying an error number (0: accepted). ok is false for any other message.
func ProcAck(msg []byte) (ack, errno uint32, ok bool) {
	r, ok := parseProc(msg)
	if !ok || r.what != procNone {
		return 0, 0, false
	}
	return r.ack, r.ackErr, true
}

// Proc decodes one process connector message (netlink header
// included). It never fails: what does not decode is described as hex.
func Proc(msg []byte) Result {
	r, ok := parseProc(msg)
	if !ok {
		ev := ProcEvent{Event: "malformed", Error: "not a process connector message", Raw: hex.EncodeToString(msg)}
		return encodeAny(&ev, "malformed process connector message")
	}
	ev := ProcEvent{What: r.what, CPU: r.cpu, TimestampNs: r.ts, Seq: r.seq}
	ev.Event = procNames[r.what]
	if ev.Event == "" {
		ev.Event = fmt.Sprintf("what-%#x", r.what)
	}
	d := r.body
	ne := binary.NativeEndian
	need := procDataLen[r.what]
	if len(d) < need {
		ev.Error = fmt.Sprintf("%s event of %d bytes, want %d", ev.Event, len(d), need)
		ev.Raw = hex.EncodeToString(d)
		return encodeAny(&ev, ev.Event+" (truncated)")
	}
	i32 := func(o int) *int32 { v := int32(ne.Uint32(d[o:])); return &v }
	u32 := func(o int) *uint32 { v := ne.Uint32(d[o:]); return &v }
	var summary string
	switch r.what {
	case procNone:
		ev.AckErr = u32(0)
		summary = fmt.Sprintf("ack seq %d err %d", r.seq, *ev.AckErr)
	case procFork:
		ev.ParentPID, ev.ParentTGID, ev.ChildPID, ev.ChildTGID = i32(0), i32(4), i32(8), i32(12)
		summary = fmt.Sprintf("fork parent %d/%d child %d/%d", *ev.ParentPID, *ev.ParentTGID, *ev.ChildPID, *ev.ChildTGID)
	case procExec:
		ev.PID, ev.TGID = i32(0), i32(4)
		summary = fmt.Sprintf("exec pid %d/%d", *ev.PID, *ev.TGID)
	case procUID:
		ev.PID, ev.TGID, ev.RUID, ev.EUID = i32(0), i32(4), u32(8), u32(12)
		summary = fmt.Sprintf("uid pid %d/%d ruid %d euid %d", *ev.PID, *ev.TGID, *ev.RUID, *ev.EUID)
	case procGID:
		ev.PID, ev.TGID, ev.RGID, ev.EGID = i32(0), i32(4), u32(8), u32(12)
		summary = fmt.Sprintf("gid pid %d/%d rgid %d egid %d", *ev.PID, *ev.TGID, *ev.RGID, *ev.EGID)
	case procSID:
		ev.PID, ev.TGID = i32(0), i32(4)
		summary = fmt.Sprintf("sid pid %d/%d", *ev.PID, *ev.TGID)
	case procPtrace:
		ev.PID, ev.TGID, ev.TracerPID, ev.TracerTGID = i32(0), i32(4), i32(8), i32(12)
		summary = fmt.Sprintf("ptrace pid %d/%d tracer %d/%d", *ev.PID, *ev.TGID, *ev.TracerPID, *ev.TracerTGID)
	case procComm:
		ev.PID, ev.TGID = i32(0), i32(4)
		c := d[8:24]
		if i := bytes.IndexByte(c, 0); i >= 0 {
			c = c[:i]
		}
		s := string(c)
		ev.Comm = &s
		summary = fmt.Sprintf("comm pid %d/%d %q", *ev.PID, *ev.TGID, s)
	case procCoredump:
		ev.PID, ev.TGID, ev.ParentPID, ev.ParentTGID = i32(0), i32(4), i32(8), i32(12)
		summary = fmt.Sprintf("coredump pid %d/%d parent %d/%d", *ev.PID, *ev.TGID, *ev.ParentPID, *ev.ParentTGID)
	case procExit, procNonzero:
		ev.PID, ev.TGID, ev.ExitCode, ev.ExitSignal = i32(0), i32(4), u32(8), u32(12)
		if len(d) >= 24 {
			ev.ParentPID, ev.ParentTGID = i32(16), i32(20)
		}
		code := *ev.ExitCode
		if sig := code & 0x7f; sig != 0 {
			ev.TermSignal = &sig
			summary = fmt.Sprintf("%s pid %d/%d killed by signal %d", ev.Event, *ev.PID, *ev.TGID, sig)
		} else {
			st := code >> 8 & 0xff
			ev.Status = &st
			summary = fmt.Sprintf("%s pid %d/%d status %d", ev.Event, *ev.PID, *ev.TGID, st)
		}
	default:
		ev.Raw = hex.EncodeToString(d)
		summary = ev.Event
	}
	return encodeAny(&ev, summary)
}
