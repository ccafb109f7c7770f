package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// Magic opens every raw frame.
	Magic = "NLMC"
	// Version is the protocol version this package writes and reads.
	Version = 1
	// HeaderLen is the size of a version 1 header.
	HeaderLen = 48
	// MaxDatagram is the largest UDP payload IPv4 can carry.
	MaxDatagram = 65507
	// MaxPayload is the largest payload one raw frame can carry.
	MaxPayload = MaxDatagram - HeaderLen
)

// Field offsets, fixed so that a classic BPF filter can match on them. A
// filter on a UDP socket sees the UDP header first: add 8 (PROTOCOL.md).
const (
	OffMagic      = 0
	OffVersion    = 4
	OffKind       = 5
	OffFlags      = 6
	OffHeaderLen  = 8
	OffFamily     = 10
	OffGroup      = 12
	OffEpoch      = 16
	OffSeq        = 24
	OffTime       = 32
	OffPayloadLen = 40
	OffNSID       = 44
)

// Kind says what a frame carries.
type Kind uint8

// Frame kinds. Event, Overrun, ResyncBegin and ResyncEnd each take the next
// sequence number of their stream; a Fragment carries the sequence number of
// the message it is part of; Heartbeat and Goodbye repeat the last sequence
// number sent, so that a receiver can tell it missed the tail of a stream.
// Request travels the other way, from a receiver to the bridge.
const (
	KindEvent       Kind = 1 // a kernel event; the payload is the netlink message
	KindHeartbeat   Kind = 2 // the bridge is alive; no payload
	KindOverrun     Kind = 3 // the bridge lost kernel events on this stream; no payload
	KindResyncBegin Kind = 4 // a dump of the current state follows (events with FlagDump)
	KindResyncEnd   Kind = 5 // the dump is complete
	KindGoodbye     Kind = 6 // the bridge is shutting down cleanly; no payload
	KindFragment    Kind = 7 // part of a message too large for one datagram (see FragmentHeader)
	KindRequest     Kind = 8 // receiver to bridge: please resync a stream (Group 0: every stream)
)

// Sequenced reports whether frames of kind k take a new sequence number.
func (k Kind) Sequenced() bool {
	return k == KindEvent || k == KindOverrun || k == KindResyncBegin || k == KindResyncEnd
}

var kindNames = [...]string{
	KindEvent:       "event",
	KindHeartbeat:   "heartbeat",
	KindOverrun:     "overrun",
	KindResyncBegin: "resync-begin",
	KindResyncEnd:   "resync-end",
	KindGoodbye:     "goodbye",
	KindFragment:    "fragment",
	KindRequest:     "request",
}

// String returns the kind's name as used in the JSON encoding.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// ParseKind is the inverse of Kind.String for known kinds.
func ParseKind(s string) (Kind, bool) {
	for k, name := range kindNames {
		if name != "" && name == s {
			return Kind(k), true
		}
	}
	return 0, false
}

// Flags modify how a frame is read.
type Flags uint16

const (
	// FlagAuth marks an authenticated frame: a trailer of TrailerLen
	// bytes (a key id and a tag, see Signer) follows the payload. A
	// receiver with keys verifies it (Verifier); one without skips it.
	FlagAuth Flags = 1 << 0
	// FlagDump marks an event (or its fragments) that is part of a state
	// dump, sent between ResyncBegin and ResyncEnd, rather than a change.
	FlagDump Flags = 1 << 1
	// FlagNSID marks an event from another network namespace than the
	// one it is sent in (a bridge with --all-nsid, or with --netns, whose
	// every event is the other namespace's): the header's NSID field holds
	// the id that the sending namespace gives it (signed, as `ip netns
	// list-id` shows).
	FlagNSID Flags = 1 << 2
	// FlagAnswer marks a frame of an answer: a resync sent to one
	// receiver alone, unicast to the address its request came from
	// (resync-begin, the dump's events or fragments, resync-end). An
	// answer takes no sequence number of the stream: every frame of it
	// carries the stream's last number at the time of the dump
	// (PROTOCOL.md, Answers).
	FlagAnswer Flags = 1 << 3
	// FlagJSON, on a request, asks for the answer in the JSON encoding.
	// Without it the answer is raw.
	FlagJSON Flags = 1 << 4
	// FlagSealed marks a sealed frame, of a private stream: its payload is
	// encrypted and a trailer of SealedTrailerLen bytes (key id, nonce,
	// tag) follows it (PROTOCOL.md, Sealed frames; Sealer, Opener). A
	// sealed frame never has FlagAuth: the seal authenticates it.
	FlagSealed Flags = 1 << 5
	// FlagDropped, on a goodbye, says that this stream alone ends: the
	// bridge stopped bridging it (a reload dropped it), and goes on, its
	// socket open. A receiver ends the stream there, but must not take
	// the bridge's socket for closing, as a goodbye without it says
	// (PROTOCOL.md, Trusting a frame). If the stream is added back in the
	// same epoch, its numbers go on from the goodbye's, starting with an
	// overrun.
	FlagDropped Flags = 1 << 6
)

// AnswerEndLen is the payload length of a raw resync-end of an answer:
// the number of dump messages sent between its resync-begin and it,
// big-endian.
const AnswerEndLen = 8

