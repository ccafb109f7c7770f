package netlinkbridge

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// The relay takes sending off the netlink reader's thread, only while
// sending is slow.
//
// The reader sends each batch itself (outbox.flush): no thread hand-off,
// no copy, the latency of a plain relay. But the kernel charges the sender
// for delivering every datagram to every socket joined to its group, read
// or not, so thousands of such sockets make each send slow, and a reader
// that sends cannot read: its netlink socket would overrun, and every
// receiver would lose events and wait for a resync. So when one batch's
// send takes longer than Config.HandoffAfter while the reader is behind
// (its last read took a whole batch: the kernel had more queued), the reader
// hands the next batches to the relay instead: it copies their datagrams into a buffer
// and goes back to reading at once, while a goroutine of the relay sends
// them. When that buffer is full, the reader waits for the relay to take
// it while the kernel's buffer has room (more than a quarter of it and
// 2 MiB free: the source's Backlog, looked at again every relayRecheck),
// for 2 s at most in a stretch of full relay (mayWait): the kernel holds
// the events meanwhile, as it would for a reader that sends by itself, and
// a burst that a few busy receivers slow down costs latency, not events.
// Past that, or with a source that cannot tell, the datagrams that do not
// fit are dropped, counted and logged: receivers see a gap in the sequence
// numbers, which PROTOCOL.md already promises to announce; the netlink
// socket does not overrun for slow sends. Once the relay is empty and no
// send has been slow for relayHold, the reader sends by itself again.
//
// Two buffers take turns: the reader fills one while the relay sends the
// other, so neither waits for the other but for the swap. They are made on
// the first hand-off and kept.

// relayBytes is the most datagram bytes the relay holds in each buffer; a
// datagram that does not fit waits or is dropped (handOff), as one beyond
// an outbox's batch does (newRelayBuf). What the relay holds, receivers
// wait for, and its sends are slow: so it holds little, two batches at
// most (with 2,000 sockets on a group, 256 datagrams take 0.14 s to send).
const relayBytes = 1 << 20

// relayHold is how long sends must have been fast before the reader sends
// by itself again.
const relayHold = time.Second

// relayBuf holds datagrams copied for the relay.
type relayBuf struct {
	data []byte // the datagrams' bytes, one after the other
	msgs []ipv4.Message
	iovs [][1][]byte
	ends []int // end offset of each datagram in data
}

func newRelayBuf(slots int) *relayBuf {
	return &relayBuf{
		data: make([]byte, 0, relayBytes), msgs: make([]ipv4.Message, 0, slots),
		iovs: make([][1][]byte, slots), ends: make([]int, 0, slots),
	}
}

// add copies the datagram of m into r, or reports that it does not fit.
func (r *relayBuf) add(m *ipv4.Message) bool {
	size := 0
	for _, b := range m.Buffers {
		size += len(b)
	}
	if len(r.data)+size > cap(r.data) || len(r.msgs) == cap(r.msgs) {
		return false
	}
	for _, b := range m.Buffers {
		r.data = append(r.data, b...)
	}
	r.ends = append(r.ends, len(r.data))
	r.msgs = append(r.msgs, ipv4.Message{Addr: m.Addr})
	return true
}

func (r *relayBuf) reset() {
	for i := range r.msgs {
		r.msgs[i] = ipv4.Message{}
		r.iovs[i] = [1][]byte{}
	}
	r.data, r.msgs, r.ends = r.data[:0], r.msgs[:0], r.ends[:0]
}

// relay is the sending goroutine's side, and the state both sides share.
type relay struct {
	sink      Sink
	chunk     int           // datagrams per WriteBatch, as many as the outbox sends at once
	bound     time.Duration // a send slower than this is slow
	now       func() time.Time
	wake      chan struct{} // the reader filled something
	room      chan struct{} // the goroutine took what the reader had filled (a swap)
	done      chan struct{} // closed by stop: send what is left and return
	exited    chan struct{}
	lastSlow  atomic.Int64 // unix nanoseconds of the last slow send
	errs      func(error)  // a failed WriteBatch (its goroutine's own rate limit)
	mu        sync.Mutex
	filling   *relayBuf // the reader's
	sending   *relayBuf // the relay goroutine's
	busy      bool      // the goroutine is sending
	sent      *atomic.Uint64
	sendErrs  *atomic.Uint64
	lastError time.Time // of errs, rate-limited; the goroutine's
	onIdle    func()    // tests: called when the relay has sent everything
}

// run sends what the reader hands over until done is closed, then what is
// left.
func (r *relay) run() {
	defer close(r.exited)
	for {
		select {
		case <-r.wake:
		case <-r.done:
			for r.sendOnce() {
			}
			return
		}
		for r.sendOnce() {
		}
	}
}

// sendOnce swaps the buffers and sends what the reader had filled; false
// when there was nothing.
func (r *relay) sendOnce() bool {
	r.mu.Lock()
	if r.filling == nil || len(r.filling.msgs) == 0 {
		r.busy = false
		r.mu.Unlock()
		if r.onIdle != nil {
			r.onIdle()
		}
		return false
	}
	r.filling, r.sending = r.sending, r.filling
	r.busy = true
	r.mu.Unlock()
	select {
	case r.room <- struct{}{}:
	default: // no one waits, or already told
	}
	s := r.sending
	start := 0
	for i := range s.msgs {
		s.iovs[i][0] = s.data[start:s.ends[i]]
		s.msgs[i].Buffers = s.iovs[i][:]
		start = s.ends[i]
	}
	for off := 0; off < len(s.msgs); off += r.chunk {
		ms := s.msgs[off:min(off+r.chunk, len(s.msgs))]
		t0 := r.now()
		err := r.sink.WriteBatch(ms)
		if d := r.now().Sub(t0); d > r.bound {
			r.lastSlow.Store(t0.Add(d).UnixNano())
		}
		if err != nil {
			r.sendErrs.Add(1)
			if now := r.now(); now.Sub(r.lastError) >= time.Second {
				r.lastError = now
				r.errs(err)
			}
		}
		r.sent.Add(uint64(len(ms)))
	}
	s.reset()
	return true
}

