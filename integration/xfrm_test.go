package integration

import (
	"os/exec"
	"strings"
	"testing"

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
