package mcast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
	g := netip.MustParseAddrPort("239.255.77.201:17999")
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

// fdReader reads what the descriptor holds, then io.EOF; a read that
// fails says which file.
func TestFdReader(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	want := strings.Repeat("Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n", 100)
	if _, err := unix.Write(p[1], []byte(want)); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	got, err := io.ReadAll(fdReader(p[0]))
	if err != nil || string(got) != want {
		t.Fatalf("read %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
	_, err = fdReader(-1).Read(make([]byte, 8))
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != IGMPPath || !errors.Is(err, unix.EBADF) {
		t.Errorf("read of a bad descriptor: %v, want a PathError for %s wrapping EBADF", err, IGMPPath)
	}
}
