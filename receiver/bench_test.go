package receiver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/keys"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// BenchmarkReadBatchRaw is the receiving end of the per-event path: a batch
// of 64 raw event frames of 124 bytes sent as the bridge sends them, read
// and checked. ns/op is per event.
func BenchmarkReadBatchRaw(b *testing.B) {
	for _, coalesce := range []bool{true, false} {
		name := map[bool]string{true: "coalesced", false: "one-by-one"}[coalesce]
		b.Run(name, func(b *testing.B) {
			m := testMap()
			addr, _ := streams.Lookup("ipv4-ifaddr")
			r, err := New(&Config{Streams: []streams.Stream{addr}, Map: m, NoSilentNotices: true,
				Mcast: &mcast.ReceiverConfig{AnySource: true, NoCoalesce: !coalesce}})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			snd, err := mcast.NewSender(&mcast.SenderConfig{EphemeralPort: true, WriteBuffer: 4 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer snd.Close()
			const batch = 64
			dst := net.UDPAddrFromAddrPort(m.Addr(addr, streams.Raw))
			bufs := make([][]byte, batch)
			ms := make([]ipv4.Message, batch)
			for i := range ms {
				ms[i] = ipv4.Message{Buffers: bufs[i : i+1], Addr: dst}
			}
			payload := make([]byte, 124-frame.HeaderLen)
			evs := make([]Event, batch)
			seq := uint64(0)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				stamp := time.Now().UnixNano()
				for i := range ms {
					seq++
					bufs[i] = frame.Append(bufs[i][:0], frame.Header{Kind: frame.KindEvent, Family: addr.Family, Group: addr.Group, Epoch: 1, Seq: seq, Time: stamp}, payload)
				}
				if err := snd.WriteBatch(ms); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < batch; {
					n, err := r.ReadBatch(evs)
					if err != nil {
						b.Fatal(err)
					}
					for i := range evs[:n] {
						if evs[i].IsNotice() {
							b.Fatalf("notice %v", evs[i].Notice)
						}
					}
					got += n
				}
				done += batch
			}
		})
	}
}

// BenchmarkDecodeRaw is ReadBatchRaw without the sockets: what a receiver
// spends per event in its own code (checking the frame, sequencing it,
// building the Event), which every receiving process pays for every event.
// ns/op is per event.
func BenchmarkDecodeRaw(b *testing.B) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	r, err := New(&Config{Streams: []streams.Stream{addr}, Map: m, NoSilentNotices: true,
		Mcast: &mcast.ReceiverConfig{AnySource: true}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ds := make([]mcast.Datagram, mcast.DefaultBatch)
	payload := make([]byte, 124-frame.HeaderLen)
	for i := range ds {
		h := frame.Header{Kind: frame.KindEvent, Family: addr.Family, Group: addr.Group, Epoch: 1, Time: time.Now().UnixNano()}
		ds[i] = mcast.Datagram{Group: m.Addr(addr, streams.Raw), Data: frame.Append(nil, h, payload)}
	}
	evs := make([]Event, len(ds))
	seq := uint64(0)
	decode := func(k int) {
		for i := range ds[:k] {
			seq++
			binary.BigEndian.PutUint64(ds[i].Data[frame.OffSeq:], seq)
		}
		now := time.Now()
		r.mu.Lock()
		r.out = evs[:0]
		for i := range ds[:k] {
			r.decode(&ds[i], now)
		}
		n := len(r.out)
		r.out = nil
		r.mu.Unlock()
		if n != k || evs[n-1].Header.Seq != seq || evs[n-1].IsNotice() {
			b.Fatalf("decoded %d of %d, last %+v", n, k, evs[n-1].Header)
		}
	}
	decode(len(ds)) // warm: the first pass touches every slot's memory
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(ds) {
		decode(min(len(ds), b.N-done))
	}
}

// TestReadBatchAllocatesNothing guards the receiving end of the raw path:
// reading, checking and sequencing a batch of event frames allocates
// nothing in steady state.
func TestReadBatchAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	checkReadBatchAllocs(t, nil, func(b []byte, h frame.Header, _ netip.AddrPort) []byte {
		return frame.Append(b, h, []byte("payload"))
	})
}

// TestReadBatchSealedAllocatesNothing is the guard for a private stream:
// opening sealed frames allocates nothing either.
func TestReadBatchSealedAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	path := filepath.Join(t.TempDir(), "private.key")
	ring, err := keys.Create(path, "")
	if err != nil {
		t.Fatal(err)
	}
	sealer := frame.NewSealer(ring.Entries[0].Key)
	var hb [frame.HeaderLen]byte
	checkReadBatchAllocs(t, map[string]string{"ipv4-ifaddr": path}, func(b []byte, h frame.Header, dst netip.AddrPort) []byte {
		h.Flags, h.PayloadLen = frame.FlagSealed, 7
		h.Put(hb[:])
		return sealer.Seal(b, dst, hb[:], []byte("payload"))
	})
}

// checkReadBatchAllocs sends batches of event frames that frameOf makes
// (the payload "payload") to a receiver of a stream, private under the
// key files of private if given, and fails if reading them allocates.
func checkReadBatchAllocs(t *testing.T, private map[string]string, frameOf func(b []byte, h frame.Header, dst netip.AddrPort) []byte) {
	m := testMap()
	addr, _ := streams.Lookup("ipv4-ifaddr")
	r := newTestReceiver(t, &Config{Streams: []streams.Stream{addr}, Map: m, NoSilentNotices: true, Private: private})
	w := newWire(t, m)
	dst := net.UDPAddrFromAddrPort(m.Addr(addr, streams.Raw))
	const batch = 64
	bufs := make([][]byte, batch)
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i] = ipv4.Message{Buffers: bufs[i : i+1], Addr: dst}
	}
	evs := make([]Event, 16) // fewer than a batch: the rest is queued
	seq := uint64(0)
	allocs := testing.AllocsPerRun(100, func() {
		stamp := time.Now().UnixNano()
		for i := range ms {
			seq++
			h := frame.Header{Kind: frame.KindEvent, Family: addr.Family, Group: addr.Group, Epoch: 1, Seq: seq, Time: stamp}
			bufs[i] = frameOf(bufs[i][:0], h, dst.AddrPort())
		}
		if err := w.snd.WriteBatch(ms); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := r.ReadBatch(evs)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs[:n] {
				if evs[i].IsNotice() || evs[i].Header.Seq != seq-batch+uint64(got+i)+1 || string(evs[i].Payload) != "payload" {
					t.Fatalf("event %d of the batch: %+v", got+i, evs[i])
				}
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Fatalf("a batch of %d events allocates %v times", batch, allocs)
	}
}
