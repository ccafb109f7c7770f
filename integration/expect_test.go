package integration

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/streams"
)

// NFNLGRP_CONNTRACK_EXP_NEW and _DESTROY.
const (
	nfnlgrpExpNew     = 4
	nfnlgrpExpDestroy = 6
)

// ftpHelperRuleset gives connections to 127.0.0.1:2121 the kernel's FTP
// conntrack helper.
const ftpHelperRuleset = `table ip nlmx {
	ct helper ftp-std { type "ftp" protocol tcp; }
	chain out { type filter hook output priority 0; ip daddr 127.0.0.1 tcp dport 2121 ct helper set "ftp-std"; }
}
`

// TestConntrackExpectStreams: an FTP client in a namespace announces a
// data port (PORT) on a connection with the kernel's FTP helper, which
// expects the data connection; conntrack -F expect removes it. The
// expectations come through the bridge byte for byte as the kernel sent
// them to a plain netlink socket, in JSON field by field, and in listen as
// conntrack -E expect prints them.
func TestConntrackExpectStreams(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	nft := testenv.RequireCommand(t, "nft")
	conntrack := testenv.RequireCommand(t, "conntrack")
	rules := filepath.Join(t.TempDir(), "ftp.nft")
	if err := os.WriteFile(rules, []byte(ftpHelperRuleset), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns.name, nft, "-f", rules).CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "conntrack-exp").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--expose conntrack-exp-new=") {
		t.Fatalf("bridge --streams conntrack-exp: %v: %s; want a refusal that names --expose", err, out)
	}
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "conntrack-exp", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "conntrack-exp")
	listen := ns.start(t, notified, nlmcast, "listen", "conntrack-exp")
	direct := ns.subscribeFamily(t, unix.NETLINK_NETFILTER, []uint32{nfnlgrpExpNew, nfnlgrpExpDestroy}, false, nil)

	// The helper reads a command only after a line it has seen in the
	// same direction: USER first, then PORT 127.0.0.1:5001.
	ns.do(t, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:2121")
		if err != nil {
			return err
		}
		defer l.Close()
		c, err := net.Dial("tcp4", "127.0.0.1:2121")
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			return err
		}
		defer s.Close()
		sr, cr := bufio.NewReader(s), bufio.NewReader(c)
		for _, line := range []string{"USER x\r\n", "PORT 127,0,0,1,19,137\r\n"} {
			if _, err := c.Write([]byte(line)); err != nil {
				return err
			}
			if _, err := sr.ReadString('\n'); err != nil {
				return err
			}
			if _, err := s.Write([]byte("200 ok\r\n")); err != nil {
				return err
			}
			if _, err := cr.ReadString('\n'); err != nil {
				return err
			}
		}
		return nil
	})
	if out, err := exec.Command("ip", "netns", "exec", ns.name, conntrack, "-F", "expect").CombinedOutput(); err != nil {
		t.Fatalf("conntrack -F expect: %v: %s", err, out)
	}
	direct.stop()

	for g, name := range map[uint32]string{nfnlgrpExpNew: "conntrack-exp-new", nfnlgrpExpDestroy: "conntrack-exp-destroy"} {
		run := bridged(t, name+" raw", direct.messages(g), raw, name)
		evs, _ := decodedEvents[decode.ConntrackExpEvent](t, name, jsonOf(t, js, name, run))
		for _, ev := range evs {
			tp, m, ms := ev.Tuple, ev.Mask, ev.Master
			if ev.Event != strings.TrimPrefix(name, "conntrack-exp-") || ev.Family != "ipv4" || ev.Protocol != "tcp" || ev.Helper != "ftp" ||
				tp == nil || tp.Src != "127.0.0.1" || tp.Dst != "127.0.0.1" || tp.DstPort == nil || *tp.DstPort != 5001 ||
				m == nil || m.DstPort == nil || *m.DstPort != 65535 || ms == nil || ms.DstPort == nil || *ms.DstPort != 2121 || ev.Timeout == nil {
				t.Errorf("%s: %+v", name, ev)
			}
		}
	}
	listen.waitStdout(t, "listen printed the expectation made and removed", func(out string) bool {
		return strings.Contains(out, "[NEW] ipv4") && strings.Contains(out, "[DESTROY] ipv4") &&
			strings.Contains(out, "tcp src=127.0.0.1 dst=127.0.0.1 sport=0 dport=5001 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1") &&
			strings.Contains(out, "dport=2121 class=0 helper=ftp")
	})
}
