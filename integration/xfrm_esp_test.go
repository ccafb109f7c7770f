//go:build xfrm_esp

// The end-to-end test of xfrm key redaction needs a kernel that can make
// an ESP SA (CONFIG_INET_ESP, cbc(aes), hmac(sha256)); the kernel of CI has
// none, so the test builds only with the tag:
//
//	go test -tags xfrm_esp -run TestXfrmKeysNeverInFrames ./integration
//
// The redaction itself is tested without a kernel SA in decode and
// netlinkbridge (golden SA messages, and the bridge's frames of them).

package integration

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
	"golang.org/x/sys/unix"
)

// xfrmTestKeys are the keys of the SA TestXfrmKeysNeverInFrames adds.
var (
	xfrmTestEnc  = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa"                                 // cbc(aes), 128 bits
	xfrmTestAuth = "a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0a7a0bb" // hmac(sha256), 256 bits
)

// addSA adds, then deletes, an ESP SA with the test keys in ns, or
// reports (skip; fail under CI) that this kernel has no ESP.
func addSA(t *testing.T, ns *netns) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.name, "ip", "xfrm", "state", "add", "src", "10.9.0.1", "dst", "10.9.0.2",
		"proto", "esp", "spi", "0x4242", "reqid", "9", "mode", "tunnel",
		"enc", "cbc(aes)", "0x"+xfrmTestEnc, "auth-trunc", "hmac(sha256)", "0x"+xfrmTestAuth, "128").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "Requested type not found") || strings.Contains(string(out), "algorithm not found") {
			testenv.Missing(t, "an IPsec SA with keys: this kernel has no ESP (CONFIG_INET_ESP) or no cbc(aes)/hmac(sha256): "+strings.TrimSpace(string(out)))
		}
		t.Fatalf("ip xfrm state add: %v: %s", err, out)
	}
	ns.ip(t, "xfrm", "state", "delete", "src", "10.9.0.1", "dst", "10.9.0.2", "proto", "esp", "spi", "0x4242")
}

// keyBytes are the forms a test key could take in a datagram.
func keyBytes(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	for name, h := range map[string]string{"enc": xfrmTestEnc, "auth": xfrmTestAuth} {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out[name+" key"], out[name+" key, hex"] = b[:6], []byte(h[:12])
	}
	return out
}

// TestXfrmKeysNeverInFrames adds an ESP SA with known keys (then deletes
// it) in two namespaces. In one the xfrm-sa stream is bridged in the
// clear: no datagram of its groups, raw or JSON, holds a byte of the keys
// (a capture of every datagram), the raw events are the kernel's messages
// with the keys zeroed and nothing else changed, and JSON says the keys
// were redacted. In the other it is sealed with --xfrm-keys: no datagram
// holds the keys in the clear, and the reader with the key file gets the
// kernel's messages, keys and all.
func TestXfrmKeysNeverInFrames(t *testing.T) {
	clear, sealed := newNetNS(t), newNetNS(t)
	nlmcast, _ := binaries(t)
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	key := privateKey(t)
	sa := mustStream("xfrm-sa")
	groups := []string{streams.Map{}.Addr(sa, streams.Raw).String(), streams.Map{}.Addr(sa, streams.JSON).String()}
	secrets := keyBytes(t)

	out, err := exec.Command("ip", "netns", "exec", clear.name, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm-sa", "--xfrm-keys").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--xfrm-keys: keeps IPsec key material") {
		t.Fatalf("--xfrm-keys in the clear: %v: %s; want a refusal", err, out)
	}

	// Both bridges start, whether or not this kernel has ESP.
	clear.start(t, notified, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "xfrm-sa", "--json-always")
	captureClear := clear.start(t, printed("ready"), append([]string{python, "-c", captureAll}, groups...)...)
	raw, js := clear.receivers(t, streams.Map{}, "xfrm-sa")
	sealed.start(t, notified, nlmcast, "bridge", "--streams", "link", "--expose", "xfrm-sa="+key, "--xfrm-keys")
	captureSealed := sealed.start(t, printed("ready"), append([]string{python, "-c", captureAll}, groups...)...)
	reader := sealed.collect(t, &receiver.Config{Streams: []streams.Stream{sa}, Private: map[string]string{"xfrm-sa": key}})
	t.Cleanup(func() { reader.stop() })

	// In the clear, keys redacted.
	direct := clear.subscribeFamily(t, unix.NETLINK_XFRM, []uint32{xfrmGroupSA}, false, nil)
	addSA(t, clear) // skips (fails under CI) without ESP
	direct.stop()
	var redacted [][]byte
	for _, m := range direct.messages(xfrmGroupSA) {
		m = bytes.Clone(m)
		decode.RedactXfrm(m)
		redacted = append(redacted, m)
	}
	if !bytes.Contains(direct.messages(xfrmGroupSA)[0], secrets["enc key"]) {
		t.Fatal("the direct subscriber's new-sa has no key: the test proves nothing")
	}
	run := bridged(t, "xfrm-sa in the clear", redacted, raw, "xfrm-sa")
	evs, _ := decodedEvents[decode.XfrmEvent](t, "xfrm-sa", jsonOf(t, js, "xfrm-sa", run))
	for i, ev := range evs {
		if ev.SA == nil || !ev.KeysRedacted || ev.SA.Enc == nil || !ev.SA.Enc.KeyRedacted || ev.SA.Enc.KeyBits != 128 || ev.SA.Enc.Name != "cbc(aes)" ||
			ev.SA.Auth == nil || ev.SA.Auth.TruncBits == nil || *ev.SA.Auth.TruncBits != 128 || ev.SA.SPI != "0x00004242" || *ev.SA.Reqid != 9 {
			t.Errorf("JSON event %d: %+v %+v", i, ev, ev.SA)
		}
	}
	captureClear.stop()
	checkNoKeys(t, "in the clear", captureClear.Stdout(), secrets, len(run))

	// Sealed, keys kept for the key file's readers.
	direct = sealed.subscribeFamily(t, unix.NETLINK_XFRM, []uint32{xfrmGroupSA}, false, nil)
	addSA(t, sealed)
	direct.stop()
	for _, g := range bridged(t, "xfrm-sa sealed with --xfrm-keys", direct.messages(xfrmGroupSA), reader, "xfrm-sa") {
		if g.flags&frame.FlagSealed == 0 {
			t.Errorf("an xfrm-sa event with keys came in the clear")
		}
	}
	captureSealed.stop()
	checkNoKeys(t, "sealed", captureSealed.Stdout(), secrets, 2)
}

// checkNoKeys fails if any captured datagram (one hex line each) holds a
// form of a key, or if fewer than events event frames were captured.
func checkNoKeys(t *testing.T, what, capture string, secrets map[string][]byte, events int) {
	t.Helper()
	n := 0
	for _, line := range strings.Fields(capture) {
		d, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range secrets {
			if bytes.Contains(d, s) {
				t.Errorf("%s: a datagram holds the %s: %q", what, name, d)
			}
		}
		if f, err := frame.ParseJSON(d); err == nil && f.Kind == "event" {
			n++
		} else if h, _, err := frame.Parse(d); err == nil && h.Kind == frame.KindEvent {
			n++
		}
	}
	if n < events {
		t.Errorf("%s: captured %d events, want at least %d: the capture proves nothing", what, n, events)
	}
}
