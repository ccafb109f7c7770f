package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

type rec struct {
	note    bool
	family  uint16
	t       int64
	msg     string
	comment string
}

func writeAll(t testing.TB, rs []rec) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.note {
			err = w.WriteNote(r.t, r.comment)
		} else {
			err = w.WriteMessage(r.family, r.t, []byte(r.msg), r.comment)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if w.Written() != int64(b.Len()) {
		t.Fatalf("Written %d, wrote %d", w.Written(), b.Len())
	}
	return b.Bytes()
}

func readAll(data []byte) ([]Packet, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var ps []Packet
	for {
		p, err := r.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return ps, err
		}
		p.Data = bytes.Clone(p.Data)
		ps = append(ps, p)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		recs []rec
	}{
		{"empty", nil},
		{"one", []rec{{family: 0, t: 1700000000123456789, msg: "abcd"}}},
		{"odd lengths and comments", []rec{
			{family: 0, t: 1, msg: "a", comment: "x"},
			{family: 15, t: 2, msg: "add@/devices/x\x00ACTION=add\x00", comment: "stream=uevent"},
			{note: true, t: 3, comment: "kind=overrun"},
			{family: 0, t: -5, msg: "12345", comment: ""},
			{family: 16, t: 1 << 62, msg: "", comment: "empty message"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := readAll(writeAll(t, tc.recs))
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != len(tc.recs) {
				t.Fatalf("read %d packets, wrote %d", len(ps), len(tc.recs))
			}
			for i, r := range tc.recs {
				p := ps[i]
				link := uint16(LinkTypeNetlink)
				if r.note {
					link = LinkTypeUser0
				}
				if p.LinkType != link || p.Time != r.t || string(p.Data) != r.msg || p.Comment != r.comment || p.Family != r.family || p.Truncated {
					t.Errorf("packet %d: got %+v, want %+v", i, p, r)
				}
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	recs := []rec{{family: 0, t: 10, msg: "first message", comment: "c1"}, {note: true, t: 11, comment: "n"}, {family: 0, t: 12, msg: "second", comment: "c2"}}
	data := writeAll(t, recs)
	// Find the block boundaries: a cut there reads cleanly.
	whole := map[int]int{} // length -> packets read
	for cut := 0; cut <= len(data); cut++ {
		ps, err := readAll(data[:cut])
		switch {
		case cut == 0:
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("empty file: %v, want a FormatError", err)
			}
		case err == nil:
			whole[cut] = len(ps)
		case !errors.Is(err, ErrTruncated):
			t.Errorf("cut at %d: %v, want ErrTruncated", cut, err)
		}
		for i, p := range ps {
			if p.Time != recs[i].t {
				t.Errorf("cut at %d: packet %d time %d", cut, i, p.Time)
			}
		}
	}
	// SHB, IDB, EPB, IDB (notes), EPB, EPB: six block ends.
	if len(whole) != 6 || whole[len(data)] != 3 {
		t.Errorf("whole files: %v (of %d bytes)", whole, len(data))
	}
}

func TestDamaged(t *testing.T) {
	good := writeAll(t, []rec{{family: 0, t: 10, msg: "message", comment: "c"}})
	shb := int(binary.LittleEndian.Uint32(good[4:]))                        // where the first block after the section header starts
	last := len(good) - int(binary.LittleEndian.Uint32(good[len(good)-4:])) // where the packet block starts
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"magic", func(b []byte) { b[0] = 'x' }},
		{"byte order", func(b []byte) { b[8] = 0 }},
		{"huge block", func(b []byte) { binary.LittleEndian.PutUint32(b[shb+4:], 1<<30) }},
		{"odd block length", func(b []byte) { binary.LittleEndian.PutUint32(b[shb+4:], 30) }},
		{"lengths differ", func(b []byte) { b[len(b)-1] = 9 }},
		{"unknown interface", func(b []byte) { binary.LittleEndian.PutUint32(b[last+8:], 7) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(good)
			tc.edit(b)
			_, err := readAll(b)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FormatError", err)
			}
		})
	}
}

// TestPcap reads the old format, as tcpdump -i nlmon0 -w writes it.
func TestPcap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order binary.AppendByteOrder
		magic uint32
		frac  uint32
		want  int64
	}{
		{"microseconds little-endian", binary.LittleEndian, 0xa1b2c3d4, 5, 7e9 + 5000},
		{"nanoseconds big-endian", binary.BigEndian, 0xa1b23c4d, 5, 7e9 + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.order
			b := o.AppendUint32(nil, tc.magic)
			b = o.AppendUint16(b, 2)
			b = o.AppendUint16(b, 4)
			b = append(b, make([]byte, 8)...)
			b = o.AppendUint32(b, 262144)
			b = o.AppendUint32(b, LinkTypeNetlink)
			pkt := make([]byte, CookedLen)
			binary.BigEndian.PutUint16(pkt[2:], ARPHRDNetlink)
			binary.BigEndian.PutUint16(pkt[14:], 12)
			pkt = append(pkt, "msg!"...)
			b = o.AppendUint32(b, 7)
			b = o.AppendUint32(b, tc.frac)
			b = o.AppendUint32(b, uint32(len(pkt)))
			b = o.AppendUint32(b, uint32(len(pkt)))
			b = append(b, pkt...)
			ps, err := readAll(b)
			if err != nil || len(ps) != 1 {
				t.Fatalf("%v, %d packets", err, len(ps))
			}
			if p := ps[0]; p.Time != tc.want || p.Family != 12 || string(p.Data) != "msg!" {
				t.Errorf("got %+v", p)
			}
			if _, err := readAll(b[:len(b)-1]); !errors.Is(err, ErrTruncated) {
				t.Errorf("cut: %v", err)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	f.Add(writeAll(f, []rec{{family: 0, t: 10, msg: "message", comment: "c"}, {note: true, t: 11, comment: "n"}}))
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for range 10000 {
			p, err := r.Next()
			if err != nil {
				return
			}
			if len(p.Data) > len(data) {
				t.Fatalf("a packet of %d bytes from %d", len(p.Data), len(data))
			}
		}
	})
}
