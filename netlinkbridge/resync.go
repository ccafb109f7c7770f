package netlinkbridge

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/mcast"
)

// maxDumpTries bounds how often an interrupted dump (NLM_F_DUMP_INTR) is
// started again before its answer is used as it is and another resync is
// scheduled.
const maxDumpTries = 4

// overrun handles a netlink ENOBUFS: some events are lost, on any stream.
// Every stream gets one OVERRUN frame per lost stretch, and every stream
// that can be resynced is scheduled for the next resync.
func (b *Bridge) overrun(now time.Time, err error) {
	b.drained = false
	if !b.overrunSent {
		b.overrunSent = true
		b.overruns.Add(1)
		for _, st := range b.streams {
			b.control(st, frame.KindOverrun, now)
		}
		b.out.flush()
	}
	b.pending.Union(b.resyncable)
	if b.rateLimited("overrun", time.Second) {
		b.log.Warn("kernel events lost: "+err.Error()+"; receivers are told and a resync follows (a larger --read-buffer makes this rarer)",
			"overruns_total", b.src.Stats().Overruns, "oversized_total", b.src.Stats().Oversized)
	}
}

// Request asks for a resync of the stream on netlink group g, or of every
// stream if g is 0, sent on the streams to every receiver, as after an
// overrun. It may be called from any goroutine; requests are coalesced and
// rate-limited (Config.ResyncInterval). Request frames from receivers are
// answered to their sender alone instead (Answer).
func (b *Bridge) Request(g uint32) {
	if g >= 256 {
		return
	}
	// Only the resyncable set is read here, never byGroup or a stream's
	// group, which the loop changes as generic netlink families come and
	// go: that set is fixed by New.
	set := b.resyncable
	if g != 0 {
		if !set.Has(g) {
			return
		}
		set = kernel.GroupSet{}
		set.Add(g)
	}
	for i := range set {
		if set[i] != 0 {
			b.requested[i].Or(set[i])
		}
	}
	b.wake()
}

func (b *Bridge) requestedAny() bool {
	for i := range b.requested {
		if b.requested[i].Load() != 0 {
			return true
		}
	}
	return false
}

// resync dumps the pending streams' tables and sends each, bracketed by
// RESYNC-BEGIN and RESYNC-END. It runs on the event loop, between reads:
// kernel events that happen meanwhile wait in the netlink socket and are
// sent after RESYNC-END, so that a receiver applying them to the dump ends
// with the kernel's state.
func (b *Bridge) resync(now time.Time) {
	set := b.pending
	b.pending = kernel.GroupSet{}
	b.lastResync = now
	b.overrunSent = false
	if b.dump == nil {
		return
	}
	b.resyncs.Add(1)
	for _, st := range b.streams {
		g := st.stream.Group
		if !set.Has(g) {
			continue
		}
		req, ok := kernel.DumpFor(g)
		if !ok {
			continue
		}
		msgs, err := b.dumpTable(req, false)
		if err != nil {
			b.dumpFailures.Add(1)
			b.log.Warn("resync: dump failed; stream not resynced", "stream", st.stream.Name, "err", err)
			continue
		}
		t := time.Now()
		b.control(st, frame.KindResyncBegin, t)
		for _, m := range msgs {
			b.event(&kernel.Message{Group: g, Data: m}, t.UnixNano(), frame.FlagDump)
		}
		b.control(st, frame.KindResyncEnd, t)
		b.out.flush() // msgs are valid only until the next dump
	}
}

// errInterrupted is returned by dumpTable for an answer whose dump kept
// being interrupted: the requester is not answered, and asks again.
var errInterrupted = errors.New("dump kept being interrupted by changes")

// dumpTable dumps one table, again if the kernel says it changed
// meanwhile. For a multicast resync (answer false) a dump still
// interrupted after maxDumpTries is used, and another resync scheduled;
// for an answer it is not.
func (b *Bridge) dumpTable(req kernel.DumpRequest, answer bool) ([][]byte, error) {
	for try := 1; ; try++ {
		msgs, interrupted, err := b.dump.Dump(req)
		if err != nil || !interrupted {
			return msgs, err
		}
		if try == maxDumpTries && answer {
			return nil, errInterrupted
		}
		if try == maxDumpTries {
			// Use it: later events correct it, and another resync
			// follows to be sure.
			for _, st := range b.streams {
				if d, ok := kernel.DumpFor(st.stream.Group); ok && d == req {
					b.pending.Add(st.stream.Group)
				}
			}
			b.log.Warn("resync: dump kept being interrupted by changes; another resync follows", "type", req.Type)
			return msgs, nil
		}
	}
}

