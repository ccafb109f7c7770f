package frame

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
)

// documentedFilter returns the BPF program of PROTOCOL.md ("Filtering in
// the kernel"), read from its struct sock_filter lines, and checks that each
// line's comment says what the line does.
func documentedFilter(t *testing.T) []bpf.RawInstruction {
	t.Helper()
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^ +\{ (0x[0-9a-f]{2}), (\d), (\d), (0x[0-9a-f]{8}) \}, /\* (.+?): .* \*/$`)
	var prog []bpf.RawInstruction
	for _, m := range line.FindAllStringSubmatch(string(doc), -1) {
		num := func(s string, bits int) uint64 {
			n, err := strconv.ParseUint(s, 0, bits)
			if err != nil {
				t.Fatalf("%q: %v", m[0], err)
			}
			return n
		}
		ins := bpf.RawInstruction{Op: uint16(num(m[1], 16)), Jt: uint8(num(m[2], 8)), Jf: uint8(num(m[3], 8)), K: uint32(num(m[4], 32))}
		if got := ins.Disassemble(); strings.TrimSpace(m[5]) != fmt.Sprint(got) {
			t.Errorf("PROTOCOL.md: %q is %q, not %q", m[0], got, m[5])
		}
		prog = append(prog, ins)
	}
	if len(prog) != 4 {
		t.Fatalf("PROTOCOL.md: found %d filter lines, want 4: %v", len(prog), prog)
	}
	return prog
}

// TestDocumentedBPFFilter runs PROTOCOL.md's filter, which keeps group 1:
// a socket with it gets a frame of group 1 and not one of group 5 sent
// before it, which a socket without it gets.
func TestDocumentedBPFFilter(t *testing.T) {
	prog := documentedFilter(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	// A random group and port, so that parallel runs do not meet.
	group := &net.UDPAddr{IP: net.IPv4(239, 255, byte(20+mrand.IntN(200)), byte(1+mrand.IntN(250))), Port: 30000 + mrand.IntN(20000)}
	join := func(filter []bpf.RawInstruction) *ipv4.PacketConn {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		c, err := lc.ListenPacket(t.Context(), "udp4", group.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		p := ipv4.NewPacketConn(c)
		if err := p.JoinGroup(lo, &net.UDPAddr{IP: group.IP}); err != nil {
			t.Fatalf("join %v on lo: %v", group.IP, err)
		}
		if filter != nil {
			if err := p.SetBPF(filter); err != nil {
				t.Fatalf("SO_ATTACH_FILTER: %v", err)
			}
		}
		return p
	}
	filtered, plain := join(prog), join(nil)

	sc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sender := ipv4.NewPacketConn(sc)
	if err := sender.SetMulticastInterface(lo); err != nil {
		t.Fatal(err)
	}
	sender.SetMulticastLoopback(true)
	var e [8]byte
	rand.Read(e[:])
	epoch := binary.BigEndian.Uint64(e[:])
	send := func(netlinkGroup uint32, seq uint64) {
		t.Helper()
		b := Append(nil, Header{Kind: KindEvent, Group: netlinkGroup, Epoch: epoch, Seq: seq}, []byte("payload"))
		if _, err := sender.WriteTo(b, nil, group); err != nil {
			t.Fatal(err)
		}
	}
	// recv returns the next frame of this test that p gets.
	recv := func(p *ipv4.PacketConn) Header {
		t.Helper()
		p.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2048)
		for {
			n, _, _, err := p.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if h, _, err := Parse(buf[:n]); err == nil && h.Epoch == epoch {
				return h
			}
		}
	}
	// Once the plain socket has the group 5 frame, every socket joined has
	// had it (the kernel gives each its copy at once): the filtered one
	// must not, and the next frame it gets must be the group 1 one.
	send(5, 1)
	if h := recv(plain); h.Group != 5 || h.Seq != 1 {
		t.Fatalf("without the filter: got group %d #%d, want group 5 #1", h.Group, h.Seq)
	}
	send(1, 2)
	if h := recv(filtered); h.Group != 1 || h.Seq != 2 {
		t.Errorf("with the filter: got group %d #%d, want group 1 #2 only", h.Group, h.Seq)
	}
	if h := recv(plain); h.Group != 1 || h.Seq != 2 {
		t.Errorf("without the filter: got group %d #%d, want group 1 #2", h.Group, h.Seq)
	}
}
