package netlinkbridge

import (
	"cmp"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/sockdiag"
)

// ReceiversReport tells of the sockets bound to a Set's streams' ports:
// the "receivers" part of StatsReport.
type ReceiversReport struct {
	// Scans counts the listings (every ReceiversInterval); ScanErrors
	// those that failed (sock_diag unavailable: nothing is reported or
	// limited).
	Scans      uint64 `json:"scans"`
	ScanErrors uint64 `json:"scan_errors"`
	// Limit is the sockets allowed per uid on each port
	// (Config.MaxSocketsPerUID); 0 when NoSocketLimit turned it off.
	Limit int `json:"limit"`
	// Detached counts the sockets detached for the limit, in all;
	// DetachFailures those that could not be (no privilege, or the holder
	// was gone).
	Detached       uint64 `json:"detached"`
	DetachFailures uint64 `json:"detach_failures"`
	// ByUID holds, for every uid that has sockets bound to the streams'
	// ports at the last scan (or had some detached), the counts of the
	// last scan and its detached total. Keys are uids in decimal.
	ByUID map[string]UIDReceivers `json:"by_uid"`
}

// UIDReceivers counts one user's sockets bound to the streams' ports.
type UIDReceivers struct {
	// Joined is how many receive the streams (bound to a stream's port on
	// its group's address or on the wildcard address; detached ones are
	// not counted).
	Joined int `json:"joined"`
	// Idle is how many of those do not read: their receive queue at half
	// its limit or more, and drops that rose since the previous scan.
	Idle int `json:"idle"`
	// Detached counts this user's sockets detached for the limit, in all.
	Detached uint64 `json:"detached"`
}

// receiverWatch lists the sockets bound to the streams' ports every
// ReceiversInterval, reports the idle ones and detaches the excess of
// each user on each port. It runs beside the bridges, never on their path.
type receiverWatch struct {
	ports  map[uint16]netip.Addr // stream port → its group
	source uint16                // the sender's port: a socket connected elsewhere gets nothing
	limit  int                   // 0: off
	exempt map[uint32]bool
	log    *slog.Logger
	// The system: sock_diag and /proc in production, fakes in tests.
	list    func() ([]sockdiag.Socket, error)
	holders func(map[uint32]bool) (map[uint32]sockdiag.Holder, error)
	detach  func(uint32, sockdiag.Holder) error
	close   func() error

	drops   map[uint64]uint32 // socket cookie → drops at the last scan
	lastLog map[string]time.Time

	mu       sync.Mutex
	report   ReceiversReport
	detached map[uint32]uint64 // per uid, in all
}

// newReceiverWatch returns a watch of the sockets bound to ports, without
// its system functions (list, holders, detach, close): see openReceivers.
func newReceiverWatch(cfg *Config, ports map[uint16]netip.Addr, source uint16, log *slog.Logger) *receiverWatch {
	w := &receiverWatch{
		ports: ports, source: source, log: log,
		exempt: map[uint32]bool{0: true, uint32(os.Geteuid()): true},
		drops:  map[uint64]uint32{}, lastLog: map[string]time.Time{}, detached: map[uint32]uint64{},
	}
	if !cfg.NoSocketLimit {
		w.limit = cmp.Or(cfg.MaxSocketsPerUID, DefaultMaxSocketsPerUID)
	}
	w.report.Limit = w.limit
	w.report.ByUID = map[string]UIDReceivers{}
	return w
}

// openReceivers opens the sock_diag socket of a watch of the streams of
// bridges, in the calling thread's network namespace (the sender's).
func openReceivers(cfg *Config, bridges []*Bridge, source uint16, log *slog.Logger) (*receiverWatch, error) {
	ports := map[uint16]netip.Addr{}
	for _, b := range bridges {
		for _, st := range b.streams {
			for _, ua := range []*net.UDPAddr{st.raw, st.json} {
				if ua != nil {
					ap := ua.AddrPort()
					ports[ap.Port()] = ap.Addr().Unmap()
				}
			}
		}
	}
	conn, err := sockdiag.Open()
	if err != nil {
		return nil, err
	}
	w := newReceiverWatch(cfg, ports, source, log)
	w.list = func() ([]sockdiag.Socket, error) { return conn.List(sockdiag.Filter{}) }
	w.holders, w.detach, w.close = sockdiag.Holders, sockdiag.Detach, conn.Close
	return w, nil
}

