package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// auditUserAVC is AUDIT_USER_AVC: the one user message the kernel logs
// even with audit disabled (and without auditd), so that the test changes
// no audit setting.
const auditUserAVC = 1107

// sendAuditUser sends text to the kernel's audit log as an AUDIT_USER_AVC
// message (needs CAP_AUDIT_WRITE), from the initial network namespace.
func sendAuditUser(t *testing.T, text string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		t.Fatalf("audit socket: %v", err)
	}
	defer unix.Close(fd)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(text)+1)
	msg = append(msg, text...)
	msg = append(msg, 0)
	binary.NativeEndian.PutUint32(msg, uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], auditUserAVC)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("send AUDIT_USER_AVC: %v", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil || n < unix.SizeofNlMsghdr+4 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		t.Fatalf("AUDIT_USER_AVC: no acknowledgement: %v % x", err, buf[:n])
	}
	if e := int32(binary.NativeEndian.Uint32(buf[unix.SizeofNlMsghdr:])); e != 0 {
		t.Fatalf("AUDIT_USER_AVC refused: %v", unix.Errno(-e))
	}
}

// TestAuditStream: audit records are multicast in the initial network
// namespace only, so this bridge runs on the host, on addresses and a
// source port of its own. The test sends one AUDIT_USER_AVC message (the
// host's kernel log gets its line; no setting changes, nothing to
// revert); its record comes through the bridge byte for byte as the
// kernel sent it to a plain READLOG socket, in JSON field by field, and
// in listen as audit.log writes it. A bridge in another namespace refuses
// the stream and says why.
func TestAuditStream(t *testing.T) {
	nlmcast, _ := binaries(t)
	host := &netns{fd: -1}
	ns := newNetNS(t)
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link", "--cleartext-to-all-users", "audit").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "only in the host's initial network namespace") {
		t.Fatalf("bridge of audit in a namespace: %v: %s; want a refusal that says why", err, out)
	}
	out, err = exec.Command(nlmcast, "bridge", "--streams", "audit").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--expose audit=") {
		t.Fatalf("bridge --streams audit: %v: %s; want a refusal that names --expose", err, out)
	}
	var r [2]byte
	rand.Read(r[:])
	m := streams.Map{Base: netip.AddrFrom4([4]byte{239, 253, r[0] &^ 1, 0}), Port: 20000 + uint16(r[1])*8}
	host.start(t, notified, nlmcast, "bridge", "--streams", "uevent", "--cleartext-to-all-users", "audit", "--base", m.Base.String(),
		"--port", strconv.Itoa(int(m.Port)), "--source-port", "1014", "--requests=false", "--json-always")
	from := &mcast.ReceiverConfig{Source: netip.AddrPortFrom(mcast.LoopbackSource, 1014)}
	raw, js := host.receiversFrom(t, m, from, true, "audit")
	listen := host.start(t, notified, nlmcast, "listen", "--base", m.Base.String(), "--port", strconv.Itoa(int(m.Port)),
		"--source-port", "1014", "--insecure", "audit")
	direct := host.subscribeFamily(t, unix.NETLINK_AUDIT, []uint32{unix.AUDIT_NLGRP_READLOG}, false, nil)

	var id [6]byte
	rand.Read(id[:])
	text := "nlmcast-integration " + hex.EncodeToString(id[:])
	sendAuditUser(t, text)
	// Other records of the host may come too: find ours on both paths.
	ours := func(msgs [][]byte) []byte {
		for _, msg := range msgs {
			if bytes.Contains(msg, []byte(text)) {
				return msg
			}
		}
		return nil
	}
	rawOf := func(c *goCollector) [][]byte {
		var out [][]byte
		for _, g := range c.events("audit") {
			out = append(out, g.payload)
		}
		return out
	}
	waitFor(t, &direct.changed, "the record directly", func() bool { return ours(direct.messages(unix.AUDIT_NLGRP_READLOG)) != nil })
	waitFor(t, &raw.changed, "the record through the bridge", func() bool { return ours(rawOf(raw)) != nil })
	if d, b := ours(direct.messages(unix.AUDIT_NLGRP_READLOG)), ours(rawOf(raw)); !bytes.Equal(d, b) {
		t.Errorf("record differs:\nbridge %x\ndirect %x", b, d)
	}
	var ev decode.AuditEvent
	waitFor(t, &js.changed, "the record in JSON", func() bool {
		for _, g := range js.events("audit") {
			if bytes.Contains(g.payload, []byte(text)) {
				evs, _ := decodedEvents[decode.AuditEvent](t, "audit", []got{g})
				ev = evs[0]
				return true
			}
		}
		return false
	})
	last := ev.Fields[len(ev.Fields)-1]
	if ev.Type != auditUserAVC || ev.TypeName != "USER_AVC" || ev.Serial == 0 || ev.Time == "" || !strings.HasSuffix(ev.EventID, ":"+strconv.FormatUint(ev.Serial, 10)) ||
		last != (decode.AuditField{Key: "msg", Value: text}) || ev.Fields[0].Key != "pid" {
		t.Errorf("JSON record: %+v", ev)
	}
	listen.waitStdout(t, "listen printed the record", func(out string) bool {
		return strings.Contains(out, "type=USER_AVC msg=audit("+ev.EventID+"): pid=") && strings.Contains(out, "msg='"+text+"'")
	})
}
