package netlinkbridge

import (
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/keys"
)

// outbox gathers the datagrams of one batch for a single WriteBatch
// (sendmmsg). Its slots are preallocated: a raw frame is its header plus
// the message passed as iovecs (no copy), a JSON frame is encoded into the
// slot's own buffer, reused from batch to batch. With keys, every datagram
// ends with its authentication trailer (a raw frame's in the slot's own
// array, a JSON frame's in its buffer).
type outbox struct {
	sink   Sink
	msgs   []ipv4.Message
	hdrs   [][frame.HeaderLen]byte
	fhdrs  [][frame.FragmentHeaderLen]byte
	trls   [][frame.TrailerLen]byte
	iovs   [][4][]byte
	bufs   [][]byte
	big    []byte // a JSON frame too large for one datagram, before fragmenting
	n      int
	failed func(error)

	flushes uint64 // batches flushed: a mark of an earlier one is stale

	keys   *keys.Store   // nil: frames are not authenticated
	view   *keys.View    // the keys signer was made for
	signer *frame.Signer // nil: frames are not authenticated

	sealings []*sealing // one per key file of sealed streams

	// Hand-off to the relay (relay.go), when a send is slow.
	now      func() time.Time
	bound    time.Duration       // a send slower than this hands sending to the relay; 0: never
	relay    *relay              // nil: not running (no Run, or no hand-off)
	relaying bool                // batches go to the relay
	behind   bool                // the last read took a full batch: netlink has a backlog
	handed   func(time.Duration) // the reader handed sending off after a send this slow
	dropped  func(int)           // the relay's buffer was full: datagrams dropped
	// backlog tells what the source's buffer holds (kernel.Socket.Backlog),
	// for the reader to wait for the relay while there is room; nil: the
	// source cannot tell, and the reader never waits.
	backlog   func() (queued, limit int, err error)
	roomTimer *time.Timer   // waitRoom's, made once
	waitFor   time.Duration // how long a stretch of full relay may be waited for (mayWait)
	waitFrom  time.Time     // the start of the stretch; zero: none yet
	lastFull  time.Time     // the last time the relay was found full

	datagrams, sendErrors, handoffs, handoffDropped atomic.Uint64
}

func (o *outbox) init(sink Sink, slots int, failed func(error), ks *keys.Store) {
	o.sink, o.failed, o.now, o.keys = sink, failed, time.Now, ks
	o.msgs = make([]ipv4.Message, slots)
	o.hdrs = make([][frame.HeaderLen]byte, slots)
	o.fhdrs = make([][frame.FragmentHeaderLen]byte, slots)
	o.iovs = make([][4][]byte, slots)
	o.bufs = make([][]byte, slots)
	if ks != nil {
		o.trls = make([][frame.TrailerLen]byte, slots)
		o.refreshKeys()
	}
}

// A sealing seals the frames of the streams whose readers hold one key
// file (Config.Private): under its signing key, with a Sealer of the
// outbox's own, so that nonces never repeat (frame.Sealer).
type sealing struct {
	keys   *keys.Store
	view   *keys.View
	key    frame.Key
	sealer *frame.Sealer
}

func newSealing(ks *keys.Store) *sealing {
	sl := &sealing{keys: ks}
	sl.refresh()
	return sl
}

// refresh makes a new Sealer when the signing key changed.
func (sl *sealing) refresh() {
	if v := sl.keys.View(); v != sl.view {
		sl.view = v
		if sl.sealer == nil || sl.key != v.Signing {
			sl.key, sl.sealer = v.Signing, frame.NewSealer(v.Signing)
		}
	}
}

// refreshKeys makes a new signer or sealer when a store's keys changed: a
// rotation costs one allocation, the batches in between none.
func (o *outbox) refreshKeys() {
	for _, sl := range o.sealings {
		sl.refresh()
	}
	if o.keys == nil {
		return
	}
	if v := o.keys.View(); v != o.view {
		o.view = v
		if o.signer == nil || o.signer.KeyID() != v.Signing.ID {
			o.signer = frame.NewSigner(v.Signing)
		}
	}
}

// slot returns a free slot, sending the batch first if it is full.
func (o *outbox) slot() int {
	if o.n == len(o.msgs) {
		o.flush()
	}
	i := o.n
	o.n++
	return i
}

