package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// terminalSafe returns an error if s holds anything a terminal acts on:
// a C0 control but newline, DEL, a C1 control, or invalid UTF-8.
func terminalSafe(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd"):
			return fmt.Errorf("invalid UTF-8 byte %#x at %d", s[i], i)
		case r < 0x20 && r != '\n', r >= 0x7f && r <= 0x9f:
			return fmt.Errorf("control character %U at %d: %q", r, i, s[max(0, i-40):min(len(s), i+40)])
		}
	}
	return nil
}

// TestListenEscapesStrings: text that reaches nlmcast listen's stdout, from
// the kernel (an interface named with ESC and BEL) or forged (a JSON frame
// with escapes that decode to ESC and BEL, raw DEL and C1 in its strings,
// invalid UTF-8, a CR between tokens), holds no byte a terminal acts on,
// as text or as JSON. The forger is root here, but could be any process
// that can send from the bridge's port (CAP_NET_BIND_SERVICE, a container
// where every port is unprivileged, anyone while the bridge is down);
// without keys, a receiver cannot tell it from the bridge.
func TestListenEscapesStrings(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", nlmcast}
	// JSON for every event: the listeners' joins need not be seen first.
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--json-always")
	text := ns.start(t, notified, append(asNobody, "listen", "link")...)
	asJSON := ns.start(t, notified, append(asNobody, "listen", "--json", "link")...)

	// From the kernel: interface names may hold any byte but '/', ':' and
	// white space.
	ns.ip(t, "link", "add", "name", "ev\x1b]0;pw\x07", "type", "veth", "peer", "name", "nlt1")
	// Wait for what shows escaped or not; what it shows is checked last.
	for _, p := range []*proc{text, asJSON} {
		p.waitStdout(t, "listen printed the link", func(out string) bool { return strings.Contains(out, "]0;pw") })
	}

	// Forged, continuing the bridge's numbering, as a forger who watched
	// the stream would: once the bridge has said goodbye, its port is free.
	bridge.stop()
	var epoch string
	var seq uint64
	asJSON.waitStdout(t, "listen --json printed the goodbye", func(out string) bool {
		for _, l := range strings.Split(out, "\n") {
			var f struct {
				Kind, Epoch string
				Seq         uint64
			}
			if json.Unmarshal([]byte(l), &f) == nil && f.Kind == "goodbye" {
				epoch, seq = f.Epoch, f.Seq
				return true
			}
		}
		return false
	})
	forged := fmt.Sprintf(`{"v":1,"kind":"event","stream":"link","family":0,"group":1,"epoch":%q,"seq":%d,`+"\r"+
		`"time":%q,"summary":"new link 99: \u001b]0;pwned\u0007evil0\u001b[2J`+"\x7f\u009b2J\xff"+`",`+
		`"event":{"type":"RTM_NEWLINK","link":{"index":99,"name":"\u001b]0;pwned\u0007"}}}`+"\n",
		epoch, seq+1, time.Now().UTC().Format(time.RFC3339Nano))
	link, _ := streams.Lookup("link")
	dst := net.UDPAddrFromAddrPort(streams.Map{}.Addr(link, streams.JSON))
	// The forger is root (the bridge's uid): it holds the port until its
	// frame is read, and the kernel shows root holding it, as it would
	// the bridge (receivers check who holds the port, not who sent).
	var forger *mcast.Sender
	ns.do(t, func() (err error) {
		forger, err = mcast.NewSender(&mcast.SenderConfig{Source: netipPort(mcast.DefaultSourcePort)})
		return err
	})
	defer forger.Close()
	if err := forger.WriteBatch(msgs([]byte(forged), dst)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*proc{text, asJSON} {
		p.waitStdout(t, "listen printed the forged frame", func(out string) bool { return strings.Contains(out, "evil0") })
		p.stop()
		if err := terminalSafe(p.Stdout()); err != nil {
			t.Errorf("%v: stdout: %v", p.cmd.Args, err)
		}
		if err := terminalSafe(p.Stderr()); err != nil {
			t.Errorf("%v: stderr: %v", p.cmd.Args, err)
		}
	}
	for _, c := range []struct {
		p    *proc
		want []string
	}{
		{text, []string{`ev\x1b]0;pw\x07`, `new link 99: \x1b]0;pwned\x07evil0\x1b[2J\x7f\u009b2J` + "\ufffd\n"}},
		{asJSON, []string{`ev\u001b]0;pw\u0007`, `"summary":"new link 99: \u001b]0;pwned\u0007evil0\u001b[2J\u007f\u009b2J\ufffd"`}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.p.Stdout(), w) {
				t.Errorf("%v printed\n%s\nwant it to hold %q", c.p.cmd.Args, c.p.Stdout(), w)
			}
		}
	}
	// Still one JSON object per line, as received.
	for _, l := range strings.Split(strings.TrimSuffix(asJSON.Stdout(), "\n"), "\n") {
		if !json.Valid([]byte(l)) {
			t.Errorf("listen --json printed %q: not a JSON object", l)
		}
	}
}
