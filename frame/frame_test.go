package frame

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the vector table")

// Describe is the reference output for one datagram, which the C and Python
// decoders in examples/ print too (see PROTOCOL.md, "Test vectors").
func Describe(b []byte) string {
	h, payload, err := Parse(b)
	if err != nil {
		return "error " + ErrorToken(err)
	}
	nsid := "" // only with FlagNSID: the word is ignored without it
	if h.Flags&FlagNSID != 0 {
		nsid = fmt.Sprintf(" nsid=%d", h.NSID)
	}
	return fmt.Sprintf("ok kind=%d flags=%d%s family=%d group=%d epoch=%016x seq=%d time_ns=%d len=%d payload=%s",
		h.Kind, h.Flags, nsid, h.Family, h.Group, h.Epoch, h.Seq, h.Time, h.PayloadLen, hex.EncodeToString(payload))
}

// vector is one entry of testdata/vectors.json.
type vector struct {
	Name     string `json:"name"`
	Datagram string `json:"datagram_hex"`
	Expect   string `json:"expect"`
}

// A netlink RTM_NEWLINK header (little-endian, as on x86) and ifinfomsg, as
// a payload that looks like the real thing.
var nlPayload = func() []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b[0:], 32)  // nlmsg_len
	binary.LittleEndian.PutUint16(b[4:], 16)  // RTM_NEWLINK
	binary.LittleEndian.PutUint32(b[20:], 7)  // ifi_index
	binary.LittleEndian.PutUint32(b[24:], 69) // IFF_UP|IFF_LOOPBACK|IFF_RUNNING... (any)
	return b
}()

var baseHeader = Header{Kind: KindEvent, Family: 0, Group: 1, Epoch: 0x0123456789abcdef, Seq: 42, Time: 1763704800123456789}

