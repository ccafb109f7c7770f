package procstat

import (
	"testing"
	"time"
)

func TestTakeGrows(t *testing.T) {
	a := Take()
	sink := make([][]byte, 0, 1000)
	for i := 0; i < 1000; i++ {
		sink = append(sink, make([]byte, 64))
	}
	deadline := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU
	}
	b := Take()
	if b.Mallocs-a.Mallocs < 1000 {
		t.Errorf("mallocs grew by %d, want at least 1000", b.Mallocs-a.Mallocs)
	}
	if b.CPU() <= a.CPU() {
		t.Errorf("CPU did not grow: %d -> %d", a.CPU(), b.CPU())
	}
	if b.MaxRSS < 1<<20 {
		t.Errorf("max RSS %d bytes: not in bytes?", b.MaxRSS)
	}
	_ = sink
	m1 := Monotonic()
	time.Sleep(time.Millisecond)
	if d := Monotonic() - m1; d < int64(time.Millisecond) || d > int64(time.Second) {
		t.Errorf("monotonic clock moved %dns over a 1ms sleep", d)
	}
}
