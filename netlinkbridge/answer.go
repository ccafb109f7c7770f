package netlinkbridge

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
)

// answerReq is a request to answer: the streams asked for, to one
// requester, in one encoding.
type answerReq struct {
	dst  netip.AddrPort
	json bool
	set  kernel.GroupSet
}

// Answer takes a request from src for the stream on netlink group g (0:
// every stream that can be resynced), to be answered to src alone in the
// JSON encoding if json is set, else raw. It reports whether the request
// is taken: a request for no stream of this bridge, from an address that
// is not the host's own (unless the sender may leave the host), or over
// the token buckets (Config.RequestBurst, ...) is not, and gets no
// answer. Requests from one sender taken while its answer waits are
// answered together. It may be called from any goroutine.
func (b *Bridge) Answer(src netip.AddrPort, g uint32, json bool) bool {
	if g >= 256 || !src.IsValid() || src.Port() == 0 || (!src.Addr().IsLoopback() && !b.allowRemote) {
		b.badRequests.Add(1)
		return false
	}
	set := *b.resyncableNow.Load() // see Request
	if g != 0 {
		if !set.Has(g) {
			b.badRequests.Add(1)
			return false
		}
		set = kernel.GroupSet{}
		set.Add(g)
	}
	b.limitMu.Lock()
	ok := b.limit.allow(src, time.Now())
	b.limitMu.Unlock()
	if !ok {
		b.refused.Add(1)
		if b.rateLimitedShared("refused", 10*time.Second) {
			b.log.Warn("resync requests refused: over the token bucket of their sender or of all senders", "from", src.String(),
				"refused_total", b.refused.Load())
		}
		return false
	}
	b.requestsOK.Add(1)
	b.answerMu.Lock()
	i := 0
	for i < len(b.answerQ) && (b.answerQ[i].dst != src || b.answerQ[i].json != json) {
		i++
	}
	if i == len(b.answerQ) {
		b.answerQ = append(b.answerQ, answerReq{dst: src, json: json})
	}
	b.answerQ[i].set.Union(set)
	b.answerWant.Store(true)
	b.answerMu.Unlock()
	b.wake()
	return true
}

// rateLimitedShared is rateLimited for goroutines other than the loop's.
func (b *Bridge) rateLimitedShared(key string, every time.Duration) bool {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	now := b.logClock()
	if now.Sub(b.sharedLog[key]) < every {
		return false
	}
	if b.sharedLog == nil {
		b.sharedLog = map[string]time.Time{}
	}
	b.sharedLog[key] = now
	return true
}

// answering is the answer being sent: one stream's dump, to every
// requester of it in the round, paced.
type answering struct {
	st    *streamState
	to    []answerTo
	msgs  [][]byte // the dump's messages: the dump socket's until keepAnswer copies them
	kept  bool     // msgs are a copy
	seq   uint64   // the stream's last number at the dump
	next  int      // the next message to send; -1: resync-begin first
	due   time.Time
	round []answerReq // the round's requests, for the streams after this one
}

// answerTo is one requester of an answer.
type answerTo struct {
	dst   *net.UDPAddr
	json  bool
	count uint64 // messages sent
}

// answerChunk is how many messages an answer sends per requester at a
// time; the next chunk is due when the rate allows.
const answerChunk = 256

// answerDue reports whether a new round of answers may start now: some
// wait, none is being sent, and no overrun waits for the netlink socket to
// be drained (an answer waits then, for the reason a resync does: see
// housekeep).
func (b *Bridge) answerDue() bool {
	return b.answerWant.Load() && b.cur == nil && (!b.overrunSent || b.drained)
}

// answer sends what is due of the answers. It runs on the event loop,
// between reads, like a resync, taking the waiting requests as a round:
// one stream after the other, one dump of each serving every requester
// of it. The frames of an answer carry the stream's last number at its
// dump; kernel events read while it is sent go on the stream with larger
// numbers. An answer is sent at most answerRate datagrams a second to
// each requester: sent at once, a table of 100,000 routes would overflow
// any receive buffer.
func (b *Bridge) answer(now time.Time) {
	for {
		if b.cur == nil && b.answerDue() {
			b.answerMu.Lock()
			q := b.answerQ
			b.answerQ = nil
			b.answerWant.Store(false)
			b.answerMu.Unlock()
			b.startAnswer(q, 0)
		}
		if b.cur == nil || now.Before(b.cur.due) {
			return
		}
		b.pump(now)
	}
}

