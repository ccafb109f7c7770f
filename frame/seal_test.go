package frame

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// sealVectors is testdata/seal_vectors.json: a key file, the destination
// the datagrams were received on, the subkeys of two epochs, and sealed
// datagrams with the line a decoder given that key file prints for each.
type sealVectors struct {
	Comment string       `json:"comment"`
	Keys    string       `json:"keys"`
	Dest    string       `json:"dest"`
	Subkeys []subkeyCase `json:"subkeys"`
	Raw     []vector     `json:"raw"`
}

type subkeyCase struct {
	KeyID  uint32 `json:"key_id"`
	Epoch  string `json:"epoch"`
	Subkey string `json:"subkey"`
}

// DescribeSealed is Describe for a receiver of a private stream: the
// structure is checked first, then the seal, and the line shows the
// plaintext.
func DescribeSealed(o *Opener, b []byte, dst netip.AddrPort) string {
	b = append([]byte(nil), b...) // Open decrypts in place
	if _, _, err := Parse(b); err != nil {
		return "error " + ErrorToken(err)
	}
	if err := o.Open(b, dst); err != nil {
		return "error " + SealErrorToken(err)
	}
	return Describe(b)
}

func sealVectorTable() sealVectors {
	s1 := newSealerPrefix(key1, [4]byte{0xa1, 0xa2, 0xa3, 0xa4}, 0)
	s2 := newSealerPrefix(key2, [4]byte{0xb1, 0xb2, 0xb3, 0xb4}, 1<<40)
	so := newSealerPrefix(keyOther, [4]byte{1, 2, 3, 4}, 7)
	good := s1.SealRaw(nil, baseHeader, nlPayload, linkRaw)
	hb := baseHeader
	hb.Kind = KindHeartbeat
	heartbeat := s2.SealRaw(nil, hb, nil, linkRaw)
	later := baseHeader
	later.Epoch, later.Seq = 0x0123456789abcdf0, 1
	flip := func(b []byte, i int) []byte { return mutate(b, func(c []byte) { c[i] ^= 1 }) }
	raw := []struct {
		name string
		b    []byte
	}{
		{"event-key-1", good},
		{"heartbeat-key-2", heartbeat},
		{"event-next-epoch", s1.SealRaw(nil, later, nlPayload, linkRaw)},
		{"event-in-the-clear", Append(nil, baseHeader, nlPayload)},
		{"event-authenticated-not-sealed", NewSigner(key1).AppendRaw(nil, baseHeader, nlPayload, linkRaw)},
		{"event-unknown-key", so.SealRaw(nil, baseHeader, nlPayload, linkRaw)},
		{"event-sent-to-another-group", s1.SealRaw(nil, baseHeader, nlPayload, routeRaw)},
		{"ciphertext-altered", flip(good, HeaderLen+4)},
		{"sequence-altered", flip(good, OffSeq+7)},
		{"epoch-altered", flip(good, OffEpoch+7)},
		{"nonce-altered", flip(good, len(good)-TagLen-1)},
		{"tag-altered", flip(good, len(good)-1)},
		{"trailer-truncated", good[:len(good)-1]},
	}
	o := NewOpener([]Key{key1, key2})
	sv := sealVectors{
		Comment: "PROTOCOL.md, Sealed frames: open each datagram received on dest with the keys of the key file",
		Keys: "# id     created              secret\n" +
			fmt.Sprintf("%08x 2026-11-01T00:00:00Z %x\n", key1.ID, key1.Secret[:]) +
			fmt.Sprintf("%08x 2026-11-15T00:00:00Z %x\n", key2.ID, key2.Secret[:]),
		Dest: linkRaw.String(),
	}
	for _, c := range []struct {
		k     Key
		epoch uint64
	}{{key1, baseHeader.Epoch}, {key1, later.Epoch}, {key2, baseHeader.Epoch}} {
		sk := Subkey(c.k, c.epoch)
		sv.Subkeys = append(sv.Subkeys, subkeyCase{KeyID: c.k.ID, Epoch: fmt.Sprintf("%016x", c.epoch), Subkey: hex.EncodeToString(sk[:])})
	}
	for _, r := range raw {
		sv.Raw = append(sv.Raw, vector{Name: r.name, Datagram: hex.EncodeToString(r.b), Expect: DescribeSealed(o, r.b, linkRaw)})
	}
	return sv
}

