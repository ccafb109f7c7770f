package integration

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/streams"
)

// XFRMNLGRP_SA and XFRMNLGRP_POLICY.
const (
	xfrmGroupSA     = 3
	xfrmGroupPolicy = 4
)

// TestXfrmPolicyStream: IPsec policies added, updated, deleted and flushed
// in a namespace come through the bridge byte for byte as the kernel sent
// them to a plain netlink socket, in JSON field by field, and in listen's
// lines as ip xfrm monitor prints them. xfrm streams are private: refused
// without --expose or --cleartext-to-all-users.
func TestXfrmPolicyStream(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "xfrm").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--expose xfrm-acquire=") {
		t.Fatalf("bridge --streams xfrm: %v: %s; want a refusal that names --expose", err, out)
	}
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "xfrm-policy")
	listen := ns.start(t, notified, nlmcast, "listen", "xfrm-policy")
	direct := ns.subscribeFamily(t, unix.NETLINK_XFRM, []uint32{xfrmGroupPolicy}, false, nil)

	ns.ip(t, "xfrm", "policy", "add", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "tcp", "dport", "443", "dir", "out",
		"priority", "100", "tmpl", "src", "10.9.0.1", "dst", "10.9.0.2", "proto", "esp", "reqid", "7", "mode", "tunnel")
	ns.ip(t, "xfrm", "policy", "update", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "tcp", "dport", "443", "dir", "out",
		"priority", "200", "action", "block")
	ns.ip(t, "xfrm", "policy", "add", "src", "2001:db8:9::/64", "dst", "2001:db8:a::/64", "dir", "in", "mark", "5", "mask", "0xff")
	ns.ip(t, "xfrm", "policy", "delete", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "tcp", "dport", "443", "dir", "out")
	ns.ip(t, "xfrm", "policy", "flush")
	direct.stop()

	msgs := direct.messages(xfrmGroupPolicy)
	run := bridged(t, "xfrm-policy raw", msgs, raw, "xfrm-policy")
	evs, _ := decodedEvents[decode.XfrmEvent](t, "xfrm-policy", jsonOf(t, js, "xfrm-policy", run))
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Event)
	}
	if got := strings.Join(kinds, " "); got != "new-policy upd-policy new-policy del-policy flush-policy" {
		t.Fatalf("JSON events: %s", got)
	}
	p := evs[0].Policy
	if p == nil || p.Selector.Src != "10.9.0.0/24" || p.Selector.Dst != "10.9.1.0/24" || p.Selector.Proto != "tcp" || p.Selector.DstPort != 443 ||
		p.Dir != "out" || p.Priority == nil || *p.Priority != 100 || p.Action != "allow" || len(p.Tmpls) != 1 ||
		p.Tmpls[0] != (decode.XfrmTemplate{Src: "10.9.0.1", Dst: "10.9.0.2", Proto: "esp", SPI: "0x00000000", Reqid: 7, Mode: "tunnel"}) {
		t.Errorf("new policy: %+v", p)
	}
	if p := evs[1].Policy; p == nil || *p.Priority != 200 || p.Action != "block" || p.Index != evs[0].Policy.Index {
		t.Errorf("updated policy: %+v", p)
	}
	if p := evs[2].Policy; p == nil || p.Selector.Src != "2001:db8:9::/64" || p.Dir != "in" || p.Mark == nil || *p.Mark != 5 {
		t.Errorf("IPv6 policy: %+v", p)
	}
	if p := evs[3].Policy; p == nil || p.Selector.Dst != "10.9.1.0/24" || p.Dir != "out" || p.Action != "block" {
		t.Errorf("deleted policy: %+v", p)
	}
	listen.waitStdout(t, "listen printed the five policy events", func(out string) bool {
		return strings.Contains(out, "[NEW-POLICY] src 10.9.0.0/24 dst 10.9.1.0/24 proto tcp dir out priority 100 action allow tmpl src 10.9.0.1 dst 10.9.0.2 proto esp reqid 7 mode tunnel") &&
			strings.Contains(out, "[UPD-POLICY] src 10.9.0.0/24 dst 10.9.1.0/24 proto tcp dir out priority 200 action block") &&
			strings.Contains(out, "[NEW-POLICY] src 2001:db8:9::/64 dst 2001:db8:a::/64 dir in") &&
			strings.Contains(out, "[DEL-POLICY] src 10.9.0.0/24") && strings.Contains(out, "[FLUSH-POLICY]")
	})
}

