package integration

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// NFNLGRP_NFTABLES and NFNLGRP_NFTRACE.
const (
	nfnlgrpNftables = 7
	nfnlgrpNftrace  = 9
)

// TestNftablesStreams: a ruleset built and deleted with nft in a
// namespace, and a packet traced there, come through the bridge byte for
// byte as the kernel sent them to a plain netlink socket, in JSON field by
// field, and in listen's lines as nft monitor prints them. Both streams
// are private: refused without --expose or --cleartext-to-all-users.
func TestNftablesStreams(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	nft := testenv.RequireCommand(t, "nft")
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "nft").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--expose nftables=") {
		t.Fatalf("bridge --streams nft: %v: %s; want a refusal that names --expose", err, out)
	}
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "nft", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "nft")
	listen := ns.start(t, notified, nlmcast, "listen", "nft")
	direct := ns.subscribeFamily(t, unix.NETLINK_NETFILTER, []uint32{nfnlgrpNftables, nfnlgrpNftrace}, false, nil)

	for _, rule := range []string{
		"add table inet nlmt",
		"add chain inet nlmt out { type filter hook output priority 0; policy accept; }",
		"add rule inet nlmt out ip daddr 127.0.0.1 udp dport 9999 meta nftrace set 1 counter",
		"add set inet nlmt blocked { type ipv4_addr; }",
		"add element inet nlmt blocked { 192.0.2.1, 192.0.2.2 }",
	} {
		if out, err := exec.Command("ip", "netns", "exec", ns.name, nft, rule).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", rule, err, out)
		}
	}
	ns.do(t, func() error { // the traced packet; the trace is sent as it passes
		c, err := net.Dial("udp4", "127.0.0.1:9999")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	if out, err := exec.Command("ip", "netns", "exec", ns.name, nft, "delete table inet nlmt").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v: %s", err, out)
	}
	direct.stop()

	run := bridged(t, "nftables raw", direct.messages(nfnlgrpNftables), raw, "nftables")
	evs, _ := decodedEvents[decode.NftEvent](t, "nftables", jsonOf(t, js, "nftables", run))
	var got []string // consecutive events of one kind once: kernels differ in how they send elements
	elements := 0
	for _, ev := range evs {
		if ev.Event != "new generation" && (len(got) == 0 || got[len(got)-1] != ev.Event) {
			got = append(got, ev.Event)
		}
		if ev.Event == "add element" && ev.Elements != nil {
			elements += *ev.Elements
		}
	}
	if elements != 2 {
		t.Errorf("%d elements added, want 2", elements)
	}
	if g := strings.Join(got, ","); g != "add table,add chain,add rule,add set,add element,delete rule,delete set,delete chain,delete table" {
		t.Errorf("ruleset events: %s", g)
	}
	for _, ev := range evs {
		switch ev.Event {
		case "add chain":
			if ev.Family != "inet" || ev.Table != "nlmt" || ev.Chain != "out" || ev.Hook != "output" || ev.Type != "filter" ||
				ev.Priority == nil || *ev.Priority != 0 || ev.Policy != "accept" || ev.Handle == nil {
				t.Errorf("add chain: %+v", ev)
			}
		case "add rule":
			if ev.Chain != "out" || len(ev.Exprs) == 0 || ev.Exprs[len(ev.Exprs)-1] != "counter" || ev.Handle == nil {
				t.Errorf("add rule: %+v", ev)
			}
		case "add element":
			if ev.Name != "blocked" || ev.Table != "nlmt" || ev.Family != "inet" {
				t.Errorf("add element: %+v", ev)
			}
		case "new generation":
			if ev.Gen == nil || ev.Proc != "nft" {
				t.Errorf("new generation: %+v", ev)
			}
		}
	}

	trun := bridged(t, "nftables-trace raw", direct.messages(nfnlgrpNftrace), raw, "nftables-trace")
	tevs, _ := decodedEvents[decode.NftEvent](t, "nftables-trace", jsonOf(t, js, "nftables-trace", trun))
	last := tevs[len(tevs)-1]
	if last.Trace == nil || last.Trace.Type != "policy" || last.Trace.Verdict != "accept" || last.Chain != "out" || last.Table != "nlmt" {
		t.Errorf("last trace: %+v %+v", last, last.Trace)
	}
	for _, ev := range tevs {
		if ev.Trace == nil || ev.Trace.ID != tevs[0].Trace.ID {
			t.Errorf("trace of another packet: %+v", ev)
		}
	}
	listen.waitStdout(t, "listen printed the ruleset and the trace", func(out string) bool {
		return strings.Contains(out, "add chain inet nlmt out { type filter hook output priority 0; policy accept; }") &&
			strings.Contains(out, "# new generation") && strings.Contains(out, "delete table inet nlmt") &&
			strings.Contains(out, "trace id "+tevs[0].Trace.ID+" inet nlmt out policy accept")
	})
}

// TestNftablesSealed: with --expose nftables=KEYFILE the ruleset's
// events reach the key file's readers sealed, byte for byte as the kernel
// sent them.
func TestNftablesSealed(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	nft := testenv.RequireCommand(t, "nft")
	key := privateKey(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--expose", "nftables="+key)
	s := mustStream("nftables")
	reader := ns.collect(t, &receiver.Config{Streams: []streams.Stream{s}, Private: map[string]string{"nftables": key}})
	t.Cleanup(func() { reader.stop() })
	direct := ns.subscribeFamily(t, unix.NETLINK_NETFILTER, []uint32{nfnlgrpNftables}, false, nil)
	for _, cmd := range []string{"add table ip nlms", "delete table ip nlms"} {
		if out, err := exec.Command("ip", "netns", "exec", ns.name, nft, cmd).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", cmd, err, out)
		}
	}
	direct.stop()
	for _, g := range bridged(t, "nftables sealed", direct.messages(nfnlgrpNftables), reader, "nftables") {
		if g.flags&frame.FlagSealed == 0 {
			t.Error("an nftables event came in the clear")
		}
	}
}