// startAnswer dumps the first stream from index i of b.streams that a
// request of round asks for, and makes it the answer being sent.
func (b *Bridge) startAnswer(round []answerReq, i int) {
	if b.dump == nil {
		return
	}
	for ; i < len(b.streams); i++ {
		st := b.streams[i]
		g := st.stream.Group
		var to []answerTo
		for _, r := range round {
			switch {
			case !r.set.Has(g):
			case r.json && st.seal != nil:
				// Sealed frames are raw: a JSON reader could not read
				// them, and JSON in the clear would unseal the stream.
				b.badRequests.Add(1)
				if b.rateLimited("json-answer-sealed", time.Minute) {
					b.log.Warn("a JSON answer was asked for a sealed stream, which is raw only; not answered",
						"stream", st.stream.Name, "requester", r.dst.String())
				}
			default:
				to = append(to, answerTo{dst: net.UDPAddrFromAddrPort(r.dst), json: r.json})
			}
		}
		req, ok := kernel.DumpFor(g)
		if len(to) == 0 || !ok {
			continue
		}
		msgs, err := b.dumpTable(req, true)
		if err != nil {
			if b.dumpFailures.Add(1); b.rateLimited("dump "+st.stream.Name, 10*time.Second) {
				b.log.Warn("answer: dump failed; requesters not answered", "stream", st.stream.Name, "err", err, "dump_failures_total", b.dumpFailures.Load())
			}
			continue
		}
		b.cur = &answering{st: st, to: to, msgs: msgs, seq: st.seq, next: -1, round: round}
		b.curIndex = i
		return
	}
}

// pump sends the next chunk of the answer being sent, and ends it with
// resync-end after its last message.
func (b *Bridge) pump(now time.Time) {
	a := b.cur
	st := a.st
	// Stamped as it is sent, as every frame: an answer paced over seconds
	// (a large table, a busy host) must not turn stale on its way, which
	// receivers would refuse (PROTOCOL.md, Trusting a frame).
	h := frame.Header{Family: st.stream.Family, Group: st.stream.Group, Epoch: b.epoch, Seq: a.seq, Time: now.UnixNano()}
	if a.next < 0 {
		h.Kind, h.Flags = frame.KindResyncBegin, frame.FlagAnswer
		for _, to := range a.to {
			if to.json {
				b.out.json(to.dst, h, st.stream.Name, controlSummary[frame.KindResyncBegin], nil)
			} else {
				b.out.raw(to.dst, h, nil, st.seal)
			}
		}
		a.next = 0
	}
	end := min(a.next+answerChunk, len(a.msgs))
	h.Kind, h.Flags = frame.KindEvent, frame.FlagAnswer|frame.FlagDump
	b.stamp(&h)
	for _, data := range a.msgs[a.next:end] {
		if len(data) > frame.MaxRawMessage {
			continue // as for events: receivers reassemble nothing larger
		}
		h.PayloadLen = uint32(len(data))
		var d decodedOnce
		for i := range a.to {
			to := &a.to[i]
			if !to.json {
				b.out.raw(to.dst, h, data, st.seal)
				to.count++
				continue
			}
			ev := d.get(b, st, data)
			if n := b.out.json(to.dst, h, st.stream.Name, ev.Summary, ev.Event); n > frame.MaxJSONMessage {
				b.jsonTooLarge.Add(1) // not sent, nor counted
				continue
			}
			to.count++
		}
	}
	sent := end - a.next
	a.next = end
	if a.next == len(a.msgs) {
		h.Kind, h.Flags, h.PayloadLen = frame.KindResyncEnd, frame.FlagAnswer, 0
		for _, to := range a.to {
			if to.json {
				b.out.jsonAnswerEnd(to.dst, h, st.stream.Name, controlSummary[frame.KindResyncEnd], to.count)
			} else {
				b.out.raw(to.dst, h, binary.BigEndian.AppendUint64(make([]byte, 0, frame.AnswerEndLen), to.count), st.seal)
			}
		}
		b.out.flush()
		b.answers.Add(uint64(len(a.to)))
		b.cur = nil
		b.startAnswer(a.round, b.curIndex+1)
		return
	}
	b.out.flush()
	a.due = now.Add(time.Duration(sent) * time.Second / time.Duration(b.answerRate))
}

// keepAnswer copies the messages of the answer being sent, before a dump
// reuses the buffer they are in.
func (b *Bridge) keepAnswer() {
	if a := b.cur; a != nil && !a.kept {
		msgs := make([][]byte, len(a.msgs))
		for i, m := range a.msgs[max(a.next, 0):] {
			msgs[max(a.next, 0)+i] = bytes.Clone(m)
		}
		a.msgs, a.kept = msgs, true
	}
}

// decodedOnce decodes a message for JSON the first time it is needed.
type decodedOnce struct {
	done bool
	d    decode.Result
}

func (d *decodedOnce) get(b *Bridge, st *streamState, data []byte) decode.Result {
	if !d.done {
		m := kernel.Message{Group: st.stream.Group, Data: data}
		b.handle(data)
		d.d, d.done = b.fam.decode(b, &m), true
		b.handling = nil
	}
	return d.d
}
