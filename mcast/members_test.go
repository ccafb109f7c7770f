package mcast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

// hexGroup writes a group the way the kernel does: its bytes as one
// host-order integer.
func hexGroup(a string) string {
	b := netip.MustParseAddr(a).As4()
	return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b[:]))
}

func TestParseIGMP(t *testing.T) {
	text := "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n" +
		"1\tlo        :     3      V3\n" +
		"\t\t\t\t" + hexGroup("239.255.79.1") + "     2 0:00000000\t\t0\n" +
		"\t\t\t\t" + hexGroup("239.255.78.5") + "     1 0:00000000\t\t0\n" +
		"\t\t\t\t" + hexGroup("224.0.0.1") + "     1 0:00000000\t\t0\n" +
		"4\teth0      :     2      V3\n" +
		"\t\t\t\t" + hexGroup("239.255.79.7") + "     1 0:00000000\t\t0\n" +
		"\t\t\t\t" + hexGroup("224.0.0.1") + "     1 0:00000000\t\t0\n"
	for _, tc := range []struct {
		ifname string
		want   map[string]int
	}{
		{"", map[string]int{"239.255.79.1": 2, "239.255.78.5": 1, "224.0.0.1": 1}},
		{"eth0", map[string]int{"239.255.79.7": 1, "224.0.0.1": 1}},
		{"veth9", nil},
	} {
		got, err := ParseIGMP(strings.NewReader(text), tc.ifname)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q: %v, want %v", tc.ifname, got, tc.want)
		}
		for w, n := range tc.want {
			if got[netip.MustParseAddr(w)] != n {
				t.Errorf("%q: %s has %d users in %v, want %d", tc.ifname, w, got[netip.MustParseAddr(w)], got, n)
			}
		}
	}
	for _, bad := range []string{
		"titles\n1\tlo :\n\t\tZZZZZZZZ 1\n",
		"titles\n1\tlo :\n\t\t0100E0 1\n",
		"titles\nlo\n",
		"titles\n1\tlo :\n\t\t010000E0\n",
		"titles\n1\tlo :\n\t\t010000E0 x 0:00000000\n",
	} {
		if _, err := ParseIGMP(strings.NewReader(bad), "lo"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The kernel's own file lists a group as soon as a Receiver joins it.
func TestMembersSeesJoin(t *testing.T) {
	g := netip.MustParseAddrPort("239.255.230.201:17999")
	before, err := Members("")
	if err != nil {
		t.Fatal(err)
	}
	if before[g.Addr()] > 0 {
		t.Skipf("%s already joined by another process", g.Addr())
	}
	r, err := NewReceiver(&ReceiverConfig{AnySource: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Join(g); err != nil {
		t.Fatal(err)
	}
	after, err := Members("lo")
	if err != nil {
		t.Fatal(err)
	}
	if after[g.Addr()] != 1 {
		t.Errorf("%s joined once: %d users in %s: %v", g.Addr(), after[g.Addr()], IGMPPath, after)
	}
	if err := r.Leave(g); err != nil {
		t.Fatal(err)
	}
	left, _ := Members("lo")
	if left[g.Addr()] != 0 {
		t.Errorf("%s left but still listed", g.Addr())
	}
}

// A MembersFile read again sees what changed since, however long the
// file has grown: 140 groups (a socket each) make it longer than its
// first buffer, even in a namespace where lo is the only interface. The
// groups are outside 239.255.20-219.x, where other packages' tests join
// at random.
func TestMembersFileReadsAgain(t *testing.T) {
	f, err := OpenMembers()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := netip.MustParseAddr("239.255.231.0").As4()
	var groups []netip.AddrPort
	for i := range 140 {
		a := base
		a[3] = byte(i)
		groups = append(groups, netip.AddrPortFrom(netip.AddrFrom4(a), 17998))
	}
	count := func(m map[netip.Addr]int) (n int) {
		for _, g := range groups {
			n += m[g.Addr()]
		}
		return n
	}
	before, err := f.Read("lo")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(before); n > 0 {
		t.Skipf("%d of the test's groups already joined by another process", n)
	}
	r, err := NewReceiver(&ReceiverConfig{AnySource: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, g := range groups {
		if err := r.Join(g); err != nil {
			t.Fatal(err)
		}
	}
	after, err := f.Read("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if after[g.Addr()] != 1 {
			t.Fatalf("%s joined once: %d users in a %d-byte read of %s", g.Addr(), after[g.Addr()], len(f.buf), IGMPPath)
		}
	}
	if len(f.buf) <= 4096 {
		t.Errorf("buffer of %d bytes for %d groups", len(f.buf), len(after))
	}
	if fresh, err := Members("lo"); err != nil || count(fresh) != len(groups) {
		t.Errorf("Members: %d of the %d groups, %v", count(fresh), len(groups), err)
	}
	r.Close()
	left, err := f.Read("lo")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(left); n != 0 {
		t.Errorf("every socket closed, yet %d memberships of the test's groups in the read after", n)
	}
}

// Once its buffer has grown, a read of the kept file allocates nothing.
func TestMembersFileReadAllocatesNothing(t *testing.T) {
	testenv.SkipUnderRace(t)
	f, err := OpenMembers()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Read(""); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = f.Read("") }); a != 0 {
		t.Errorf("%v allocations a read", a)
	}
}

// A read that fails says which file; a second Close closes nothing.
func TestMembersFileReadError(t *testing.T) {
	f, err := OpenMembers()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil || f.fd != -1 {
		t.Errorf("second Close: %v, fd %d", err, f.fd)
	}
	f = &MembersFile{fd: -1, buf: make([]byte, 8)}
	_, err = f.Read("lo")
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != IGMPPath || !errors.Is(err, unix.EBADF) {
		t.Errorf("read of a bad descriptor: %v, want a PathError for %s wrapping EBADF", err, IGMPPath)
	}
}
