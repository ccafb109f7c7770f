package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/capture"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/internal/tool/recording"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// recorded is one event of a recording: its stream, the netlink group
// its comment names, and its netlink message.
type recorded struct {
	stream string
	group  uint32
	msg    []byte
}

// readRecording returns the events of a recording, in order, and the
// comments of its notes.
func readRecording(t *testing.T, file string) (evs []recorded, notes []string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for {
		p, err := r.Next()
		if err == io.EOF {
			return evs, notes
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		m, ok := recording.ParseMeta(p.Comment)
		if !ok {
			t.Fatalf("%s: a packet without nlmcast's comment: %q", file, p.Comment)
		}
		if p.LinkType == capture.LinkTypeNetlink {
			evs = append(evs, recorded{m.Stream, m.Group, bytes.Clone(p.Data)})
		} else {
			notes = append(notes, p.Comment)
		}
	}
}

func byStream(evs []recorded) map[string][][]byte {
	m := map[string][][]byte{}
	for _, e := range evs {
		m[e.stream] = append(m[e.stream], e.msg)
	}
	return m
}

// TestRecordReplay records real rtnetlink events, checks that tshark
// dissects them, replays them in another namespace with no bridge, and
// records them again there: the messages are the same, in the same order
// on each stream, and the C, Python and Go receivers get exactly them.
// Then synthetic gaps, overruns and restarts, and a file cut short.
func TestRecordReplay(t *testing.T) {
	nlmcast, crecv := binaries(t)
	tshark := testenv.RequireCommand(t, "tshark")
	python := testenv.RequireCommand(t, "/usr/bin/python3")
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "f1.pcapng"), filepath.Join(dir, "f2.pcapng")
	sel := []string{"link", "ipv4-ifaddr", "ipv4-route", "neigh"}

	// 1. Record real events behind a bridge.
	ns := newNetNS(t)
	ns.start(t, notified, nlmcast, "bridge", "--json-always", "--streams", strings.Join(sel, ","))
	rec := ns.start(t, notified, append([]string{nlmcast, "record", "-o", f1}, sel...)...)
	listen := ns.start(t, notified, append([]string{nlmcast, "listen"}, sel...)...)
	ns.ip(t, "link", "add", "rec0", "type", "veth", "peer", "name", "rec1")
	ns.ip(t, "link", "set", "rec0", "up")
	ns.ip(t, "addr", "add", "10.77.0.1/24", "dev", "rec0")
	ns.ip(t, "route", "add", "10.78.0.0/16", "via", "10.77.0.2")
	ns.ip(t, "neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:77:02", "dev", "rec0")
	listen.waitStdout(t, "listen printed the new neighbour", func(out string) bool { return strings.Contains(out, "10.77.0.2") && strings.Contains(out, "[neigh]") })
	rec.stop() // what was queued for it is recorded too
	if !strings.Contains(rec.Stdout(), "recorded ") {
		t.Fatalf("record said: %s\n%s", rec.Stdout(), rec.Stderr())
	}
	if fi, err := os.Stat(f1); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the recording: %v, mode %v; want mode 0600", err, fi.Mode())
	}
	evs, _ := readRecording(t, f1)
	got := byStream(evs)
	for _, s := range sel {
		if len(got[s]) == 0 {
			t.Fatalf("no %s event recorded; streams: %v", s, len(got))
		}
	}

	// 2. Wireshark dissects them as netlink route messages.
	out, err := exec.Command(tshark, "-r", f1, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -r -V: %v\n%s", err, out)
	}
	// (Wireshark 3.4 to 4.x names route and neighbour attributes but
	// shows no values of them.)
	for _, want := range []string{"Linux netlink (cooked header)", "Family: Route", "Linux rtnetlink (route netlink) protocol",
		"Create network interface", "Add IP address", "Add network route", "Add neighbor table entry",
		"rec0", "Address: 10.77.0.1", "nlmcast stream=link kind=event"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("tshark -V shows no %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("tshark -V:\n%s", out[:min(len(out), 20000)])
	}

	// 3. Replay in a namespace of its own, recorded again, and received
	// by the examples.
	ns2 := newNetNS(t)
	rec2 := ns2.start(t, notified, append([]string{nlmcast, "record", "-o", f2}, sel...)...)
	cEx := ns2.start(t, printed("ready"), crecv, "-x", "239.255.78.1:17802")
	pyEx := ns2.start(t, printed("ready"), python, "../examples/python/nlmcast_recv.py", "-x", "239.255.78.1:17802")
	goEx := ns2.start(t, printed("ready"), bins.gorecv, "link")
	replay := exec.Command("ip", "netns", "exec", ns2.name, nlmcast, "replay", "--speed", "0", f1)
	if out, err := replay.CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	rec2.stop()
	evs2, _ := readRecording(t, f2)
	got2 := byStream(evs2)
	for _, s := range sel {
		if len(got[s]) != len(got2[s]) {
			t.Errorf("stream %s: recorded %d events, %d after the replay", s, len(got[s]), len(got2[s]))
			continue
		}
		for i := range got[s] {
			if !bytes.Equal(got[s][i], got2[s][i]) {
				t.Errorf("stream %s: event %d differs after the replay", s, i)
			}
		}
	}
	links := got["link"]
	for _, p := range []*proc{cEx, pyEx} {
		p.waitStdout(t, "an example printed the replayed link events", func(out string) bool { return strings.Count(out, "ok kind=1 ") >= len(links) })
		p.stop()
		var payloads []string
		for _, line := range strings.Split(p.Stdout(), "\n") {
			if strings.HasPrefix(line, "ok kind=1 ") {
				_, pl, _ := strings.Cut(line, "payload=")
				payloads = append(payloads, pl)
			}
		}
		if len(payloads) != len(links) {
			t.Errorf("%v: %d events, want %d", p.cmd.Args, len(payloads), len(links))
			continue
		}
		for i, pl := range payloads {
			if pl != hex.EncodeToString(links[i]) {
				t.Errorf("%v: event %d is not the recorded one", p.cmd.Args, i)
			}
		}
	}
	goEx.waitStdout(t, "the Go example printed the replayed link events", func(out string) bool { return strings.Count(out, "nlmsg_type=") >= len(links) })
	goEx.stop()
	// The Go example prints each message's type and length: the recorded
	// ones, in order.
	var goGot, goWant []string
	for _, line := range strings.Split(goEx.Stdout(), "\n") {
		if i := strings.Index(line, "nlmsg_type="); i >= 0 && strings.HasPrefix(line, "link ") {
			goGot = append(goGot, line[i:])
		}
	}
	for _, m := range links {
		goWant = append(goWant, fmt.Sprintf("nlmsg_type=%d len=%d", binary.NativeEndian.Uint16(m[4:]), len(m)))
	}
	if !slices.Equal(goGot, goWant) {
		t.Errorf("the Go example printed\n%s\nwant the recorded link messages\n%s", strings.Join(goGot, "\n"), strings.Join(goWant, "\n"))
	}

	// 4. Synthetic events: a gap, an overrun, a restart. A recorder
	// beside the listener keeps the control frames and its receiver's
	// notices.
	watch := ns2.start(t, notified, nlmcast, "listen", "--raw", "link")
	fi := filepath.Join(dir, "inject.pcapng")
	recInj := ns2.start(t, notified, nlmcast, "record", "-o", fi, "link")
	script := filepath.Join(dir, "inject")
	if err := os.WriteFile(script, []byte("# a failure, then a clean restart\nrestart,stream=link,after=3\ngoodbye,stream=link,after=3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inj := exec.Command("ip", "netns", "exec", ns2.name, nlmcast, "replay", "--speed", "0", f1,
		"--inject", "gap,stream=link,after=1,count=1", "--inject", "overrun,stream=link,after=2", "--inject", "fragment,stream=link,after=2",
		"--inject-file", script)
	if out, err := inj.CombinedOutput(); err != nil {
		t.Fatalf("replay --inject: %v\n%s", err, out)
	}
	watch.waitStdout(t, "listen printed the last goodbye", func(out string) bool { return strings.Count(out, "goodbye") >= 2 })
	for _, want := range []string{"!! gap: frame #2 lost", "-- overrun", "-- resync-begin", "-- resync-end", fmt.Sprintf("event len %d ", recording.FragmentPad),
		"!! bridge restarted", "-- goodbye"} {
		if !strings.Contains(watch.Stdout(), want) {
			t.Errorf("listen printed no %q after the injections:\n%s", want, watch.Stdout())
		}
	}
	watch.stop()
	recInj.stop()
	_, notes := readRecording(t, fi)
	kinds := map[string]int{}
	for _, n := range notes {
		m, _ := recording.ParseMeta(n)
		if m.Stream != "link" {
			t.Errorf("a note of stream %q: %s", m.Stream, n)
		}
		if m.Notice != "" {
			kinds["notice="+m.Notice]++
		} else {
			kinds["kind="+m.Kind.String()]++
		}
	}
	wantNotes := []string{"kind=overrun", "kind=resync-begin", "kind=resync-end", "kind=goodbye", "notice=gap", "notice=restart"}
	for _, k := range wantNotes {
		if kinds[k] == 0 {
			t.Errorf("the recording of the injections holds no %s note; notes:\n%s", k, strings.Join(notes, "\n"))
		}
	}
	if kinds["kind=goodbye"] < 2 {
		t.Errorf("the recording of the injections holds %d goodbyes, want 2 (the injected one, the last)", kinds["kind=goodbye"])
	}
	// tshark shows them as packet comments.
	out, err = exec.Command(tshark, "-r", fi, "-T", "fields", "-e", "frame.comment").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark -T fields -e frame.comment: %v\n%s", err, out)
	}
	var missing []string
	for _, k := range wantNotes {
		if !bytes.Contains(out, []byte("nlmcast stream=link "+k+" ")) {
			missing = append(missing, k)
		}
	}
	if missing != nil {
		t.Errorf("tshark shows no comment with %q:\n%s", missing, out)
	}

	// 5. A file cut short replays up to its last whole block, and says so.
	data, err := os.ReadFile(f1)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcapng")
	if err := os.WriteFile(cut, data[:len(data)-7], 0o600); err != nil {
		t.Fatal(err)
	}
	f3 := filepath.Join(dir, "f3.pcapng")
	rec3 := ns2.start(t, notified, append([]string{nlmcast, "record", "-o", f3}, sel...)...)
	out, err = exec.Command("ip", "netns", "exec", ns2.name, nlmcast, "replay", "--speed", "0", cut).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !bytes.Contains(out, []byte("cut short after")) {
		t.Errorf("replay of a cut file: %v, want a failure saying it was cut short:\n%s", err, out)
	}
	rec3.stop()
	evs3, _ := readRecording(t, f3)
	if want := len(evs) - 1; len(evs3) != want && len(evs3) != len(evs) {
		t.Errorf("replay of a cut file sent %d events, want %d (all but the cut one)", len(evs3), want)
	}
}

