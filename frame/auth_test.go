package frame

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

// The keys of the authentication vectors: the secrets are the bytes 0..31
// and 32..63; keyOther is in no key file.
var (
	key1      = Key{ID: 1, Secret: seqBytes(0)}
	key2      = Key{ID: 2, Secret: seqBytes(32)}
	keyOther  = Key{ID: 9, Secret: seqBytes(100)}
	linkRaw   = netip.MustParseAddrPort("239.255.78.1:17802")
	routeRaw  = netip.MustParseAddrPort("239.255.78.7:17814")
	linkJSON  = netip.MustParseAddrPort("239.255.79.1:17803")
	routeJSON = netip.MustParseAddrPort("239.255.79.7:17815")
)

func seqBytes(from byte) (b [KeyLen]byte) {
	for i := range b {
		b[i] = from + byte(i)
	}
	return b
}

// authVectors is testdata/auth_vectors.json: a key file, the destination
// the datagrams were received on, and raw and JSON datagrams with the line
// a decoder given that key file prints for each.
type authVectors struct {
	Comment  string       `json:"comment"`
	Keys     string       `json:"keys"`
	Dest     string       `json:"dest"`
	JSONDest string       `json:"json_dest"`
	Raw      []vector     `json:"raw"`
	JSON     []jsonVector `json:"json"`
}

type jsonVector struct {
	Name     string `json:"name"`
	Datagram string `json:"datagram"`
	Expect   string `json:"expect"`
}

// DescribeAuth is Describe for a receiver holding keys: the structure is
// checked first, then the trailer.
func DescribeAuth(v *Verifier, b []byte, dst netip.AddrPort) string {
	if _, _, err := Parse(b); err != nil {
		return "error " + ErrorToken(err)
	}
	if err := v.VerifyRaw(b, dst); err != nil {
		return "error " + AuthErrorToken(err)
	}
	return Describe(b)
}

// DescribeJSON is the line for one JSON datagram, checked with v.
func DescribeJSON(v *Verifier, b []byte, dst netip.AddrPort) string {
	f, err := ParseJSON(b)
	if err != nil {
		return "error json"
	}
	if err := v.VerifyJSON(b, dst); err != nil {
		return "error " + AuthErrorToken(err)
	}
	return fmt.Sprintf("ok kind=%s stream=%s seq=%d", f.Kind, f.Stream, f.Seq)
}

func authVectorTable() authVectors {
	s1, s2, so := NewSigner(key1), NewSigner(key2), NewSigner(keyOther)
	good := s1.AppendRaw(nil, baseHeader, nlPayload, linkRaw)
	hb := baseHeader
	hb.Kind, hb.Seq = KindHeartbeat, 42
	heartbeat := s2.AppendRaw(nil, hb, nil, linkRaw)
	flip := func(b []byte, i int) []byte { return mutate(b, func(c []byte) { c[i] ^= 1 }) }
	raw := []struct {
		name string
		b    []byte
	}{
		{"event-key-1", good},
		{"heartbeat-key-2", heartbeat},
		{"event-not-authenticated", Append(nil, baseHeader, nlPayload)},
		{"event-unknown-key", so.AppendRaw(nil, baseHeader, nlPayload, linkRaw)},
		{"event-sent-to-another-group", s1.AppendRaw(nil, baseHeader, nlPayload, routeRaw)},
		{"tag-altered", flip(good, len(good)-1)},
		{"payload-altered", flip(good, HeaderLen+4)},
		{"sequence-altered", flip(good, OffSeq+7)},
		{"key-id-altered", flip(good, len(good)-TrailerLen+3)},
		{"auth-flag-cleared", mutate(good[:len(good)-TrailerLen], func(c []byte) { c[OffFlags+1] &^= byte(FlagAuth) })},
		{"trailer-truncated", good[:len(good)-1]},
	}
	v := NewVerifier([]Key{key1, key2})
	av := authVectors{
		Comment: "PROTOCOL.md, Authenticated frames: decode each datagram received on dest with the keys of the key file",
		Keys: "# id     created              secret\n" +
			fmt.Sprintf("%08x 2026-11-01T00:00:00Z %x\n", key1.ID, key1.Secret[:]) +
			fmt.Sprintf("%08x 2026-11-15T00:00:00Z %x\n", key2.ID, key2.Secret[:]),
		Dest:     linkRaw.String(),
		JSONDest: linkJSON.String(),
	}
	for _, r := range raw {
		av.Raw = append(av.Raw, vector{Name: r.name, Datagram: hex.EncodeToString(r.b), Expect: DescribeAuth(v, r.b, linkRaw)})
	}
	js := func(s *Signer, dst netip.AddrPort) []byte {
		return s.SealJSON(AppendJSON(nil, baseHeader, "link", "new link 7: lo", []byte(`{"type":"RTM_NEWLINK"}`)), dst)
	}
	goodJSON := js(s1, linkJSON)
	jsonCases := []struct {
		name string
		b    []byte
	}{
		{"json-event-key-1", goodJSON},
		{"json-heartbeat-key-2", s2.SealJSON(AppendJSON(nil, hb, "link", "", nil), linkJSON)},
		{"json-not-authenticated", AppendJSON(nil, baseHeader, "link", "new link 7: lo", nil)},
		{"json-unknown-key", js(so, linkJSON)},
		{"json-sent-to-another-group", js(s1, routeJSON)},
		{"json-raw-trailer-context", js(s1, linkRaw)},
		{"json-summary-altered", bytes.Replace(goodJSON, []byte("lo"), []byte("l0"), 1)},
		{"json-tag-altered", flip(goodJSON, len(goodJSON)-5)},
	}
	for _, c := range jsonCases {
		av.JSON = append(av.JSON, jsonVector{Name: c.name, Datagram: string(c.b), Expect: DescribeJSON(v, c.b, linkJSON)})
	}
	return av
}