func mutate(b []byte, f func([]byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

// vectorTable builds every vector. The checked-in file freezes the format:
// a change of the encoder shows up as a difference from it.
func vectorTable() []vector {
	hb := baseHeader
	hb.Kind, hb.Group, hb.Seq = KindHeartbeat, 5, 1
	heartbeat := Append(nil, hb, nil)
	hu := baseHeader
	hu.Kind = 200
	unknownKind := Append(nil, hu, []byte{1, 2, 3})
	// A longer header (a future extension): receivers must honour it.
	longHdr := make([]byte, HeaderLen+4)
	baseHeader.Put(longHdr)
	binary.BigEndian.PutUint16(longHdr[OffHeaderLen:], HeaderLen+4)
	binary.BigEndian.PutUint32(longHdr[OffPayloadLen:], 2)
	longHdr = append(longHdr, 0xaa, 0xbb)

	ctl := func(k Kind, seq uint64) []byte {
		h := baseHeader
		h.Kind, h.Seq = k, seq
		return Append(nil, h, nil)
	}
	dump := baseHeader
	dump.Flags, dump.Seq = FlagDump, 44
	req := Header{Kind: KindRequest, Group: 1}
	dropped := baseHeader // a reload dropped the stream: the bridge goes on
	dropped.Kind, dropped.Flags, dropped.Seq = KindGoodbye, FlagDropped, 46
	peer := baseHeader
	peer.Flags, peer.NSID = FlagNSID, 42
	negPeer := peer
	negPeer.NSID = -7 // signed: decoders must not print 4294967289
	good := Append(nil, baseHeader, nlPayload)
	// An id in the word without the flag: ignored (bridges before the flag wrote 0).
	stray := mutate(good, func(b []byte) { binary.BigEndian.PutUint32(b[OffNSID:], 42) })
	uevent := Header{Kind: KindEvent, Family: 15, Group: 1, Epoch: baseHeader.Epoch, Seq: 3, Time: baseHeader.Time}
	ueventPayload := []byte("add@/devices/virtual/net/v0\x00ACTION=add\x00DEVPATH=/devices/virtual/net/v0\x00SUBSYSTEM=net\x00SEQNUM=4242\x00")
	frags := fragmentVector().Datagrams

	raw := []struct {
		name string
		b    []byte
	}{
		{"event-link", good},
		{"heartbeat-empty-payload", heartbeat},
		{"overrun", ctl(KindOverrun, 43)},
		{"resync-begin", ctl(KindResyncBegin, 44)},
		{"dump-event", Append(nil, dump, nlPayload)},
		{"resync-end", ctl(KindResyncEnd, 46)},
		{"goodbye", ctl(KindGoodbye, 46)},
		{"goodbye-stream-dropped", Append(nil, dropped, nil)},
		{"fragment-0-of-2", frags[0]},
		{"fragment-1-of-2", frags[1]},
		{"request-link", Append(nil, req, nil)},
		{"event-from-peer-namespace-nsid-42", Append(nil, peer, nlPayload)},
		{"event-from-peer-namespace-nsid-negative", Append(nil, negPeer, nlPayload)},
		{"nsid-without-flag-ignored", stray},
		{"event-uevent", Append(nil, uevent, ueventPayload)},
		{"unknown-kind-still-parses", unknownKind},
		{"longer-header", longHdr},
		{"short", good[:10]},
		{"header-only-truncated", good[:HeaderLen-1]},
		{"bad-magic", mutate(good, func(b []byte) { b[0] = 'X' })},
		{"bad-version", mutate(good, func(b []byte) { b[OffVersion] = 2 })},
		{"header-length-too-small", mutate(good, func(b []byte) { binary.BigEndian.PutUint16(b[OffHeaderLen:], 40) })},
		{"header-length-beyond-datagram", mutate(good, func(b []byte) { binary.BigEndian.PutUint16(b[OffHeaderLen:], 0xffff) })},
		{"payload-length-lies-high", mutate(good, func(b []byte) { binary.BigEndian.PutUint32(b[OffPayloadLen:], 0xffffffff) })},
		{"payload-length-lies-low", mutate(good, func(b []byte) { binary.BigEndian.PutUint32(b[OffPayloadLen:], 4) })},
		{"auth-flag-but-no-trailer", mutate(good, func(b []byte) { binary.BigEndian.PutUint16(b[OffFlags:], uint16(FlagAuth)) })},
		{"empty", nil},
	}
	var out []vector
	for _, r := range raw {
		out = append(out, vector{Name: r.name, Datagram: hex.EncodeToString(r.b), Expect: Describe(r.b)})
	}
	return out
}

func TestNSIDRoundTrip(t *testing.T) {
	h := baseHeader
	h.Flags, h.NSID = FlagNSID, -7
	got, _, err := Parse(Append(nil, h, nlPayload))
	if err != nil || got.NSID != -7 || got.Flags&FlagNSID == 0 {
		t.Fatalf("Parse = %+v, %v", got, err)
	}
	// Without the flag the field is written as zero and read as zero.
	h.Flags = 0
	b := Append(nil, h, nlPayload)
	if got, _, _ := Parse(b); got.NSID != 0 || binary.BigEndian.Uint32(b[OffNSID:]) != 0 {
		t.Fatalf("NSID without FlagNSID: %+v", got)
	}
	j := AppendJSON(nil, Header{Kind: KindEvent, Flags: FlagNSID, NSID: 42}, "link", "", nil)
	f, err := ParseJSON(j)
	if err != nil || f.NSID == nil || *f.NSID != 42 {
		t.Fatalf("JSON nsid: %s %v", j, err)
	}
	if h, _ := f.Header(); h.Flags&FlagNSID == 0 || h.NSID != 42 {
		t.Fatalf("JSON header: %+v", h)
	}
}

// golden reads testdata/name into got, after writing want there with
// -update: the checked-in files freeze the format.
func golden(t *testing.T, name string, want, got any) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		b, err := json.MarshalIndent(want, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./frame -update)", err)
	}
	if err := json.Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
}

func TestVectors(t *testing.T) {
	want := vectorTable()
	var got []vector
	golden(t, "vectors.json", want, &got)
	if len(got) != len(want) {
		t.Fatalf("testdata has %d vectors, table %d", len(got), len(want))
	}
	for i, v := range got {
		d, err := hex.DecodeString(v.Datagram)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if g := Describe(d); g != v.Expect {
			t.Errorf("%s: decoder says\n  %s\nvector expects\n  %s", v.Name, g, v.Expect)
		}
		if v != want[i] {
			t.Errorf("%s: encoder output differs from the frozen vector:\n  %+v\n  %+v", v.Name, want[i], v)
		}
	}
	okCount := 0
	for _, v := range got {
		if strings.HasPrefix(v.Expect, "ok ") {
			okCount++
		}
	}
	if okCount != 17 || len(got)-okCount != 10 {
		t.Errorf("want 17 valid and 10 invalid vectors, got %d and %d", okCount, len(got)-okCount)
	}
}

