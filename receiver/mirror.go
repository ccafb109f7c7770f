package receiver

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/streams"
)

// Mirror keeps a live copy of kernel tables (links, addresses, routes,
// neighbours, rules, nexthops, ...) from the raw streams: it applies every
// event, replaces a table with each resync's dump, and asks the bridge for
// a resync when it starts and whenever it could have missed something (a
// gap, a bridge restart, an incomplete fragment, a socket drop, an
// overrun) or applied something that was not the bridge's (a duplicate
// or reordered frame, which the bridge never sends, or frames disowned).
// Frames rejected by the receiver never reach it. Entries are keyed by
// StateKey and hold the last netlink message about them.
//
// Events of other network namespaces (a bridge with --all-nsid or --netns:
// frames with frame.FlagNSID) are kept apart, under PeerKey(nsid, StateKey): each
// namespace has its own table within a stream's, and an event of one never
// changes another's entry. The bridge dumps only its own namespace, so a
// resync replaces the bridged namespace's entries and empties the peers':
// a peer's table holds what its events said since the stream's last
// resync (an entry that no event named since is missing, never stale).
// Synced speaks of the bridged namespace's table.
//
// The bridge answers a request to this Mirror alone (PROTOCOL.md,
// Answers). While a stream is out of sync the Mirror keeps a log of the
// live events it applies; when an answer's resync-end arrives, the dump
// replaces the table and the logged events numbered after the dump are
// applied again, in order: live events that overtook the answer on the
// other socket are not lost. Requests back off: the first goes at once,
// each next one after twice the wait before it (RequestEvery, then
// doubling, at most MaxRequestEvery), until the stream is in sync again.
//
// Its memory is bounded (MirrorConfig.MaxEntries, MaxBytes): an entry
// that would pass a bound is refused and its table is out of sync until
// a resync; a resync whose dump passes a bound is given up, and the
// table stays out of sync without asking again, until something else
// (a gap, a restart) calls for a resync.
type Mirror struct {
	r        *Receiver
	every    time.Duration
	maxEvery time.Duration
	ss       []streams.Stream
	maxEnt   int
	maxBytes int

	mu      sync.RWMutex
	tables  map[uint8]*table // by stream ID
	staging map[uint8]*table // a resync in progress
	held    int              // bytes of every table and staging
	synced  map[uint8]bool
	asked   map[uint8]time.Time // last request; zero: none needed
	tries   map[uint8]int       // requests since the stream was last in sync
	waits   map[uint8]*wait     // streams out of sync: live events logged, an answer staged
	changed chan struct{}       // closed and replaced after a change that someone waits for
	watched atomic.Bool         // someone holds changed: close it at the next change

	closed atomic.Bool

	applied, resyncs, requests, refused atomic.Uint64
}

// wait is what a stream out of sync keeps until an answer brings it back:
// the live events applied meanwhile, and the answer being received.
type wait struct {
	log []logged
	// over is set when the log was full: frames up to (overEpoch,
	// overSeq) were applied but not logged, and only an answer dumped
	// after them can be trusted.
	over               bool
	overEpoch, overSeq uint64
	answer             *table
	epoch              uint64 // the answer's
	seq                uint64 // the stream's last number at the answer's dump
}

// logged is one live event applied while out of sync, or frames that
// were lost or not the bridge's (count frames from seq).
type logged struct {
	epoch, seq, count uint64
	key               string
	msg               []byte // nil: a removal, or a gap
	remove            bool
}

// table is one stream's entries and the bytes they hold (keys and
// messages).
type table struct {
	entries map[string][]byte
	bytes   int
}

func newTable() *table { return &table{entries: map[string][]byte{}} }

// MirrorStats counts what a Mirror did and what it holds.
type MirrorStats struct {
	Receiver Stats
	Applied  uint64 // events applied
	Resyncs  uint64 // resyncs applied (one per stream)
	Requests uint64 // resync requests sent
	Refused  uint64 // entries refused, and resyncs given up, at MaxEntries or MaxBytes
	Entries  uint64 // entries of every table now
	Bytes    uint64 // bytes (keys and messages) of every table and resync in progress now
}

