package compare

import (
	"encoding/binary"
	"sort"
	"time"
)

// Path is one of the two deliveries.
type Path uint8

const (
	Netlink   Path = iota // a netlink socket joined to the kernel's groups
	Multicast             // nlmcast's raw multicast stream
)

func (p Path) String() string {
	if p == Multicast {
		return "multicast"
	}
	return "netlink"
}

// Arrival is one kernel message as one path delivered it.
type Arrival struct {
	Path  Path
	Group uint32    // the netlink group (the stream)
	Msg   []byte    // the whole netlink message; the Matcher keeps it
	At    time.Time // when the reader had it
}

// Result is an event resolved: seen on both paths, or missing on one.
type Result struct {
	Group  uint32
	Msg    []byte
	At     [2]time.Time // by Path; zero on the path that lacks it
	Missed bool         // seen on one path only (the other At is zero)
	// OutOfOrder: multicast delivered it after an event that netlink
	// delivered later (within the group).
	OutOfOrder bool
}

// Delta is the multicast arrival minus the netlink arrival (negative when
// multicast was first). Zero when Missed.
func (r Result) Delta() time.Duration {
	if r.Missed {
		return 0
	}
	return r.At[Multicast].Sub(r.At[Netlink])
}

// MissingOn returns the path that lacks the event, if Missed.
func (r Result) MissingOn() Path {
	if r.At[Netlink].IsZero() {
		return Netlink
	}
	return Multicast
}

type pending struct {
	a     Arrival
	index uint64 // arrival index on its path, within the group
	gone  bool   // matched or expired, still in the expiry queue
}

// Matcher pairs arrivals from the two paths. Two arrivals match when they
// carry the same group and byte-identical messages (the kernel sends every
// subscriber the same bytes); identical messages pair first in, first out.
type Matcher struct {
	// Wait is how long an arrival waits for its twin before it counts as
	// missing on the other path.
	Wait time.Duration

	waiting map[string][]*pending // by key, oldest first, per path
	queue   []*pending            // every waiting arrival, oldest first
	next    [2]map[uint32]uint64  // next arrival index by path and group
	maxNL   map[uint32]uint64     // highest netlink index multicast has delivered, by group
	seenMC  map[uint32]bool
	pairs   map[uint32][][2]uint64 // matched (multicast, netlink) indexes, by group

	count   [2]int
	matched int
	missing [2]int // missing on path
	mcFirst int
	deltas  []time.Duration
}

// NewMatcher returns a Matcher that waits wait for twins.
func NewMatcher(wait time.Duration) *Matcher {
	return &Matcher{
		Wait: wait, waiting: map[string][]*pending{},
		next:  [2]map[uint32]uint64{{}, {}},
		maxNL: map[uint32]uint64{}, seenMC: map[uint32]bool{}, pairs: map[uint32][][2]uint64{},
	}
}

func key(p Path, group uint32, msg []byte) string {
	b := make([]byte, 5, 5+len(msg))
	b[0] = byte(p)
	binary.BigEndian.PutUint32(b[1:], group)
	return string(append(b, msg...))
}

// Add records an arrival. When its twin from the other path is waiting,
// the pair is resolved and returned.
func (m *Matcher) Add(a Arrival) (Result, bool) {
	m.count[a.Path]++
	idx := m.next[a.Path][a.Group]
	m.next[a.Path][a.Group] = idx + 1
	other := Netlink
	if a.Path == Netlink {
		other = Multicast
	}
	k := key(other, a.Group, a.Msg)
	if q := m.waiting[k]; len(q) > 0 {
		twin := q[0]
		if len(q) == 1 {
			delete(m.waiting, k)
		} else {
			m.waiting[k] = q[1:]
		}
		twin.gone = true
		return m.pair(a, idx, twin.a, twin.index), true
	}
	p := &pending{a: a, index: idx}
	mk := key(a.Path, a.Group, a.Msg)
	m.waiting[mk] = append(m.waiting[mk], p)
	m.queue = append(m.queue, p)
	return Result{}, false
}

func (m *Matcher) pair(a Arrival, ai uint64, b Arrival, bi uint64) Result {
	r := Result{Group: a.Group, Msg: a.Msg}
	r.At[a.Path], r.At[b.Path] = a.At, b.At
	nl, mc := ai, bi
	if b.Path == Netlink {
		nl, mc = bi, ai
	}
	m.pairs[a.Group] = append(m.pairs[a.Group], [2]uint64{mc, nl})
	// Order, as multicast delivers: did an event netlink delivered later
	// come through multicast before this one?
	if m.seenMC[a.Group] && nl < m.maxNL[a.Group] {
		r.OutOfOrder = true
	}
	if !m.seenMC[a.Group] || nl > m.maxNL[a.Group] {
		m.maxNL[a.Group], m.seenMC[a.Group] = nl, true
	}
	m.matched++
	d := r.Delta()
	if d < 0 {
		m.mcFirst++
	}
	m.deltas = append(m.deltas, d)
	return r
}

