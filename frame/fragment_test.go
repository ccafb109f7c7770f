package frame

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// fragVector is testdata/fragments.json: datagrams that reassemble into
// one message, for decoders in other languages.
type fragVector struct {
	Datagrams [][]byte `json:"-"`
	Hex       []string `json:"datagrams_hex"`
	Message   string   `json:"message_hex"`
}

// fragmentVector splits a 40-byte netlink-like message into pieces of 24
// bytes; real bridges use MaxPiece, but any piece size is valid.
func fragmentVector() fragVector {
	msg := make([]byte, 40)
	binary.LittleEndian.PutUint32(msg, 40)
	binary.LittleEndian.PutUint16(msg[4:], 24) // RTM_NEWROUTE
	for i := 16; i < 40; i++ {
		msg[i] = byte(i)
	}
	h := baseHeader
	h.Kind, h.Group, h.Seq = KindFragment, 7, 50
	var v fragVector
	Split(msg, 24, func(f FragmentHeader, piece []byte) {
		p := make([]byte, FragmentHeaderLen, FragmentHeaderLen+len(piece))
		f.Put(p)
		d := Append(nil, h, append(p, piece...))
		v.Datagrams = append(v.Datagrams, d)
		v.Hex = append(v.Hex, hex.EncodeToString(d))
	})
	v.Message = hex.EncodeToString(msg)
	return v
}

