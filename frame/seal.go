package frame

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
)

// Sealed frames (PROTOCOL.md "Sealed frames"). A private stream is sent
// sealed: encrypted and authenticated with AES-256-GCM under a key only its
// readers hold. The header stays in the clear (a receiver without the key
// still sees kinds, sequence numbers and times, never a byte of an event)
// and is authenticated with the context as associated data. A sealed
// datagram is
//
//	header (FlagSealed set; PayloadLen: the plaintext's length)
//	ciphertext (PayloadLen bytes)
//	key id (4 bytes, big-endian)
//	nonce (12 bytes)
//	tag (16 bytes)
//
// The cipher key is a subkey of the key's secret for the frame's epoch:
// HKDF-SHA256 with salt SealSalt and the epoch (8 bytes, big-endian) as
// info. The nonce is a prefix drawn at random when a Sealer is made (4
// bytes), then the Sealer's count of datagrams sealed (8 bytes,
// big-endian). So a nonce never repeats under one subkey within a Sealer,
// and a bridge has one Sealer per key for each epoch; two bridges (or two
// restarts) share a subkey only if they share an epoch (a start in the same
// millisecond and the same 20 random bits), and then a nonce only if they
// also drew the same 32-bit prefix: one chance in 2^52 for two starts in
// the same millisecond, none otherwise.
const (
	// NonceLen is the length of a sealed frame's nonce.
	NonceLen = 12
	// SealedTrailerLen is the length of a sealed frame's trailer: key id,
	// nonce and tag. It follows the ciphertext; PayloadLen does not count
	// it.
	SealedTrailerLen = 4 + NonceLen + TagLen
	// SealSalt is the HKDF salt of a sealed frame's subkey.
	SealSalt = "nlmcast sealed frames v1"
	// subkeys is how many epochs' subkeys an Opener keeps.
	subkeys = 4
)

// Errors of an Opener, plain values so that refusing a frame costs no
// allocation.
var (
	// ErrNotSealed: the frame is not sealed, but its stream is private.
	ErrNotSealed = errors.New("frame: not sealed, but this stream is private: forged or sent in the clear")
	// ErrBadSeal: the sealed frame does not open: altered, forged, moved
	// to another stream, or sealed under another key with the same id.
	ErrBadSeal = errors.New("frame: sealed frame does not open: altered or forged")
)

// SealErrorToken names an Opener error with the word PROTOCOL.md uses for
// it: not-sealed, unknown-key or bad-seal ("" for anything else).
func SealErrorToken(err error) string {
	switch err {
	case ErrNotSealed:
		return "not-sealed"
	case ErrUnknownKey:
		return "unknown-key"
	case ErrBadSeal:
		return "bad-seal"
	}
	return ""
}

// Subkey returns the AES-256 key that seals frames of epoch under the
// secret of k.
func Subkey(k Key, epoch uint64) [KeyLen]byte {
	var info [8]byte
	binary.BigEndian.PutUint64(info[:], epoch)
	b, err := hkdf.Key(sha256.New, k.Secret[:], []byte(SealSalt), string(info[:]), KeyLen)
	if err != nil {
		panic("frame: HKDF-SHA256 of 32 bytes cannot fail: " + err.Error())
	}
	var sk [KeyLen]byte
	copy(sk[:], b)
	return sk
}

// newGCM returns AES-256-GCM under the subkey of k for epoch.
func newGCM(k Key, epoch uint64) cipher.AEAD {
	sk := Subkey(k, epoch)
	c, err := aes.NewCipher(sk[:])
	if err != nil {
		panic("frame: AES-256 with a 32-byte key cannot fail: " + err.Error())
	}
	g, err := cipher.NewGCM(c)
	if err != nil {
		panic("frame: GCM of AES cannot fail: " + err.Error())
	}
	return g
}

// appendAD appends the associated data of a sealed frame to ad: the
// context (as for authenticated frames, encoding raw), then the header.
func appendAD(ad []byte, dst netip.AddrPort, hdr []byte) []byte {
	var c [ContextLen]byte
	putContext(&c, dst, encRaw)
	return append(append(ad, c[:]...), hdr...)
}

// A Sealer seals frames under one key. It is not safe for concurrent use:
// each sending goroutine has its own, and one per key and epoch keeps the
// nonces apart (see above). Sealing allocates nothing once the subkey of
// an epoch is made.
type Sealer struct {
	key    Key
	prefix [4]byte
	count  uint64
	epoch  uint64
	gcm    cipher.AEAD // for epoch; nil before the first seal
	ad     []byte
	nonce  [NonceLen]byte
}

// NewSealer returns a Sealer for k, with a random nonce prefix.
func NewSealer(k Key) *Sealer {
	s := &Sealer{key: k, ad: make([]byte, 0, ContextLen+HeaderLen)}
	_, _ = crand.Read(s.prefix[:]) // never fails on Linux
	return s
}

// newSealerPrefix is NewSealer with a given prefix and count, for test
// vectors.
func newSealerPrefix(k Key, prefix [4]byte, count uint64) *Sealer {
	return &Sealer{key: k, prefix: prefix, count: count, ad: make([]byte, 0, ContextLen+HeaderLen)}
}

