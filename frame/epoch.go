package frame

import (
	crand "crypto/rand"
	"encoding/binary"
	"time"
)

// EpochRandomBits is how many low bits of an epoch are random. The bits
// above them hold the bridge's start time in milliseconds since the Unix
// epoch (44 bits: until the year 2527), so that a later start makes a
// larger epoch and a receiver can tell a restart from a replay.
// Milliseconds, since no bridge restarts within one; 20 random bits tell
// apart bridges started in the same millisecond.
const EpochRandomBits = 20

// NewEpoch returns the epoch of a bridge starting at t.
func NewEpoch(t time.Time) uint64 {
	var r [8]byte
	_, _ = crand.Read(r[:]) // never fails on Linux
	return uint64(t.UnixMilli())<<EpochRandomBits | binary.BigEndian.Uint64(r[:])&(1<<EpochRandomBits-1)
}

// EpochStart returns the start time an epoch carries.
func EpochStart(epoch uint64) time.Time {
	return time.UnixMilli(int64(epoch >> EpochRandomBits))
}