// stop makes run send what is left, and waits for it.
func (r *relay) stop() {
	close(r.done)
	<-r.exited
}

// startRelay starts the relay goroutine for o. It stays blocked, costing
// nothing, until the outbox hands it something.
func (o *outbox) startRelay(bound time.Duration, errs func(error)) {
	r := &relay{
		sink: o.sink, chunk: len(o.msgs), bound: bound, now: o.now,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{}),
		errs: errs, sent: &o.datagrams, sendErrs: &o.sendErrors,
	}
	o.relay = r
	go r.run()
}

// stopRelay sends what the relay holds and stops its goroutine; the reader
// sends by itself again.
func (o *outbox) stopRelay() {
	if o.relay == nil {
		return
	}
	o.relay.stop()
	o.relay, o.relaying, o.waitFrom = nil, false, time.Time{}
}

// handOff copies the batch into the relay's buffer and wakes the relay.
// When the buffer is full it waits for the relay to take it as long as
// the kernel's buffer has room (mayWait); it drops what does not fit
// otherwise, and returns how many datagrams it dropped.
func (o *outbox) handOff(ms []ipv4.Message) int {
	r := o.relay
	r.mu.Lock()
	if r.filling == nil {
		r.filling, r.sending = newRelayBuf(len(o.msgs)), newRelayBuf(len(o.msgs))
	}
	lost, wait := 0, true
next:
	for i := range ms {
		for !r.filling.add(&ms[i]) {
			empty := len(r.filling.msgs) == 0 // too large for any buffer
			r.mu.Unlock()
			if empty || !wait || !o.mayWait() {
				// Only the reader drains the source: its answer holds
				// for the rest of the batch.
				wait = wait && empty
				r.mu.Lock()
				lost++
				continue next
			}
			r.kick()
			o.waitRoom(r)
			r.mu.Lock()
		}
	}
	r.mu.Unlock()
	r.kick()
	return lost
}

// kick wakes the relay goroutine, if it is not awake already.
func (r *relay) kick() {
	select {
	case r.wake <- struct{}{}:
	default: // already woken
	}
}

// mayWait reports whether the reader may wait for the full relay: the
// source's buffer has more than a quarter of its room free, and more than
// relayHeadroom, and the relay has not been full for o.waitFor already. A
// stretch of full relay starts when it is found full more than o.waitFor
// after the last time: sends that stay slow under a steady load get drops
// once o.waitFor has passed, a burst after a quiet spell its own wait. A
// source that cannot tell, or fails to, gets no wait.
func (o *outbox) mayWait() bool {
	if o.backlog == nil {
		return false
	}
	now := o.now()
	if o.waitFrom.IsZero() || now.Sub(o.lastFull) > o.waitFor {
		o.waitFrom = now
	}
	o.lastFull = now
	if now.Sub(o.waitFrom) >= o.waitFor {
		return false
	}
	queued, limit, err := o.backlog()
	return err == nil && limit-queued > max(limit/4, relayHeadroom)
}

const (
	// relayRecheck is how long the reader waits for the relay before it
	// looks at the source's buffer again.
	relayRecheck = time.Millisecond
	// relayHeadroom is the least free room in the source's buffer that
	// the reader leaves when it waits: at the kernel's peak rate (200,000
	// events/s here, about 830 bytes of buffer each) 2 MiB lasts 12 ms,
	// twelve rechecks. A smaller buffer (no CAP_NET_ADMIN to force the
	// default 8 MiB, or a small --read-buffer) gets no wait.
	relayHeadroom = 2 << 20
	// relayWaitFor bounds a stretch of waiting (mayWait), or two
	// heartbeat intervals if that is shorter (a wait holds heartbeats
	// back, and receivers take three missed ones for a stalled bridge): a
	// burst is delivered late, but sends slow for longer than that
	// (thousands of sockets that never read) get drops at once again, so
	// that the source's buffer is kept near empty, its whole room left for
	// the reader's other stalls (a resync's dump, a collection).
	relayWaitFor = 2 * time.Second
)

// waitRoom waits until r swapped its buffers, or for relayRecheck at most.
func (o *outbox) waitRoom(r *relay) {
	if o.roomTimer == nil {
		o.roomTimer = time.NewTimer(relayRecheck)
	} else {
		o.roomTimer.Reset(relayRecheck)
	}
	select {
	case <-r.room:
		o.roomTimer.Stop()
	case <-o.roomTimer.C:
	}
}

// relayIdle reports whether the relay has nothing left to send and no send
// has been slow for relayHold: the reader may send by itself again, after
// everything it handed over.
func (o *outbox) relayIdle(now time.Time) bool {
	r := o.relay
	if now.UnixNano()-r.lastSlow.Load() < int64(relayHold) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.busy && (r.filling == nil || len(r.filling.msgs) == 0)
}