func TestSealVectors(t *testing.T) {
	want := sealVectorTable()
	var got sealVectors
	golden(t, "seal_vectors.json", want, &got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("testdata/seal_vectors.json differs from the table (go test ./frame -update rewrites it)\n got %+v\nwant %+v", got, want)
	}
	for _, word := range []string{"ok kind=1", "ok kind=2", "error not-sealed", "error unknown-key", "error bad-seal", "error length"} {
		n := 0
		for _, v := range got.Raw {
			if strings.HasPrefix(v.Expect, word) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no vector expects %q", word)
		}
	}
	// The plaintext of the good event is the payload, and nothing of it
	// is in the datagram.
	d, _ := hex.DecodeString(got.Raw[0].Datagram)
	if bytes.Contains(d, nlPayload[4:12]) {
		t.Error("the sealed datagram holds plaintext")
	}
	if !strings.HasSuffix(got.Raw[0].Expect, "payload="+hex.EncodeToString(nlPayload)) {
		t.Errorf("good event opens to %q", got.Raw[0].Expect)
	}
}

func TestSealRoundTripAndRefusals(t *testing.T) {
	s := NewSealer(key1)
	o := NewOpener([]Key{key2, key1})
	b := s.SealRaw(nil, baseHeader, nlPayload, linkRaw)
	if len(b) != HeaderLen+len(nlPayload)+SealedTrailerLen {
		t.Fatalf("length %d", len(b))
	}
	if bytes.Contains(b, nlPayload) {
		t.Fatal("plaintext in the datagram")
	}
	good := append([]byte(nil), b...)
	if err := o.Open(b, linkRaw); err != nil {
		t.Fatalf("good frame: %v", err)
	}
	h, p, err := Parse(b)
	if err != nil || !bytes.Equal(p, nlPayload) || h.Flags&FlagSealed == 0 || h.Flags&FlagAuth != 0 || h.PayloadLen != uint32(len(nlPayload)) {
		t.Fatalf("Parse after Open: %+v %x %v", h, p, err)
	}
	// Every bit of the datagram is covered: header, ciphertext, key id,
	// nonce and tag.
	for i := range good {
		for bit := 0; bit < 8; bit++ {
			c := mutate(good, func(c []byte) { c[i] ^= 1 << bit })
			if err := o.Open(c, linkRaw); err == nil {
				t.Fatalf("bit %d of byte %d flipped: still opens", bit, i)
			}
		}
	}
	// So is the destination.
	for _, dst := range []netip.AddrPort{routeRaw, netip.MustParseAddrPort("239.255.78.1:17803"), netip.MustParseAddrPort("127.0.0.1:17802")} {
		if err := o.Open(append([]byte(nil), good...), dst); !errors.Is(err, ErrBadSeal) {
			t.Errorf("moved to %v: %v, want ErrBadSeal", dst, err)
		}
	}
	if err := NewOpener([]Key{key2}).Open(append([]byte(nil), good...), linkRaw); err != ErrUnknownKey {
		t.Errorf("without its key: %v", err)
	}
	// The same id with another secret does not open it.
	if err := NewOpener([]Key{{ID: 1, Secret: key2.Secret}}).Open(append([]byte(nil), good...), linkRaw); err != ErrBadSeal {
		t.Errorf("an impostor key: %v", err)
	}
	if err := o.Open(Append(nil, baseHeader, nlPayload), linkRaw); err != ErrNotSealed {
		t.Errorf("a clear frame: %v", err)
	}
	if err := o.Open(NewSigner(key1).AppendRaw(nil, baseHeader, nlPayload, linkRaw), linkRaw); err != ErrNotSealed {
		t.Errorf("an authenticated frame: %v", err)
	}
	for _, n := range []int{0, HeaderLen - 1, HeaderLen, HeaderLen + SealedTrailerLen - 1} {
		c := append([]byte(nil), good[:min(n, len(good))]...)
		if err := o.Open(c, linkRaw); err == nil {
			t.Errorf("%d bytes opened", n)
		}
	}
}

// A Sealer never uses a nonce twice: the counter goes on across frames,
// streams and epochs, and two Sealers draw different prefixes.
func TestSealNoncesNeverRepeat(t *testing.T) {
	seen := map[string]bool{}
	var sealers []*Sealer
	for range 8 {
		sealers = append(sealers, NewSealer(key1))
	}
	h := baseHeader
	for i := range 1000 {
		for _, s := range sealers {
			h.Seq = uint64(i % 3) // heartbeats repeat numbers
			h.Epoch = baseHeader.Epoch + uint64(i%2)
			b := s.SealRaw(nil, h, nil, linkRaw)
			n := string(b[len(b)-TagLen-NonceLen : len(b)-TagLen])
			if seen[n] {
				t.Fatalf("nonce %x used twice", n)
			}
			seen[n] = true
		}
	}
	if Subkey(key1, 1) == Subkey(key1, 2) || Subkey(key1, 1) == Subkey(key2, 1) {
		t.Error("subkeys of two epochs or two keys are the same")
	}
}