// NewMirror joins the streams' raw groups. Call Run to start mirroring.
// Like New, it refuses with a *PortTrustError where the source check
// proves nothing, unless Insecure.
func NewMirror(cfg *MirrorConfig) (*Mirror, error) {
	if cfg == nil {
		cfg = &MirrorConfig{}
	}
	if err := cfg.Validate(); err != nil {
		if cfg.Source != nil {
			cfg.Source.Close()
		}
		return nil, err
	}
	ss := cfg.selected()
	r, err := New(&Config{Streams: ss, Map: cfg.Map, Mcast: cfg.Mcast, Encoding: streams.Raw, KeyFile: cfg.KeyFile, Private: cfg.Private,
		Insecure: cfg.Insecure, BridgeUID: cfg.BridgeUID, NoOwnerCheck: cfg.NoOwnerCheck, Source: cfg.Source})
	if err != nil {
		return nil, err
	}
	if cfg.Source == nil {
		// Requests go out from the namespace the Mirror is made in,
		// whichever thread Run later runs on.
		r.reqMu.Lock()
		err = r.openRequests()
		r.reqMu.Unlock()
		if err != nil {
			r.Close()
			return nil, err
		}
	}
	every := cmp.Or(cfg.RequestEvery, DefaultRequestEvery)
	maxEvery := cmp.Or(cfg.MaxRequestEvery, max(DefaultMaxRequestEvery, every))
	m := &Mirror{
		r: r, every: every, maxEvery: maxEvery, ss: ss, maxEnt: cmp.Or(cfg.MaxEntries, DefaultMaxEntries), maxBytes: cmp.Or(cfg.MaxBytes, DefaultMaxBytes),
		tables: map[uint8]*table{}, staging: map[uint8]*table{},
		synced: map[uint8]bool{}, asked: map[uint8]time.Time{}, tries: map[uint8]int{}, waits: map[uint8]*wait{},
		changed: make(chan struct{}),
	}
	for _, s := range ss {
		m.tables[s.ID] = newTable()
	}
	return m, nil
}

// Close closes the Mirror's receiver and its request socket. A Run in
// progress returns nil. It is safe to call more than once: later calls
// return nil.
func (m *Mirror) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	return m.r.Close()
}

// Receiver returns the Mirror's receiver, for its statistics.
func (m *Mirror) Receiver() *Receiver { return m.r }

// Warnings returns the warnings of the Mirror's receiver (see
// Receiver.Warnings).
func (m *Mirror) Warnings() []string { return m.r.Warnings() }

// Run mirrors until ctx is done, Close is called or the receiver fails.
// It returns nil when ctx or Close ends it, and closes nothing: the
// tables stay readable until Close.
func (m *Mirror) Run(ctx context.Context) error {
	woke := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woke)
		m.r.SetReadDeadline(time.Unix(1, 0)) // wake a pending read
	})
	defer func() {
		if !stop() {
			<-woke // leave no goroutine behind
		}
	}()
	m.mu.Lock()
	for _, s := range m.ss {
		m.asked[s.ID] = time.Time{}
		m.outOfSync(s.ID) // ask at once
	}
	m.mu.Unlock()
	evs := make([]Event, 64)
	for {
		m.request(time.Now())
		m.r.SetReadDeadline(time.Now().Add(m.every / 2))
		if ctx.Err() != nil { // before the deadline above replaced the wake-up
			return nil
		}
		n, err := m.r.ReadBatch(evs)
		if err != nil {
			if ctx.Err() != nil || m.closed.Load() {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return err
		}
		m.mu.Lock()
		for i := range evs[:n] {
			m.apply(&evs[i])
		}
		m.notify()
		m.mu.Unlock()
	}
}

// notify wakes those waiting for a change, after a batch was applied (a
// batch that changed nothing wakes them too: they check again). Without
// waiters it costs nothing. m.mu is held.
func (m *Mirror) notify() {
	if m.watched.Swap(false) {
		close(m.changed)
		m.changed = make(chan struct{})
	}
}

// Changed returns a channel that is closed after the mirror next applies
// what it received: entries set or removed, a table replaced by a resync,
// a stream out of sync. Check the state, then wait on the channel got
// before the check, so that no change is missed.
func (m *Mirror) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.watched.Store(true)
	return m.changed
}