// Header is the decoded fixed header of a raw frame.
type Header struct {
	Kind       Kind
	Flags      Flags
	Family     uint16 // netlink family, e.g. 0 for NETLINK_ROUTE
	Group      uint32 // netlink multicast group, e.g. 1 for RTNLGRP_LINK
	Epoch      uint64 // per bridge start: its start time and a random part (NewEpoch)
	Seq        uint64 // per stream, starts at 1
	Time       int64  // when the bridge read the event, ns since the Unix epoch
	PayloadLen uint32
	NSID       int32 // valid when Flags has FlagNSID; written as zero otherwise
}

// Errors returned by Parse. They are plain values so that rejecting a
// datagram costs no allocation.
var (
	ErrShort     = errors.New("frame: shorter than the header")
	ErrMagic     = errors.New("frame: bad magic (not an nlmcast frame)")
	ErrVersion   = errors.New("frame: unsupported protocol version")
	ErrHeaderLen = errors.New("frame: header length field out of range")
	ErrLength    = errors.New("frame: payload length does not match the datagram")
)

// Put writes h into b[:HeaderLen], which must be at least HeaderLen long.
// It sets the magic, version and header length itself.
func (h *Header) Put(b []byte) {
	_ = b[HeaderLen-1]
	copy(b[OffMagic:], Magic)
	b[OffVersion] = Version
	b[OffKind] = byte(h.Kind)
	binary.BigEndian.PutUint16(b[OffFlags:], uint16(h.Flags))
	binary.BigEndian.PutUint16(b[OffHeaderLen:], HeaderLen)
	binary.BigEndian.PutUint16(b[OffFamily:], h.Family)
	binary.BigEndian.PutUint32(b[OffGroup:], h.Group)
	binary.BigEndian.PutUint64(b[OffEpoch:], h.Epoch)
	binary.BigEndian.PutUint64(b[OffSeq:], h.Seq)
	binary.BigEndian.PutUint64(b[OffTime:], uint64(h.Time))
	binary.BigEndian.PutUint32(b[OffPayloadLen:], h.PayloadLen)
	var nsid uint32
	if h.Flags&FlagNSID != 0 {
		nsid = uint32(h.NSID)
	}
	binary.BigEndian.PutUint32(b[OffNSID:], nsid)
}

// Append appends a complete frame, header then payload, to dst. The header's
// PayloadLen is set from payload.
func Append(dst []byte, h Header, payload []byte) []byte {
	h.PayloadLen = uint32(len(payload))
	var hb [HeaderLen]byte
	h.Put(hb[:])
	dst = append(dst, hb[:]...)
	return append(dst, payload...)
}

// Parse decodes one datagram. The returned payload aliases b. It checks
// everything a receiver needs before trusting the payload: magic, version,
// header length, and that the payload length is exactly what the datagram
// holds (less the trailer of a frame with FlagAuth or FlagSealed, which
// Parse skips but does not verify: that is a Verifier's job, or an
// Opener's, which decrypts a sealed frame's payload in place; before that
// it is ciphertext). Parse never allocates and
// never panics.
func Parse(b []byte) (Header, []byte, error) {
	var h Header
	payload, err := ParseInto(&h, b)
	return h, payload, err
}

// ParseInto is Parse decoding the header into *h, which is left zero on
// error. It is for a receiver's per-datagram path: the header is decoded
// where it will be kept, not returned and copied there. (A copy of a
// header just written field by field stalls the CPU: in the receiver
// library that copy was a third of the time spent per event.)
func ParseInto(h *Header, b []byte) ([]byte, error) {
	*h = Header{}
	if len(b) < HeaderLen {
		return nil, ErrShort
	}
	if string(b[OffMagic:OffMagic+4]) != Magic {
		return nil, ErrMagic
	}
	if b[OffVersion] != Version {
		return nil, ErrVersion
	}
	hl := int(binary.BigEndian.Uint16(b[OffHeaderLen:]))
	if hl < HeaderLen || hl > len(b) {
		return nil, ErrHeaderLen
	}
	flags := Flags(binary.BigEndian.Uint16(b[OffFlags:]))
	end := len(b)
	switch {
	case flags&FlagSealed != 0:
		end -= SealedTrailerLen // the trailer follows the (encrypted) payload
	case flags&FlagAuth != 0:
		end -= TrailerLen // the trailer follows the payload
	}
	n := binary.BigEndian.Uint32(b[OffPayloadLen:])
	if end < hl || uint64(n) != uint64(end-hl) {
		return nil, ErrLength
	}
	h.Kind = Kind(b[OffKind])
	h.Flags = flags
	h.Family = binary.BigEndian.Uint16(b[OffFamily:])
	h.Group = binary.BigEndian.Uint32(b[OffGroup:])
	h.Epoch = binary.BigEndian.Uint64(b[OffEpoch:])
	h.Seq = binary.BigEndian.Uint64(b[OffSeq:])
	h.Time = int64(binary.BigEndian.Uint64(b[OffTime:]))
	h.PayloadLen = n
	if flags&FlagNSID != 0 {
		h.NSID = int32(binary.BigEndian.Uint32(b[OffNSID:]))
	}
	return b[hl:end], nil
}

// ErrorToken names a Parse error with the short word PROTOCOL.md uses for
// it: short, magic, version, header-length or length ("unknown" for
// anything else).
func ErrorToken(err error) string {
	switch err {
	case ErrShort:
		return "short"
	case ErrMagic:
		return "magic"
	case ErrVersion:
		return "version"
	case ErrHeaderLen:
		return "header-length"
	case ErrLength:
		return "length"
	}
	return "unknown"
}
