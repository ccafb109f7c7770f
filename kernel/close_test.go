package kernel

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

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

// The kernel answers PROC_CN_MCAST_IGNORE on the process events group,
// synchronously (before the request's send returns), but never to the
// socket that asked: that socket's filter already drops everything. Its
// other listeners get the answer instead. ProcSocket.Close relies on this
// to wait for no answer; should a kernel start answering the asker, this
// test says so, and Close could check the answer as OpenProc does.
func TestProcIgnoreAnsweredToOthersOnly(t *testing.T) {
	testenv.RequireRoot(t)
	open := func(cookie uint32) *ProcSocket {
		t.Helper()
		p, err := OpenProc(&Config{Groups: []uint32{decode.CnIdxProc}}, cookie)
		if err != nil {
			testenv.Missing(t, "process events: "+err.Error())
		}
		return p
	}
	// acks returns the errno of each acknowledgement queued on p, by ack.
	acks := func(p *ProcSocket) map[uint32]uint32 {
		t.Helper()
		got := map[uint32]uint32{}
		p.SetReadDeadline(time.Now()) // what is queued, no wait
		defer p.SetReadDeadline(time.Time{})
		ms := make([]Message, 64)
		for {
			n, err := p.ReadBatch(ms)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return got
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			for _, m := range ms[:n] {
				if ack, errno, ok := decode.ProcAck(m.Data); ok {
					got[ack] = errno
				}
			}
		}
	}
	other := open(0x6e6c6d01)
	defer other.Close()
	asker := open(0x6e6c6d02)
	defer asker.Close()
	acks(other)
	acks(asker)

	const cookie = 0x6e6c6d03
	if err := procControl(asker.Socket, procMcastOff, cookie); err != nil {
		t.Fatal(err)
	}
	if errno, ok := acks(asker)[cookie+1]; ok {
		t.Errorf("the asker got an answer to PROC_CN_MCAST_IGNORE (errno %d): Close could check it", errno)
	}
	if errno, ok := acks(other)[cookie+1]; !ok || errno != 0 {
		t.Errorf("another listener got answer %v, errno %d; want one, errno 0", ok, errno)
	}

	// Close sends it too (cookie 0), and succeeds.
	closing := open(0x6e6c6d04)
	acks(other)
	if err := closing.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if errno, ok := acks(other)[1]; !ok || errno != 0 {
		t.Errorf("after Close, another listener got answer %v, errno %d; want one, errno 0", ok, errno)
	}
}