// KeyID returns the id of the Sealer's key.
func (s *Sealer) KeyID() uint32 { return s.key.ID }

// Seal appends to b the sealed datagram of the frame whose header is hdr
// (HeaderLen bytes, FlagSealed set, PayloadLen the length of the
// plaintext) and whose plaintext is the concatenation of parts, for dst.
// It returns the extended buffer; it allocates only when b lacks room.
func (s *Sealer) Seal(b []byte, dst netip.AddrPort, hdr []byte, parts ...[]byte) []byte {
	epoch := binary.BigEndian.Uint64(hdr[OffEpoch:])
	if s.gcm == nil || epoch != s.epoch {
		s.gcm, s.epoch = newGCM(s.key, epoch), epoch
	}
	s.ad = appendAD(s.ad[:0], dst, hdr[:HeaderLen])
	copy(s.nonce[:4], s.prefix[:])
	binary.BigEndian.PutUint64(s.nonce[4:], s.count)
	s.count++
	b = append(b, hdr[:HeaderLen]...)
	start := len(b)
	for _, p := range parts {
		b = append(b, p...)
	}
	b = s.gcm.Seal(b[:start], s.nonce[:], b[start:], s.ad[:])
	// GCM puts the tag right after the ciphertext; the key id and nonce
	// go between them.
	var tag [TagLen]byte
	copy(tag[:], b[len(b)-TagLen:])
	b = b[:len(b)-TagLen]
	b = binary.BigEndian.AppendUint32(b, s.key.ID)
	b = append(b, s.nonce[:]...)
	return append(b, tag[:]...)
}

// SealRaw appends to b the sealed raw frame of h and payload for dst:
// Append with FlagSealed set, the payload encrypted, and the trailer.
func (s *Sealer) SealRaw(b []byte, h Header, payload []byte, dst netip.AddrPort) []byte {
	h.Flags |= FlagSealed
	h.PayloadLen = uint32(len(payload))
	var hb [HeaderLen]byte
	h.Put(hb[:])
	return s.Seal(b, dst, hb[:], payload)
}

// An Opener opens frames sealed under the keys of one key file. It is not
// safe for concurrent use. Opening allocates nothing while the frames'
// epochs are among the last few it saw.
type Opener struct {
	keys []Key
	// A small cache of subkeys, by key id and epoch, replaced in turn.
	cache [subkeys]struct {
		id    uint32
		epoch uint64
		gcm   cipher.AEAD
	}
	next  int
	ad    []byte
	nonce [NonceLen]byte
}

// NewOpener returns an Opener of frames sealed under any of keys.
func NewOpener(keys []Key) *Opener {
	return &Opener{keys: append([]Key(nil), keys...), ad: make([]byte, 0, ContextLen+HeaderLen)}
}

func (o *Opener) gcm(id uint32, epoch uint64) cipher.AEAD {
	for i := range o.cache {
		if c := &o.cache[i]; c.gcm != nil && c.id == id && c.epoch == epoch {
			return c.gcm
		}
	}
	for _, k := range o.keys {
		if k.ID == id {
			c := &o.cache[o.next]
			o.next = (o.next + 1) % subkeys
			c.id, c.epoch, c.gcm = id, epoch, newGCM(k, epoch)
			return c.gcm
		}
	}
	return nil
}

// Open decrypts the sealed raw datagram b, received on dst, in place: on
// success the payload that Parse returns for b is the plaintext. It
// returns nil, or ErrNotSealed, ErrUnknownKey or ErrBadSeal (a datagram
// too short or whose lengths do not add up is ErrBadSeal; Parse says
// more). After an error b is not to be used.
func (o *Opener) Open(b []byte, dst netip.AddrPort) error {
	if len(b) < HeaderLen || string(b[:4]) != Magic || Flags(binary.BigEndian.Uint16(b[OffFlags:]))&FlagSealed == 0 {
		return ErrNotSealed
	}
	hl := int(binary.BigEndian.Uint16(b[OffHeaderLen:]))
	n := uint64(binary.BigEndian.Uint32(b[OffPayloadLen:]))
	if hl < HeaderLen || uint64(len(b)) != uint64(hl)+n+SealedTrailerLen {
		return ErrBadSeal
	}
	t := b[len(b)-SealedTrailerLen:]
	g := o.gcm(binary.BigEndian.Uint32(t), binary.BigEndian.Uint64(b[OffEpoch:]))
	if g == nil {
		return ErrUnknownKey
	}
	o.ad = appendAD(o.ad[:0], dst, b[:hl])
	copy(o.nonce[:], t[4:4+NonceLen])
	// GCM wants the tag right after the ciphertext: move it there.
	copy(t[:TagLen], t[4+NonceLen:])
	ct := b[hl : hl+int(n)+TagLen]
	if _, err := g.Open(ct[:0], o.nonce[:], ct, o.ad); err != nil {
		return ErrBadSeal
	}
	return nil
}