// Expire resolves the arrivals that have waited longer than Wait at now as
// missing on the other path, oldest first.
func (m *Matcher) Expire(now time.Time) []Result {
	var out []Result
	for len(m.queue) > 0 {
		p := m.queue[0]
		if !p.gone && now.Sub(p.a.At) < m.Wait {
			break
		}
		m.queue = m.queue[1:]
		if !p.gone {
			out = append(out, m.miss(p))
		}
	}
	return out
}

// Flush resolves every waiting arrival as missing on the other path.
func (m *Matcher) Flush() []Result {
	var out []Result
	for _, p := range m.queue {
		if !p.gone {
			out = append(out, m.miss(p))
		}
	}
	m.queue = nil
	return out
}

func (m *Matcher) miss(p *pending) Result {
	p.gone = true
	k := key(p.a.Path, p.a.Group, p.a.Msg)
	if q := m.waiting[k]; len(q) > 0 {
		if len(q) == 1 {
			delete(m.waiting, k)
		} else {
			m.waiting[k] = q[1:] // p is the oldest of its key
		}
	}
	other := Netlink
	if p.a.Path == Netlink {
		other = Multicast
	}
	m.missing[other]++
	r := Result{Group: p.a.Group, Msg: p.a.Msg, Missed: true}
	r.At[p.a.Path] = p.a.At
	return r
}

// Summary is the comparison so far.
type Summary struct {
	Netlink          int          `json:"netlink"`           // events netlink delivered
	Multicast        int          `json:"multicast"`         // events multicast delivered
	Matched          int          `json:"matched"`           // seen on both
	MissingMulticast int          `json:"missing_multicast"` // seen on netlink only
	MissingNetlink   int          `json:"missing_netlink"`   // seen on multicast only
	Waiting          int          `json:"waiting"`           // not yet resolved
	OrderDiffs       int          `json:"order_differences"` // matched events multicast delivered out of netlink's order
	MulticastFirst   int          `json:"multicast_first"`   // matched events multicast delivered first
	Added            Distribution `json:"added_latency"`     // multicast minus netlink, per matched event
}

// Summary returns the counts and the distribution of the multicast path's
// added latency.
func (m *Matcher) Summary() Summary {
	w := 0
	for _, p := range m.queue {
		if !p.gone {
			w++
		}
	}
	return Summary{
		Netlink: m.count[Netlink], Multicast: m.count[Multicast], Matched: m.matched,
		MissingMulticast: m.missing[Multicast], MissingNetlink: m.missing[Netlink], Waiting: w,
		OrderDiffs: m.orderDiffs(), MulticastFirst: m.mcFirst, Added: Distribute(m.deltas),
	}
}

// orderDiffs counts the matched events that multicast delivered after an
// event of their group that netlink delivered after them.
func (m *Matcher) orderDiffs() int {
	n := 0
	for _, ps := range m.pairs {
		ps = append([][2]uint64(nil), ps...)
		sort.Slice(ps, func(i, j int) bool { return ps[i][0] < ps[j][0] })
		var maxNL uint64
		for i, p := range ps {
			if i > 0 && p[1] < maxNL {
				n++
			}
			maxNL = max(maxNL, p[1])
		}
	}
	return n
}

// Distribution summarises durations, in microseconds.
type Distribution struct {
	Count int     `json:"count"`
	Min   float64 `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	Max   float64 `json:"max_us"`
}

// Distribute returns the distribution of ds (which it sorts). Quantiles
// are nearest-rank: P50 is the smallest value at least half are <=.
func Distribute(ds []time.Duration) Distribution {
	if len(ds) == 0 {
		return Distribution{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return Distribution{
		Count: len(ds), Min: us(ds[0]), Max: us(ds[len(ds)-1]),
		Mean: us(sum / time.Duration(len(ds))),
		P50:  us(Quantile(ds, 0.50)), P90: us(Quantile(ds, 0.90)), P99: us(Quantile(ds, 0.99)),
	}
}

// Quantile returns the nearest-rank q-quantile of sorted ds.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
