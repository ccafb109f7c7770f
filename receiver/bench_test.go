package receiver

import (
	"net"
	"testing"

	"golang.org/x/net/ipv4"

	"github.com/nlmcast/nlmcast/frame"
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
			r, err := New(&Config{Streams: []streams.Stream{addr}, Map: m, Silence: -1,
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
			payload := make([]byte, 124-frame.HeaderLen)
			evs := make([]Event, batch)
			seq := uint64(0)
			b.ResetTimer()
			for done := 0; done < b.N; {
				for i := range ms {
					seq++
					bufs[i] = frame.Append(bufs[i][:0], frame.Header{Kind: frame.KindEvent, Family: addr.Family, Group: addr.Group, Epoch: 1, Seq: seq}, payload)
					ms[i] = ipv4.Message{Buffers: [][]byte{bufs[i]}, Addr: dst}
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
