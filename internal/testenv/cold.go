package testenv

import (
	"testing"
	"time"
)

// coldBytes is more than any last-level cache of the machines this runs
// on: writing a byte of each of its lines evicts what a per-event path
// left in the caches, as tens of milliseconds of other work between two
// events do.
var coldBytes []byte

// ColdLoop runs f b.N times, each after evicting the caches, and reports
// the mean time of f alone as ns/cold-op: what a path costs when it runs
// a few times a second, where b's own ns/op is mostly the eviction.
func ColdLoop(b *testing.B, f func()) {
	b.Helper()
	if coldBytes == nil {
		coldBytes = make([]byte, 64<<20)
	}
	f() // grow whatever f keeps
	var cold time.Duration
	b.ResetTimer()
	for range b.N {
		for i := 0; i < len(coldBytes); i += 64 {
			coldBytes[i]++
		}
		start := time.Now()
		f()
		cold += time.Since(start)
	}
	b.ReportMetric(float64(cold.Nanoseconds())/float64(b.N), "ns/cold-op")
}