// TestXfrmKeysRefusedInTheClear: --xfrm-keys keeps IPsec keys in frames,
// which only a sealed stream may carry: with the xfrm stream in the
// clear the bridge refuses to start, and says why. (That the keys never
// reach a frame in the clear needs an IPsec SA, which this kernel cannot
// make: see xfrm_esp_test.go.)
func TestXfrmKeysRefusedInTheClear(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm-sa", "--xfrm-keys").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--xfrm-keys: keeps IPsec key material") {
		t.Fatalf("--xfrm-keys in the clear: %v: %s; want a refusal", err, out)
	}
}

// XFRMNLGRP_EXPIRE.
const xfrmGroupExpire = 2

// TestXfrmExpireStream: a policy with lifetime limits expires, soft then
// hard, in a namespace; the two pol-expire messages come through the
// xfrm-expire stream byte for byte as the kernel sent them to a plain
// netlink socket, in JSON field by field, and in listen's lines.
func TestXfrmExpireStream(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm-expire", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "xfrm-expire")
	listen := ns.start(t, notified, nlmcast, "listen", "xfrm-expire")
	direct := ns.subscribeFamily(t, unix.NETLINK_XFRM, []uint32{xfrmGroupExpire}, false, nil)

	ns.ip(t, "xfrm", "policy", "add", "src", "10.7.0.0/24", "dst", "10.7.1.0/24", "proto", "udp", "dport", "53", "dir", "fwd",
		"priority", "9", "limit", "time-soft", "1", "limit", "time-hard", "3")
	// The kernel's policy timer first runs 1 s after the policy is added
	// and sends the soft expiry, then the hard one: wait for the hard one.
	// Lifetimes count in whole seconds from the second of the addition, so
	// a hard limit of 2 s could be reached by that first run (added late in
	// a second, the timer a little late), which then sends the hard expiry
	// alone; with 3 s the soft one always comes first.
	waitFor(t, &direct.changed, "the kernel's hard pol-expire on a direct netlink socket", func() bool {
		for _, m := range direct.messages(xfrmGroupExpire) {
			ev := decodedXfrm(t, m)
			if ev.Event == "pol-expire" && ev.Hard != nil && *ev.Hard {
				return true
			}
		}
		return false
	})
	direct.stop()

	msgs := direct.messages(xfrmGroupExpire)
	run := bridged(t, "xfrm-expire raw", msgs, raw, "xfrm-expire")
	evs, _ := decodedEvents[decode.XfrmEvent](t, "xfrm-expire", jsonOf(t, js, "xfrm-expire", run))
	if len(evs) != 2 {
		t.Fatalf("%d expire events, want the soft and the hard one: %+v", len(evs), evs)
	}
	for i, ev := range evs {
		p := ev.Policy
		if ev.Event != "pol-expire" || ev.Hard == nil || *ev.Hard != (i == 1) || p == nil || p.Selector == nil ||
			*p.Selector != (decode.XfrmSelector{Src: "10.7.0.0/24", Dst: "10.7.1.0/24", Proto: "udp", DstPort: 53}) ||
			p.Dir != "fwd" || p.Priority == nil || *p.Priority != 9 || p.Action != "allow" || p.Index == 0 || ev.KeysRedacted {
			t.Errorf("expire %d (want hard %v): %+v policy %+v", i, i == 1, ev, p)
		}
	}
	listen.waitStdout(t, "listen printed the soft and the hard expiry", func(out string) bool {
		const line = "[POL-EXPIRE] src 10.7.0.0/24 dst 10.7.1.0/24 proto udp dir fwd priority 9 action allow hard "
		soft, hard := strings.Index(out, line+"false"), strings.Index(out, line+"true")
		return soft >= 0 && hard > soft
	})
}

// XFRMNLGRP_ACQUIRE.
const xfrmGroupAcquire = 1

