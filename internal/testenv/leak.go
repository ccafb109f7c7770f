package testenv

import (
	"net"
	"os"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

// NoLeaks notes the goroutines and file descriptors there are now and
// returns a check that fails t if more are left when it is called.
// Tests that use it must not run in parallel with others.
func NoLeaks(t testing.TB) (check func()) {
	t.Helper()
	// The runtime's network poller opens its descriptors on first use and
	// keeps them: make sure that has happened before counting.
	if c, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	ignore := goleak.IgnoreCurrent()
	before := OpenFDs(t)
	return func() {
		t.Helper()
		goleak.VerifyNone(t, ignore)
		after := OpenFDs(t)
		if len(after) != len(before) {
			t.Errorf("%d descriptors open before, %d after; new: %v, gone: %v",
				len(before), len(after), missing(after, before), missing(before, after))
		}
	}
}

// OpenFDs lists the process's open descriptors (/proc/self/fd), each with
// what it points to.
func OpenFDs(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed meanwhile
		}
		fds = append(fds, e.Name()+" -> "+target)
	}
	return fds
}

// missing returns the elements of a that b lacks.
func missing(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