// request sends resync requests for streams out of sync, backing off.
func (m *Mirror) request(now time.Time) {
	m.mu.Lock()
	var due []streams.Stream
	for _, s := range m.ss {
		if t := m.asked[s.ID]; !t.IsZero() && now.Sub(t) >= backoff(m.every, m.maxEvery, m.tries[s.ID]) {
			due = append(due, s)
			m.asked[s.ID] = now
			m.tries[s.ID]++
		}
	}
	m.mu.Unlock()
	if len(due) > 0 {
		m.requests.Add(1)
		_ = m.r.RequestResync(due...) // on failure, asked again after m.every
	}
}

// backoff is the wait before request n+1 of a stream out of sync: none
// before the first, every before the second, then twice the wait
// before, at most most.
func backoff(every, most time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	d := every
	for i := 1; i < n && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

// outOfSync marks a stream as needing a resync. m.mu is held.
func (m *Mirror) outOfSync(id uint8) {
	m.synced[id] = false
	m.dropStaging(id)
	if m.asked[id].IsZero() {
		m.asked[id] = time.Unix(1, 0)
	}
	if m.waits[id] == nil {
		m.waits[id] = &wait{}
	}
}

// inSync marks a stream as in sync: its table is the kernel's. m.mu is
// held.
func (m *Mirror) inSync(id uint8) {
	m.synced[id] = true
	m.asked[id] = time.Time{}
	m.tries[id] = 0
	m.dropWait(id)
	m.resyncs.Add(1)
}

// dropWait forgets what a stream out of sync kept. m.mu is held.
func (m *Mirror) dropWait(id uint8) {
	if w := m.waits[id]; w != nil {
		m.dropAnswer(w)
		m.prune(w, ^uint64(0), 0)
		delete(m.waits, id)
	}
}

// dropAnswer gives up the answer being received. m.mu is held.
func (m *Mirror) dropAnswer(w *wait) {
	if w.answer != nil {
		m.held -= w.answer.bytes
		w.answer = nil
	}
}

// prune forgets the logged entries that a dump of (epoch, seq) covers:
// answers come in the order of their dumps, so no later one needs them.
// m.mu is held.
func (m *Mirror) prune(w *wait, epoch, seq uint64) {
	w.log = slices.DeleteFunc(w.log, func(l logged) bool {
		if l.epoch < epoch || l.epoch == epoch && l.seq+max(l.count, 1)-1 <= seq {
			m.held -= len(l.key) + len(l.msg)
			return true
		}
		return false
	})
	if w.over && (w.overEpoch < epoch || w.overEpoch == epoch && w.overSeq <= seq) {
		w.over = false
	}
}

// disown forgets what was logged of epoch from sequence number from on:
// frames the bridge never sent. m.mu is held.
func (m *Mirror) disown(w *wait, epoch, from uint64) {
	for i := range w.log {
		if l := &w.log[i]; l.epoch == epoch && l.count > 0 && l.seq < from && l.seq+l.count-1 >= from {
			l.count = from - l.seq // the part the bridge sent stays
		}
	}
	w.log = slices.DeleteFunc(w.log, func(l logged) bool {
		if l.epoch != epoch || l.seq < from {
			return false
		}
		m.held -= len(l.key) + len(l.msg)
		return true
	})
	if w.over && w.overEpoch == epoch && w.overSeq >= from {
		w.overSeq = from - 1
	}
}

// note logs a live event of a stream out of sync, or frames lost. m.mu
// is held.
func (m *Mirror) note(w *wait, l logged) {
	size := len(l.key) + len(l.msg)
	if len(w.log) >= m.maxEnt || m.held+size > m.maxBytes {
		// Too much happened meanwhile: remember only up to where.
		m.refused.Add(1)
		last := l.seq + max(l.count, 1) - 1
		if !w.over || l.epoch > w.overEpoch || l.epoch == w.overEpoch && last > w.overSeq {
			w.over, w.overEpoch, w.overSeq = true, l.epoch, last
		}
		return
	}
	if l.msg != nil {
		l.msg = bytes.Clone(l.msg)
	}
	w.log = append(w.log, l)
	m.held += size
}

// dropStaging gives up a resync in progress. m.mu is held.
func (m *Mirror) dropStaging(id uint8) {
	if st := m.staging[id]; st != nil {
		m.held -= st.bytes
		delete(m.staging, id)
	}
}

// set puts msg under key in t, unless that passes a bound. m.mu is held.
func (m *Mirror) set(t *table, key string, msg []byte) bool {
	old, ok := t.entries[key]
	grow := len(msg) - len(old)
	if !ok {
		grow += len(key)
		if len(t.entries) >= m.maxEnt {
			return false
		}
	}
	if m.held+grow > m.maxBytes {
		return false
	}
	t.entries[key] = bytes.Clone(msg)
	t.bytes += grow
	m.held += grow
	return true
}

// remove deletes key from t. m.mu is held.
func (m *Mirror) remove(t *table, key string) {
	if old, ok := t.entries[key]; ok {
		delete(t.entries, key)
		t.bytes -= len(key) + len(old)
		m.held -= len(key) + len(old)
	}
}

// apply updates the tables with one event. m.mu is held.
func (m *Mirror) apply(ev *Event) {
	id := ev.Stream.ID
	if ev.IsNotice() {
		n := &ev.Notice
		switch n.Kind {
		case Gap, FragmentLost, Duplicate, Reordered:
			// Frames lost, or a frame the bridge did not send may have
			// been applied: an answer dumped after them repairs it;
			// one dumped before (to an earlier request, still on its
			// way) cannot.
			m.outOfSync(id)
			m.note(m.waits[id], logged{epoch: n.Epoch, seq: n.From, count: max(n.Count, 1)})
		case Disowned:
			// The bridge never sent these numbers: what was logged
			// under them must not be applied after an answer (whose
			// dump cannot be numbered after them).
			m.outOfSync(id)
			m.disown(m.waits[id], n.Epoch, n.From)
		case Restart, SocketDrops, UpstreamDrops:
			// Numbers start again (an answer of another epoch than
			// the events after it is refused), or the Gap that
			// follows tells which frames were lost.
			m.outOfSync(id)
		case AnswerLost:
			if w := m.waits[id]; w != nil {
				m.dropAnswer(w) // asked again when due
			}
		}
		return
	}
	if ev.Header.Flags&frame.FlagAnswer != 0 {
		m.applyAnswer(id, ev)
		return
	}
	switch ev.Header.Kind {
	case frame.KindOverrun:
		// The bridge resyncs by itself; ask anyway if it does not. Of
		// answers, only one dumped after this frame holds what was
		// lost before it.
		m.outOfSync(id)
		m.note(m.waits[id], logged{epoch: ev.Header.Epoch, seq: ev.Header.Seq, count: 1})
	case frame.KindResyncBegin:
		m.dropStaging(id)
		m.staging[id] = newTable()
	case frame.KindResyncEnd:
		if st, ok := m.staging[id]; ok {
			m.held -= m.tables[id].bytes
			m.tables[id] = st
			delete(m.staging, id)
			m.inSync(id)
		}
	case frame.KindEvent:
		key, remove, ok := mirrorKey(ev)
		if !ok {
			return
		}
		m.applied.Add(1)
		if w := m.waits[id]; w != nil {
			m.note(w, logged{epoch: ev.Header.Epoch, seq: ev.Header.Seq, key: key, msg: ev.Payload, remove: remove})
		}
		if remove {
			m.remove(m.tables[id], key)
			if st := m.staging[id]; st != nil {
				m.remove(st, key)
			}
			return
		}
		if st := m.staging[id]; st != nil && !m.set(st, key, ev.Payload) {
			// The dump does not fit: give it up, and ask no more
			// (a loop of dumps that never fit), until a gap or a
			// restart calls for a resync again.
			m.refused.Add(1)
			m.dropStaging(id)
			m.synced[id] = false
			m.asked[id] = time.Time{}
		}
		if !m.set(m.tables[id], key, ev.Payload) {
			m.refused.Add(1)
			if m.synced[id] && m.staging[id] == nil {
				m.outOfSync(id) // a resync replaces what filled the table
			}
			m.synced[id] = false
		}
	}
}

// mirrorKey is the key of an event's entry: its StateKey, under PeerKey
// when it came from a peer namespace.
func mirrorKey(ev *Event) (key string, remove, ok bool) {
	key, remove, ok = StateKey(ev.Payload)
	if ok && ev.Header.Flags&frame.FlagNSID != 0 {
		key = PeerKey(ev.Header.NSID, key)
	}
	return key, remove, ok
}

// applyAnswer takes one frame of an answer to our request. m.mu is held.
func (m *Mirror) applyAnswer(id uint8, ev *Event) {
	w := m.waits[id]
	if w == nil {
		return // in sync: an answer to an earlier request, not needed
	}
	switch ev.Header.Kind {
	case frame.KindResyncBegin:
		m.dropAnswer(w)
		w.answer, w.epoch, w.seq = newTable(), ev.Header.Epoch, ev.Header.Seq
	case frame.KindEvent:
		key, remove, ok := mirrorKey(ev)
		if !ok || remove || w.answer == nil {
			return
		}
		m.applied.Add(1)
		if !m.set(w.answer, key, ev.Payload) {
			m.refused.Add(1)
			m.dropAnswer(w)
		}
	case frame.KindResyncEnd:
		if w.answer == nil {
			return
		}
		t := w.answer
		w.answer = nil
		if !m.complete(w, t) {
			m.held -= t.bytes
			m.prune(w, w.epoch, w.seq)
			return
		}
		m.held -= m.tables[id].bytes
		m.tables[id] = t
		m.inSync(id)
	}
}

// complete applies to t, an answer's dump of the stream as of its number
// w.seq, the logged live events numbered after it, in order. It reports
// false when the log says that t cannot be made the kernel's table:
// frames after the dump were lost or not the bridge's, or the bridge
// restarted since. m.mu is held.
func (m *Mirror) complete(w *wait, t *table) bool {
	if w.over && (w.overEpoch > w.epoch || w.overEpoch == w.epoch && w.overSeq > w.seq) {
		return false
	}
	var after []logged
	for _, l := range w.log {
		switch {
		case l.epoch > w.epoch:
			return false
		case l.epoch < w.epoch:
			continue // of an earlier run, before the dump
		case l.seq+max(l.count, 1)-1 > w.seq:
			if l.count > 0 {
				return false
			}
			after = append(after, l)
		}
	}
	slices.SortStableFunc(after, func(a, b logged) int { return cmp.Compare(a.seq, b.seq) })
	for _, l := range after {
		if l.remove {
			m.remove(t, l.key)
		} else if !m.set(t, l.key, l.msg) {
			m.refused.Add(1)
			return false
		}
	}
	return true
}

// Synced reports whether the stream's table has been through a resync
// and nothing was missed since.
func (m *Mirror) Synced(s streams.Stream) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.synced[s.ID]
}

