package frame

import (
	"encoding/binary"
	"errors"
	"time"
)

// A message too large for one datagram is sent as Count frames of kind
// KindFragment, in order, all with the message's sequence number, time and
// flags. Each fragment's payload opens with a FragmentHeader:
//
//	offset size field
//	0      4    total length of the message in bytes
//	4      4    offset of this piece in the message
//	8      2    index of this fragment, 0 .. count-1
//	10     2    count of fragments
//	12     ...  the piece
//
// Big-endian like the frame header.
type FragmentHeader struct {
	Total  uint32 `json:"total"`
	Offset uint32 `json:"offset"`
	Index  uint16 `json:"index"`
	Count  uint16 `json:"count"`
}

// FragmentHeaderLen is the size of a FragmentHeader on the wire.
const FragmentHeaderLen = 12

// MaxPiece is the largest piece of a message one raw fragment carries.
const MaxPiece = MaxPayload - FragmentHeaderLen

// ErrFragment is returned for a fragment whose header does not add up.
var ErrFragment = errors.New("frame: malformed fragment")

// Put writes f into b[:FragmentHeaderLen].
func (f *FragmentHeader) Put(b []byte) {
	_ = b[FragmentHeaderLen-1]
	binary.BigEndian.PutUint32(b[0:], f.Total)
	binary.BigEndian.PutUint32(b[4:], f.Offset)
	binary.BigEndian.PutUint16(b[8:], f.Index)
	binary.BigEndian.PutUint16(b[10:], f.Count)
}

// ParseFragment splits a fragment frame's payload into its header and piece,
// and checks that they are consistent: index below count, piece within the
// total. It never allocates.
func ParseFragment(payload []byte) (FragmentHeader, []byte, error) {
	var f FragmentHeader
	if len(payload) < FragmentHeaderLen {
		return f, nil, ErrFragment
	}
	f.Total = binary.BigEndian.Uint32(payload[0:])
	f.Offset = binary.BigEndian.Uint32(payload[4:])
	f.Index = binary.BigEndian.Uint16(payload[8:])
	f.Count = binary.BigEndian.Uint16(payload[10:])
	piece := payload[FragmentHeaderLen:]
	if err := f.check(len(piece)); err != nil {
		return f, nil, err
	}
	return f, piece, nil
}

func (f *FragmentHeader) check(n int) error {
	if f.Count == 0 || f.Index >= f.Count || uint64(f.Offset)+uint64(n) > uint64(f.Total) {
		return ErrFragment
	}
	return nil
}

// Split calls emit for each fragment of msg, pieces of at most piece bytes
// (MaxPiece for raw frames). It returns the number of fragments, or 0 if msg
// would need more than 65,535.
func Split(msg []byte, piece int, emit func(FragmentHeader, []byte)) int {
	if piece <= 0 {
		return 0
	}
	count := (len(msg) + piece - 1) / piece
	if count == 0 || count > 0xffff || uint64(len(msg)) > 0xffffffff {
		return 0
	}
	for i := 0; i < count; i++ {
		off := i * piece
		end := min(off+piece, len(msg))
		emit(FragmentHeader{Total: uint32(len(msg)), Offset: uint32(off), Index: uint16(i), Count: uint16(count)}, msg[off:end])
	}
	return count
}

// The largest messages a bridge sends, by encoding; receivers reassemble
// nothing larger.
const (
	// MaxRawMessage is the largest netlink message a bridge reads, and so
	// sends: the kernel package reads one netlink datagram of up to 64 KiB
	// plus a 1 MiB spill buffer (kernel.MaxDatagram), a dump's messages
	// into 256 KiB. Beyond that the kernel's message is lost as an overrun.
	MaxRawMessage = 64<<10 + 1<<20
	// MaxJSONMessage is the largest JSON frame a bridge sends. The JSON
	// view of a message is larger than the message (hex, names), so a
	// bridge drops a JSON frame over this size, counts and logs it: JSON
	// receivers see a gap; the raw frame is sent.
	MaxJSONMessage = 4 << 20
)