// TestXfrmAcquireStream: a UDP packet that matches an out policy with a
// template but no SA makes the kernel ask the key manager for one; the
// acquire comes through the xfrm-acquire stream byte for byte as the
// kernel sent it to a plain netlink socket, in JSON field by field (the
// SA asked for, the packet's selector, the policy with its mark), and in
// listen's line.
func TestXfrmAcquireStream(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm-acquire", "--json-always")
	raw, js := ns.receivers(t, streams.Map{}, "xfrm-acquire")
	listen := ns.start(t, notified, nlmcast, "listen", "xfrm-acquire")
	direct := ns.subscribeFamily(t, unix.NETLINK_XFRM, []uint32{xfrmGroupAcquire}, false, nil)

	// Not lo: it has disable_xfrm, so its packets never meet a policy.
	ns.ip(t, "link", "add", "xf0", "type", "veth", "peer", "name", "xf1")
	ns.ip(t, "link", "set", "xf0", "up")
	ns.ip(t, "link", "set", "xf1", "up")
	ns.ip(t, "addr", "add", "10.9.0.5/24", "dev", "xf0")
	ns.ip(t, "route", "add", "10.9.1.0/24", "dev", "xf0")
	ns.ip(t, "xfrm", "policy", "add", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "udp", "dir", "out", "priority", "50",
		"mark", "3", "mask", "0xff", "tmpl", "src", "10.9.0.1", "dst", "10.9.0.2", "proto", "esp", "reqid", "7", "mode", "tunnel")
	ns.do(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, 3); err != nil {
			return err
		}
		// With no SA the kernel drops the packet (or holds it): only the
		// acquire matters.
		unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: 53, Addr: [4]byte{10, 9, 1, 9}})
		return nil
	})
	waitFor(t, &direct.changed, "the kernel's acquire on a direct netlink socket", func() bool { return direct.count() > 0 })
	direct.stop()

	msgs := direct.messages(xfrmGroupAcquire)
	run := bridged(t, "xfrm-acquire raw", msgs, raw, "xfrm-acquire")
	evs, _ := decodedEvents[decode.XfrmEvent](t, "xfrm-acquire", jsonOf(t, js, "xfrm-acquire", run))
	ev := evs[0]
	sa, sel, p := ev.SA, ev.Selector, ev.Policy
	if ev.Event != "acquire" || ev.Proto != "esp" || sa == nil || sa.Src != "10.9.0.1" || sa.Dst != "10.9.0.2" || sa.Proto != "esp" || sa.Mark != nil ||
		sel == nil || sel.Src != "10.9.0.5/32" || sel.Dst != "10.9.1.9/32" || sel.Proto != "udp" || sel.DstPort != 53 || sel.SrcPort == 0 ||
		p == nil || p.Selector == nil || p.Selector.Src != "10.9.0.0/24" || p.Selector.Dst != "10.9.1.0/24" || p.Dir != "out" ||
		p.Priority == nil || *p.Priority != 50 || p.Mark == nil || *p.Mark != 3 || len(p.Tmpls) != 1 ||
		p.Tmpls[0] != (decode.XfrmTemplate{Src: "10.9.0.1", Dst: "10.9.0.2", Proto: "esp", SPI: "0x00000000", Reqid: 7, Mode: "tunnel"}) ||
		ev.Seq == nil || *ev.Seq == 0 || ev.Algos == nil || ev.KeysRedacted {
		t.Errorf("acquire: %+v\nsa %+v\nselector %+v\npolicy %+v", ev, sa, sel, p)
	}
	listen.waitStdout(t, "listen printed the acquire", func(out string) bool {
		return strings.Contains(out, "[ACQUIRE] src 10.9.0.1 dst 10.9.0.2 proto esp spi 0x00000000 sel src 10.9.0.5/32 dst 10.9.1.9/32 proto udp "+
			"policy src 10.9.0.0/24 dst 10.9.1.0/24 proto udp dir out priority 50 action allow tmpl src 10.9.0.1 dst 10.9.0.2 proto esp reqid 7 mode tunnel")
	})
}

