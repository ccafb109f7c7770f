package sockdiag

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"syscall"
	"testing"
)

// Recorded from the kernel (6.18, amd64) in a fresh namespace: a dump of
// every IPv4 UDP socket with INET_DIAG_SKMEMINFO, answer to sequence 1. Two
// sockets: one bound to 239.1.2.3:5001, one bound to 127.0.0.1:40000 and
// connected to 127.0.0.2:5002. Then the NLMSG_DONE datagram.
const (
	recordedSockets = "a40000001400020001000000c61f00000207000013890000ef010203000000000000000000000000000000000000000000000000000000000000000001100000000000000000000000000000000000000000" +
		"0000b5fc0d00050008000000000008000f00000000000c0015000100000000000000060016005000000028000700000000000040030000000000004003000000000000000000000000000000000000000000" +
		"a40000001400020001000000c61f0000020100009c40138a7f0000010000000000000000000000007f0000020000000000000000000000000000000002100000000000000000000000000000000000000000" +
		"0000b6fc0d00050008000000000008000f00000000000c0015000100000000000000060016005000000028000700000000000040030000000000004003000000000000000000000000000000000000000000"
	recordedDone = "140000000300020001000000c61f000000000000"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nlmsg builds a netlink message for the tests that need bytes the kernel
// would not send.
func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	b := make([]byte, 16, 16+len(body)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseDump(t *testing.T) {
	bound := Socket{
		Local: netip.MustParseAddrPort("239.1.2.3:5001"), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
		State: 7, Inode: 0x0dfcb5, Cookie: 0x1001, HasMem: true, Rcvbuf: 212992,
	}
	connected := Socket{
		Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.2:5002"),
		State: 1, Inode: 0x0dfcb6, Cookie: 0x1002, HasMem: true, Rcvbuf: 212992,
	}
	sockets := unhex(t, recordedSockets)
	// A socket with data queued and drops: the recorded first one, its
	// rqueue, uid and meminfo words changed.
	busy := append([]byte(nil), sockets[:0xa4]...)
	binary.NativeEndian.PutUint32(busy[16+56:], 4096)     // idiag_rqueue
	binary.NativeEndian.PutUint32(busy[16+64:], 65534)    // idiag_uid
	binary.NativeEndian.PutUint32(busy[0xa4-40+4:], 5000) // SK_MEMINFO_RMEM_ALLOC
	binary.NativeEndian.PutUint32(busy[0xa4-40+8:], 4608) // SK_MEMINFO_RCVBUF
	binary.NativeEndian.PutUint32(busy[0xa4-40+36:], 17)  // SK_MEMINFO_DROPS
	busySock := bound
	busySock.RecvQueue, busySock.UID, busySock.RmemAlloc, busySock.Rcvbuf, busySock.Drops = 4096, 65534, 5000, 4608, 17
	shortMem := append([]byte(nil), sockets[:0xa4]...)
	binary.NativeEndian.PutUint32(shortMem[0:], 0xa4-8)
	binary.NativeEndian.PutUint16(shortMem[0xa4-40:], 32) // the attribute's length: 7 words
	shortMem = shortMem[:0xa4-8]

	errMsg := make([]byte, 20)
	binary.NativeEndian.PutUint32(errMsg, uint32(0x100000000-int64(syscall.EPERM)))
	tests := []struct {
		name    string
		in      []byte
		seq     uint32
		want    []Socket
		done    bool
		wantErr error
	}{
		{name: "recorded sockets", in: sockets, seq: 1, want: []Socket{bound, connected}},
		{name: "recorded done", in: unhex(t, recordedDone), seq: 1, done: true},
		{name: "recorded, both datagrams", in: append(append([]byte(nil), sockets...), unhex(t, recordedDone)...), seq: 1, want: []Socket{bound, connected}, done: true},
		{name: "other sequence skipped", in: sockets, seq: 2},
		{name: "queue, uid and drops", in: busy, seq: 1, want: []Socket{busySock}},
		{name: "error message", in: nlmsg(nlmsgError, 1, errMsg), seq: 1, wantErr: syscall.EPERM},
		{name: "ack", in: nlmsg(nlmsgError, 1, make([]byte, 20)), seq: 1},
		{name: "truncated header", in: sockets[:10], seq: 1, wantErr: ErrMalformed},
		{name: "length past the end", in: sockets[:0xa0], seq: 1, wantErr: ErrMalformed},
		{name: "length below the header", in: nlmsg(nlmsgDone, 1, nil)[:4:4], seq: 1, wantErr: ErrMalformed},
		{name: "short inet_diag_msg", in: nlmsg(sockDiagByFam, 1, make([]byte, 40)), seq: 1, wantErr: ErrMalformed},
		{name: "not AF_INET", in: nlmsg(sockDiagByFam, 1, make([]byte, diagMsgLen)), seq: 1, wantErr: ErrMalformed},
		{name: "short meminfo", in: shortMem, seq: 1, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done, err := ParseDump(tt.in, tt.seq, nil)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if done != tt.done || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v done %v\nwant %+v done %v", got, done, tt.want, tt.done)
			}
		})
	}
}