// TestRecordKilled kills a recorder (SIGKILL) during a burst of events:
// its file reads up to its last whole block, and a replay of it in a
// fresh namespace sends every whole event of it, then says it was cut
// short (or nothing, if the kill fell between two writes).
func TestRecordKilled(t *testing.T) {
	nlmcast, _ := binaries(t)
	ns := newNetNS(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "k.pcapng")
	ns.start(t, notified, nlmcast, "bridge", "--json-always", "--streams", "link")
	rec := ns.start(t, notified, nlmcast, "record", "-o", f, "link")
	listen := ns.start(t, notified, nlmcast, "listen", "--raw", "link")
	// A burst: 300 veth pairs made and one end brought up, by one ip
	// -batch.
	var batch strings.Builder
	for i := range 300 {
		fmt.Fprintf(&batch, "link add kv%d type veth peer name kp%d\nlink set kv%d up\n", i, i, i)
	}
	script := filepath.Join(dir, "burst")
	if err := os.WriteFile(script, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	burst := exec.Command("ip", "-n", ns.name, "-batch", script)
	burst.Stderr = os.Stderr
	if err := burst.Start(); err != nil {
		t.Fatal(err)
	}
	burstDone := make(chan error, 1)
	go func() { burstDone <- burst.Wait() }()
	listen.waitStdout(t, "listen printed 100 events of the burst", func(out string) bool { return strings.Count(out, "event len ") >= 100 })
	rec.kill()
	select {
	case err := <-burstDone:
		t.Logf("the burst was over before the recorder was killed")
		burstDone <- err
	default:
	}
	if err := <-burstDone; err != nil {
		t.Fatalf("ip -batch: %v", err)
	}

	fh, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := capture.NewReader(fh)
	if err != nil {
		t.Fatalf("a killed recorder's file: %v", err)
	}
	packets, events, cut := 0, 0, false
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, capture.ErrTruncated) {
			cut = true
			break
		}
		if err != nil {
			t.Fatalf("a killed recorder's file, after %d packets: %v", packets, err)
		}
		packets++
		if p.LinkType == capture.LinkTypeNetlink {
			events++
		}
	}
	t.Logf("%d packets (%d events) in the file of a killed recorder; cut in a block: %v", packets, events, cut)
	if events == 0 {
		t.Fatalf("the killed recorder's file holds no event; listen had printed 100 before the kill")
	}

	// Replayed in a fresh namespace: every whole event arrives. The
	// kill may fall between two writes (the recorder writes whole
	// batches), so a copy cut in its last block is replayed too.
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	cutFile := filepath.Join(dir, "cut.pcapng")
	if err := os.WriteFile(cutFile, data[:len(data)-5], 0o600); err != nil {
		t.Fatal(err)
	}
	lastWhole := packets
	if !cut {
		lastWhole--
	}
	ns2 := newNetNS(t)
	for _, c := range []struct {
		file    string
		cut     bool
		packets int
		events  int
	}{{f, cut, packets, events}, {cutFile, true, lastWhole, lastWhole}} {
		got := ns2.start(t, notified, nlmcast, "listen", "--raw", "link")
		out, err := exec.Command("ip", "netns", "exec", ns2.name, nlmcast, "replay", "--rate", "5000", c.file).CombinedOutput()
		if c.cut {
			want := fmt.Sprintf("cut short after %d whole packets", c.packets)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !bytes.Contains(out, []byte(want)) {
				t.Errorf("replay of %s: %v, want a failure saying %q:\n%s", c.file, err, want, out)
			}
		} else if err != nil {
			t.Errorf("replay of a file of whole blocks: %v\n%s", err, out)
		}
		got.waitStdout(t, "the replay's listener printed the goodbye", func(out string) bool { return strings.Contains(out, "-- goodbye") })
		got.stop()
		if n := strings.Count(got.Stdout(), "event len "); n != c.events {
			t.Errorf("replay of %s: listen got %d events, want the %d whole ones of the file", c.file, n, c.events)
		}
		if strings.Contains(got.Stdout(), "!!") {
			t.Errorf("listen reported a loss during the replay of %s:\n%s", c.file, got.Stdout())
		}
	}
}

