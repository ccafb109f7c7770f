package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// beatLog records the bridge's time of every heartbeat a receiver gets.
type beatLog struct {
	mu      sync.Mutex
	times   []int64 // frame.Header.Time, in order
	changed signal
}

func logBeats(r *receiver.Receiver) *beatLog {
	l := &beatLog{}
	go func() {
		evs := make([]receiver.Event, 64)
		for {
			n, err := r.ReadBatch(evs)
			if err != nil {
				return
			}
			l.mu.Lock()
			for _, ev := range evs[:n] {
				if !ev.IsNotice() && ev.Header.Kind == frame.KindHeartbeat {
					l.times = append(l.times, ev.Header.Time)
				}
			}
			l.mu.Unlock()
			l.changed.notify()
		}
	}()
	return l
}

func (l *beatLog) since(i int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.times[min(i, len(l.times)):]...)
}

// TestConfigReload: a bridge started with --config, heartbeats an hour
// apart, is sent SIGHUP after the file changed: heartbeats come every
// 50 ms on the wire, the new log level applies, the stream added is
// bridged from then on, the read buffer (which needs a restart) is logged
// and kept, and a broken file changes nothing.
func TestConfigReload(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	path := filepath.Join(t.TempDir(), "nlmcast.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("heartbeat = \"1h\"\nstreams = [\"link\"]\nencodings = [\"raw\"]\nlog-level = \"info\"\n")
	// --source-port on the command line wins over the file, which says nothing of it.
	bridge := ns.start(t, notified, nlmcast, "bridge", "--config", path, "--source-port", "1021")
	var r *receiver.Receiver
	ns.do(t, func() (err error) {
		r, err = receiver.New(&receiver.Config{Streams: []streams.Stream{mustStream("link")}, Encoding: streams.Raw})
		return err
	})
	defer r.Close()
	beats := logBeats(r)
	addrs := ns.collect(t, &receiver.Config{Streams: []streams.Stream{mustStream("ipv4-ifaddr")}})
	defer addrs.stop()

	write("heartbeat = \"50ms\"\nstreams = [\"link\", \"addr\"]\nencodings = [\"raw\"]\nlog-level = \"debug\"\nread-buffer = 65536\n")
	sighup := time.Now().UnixNano()
	if err := bridge.cmd.Process.Signal(unix.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// An hour apart, none would come: five 50 ms apart.
	waitFor(t, &beats.changed, "five heartbeats after SIGHUP", func() bool { return len(beats.since(0)) >= 5 })
	got := beats.since(0)
	for i, at := range got {
		if at < sighup {
			t.Errorf("heartbeat %d at %d, before SIGHUP (%d): the hour was not kept", i, at, sighup)
		}
		if i > 0 {
			if gap := time.Duration(at - got[i-1]); gap < 25*time.Millisecond || gap > time.Second {
				t.Errorf("heartbeats %d and %d %v apart, want about 50ms", i-1, i, gap)
			}
		}
	}
	bridge.waitStderr(t, `level=INFO msg="config change applied" key=heartbeat old=1h0m0s new=50ms`)
	bridge.waitStderr(t, `msg="config change applied" key=log-level old=info new=debug`)
	bridge.waitStderr(t, `level=INFO msg="config change applied" key=streams old=link new=link,addr`)
	bridge.waitStderr(t, `level=WARN msg="config change needs a restart; not applied" key=read-buffer running=8388608 new=65536`)
	bridge.waitStderr(t, `msg="config reloaded" file=`+path+` applied=3 need_restart=1`)
	// The stream added is bridged: an address event comes through.
	ns.ip(t, "addr", "add", "10.77.0.1/32", "dev", "lo")
	waitFor(t, &addrs.changed, "an address event after the stream was added", func() bool { return len(addrs.events("ipv4-ifaddr")) > 0 })

	// A file that does not load: logged, nothing changes, heartbeats go on.
	write("heartbeat = \"soon\"\n")
	if err := bridge.cmd.Process.Signal(unix.SIGHUP); err != nil {
		t.Fatal(err)
	}
	bridge.waitStderr(t, `level=ERROR msg="config not reloaded; the running configuration stays"`)
	bridge.waitStderr(t, path+`:1:14: key heartbeat: \"soon\": not a duration`)
	n := len(beats.since(0))
	waitFor(t, &beats.changed, "heartbeats after a broken file", func() bool { return len(beats.since(0)) >= n+3 })
	more := beats.since(n - 1)
	for i := 1; i < len(more); i++ {
		if gap := time.Duration(more[i] - more[i-1]); gap > time.Second {
			t.Errorf("after a broken file, heartbeats %v apart, want 50ms still", gap)
		}
	}
	select {
	case <-bridge.done:
		t.Fatalf("the bridge exited:\n%s", bridge.Stderr())
	default:
	}
}

// TestJournalLogs: the bridge whose stderr is the stream $JOURNAL_STREAM
// names, as systemd connects it to journald, writes text lines without a
// time (the journal records its own); with the variable naming another
// stream (inherited by a child, say) it keeps the time.
func TestJournalLogs(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	for _, tc := range []struct {
		name     string
		matching bool
	}{{"journal", true}, {"inherited", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			stderr, err := os.Create(filepath.Join(dir, "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer stderr.Close()
			var st unix.Stat_t
			if err := unix.Fstat(int(stderr.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			ino := st.Ino
			if !tc.matching {
				ino++
			}
			l, err := sdnotify.Listen()
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cmd := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link")
			cmd.Env = append(os.Environ(), l.Env(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, ino))
			cmd.Stderr = stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			_, werr := l.Wait(ctx, sdnotify.Ready)
			cmd.Process.Signal(unix.SIGTERM)
			cmd.Wait()
			data, err := os.ReadFile(stderr.Name())
			if err != nil {
				t.Fatal(err)
			}
			if werr != nil {
				t.Fatalf("no READY=1: %v\n%s", werr, data)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) < 2 { // at least "bridge ready" and the totals
				t.Fatalf("stderr:\n%s\nwant log lines", data)
			}
			for _, line := range lines {
				if hasTime := strings.HasPrefix(line, "time="); hasTime == tc.matching || !strings.Contains(line, "level=") {
					t.Errorf("JOURNAL_STREAM matching stderr: %v; line %q", tc.matching, line)
				}
			}
		})
	}
}