// raw adds the raw frame of h and payload for dst, in fragments if it does
// not fit one datagram, sealed if sl is not nil. payload must stay valid
// until the next flush.
func (o *outbox) raw(dst *net.UDPAddr, h frame.Header, payload []byte, sl *sealing) {
	if sl != nil {
		o.sealed(dst, h, payload, sl)
		return
	}
	limit, piece := frame.MaxPayload, frame.MaxPiece
	if o.signer != nil {
		h.Flags |= frame.FlagAuth
		limit -= frame.TrailerLen
		piece -= frame.TrailerLen
	}
	if len(payload) <= limit {
		i := o.slot()
		h.PayloadLen = uint32(len(payload))
		h.Put(o.hdrs[i][:])
		o.iovs[i] = [4][]byte{o.hdrs[i][:], payload}
		o.seal(i, dst, 2)
		return
	}
	h.Kind = frame.KindFragment
	frame.Split(payload, piece, func(f frame.FragmentHeader, piece []byte) {
		i := o.slot()
		h.PayloadLen = uint32(frame.FragmentHeaderLen + len(piece))
		h.Put(o.hdrs[i][:])
		f.Put(o.fhdrs[i][:])
		o.iovs[i] = [4][]byte{o.hdrs[i][:], o.fhdrs[i][:], piece}
		o.seal(i, dst, 3)
	})
}

// rawLimit is the largest payload a raw frame sent by raw with sl carries
// in one datagram.
func (o *outbox) rawLimit(sl *sealing) int {
	switch {
	case sl != nil:
		return frame.MaxPayload - frame.SealedTrailerLen
	case o.signer != nil:
		return frame.MaxPayload - frame.TrailerLen
	}
	return frame.MaxPayload
}

// sealed adds the sealed raw frame of h and payload for dst, in fragments
// if it does not fit one datagram: each datagram is encrypted into its
// slot's own buffer (frame.Sealer).
func (o *outbox) sealed(dst *net.UDPAddr, h frame.Header, payload []byte, sl *sealing) {
	h.Flags = h.Flags&^frame.FlagAuth | frame.FlagSealed
	to := dst.AddrPort()
	if len(payload) <= o.rawLimit(sl) {
		i := o.slot()
		h.PayloadLen = uint32(len(payload))
		h.Put(o.hdrs[i][:])
		o.bufs[i] = sl.sealer.Seal(o.bufs[i][:0], to, o.hdrs[i][:], payload)
		o.whole(i, dst)
		return
	}
	h.Kind = frame.KindFragment
	frame.Split(payload, frame.MaxPiece-frame.SealedTrailerLen, func(f frame.FragmentHeader, piece []byte) {
		i := o.slot()
		h.PayloadLen = uint32(frame.FragmentHeaderLen + len(piece))
		h.Put(o.hdrs[i][:])
		f.Put(o.fhdrs[i][:])
		o.bufs[i] = sl.sealer.Seal(o.bufs[i][:0], to, o.hdrs[i][:], o.fhdrs[i][:], piece)
		o.whole(i, dst)
	})
}

// whole makes slot i's message of the datagram in its buffer, for dst.
func (o *outbox) whole(i int, dst *net.UDPAddr) {
	o.iovs[i] = [4][]byte{o.bufs[i]}
	o.msgs[i] = ipv4.Message{Buffers: o.iovs[i][:1], Addr: dst}
}

// seal completes slot i's raw datagram of n iovecs for dst: with the
// trailer as one more iovec when frames are authenticated.
func (o *outbox) seal(i int, dst *net.UDPAddr, n int) {
	if o.signer != nil {
		o.signer.RawTrailer(&o.trls[i], dst.AddrPort(), o.iovs[i][:n])
		o.iovs[i][n] = o.trls[i][:]
		n++
	}
	o.msgs[i] = ipv4.Message{Buffers: o.iovs[i][:n], Addr: dst}
}

// json adds the JSON frame of h for dst, in fragments if it does not fit
// one datagram, and returns its length. A frame over frame.MaxJSONMessage
// is not sent: receivers would refuse it.
func (o *outbox) json(dst *net.UDPAddr, h frame.Header, stream, summary string, event []byte) int {
	i := o.slot()
	return o.placeJSON(i, dst, h, stream, frame.AppendJSON(o.bufs[i][:0], h, stream, summary, event))
}

// jsonBytes is json for a summary in bytes, as a driver's appendJSON
// writes it.
func (o *outbox) jsonBytes(dst *net.UDPAddr, h frame.Header, stream string, summary, event []byte) int {
	i := o.slot()
	return o.placeJSON(i, dst, h, stream, frame.AppendJSON(o.bufs[i][:0], h, stream, summary, event))
}

