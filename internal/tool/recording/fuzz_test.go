package recording

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nlmcast/nlmcast/capture"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/kernel"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// FuzzRead feeds any file to what a replay does with a recording: Read
// (comments, foreign captures split into messages), then for each item
// the state tables (apply, Dump) and a fragment's padding. A hostile
// file gives an error, never a panic, and nothing larger than itself.
// Seeds: testdata/real.pcapng (nlmcast record of links, addresses,
// routes and neighbours in a namespace), testdata/foreign.pcap (the same,
// as plain pcap with no comments, as tcpdump -i nlmon0 writes), and a
// recording with notes.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"testdata/real.pcapng", "testdata/foreign.pcap"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var notes bytes.Buffer
	w, err := capture.NewWriter(&notes, App)
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range []Meta{
		{Stream: "link", Kind: frame.KindOverrun, Group: 1, Epoch: 7, Seq: 1, Time: 5},
		{Stream: "ipv4-ifaddr", Kind: frame.KindOverrun, Group: 5, Epoch: 7, Seq: 1, Time: 5},
		{Stream: "link", Notice: "restart", Epoch: 8, PrevEpoch: 7},
	} {
		if err := w.WriteNote(m.Time, m.Comment()); err != nil {
			f.Fatal(err)
		}
	}
	ev := Meta{Stream: "link", Kind: frame.KindEvent, Group: 1, Epoch: 8, Seq: 1, Time: 6, Flags: frame.FlagNSID, NSID: 3}
	if err := w.WriteMessage(0, 6, linkMsg(4), ev.Comment()); err != nil {
		f.Fatal(err)
	}
	f.Add(notes.Bytes())

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		name := filepath.Join(dir, "fuzz.pcapng")
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
		d := newStateDumper()
		var sk Skipped
		err := Read([]string{name}, &sk, func(it *Item) error {
			if _, ok := streams.Lookup(it.Stream.Name); !ok {
				t.Fatalf("an item of no known stream: %+v", it.Stream)
			}
			if it.Overrun != (it.Data == nil) {
				t.Fatalf("an item with data %x, overrun %v", it.Data, it.Overrun)
			}
			if len(it.Data) > len(data) {
				t.Fatalf("a message of %d bytes from %d", len(it.Data), len(data))
			}
			d.apply(it)
			if it.Data != nil {
				p := pad(it.Stream.Family, it.Data)
				if len(p) < max(len(it.Data), FragmentPad-3) {
					t.Fatalf("pad made %d bytes of %d", len(p), len(it.Data))
				}
				if it.Stream.Family == streams.FamilyUevent {
					if !bytes.HasPrefix(p, it.Data) {
						t.Fatalf("pad changed a uevent")
					}
				} else if int(binary.NativeEndian.Uint32(p)) != len(p) || !bytes.Equal(p[4:len(it.Data)], it.Data[4:]) {
					t.Fatalf("pad made %d bytes, its header says %d, or changed the message", len(p), binary.NativeEndian.Uint32(p))
				}
			}
			return nil
		})
		var te *TruncatedError
		if errors.As(err, &te) && te.Packets < 0 {
			t.Fatalf("%v", err)
		}
		// The tables answer a dump with entries each of a key.
		for g := range d.tables {
			req, ok := kernel.DumpFor(g)
			if !ok {
				continue
			}
			msgs, _, err := d.Dump(req)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if _, remove, ok := receiver.StateKey(m); !ok || remove {
					t.Fatalf("a dumped entry of no key (or a removal): %x", m)
				}
			}
		}
	})
}

// TestReadSeeds: the seeds of FuzzRead read whole. The plain pcap copy
// (no comments) gives the same messages on the same streams, found from
// their types.
func TestReadSeeds(t *testing.T) {
	read := func(name string) (ss []string, msgs [][]byte) {
		var sk Skipped
		if err := Read([]string{name}, &sk, func(it *Item) error {
			ss = append(ss, it.Stream.Name)
			msgs = append(msgs, bytes.Clone(it.Data))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if sk != (Skipped{}) {
			t.Errorf("%s: skipped %+v", name, sk)
		}
		return ss, msgs
	}
	ss, msgs := read("testdata/real.pcapng")
	fss, fmsgs := read("testdata/foreign.pcap")
	if len(ss) != 15 || !equal(ss, fss) {
		t.Errorf("streams of the recording %v, of its pcap copy %v; want 15, the same", ss, fss)
	}
	for i := range min(len(msgs), len(fmsgs)) {
		if !bytes.Equal(msgs[i], fmsgs[i]) {
			t.Errorf("message %d differs in the pcap copy", i)
		}
	}
}