// WaitSynced waits until every given stream (none: all mirrored) is
// synced, or ctx is done.
func (m *Mirror) WaitSynced(ctx context.Context, ss ...streams.Stream) error {
	if len(ss) == 0 {
		ss = m.ss
	}
	for {
		ch := m.Changed()
		m.mu.RLock()
		all := true
		for _, s := range ss {
			all = all && m.synced[s.ID]
		}
		m.mu.RUnlock()
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Keys returns the keys of a stream's table, sorted.
func (m *Mirror) Keys(s streams.Stream) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.tables[s.ID]
	if t == nil {
		return nil
	}
	keys := make([]string, 0, len(t.entries))
	for k := range t.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Get returns the last message about an entry.
func (m *Mirror) Get(s streams.Stream, key string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.tables[s.ID]
	if t == nil {
		return nil, false
	}
	b, ok := t.entries[key]
	return b, ok
}

// Len returns the number of entries in a stream's table.
func (m *Mirror) Len(s streams.Stream) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if t := m.tables[s.ID]; t != nil {
		return len(t.entries)
	}
	return 0
}

// Stats returns the Mirror's counters and sizes.
func (m *Mirror) Stats() MirrorStats {
	m.mu.RLock()
	entries, held := 0, m.held
	for _, t := range m.tables {
		entries += len(t.entries)
	}
	m.mu.RUnlock()
	return MirrorStats{
		Receiver: m.r.Stats(), Applied: m.applied.Load(), Resyncs: m.resyncs.Load(), Requests: m.requests.Load(),
		Refused: m.refused.Load(), Entries: uint64(entries), Bytes: uint64(held),
	}
}
