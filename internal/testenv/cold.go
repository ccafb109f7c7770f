package testenv

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// coldBytes is more than any last-level cache of the machines this runs
// on: reading a byte of each of its lines, in a scattered order, evicts
// what a per-event path left in the data caches, as tens of milliseconds
// of other work between two events do. (Writing would leave every line
// dirty, to be written back on the path's misses; reading in address
// order, a scan, is what caches keep out.)
var coldBytes []byte

// coldStride is odd, so that it visits every one of a power of two of
// lines, and large, so that consecutive reads are far apart.
const coldStride = 104729

// ColdLoop runs f b.N times, each after evicting the caches, on one
// thread, and reports the median time of f alone as ns/cold-op: what a
// path costs when it runs a few times a second, where b's own ns/op is
// mostly the eviction. Cold here means the data caches: the instruction
// cache and the branch predictors may keep some of f, and no idle CPU
// has to wake.
func ColdLoop(b *testing.B, f func()) {
	b.Helper()
	runtime.LockOSThread() // f on the core whose caches were evicted
	defer runtime.UnlockOSThread()
	if coldBytes == nil {
		coldBytes = make([]byte, 64<<20)
	}
	f() // grow whatever f keeps
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range took {
		// Lines in a scattered order: a cache keeps what a scan in
		// address order passes over (scan-resistant replacement).
		var sum byte
		lines := len(coldBytes) / 64
		for j, k := 0, 0; j < lines; j++ {
			sum += coldBytes[k*64]
			k = (k + coldStride) & (lines - 1)
		}
		runtime.KeepAlive(sum) // the reads are the point
		start := time.Now()
		f()
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "ns/cold-op")
}
