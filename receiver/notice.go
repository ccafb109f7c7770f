package receiver

import (
	"fmt"
	"time"

	"github.com/nlmcast/nlmcast/frame"
)

// NoticeKind says what a Notice reports.
type NoticeKind uint8

// Notice kinds. The receiver makes notices itself, from what it sees of the
// frames; they are never on the wire.
const (
	// NoNotice marks an Event that carries a frame.
	NoNotice NoticeKind = iota
	// Gap: Count frames, from sequence number From, never arrived. Lost
	// events mean a local copy of the kernel's state may be stale: ask
	// for a resync (Receiver.RequestResync), as Mirror does.
	Gap
	// Duplicate: a frame arrived a second time (or too late to tell); the
	// copy was dropped.
	Duplicate
	// Reordered: a frame arrived after a later one. It is delivered; it
	// was already counted in a Gap.
	Reordered
	// Restart: the bridge restarted (a new epoch, PrevEpoch before). Its
	// sequence numbers start again at 1.
	Restart
	// SocketDrops: this receiver's socket buffer for the stream was full
	// and the kernel dropped Count packets (SO_RXQ_OVFL; a run of frames
	// read coalesced counts once, and the Gap that follows tells how many
	// frames). Read faster, or raise the buffer
	// (mcast.ReceiverConfig.ReadBuffer).
	SocketDrops
	// Silent: nothing, not even a heartbeat, arrived on the stream for
	// Silence: the bridge is stopped, stalled, or cannot reach us.
	Silent
	// FragmentLost: a message sent in fragments could not be completed
	// (a fragment never came, or in time). Its sequence number shows up
	// in a Gap as well.
	FragmentLost
	// Rejected: the frame From of epoch Epoch was dropped as not the
	// bridge's, for Reason: too old or ahead of this host's clock, of an
	// older epoch, a heartbeat far behind, or held for a jump or a new
	// epoch that the next frame did not continue. Nothing of it was
	// delivered or counted in a gap.
	Rejected
	// Disowned: frames From to From+Count-1, delivered earlier, were not
	// the bridge's: its heartbeat says it never sent them, or a first
	// frame was followed by another epoch or numbering. State built from
	// them is wrong: resync, as Mirror does.
	Disowned
	// AnswerLost: an answer to this receiver's request (RequestResync)
	// came incomplete: Count of its dump messages were lost (0 when that
	// is unknown: its resync-begin or resync-end went missing, or the
	// request socket dropped datagrams). Its resync-end is not
	// delivered: what came of it is not the whole table. Ask again.
	AnswerLost
	// Sealed: the stream is private, and its frames come sealed under a
	// key this receiver was not given (Config.Private): none of them can
	// be read. The first sealed frame of the stream brings one, From its
	// sequence number; Stats.Sealed counts them all.
	Sealed
	// UpstreamDrops: Count frames of the stream were dropped on their way
	// to this receiver, before its Source got them (package fleet: the
	// host's publisher held more than its buffer while NATS was
	// unreachable, and an overrun marker took their place). The Gap that
	// follows tells which; the publisher asks the bridge for a resync.
	UpstreamDrops
)

var noticeNames = [...]string{
	NoNotice: "none", Gap: "gap", Duplicate: "duplicate", Reordered: "reordered", Restart: "restart",
	SocketDrops: "socket-drops", Silent: "silent", FragmentLost: "fragment-lost", Rejected: "rejected",
	Disowned: "disowned", AnswerLost: "answer-lost", Sealed: "sealed", UpstreamDrops: "upstream-drops",
}

func (k NoticeKind) String() string {
	if int(k) < len(noticeNames) {
		return noticeNames[k]
	}
	return fmt.Sprintf("notice-%d", uint8(k))
}

// RejectReason says why a frame was Rejected.
type RejectReason uint8