func TestRoundTrip(t *testing.T) {
	payload := []byte("netlink message bytes")
	b := Append(nil, baseHeader, payload)
	if len(b) != HeaderLen+len(payload) {
		t.Fatalf("len %d", len(b))
	}
	h, p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := baseHeader
	want.PayloadLen = uint32(len(payload))
	if h != want || string(p) != string(payload) {
		t.Fatalf("got %+v %q, want %+v", h, p, want)
	}
	// Fixed offsets, as documented for BPF filters.
	if string(b[:4]) != "NLMC" || b[OffVersion] != 1 || b[OffKind] != 1 ||
		binary.BigEndian.Uint32(b[OffGroup:]) != 1 || binary.BigEndian.Uint64(b[OffSeq:]) != 42 {
		t.Fatalf("field offsets moved: % x", b[:HeaderLen])
	}
}

func TestParseErrors(t *testing.T) {
	good := Append(nil, baseHeader, nlPayload)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:3], ErrShort},
		{"magic", mutate(good, func(b []byte) { b[1] = 0 }), ErrMagic},
		{"version", mutate(good, func(b []byte) { b[OffVersion] = 0 }), ErrVersion},
		{"hdrlen", mutate(good, func(b []byte) { b[OffHeaderLen+1] = 1 }), ErrHeaderLen},
		{"length", good[:len(good)-1], ErrLength},
		{"auth-flag-but-no-trailer", mutate(good, func(b []byte) { b[OffFlags+1] = 1 }), ErrLength},
	} {
		if _, _, err := Parse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		h := baseHeader // ParseInto must not leave a stale header behind
		if p, err := ParseInto(&h, tc.b); !errors.Is(err, tc.want) || p != nil || h != (Header{}) {
			t.Errorf("%s: ParseInto: %v, payload %v, header %+v; want %v, nil, zero", tc.name, err, p, h, tc.want)
		}
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	good := Append(nil, baseHeader, nlPayload)
	bad := mutate(good, func(b []byte) { b[0] = 0 })
	var hb [HeaderLen]byte
	allocs := testing.AllocsPerRun(1000, func() {
		Parse(good)
		Parse(bad)
		var h Header
		ParseInto(&h, good)
		baseHeader.Put(hb[:])
	})
	if allocs != 0 {
		t.Fatalf("Parse/Put allocate %v times per run", allocs)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	event := []byte(`{"type":"RTM_NEWLINK","link":{"name":"eth\"0"}}`)
	b := AppendJSON(nil, baseHeader, "link", "new link 7: eth\"0 \x01 \xff", event)
	if b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("not one line: %q", b)
	}
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	f, err := ParseJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Header()
	if err != nil {
		t.Fatal(err)
	}
	want := baseHeader
	if h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	if f.Stream != "link" || f.Summary != "new link 7: eth\"0 \x01 \uFFFD" || string(f.Event) != string(event) {
		t.Fatalf("fields: %+v", f)
	}
	if !f.Time.Equal(time.Unix(0, baseHeader.Time)) {
		t.Fatalf("time %v", f.Time)
	}
	if f.Epoch != "0123456789abcdef" {
		t.Fatalf("epoch %q", f.Epoch)
	}
}

