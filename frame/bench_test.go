package frame

import (
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// The encoders of the per-event path. `go test -bench . ./frame` reports
// their cost; the allocation guards below keep them allocation-free.

var benchHeader = Header{Kind: KindEvent, Family: 0, Group: 5, Epoch: 0x1122334455667788, Seq: 42, Time: 1_700_000_000_000_000_000, PayloadLen: 76}

var benchEvent = []byte(`{"type":"RTM_NEWADDR","addr":{"family":"inet","prefixlen":32,"ifindex":1,"ifname":"lo","local":"10.64.0.1","scope":"host"}}`)

func BenchmarkHeaderPut(b *testing.B) {
	var buf [HeaderLen]byte
	b.ReportAllocs()
	for b.Loop() {
		benchHeader.Put(buf[:])
	}
}

func BenchmarkParse(b *testing.B) {
	var buf [HeaderLen + 76]byte
	benchHeader.Put(buf[:])
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(buf[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseInto(b *testing.B) {
	var buf [HeaderLen + 76]byte
	benchHeader.Put(buf[:])
	var h Header
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInto(&h, buf[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchEvent)))
	for b.Loop() {
		buf = AppendJSON(buf[:0], benchHeader, "ipv4-ifaddr", "new addr 10.64.0.1/32 dev lo scope host", benchEvent)
	}
}

func TestEncodersAllocateNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	var hb [HeaderLen]byte
	buf := make([]byte, 0, 1024)
	if a := testing.AllocsPerRun(100, func() {
		benchHeader.Put(hb[:])
		buf = AppendJSON(buf[:0], benchHeader, "ipv4-ifaddr", "new addr 10.64.0.1/32 dev lo", benchEvent)
	}); a != 0 {
		t.Errorf("Put and AppendJSON allocate %v times", a)
	}
}
