package integration

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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
// namespace, and a packet that comes in over a veth pair traced there,
// come through the bridge byte for byte as the kernel sent them to a
// plain netlink socket, in JSON field by field, and in listen's lines as
// nft monitor, run beside it, prints them: the same events in the same
// order, the same rule text. Both streams are private: refused without
// --expose or --cleartext-to-all-users.
func TestNftablesStreams(t *testing.T) {
	a, b := newNetNS(t), newNetNS(t)
	nlmcast, _ := binaries(t)
	nft := testenv.RequireCommand(t, "nft")
	vethPair(t, a, b, "10.78.0.1", "10.78.0.2")
	var veth *net.Interface
	a.do(t, func() error {
		ifs, err := net.Interfaces()
		for i := range ifs {
			if strings.HasPrefix(ifs[i].Name, "nva") {
				veth = &ifs[i]
			}
		}
		if veth == nil && err == nil {
			err = errors.New("no veth in the namespace")
		}
		return err
	})
	out, err := exec.Command("ip", "netns", "exec", a.name, nlmcast, "bridge", "--streams", "nft").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--expose nftables=") {
		t.Fatalf("bridge --streams nft: %v: %s; want a refusal that names --expose", err, out)
	}
	a.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "nft", "--json-always")
	raw, js := a.receivers(t, streams.Map{}, "nft")
	listen := a.start(t, notified, nlmcast, "listen", "nft")
	// nft monitor prints ruleset changes and traces alike. It says nothing
	// when it has joined: it is ready once a change made after it started
	// shows in its output; a change before it joined is lost, so each try
	// is a new table.
	monitor := a.start(t, printed("monitor"), "sh", "-c", "echo monitor >&2; exec "+nft+" monitor")
	warm := ""
	for i := 0; warm == ""; i++ {
		name := fmt.Sprintf("add table inet nlmwarm%d", i)
		nftIn(t, a, nft, name)
		if await(&monitor.changed, time.Second, func() bool { return strings.Contains(monitor.Stdout(), name+"\n") }) {
			warm = name
		} else if i > int(patience/time.Second) {
			t.Fatalf("nft monitor printed none of the tables added:\n%s", monitor.Stdout())
		}
	}
	direct := a.subscribeFamily(t, unix.NETLINK_NETFILTER, []uint32{nfnlgrpNftables, nfnlgrpNftrace}, false, nil)

	rule := "ip saddr 10.78.0.2 udp dport 9999 meta nftrace set 1 counter"
	for _, cmd := range []string{
		"add table inet nlmt",
		"add chain inet nlmt in { type filter hook input priority 0; policy accept; }",
		"add rule inet nlmt in " + rule,
		"add set inet nlmt blocked { type ipv4_addr; }",
		"add element inet nlmt blocked { 192.0.2.1, 192.0.2.2 }",
		"add rule inet nlmt in ip saddr @blocked drop",
		`add rule inet nlmt in iifname "nva*" udp dport >= 9000 ct state established,related accept`,
	} {
		nftIn(t, a, nft, cmd)
	}
	b.do(t, func() error { // the traced packet; the trace is sent as it passes
		c, err := net.Dial("udp4", "10.78.0.1:9999")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	// The trace ends with the chain's policy; wait for it before the
	// table goes, or the packet might meet no table.
	policy := func(out string) bool { return strings.Contains(out, " inet nlmt in policy accept") }
	monitor.waitStdout(t, "nft monitor printed the trace", policy)
	nftIn(t, a, nft, "delete table inet nlmt")
	direct.stop()

	run := bridged(t, "nftables raw", direct.messages(nfnlgrpNftables), raw, "nftables")
	evs, _ := decodedEvents[decode.NftEvent](t, "nftables", jsonOf(t, js, "nftables", run))
	var got []string // consecutive events of one kind once: kernels differ in how they send elements
	var keys []string
	for _, ev := range evs {
		if ev.Event != "new generation" && (len(got) == 0 || got[len(got)-1] != ev.Event) {
			got = append(got, ev.Event)
		}
		if ev.Event == "add element" {
			keys = append(keys, ev.Keys...)
		}
	}
	if k := strings.Join(keys, " "); k != "192.0.2.1 192.0.2.2" {
		t.Errorf("elements added: %s, want 192.0.2.1 192.0.2.2", k)
	}
	if g := strings.Join(got, ","); g != "add table,add chain,add rule,add set,add element,add rule,delete rule,delete set,delete chain,delete table" {
		t.Errorf("ruleset events: %s", g)
	}
	for _, ev := range evs {
		switch ev.Event {
		case "add chain":
			if ev.Family != "inet" || ev.Table != "nlmt" || ev.Chain != "in" || ev.Hook != "input" || ev.Type != "filter" ||
				ev.Priority == nil || *ev.Priority != 0 || ev.Policy != "accept" || ev.Handle == nil {
				t.Errorf("add chain: %+v", ev)
			}
		case "add rule":
			if ev.Chain != "in" || len(ev.Exprs) == 0 || ev.Rule == "" || ev.Handle == nil {
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
	if i := slices.IndexFunc(evs, func(ev decode.NftEvent) bool { return ev.Event == "add rule" }); i < 0 || evs[i].Rule != rule+" packets 0 bytes 0" {
		t.Errorf("no add rule event with the rule %q packets 0 bytes 0", rule)
	}

	trun := bridged(t, "nftables-trace raw", direct.messages(nfnlgrpNftrace), raw, "nftables-trace")
	tevs, _ := decodedEvents[decode.NftEvent](t, "nftables-trace", jsonOf(t, js, "nftables-trace", trun))
	first, last := tevs[0].Trace, tevs[len(tevs)-1]
	if first == nil || first.IIF == nil || int(*first.IIF) != veth.Index || first.Verdict != "continue" || first.RuleHandle == nil ||
		!strings.Contains(first.Packet, "ip saddr 10.78.0.2 ip daddr 10.78.0.1 ") || !strings.Contains(first.Packet, " udp dport 9999 ") ||
		!strings.Contains(first.Packet, "ether saddr ") {
		t.Errorf("first trace: %+v, want the datagram from %s (index %d), rule verdict continue", first, veth.Name, veth.Index)
	}
	if last.Trace == nil || last.Trace.Type != "policy" || last.Trace.Verdict != "accept" || last.Chain != "in" || last.Table != "nlmt" {
		t.Errorf("last trace: %+v %+v", last, last.Trace)
	}
	for _, ev := range tevs {
		if ev.Trace == nil || ev.Trace.ID != first.ID {
			t.Errorf("trace of another packet: %+v", ev)
		}
	}

	// Side by side: what listen printed after the warm-up table, and what
	// nft monitor did, the same lines once the documented differences
	// are put aside.
	done := func(out string) bool {
		_, after, ok := strings.Cut(out, "delete table inet nlmt")
		return ok && strings.Contains(after, "# new generation") && policy(out)
	}
	listen.waitStdout(t, "listen printed the ruleset and the trace", done)
	monitor.waitStdout(t, "nft monitor printed the table's deletion", done)
	lRules, lTrace := listenNftLines(t, listen.Stdout(), warm, veth)
	mRules, mTrace := monitorNftLines(t, monitor.Stdout(), warm)
	t.Logf("listen and nft monitor:\n%s%s", sideBySide(lRules, mRules), sideBySide(lTrace, mTrace))
	if !slices.Equal(lRules, mRules) {
		t.Errorf("ruleset: listen and nft monitor differ:\n%s", sideBySide(lRules, mRules))
	}
	if !slices.Equal(lTrace, mTrace) {
		t.Errorf("trace: listen and nft monitor differ:\n%s", sideBySide(lTrace, mTrace))
	}
	if !slices.Contains(lRules, "add rule inet nlmt in "+rule+" packets 0 bytes 0") {
		t.Errorf("listen printed no line for the rule %q:\n%s", rule, strings.Join(lRules, "\n"))
	}
}

func nftIn(t *testing.T, ns *netns, nft, cmd string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns.name, nft, cmd).CombinedOutput(); err != nil {
		t.Fatalf("nft %s: %v: %s", cmd, err, out)
	}
}

// after returns the lines of out after the first new generation that
// follows the line warm.
func after(t *testing.T, out, warm string) []string {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasSuffix(l, warm) || strings.Contains(l, warm+" # handle") })
	if i < 0 {
		t.Fatalf("no %q in:\n%s", warm, out)
	}
	for i < len(lines) && !strings.Contains(lines[i], "# new generation") {
		i++
	}
	return lines[min(i+1, len(lines)):]
}

var listenLine = regexp.MustCompile(`^\[(nftables|nftables-trace)\] \S+ #\d+ (.*)$`)

// listenNftLines are listen's nftables lines after the warm-up, split
// into ruleset and trace lines, in nft monitor's form where listen's is
// documented to differ (PROTOCOL.md): no "# handle N"; one line a set
// element; the packet and its rule on lines of their own, the interface
// by name; no line for the end of a chain.
func listenNftLines(t *testing.T, out, warm string, veth *net.Interface) (rules, trace []string) {
	for _, l := range after(t, out, warm) {
		m := listenLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := m[2]
		if i := strings.Index(s, " # handle "); i >= 0 {
			s = s[:i]
		}
		if m[1] == "nftables" {
			if head, keys, ok := strings.Cut(s, " { "); ok && strings.HasPrefix(s, "add element ") {
				for _, k := range strings.Split(strings.TrimSuffix(keys, " }"), ", ") {
					rules = append(rules, head+" { "+k+" }")
				}
				continue
			}
			rules = append(rules, s)
			continue
		}
		if strings.HasSuffix(s, " rule (verdict continue)") {
			continue
		}
		if head, pkt, ok := strings.Cut(s, " packet: "); ok {
			pkt, rule, _ := strings.Cut(pkt, "; ")
			pkt = strings.Replace(pkt, fmt.Sprintf("iif %d ", veth.Index), fmt.Sprintf("iif %q ", veth.Name), 1)
			trace = append(trace, head+" packet: "+pkt)
			if rule != "" {
				trace = append(trace, head+" "+rule)
			}
			continue
		}
		trace = append(trace, s)
	}
	return rules, trace
}

// monitorNftLines are nft monitor's lines after the warm-up, split into
// ruleset and trace lines; a rule nft had not cached (it was added after
// nft monitor started) it names by handle, as listen does.
func monitorNftLines(t *testing.T, out, warm string) (rules, trace []string) {
	for _, l := range after(t, out, warm) {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "trace id "):
			trace = append(trace, strings.Replace(l, " unknown rule handle ", " rule handle ", 1))
		default:
			rules = append(rules, l)
		}
	}
	return rules, trace
}

func sideBySide(a, b []string) string {
	var s strings.Builder
	for i := range max(len(a), len(b)) {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		mark := " "
		if x != y {
			mark = "!"
		}
		fmt.Fprintf(&s, "%s listen: %s\n%s nft:    %s\n", mark, x, mark, y)
	}
	return s.String()
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
