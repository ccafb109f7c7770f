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
)

var noticeNames = [...]string{
	NoNotice: "none", Gap: "gap", Duplicate: "duplicate", Reordered: "reordered", Restart: "restart",
	SocketDrops: "socket-drops", Silent: "silent", FragmentLost: "fragment-lost",
}

func (k NoticeKind) String() string {
	if int(k) < len(noticeNames) {
		return noticeNames[k]
	}
	return fmt.Sprintf("notice-%d", uint8(k))
}

// A Notice reports something the receiver noticed about a stream.
type Notice struct {
	Kind      NoticeKind
	Count     uint64        // Gap: frames missing; SocketDrops: packets dropped
	From      uint64        // Gap: first missing sequence number; Duplicate, Reordered, FragmentLost: the frame's
	Epoch     uint64        // the bridge epoch the notice is about
	PrevEpoch uint64        // Restart: the epoch before
	Silence   time.Duration // Silent: how long nothing has arrived
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
	}
	return n.Kind.String()
}

// tracker follows the sequence numbers of one stream in one encoding.
type tracker struct {
	known  bool
	epoch  uint64
	last   uint64 // highest sequence number accounted for
	window uint64 // bit i set: frame last-i arrived
	heard  time.Time
	silent bool // a Silent notice was made for the current silence
	reasm  frame.Reassembler
}

// observe accounts for a frame with header h (a complete message, for
// fragments). It reports notices in order through note, and whether the
// frame should be delivered (false for duplicates). It is a pure function
// of the tracker's state and h.
func (t *tracker) observe(h *frame.Header, note func(Notice)) bool {
	switch {
	case !t.known:
		// First contact: whatever came before is not ours to miss.
		t.known, t.epoch, t.last, t.window = true, h.Epoch, h.Seq, 1
		return true
	case h.Epoch != t.epoch:
		note(Notice{Kind: Restart, Epoch: h.Epoch, PrevEpoch: t.epoch})
		t.epoch, t.last, t.window = h.Epoch, 0, 1 // as if #0 arrived: #1 is next
		t.reasm = frame.Reassembler{MaxMessage: t.reasm.MaxMessage, Timeout: t.reasm.Timeout}
	}
	if h.Kind == frame.KindHeartbeat || h.Kind == frame.KindGoodbye {
		// Heartbeat and goodbye repeat the last sequence number sent.
		if h.Seq > t.last {
			note(Notice{Kind: Gap, Count: h.Seq - t.last, From: t.last + 1, Epoch: h.Epoch})
			t.advance(h.Seq, false)
		}
		return true
	}
	if h.Seq > t.last {
		if missing := h.Seq - t.last - 1; missing > 0 {
			note(Notice{Kind: Gap, Count: missing, From: t.last + 1, Epoch: h.Epoch})
		}
		t.advance(h.Seq, true)
		return true
	}
	back := t.last - h.Seq
	if back >= 64 || t.window&(1<<back) != 0 {
		note(Notice{Kind: Duplicate, From: h.Seq, Epoch: h.Epoch})
		return false
	}
	t.window |= 1 << back
	note(Notice{Kind: Reordered, From: h.Seq, Epoch: h.Epoch})
	return true
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