// decodedXfrm decodes one xfrm message as the bridge does.
func decodedXfrm(t *testing.T, msg []byte) decode.XfrmEvent {
	t.Helper()
	var ev decode.XfrmEvent
	if err := json.Unmarshal(decode.Xfrm(msg, false).Event, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestXfrmListenMatchesMonitor: ip xfrm monitor and nlmcast listen, side
// by side in a namespace, see the same policy events in the same order:
// added, updated, expired (soft and hard), deleted, flushed.
func TestXfrmListenMatchesMonitor(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	// --json-always: by default the bridge encodes JSON for a stream from
	// its next check of the joined groups after listen joined (100 ms, more
	// under load), and events before that would be missing from listen
	// but not from the monitor.
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm", "--json-always")
	listen := ns.start(t, notified, nlmcast, "listen", "xfrm")
	monitor := ns.startMonitor(t, "ip", "-n", ns.name, "xfrm", "monitor")

	// ip xfrm monitor says nothing when it has joined: update a marker
	// policy until it prints the update; from the last marker on, both
	// must show the same events.
	ns.ip(t, "xfrm", "policy", "add", "src", "10.8.0.0/24", "dst", "10.8.1.0/24", "dir", "in")
	deadline := time.Now().Add(patience)
	for prio := 1; ; prio++ {
		ns.ip(t, "xfrm", "policy", "update", "src", "10.8.0.0/24", "dst", "10.8.1.0/24", "dir", "in", "priority", strconv.Itoa(prio))
		if await(&monitor.changed, 100*time.Millisecond, func() bool { return strings.Contains(monitor.Stdout(), "Updated src 10.8.0.0/24") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ip xfrm monitor printed no marker update in %v:\n%s\n%s", patience, monitor.Stdout(), monitor.Stderr())
		}
	}

	ns.ip(t, "xfrm", "policy", "add", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "tcp", "dport", "443", "dir", "out",
		"priority", "100", "tmpl", "src", "10.9.0.1", "dst", "10.9.0.2", "proto", "esp", "reqid", "7", "mode", "tunnel")
	ns.ip(t, "xfrm", "policy", "update", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "tcp", "dport", "443", "dir", "out",
		"priority", "200", "action", "block")
	ns.ip(t, "xfrm", "policy", "add", "src", "2001:db8:9::/64", "dst", "2001:db8:a::/64", "dir", "in", "mark", "5", "mask", "0xff")
	ns.ip(t, "xfrm", "policy", "add", "src", "10.7.0.0/24", "dst", "10.7.1.0/24", "dir", "fwd", "limit", "time-soft", "1", "limit", "time-hard", "3") // as in TestXfrmExpireStream
	monitor.waitStdout(t, "ip xfrm monitor printed the hard expiry", func(out string) bool { return strings.Contains(out, "hard 1") })
	ns.ip(t, "xfrm", "policy", "delete", "src", "10.9.0.0/24", "dst", "10.9.1.0/24", "proto", "tcp", "dport", "443", "dir", "out")
	ns.ip(t, "xfrm", "policy", "flush")

	want := []string{
		"new-policy 10.9.0.0/24 10.9.1.0/24 out",
		"upd-policy 10.9.0.0/24 10.9.1.0/24 out",
		"new-policy 2001:db8:9::/64 2001:db8:a::/64 in",
		"new-policy 10.7.0.0/24 10.7.1.0/24 fwd",
		"pol-expire 10.7.0.0/24 10.7.1.0/24 fwd hard=false",
		"pol-expire 10.7.0.0/24 10.7.1.0/24 fwd hard=true",
		"del-policy 10.9.0.0/24 10.9.1.0/24 out",
		"flush-policy",
	}
	var mon, lis []string
	monitor.waitStdout(t, "ip xfrm monitor printed the flush", func(out string) bool {
		mon = afterMarker(monitorEvents(out))
		return len(mon) > 0 && mon[len(mon)-1] == "flush-policy"
	})
	listen.waitStdout(t, "listen printed the flush", func(out string) bool {
		lis = afterMarker(listenEvents(out))
		return len(lis) > 0 && lis[len(lis)-1] == "flush-policy"
	})
	if !slices.Equal(mon, want) {
		t.Errorf("ip xfrm monitor's events:\n%s\nwant:\n%s\noutput:\n%s", strings.Join(mon, "\n"), strings.Join(want, "\n"), monitor.Stdout())
	}
	if !slices.Equal(lis, mon) {
		t.Errorf("listen's events:\n%s\nip xfrm monitor's:\n%s\nlisten printed:\n%s", strings.Join(lis, "\n"), strings.Join(mon, "\n"), listen.Stdout())
	}
}

// startMonitor runs a monitor command, which has no readiness signal of
// its own, collecting its output.
func (ns *netns) startMonitor(t *testing.T, argv ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), ready: make(chan struct{}), done: make(chan struct{})}
	outPipe, _ := p.cmd.StdoutPipe()
	errPipe, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(&p.stdout, outPipe, "", nil) }()
	go func() { defer wg.Done(); p.copy(&p.stderr, errPipe, "", nil) }()
	go func() {
		wg.Wait()
		p.cmd.Wait()
		close(p.done)
		p.changed.notify()
	}()
	t.Cleanup(p.stop)
	return p
}

