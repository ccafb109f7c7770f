//go:build race

package testenv

// Race reports whether the race detector is on. Allocation counts are not
// meaningful under it (it disables sync.Pool, for one).
const Race = true
