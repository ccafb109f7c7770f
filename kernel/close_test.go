package kernel

import (
	"io"
	"testing"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/internal/testenv"
)

// closeTwice closes c twice: both must succeed, the second doing nothing.
func closeTwice(t *testing.T, name string, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("%s: Close: %v", name, err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("%s: second Close: %v", name, err)
	}
}

// Sockets opened and closed (twice) leave no descriptor and no goroutine.
// An rtnetlink socket with no group joined needs no privilege.
func TestCloseLeavesNothing(t *testing.T) {
	check := testenv.NoLeaks(t)
	before := len(testenv.OpenFDs(t))
	s, err := Open(&Config{ReadBuffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDumper(0)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if n := len(testenv.OpenFDs(t)); n <= before {
		t.Fatalf("%d descriptors open, %d before: nothing opened?", n, before)
	}
	closeTwice(t, "Socket", s)
	closeTwice(t, "DumpSocket", d)
	check()
}

// A ProcSocket unsubscribes and closes once. Process events need root and
// the initial network namespace.
func TestProcSocketCloseLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	check := testenv.NoLeaks(t)
	p, err := OpenProc(&Config{Groups: []uint32{decode.CnIdxProc}}, 0x1234) // the ack comes on the group
	if err != nil {
		testenv.Missing(t, "process events: "+err.Error())
	}
	closeTwice(t, "ProcSocket", p)
	check()
}