// afterMarker returns the events after the last one of the marker policy
// (10.8.0.0/24).
func afterMarker(evs []string) []string {
	for i := len(evs) - 1; i >= 0; i-- {
		if strings.Contains(evs[i], " 10.8.0.0/24 ") {
			return evs[i+1:]
		}
	}
	return nil
}

var (
	// An event of ip xfrm monitor starts at the line's start; its
	// continuation lines start with a tab.
	monitorPolicy = regexp.MustCompile(`^(Updated |Deleted |Expired )?src (\S+) dst (\S+)`)
	monitorDir    = regexp.MustCompile(`^\s+dir (\S+)`)
	monitorHard   = regexp.MustCompile(`^\s+hard (\d)`)
	listenPolicy  = regexp.MustCompile(`\[(NEW-POLICY|UPD-POLICY|DEL-POLICY|POL-EXPIRE)\] src (\S+) dst (\S+) .*?dir (\S+)(?:.* hard (true|false))?`)
)

// monitorEvents maps ip xfrm monitor's policy output to events as
// "KIND SRC DST DIR", with "hard=BOOL" for an expiry, and "flush-policy".
func monitorEvents(out string) []string {
	var evs []string
	kinds := map[string]string{"": "new-policy", "Updated ": "upd-policy", "Deleted ": "del-policy", "Expired ": "pol-expire"}
	var cur []string // the policy event being read: kind, src, dst
	dir, hard := "", ""
	end := func() {
		if cur != nil {
			ev := strings.Join(append(cur, dir), " ")
			if hard != "" {
				ev += " hard=" + map[string]string{"0": "false", "1": "true"}[hard]
			}
			evs = append(evs, ev)
		}
		cur, dir, hard = nil, "", ""
	}
	for line := range strings.Lines(out) {
		switch m := monitorPolicy.FindStringSubmatch(line); {
		case m != nil:
			end()
			cur = []string{kinds[m[1]], m[2], m[3]}
		case strings.HasPrefix(line, "Flushed policy"):
			end()
			evs = append(evs, "flush-policy")
		case !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " "):
			end()
			if strings.TrimSpace(line) != "" {
				evs = append(evs, "other: "+strings.TrimSpace(line))
			}
		default:
			if m := monitorDir.FindStringSubmatch(line); m != nil && cur != nil {
				dir = m[1]
			}
			if m := monitorHard.FindStringSubmatch(line); m != nil && cur != nil {
				hard = m[1]
			}
		}
	}
	end()
	return evs
}

// listenEvents maps listen's lines on the xfrm streams to events as
// monitorEvents does.
func listenEvents(out string) []string {
	var evs []string
	for line := range strings.Lines(out) {
		if m := listenPolicy.FindStringSubmatch(line); m != nil {
			ev := strings.Join([]string{strings.ToLower(m[1]), m[2], m[3], m[4]}, " ")
			if m[5] != "" {
				ev += " hard=" + m[5]
			}
			evs = append(evs, ev)
		} else if strings.Contains(line, "[FLUSH-POLICY]") {
			evs = append(evs, "flush-policy")
		} else if i := strings.Index(line, "["); i >= 0 && strings.Contains(line, "xfrm") {
			evs = append(evs, "other: "+strings.TrimSpace(line[i:]))
		}
	}
	return evs
}
