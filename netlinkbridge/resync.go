package netlinkbridge

import (
	"errors"
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
		then := "; receivers are told and a resync follows"
		if b.dump == nil || b.resyncable.Empty() {
			then = "; receivers are told (these streams have no resync)"
		}
		b.log.Warn("kernel events lost: "+err.Error()+then+" (a larger --read-buffer makes this rarer)",
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
	// go: the loop publishes that set whole when it changes (SetStreams).
	set := *b.resyncableNow.Load()
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
	start := time.Now()
	defer func() { b.resyncTime.Add(int64(time.Since(start))) }()
	b.keepAnswer() // its messages would not outlive the next dump
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
			if b.dumpFailures.Add(1); b.rateLimited("dump "+st.stream.Name, 10*time.Second) {
				b.log.Warn("resync: dump failed; stream not resynced", "stream", st.stream.Name, "err", err, "dump_failures_total", b.dumpFailures.Load())
			}
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
			if b.rateLimited("dump interrupted", 10*time.Second) {
				b.log.Warn("resync: dump kept being interrupted by changes; another resync follows", "type", req.Type)
			}
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