// run scans every ReceiversInterval until done is closed.
func (w *receiverWatch) run(done <-chan struct{}) {
	t := time.NewTicker(ReceiversInterval)
	defer t.Stop()
	for {
		w.scan(time.Now())
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// receiving reports whether the kernel delivers the streams' datagrams to
// s: bound to a stream's port on its group or on the wildcard address, not
// detached, and not connected to another sender.
func (w *receiverWatch) receiving(s *sockdiag.Socket) bool {
	g, ok := w.ports[s.Local.Port()]
	if !ok || (s.Local.Addr() != g && !s.Local.Addr().IsUnspecified()) {
		return false
	}
	if s.Interface == sockdiag.DetachedInterface {
		return false
	}
	return s.Remote.Port() == 0 || s.Remote.Port() == w.source
}

// scan lists the sockets once, reports and enforces.
func (w *receiverWatch) scan(now time.Time) {
	all, err := w.list()
	w.mu.Lock()
	w.report.Scans++
	if err != nil {
		w.report.ScanErrors++
	}
	w.mu.Unlock()
	if err != nil {
		if w.rateLimited("scan", now, time.Minute) {
			w.log.Warn("cannot list the receivers' sockets (sock_diag); idle receivers are neither reported nor limited", "err", err)
		}
		return
	}
	byUID := map[uint32][]sockdiag.Socket{}
	idle := map[uint64]bool{}
	drops := make(map[uint64]uint32, len(w.drops))
	for i := range all {
		s := &all[i]
		if !w.receiving(s) {
			continue
		}
		byUID[s.UID] = append(byUID[s.UID], *s)
		if prev, seen := w.drops[s.Cookie]; seen && s.Drops != prev && s.Full() {
			idle[s.Cookie] = true
		}
		drops[s.Cookie] = s.Drops
	}
	w.drops = drops

	counts := map[string]UIDReceivers{}
	var cut []sockdiag.Socket
	for uid, ss := range byUID {
		c := UIDReceivers{Joined: len(ss)}
		for _, s := range ss {
			if idle[s.Cookie] {
				c.Idle++
			}
		}
		counts[strconv.FormatUint(uint64(uid), 10)] = c
		if c.Idle > 0 && w.rateLimited("idle "+strconv.FormatUint(uint64(uid), 10), now, time.Minute) {
			w.log.Warn("receivers that do not read: sockets joined to the streams with a full queue and rising drops; the kernel charges the bridge for each datagram they drop",
				"uid", uid, "idle", c.Idle, "joined", c.Joined, "limit_per_port", w.limit)
		}
		if w.limit > 0 && len(ss) > w.limit && !w.exempt[uid] {
			byPort := map[uint16][]sockdiag.Socket{}
			for _, s := range ss {
				byPort[s.Local.Port()] = append(byPort[s.Local.Port()], s)
			}
			for _, port := range slices.Sorted(maps.Keys(byPort)) {
				cut = append(cut, excess(byPort[port], idle, w.limit)...)
			}
		}
	}
	detached, failed := w.enforce(cut, now)

	w.mu.Lock()
	defer w.mu.Unlock()
	for uid, n := range detached {
		w.detached[uid] += uint64(n)
		w.report.Detached += uint64(n)
		k := strconv.FormatUint(uint64(uid), 10)
		c := counts[k]
		c.Joined -= n
		counts[k] = c
	}
	for uid, n := range w.detached {
		k := strconv.FormatUint(uint64(uid), 10)
		c := counts[k]
		c.Detached = n
		counts[k] = c
	}
	w.report.DetachFailures += uint64(failed)
	w.report.ByUID = counts
}

// excess returns the sockets of one user on one port beyond limit: idle
// ones first, then those with a full queue, then the newest.
func excess(ss []sockdiag.Socket, idle map[uint64]bool, limit int) []sockdiag.Socket {
	if len(ss) <= limit {
		return nil
	}
	rank := func(s *sockdiag.Socket) int {
		switch {
		case idle[s.Cookie]:
			return 0
		case s.Full():
			return 1
		}
		return 2
	}
	ss = slices.Clone(ss)
	slices.SortFunc(ss, func(a, b sockdiag.Socket) int {
		return cmp.Or(cmp.Compare(rank(&a), rank(&b)), cmp.Compare(b.Cookie, a.Cookie)) // cookies grow: newest first
	})
	return ss[:len(ss)-limit]
}

// enforce detaches the sockets of cut and returns how many per uid, and
// how many could not be.
func (w *receiverWatch) enforce(cut []sockdiag.Socket, now time.Time) (map[uint32]int, int) {
	if len(cut) == 0 {
		return nil, 0
	}
	want := make(map[uint32]bool, len(cut))
	for _, s := range cut {
		want[s.Inode] = true
	}
	holders, err := w.holders(want)
	if err != nil {
		if w.rateLimited("holders", now, time.Minute) {
			w.log.Warn("cannot find the processes holding sockets over the per-user limit", "err", err)
		}
		return nil, len(cut)
	}
	done, failed := map[uint32]int{}, 0
	var lastErr error
	for _, s := range cut {
		h, ok := holders[s.Inode]
		if !ok {
			continue // closed since the listing: nothing to do
		}
		if err := w.detach(s.Inode, h); err != nil {
			failed++
			lastErr = err
			continue
		}
		done[s.UID]++
	}
	for _, uid := range slices.Sorted(maps.Keys(done)) {
		if w.rateLimited("detach "+strconv.FormatUint(uint64(uid), 10), now, 10*time.Second) {
			w.log.Warn("detached sockets over the per-user limit: they stay open but receive no more events",
				"uid", uid, "detached", done[uid], "limit_per_port", w.limit)
		}
	}
	if failed > 0 && w.rateLimited("detach failed", now, time.Minute) {
		w.log.Warn("cannot detach sockets over the per-user limit (needs CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE and CAP_NET_RAW)", "failed", failed, "err", lastErr)
	}
	return done, failed
}

func (w *receiverWatch) rateLimited(key string, now time.Time, every time.Duration) bool {
	if last, ok := w.lastLog[key]; ok && now.Sub(last) < every {
		return false
	}
	w.lastLog[key] = now
	return true
}

// snapshot returns a copy of the report.
func (w *receiverWatch) snapshot() ReceiversReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.report
	r.ByUID = maps.Clone(r.ByUID)
	return r
}
