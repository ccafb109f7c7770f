package frame

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// JSONFrame is one datagram of the JSON encoding: a single JSON object on a
// single line, terminated by '\n', carrying the header fields of the raw
// encoding and the event decoded into named fields.
type JSONFrame struct {
	V       int             `json:"v"`                 // protocol version, 1
	Kind    string          `json:"kind"`              // Kind.String(), e.g. "event"
	Stream  string          `json:"stream"`            // stream name, e.g. "link"
	Family  uint16          `json:"family"`            // netlink family
	Group   uint32          `json:"group"`             // netlink multicast group
	Epoch   string          `json:"epoch"`             // 16 lowercase hex digits
	Seq     uint64          `json:"seq"`               // per stream, same as in the raw encoding
	Time    time.Time       `json:"time"`              // RFC 3339 with nanoseconds, UTC
	Summary string          `json:"summary,omitempty"` // one human-readable line, like ip monitor
	Event   json.RawMessage `json:"event,omitempty"`   // the decoded event
	// Dump is true for events that are part of a state dump (FlagDump).
	Dump bool `json:"dump,omitempty"`
	// Answer is true on frames of an answer to one receiver's request
	// (FlagAnswer).
	Answer bool `json:"answer,omitempty"`
	// Count is set on the resync-end of an answer: the number of dump
	// messages sent between its resync-begin and it.
	Count *uint64 `json:"count,omitempty"`
	// NSID is the other network namespace's id, for events a bridge read
	// from another namespace than the one it sends in (--all-nsid,
	// --netns; FlagNSID); absent otherwise.
	NSID *int32 `json:"nsid,omitempty"`
	// Sealed is true on the heartbeats and goodbye a bridge sends on the
	// JSON group of a private stream (FlagSealed): its events are sealed
	// raw frames, and its JSON group carries nothing else.
	Sealed bool `json:"sealed,omitempty"`
	// Dropped is true on the goodbye of a stream that a running bridge
	// stopped bridging (FlagDropped): the stream ends, the bridge goes on.
	Dropped bool `json:"dropped,omitempty"`
	// Fragment and Data are set on frames of kind "fragment": Data is one
	// piece of a complete JSON frame too large for a datagram.
	Fragment *FragmentHeader `json:"fragment,omitempty"`
	Data     []byte          `json:"data,omitempty"` // base64 in JSON
}

// JSONMaxPiece is the largest piece of a JSON frame one JSON fragment
// carries: base64 makes it 64,000 bytes, leaving room for the envelope.
const JSONMaxPiece = 48000

// Header returns the fields of f that the raw header also carries.
// PayloadLen is left zero.
func (f *JSONFrame) Header() (Header, error) {
	k, ok := ParseKind(f.Kind)
	if !ok {
		return Header{}, fmt.Errorf("frame: unknown kind %q", f.Kind)
	}
	epoch, err := strconv.ParseUint(f.Epoch, 16, 64)
	if err != nil {
		return Header{}, fmt.Errorf("frame: bad epoch %q: %w", f.Epoch, err)
	}
	h := Header{Kind: k, Family: f.Family, Group: f.Group, Epoch: epoch, Seq: f.Seq, Time: f.Time.UnixNano()}
	if f.Dump {
		h.Flags |= FlagDump
	}
	if f.Answer {
		h.Flags |= FlagAnswer
	}
	if f.NSID != nil {
		h.Flags |= FlagNSID
		h.NSID = *f.NSID
	}
	if f.Sealed {
		h.Flags |= FlagSealed
	}
	if f.Dropped {
		h.Flags |= FlagDropped
	}
	return h, nil
}

// ErrJSONVersion is returned by ParseJSON for a frame of another version.
var ErrJSONVersion = errors.New("frame: unsupported JSON frame version")