func TestParseJSONRejects(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[]`, `{"v":2,"kind":"event","epoch":"00"}`,
		`{"v":1,"kind":"nonsense","epoch":"00"}`, `{"v":1,"kind":"event","epoch":"xyz"}`,
	} {
		if _, err := ParseJSON([]byte(in)); err == nil {
			t.Errorf("ParseJSON(%q) accepted", in)
		}
	}
}

func TestKindNames(t *testing.T) {
	for k := KindEvent; k <= KindRequest; k++ {
		back, ok := ParseKind(k.String())
		if !ok || back != k {
			t.Errorf("kind %d: %q -> %d %v", k, k.String(), back, ok)
		}
	}
	if Kind(99).String() != "kind-99" {
		t.Errorf("unknown kind: %q", Kind(99).String())
	}
}

func FuzzParse(f *testing.F) {
	for _, v := range vectorTable() {
		b, _ := hex.DecodeString(v.Datagram)
		f.Add(b)
	}
	f.Add(NewSealer(key1).SealRaw(nil, baseHeader, nlPayload, linkRaw))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := Parse(b)
		if err != nil {
			if ErrorToken(err) == "unknown" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Whatever parses must re-encode to the same bytes (for the
		// standard header length), but for the NSID field when FlagNSID
		// is clear, which receivers ignore and senders zero, and the
		// trailer of an authenticated or sealed frame, which Parse skips.
		if int(binary.BigEndian.Uint16(b[OffHeaderLen:])) == HeaderLen {
			want := b
			switch {
			case h.Flags&FlagSealed != 0:
				want = b[:len(b)-SealedTrailerLen]
			case h.Flags&FlagAuth != 0:
				want = b[:len(b)-TrailerLen]
			}
			if h.Flags&FlagNSID == 0 {
				want = mutate(want, func(c []byte) { copy(c[OffNSID:OffNSID+4], []byte{0, 0, 0, 0}) })
			}
			if again := Append(nil, h, p); string(again) != string(want) {
				t.Fatalf("re-encoding differs:\n% x\n% x", again, want)
			}
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add(AppendJSON(nil, baseHeader, "link", "summary", []byte(`{"a":1}`)))
	f.Add([]byte(`{"v":1,"kind":"event","epoch":"ff","seq":1,"time":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseJSON(b)
		if err != nil {
			return
		}
		h, err := fr.Header()
		if err != nil {
			t.Fatalf("ParseJSON accepted a frame whose header does not decode: %v", err)
		}
		// Re-encoding an accepted frame must give valid JSON that parses
		// to the same header.
		again := AppendJSON(nil, h, fr.Stream, fr.Summary, fr.Event)
		if fr.Fragment != nil {
			again = AppendJSONFragment(nil, h, fr.Stream, *fr.Fragment, fr.Data)
		}
		fr2, err := ParseJSON(again)
		if err != nil {
			t.Fatalf("re-encoded frame does not parse: %v\n%s", err, again)
		}
		if h2, _ := fr2.Header(); h2.Seq != h.Seq || h2.Epoch != h.Epoch || h2.Kind != h.Kind || h2.Flags != h.Flags {
			t.Fatalf("header changed: %+v -> %+v", h, h2)
		}
	})
}

// A summary reaches terminals through plain JSON readers (socat, jq -r):
// every control character, C1 included, is escaped in the frame.
func TestJSONEscapesControls(t *testing.T) {
	b := AppendJSON(nil, baseHeader, "link", "a\x1b]0;x\x07b\u009b2Jc\x7fd", nil)
	for i, c := range string(b[:len(b)-1]) {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) {
			t.Fatalf("raw control %U at %d in %q", c, i, b)
		}
	}
	f, err := ParseJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Summary != "a\x1b]0;x\x07b\u009b2Jc\x7fd" {
		t.Fatalf("summary %q", f.Summary)
	}
}

// FuzzAppendJSONSummaryBytes checks that a summary in bytes is written as
// the same summary in a string is: valid JSON whatever the bytes, and
// the string back when it is valid UTF-8.
func FuzzAppendJSONSummaryBytes(f *testing.F) {
	f.Add("new link 7: eth\"0 \x01 \xff")
	f.Add("a\x1b]0;x\x07b\u009b2Jc\x7fd é \xe2\x82")
	f.Fuzz(func(t *testing.T, summary string) {
		s := AppendJSON(nil, baseHeader, "link", summary, nil)
		b := AppendJSON(nil, baseHeader, "link", []byte(summary), nil)
		if !bytes.Equal(s, b) {
			t.Fatalf("summary %q: %s from bytes, %s from a string", summary, b, s)
		}
		fr, err := ParseJSON(b)
		if err != nil {
			t.Fatalf("summary %q: %v", summary, err)
		}
		if utf8.ValidString(summary) && fr.Summary != summary {
			t.Fatalf("summary %q came back as %q", summary, fr.Summary)
		}
	})
}

func TestEpochsGrowWithStartTime(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	prev := NewEpoch(t0)
	if got := EpochStart(prev); !got.Equal(t0) {
		t.Fatalf("EpochStart = %v, want %v", got, t0)
	}
	for i := 1; i <= 100; i++ {
		e := NewEpoch(t0.Add(time.Duration(i) * time.Millisecond))
		if e <= prev {
			t.Fatalf("epoch %016x a millisecond after %016x is not larger", e, prev)
		}
		prev = e
	}
}
