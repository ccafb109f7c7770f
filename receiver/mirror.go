package receiver

import (
	"bytes"
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
type Mirror struct {
	r     *Receiver
	every time.Duration
	ss    []streams.Stream

	mu      sync.RWMutex
	tables  map[uint8]map[string][]byte // by stream ID
	staging map[uint8]map[string][]byte // a resync in progress
	synced  map[uint8]bool
	asked   map[uint8]time.Time // last request; zero: none needed
	changed chan struct{}       // closed and replaced on every resync end

	closed atomic.Bool

	applied, resyncs, requests atomic.Uint64
}

// MirrorStats counts what a Mirror did.
type MirrorStats struct {
	Receiver Stats
	Applied  uint64 // events applied
	Resyncs  uint64 // resyncs applied (one per stream)
	Requests uint64 // resync requests sent
}

// NewMirror joins the streams' raw groups. Call Run to start mirroring.
func NewMirror(cfg *MirrorConfig) (*Mirror, error) {
	if cfg == nil {
		cfg = &MirrorConfig{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ss := cfg.Streams
	if len(ss) == 0 {
		for _, s := range streams.All() {
			if s.Resync {
				ss = append(ss, s)
			}
		}
	}
	r, err := New(&Config{Streams: ss, Map: cfg.Map, Mcast: cfg.Mcast, Encoding: streams.Raw})
	if err != nil {
		return nil, err
	}
	// Requests go out from the namespace the Mirror is made in, whichever
	// thread Run later runs on.
	r.reqMu.Lock()
	err = r.openRequests()
	r.reqMu.Unlock()
	if err != nil {
		r.Close()
		return nil, err
	}
	every := cfg.RequestEvery
	if every == 0 {
		every = DefaultRequestEvery
	}
	m := &Mirror{
		r: r, every: every, ss: ss,
		tables: map[uint8]map[string][]byte{}, staging: map[uint8]map[string][]byte{},
		synced: map[uint8]bool{}, asked: map[uint8]time.Time{}, changed: make(chan struct{}),
	}
	for _, s := range ss {
		m.tables[s.ID] = map[string][]byte{}
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
		m.asked[s.ID] = time.Unix(1, 0) // out of sync: ask at once
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
		m.mu.Unlock()
	}
}

// request sends resync requests for streams out of sync, paced.
func (m *Mirror) request(now time.Time) {
	m.mu.Lock()
	var due []streams.Stream
	for _, s := range m.ss {
		if t := m.asked[s.ID]; !t.IsZero() && now.Sub(t) >= m.every {
			due = append(due, s)
			m.asked[s.ID] = now
		}
	}
	m.mu.Unlock()
	if len(due) > 0 {
		m.requests.Add(1)
		_ = m.r.RequestResync(due...) // on failure, asked again after m.every
	}
}

// outOfSync marks a stream as needing a resync. m.mu is held.
func (m *Mirror) outOfSync(id uint8) {
	m.synced[id] = false
	delete(m.staging, id)
	if m.asked[id].IsZero() {
		m.asked[id] = time.Unix(1, 0)
	}
}

// apply updates the tables with one event. m.mu is held.
func (m *Mirror) apply(ev *Event) {
	id := ev.Stream.ID
	if ev.IsNotice() {
		switch ev.Notice.Kind {
		case Gap, Restart, FragmentLost, SocketDrops:
			m.outOfSync(id)
		case Duplicate, Reordered, Disowned:
			// A frame the bridge did not send may have been
			// applied: only a resync can say what is right.
			m.outOfSync(id)
		}
		return
	}
	switch ev.Header.Kind {
	case frame.KindOverrun:
		// The bridge resyncs by itself; ask anyway if it does not.
		m.outOfSync(id)
	case frame.KindResyncBegin:
		m.staging[id] = map[string][]byte{}
	case frame.KindResyncEnd:
		if st, ok := m.staging[id]; ok {
			m.tables[id] = st
			delete(m.staging, id)
			m.synced[id] = true
			m.asked[id] = time.Time{}
			m.resyncs.Add(1)
			close(m.changed)
			m.changed = make(chan struct{})
		}
	case frame.KindEvent:
		key, remove, ok := StateKey(ev.Payload)
		if !ok {
			return
		}
		m.applied.Add(1)
		for _, t := range []map[string][]byte{m.tables[id], m.staging[id]} {
			if t == nil {
				continue
			}
			if remove {
				delete(t, key)
			} else {
				t[key] = bytes.Clone(ev.Payload)
			}
		}
	}
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
		m.mu.RLock()
		all := true
		for _, s := range ss {
			all = all && m.synced[s.ID]
		}
		ch := m.changed
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
	keys := make([]string, 0, len(m.tables[s.ID]))
	for k := range m.tables[s.ID] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Get returns the last message about an entry.
func (m *Mirror) Get(s streams.Stream, key string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.tables[s.ID][key]
	return b, ok
}

// Len returns the number of entries in a stream's table.
func (m *Mirror) Len(s streams.Stream) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.tables[s.ID])
}

// Stats returns the Mirror's counters.
func (m *Mirror) Stats() MirrorStats {
	return MirrorStats{Receiver: m.r.Stats(), Applied: m.applied.Load(), Resyncs: m.resyncs.Load(), Requests: m.requests.Load()}
}
