package netlinkbridge

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/sockdiag"
)

// fakeSockets stands for sock_diag and /proc in a receiverWatch.
type fakeSockets struct {
	sockets  []sockdiag.Socket
	err      error
	detached []uint32 // inodes, in order
	refuse   bool     // detach fails
}

func (f *fakeSockets) watch(cfg *Config) (*receiverWatch, *bytes.Buffer) {
	var logs bytes.Buffer
	w := newReceiverWatch(cfg, map[uint16]netip.Addr{
		5001: netip.MustParseAddr("239.0.0.1"), 5002: netip.MustParseAddr("239.0.1.1"),
	}, 1021, slog.New(slog.NewTextHandler(&logs, nil)))
	w.exempt = map[uint32]bool{0: true}
	w.list = func() ([]sockdiag.Socket, error) { return slices.Clone(f.sockets), f.err }
	w.holders = func(want map[uint32]bool) (map[uint32]sockdiag.Holder, error) {
		hs := map[uint32]sockdiag.Holder{}
		for ino := range want {
			hs[ino] = sockdiag.Holder{PID: 1, FD: int(ino)}
		}
		return hs, nil
	}
	w.detach = func(ino uint32, h sockdiag.Holder) error {
		if f.refuse {
			return errors.New("EPERM")
		}
		f.detached = append(f.detached, ino)
		for i := range f.sockets {
			if f.sockets[i].Inode == ino {
				f.sockets[i].Interface = sockdiag.DetachedInterface
			}
		}
		return nil
	}
	return w, &logs
}

func sock(uid uint32, local string, cookie uint64) sockdiag.Socket {
	return sockdiag.Socket{
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
		UID: uid, Inode: uint32(cookie) + 1000, Cookie: cookie, HasMem: true, Rcvbuf: 4096,
	}
}

func full(s sockdiag.Socket, drops uint32) sockdiag.Socket {
	s.RmemAlloc, s.Drops = 4000, drops
	return s
}