func TestAuthVectors(t *testing.T) {
	want := authVectorTable()
	var got authVectors
	golden(t, "auth_vectors.json", want, &got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("testdata/auth_vectors.json differs from the table (go test ./frame -update rewrites it)\n got %+v\nwant %+v", got, want)
	}
	// The expectations must exercise every outcome.
	for _, word := range []string{"ok", "error unauthenticated", "error unknown-key", "error bad-tag", "error length"} {
		n := 0
		for _, v := range append(got.Raw, vecs(got.JSON)...) {
			if len(v.Expect) >= len(word) && v.Expect[:len(word)] == word {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no vector expects %q", word)
		}
	}
}

func vecs(js []jsonVector) []vector {
	out := make([]vector, len(js))
	for i, j := range js {
		out[i] = vector(j)
	}
	return out
}

func TestAuthRoundTripAndRefusals(t *testing.T) {
	s := NewSigner(key1)
	v := NewVerifier([]Key{key2, key1})
	b := s.AppendRaw(nil, baseHeader, nlPayload, linkRaw)
	if len(b) != HeaderLen+len(nlPayload)+TrailerLen {
		t.Fatalf("length %d", len(b))
	}
	if err := v.VerifyRaw(b, linkRaw); err != nil {
		t.Fatalf("good frame: %v", err)
	}
	h, p, err := Parse(b)
	if err != nil || !bytes.Equal(p, nlPayload) || h.Flags&FlagAuth == 0 || h.PayloadLen != uint32(len(nlPayload)) {
		t.Fatalf("Parse: %+v %x %v", h, p, err)
	}
	// Every single bit of the datagram is covered.
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			c := mutate(b, func(c []byte) { c[i] ^= 1 << bit })
			if err := v.VerifyRaw(c, linkRaw); err == nil {
				t.Fatalf("bit %d of byte %d flipped: still verifies", bit, i)
			}
		}
	}
	// So is the destination: port, address and encoding.
	for _, dst := range []netip.AddrPort{routeRaw, netip.MustParseAddrPort("239.255.78.1:17803"), netip.MustParseAddrPort("127.0.0.1:17802")} {
		if err := v.VerifyRaw(b, dst); !errors.Is(err, ErrBadTag) {
			t.Errorf("moved to %v: %v, want ErrBadTag", dst, err)
		}
	}
	j := s.SealJSON(AppendJSON(nil, baseHeader, "link", "x", nil), linkRaw)
	if err := v.VerifyRaw(j, linkRaw); err == nil {
		t.Error("a JSON frame verified as raw")
	}
	if err := v.VerifyJSON(j, linkRaw); err != nil {
		t.Errorf("JSON: %v", err)
	}
	if _, err := ParseJSON(j); err != nil {
		t.Errorf("a sealed JSON frame is not a JSON frame: %v", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(j, &obj); err != nil || obj["auth"] != fmt.Sprintf("%08x:%s", 1, j[len(j)-jsonTagAt:len(j)-3]) {
		t.Errorf("stdlib JSON: %v %v", obj["auth"], err)
	}
	if NewVerifier(nil).VerifyRaw(b, linkRaw) != ErrUnknownKey {
		t.Error("an empty verifier accepted a key")
	}
}

func TestAuthAllocatesNothing(t *testing.T) {
	s := NewSigner(key1)
	v := NewVerifier([]Key{key1})
	b := s.AppendRaw(nil, baseHeader, nlPayload, linkRaw)
	hdr := b[:HeaderLen]
	parts := [][]byte{hdr, nlPayload}
	var tr [TrailerLen]byte
	js := s.SealJSON(AppendJSON(nil, baseHeader, "link", "x", nil), linkRaw)
	buf := make([]byte, 0, 4096)
	for name, f := range map[string]func(){
		"RawTrailer": func() { s.RawTrailer(&tr, linkRaw, parts) },
		"VerifyRaw":  func() { _ = v.VerifyRaw(b, linkRaw) },
		"VerifyJSON": func() { _ = v.VerifyJSON(js, linkRaw) },
		"SealJSON":   func() { _ = s.SealJSON(AppendJSON(buf[:0], baseHeader, "link", "x", nil), linkRaw) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

func FuzzVerify(f *testing.F) {
	s := NewSigner(key1)
	f.Add(s.AppendRaw(nil, baseHeader, nlPayload, linkRaw))
	f.Add(s.SealJSON(AppendJSON(nil, baseHeader, "link", "x", nil), linkRaw))
	f.Add([]byte(`,"auth":"00000001:zz"}` + "\n"))
	v := NewVerifier([]Key{key1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rawErr := v.VerifyRaw(b, linkRaw)
		jsonErr := v.VerifyJSON(b, linkRaw)
		id, tag, ok := RawTrailerOf(b)
		if ok && (len(tag) != TagLen || id != binaryID(b)) {
			t.Fatalf("RawTrailerOf: %d %x", id, tag)
		}
		// Only what the key signed verifies: re-signing the bytes must
		// give the very trailer that passed.
		if rawErr == nil {
			var tr [TrailerLen]byte
			s.RawTrailer(&tr, linkRaw, [][]byte{b[:len(b)-TrailerLen]})
			if !bytes.Equal(tr[:], b[len(b)-TrailerLen:]) {
				t.Fatal("verified a trailer the signer would not write")
			}
		}
		if jsonErr == nil && !bytes.HasSuffix(b, []byte("\"}\n")) {
			t.Fatal("verified a JSON frame without its trailer")
		}
	})
}

func binaryID(b []byte) uint32 {
	t := b[len(b)-TrailerLen:]
	return uint32(t[0])<<24 | uint32(t[1])<<16 | uint32(t[2])<<8 | uint32(t[3])
}

func BenchmarkRawTrailer(b *testing.B) {
	s := NewSigner(key1)
	hdr := make([]byte, HeaderLen)
	baseHeader.Put(hdr)
	parts := [][]byte{hdr, nlPayload}
	var tr [TrailerLen]byte
	b.SetBytes(int64(HeaderLen + len(nlPayload)))
	for b.Loop() {
		s.RawTrailer(&tr, linkRaw, parts)
	}
}

func BenchmarkVerifyRaw(b *testing.B) {
	s := NewSigner(key1)
	v := NewVerifier([]Key{key2, key1})
	d := s.AppendRaw(nil, baseHeader, nlPayload, linkRaw)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if v.VerifyRaw(d, linkRaw) != nil {
			b.Fatal("bad")
		}
	}
}
