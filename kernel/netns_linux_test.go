package kernel

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// newNetNSFD makes a network namespace and returns a descriptor of it.
func newNetNSFD(t *testing.T) int {
	t.Helper()
	var fd int
	testenv.InNewNetNS(t, func() (err error) {
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// NetNSID gives a peer without an id one, returns the same id after, and
// the id the namespace already gave a peer; a namespace is not its own
// peer.
func TestNetNSID(t *testing.T) {
	p, q, r := newNetNSFD(t), newNetNSFD(t), newNetNSFD(t)
	first, same, err := NetNSID(p, q)
	if err != nil || same || first < 0 {
		t.Fatalf("NetNSID(p, q): %d, %v, %v; want an id assigned", first, same, err)
	}
	if again, _, err := NetNSID(p, q); err != nil || again != first {
		t.Errorf("NetNSID(p, q) again: %d, %v; want %d", again, err, first)
	}
	// The kernel's own view agrees: ip netns list-id run in p.
	nsenter, ip := testenv.RequireCommand(t, "nsenter"), testenv.RequireCommand(t, "ip")
	cmd := exec.Command(nsenter, "--net=/proc/self/fd/3", ip, "netns", "list-id")
	dup, err := unix.Dup(p)
	if err != nil {
		t.Fatal(err)
	}
	pf := os.NewFile(uintptr(dup), "p")
	defer pf.Close()
	cmd.ExtraFiles = []*os.File{pf} // its fd 3
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nsid "+strconv.Itoa(int(first))+" ") {
		t.Errorf("ip netns list-id in p: %v: %q; want nsid %d", err, out, first)
	}
	if other, _, err := NetNSID(p, r); err != nil || other == first || other < 0 {
		t.Errorf("NetNSID(p, r): %d, %v; want an id other than q's %d", other, err, first)
	}
	if _, same, err := NetNSID(p, p); err != nil || !same {
		t.Errorf("NetNSID(p, p): same %v, %v; want same", same, err)
	}
}
