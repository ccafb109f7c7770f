package integration

import (
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// TestBindServiceForgerIsNotAttested: without keys, on a host with the
// default ip_unprivileged_port_start, an unprivileged user with
// CAP_NET_BIND_SERVICE binds the bridge's address once the bridge has said
// goodbye, and sends frames that pass the source check and the sequence
// rules (a larger, fresh epoch right after a goodbye is a restart). The
// kernel shows the port held by that user, not root: the receivers drop
// them. A receiver told not to ask the kernel takes the forged event,
// which shows what the check stops.
func TestBindServiceForgerIsNotAttested(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	setpriv := testenv.RequireCommand(t, "setpriv")
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", nlmcast}
	bridgeArgs := []string{nlmcast, "bridge", "--streams", "link", "--json-always"}
	bridge := ns.start(t, notified, bridgeArgs...)
	text := ns.start(t, notified, append(asNobody, "listen", "link")...)
	raw := ns.start(t, notified, append(asNobody, "listen", "--raw", "link")...)
	link := mustStream("link")
	var blind *receiver.Receiver
	ns.do(t, func() (err error) {
		blind, err = receiver.New(&receiver.Config{Streams: []streams.Stream{link}, NoOwnerCheck: true})
		return err
	})
	defer blind.Close()
	log := logFrames(blind)

	ns.ip(t, "link", "add", "va0", "type", "veth", "peer", "name", "vb0")
	text.waitStdout(t, "listen printed the new link", func(out string) bool { return strings.Contains(out, "va0") })

	bridge.stop()
	forgeAsBindService(t, ns, python)
	// The forged frames came before anything of the next bridge.
	ns.start(t, notified, bridgeArgs...)
	ns.ip(t, "link", "add", "va1", "type", "veth", "peer", "name", "vb1")
	text.waitStdout(t, "listen printed an event of the restarted bridge", func(out string) bool { return strings.Contains(out, "va1") })
	raw.waitStdout(t, "listen --raw printed events of the restarted bridge", func(out string) bool {
		return strings.Count(out, " event len ") >= 4 // va0, va1 and their peers, at least
	})
	waitFor(t, &log.changed, "the receiver without the check got the restarted bridge's frames", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.epochs) >= 3
	})
	text.stop()
	raw.stop()
	for _, p := range []*proc{text, raw} {
		if strings.Contains(p.Stdout(), "evil0") || strings.Contains(p.Stdout(), evilHex) {
			t.Errorf("%v printed a forged frame:\n%s", p.cmd.Args, p.Stdout())
		}
		if want := "refused: 2 while the kernel did not show the bridge's address held by uid 0 alone"; !strings.Contains(p.Stderr(), want) {
			t.Errorf("%v: want %q on stderr, got:\n%s", p.cmd.Args, want, p.Stderr())
		}
	}
	// The forger's epoch has 1 in its random bits; the receiver that did
	// not ask the kernel took it as a restart.
	log.mu.Lock()
	forged := false
	for _, e := range log.epochs {
		forged = forged || e&(1<<20-1) == 1
	}
	log.mu.Unlock()
	if !forged {
		t.Errorf("the receiver without the owner check did not take the forged frames (epochs %x): the test proves nothing", log.epochs)
	}
	if st := blind.Stats(); st.Unattested != 0 {
		t.Errorf("a receiver without the check counted %d unattested frames", st.Unattested)
	}
}
