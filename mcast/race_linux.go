//go:build race

package mcast

import (
	"runtime"
	"unsafe"

	"golang.org/x/net/ipv4"
)

// raceReadBuffers tells the race detector that the kernel reads the
// datagrams of ms and their control messages, as x/net does for its own
// sends: a write to a buffer racing a send is then reported.
func raceReadBuffers(ms []ipv4.Message) {
	for i := range ms {
		for _, b := range ms[i].Buffers {
			if len(b) > 0 {
				runtime.RaceReadRange(unsafe.Pointer(&b[0]), len(b))
			}
		}
		if oob := ms[i].OOB; len(oob) > 0 {
			runtime.RaceReadRange(unsafe.Pointer(&oob[0]), len(oob))
		}
	}
}