func TestFull(t *testing.T) {
	for _, tt := range []struct {
		s    Socket
		want bool
	}{
		{Socket{}, false},
		{Socket{HasMem: true, RmemAlloc: 2, Rcvbuf: 4}, true},
		{Socket{HasMem: true, RmemAlloc: 1664, Rcvbuf: 2304}, true}, // seen: the smallest buffer, dropping
		{Socket{HasMem: true, RmemAlloc: 1, Rcvbuf: 4}, false},
		{Socket{HasMem: false, RmemAlloc: 4, Rcvbuf: 4}, false},
		{Socket{HasMem: true, RmemAlloc: 5000, Rcvbuf: 4608}, true},
		{Socket{HasMem: true, RmemAlloc: 0, Rcvbuf: 0}, false},
	} {
		if got := tt.s.Full(); got != tt.want {
			t.Errorf("%+v: Full %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	s := Socket{Local: netip.MustParseAddrPort("239.1.2.3:5001"), Remote: netip.MustParseAddrPort("127.0.0.1:1021"), Interface: 3, Cookie: 0x1122334455667788}
	b := request(sockDestroy, nlmFRequest|nlmFAck, 9, 0, &s)
	if len(b) != 16+diagReqLen || binary.NativeEndian.Uint16(b[4:]) != sockDestroy || binary.NativeEndian.Uint32(b[8:]) != 9 {
		t.Fatalf("header %x", b[:16])
	}
	// The sockid of a request is laid out as in an answer: parse it back
	// as one.
	msg := make([]byte, diagMsgLen)
	msg[0] = afInet
	copy(msg[4:52], b[16+8:])
	got, err := ParseSocket(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Local != s.Local || got.Remote != s.Remote || got.Interface != s.Interface || got.Cookie != s.Cookie {
		t.Fatalf("got %+v, want %+v", got, s)
	}
	if r := b[16:]; r[0] != afInet || r[1] != ipprotoUDP || binary.NativeEndian.Uint32(r[4:]) != allStates {
		t.Fatalf("request %x", r[:8])
	}
}

func TestOwnersOf(t *testing.T) {
	ss := []Socket{
		{Local: netip.MustParseAddrPort("127.0.0.1:1021"), UID: 0},
		{Local: netip.MustParseAddrPort("0.0.0.0:1021"), UID: 7},
		{Local: netip.MustParseAddrPort("127.0.0.2:1021"), UID: 8},
		{Local: netip.MustParseAddrPort("127.0.0.1:1022"), UID: 9},
		{Local: netip.MustParseAddrPort("127.0.0.1:1021"), UID: 0},
	}
	for _, tt := range []struct {
		ap   string
		want []uint32
	}{
		{"127.0.0.1:1021", []uint32{0, 7}},
		{"0.0.0.0:1021", []uint32{0, 7, 8}},
		{"127.0.0.3:1021", []uint32{7}},
		{"127.0.0.1:1023", nil},
	} {
		if got := ownersOf(ss, netip.MustParseAddrPort(tt.ap)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.ap, got, tt.want)
		}
	}
}