// TestReplayIsolated runs the isolated replay as uid 65534 with no
// capability: in its own user and network namespace, nlmcast listen gets
// every recorded event, as from a bridge it trusts, and its request for
// the state is answered.
func TestReplayIsolated(t *testing.T) {
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	f, want := recordState(t, nlmcast)
	evs, _ := readRecording(t, f)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		nlmcast, "replay", "--isolate", "--speed", "0", f, "--wait-ready", "--",
		nlmcast, "listen", "--resync", "--count", strconv.Itoa(len(evs)), "link", "ipv4-ifaddr")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("cannot make a user and network namespace")) {
			testenv.Missing(t, "unprivileged user namespaces: "+string(out))
		}
		t.Fatalf("replay --isolate as uid 65534: %v\n%s", err, out)
	}
	for _, want := range []string{"new link", "st0", "10.81.0.1", "del link", "gone0", "resync-end"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the isolated listen printed no %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("refused")) || bytes.Contains(out, []byte("!! gap")) {
		t.Errorf("the isolated listen refused or lost frames:\n%s", out)
	}

	// A receiver.Mirror, as the same user: in sync with the replay's
	// (empty) tables first, then, as the events come, with the recorded
	// state: links st0 and st1 (gone0 and gone1 came and went), one
	// address.
	mirror := filepath.Join(bins.dir, "mirror")
	if out, err := exec.Command("go", "build", "-o", mirror, "./testdata/mirror").CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/mirror: %v\n%s", err, out)
	}
	cmd = exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		nlmcast, "replay", "--isolate", "--speed", "0", f, "--wait-ready", "--", mirror, "--links", "2", "--addrs", "1")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the Mirror under an isolated replay, as uid 65534: %v\n%s", err, out)
	}
	// Every entry, byte for byte the recorded message its key last had.
	got := map[string]map[string][]byte{}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 4 || fields[0] != "entry" {
			continue
		}
		msg, err := hex.DecodeString(fields[3])
		if err != nil {
			t.Fatalf("the Mirror printed %q: %v", line, err)
		}
		if got[fields[1]] == nil {
			got[fields[1]] = map[string][]byte{}
		}
		got[fields[1]][fields[2]] = msg
	}
	for _, s := range []string{"link", "ipv4-ifaddr"} {
		if len(got[s]) != len(want[s]) {
			t.Errorf("%s: the Mirror holds %d entries, want %d", s, len(got[s]), len(want[s]))
		}
		for k, msg := range want[s] {
			if g, ok := got[s][k]; !ok || !bytes.Equal(g, msg) {
				t.Errorf("%s: entry %q: %v in the Mirror, %x; want the recorded %x", s, k, ok, g, msg)
			}
		}
	}
	if t.Failed() {
		t.Fatalf("the Mirror printed:\n%s", out)
	}
}