// The fragments of a large message are sealed one by one, each opening to
// its fragment header and piece.
func TestSealFragments(t *testing.T) {
	s := NewSealer(key1)
	o := NewOpener([]Key{key1})
	msg := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	h := baseHeader
	h.Kind = KindFragment
	var r Reassembler
	var got []byte
	Split(msg, MaxPiece-SealedTrailerLen, func(f FragmentHeader, piece []byte) {
		var fh [FragmentHeaderLen]byte
		f.Put(fh[:])
		h.PayloadLen = uint32(FragmentHeaderLen + len(piece))
		h.Flags = FlagSealed
		var hb [HeaderLen]byte
		h.Put(hb[:])
		d := s.Seal(nil, linkRaw, hb[:], fh[:], piece)
		if len(d) > MaxDatagram {
			t.Fatalf("sealed fragment of %d bytes", len(d))
		}
		if err := o.Open(d, linkRaw); err != nil {
			t.Fatal(err)
		}
		ph, p, err := Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok, _, err := r.Add(ph, p, time.Now()); err != nil {
			t.Fatal(err)
		} else if ok {
			got = m
		}
	})
	if !bytes.Equal(got, msg) {
		t.Fatalf("reassembled %d bytes, want %d", len(got), len(msg))
	}
}

func TestSealAllocatesNothing(t *testing.T) {
	s := NewSealer(key1)
	o := NewOpener([]Key{key1})
	hdr := make([]byte, HeaderLen)
	h := baseHeader
	h.Flags = FlagSealed
	h.PayloadLen = uint32(len(nlPayload))
	h.Put(hdr)
	buf := make([]byte, 0, 4096)
	_ = s.Seal(buf[:0], linkRaw, hdr, nlPayload) // the epoch's subkey
	d := s.Seal(nil, linkRaw, hdr, nlPayload)
	work := make([]byte, len(d))
	copy(work, d)
	_ = o.Open(work, linkRaw)
	for name, f := range map[string]func(){
		"Seal": func() { _ = s.Seal(buf[:0], linkRaw, hdr, nlPayload) },
		"Open": func() { copy(work, d); _ = o.Open(work, linkRaw) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

func FuzzOpen(f *testing.F) {
	s := NewSealer(key1)
	f.Add(s.SealRaw(nil, baseHeader, nlPayload, linkRaw))
	f.Add(s.SealRaw(nil, baseHeader, nil, linkRaw))
	f.Add(Append(nil, baseHeader, nlPayload))
	o := NewOpener([]Key{key1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := append([]byte(nil), b...)
		if o.Open(c, linkRaw) != nil {
			return
		}
		// What opens parses, with FlagSealed, to a payload of its length.
		h, p, err := Parse(c)
		if err != nil || h.Flags&FlagSealed == 0 || len(p) != int(h.PayloadLen) {
			t.Fatalf("opened but %v %+v", err, h)
		}
		if binary.BigEndian.Uint32(b[len(b)-SealedTrailerLen:]) != key1.ID {
			t.Fatal("opened under another key id")
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	s := NewSealer(key1)
	hdr := make([]byte, HeaderLen)
	h := baseHeader
	h.Flags = FlagSealed
	h.PayloadLen = uint32(len(nlPayload))
	h.Put(hdr)
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(HeaderLen + len(nlPayload)))
	for b.Loop() {
		_ = s.Seal(buf[:0], linkRaw, hdr, nlPayload)
	}
}

func BenchmarkOpen(b *testing.B) {
	s := NewSealer(key1)
	o := NewOpener([]Key{key1})
	d := s.SealRaw(nil, baseHeader, nlPayload, linkRaw)
	work := make([]byte, len(d))
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		copy(work, d)
		if o.Open(work, linkRaw) != nil {
			b.Fatal("bad")
		}
	}
}

// A JSON frame marked sealed (a heartbeat of a private stream) says so,
// and parses back to FlagSealed.
func TestJSONSealedMark(t *testing.T) {
	h := baseHeader
	h.Kind, h.Flags = KindHeartbeat, FlagSealed
	b := AppendJSON(nil, h, "link", "sealed", nil)
	if !bytes.Contains(b, []byte(`,"sealed":true`)) {
		t.Fatalf("%s", b)
	}
	f, err := ParseJSON(b)
	if err != nil || !f.Sealed {
		t.Fatalf("%+v %v", f, err)
	}
	if got, _ := f.Header(); got.Flags != FlagSealed {
		t.Errorf("flags %v", got.Flags)
	}
}

// A goodbye of a dropped stream says so in JSON, and parses back to
// FlagDropped.
func TestJSONDroppedMark(t *testing.T) {
	h := baseHeader
	h.Kind, h.Flags = KindGoodbye, FlagDropped
	b := AppendJSON(nil, h, "link", "stream dropped", nil)
	if !bytes.Contains(b, []byte(`,"dropped":true`)) {
		t.Fatalf("%s", b)
	}
	f, err := ParseJSON(b)
	if err != nil || !f.Dropped {
		t.Fatalf("%+v %v", f, err)
	}
	if got, _ := f.Header(); got.Flags != FlagDropped {
		t.Errorf("flags %v", got.Flags)
	}
}