// ParseJSON decodes one datagram of the JSON encoding.
func ParseJSON(b []byte) (*JSONFrame, error) {
	var f JSONFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("frame: not a JSON frame: %w", err)
	}
	if f.V != Version {
		return nil, ErrJSONVersion
	}
	if _, err := f.Header(); err != nil {
		return nil, err
	}
	if (f.Kind == "fragment") != (f.Fragment != nil) {
		return nil, fmt.Errorf("frame: %w: fragment fields on a %q frame", ErrFragment, f.Kind)
	}
	if f.Fragment != nil {
		if err := f.Fragment.check(len(f.Data)); err != nil {
			return nil, err
		}
	}
	return &f, nil
}

// AppendJSON appends the JSON encoding of one frame to dst: the header
// fields, the stream name, the summary line (a string or the bytes of
// one) and the event object, which must already be valid JSON (or empty).
// The envelope itself is written without reflection and without
// allocating beyond dst's growth.
func AppendJSON[S string | []byte](dst []byte, h Header, stream string, summary S, event []byte) []byte {
	dst = appendEnvelope(dst, h, stream)
	if len(summary) > 0 {
		dst = append(dst, `,"summary":`...)
		dst = appendString(dst, summary)
	}
	if len(event) > 0 {
		dst = append(dst, `,"event":`...)
		dst = append(dst, event...)
	}
	return append(dst, "}\n"...)
}

// AppendJSONAnswerEnd appends the JSON resync-end of an answer: h's
// fields with kind "resync-end" and the answer flag, the summary, and
// count, the number of dump messages the answer carried.
func AppendJSONAnswerEnd(dst []byte, h Header, stream, summary string, count uint64) []byte {
	h.Kind, h.Flags = KindResyncEnd, h.Flags|FlagAnswer
	dst = appendEnvelope(dst, h, stream)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendUint(dst, count, 10)
	if summary != "" {
		dst = append(dst, `,"summary":`...)
		dst = appendString(dst, summary)
	}
	return append(dst, "}\n"...)
}

// AppendJSONFragment appends one JSON fragment frame to dst: h's fields with
// kind "fragment", the fragment header, and the piece in base64.
func AppendJSONFragment(dst []byte, h Header, stream string, f FragmentHeader, piece []byte) []byte {
	h.Kind = KindFragment
	dst = appendEnvelope(dst, h, stream)
	dst = append(dst, `,"fragment":{"total":`...)
	dst = strconv.AppendUint(dst, uint64(f.Total), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, uint64(f.Offset), 10)
	dst = append(dst, `,"index":`...)
	dst = strconv.AppendUint(dst, uint64(f.Index), 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendUint(dst, uint64(f.Count), 10)
	dst = append(dst, `},"data":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, piece)
	return append(dst, "\"}\n"...)
}

// appendEnvelope appends the opening brace and the header fields.
func appendEnvelope(dst []byte, h Header, stream string) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendUint(dst, Version, 10)
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, h.Kind.String())
	dst = append(dst, `,"stream":`...)
	dst = appendString(dst, stream)
	dst = append(dst, `,"family":`...)
	dst = strconv.AppendUint(dst, uint64(h.Family), 10)
	dst = append(dst, `,"group":`...)
	dst = strconv.AppendUint(dst, uint64(h.Group), 10)
	dst = append(dst, `,"epoch":"`...)
	dst = appendHex64(dst, h.Epoch)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, h.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = time.Unix(0, h.Time).UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if h.Flags&FlagDump != 0 {
		dst = append(dst, `,"dump":true`...)
	}
	if h.Flags&FlagAnswer != 0 {
		dst = append(dst, `,"answer":true`...)
	}
	if h.Flags&FlagNSID != 0 {
		dst = append(dst, `,"nsid":`...)
		dst = strconv.AppendInt(dst, int64(h.NSID), 10)
	}
	if h.Flags&FlagSealed != 0 {
		dst = append(dst, `,"sealed":true`...)
	}
	if h.Flags&FlagDropped != 0 {
		dst = append(dst, `,"dropped":true`...)
	}
	return dst
}

func appendHex64(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(v>>uint(shift))&0xf])
	}
	return dst
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so the output is always valid JSON.
func appendString[S string | []byte](dst []byte, s S) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		var rb [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(rb[:copy(rb[:], s[i:])])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r >= 0x80 && r <= 0x9f: // C1 controls: a terminal acts on them too
			dst = append(dst, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