// recordState records link and IPv4 address events of a namespace of its
// own: links made, one deleted, an address added. It returns the file
// (readable by every user) and the tables the events leave, by stream and
// receiver.StateKey.
func recordState(t *testing.T, nlmcast string) (string, map[string]map[string][]byte) {
	t.Helper()
	ns := newNetNS(t)
	dir, err := os.MkdirTemp("", "nlmcast-it-rec-") // uid 65534 reads the recording
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	f := filepath.Join(dir, "state.pcapng")
	ns.start(t, notified, nlmcast, "bridge", "--json-always", "--streams", "link,ipv4-ifaddr")
	rec := ns.start(t, notified, nlmcast, "record", "-o", f, "link", "ipv4-ifaddr")
	listen := ns.start(t, notified, nlmcast, "listen", "link", "ipv4-ifaddr")
	ns.ip(t, "link", "add", "st0", "type", "veth", "peer", "name", "st1")
	ns.ip(t, "link", "add", "gone0", "type", "veth", "peer", "name", "gone1")
	ns.ip(t, "addr", "add", "10.81.0.1/24", "dev", "st0")
	ns.ip(t, "link", "del", "gone0")
	listen.waitStdout(t, "listen printed the deleted link", func(out string) bool { return strings.Contains(out, "del link") && strings.Contains(out, "gone") })
	rec.stop()
	os.Chmod(f, 0o644)
	evs, _ := readRecording(t, f)
	want := map[string]map[string][]byte{}
	for _, e := range evs {
		key, remove, ok := receiver.StateKey(e.msg)
		if !ok {
			continue
		}
		if want[e.stream] == nil {
			want[e.stream] = map[string][]byte{}
		}
		if remove {
			delete(want[e.stream], key)
		} else {
			want[e.stream][key] = e.msg
		}
	}
	if len(want["link"]) != 2 || len(want["ipv4-ifaddr"]) != 1 {
		t.Fatalf("the recorded state: %d links (st0, st1), %d addresses (10.81.0.1)", len(want["link"]), len(want["ipv4-ifaddr"]))
	}
	return f, want
}

