package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/privdrop"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// dial connects to addr from inside the namespace: the socket is the
// namespace's, whichever thread uses it afterwards.
func (ns *netns) dial(network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := net.DialTimeout(network, addr, patience)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// scraper scrapes one /metrics endpoint: TCP in the namespace, or a Unix
// socket.
type scraper struct {
	client *http.Client
	url    string
}

func (ns *netns) tcpScraper(addr string) *scraper {
	return &scraper{&http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) { return ns.dial("tcp", addr) }}},
		"http://" + addr + "/metrics"}
}

func unixScraper(path string) *scraper {
	return &scraper{&http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}, "http://nlmcast/metrics"}
}

// scrape returns the text served and its samples, `name{labels}` (as
// printed, labels sorted) to value.
func (s *scraper) scrape(t *testing.T) (string, map[string]float64) {
	t.Helper()
	resp, err := s.client.Get(s.url)
	if err != nil {
		t.Fatalf("scrape %s: %v", s.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s, %v", s.url, resp.Status, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("scrape %s: Content-Type %q, want the text format", s.url, ct)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("scrape %s: bad line %q", s.url, line)
		}
		samples[line[:i]] = v
	}
	return string(body), samples
}

// promtoolCheck runs `promtool check metrics` on text: any problem it
// reports fails t. Without promtool t is skipped (failed under CI).
func promtoolCheck(t *testing.T, who, text string) {
	t.Helper()
	cmd := exec.Command(testenv.RequireCommand(t, "promtool"), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics on %s's: %v\n%s", who, err, out.String())
	}
}

