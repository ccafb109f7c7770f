package frame

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"net/netip"
)

// Authenticated frames (PROTOCOL.md "Authenticated frames"). A bridge given
// a key ends every datagram it sends with a trailer: the key's id and a tag,
// the first 16 bytes of HMAC-SHA256 under the key over the context (the
// destination group's address and port, and the encoding) and every byte of
// the datagram before the tag. The tag thus covers the header, the payload,
// the key id and where the frame was sent: no frame can be altered or moved
// to another stream, encoding or receiver.
const (
	// KeyLen is the length of a key's secret.
	KeyLen = 32
	// TagLen is the length of a tag: HMAC-SHA256 truncated to 128 bits.
	TagLen = 16
	// TrailerLen is the length of a raw frame's trailer: the key id
	// (4 bytes, big-endian), then the tag. It follows the payload; the
	// header's payload length does not count it.
	TrailerLen = 4 + TagLen
	// JSONTrailerLen is the length of a JSON frame's trailer: the object's
	// last member, `,"auth":"KKKKKKKK:TTTT…"` with the key id in 8 and the
	// tag in 32 lowercase hex digits, then the closing `}` and newline.
	JSONTrailerLen = len(jsonAuthMember) + 8 + 1 + 2*TagLen + len(jsonAuthEnd)
	// ContextLen is the length of the context that precedes the datagram's
	// bytes under the MAC: the IPv4 destination address, its port
	// (big-endian) and the encoding (0 raw, 1 JSON).
	ContextLen = 7
)

const (
	jsonAuthMember = `,"auth":"`
	jsonAuthEnd    = "\"}\n"
	// jsonTagAt is how far from the end of a JSON frame its tag starts.
	jsonTagAt = 2*TagLen + len(jsonAuthEnd)
)

// A Key is a shared secret and the id that names it in trailers.
type Key struct {
	ID     uint32
	Secret [KeyLen]byte
}

// Errors of a Verifier. They are plain values, so rejecting a frame costs
// no allocation.
var (
	// ErrUnauthenticated: the frame has no trailer, but the receiver has
	// keys and accepts only authenticated frames.
	ErrUnauthenticated = errors.New("frame: not authenticated, but this receiver requires a key")
	// ErrUnknownKey: the trailer names a key the receiver does not have.
	ErrUnknownKey = errors.New("frame: authenticated with a key this receiver does not have")
	// ErrBadTag: the tag does not match; the frame was altered, moved to
	// another stream or encoding, or forged.
	ErrBadTag = errors.New("frame: authentication tag does not match")
)

// AuthErrorToken names a Verifier error with the word PROTOCOL.md uses for
// it: unauthenticated, unknown-key or bad-tag ("" for anything else).
func AuthErrorToken(err error) string {
	switch err {
	case ErrUnauthenticated:
		return "unauthenticated"
	case ErrUnknownKey:
		return "unknown-key"
	case ErrBadTag:
		return "bad-tag"
	}
	return ""
}

// A mac is HMAC-SHA256 under one key, kept to be reset rather than made
// again: computing a tag allocates nothing.
type mac struct {
	id  uint32
	h   hash.Hash
	ctx [ContextLen]byte
	sum [sha256.Size]byte
}

func newMAC(k Key) *mac {
	return &mac{id: k.ID, h: hmac.New(sha256.New, k.Secret[:])}
}

// tag computes the tag over the context of dst and enc, then parts.
func (m *mac) tag(dst netip.AddrPort, enc byte, parts [][]byte, rest ...byte) []byte {
	putContext(&m.ctx, dst, enc)
	m.h.Reset()
	m.h.Write(m.ctx[:])
	for _, p := range parts {
		m.h.Write(p)
	}
	m.h.Write(rest)
	return m.h.Sum(m.sum[:0])[:TagLen]
}

func putContext(c *[ContextLen]byte, dst netip.AddrPort, enc byte) {
	a := dst.Addr().Unmap().As4()
	copy(c[:4], a[:])
	binary.BigEndian.PutUint16(c[4:], dst.Port())
	c[6] = enc
}

// Encodings as the context names them.
const (
	encRaw  = 0
	encJSON = 1
)

// A Signer writes trailers under one key. It is not safe for concurrent
// use; each sending goroutine has its own.
type Signer struct {
	m *mac
}

// NewSigner returns a Signer for k.
func NewSigner(k Key) *Signer { return &Signer{m: newMAC(k)} }

// KeyID returns the id of the Signer's key.
func (s *Signer) KeyID() uint32 { return s.m.id }

// RawTrailer writes into t the trailer of the raw frame whose bytes before
// the trailer are the concatenation of parts, sent to dst. The header in
// parts[0] must have FlagAuth set and a payload length that excludes the
// trailer.
func (s *Signer) RawTrailer(t *[TrailerLen]byte, dst netip.AddrPort, parts [][]byte) {
	binary.BigEndian.PutUint32(t[:4], s.m.id)
	copy(t[4:], s.m.tag(dst, encRaw, parts, t[:4]...))
}