// TestReplayState: a Mirror, and a listener asking for the state, get the
// tables as the replayed events leave them; the replay answers their
// requests as a bridge answers from the kernel's tables.
func TestReplayState(t *testing.T) {
	nlmcast, _ := binaries(t)
	f, want := recordState(t, nlmcast)
	ns := newNetNS(t)
	link, _ := streams.Lookup("link")
	addr, _ := streams.Lookup("ipv4-ifaddr")
	var m *receiver.Mirror
	ns.do(t, func() (err error) {
		m, err = receiver.NewMirror(&receiver.MirrorConfig{Streams: []streams.Stream{link, addr},
			RequestEvery: 50 * time.Millisecond, MaxRequestEvery: 50 * time.Millisecond})
		return err
	})
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	// Slowly enough that the Mirror's request is answered during the replay.
	replay := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "replay", "--rate", "20", f)
	if out, err := replay.CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	wctx, wcancel := context.WithTimeout(ctx, patience)
	defer wcancel()
	if err := m.WaitSynced(wctx, link, addr); err != nil {
		t.Fatalf("the Mirror never synced: %v (%+v)", err, m.Stats())
	}
	for _, s := range []streams.Stream{link, addr} {
		keys := m.Keys(s)
		if len(keys) != len(want[s.Name]) {
			t.Errorf("%s: the Mirror holds %v, want %d entries", s.Name, keys, len(want[s.Name]))
		}
		for k, msg := range want[s.Name] {
			if got, ok := m.Get(s, k); !ok || !bytes.Equal(got, msg) {
				t.Errorf("%s: entry %s: %v in the Mirror, not the recorded message", s.Name, k, ok)
			}
		}
	}
	if st := m.Stats(); st.Requests == 0 {
		t.Errorf("the Mirror sent no request: %+v", st)
	}
	cancel()
	<-done
}

