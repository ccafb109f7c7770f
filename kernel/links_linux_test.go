package kernel

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// Links opened in another namespace answers look-ups there, over the one
// socket it opened (so it needs no privilege later), and closes it.
func TestLinksInAnotherNamespace(t *testing.T) {
	check := testenv.NoLeaks(t)
	var nsfd int
	testenv.InNewNetNS(t, func() (err error) {
		nsfd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	l, err := OpenLinks(nsfd)
	if err != nil {
		unix.Close(nsfd)
		t.Fatal(err)
	}
	fds := len(testenv.OpenFDs(t))
	if got := l.Name(1); got != "lo" {
		t.Errorf("Name(1): %q, want lo", got)
	}
	if got := l.Name(1 << 30); got != "" {
		t.Errorf("Name of no link: %q", got)
	}
	// A new namespace holds lo alone.
	if names, err := l.Names(); err != nil || len(names) != 1 || names[1] != "lo" {
		t.Errorf("Names: %v, %v; want only lo", names, err)
	}
	if n := len(testenv.OpenFDs(t)); n != fds {
		t.Errorf("look-ups changed the open descriptors from %d to %d", fds, n)
	}
	closeTwice(t, "Links", l)
	if got := l.Name(1); got != "" {
		t.Errorf("Name after Close: %q", got)
	}
	if _, err := l.Names(); err == nil {
		t.Error("Names after Close: no error")
	}
	unix.Close(nsfd)
	check()
}