func TestReceiverWatch(t *testing.T) {
	connected := sock(3000, "239.0.0.1:5001", 40)
	connected.Remote = netip.MustParseAddrPort("127.0.0.1:9999")
	fromBridge := sock(3000, "239.0.0.1:5001", 41)
	fromBridge.Remote = netip.MustParseAddrPort("127.0.0.1:1021")
	f := &fakeSockets{sockets: []sockdiag.Socket{
		sock(1000, "239.0.0.1:5001", 1),
		full(sock(1000, "239.0.0.1:5001", 2), 10),
		sock(1000, "0.0.0.0:5002", 3), // the wildcard address receives too
		full(sock(1000, "239.0.1.1:5002", 4), 10),
		sock(1000, "239.0.1.1:5002", 5),
		sock(1000, "127.0.0.1:5001", 6), // not a group: gets no multicast
		sock(1000, "239.0.1.1:5001", 7), // another group on the port
		sock(1000, "239.0.0.1:6000", 8), // another port
		sock(0, "239.0.0.1:5001", 20), sock(0, "239.0.0.1:5001", 21), sock(0, "239.0.0.1:5001", 22), sock(0, "239.0.0.1:5001", 23),
		connected, fromBridge,
	}}
	w, logs := f.watch(&Config{MaxSocketsPerUID: 2})
	w.scan(time.Unix(100, 0))
	// uid 1000 has 5 receiving sockets, 2 on port 5001 and 3 on port 5002:
	// one over the limit there, and one with a full queue goes first (none
	// is idle yet: drops need two scans).
	if want := []uint32{1004}; !reflect.DeepEqual(f.detached, want) {
		t.Errorf("detached %v, want %v", f.detached, want)
	}
	r := w.snapshot()
	want := ReceiversReport{Scans: 1, Limit: 2, Detached: 1, ByUID: map[string]UIDReceivers{
		"1000": {Joined: 4, Detached: 1}, "0": {Joined: 4}, "3000": {Joined: 1},
	}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("report %+v\nwant %+v", r, want)
	}
	if !strings.Contains(logs.String(), "detached sockets over the per-user limit") || !strings.Contains(logs.String(), "uid=1000 detached=1") {
		t.Errorf("log:\n%s", logs.String())
	}

	// Next scan: uid 2000 opens four sockets that do not read, uid 1000's
	// first socket drops too but reads (its queue is not full).
	f.detached = nil
	for c := uint64(50); c < 54; c++ {
		f.sockets = append(f.sockets, full(sock(2000, "239.0.0.1:5001", c), 5))
	}
	f.sockets[0].Drops = 3
	w.scan(time.Unix(102, 0))
	if want := []uint32{1053, 1052}; !reflect.DeepEqual(f.detached, want) {
		t.Errorf("detached %v, want %v (the newest of uid 2000)", f.detached, want)
	}
	for i := range f.sockets {
		if f.sockets[i].UID == 2000 {
			f.sockets[i].Drops += 7 // still not reading
		}
	}
	f.sockets[0].Drops = 9
	f.detached = nil
	logs.Reset()
	w.scan(time.Unix(104, 0))
	r = w.snapshot()
	if got := r.ByUID["2000"]; got != (UIDReceivers{Joined: 2, Idle: 2, Detached: 2}) {
		t.Errorf("uid 2000: %+v", got)
	}
	if got := r.ByUID["1000"]; got != (UIDReceivers{Joined: 4, Idle: 0, Detached: 1}) {
		t.Errorf("uid 1000: %+v (a socket that drops but whose queue is not full is not idle)", got)
	}
	if len(f.detached) != 0 || r.Detached != 3 || r.Scans != 3 {
		t.Errorf("detached %v, report %+v", f.detached, r)
	}
	if !strings.Contains(logs.String(), "receivers that do not read") || !strings.Contains(logs.String(), "uid=2000 idle=2 joined=2") {
		t.Errorf("log:\n%s", logs.String())
	}
	// The idle warning is rate-limited.
	logs.Reset()
	for i := range f.sockets {
		f.sockets[i].Drops++
	}
	w.scan(time.Unix(106, 0))
	if strings.Contains(logs.String(), "uid=2000 idle") {
		t.Errorf("warned again within a minute:\n%s", logs.String())
	}
}

func TestReceiverWatchOff(t *testing.T) {
	f := &fakeSockets{}
	for c := range uint64(10) {
		f.sockets = append(f.sockets, full(sock(1000, "239.0.0.1:5001", c+1), 1))
	}
	w, _ := f.watch(&Config{NoSocketLimit: true})
	w.scan(time.Unix(100, 0))
	if r := w.snapshot(); len(f.detached) != 0 || r.Limit != 0 || r.ByUID["1000"].Joined != 10 {
		t.Errorf("limit off: detached %v, report %+v", f.detached, r)
	}
	// The default applies to a zero Config.
	if w, _ := f.watch(&Config{}); w.limit != DefaultMaxSocketsPerUID {
		t.Errorf("zero Config: limit %d", w.limit)
	}
}

func TestReceiverWatchFailures(t *testing.T) {
	f := &fakeSockets{refuse: true}
	for c := range uint64(5) {
		f.sockets = append(f.sockets, sock(1000, "239.0.0.1:5001", c+1))
	}
	w, logs := f.watch(&Config{MaxSocketsPerUID: 2})
	w.scan(time.Unix(100, 0))
	if r := w.snapshot(); r.DetachFailures != 3 || r.Detached != 0 || r.ByUID["1000"].Joined != 5 {
		t.Errorf("report %+v", r)
	}
	if !strings.Contains(logs.String(), "cannot detach") {
		t.Errorf("log:\n%s", logs.String())
	}
	f.err = errors.New("no sock_diag")
	w.scan(time.Unix(102, 0))
	if r := w.snapshot(); r.ScanErrors != 1 || r.Scans != 2 {
		t.Errorf("report %+v", r)
	}
}