// TestMetricsCountWhatReceiversGot: a bridge with --metrics on a loopback
// port, and nlmcast listen with --metrics on a Unix socket, while real
// kernel events (veth pairs, addresses) go through: the
// bridge's per-stream event and byte counters equal exactly what a raw Go
// receiver got, the listener's equal them too, every frame is accounted
// for, and promtool finds nothing wrong with either endpoint.
func TestMetricsCountWhatReceiversGot(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	testenv.RequireCommand(t, "promtool") // before anything starts: under CI its absence fails
	const addr = "127.0.0.1:9178"
	names := []string{"link", "ipv4-ifaddr"}
	// --json-always: the listener's JSON is encoded from the first event,
	// whenever the bridge sees its membership.
	started := time.Now()
	ns.start(t, notified, nlmcast, "bridge", "--streams", strings.Join(names, ","), "--json-always",
		"--max-sockets-per-uid", "0", "--metrics", addr)
	ss, err := streams.Resolve(names...)
	if err != nil {
		t.Fatal(err)
	}
	raw := ns.collect(t, &receiver.Config{Streams: ss})
	defer raw.stop()
	sock := filepath.Join(t.TempDir(), "listen.sock")
	listen := ns.start(t, notified, append([]string{nlmcast, "listen", "--metrics", sock}, names...)...)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("listen's metrics socket: %v, %v; want a socket of mode 0660", fi, err)
	}

	ns.ip(t, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	ns.ip(t, "link", "set", "va", "up")
	ns.ip(t, "addr", "add", "192.0.2.1/24", "dev", "va")
	ns.ip(t, "addr", "add", "198.51.100.1/24", "dev", "vb")
	ns.ip(t, "addr", "del", "192.0.2.1/24", "dev", "va")
	ns.ip(t, "link", "del", "va")
	ns.ip(t, "link", "add", "nlmmark", "type", "veth", "peer", "name", "nlmmark1") // the last change

	bs, ls := ns.tcpScraper(addr), unixScraper(sock)
	var btext, ltext string
	var bm, lm map[string]float64
	var why string
	ok := await(&raw.changed, patience, func() bool {
		marked := false
		for _, g := range raw.events("link") {
			marked = marked || bytes.Contains(g.payload, []byte("nlmmark"))
		}
		if !marked {
			why = "the last veth pair's events not received"
			return false
		}
		// What the receiver got, then what the bridge counted: the
		// bridge counts an event before it sends it, so it can only be
		// ahead, until the receiver has everything.
		got := map[string][2]float64{}
		for _, n := range names {
			var size float64
			evs := raw.events(n)
			for _, g := range evs {
				size += float64(len(g.payload))
			}
			got[n] = [2]float64{float64(len(evs)), size}
		}
		btext, bm = bs.scrape(t)
		ltext, lm = ls.scrape(t)
		for _, n := range names {
			l := fmt.Sprintf(`family="route",stream=%q`, n)
			events, size := bm["nlmcast_bridge_events_total{"+l+"}"], bm[`nlmcast_bridge_event_bytes_total{encoding="raw",`+l+"}"]
			heard := lm[fmt.Sprintf(`nlmcast_listen_events_total{encoding="json",stream=%q}`, n)]
			if events != got[n][0] || size != got[n][1] || heard != events {
				why = fmt.Sprintf("%s: bridge counted %v events of %v bytes, raw receiver got %v of %v, listen counted %v",
					n, events, size, got[n][0], got[n][1], heard)
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("after %v: %s\nbridge:\n%s\nlisten:\n%s", patience, why, btext, ltext)
	}
	var total float64
	for _, n := range names {
		l := fmt.Sprintf(`family="route",stream=%q`, n)
		events := bm["nlmcast_bridge_events_total{"+l+"}"]
		if events == 0 {
			t.Errorf("%s: no events", n)
		}
		total += events
		if j := bm["nlmcast_bridge_json_encodings_total{"+l+"}"]; j != events {
			t.Errorf("%s: %v JSON encodings of %v events, with --json-always", n, j, events)
		}
		if bm["nlmcast_bridge_json_joined{"+l+"}"] != 1 {
			t.Errorf("%s: JSON not joined with --json-always", n)
		}
		if ts := bm["nlmcast_bridge_last_event_timestamp_seconds{"+l+"}"]; ts < float64(started.Unix()) {
			t.Errorf("%s: last event at %v, before the bridge started", n, ts)
		}
		ll := fmt.Sprintf(`encoding="json",stream=%q`, n)
		for _, k := range []string{`nlmcast_listen_missing_frames_total{` + ll + `}`,
			fmt.Sprintf(`nlmcast_listen_notices_total{encoding="json",kind="gap",stream=%q}`, n), `nlmcast_listen_socket_dropped_packets_total{` + ll + `}`} {
			if v, ok := lm[k]; !ok || v != 0 {
				t.Errorf("%s = %v (present %v), want 0", k, v, ok)
			}
		}
		if lm[`nlmcast_listen_joined{`+ll+`}`] != 1 {
			t.Errorf("listen: %s not joined", n)
		}
	}
	// Both encodings of every event are frames of kind event.
	if f := bm[`nlmcast_bridge_frames_total{family="route",kind="event"}`]; f != 2*total {
		t.Errorf("%v event frames for %v events in two encodings", f, total)
	}
	if c, s := bm[`nlmcast_bridge_netlink_read_messages_count{family="route"}`], bm[`nlmcast_bridge_netlink_read_messages_sum{family="route"}`]; c == 0 || s < total {
		t.Errorf("netlink reads %v, messages %v; want some reads and at least the %v events", c, s, total)
	}
	for _, k := range []string{`nlmcast_bridge_netlink_malformed_total{family="route"}`, `nlmcast_bridge_send_errors_total{family="route"}`,
		`nlmcast_bridge_netlink_overruns_total{family="route"}`, `nlmcast_sender_dropped_datagrams_total`} {
		if v, ok := bm[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", k, v, ok)
		}
	}
	for _, want := range []string{"nlmcast_build_info{", "process_cpu_seconds_total ", "go_goroutines "} {
		if !strings.Contains(btext, want) || !strings.Contains(ltext, want) {
			t.Errorf("no %s in the bridge's or listen's metrics", want)
		}
	}
	promtoolCheck(t, "the bridge", btext)
	promtoolCheck(t, "listen", ltext)

	listen.stop()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("listen left its metrics socket: %v\n%s", err, listen.Stderr())
	}
}

// TestMetricsAfterPrivilegeDrop: with --user nobody the metrics socket,
// opened as root, is nobody's (mode 0660, for its group to scrape), is
// served once every thread has dropped its privileges, and is removed on
// exit by nobody from a directory nobody may write to.
func TestMetricsAfterPrivilegeDrop(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil { // for nobody to reach dir
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bridge.sock")
	bridge := ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--encodings", "raw", "--user", "nobody",
		"--max-sockets-per-uid", "0", "--metrics", sock)
	bridgePrivileges(t, bridge, privdrop.Status{UID: 65534, GID: 65534, NoNewPrivs: true})
	var st unix.Stat_t
	if err := unix.Lstat(sock, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Mode&0o777 != 0o660 || st.Uid != 65534 || st.Gid != 65534 {
		t.Fatalf("metrics socket: mode %o, owner %d:%d (%v); want a socket of mode 0660 of 65534:65534", st.Mode, st.Uid, st.Gid, err)
	}
	ns.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1")
	s := unixScraper(sock)
	var text string
	var m map[string]float64
	if !await(&bridge.changed, patience, func() bool {
		text, m = s.scrape(t)
		return m[`nlmcast_bridge_events_total{family="route",stream="link"}`] >= 2 // one per link of the pair
	}) {
		t.Fatalf("no link events counted after %v:\n%s", patience, text)
	}
	promtoolCheck(t, "the bridge", text)
	bridge.stop()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the bridge left its metrics socket: %v\n%s", err, bridge.Stderr())
	}
}