// TestRecordNetlink records straight from the kernel (--netlink, root):
// links, addresses, uevents (the kernel sends those of a network
// device to its namespace) and conntrack events; tshark dissects the
// rtnetlink and conntrack ones, and a replay sends them all, uevents and
// conntrack included, as they were.
func TestRecordNetlink(t *testing.T) {
	nlmcast, _ := binaries(t)
	tshark := testenv.RequireCommand(t, "tshark")
	nft := testenv.RequireCommand(t, "nft")
	conntrack := testenv.RequireCommand(t, "conntrack")
	bash := testenv.RequireCommand(t, "bash")
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "n1.pcapng"), filepath.Join(dir, "n2.pcapng")
	sel := []string{"link", "ipv4-ifaddr", "uevent", "conntrack-new", "conntrack-destroy"}
	ns := newNetNS(t)
	rec := ns.start(t, notified, append([]string{nlmcast, "record", "--netlink", "-o", f1}, sel...)...)
	// Track connections in the namespace: an nft rule with ct makes the
	// kernel do it there.
	for _, rule := range []string{"add table ip nlrec", "add chain ip nlrec out { type filter hook output priority 0; }", "add rule ip nlrec out ct state new counter"} {
		if out, err := exec.Command("ip", "netns", "exec", ns.name, nft, rule).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v: %s", rule, err, out)
		}
	}
	ns.ip(t, "link", "add", "nlr0", "type", "veth", "peer", "name", "nlr1")
	ns.ip(t, "addr", "add", "10.82.0.1/24", "dev", "nlr0")
	if out, err := exec.Command("ip", "netns", "exec", ns.name, bash, "-c", "echo hi > /dev/udp/127.0.0.1/9").CombinedOutput(); err != nil {
		t.Fatalf("a datagram: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns.name, conntrack, "-F").CombinedOutput(); err != nil {
		t.Fatalf("conntrack -F: %v: %s", err, out)
	}
	// Every event was queued for it before the commands returned: the
	// kernel delivers netlink multicast as it sends it.
	rec.stop()
	evs, _ := readRecording(t, f1)
	got := byStream(evs)
	for _, s := range sel {
		if len(got[s]) == 0 {
			t.Errorf("no %s event recorded:\n%s", s, rec.Stderr())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	out, err := exec.Command(tshark, "-r", f1, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	for _, want := range []string{"Linux netlink netfilter protocol", "Subsystem: Conntrack", "Family: Netfilter",
		"Family: Kernel messages to userspace", "Create network interface", "nlr0", "Address: 10.82.0.1", "nlmcast stream=uevent kind=event"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("tshark -V shows no %q", want)
		}
	}

	ns2 := newNetNS(t)
	rec2 := ns2.start(t, notified, append([]string{nlmcast, "record", "-o", f2}, sel...)...)
	if out, err := exec.Command("ip", "netns", "exec", ns2.name, nlmcast, "replay", "--speed", "0", f1).CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	rec2.stop()
	evs2, _ := readRecording(t, f2)
	got2 := byStream(evs2)
	for _, s := range sel {
		if len(got[s]) != len(got2[s]) {
			t.Errorf("stream %s: recorded %d events, %d after the replay", s, len(got[s]), len(got2[s]))
			continue
		}
		for i := range got[s] {
			if !bytes.Equal(got[s][i], got2[s][i]) {
				t.Errorf("stream %s: event %d differs after the replay", s, i)
			}
		}
	}
}

// TestRecordPrivate records a sealed stream with its key: the recording
// holds the opened messages, in the clear (mode 0600), which tshark
// dissects; without the key, the recording holds a sealed notice and no
// message.
func TestRecordPrivate(t *testing.T) {
	nlmcast, _ := binaries(t)
	tshark := testenv.RequireCommand(t, "tshark")
	key := keyFile(t, nlmcast)
	dir := t.TempDir()
	open, sealed := filepath.Join(dir, "open.pcapng"), filepath.Join(dir, "sealed.pcapng")
	ns := newNetNS(t)
	ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--expose", "link="+key)
	recOpen := ns.start(t, notified, nlmcast, "record", "link", "--private", "link="+key, "-o", open)
	recSealed := ns.start(t, notified, nlmcast, "record", "link", "-o", sealed)
	listen := ns.start(t, notified, nlmcast, "listen", "link", "--private", "link="+key)
	ns.ip(t, "link", "add", "prv0", "type", "veth", "peer", "name", "prv1")
	listen.waitStdout(t, "listen printed the new link", func(out string) bool { return strings.Contains(out, "prv0") })
	recOpen.stop()
	recSealed.stop()
	if fi, err := os.Stat(open); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the recording: %v; want mode 0600", err)
	}
	evs, _ := readRecording(t, open)
	if len(evs) == 0 {
		t.Fatalf("nothing recorded of the sealed stream:\n%s", recOpen.Stderr())
	}
	out, err := exec.Command(tshark, "-r", open, "-V").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("prv0")) || !bytes.Contains(out, []byte("flags=0x0020")) {
		t.Errorf("tshark -V of the opened recording: %v; want prv0 and the SEALED flag in the comment:\n%s", err, out[:min(len(out), 5000)])
	}
	evs, notes := readRecording(t, sealed)
	if len(evs) != 0 || !strings.Contains(strings.Join(notes, "\n"), "notice=sealed") {
		t.Errorf("without the key: %d messages recorded, notes %q; want none and a sealed notice", len(evs), notes)
	}
}