// Reassembler rebuilds the messages of one stream from their fragments. The
// bridge sends a message's fragments back to back, so a Reassembler holds at
// most one partial message: a fragment of another message abandons it.
//
// Its memory is bounded by MaxMessage and follows what arrives: the buffer
// grows with the pieces received (a piece may land at most one datagram
// beyond them, so that two swapped fragments still join), not with the
// total a first fragment declares; and a buffer above 128 KiB is released
// once its message completes, is abandoned or expires. The zero value is
// ready to use.
type Reassembler struct {
	// MaxMessage is the largest message accepted, in bytes: a larger one
	// is refused (ErrFragmentTooLarge) and reported lost like any other
	// incomplete message. Zero: DefaultMaxMessage.
	MaxMessage int
	// Timeout is how long a partial message waits for its missing
	// fragments. Zero: DefaultFragmentTimeout.
	Timeout time.Duration

	active bool
	dead   error // non-nil: the partial message is lost for this reason; its pieces are dropped
	epoch  uint64
	seq    uint64
	flags  Flags
	f      FragmentHeader // Total and Count of the partial message
	got    int            // bytes received
	piece  int            // length of every piece but the last; 0: not known yet
	seen   []uint64       // bitmap of fragment indexes received
	nseen  int
	start  time.Time
	buf    []byte // the message so far; its length is the furthest end written
}

// Defaults of Reassembler. DefaultMaxMessage admits a message of either
// encoding; a receiver of one encoding can use that encoding's maximum.
const (
	DefaultMaxMessage      = MaxJSONMessage
	DefaultFragmentTimeout = 2 * time.Second
)

const (
	// keepBuffer is the largest buffer kept for the next message: one
	// of a fragmented message's usual size (the kernel's largest route,
	// 65,552 bytes) is reused, not allocated again.
	keepBuffer = 128 << 10
	// reorderSlack is how far beyond the bytes received a piece may end.
	reorderSlack = MaxPayload
)

// Errors of Reassembler.Add besides ErrFragment.
var (
	ErrFragmentTooLarge = errors.New("frame: fragmented message larger than the reassembly limit")
	ErrFragmentMismatch = errors.New("frame: fragment disagrees with the others of its message")
	ErrFragmentDup      = errors.New("frame: duplicate fragment")
	ErrFragmentOrder    = errors.New("frame: fragment too far ahead of those received")
)

// Add takes one fragment frame: its header and its payload (FragmentHeader
// and piece). When the fragment completes its message, Add returns the
// message, which is valid until the next call, and true. abandoned reports
// that a partial message was given up for this one: it can never complete,
// and its sequence number is lost. Add never panics on any input.
//
// A fragment that makes its message impossible to complete (too large, or
// too far ahead of the others) returns an error and leaves the message
// pending with no buffer: its other fragments are dropped with the same
// error, and it is abandoned or expires like any incomplete message.
func (r *Reassembler) Add(h Header, payload []byte, now time.Time) (msg []byte, complete, abandoned bool, err error) {
	f, piece, err := ParseFragment(payload)
	if err != nil {
		return nil, false, false, err
	}
	return r.AddPiece(h, f, piece, now)
}

// AddPiece is Add for a fragment already split into header and piece, as a
// JSON fragment frame carries them.
func (r *Reassembler) AddPiece(h Header, f FragmentHeader, piece []byte, now time.Time) (msg []byte, complete, abandoned bool, err error) {
	if err := f.check(len(piece)); err != nil {
		return nil, false, false, err
	}
	if r.active && (r.epoch != h.Epoch || r.seq != h.Seq) {
		r.end()
		abandoned = true
	}
	if !r.active {
		r.begin(h, f, now)
	} else if r.dead == nil && (f.Total != r.f.Total || f.Count != r.f.Count || h.Flags != r.flags) {
		return nil, false, abandoned, ErrFragmentMismatch
	}
	if r.dead != nil {
		return nil, false, abandoned, r.dead
	}
	if !r.placed(f, len(piece)) {
		return nil, false, abandoned, ErrFragmentMismatch
	}
	word, bit := f.Index/64, uint64(1)<<(f.Index%64)
	if r.seen[word]&bit != 0 {
		return nil, false, abandoned, ErrFragmentDup
	}
	if end := int(f.Offset) + len(piece); end > len(r.buf) {
		// Grow with what arrives: a forged first fragment that declares
		// a large total, or lands far out, costs the forger the bytes.
		if end > r.got+len(piece)+reorderSlack {
			r.kill(ErrFragmentOrder)
			return nil, false, abandoned, ErrFragmentOrder
		}
		r.grow(end)
	}
	r.seen[word] |= bit
	r.nseen++
	copy(r.buf[f.Offset:], piece)
	r.got += len(piece)
	if r.nseen < int(r.f.Count) {
		return nil, false, abandoned, nil
	}
	msg = r.buf
	r.end()
	if r.got != int(r.f.Total) || len(msg) != int(r.f.Total) {
		// Cannot happen given placed; kept as a last line of defence.
		return nil, false, abandoned, ErrFragmentMismatch
	}
	return msg, true, abandoned, nil
}

