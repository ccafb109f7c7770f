package netlinkbridge

import (
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/nlmcast/nlmcast/frame"
)

// Failure isolation. A panic in a bridge's loop (a family's decoder, its
// driver's observe, framing, a resync, an answer, housekeeping) is
// recovered in that bridge alone: the bridges of a Set run on their own
// goroutines, and each recovers its own, so the other families go on with
// their epochs and numbering untouched.
//
// The bridge that panicked restarts, as far as receivers can tell, without
// reopening anything: the state a panic may have left half-changed is the
// loop's (sequence numbers, the outbox, the answer being sent), and that is
// what it starts again. It drops the message being handled (logged in hex),
// sends what the outbox held complete from before it, takes a new epoch
// with numbering from 1, and announces it at once with a heartbeat
// numbered 0 on every stream. Receivers hold that heartbeat (a larger
// epoch without a goodbye, PROTOCOL.md, Trusting a frame) and take the
// restart with the next frame, which continues it: no event of the new
// epoch is lost. A goodbye is not sent first: it would tell receivers that
// the bridge's socket is closing, and a receiver without keys then
// delivers nothing more until another socket holds the address, while
// this one stays open.
//
// In forward's two passes (raw frames, then JSON, for a batch that is no
// backlog) the restart waits for the end of the batch, which goes out in
// the old epoch without the message that panicked (panicLater).
//
// Messages that panic again each cost their own message and a restart; a
// panic while restarting is not recovered (the sender itself is broken)
// and ends the process.

// maxPanicHex is how much of a message that panicked is logged.
const maxPanicHex = 4096

// handle notes the message being handled and where its frames begin, for
// recovered. It costs two stores.
func (b *Bridge) handle(data []byte) {
	b.handling, b.mark = data, b.out.mark()
}

// recovered restarts the bridge after a panic r in its loop (see above).
// It runs on the loop's goroutine, in the deferred function that
// recovered r.
func (b *Bridge) recovered(r any) {
	msg := b.handling
	b.handling = nil
	if msg != nil {
		b.out.rollback(b.mark) // its frames may be partial
	} else {
		b.out.discard() // nothing to blame: what is not flushed may be partial
	}
	b.restart(r, msg, debug.Stack())
}

// restart takes the bridge to a new epoch after the panic r, whose
// message msg (nil: none) was dropped, and logs it with stack. What the
// outbox holds is complete frames of the old epoch.
func (b *Bridge) restart(r any, msg, stack []byte) {
	total := b.panics.Add(1)
	clear(b.jsonLater) // numbered in the old epoch
	b.jsonLater, b.late = b.jsonLater[:0], nil
	b.out.flush() // complete frames of the old epoch
	b.cur = nil   // the answer being sent: its requesters ask again
	old := b.epoch
	now := time.Now()
	b.epoch = freshEpoch(nextEpoch(old, now))
	b.epochNow.Store(b.epoch)
	for _, st := range b.streams {
		st.seq = 0
		b.control(st, frame.KindHeartbeat, now) // numbered 0: announces the epoch
	}
	b.out.flush()
	if b.heartbeat > 0 {
		b.nextHeartbeat = now.Add(b.heartbeat)
	}
	if b.rateLimited("panic", time.Second) {
		args := []any{
			"panic", fmt.Sprint(r), "panics_total", total,
			"old_epoch", fmt.Sprintf("%016x", old), "epoch", fmt.Sprintf("%016x", b.epoch),
		}
		if msg != nil {
			args = append(args, "message_bytes", len(msg), "message_hex", hex.EncodeToString(msg[:min(len(msg), maxPanicHex)]))
		}
		args = append(args, "stack", string(stack))
		b.log.Error("panic recovered; this family's bridge restarts with a new epoch (its message dropped), the others go on", args...)
	}
}

// nextEpoch returns a new epoch for a bridge restarting at now, larger
// than old even within the same millisecond or after the clock was set
// back: receivers take a larger epoch as a restart and reject a smaller
// one as a replay.
func nextEpoch(old uint64, now time.Time) uint64 {
	if ms := int64(old >> frame.EpochRandomBits); now.UnixMilli() <= ms {
		now = time.UnixMilli(ms + 1)
	}
	return frame.NewEpoch(now)
}

// lastEpoch is the largest epoch a bridge of this process has taken.
var lastEpoch atomic.Uint64

// freshEpoch returns e, or, if a bridge of this process already took an
// epoch as large (a bridge made in the same millisecond as another's
// restart, whose epoch is not random below the next millisecond), the
// next epoch above that one: every bridge a process makes, or restarts,
// takes a larger epoch than all before it, so that receivers take it as a
// restart, never as a replay of an old one.
func freshEpoch(e uint64) uint64 {
	for {
		last := lastEpoch.Load()
		if e <= last {
			e = nextEpoch(last, time.UnixMilli(int64(last>>frame.EpochRandomBits)))
		}
		if lastEpoch.CompareAndSwap(last, e) {
			return e
		}
	}
}