// Reasons to reject a frame (PROTOCOL.md, Trusting a frame).
const (
	NoReason RejectReason = iota
	// Stale: the first frame of a stream, or a frame of another epoch, is
	// more than MaxAge older than this host's clock.
	Stale
	// Future: the frame's time is more than MaxAhead after this host's
	// clock.
	Future
	// OldEpoch: the frame's epoch is older than the stream's.
	OldEpoch
	// Unconfirmed: the frame jumped more than MaxJump ahead, or came
	// with a new epoch, and was held; the next frame did not continue it.
	Unconfirmed
	// Behind: a heartbeat or goodbye more than MaxJump below the last
	// sequence number.
	Behind
)

var reasonNames = [...]string{NoReason: "none", Stale: "stale", Future: "future", OldEpoch: "old-epoch",
	Unconfirmed: "unconfirmed", Behind: "behind"}

func (r RejectReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// A Notice reports something the receiver noticed about a stream.
type Notice struct {
	Kind      NoticeKind
	Count     uint64        // Gap: frames missing; SocketDrops: packets dropped; UpstreamDrops: frames dropped; Disowned: frames disowned
	From      uint64        // Gap, Disowned: first sequence number; Duplicate, Reordered, FragmentLost, Rejected: the frame's
	Epoch     uint64        // the bridge epoch the notice is about
	PrevEpoch uint64        // Restart: the epoch before
	Silence   time.Duration // Silent: how long nothing has arrived
	Reason    RejectReason  // Rejected: why
}

// String describes the notice in one line.
func (n Notice) String() string {
	switch n.Kind {
	case Gap:
		if n.Count == 1 {
			return fmt.Sprintf("gap: frame #%d lost", n.From)
		}
		return fmt.Sprintf("gap: %d frames lost (#%d to #%d)", n.Count, n.From, n.From+n.Count-1)
	case Duplicate:
		return fmt.Sprintf("duplicate frame #%d dropped", n.From)
	case Reordered:
		return fmt.Sprintf("frame #%d arrived late (reordered)", n.From)
	case Restart:
		return fmt.Sprintf("bridge restarted: epoch %016x, was %016x", n.Epoch, n.PrevEpoch)
	case SocketDrops:
		return fmt.Sprintf("receive buffer overflow: %d datagrams dropped by the kernel", n.Count)
	case Silent:
		return fmt.Sprintf("bridge silent for %.1fs", n.Silence.Seconds())
	case FragmentLost:
		return fmt.Sprintf("fragmented message #%d incomplete, dropped", n.From)
	case Rejected:
		return fmt.Sprintf("rejected (%s): frame #%d of epoch %016x", n.Reason, n.From, n.Epoch)
	case Disowned:
		if n.Count == 1 {
			return fmt.Sprintf("disowned: frame #%d was not the bridge's", n.From)
		}
		return fmt.Sprintf("disowned: frames #%d to #%d were not the bridge's", n.From, n.From+n.Count-1)
	case AnswerLost:
		if n.Count == 0 {
			return "answer to our resync request incomplete, dropped"
		}
		return fmt.Sprintf("answer to our resync request incomplete: %d dump messages lost", n.Count)
	case UpstreamDrops:
		return fmt.Sprintf("lost upstream: %d frames dropped on their way here (a publisher's buffer overflowed)", n.Count)
	case Sealed:
		return "a private stream: its frames are sealed, and this receiver has no key for it (give its key file: --private STREAM=KEYFILE)"
	}
	return n.Kind.String()
}

// Bounds of the rules that keep a frame that is not the bridge's from
// blinding a tracker or restarting it (PROTOCOL.md, Trusting a frame).
const (
	// MaxJump is the furthest a frame may jump ahead of the last sequence
	// number and be taken at once: the reorder window, so that every
	// frame such a jump skips is still delivered if it comes. A frame
	// further ahead is held until the next one continues it.
	MaxJump = 64
	// MaxAge is how much older than this host's clock the first frame of
	// a stream, or a frame of another epoch, may be: the bridge stamps a
	// frame as it sends it, and a receiver may be busy or descheduled for
	// a while. A frame replayed later than this is stale.
	MaxAge = 5 * time.Second
	// MaxAhead is how much later than this host's clock any frame's time
	// may be. Bridge and receiver share the clock: only a clock set back
	// while a frame is in flight makes one legitimately ahead.
	MaxAhead = time.Second
)

// tracker follows the sequence numbers of one stream in one encoding.
type tracker struct {
	sealedNoted bool // a Sealed notice was given
	known       bool
	sure        bool // a second frame fitted the first one: the epoch and numbering are the bridge's
	ended       bool // a goodbye came: a larger epoch is the bridge's restart
	epoch       uint64
	last        uint64 // highest sequence number accounted for
	window      uint64 // bit i set: frame last-i arrived
	lastAt      int64  // when a frame of the epoch was last taken, unix ns

	// A frame held for a jump or another epoch: the next frame confirms
	// it or not.
	held      bool
	heldHB    bool // a heartbeat or goodbye: it takes no number of its own
	heldEpoch uint64
	heldSeq   uint64

	heard  time.Time
	first  bool // a frame came, or the stream was left (Receiver.Heard)
	silent bool // a Silent notice was made for the current silence
	reasm  frame.Reassembler
}

// observe accounts for a frame with header h (a complete message, for
// fragments) read at now (unix ns). It reports notices in order through
// note, and whether the frame should be delivered (false for duplicates
// and for frames held or rejected). It is a pure function of the
// tracker's state, h and now.
func (t *tracker) observe(h *frame.Header, now int64, note func(Notice)) bool {
	if h.Time > now+int64(MaxAhead) {
		t.reject(h, Future, note)
		return false
	}
	if !t.known {
		// First contact: whatever came before is not ours to miss.
		if h.Time < now-int64(MaxAge) {
			t.reject(h, Stale, note)
			return false
		}
		t.known, t.epoch, t.last, t.window, t.lastAt = true, h.Epoch, h.Seq, 1, now
		t.ended = h.Kind == frame.KindGoodbye // a bridge stopping: its restart is next
		return true
	}
	if h.Epoch != t.epoch {
		switch {
		case t.sure && h.Epoch < t.epoch && now-t.lastAt < int64(MaxAge):
			// A replay. (An older epoch after MaxAge of silence is a
			// bridge restarted with its clock set back: no frame of
			// an earlier run is that fresh.)
			t.reject(h, OldEpoch, note)
			return false
		case h.Time < now-int64(MaxAge):
			t.reject(h, Stale, note)
			return false
		case t.ended && h.Epoch > t.epoch:
			t.dropHeld(note)
			t.restart(h.Epoch, note)
		case t.held && t.continues(h):
			t.adopt(note)
		default:
			t.hold(h, note)
			return false
		}
	} else if t.held {
		if t.continues(h) {
			t.adopt(note)
		} else {
			t.dropHeld(note)
		}
	}
	return t.sequence(h, now, note)
}

// sequence accounts for a frame of the tracker's epoch.
func (t *tracker) sequence(h *frame.Header, now int64, note func(Notice)) bool {
	if h.Seq > t.last && h.Seq-t.last > MaxJump || !t.sure && h.Seq < t.last && t.last-h.Seq > MaxJump {
		// Far ahead, or far behind an unconfirmed first frame: one
		// frame must not move the numbering that far by itself.
		t.hold(h, note)
		return false
	}
	if isBeat(h) {
		// Heartbeat and goodbye repeat the last sequence number sent.
		switch {
		case h.Seq > t.last:
			note(Notice{Kind: Gap, Count: h.Seq - t.last, From: t.last + 1, Epoch: h.Epoch})
			t.advance(h.Seq, false)
		case h.Seq < t.last:
			// The bridge never sent what we took above h.Seq.
			back := t.last - h.Seq
			if back > MaxJump {
				t.reject(h, Behind, note)
				return false
			}
			note(Notice{Kind: Disowned, Count: back, From: h.Seq + 1, Epoch: h.Epoch})
			t.last, t.window = h.Seq, t.window>>back
		}
		t.ended = h.Kind == frame.KindGoodbye
		t.sure, t.lastAt = true, now
		return true
	}
	if h.Seq > t.last {
		if missing := h.Seq - t.last - 1; missing > 0 {
			note(Notice{Kind: Gap, Count: missing, From: t.last + 1, Epoch: h.Epoch})
		}
		t.advance(h.Seq, true)
	} else {
		back := t.last - h.Seq
		if back >= 64 || t.window&(1<<back) != 0 {
			note(Notice{Kind: Duplicate, From: h.Seq, Epoch: h.Epoch})
			return false
		}
		t.window |= 1 << back
		note(Notice{Kind: Reordered, From: h.Seq, Epoch: h.Epoch})
	}
	t.ended = false
	t.sure, t.lastAt = true, now
	return true
}

// isBeat reports whether h is a heartbeat or goodbye, which repeat the
// last sequence number instead of taking one.
func isBeat(h *frame.Header) bool {
	return h.Kind == frame.KindHeartbeat || h.Kind == frame.KindGoodbye
}

// continues reports whether h continues the held frame: same epoch, and a
// number from the held one's (a heartbeat or goodbye) or above it, within
// MaxJump.
func (t *tracker) continues(h *frame.Header) bool {
	if h.Epoch != t.heldEpoch || h.Seq < t.heldSeq || h.Seq-t.heldSeq > MaxJump {
		return false
	}
	return h.Seq > t.heldSeq || isBeat(h)
}

// hold keeps h's place until the next frame says whether it was the
// bridge's; a frame held before is rejected.
func (t *tracker) hold(h *frame.Header, note func(Notice)) {
	t.dropHeld(note)
	t.held, t.heldHB, t.heldEpoch, t.heldSeq = true, isBeat(h), h.Epoch, h.Seq
}

// dropHeld rejects the held frame, if any: the next frame did not
// continue it.
func (t *tracker) dropHeld(note func(Notice)) {
	if t.held {
		t.held = false
		note(Notice{Kind: Rejected, Reason: Unconfirmed, From: t.heldSeq, Epoch: t.heldEpoch})
	}
}

// adopt takes the held frame as the bridge's: the next frame continued
// it. It was not delivered, so it counts in the gap up to it.
func (t *tracker) adopt(note func(Notice)) {
	switch {
	case !t.sure && (t.heldEpoch < t.epoch || t.heldEpoch == t.epoch && t.heldSeq < t.last):
		// What follows the first frame is older than it: the first
		// frame was not the bridge's. Start again from the held frame.
		note(Notice{Kind: Disowned, Count: 1, From: t.last, Epoch: t.epoch})
		if t.heldEpoch != t.epoch {
			t.resetReassembly()
		}
		t.epoch, t.last, t.window = t.heldEpoch, t.heldSeq, 0
		if !t.heldHB {
			t.last-- // the held frame itself is lost
		}
	case t.heldEpoch != t.epoch:
		t.restart(t.heldEpoch, note)
	}
	if t.heldSeq != t.last {
		note(Notice{Kind: Gap, Count: t.heldSeq - t.last, From: t.last + 1, Epoch: t.epoch})
		t.advance(t.heldSeq, false)
	}
	t.held, t.sure = false, true
}

// restart moves to a new epoch of the bridge, numbered from 1.
func (t *tracker) restart(epoch uint64, note func(Notice)) {
	note(Notice{Kind: Restart, Epoch: epoch, PrevEpoch: t.epoch})
	t.epoch, t.last, t.window, t.ended = epoch, 0, 1, false // as if #0 arrived: #1 is next
	t.resetReassembly()
}

// resetReassembly drops a partial message: it was of another epoch.
func (t *tracker) resetReassembly() {
	t.reasm = frame.Reassembler{MaxMessage: t.reasm.MaxMessage, Timeout: t.reasm.Timeout}
}

// reject reports a frame dropped as not the bridge's.
func (t *tracker) reject(h *frame.Header, why RejectReason, note func(Notice)) {
	note(Notice{Kind: Rejected, Reason: why, From: h.Seq, Epoch: h.Epoch})
}

// advance moves the window up to seq, marking seq received or not.
func (t *tracker) advance(seq uint64, got bool) {
	shift := seq - t.last
	if shift >= 64 {
		t.window = 0
	} else {
		t.window <<= shift
	}
	if got {
		t.window |= 1
	}
	t.last = seq
}