// placeJSON completes slot i, whose buffer buf now is: one datagram, or
// fragments, or nothing when buf is too large even for them.
func (o *outbox) placeJSON(i int, dst *net.UDPAddr, h frame.Header, stream string, buf []byte) int {
	o.bufs[i] = buf
	limit := frame.MaxDatagram
	if o.signer != nil {
		limit -= frame.JSONTrailerLen
	}
	if len(buf) <= limit {
		if o.signer != nil {
			buf = o.signer.SealJSON(buf, dst.AddrPort())
			o.bufs[i] = buf
		}
		o.iovs[i] = [4][]byte{buf}
		o.msgs[i] = ipv4.Message{Buffers: o.iovs[i][:1], Addr: dst}
		return len(buf)
	}
	if len(buf) > frame.MaxJSONMessage {
		o.n--
		o.bufs[i] = nil // keep no buffer that large
		return len(buf)
	}
	// Too large: keep the whole frame aside and send it in pieces.
	o.n--
	o.big, o.bufs[i] = buf, o.big
	frame.Split(o.big, frame.JSONMaxPiece, func(f frame.FragmentHeader, piece []byte) {
		j := o.slot()
		o.bufs[j] = frame.AppendJSONFragment(o.bufs[j][:0], h, stream, f, piece)
		if o.signer != nil {
			o.bufs[j] = o.signer.SealJSON(o.bufs[j], dst.AddrPort())
		}
		o.iovs[j] = [4][]byte{o.bufs[j]}
		o.msgs[j] = ipv4.Message{Buffers: o.iovs[j][:1], Addr: dst}
	})
	return len(o.big)
}

// jsonAnswerEnd adds the JSON resync-end of an answer, with count, for
// dst (frame.AppendJSONAnswerEnd).
func (o *outbox) jsonAnswerEnd(dst *net.UDPAddr, h frame.Header, stream, summary string, count uint64) {
	i := o.slot()
	o.bufs[i] = frame.AppendJSONAnswerEnd(o.bufs[i][:0], h, stream, summary, count)
	if o.signer != nil {
		o.bufs[i] = o.signer.SealJSON(o.bufs[i], dst.AddrPort())
	}
	o.iovs[i] = [4][]byte{o.bufs[i]}
	o.msgs[i] = ipv4.Message{Buffers: o.iovs[i][:1], Addr: dst}
}

// flush sends the gathered datagrams, or hands them to the relay while
// sends are slow (relay.go): after a send slower than the bound while the
// reader is behind (its last read filled the batch).
func (o *outbox) flush() {
	if o.n == 0 {
		return
	}
	ms := o.msgs[:o.n]
	if o.relaying && o.relayIdle(o.now()) {
		o.relaying = false // everything handed over is sent: send by ourselves again
		o.waitFrom = time.Time{}
	}
	if o.relaying {
		if lost := o.handOff(ms); lost > 0 {
			o.handoffDropped.Add(uint64(lost))
			o.dropped(lost)
		}
	} else {
		// Only a send while behind can hand off: the others are not
		// timed (two clock reads a batch, more than half the cost of a
		// raw batch of one event on this VM).
		timed := o.behind && o.relay != nil
		var t0 time.Time
		if timed {
			t0 = o.now()
		}
		err := o.sink.WriteBatch(ms)
		if err != nil {
			o.sendErrors.Add(1)
			o.failed(err)
		}
		o.datagrams.Add(uint64(o.n))
		if timed {
			if d := o.now().Sub(t0); d > o.bound {
				o.relaying = true
				o.relay.lastSlow.Store(t0.Add(d).UnixNano())
				o.handoffs.Add(1)
				o.handed(d)
			}
		}
	}
	for i := range o.iovs[:o.n] {
		o.iovs[i] = [4][]byte{} // drop references to the read buffers
		o.msgs[i].Buffers = nil
	}
	o.n = 0
	o.flushes++
	o.refreshKeys()
}

// outboxMark is a place in the outbox: the slots filled, and in which
// batch.
type outboxMark struct {
	flushes uint64
	n       int
}

func (o *outbox) mark() outboxMark { return outboxMark{o.flushes, o.n} }

// discard drops every datagram not flushed.
func (o *outbox) discard() { o.rollback(outboxMark{flushes: o.flushes + 1}) }

// rollback drops the datagrams added since m (recovered: they may be
// partial); those already flushed are gone. The datagrams before m stay,
// to be flushed.
func (o *outbox) rollback(m outboxMark) {
	from := 0
	if m.flushes == o.flushes {
		from = min(m.n, o.n)
	}
	for i := from; i < o.n; i++ {
		o.iovs[i] = [4][]byte{}
		o.msgs[i].Buffers = nil
	}
	o.n = from
}