func TestFragmentVector(t *testing.T) {
	want := fragmentVector()
	var got fragVector
	golden(t, "fragments.json", want, &got)
	if len(got.Hex) != 2 || got.Message != want.Message {
		t.Fatalf("frozen vector differs from the encoder: %+v", got)
	}
	var r Reassembler
	for i, x := range got.Hex {
		if x != want.Hex[i] {
			t.Fatalf("fragment %d differs from the encoder", i)
		}
		d, _ := hex.DecodeString(x)
		h, p, err := Parse(d)
		if err != nil || h.Kind != KindFragment {
			t.Fatalf("fragment %d: %v %v", i, h.Kind, err)
		}
		msg, ok, _, err := r.Add(h, p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if ok != (i == 1) {
			t.Fatalf("complete after fragment %d: %v", i, ok)
		}
		if ok && hex.EncodeToString(msg) != got.Message {
			t.Fatalf("reassembled %x, want %s", msg, got.Message)
		}
	}
}

// fragments returns the raw fragment frames of msg.
func fragments(h Header, msg []byte, piece int) [][]byte {
	var out [][]byte
	h.Kind = KindFragment
	Split(msg, piece, func(f FragmentHeader, p []byte) {
		var fh [FragmentHeaderLen]byte
		f.Put(fh[:])
		out = append(out, Append(nil, h, append(fh[:], p...)))
	})
	return out
}

func addAll(t *testing.T, r *Reassembler, ds [][]byte) ([]byte, bool, error) {
	t.Helper()
	var msg []byte
	var done bool
	var err error
	for _, d := range ds {
		h, p, perr := Parse(d)
		if perr != nil {
			t.Fatal(perr)
		}
		msg, done, _, err = r.Add(h, p, time.Now())
		if err != nil {
			return nil, false, err
		}
	}
	return msg, done, err
}

func TestReassembly(t *testing.T) {
	big := make([]byte, 3*MaxPiece+100)
	for i := range big {
		big[i] = byte(i * 7)
	}
	h := baseHeader
	ds := fragments(h, big, MaxPiece)
	if len(ds) != 4 {
		t.Fatalf("%d fragments", len(ds))
	}
	for _, d := range ds {
		if len(d) > MaxDatagram {
			t.Fatalf("fragment of %d bytes exceeds a datagram", len(d))
		}
	}
	t.Run("in order", func(t *testing.T) {
		var r Reassembler
		msg, ok, err := addAll(t, &r, ds)
		if err != nil || !ok || !bytes.Equal(msg, big) {
			t.Fatalf("ok=%v err=%v equal=%v", ok, err, bytes.Equal(msg, big))
		}
	})
	t.Run("swapped", func(t *testing.T) {
		var r Reassembler
		msg, ok, err := addAll(t, &r, [][]byte{ds[1], ds[0], ds[3], ds[2]})
		if err != nil || !ok || !bytes.Equal(msg, big) {
			t.Fatalf("ok=%v err=%v", ok, err)
		}
	})
	t.Run("too far ahead", func(t *testing.T) {
		// A piece two datagrams beyond what arrived would need memory
		// nobody sent: the message is lost, and says so once.
		var r Reassembler
		_, _, err := addAll(t, &r, [][]byte{ds[0], ds[3]})
		if !errors.Is(err, ErrFragmentOrder) || !r.Pending() {
			t.Fatalf("err %v, pending %v", err, r.Pending())
		}
		if _, _, err := addAll(t, &r, [][]byte{ds[1], ds[2]}); !errors.Is(err, ErrFragmentOrder) {
			t.Fatalf("a piece of the lost message: err %v", err)
		}
		if seq, exp := r.Expire(time.Now().Add(time.Hour)); !exp || seq != h.Seq {
			t.Fatalf("expire: %d %v", seq, exp)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		var r Reassembler
		_, _, err := addAll(t, &r, [][]byte{ds[0], ds[0]})
		if !errors.Is(err, ErrFragmentDup) {
			t.Fatalf("err %v", err)
		}
		msg, ok, err := addAll(t, &r, ds[1:])
		if err != nil || !ok || !bytes.Equal(msg, big) {
			t.Fatalf("a duplicate spoiled the message: ok=%v err=%v", ok, err)
		}
	})
	t.Run("abandoned by the next message", func(t *testing.T) {
		var r Reassembler
		addAll(t, &r, ds[:2])
		next := h
		next.Seq++
		small := fragments(next, []byte("0123456789"), 4)
		hd, p, _ := Parse(small[0])
		_, _, abandoned, err := r.Add(hd, p, time.Now())
		if err != nil || !abandoned {
			t.Fatalf("abandoned=%v err=%v", abandoned, err)
		}
		msg, ok, err := addAll(t, &r, small[1:])
		if err != nil || !ok || string(msg) != "0123456789" {
			t.Fatalf("next message: %q %v %v", msg, ok, err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		r := Reassembler{Timeout: time.Second}
		hd, p, _ := Parse(ds[0])
		t0 := time.Now()
		r.Add(hd, p, t0)
		if _, exp := r.Expire(t0.Add(500 * time.Millisecond)); exp {
			t.Fatal("expired early")
		}
		seq, exp := r.Expire(t0.Add(time.Second))
		if !exp || seq != h.Seq || r.Pending() {
			t.Fatalf("expire: %d %v", seq, exp)
		}
	})
	t.Run("too large", func(t *testing.T) {
		// Refused, held in no buffer, and reported lost (here: abandoned
		// by the next message) once, not once per fragment.
		r := Reassembler{MaxMessage: 2 * MaxPiece}
		for _, d := range ds {
			hd, p, _ := Parse(d)
			if _, _, abandoned, err := r.Add(hd, p, time.Now()); !errors.Is(err, ErrFragmentTooLarge) || abandoned {
				t.Fatalf("err %v, abandoned %v", err, abandoned)
			}
			if r.Held() > 0 {
				t.Fatalf("holds %d bytes for a refused message", r.Held())
			}
		}
		next := h
		next.Seq++
		small := fragments(next, []byte("0123456789"), 4)
		hd, p, _ := Parse(small[0])
		if _, _, abandoned, err := r.Add(hd, p, time.Now()); err != nil || !abandoned {
			t.Fatalf("next message: abandoned %v, err %v", abandoned, err)
		}
	})
	t.Run("lying offsets", func(t *testing.T) {
		lie := bytes.Clone(ds[1])
		binary.BigEndian.PutUint32(lie[HeaderLen+4:], 0) // piece 1 claims offset 0
		for _, order := range [][][]byte{{ds[0], lie}, {lie}, {ds[1], lie}} {
			var r Reassembler
			_, _, err := addAll(t, &r, order)
			if !errors.Is(err, ErrFragmentMismatch) {
				t.Errorf("overlapping piece accepted: %v", err)
			}
		}
		short := bytes.Clone(ds[3])
		binary.BigEndian.PutUint32(short[HeaderLen:], uint32(len(big)+1)) // total disagrees
		var r Reassembler
		if _, _, err := addAll(t, &r, [][]byte{ds[0], short}); !errors.Is(err, ErrFragmentMismatch) {
			t.Errorf("disagreeing total accepted: %v", err)
		}
	})
	t.Run("malformed headers", func(t *testing.T) {
		for _, p := range [][]byte{
			nil, make([]byte, 11),
			{0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0},            // count 0
			{0, 0, 0, 10, 0, 0, 0, 0, 0, 2, 0, 2},            // index == count
			{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 'b'},   // piece beyond total
			{0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1}, // offset overflow
		} {
			var r Reassembler
			if _, _, _, err := r.Add(h, p, time.Now()); !errors.Is(err, ErrFragment) {
				t.Errorf("% x: err %v", p, err)
			}
		}
	})
}

// TestReassemblerMemory: what a Reassembler holds follows the bytes that
// arrived, not the totals fragments declare, and a large buffer goes once
// its message is done with.
func TestReassemblerMemory(t *testing.T) {
	h := baseHeader
	h.Kind = KindFragment
	// first returns the first fragment of a message of total bytes, with
	// a piece of n bytes.
	first := func(seq uint64, total, n int) (Header, []byte) {
		hd := h
		hd.Seq = seq
		p := make([]byte, FragmentHeaderLen+n)
		f := FragmentHeader{Total: uint32(total), Count: uint16((total + n - 1) / n)}
		f.Put(p)
		return hd, p
	}
	t.Run("forged first fragments", func(t *testing.T) {
		// One tiny datagram per message, each declaring the largest
		// total accepted, on many streams: nothing large is held.
		rs := make([]Reassembler, 64)
		for seq := uint64(1); seq <= 8; seq++ {
			for i := range rs {
				hd, p := first(seq, MaxRawMessage, 16)
				rs[i].MaxMessage = MaxRawMessage
				if _, _, _, err := rs[i].Add(hd, p, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
		}
		held := 0
		for i := range rs {
			held += rs[i].Held()
		}
		if held > len(rs)*(64+8*1024) {
			t.Fatalf("%d streams hold %d bytes for 16-byte pieces", len(rs), held)
		}
	})
	t.Run("growth follows the pieces", func(t *testing.T) {
		// A forger that sends real pieces gets at most twice what it
		// sent held, and never more than MaxMessage.
		var r Reassembler
		big := make([]byte, MaxRawMessage)
		var got int
		for i, d := range fragments(h, big, MaxPiece) {
			if i == 8 {
				break
			}
			hd, p, _ := Parse(d)
			if _, _, _, err := r.Add(hd, p, time.Now()); err != nil {
				t.Fatal(err)
			}
			got += len(p) - FragmentHeaderLen
			if held := r.Held() - 8*cap(r.seen); held > 2*got || held > MaxRawMessage {
				t.Fatalf("after %d bytes, holds %d", got, held)
			}
		}
	})
	big := make([]byte, 4*MaxPiece)
	ds := fragments(h, big, MaxPiece)
	small := keepBuffer + 8*1024
	t.Run("released on completion", func(t *testing.T) {
		var r Reassembler
		if _, ok, err := addAll(t, &r, ds); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if r.Held() > small {
			t.Fatalf("holds %d bytes after its message completed", r.Held())
		}
	})
	t.Run("released when abandoned", func(t *testing.T) {
		var r Reassembler
		addAll(t, &r, ds[:3])
		hd, p := first(h.Seq+1, 100, 10)
		if _, _, abandoned, err := r.Add(hd, p, time.Now()); !abandoned || err != nil {
			t.Fatal(abandoned, err)
		}
		if r.Held() > small {
			t.Fatalf("holds %d bytes after its message was abandoned", r.Held())
		}
	})
	t.Run("released on timeout", func(t *testing.T) {
		var r Reassembler
		addAll(t, &r, ds[:3])
		if _, exp := r.Expire(time.Now().Add(time.Hour)); !exp {
			t.Fatal("not expired")
		}
		if r.Held() > small {
			t.Fatalf("holds %d bytes after its message expired", r.Held())
		}
	})
	t.Run("released on reset", func(t *testing.T) {
		var r Reassembler
		addAll(t, &r, ds[:3])
		r.Reset()
		if r.Held() > small || r.Pending() {
			t.Fatalf("holds %d bytes after a reset, pending %v", r.Held(), r.Pending())
		}
	})
}

// TestReassemblyOfUsualSizeAllocatesNothing: a message of the usual
// fragmented size (the kernel's largest route) reuses the kept buffer.
func TestReassemblyOfUsualSizeAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	h := baseHeader
	msg := make([]byte, 65552)
	var r Reassembler
	if _, ok, err := addAll(t, &r, fragments(h, msg, MaxPiece)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ds := fragments(h, msg, MaxPiece)
	if n := testing.AllocsPerRun(10, func() {
		h.Seq++
		for _, d := range ds {
			fh, p, _ := Parse(d)
			fh.Seq = h.Seq
			r.Add(fh, p, time.Now())
		}
	}); n != 0 {
		t.Errorf("%v allocations per reassembled message", n)
	}
}

func TestJSONFragments(t *testing.T) {
	h := baseHeader
	h.Flags = FlagDump
	inner := AppendJSON(nil, h, "ipv4-route", "big", []byte(`{"x":"`+string(bytes.Repeat([]byte("y"), 100000))+`"}`))
	var r Reassembler
	var msg []byte
	var done bool
	n := Split(inner, JSONMaxPiece, func(f FragmentHeader, piece []byte) {
		d := AppendJSONFragment(nil, h, "ipv4-route", f, piece)
		if len(d) > MaxDatagram {
			t.Fatalf("JSON fragment of %d bytes", len(d))
		}
		fr, err := ParseJSON(d)
		if err != nil {
			t.Fatal(err)
		}
		fh, _ := fr.Header()
		if fh.Kind != KindFragment || fh.Flags != FlagDump || fh.Seq != h.Seq {
			t.Fatalf("fragment header %+v", fh)
		}
		var err2 error
		msg, done, _, err2 = r.AddPiece(fh, *fr.Fragment, fr.Data, time.Now())
		if err2 != nil {
			t.Fatal(err2)
		}
	})
	if n != 3 || !done || !bytes.Equal(msg, inner) {
		t.Fatalf("n=%d done=%v equal=%v", n, done, bytes.Equal(msg, inner))
	}
	if _, err := ParseJSON(msg); err != nil {
		t.Fatal(err)
	}
}

func FuzzReassemble(f *testing.F) {
	v := fragmentVector()
	f.Add(v.Datagrams[0], v.Datagrams[1], v.Datagrams[0])
	f.Add(v.Datagrams[1], v.Datagrams[0], []byte{})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		r := Reassembler{MaxMessage: 1 << 16}
		for _, d := range [][]byte{a, b, c} {
			h, p, err := Parse(d)
			if err != nil {
				continue
			}
			msg, ok, _, err := r.Add(h, p, time.Unix(0, h.Time))
			if cap(r.buf) > 1<<16 {
				t.Fatalf("holds %d bytes, more than MaxMessage", cap(r.buf))
			}
			if ok {
				if err != nil {
					t.Fatal("complete with an error")
				}
				fh, _, _ := ParseFragment(p)
				if len(msg) != int(fh.Total) {
					t.Fatalf("message of %d bytes, total says %d", len(msg), fh.Total)
				}
			}
			r.Expire(time.Unix(0, h.Time).Add(time.Minute))
		}
	})
}