// TestReplayBesideBridge replays onto a block of groups of its own, from
// another privileged port, next to a live bridge: receivers of that block
// get the recording, the bridge's get none of it.
func TestReplayBesideBridge(t *testing.T) {
	nlmcast, _ := binaries(t)
	f, _ := recordState(t, nlmcast)
	evs, _ := readRecording(t, f)
	ns := newNetNS(t)
	ns.start(t, notified, nlmcast, "bridge", "--json-always", "--streams", "link,ipv4-ifaddr")
	live := ns.start(t, notified, nlmcast, "listen", "link", "ipv4-ifaddr")
	other := []string{"--base", "239.255.90.0", "--port", "19800", "--source-port", "1020"}
	replayed := ns.start(t, notified, append(append([]string{nlmcast, "listen", "--count", strconv.Itoa(len(evs))}, other...), "link", "ipv4-ifaddr")...)
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns.name, nlmcast, "replay", "--speed", "0", f}, other...)...).CombinedOutput(); err != nil {
		t.Fatalf("replay beside the bridge: %v\n%s", err, out)
	}
	replayed.waitStdout(t, "the replay's listener printed the recording", func(out string) bool { return strings.Contains(out, "del link") })
	live.stop()
	if strings.Contains(live.Stdout(), "st0") || strings.Contains(live.Stdout(), "10.81.0.1") {
		t.Errorf("the live bridge's listener got replayed events:\n%s", live.Stdout())
	}
}

// TestReplayWiresharkFile replays a recording that Wireshark's editcap
// wrote again as plain pcap, as tcpdump -i nlmon0 -w writes: no comments,
// so the replay finds each message's stream from its type, and sends the
// same messages.
func TestReplayWiresharkFile(t *testing.T) {
	nlmcast, _ := binaries(t)
	editcap := testenv.RequireCommand(t, "editcap")
	f, want := recordState(t, nlmcast)
	evs, _ := readRecording(t, f)
	dir := t.TempDir()
	pcap, again := filepath.Join(dir, "plain.pcap"), filepath.Join(dir, "again.pcapng")
	if out, err := exec.Command(editcap, "-F", "pcap", f, pcap).CombinedOutput(); err != nil {
		t.Fatalf("editcap -F pcap: %v\n%s", err, out)
	}
	ns := newNetNS(t)
	rec := ns.start(t, notified, nlmcast, "record", "-o", again, "link", "ipv4-ifaddr")
	out, err := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "replay", "--speed", "0", pcap).CombinedOutput()
	if err != nil {
		t.Fatalf("replay of a pcap file: %v\n%s", err, out)
	}
	rec.stop()
	evs2, _ := readRecording(t, again)
	if len(evs2) != len(evs) {
		t.Fatalf("replayed %d of %d messages from the pcap file:\n%s", len(evs2), len(evs), out)
	}
	got, got2 := byStream(evs), byStream(evs2)
	for s := range want {
		for i := range got[s] {
			if i >= len(got2[s]) || !bytes.Equal(got[s][i], got2[s][i]) {
				t.Errorf("stream %s: message %d is not the recorded one", s, i)
			}
		}
	}
}
