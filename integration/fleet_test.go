package integration

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

var natsBin struct {
	once sync.Once
	path string
	err  error
}

// natsServer builds nats-server from the Go module this module requires
// (github.com/nats-io/nats-server/v2), once per run.
func natsServer(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	binaries(t) // makes the directory, removed by TestMain
	natsBin.once.Do(func() {
		natsBin.path = filepath.Join(bins.dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsBin.path, "github.com/nats-io/nats-server/v2")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsBin.err = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsBin.err != nil {
		t.Fatal(natsBin.err)
	}
	return natsBin.path
}

// startNATS runs nats-server with JetStream in ns, listening on every
// address of ns on port 4222, storing in dir; ready when it says so.
func startNATS(t *testing.T, ns *netns, dir string) *proc {
	return ns.start(t, printed("Server is ready"), natsServer(t), "-a", "0.0.0.0", "-p", "4222", "-js", "-sd", dir)
}

// wire connects namespace a to c with a veth pair made inside them (the
// host's namespace is never touched): a gets 10.199.N.1/30, c 10.199.N.2.
func wire(t *testing.T, a, c *netns, n int) string {
	va, vc := fmt.Sprintf("fa%d", n), fmt.Sprintf("fc%d", n)
	a.ip(t, "link", "add", va, "type", "veth", "peer", "name", vc, "netns", c.name)
	a.ip(t, "addr", "add", fmt.Sprintf("10.199.%d.1/30", n), "dev", va)
	a.ip(t, "link", "set", va, "up")
	c.ip(t, "addr", "add", fmt.Sprintf("10.199.%d.2/30", n), "dev", vc)
	c.ip(t, "link", "set", vc, "up")
	return fmt.Sprintf("nats://10.199.%d.2:4222", n)
}

// fleetHost is one host of the fleet: a namespace with a bridge of the
// link stream and a publisher.
type fleetHost struct {
	ns     *netns
	name   string
	url    string
	bridge *proc
	pub    *proc
}

func (h *fleetHost) publish(t *testing.T, nlmcast string) {
	h.pub = h.ns.start(t, notified, nlmcast, "publish", "--nats", h.url, "--host", h.name, "link")
}

// linkChanges makes link events in ns: n veth pairs added, set up and
// deleted.
func linkChanges(t *testing.T, ns *netns, tag string, n int) {
	var b strings.Builder
	for i := range n {
		name := fmt.Sprintf("%s%d", tag, i)
		fmt.Fprintf(&b, "link add %s type veth peer name p%s\nlink set %s up\nlink del %s\n", name, name, name, name)
	}
	cmd := exec.Command("ip", "-n", ns.name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
}

var listenRaw = regexp.MustCompile(`#(\d+) epoch ([0-9a-f]+) (?:state )?event len \d+ ([0-9a-f]+)`)

// fleetEvents returns the netlink messages of the events nlmcast listen
// --raw printed, in order, and its notice lines ("!!").
func fleetEvents(out string) (msgs [][]byte, notices []string) {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " !! ") {
			notices = append(notices, l)
			continue
		}
		if m := listenRaw.FindStringSubmatch(l); m != nil {
			b, _ := hex.DecodeString(m[3])
			msgs = append(msgs, b)
		}
	}
	return msgs, notices
}

func sameMsgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestFleet: two hosts (namespaces), each with a bridge and a publisher,
// and a NATS server in a third, where consumers receive both hosts'
// events byte-identical to their direct netlink records; the server killed
// during a burst and restarted: everything, or a notice, never a silent
// hole; a publisher restarted: no duplicates; a late consumer replays.
func TestFleet(t *testing.T) {
	nlmcast, _ := binaries(t)
	c := newNetNS(t)
	hosts := []*fleetHost{{name: "a"}, {name: "b"}}
	for i, h := range hosts {
		h.ns = newNetNS(t)
		h.url = wire(t, h.ns, c, i+1)
	}
	store := t.TempDir()
	server := startNATS(t, c, store)
	for _, h := range hosts {
		h.bridge = h.ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw")
		h.publish(t, nlmcast)
	}
	listeners := map[string]*proc{}
	for _, h := range hosts {
		listeners[h.name] = c.start(t, notified, nlmcast, "listen", "--nats", "nats://127.0.0.1:4222", "--host", h.name, "--raw", "--since", "all", "link")
	}
	records := map[string][][]byte{}
	round := func(what string, n int, during func()) {
		t.Helper()
		var wg sync.WaitGroup
		for _, h := range hosts {
			direct := h.ns.subscribe(t, []uint32{1})
			wg.Add(1)
			go func() {
				defer wg.Done()
				linkChanges(t, h.ns, "d"+h.name, n)
				direct.stop()
			}()
			defer func() {
				wg.Wait()
				records[h.name] = append(records[h.name], direct.messages(1)...)
			}()
		}
		if during != nil {
			during()
		}
	}
	check := func(what string, allowNotice bool) {
		t.Helper()
		defer func(start time.Time) { t.Logf("%s: checked in %v", what, time.Since(start).Round(time.Millisecond)) }(time.Now())
		for _, h := range hosts {
			want := records[h.name]
			l := listeners[h.name]
			l.waitStdout(t, fmt.Sprintf("%s: host %s: %d events", what, h.name, len(want)), func(out string) bool {
				msgs, notices := fleetEvents(out)
				return len(msgs) >= len(want) || (allowNotice && len(notices) > 0 && len(msgs) > 0)
			})
			msgs, notices := fleetEvents(l.Stdout())
			if len(notices) == 0 && !sameMsgs(msgs, want) {
				t.Errorf("%s: host %s: %d events, not the %d of its direct record, and no notice", what, h.name, len(msgs), len(want))
			}
			if !allowNotice && len(notices) > 0 {
				t.Errorf("%s: host %s: notices %q", what, h.name, notices)
			}
		}
	}

	round("both hosts", 20, nil)
	check("both hosts", false)

	// The server killed during a burst, and restarted on the same store.
	round("server killed", 60, func() {
		server.kill()
		server = startNATS(t, c, store)
	})
	check("server killed", true)

	// A publisher restarted: nothing published twice.
	hosts[0].pub.stop()
	hosts[0].publish(t, nlmcast)
	round("publisher restarted", 10, nil)
	check("publisher restarted", true)
	for name, l := range listeners {
		if strings.Contains(l.Stdout(), "duplicate") {
			t.Errorf("host %s: duplicates:\n%s", name, l.Stdout())
		}
	}

	// A late consumer replays host b from the stream's first message.
	late := c.start(t, notified, nlmcast, "listen", "--nats", "nats://127.0.0.1:4222", "--host", "b", "--raw", "--since", "1", "link")
	want := records["b"]
	late.waitStdout(t, fmt.Sprintf("the late consumer: %d events", len(want)), func(out string) bool {
		msgs, _ := fleetEvents(out)
		return len(msgs) >= len(want)
	})
	if msgs, _ := fleetEvents(late.Stdout()); !sameMsgs(msgs, want) {
		t.Errorf("the late consumer got %d events, not the %d of host b's record", len(msgs), len(want))
	}
	// A consumer that asks for the state: host a's publisher asks its
	// bridge, whose answer (the link table) comes through NATS.
	state := c.start(t, notified, nlmcast, "listen", "--nats", "nats://127.0.0.1:4222", "--host", "a", "--raw", "--resync", "link")
	state.waitStdout(t, "host a's link table, asked through NATS", func(out string) bool {
		return strings.Contains(out, " state event ") && strings.Contains(out, "-- resync-end")
	})
	state.stop()
	// One consumer of every host.
	// One consumer of every host, which asks each for its state.
	all := c.start(t, notified, nlmcast, "listen", "--nats", "nats://127.0.0.1:4222", "--host", "all", "--raw", "--since", "all", "--resync", "link")
	for _, h := range hosts {
		want := records[h.name]
		prefix := "[" + h.name + "/link]"
		of := func(out string) [][]byte {
			var b strings.Builder
			for _, l := range strings.Split(out, "\n") {
				// The answer to the state consumer above is stored for
				// every reader of host a: not the host's live events.
				if strings.HasPrefix(l, prefix) && !strings.Contains(l, " state event ") {
					b.WriteString(l + "\n")
				}
			}
			msgs, _ := fleetEvents(b.String())
			return msgs
		}
		all.waitStdout(t, fmt.Sprintf("--host all: host %s: %d events", h.name, len(want)), func(out string) bool { return len(of(out)) >= len(want) })
		if !sameMsgs(of(all.Stdout()), want) {
			t.Errorf("--host all: host %s: not its direct record", h.name)
		}
		all.waitStdout(t, fmt.Sprintf("--host all --resync: host %s's link table", h.name), func(out string) bool {
			var state, end bool
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, prefix) {
					state = state || strings.Contains(l, " state event ")
					end = end || strings.Contains(l, "-- resync-end")
				}
			}
			return state && end
		})
	}
	all.stop()
	for _, l := range listeners {
		l.stop()
	}
	late.stop()
	for _, h := range hosts {
		h.pub.stop()
		t.Logf("publisher %s:\n%s", h.name, h.pub.Stderr())
	}
}