// serveRequests reads request frames from the control group until Run
// sets requestStop and wakes it with a read deadline.
func (b *Bridge) serveRequests() {
	defer b.requestWG.Done()
	ds := make([]mcast.Datagram, 16)
	for {
		n, err := b.requests.ReadBatch(ds)
		if b.requestStop.Load() {
			return
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			b.log.Warn("resync requests: read failed; requests are off", "err", err)
			return
		}
		for _, d := range ds[:n] {
			h, _, err := frame.Parse(d.Data)
			if err != nil || h.Kind != frame.KindRequest || h.Family != 0 {
				b.badRequests.Add(1)
				continue
			}
			b.Answer(d.Source, h.Group, h.Flags&frame.FlagJSON != 0)
		}
	}
}

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
// answer. It may be called from any goroutine.
func (b *Bridge) Answer(src netip.AddrPort, g uint32, json bool) bool {
	if g >= 256 || !src.IsValid() || src.Port() == 0 || (!src.Addr().IsLoopback() && !b.allowRemote) {
		b.badRequests.Add(1)
		return false
	}
	set := b.resyncable // fixed by New: see Request
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

// answerDue reports whether answers wait and may be sent now: not after
// an overrun until a read found the netlink socket empty, for the reason
// a resync waits (see housekeep).
func (b *Bridge) answerDue() bool {
	return b.answerWant.Load() && (!b.overrunSent || b.drained)
}

// rateLimitedShared is rateLimited for goroutines other than the loop's.
func (b *Bridge) rateLimitedShared(key string, every time.Duration) bool {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	now := time.Now()
	if now.Sub(b.sharedLog[key]) < every {
		return false
	}
	if b.sharedLog == nil {
		b.sharedLog = map[string]time.Time{}
	}
	b.sharedLog[key] = now
	return true
}

// answer sends the queued answers. It runs on the event loop, between
// reads, like a resync: the frames of each answer carry the stream's last
// number at its dump, and kernel events that happen meanwhile are sent on
// the stream after it with larger numbers. One dump of a table serves
// every requester of it.
func (b *Bridge) answer() {
	b.answerMu.Lock()
	q := b.answerQ
	b.answerQ = nil
	b.answerWant.Store(false)
	b.answerMu.Unlock()
	if b.dump == nil {
		return
	}
	dsts := make([]*net.UDPAddr, len(q))
	for i := range q {
		dsts[i] = net.UDPAddrFromAddrPort(q[i].dst)
	}
	for _, st := range b.streams {
		g := st.stream.Group
		want := false
		for i := range q {
			want = want || q[i].set.Has(g)
		}
		req, ok := kernel.DumpFor(g)
		if !want || !ok {
			continue
		}
		msgs, err := b.dumpTable(req, true)
		if err != nil {
			b.dumpFailures.Add(1)
			b.log.Warn("answer: dump failed; requesters not answered", "stream", st.stream.Name, "err", err)
			continue
		}
		t := time.Now()
		for i := range q {
			if q[i].set.Has(g) {
				b.answerTo(st, dsts[i], q[i].json, msgs, t)
			}
		}
	}
}

// answerTo sends one stream's dump to dst: resync-begin, one event per
// message, resync-end with their count, every frame flagged FlagAnswer
// and numbered with the stream's last number. It flushes: msgs are valid
// only until the next dump.
func (b *Bridge) answerTo(st *streamState, dst *net.UDPAddr, json bool, msgs [][]byte, t time.Time) {
	h := frame.Header{Kind: frame.KindResyncBegin, Flags: frame.FlagAnswer, Family: st.stream.Family, Group: st.stream.Group,
		Epoch: b.epoch, Seq: st.seq, Time: t.UnixNano()}
	if json {
		b.out.json(dst, h, st.stream.Name, controlSummary[frame.KindResyncBegin], nil)
	} else {
		b.out.raw(dst, h, nil)
	}
	h.Kind, h.Flags = frame.KindEvent, frame.FlagAnswer|frame.FlagDump
	n := uint64(0)
	for _, data := range msgs {
		if len(data) > frame.MaxRawMessage {
			continue // as event: receivers reassemble nothing larger
		}
		n++
		h.PayloadLen = uint32(len(data))
		if !json {
			b.out.raw(dst, h, data)
			continue
		}
		m := kernel.Message{Group: st.stream.Group, Data: data}
		d := b.fam.decode(b, &m)
		if l := b.out.json(dst, h, st.stream.Name, d.Summary, d.Event); l > frame.MaxJSONMessage {
			n-- // not sent: the requester's count must match
			b.jsonTooLarge.Add(1)
		}
	}
	h.Kind, h.Flags, h.PayloadLen = frame.KindResyncEnd, frame.FlagAnswer, 0
	if json {
		b.out.jsonAnswerEnd(dst, h, st.stream.Name, controlSummary[frame.KindResyncEnd], n)
	} else {
		b.out.raw(dst, h, binary.BigEndian.AppendUint64(make([]byte, 0, frame.AnswerEndLen), n))
	}
	b.out.flush()
	b.answers.Add(1)
}