// grow makes the buffer end bytes long, keeping its contents. Capacity at
// least doubles, but never beyond the message's total.
func (r *Reassembler) grow(end int) {
	if end <= cap(r.buf) {
		r.buf = r.buf[:end]
		return
	}
	b := make([]byte, end, min(int(r.f.Total), max(end, 2*cap(r.buf))))
	copy(b, r.buf)
	r.buf = b
}

// kill gives up the partial message for reason: it stays pending, holding
// no buffer, until abandoned or expired, and its pieces are dropped.
func (r *Reassembler) kill(reason error) {
	r.dead = reason
	r.release()
}

// end closes the partial message, whatever its state.
func (r *Reassembler) end() {
	r.active, r.dead = false, nil
	r.release()
}

// release drops a buffer too large to keep for the next message.
func (r *Reassembler) release() {
	if cap(r.buf) > keepBuffer {
		r.buf = nil
	}
	r.buf = r.buf[:0]
}

// placed checks the layout rule: every piece but the last has the same
// length P and fragment i starts at i*P; the last piece ends the message.
// With every index present, the pieces then cover the message exactly.
func (r *Reassembler) placed(f FragmentHeader, n int) bool {
	last := f.Index == f.Count-1
	if last && uint64(f.Offset)+uint64(n) != uint64(f.Total) {
		return false
	}
	if f.Index == 0 {
		if f.Offset != 0 || (!last && n == 0) {
			return false
		}
		if last {
			return true
		}
		return r.setPiece(n)
	}
	if last {
		if f.Offset%uint32(f.Index) != 0 || f.Offset == 0 {
			return false
		}
		return r.setPiece(int(f.Offset / uint32(f.Index)))
	}
	return n > 0 && uint64(f.Offset) == uint64(f.Index)*uint64(n) && r.setPiece(n)
}

func (r *Reassembler) setPiece(p int) bool {
	if r.piece == 0 {
		r.piece = p
	}
	return r.piece == p
}

func (r *Reassembler) begin(h Header, f FragmentHeader, now time.Time) {
	r.active, r.dead, r.epoch, r.seq, r.flags, r.f, r.got, r.nseen, r.start, r.piece = true, nil, h.Epoch, h.Seq, h.Flags, f, 0, 0, now, 0
	r.buf = r.buf[:0]
	limit := r.MaxMessage
	if limit <= 0 {
		limit = DefaultMaxMessage
	}
	if uint64(f.Total) > uint64(limit) {
		r.kill(ErrFragmentTooLarge)
		return
	}
	words := (int(f.Count) + 63) / 64 // at most 1,024: 8 KiB
	if cap(r.seen) < words {
		r.seen = make([]uint64, words)
	}
	r.seen = r.seen[:words]
	clear(r.seen)
}

// Expire gives up a partial message older than the timeout and reports
// whether it did, with the sequence number it had.
func (r *Reassembler) Expire(now time.Time) (seq uint64, expired bool) {
	t := r.Timeout
	if t <= 0 {
		t = DefaultFragmentTimeout
	}
	if r.active && now.Sub(r.start) >= t {
		r.end()
		return r.seq, true
	}
	return 0, false
}

// Seq returns the sequence number of the partial message, if any.
func (r *Reassembler) Seq() uint64 {
	if !r.active {
		return 0
	}
	return r.seq
}

// Pending reports whether a partial message is waiting for fragments.
func (r *Reassembler) Pending() bool { return r.active }

// Held returns the bytes of buffers the Reassembler holds.
func (r *Reassembler) Held() int { return cap(r.buf) + 8*cap(r.seen) }

// Reset gives up the partial message, if any, without reporting it, and
// releases a large buffer.
func (r *Reassembler) Reset() { r.end() }