// AppendRaw appends the authenticated raw frame of h and payload, sent to
// dst, to b: Append with FlagAuth set and the trailer.
func (s *Signer) AppendRaw(b []byte, h Header, payload []byte, dst netip.AddrPort) []byte {
	h.Flags |= FlagAuth
	start := len(b)
	b = Append(b, h, payload)
	var t [TrailerLen]byte
	s.RawTrailer(&t, dst, [][]byte{b[start:]})
	return append(b, t[:]...)
}

// SealJSON turns the JSON frame b, one object ending in "}\n" as AppendJSON
// and AppendJSONFragment write it, into an authenticated one for dst: it
// replaces the closing brace with the auth member and returns the result,
// which reuses b's storage when it has room.
func (s *Signer) SealJSON(b []byte, dst netip.AddrPort) []byte {
	b = b[:len(b)-2] // "}\n"
	b = append(b, jsonAuthMember...)
	b = appendHex32(b, s.m.id)
	b = append(b, ':')
	tag := s.m.tag(dst, encJSON, [][]byte{b})
	b = appendHex(b, tag)
	return append(b, jsonAuthEnd...)
}

// A Verifier checks trailers against a set of keys. It is not safe for
// concurrent use.
type Verifier struct {
	macs []*mac
}

// NewVerifier returns a Verifier that accepts frames authenticated with
// any of keys.
func NewVerifier(keys []Key) *Verifier {
	v := &Verifier{}
	for _, k := range keys {
		v.macs = append(v.macs, newMAC(k))
	}
	return v
}

func (v *Verifier) lookup(id uint32) *mac {
	for _, m := range v.macs {
		if m.id == id {
			return m
		}
	}
	return nil
}

// VerifyRaw checks the raw datagram b, received on dst (the group address
// and port it was sent to). It returns nil if its trailer is good, or
// ErrUnauthenticated, ErrUnknownKey or ErrBadTag; a datagram too short to
// hold a header and a trailer is ErrUnauthenticated too (Parse says more).
// It never allocates.
func (v *Verifier) VerifyRaw(b []byte, dst netip.AddrPort) error {
	if len(b) < HeaderLen+TrailerLen || Flags(binary.BigEndian.Uint16(b[OffFlags:]))&FlagAuth == 0 {
		return ErrUnauthenticated
	}
	t := b[len(b)-TrailerLen:]
	m := v.lookup(binary.BigEndian.Uint32(t))
	if m == nil {
		return ErrUnknownKey
	}
	want := m.tag(dst, encRaw, [][]byte{b[:len(b)-TagLen]})
	if subtle.ConstantTimeCompare(want, t[4:]) != 1 {
		return ErrBadTag
	}
	return nil
}

// VerifyJSON checks the JSON datagram b, received on dst, as VerifyRaw
// does a raw one. A JSON frame without the auth member at its end is
// ErrUnauthenticated.
func (v *Verifier) VerifyJSON(b []byte, dst netip.AddrPort) error {
	id, tag, ok := jsonTrailer(b)
	if !ok {
		return ErrUnauthenticated
	}
	m := v.lookup(id)
	if m == nil {
		return ErrUnknownKey
	}
	want := m.tag(dst, encJSON, [][]byte{b[:len(b)-jsonTagAt]})
	var got [TagLen]byte
	if !decodeHex(got[:], tag) || subtle.ConstantTimeCompare(want, got[:]) != 1 {
		return ErrBadTag
	}
	return nil
}

// jsonTrailer finds the auth member at the end of a JSON frame and returns
// the key id and the tag's hex digits.
func jsonTrailer(b []byte) (id uint32, tag []byte, ok bool) {
	if len(b) < JSONTrailerLen+1 {
		return 0, nil, false
	}
	t := b[len(b)-JSONTrailerLen:]
	if string(t[:len(jsonAuthMember)]) != jsonAuthMember || string(t[len(t)-len(jsonAuthEnd):]) != jsonAuthEnd {
		return 0, nil, false
	}
	t = t[len(jsonAuthMember):]
	var idb [4]byte
	if !decodeHex(idb[:], t[:8]) || t[8] != ':' {
		return 0, nil, false
	}
	return binary.BigEndian.Uint32(idb[:]), t[9 : 9+2*TagLen], true
}

// RawTrailerOf returns the trailer of an authenticated raw datagram (the
// key id and the tag), and false if b has FlagAuth clear or is too short.
// It does not verify anything.
func RawTrailerOf(b []byte) (id uint32, tag []byte, ok bool) {
	if len(b) < HeaderLen+TrailerLen || Flags(binary.BigEndian.Uint16(b[OffFlags:]))&FlagAuth == 0 {
		return 0, nil, false
	}
	t := b[len(b)-TrailerLen:]
	return binary.BigEndian.Uint32(t), t[4:], true
}

const hexDigits = "0123456789abcdef"

func appendHex32(dst []byte, v uint32) []byte {
	for shift := 28; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(v>>uint(shift))&0xf])
	}
	return dst
}

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// decodeHex decodes exactly 2*len(dst) lowercase hex digits from src.
func decodeHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(src[2*i])
		lo, ok2 := fromHex(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