// TestFleetOverflow: NATS down while the kernel makes more events than a
// publisher's buffer holds: when NATS is back, the consumer reports the
// loss (the marker, the gap), and the publisher's resync request brings
// the bridge's answer, the link table, to it.
func TestFleetOverflow(t *testing.T) {
	nlmcast, _ := binaries(t)
	ns := newNetNS(t)
	store := t.TempDir()
	server := startNATS(t, ns, store)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw")
	pub := ns.start(t, notified, nlmcast, "publish", "--nats", "nats://127.0.0.1:4222", "--host", "a", "--buffer-bytes", "4096", "link")
	l := ns.start(t, notified, nlmcast, "listen", "--nats", "nats://127.0.0.1:4222", "--host", "a", "--since", "all", "--raw", "link")
	server.kill()
	linkChanges(t, ns, "o", 100)
	startNATS(t, ns, store)
	l.waitStdout(t, "a notice of the loss and the resync's end", func(out string) bool {
		return strings.Contains(out, "!! lost upstream: ") && strings.Contains(out, "!! gap") && strings.Contains(out, "-- resync-end")
	})
	if !strings.Contains(l.Stdout(), " state event ") {
		t.Errorf("no state event (the link table) after the loss:\n%s", l.Stdout())
	}
	pub.stop()
	t.Logf("publisher:\n%s", pub.Stderr())
}
