package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/dist"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/sys/privdrop"
	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// TestServiceUnitContract runs the bridge as dist/systemd/nlmcast.service
// would, without systemd: its ExecStart arguments, as uid 65534 with
// exactly the unit's ambient capabilities and bounding set and
// no_new_privs, a notification socket, and WATCHDOG_USEC from its
// WatchdogSec (WATCHDOG_PID its own pid, as systemd sets it). READY=1
// arrives, the bridge then holds no capability, events flow, WATCHDOG=1
// comes at half the interval, none comes while the bridge is stopped
// (SIGSTOP: a hung process), and they come again after SIGCONT.
func TestServiceUnitContract(t *testing.T) {
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	u, err := dist.ParseUnit(filepath.Join("..", "dist", "systemd", "nlmcast.service"))
	if err != nil {
		t.Fatal(err)
	}
	exec := strings.Fields(u.Get("ExecStart"))
	if len(exec) < 2 || filepath.Base(exec[0]) != "nlmcast" || exec[1] != "bridge" {
		t.Fatalf("ExecStart=%q is not nlmcast bridge", u.Get("ExecStart"))
	}
	interval, err := time.ParseDuration(u.Get("WatchdogSec"))
	if err != nil || interval <= 0 {
		t.Fatalf("WatchdogSec=%q: %v", u.Get("WatchdogSec"), err)
	}
	if u.Get("NoNewPrivileges") != "yes" {
		t.Fatalf("NoNewPrivileges=%q", u.Get("NoNewPrivileges"))
	}
	caps := setprivCaps(t, u.Get("AmbientCapabilities"))
	bounding := setprivCaps(t, u.Get("CapabilityBoundingSet"))

	ns := newNetNS(t)
	l, err := sdnotify.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() }) // after the bridge's stop, registered later
	argv := []string{"sh", "-c", `WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"`, "sh",
		setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
		"--bounding-set=-all," + bounding, "--inh-caps=" + caps, "--ambient-caps=" + caps,
		nlmcast}
	argv = append(argv, exec[1:]...)
	env := []string{sdnotify.WatchdogUSec + "=" + strconv.FormatInt(interval.Microseconds(), 10)}
	bridge := ns.startNotified(t, notified, l, env, argv...)
	pid := bridge.cmd.Process.Pid

	// Started with the unit's capabilities, it keeps none of them.
	bridgePrivileges(t, bridge, privdrop.Status{UID: 65534, GID: 65534, NoNewPrivs: true})

	// Events flow.
	var r *receiver.Receiver
	ns.do(t, func() (err error) {
		r, err = receiver.New(&receiver.Config{Streams: []streams.Stream{mustStream("link")}, BridgeUID: 65534})
		return err
	})
	log := logFrames(r)
	defer r.Close()
	ns.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1")
	waitFor(t, &log.changed, "a link event from the bridge run as the unit", func() bool { return log.count("link", frame.KindEvent) >= 1 })

	// WATCHDOG=1 every interval/2: three in a row, each gap between a
	// quarter and the whole interval.
	ping := func(within time.Duration) (time.Time, error) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		_, err := l.Wait(ctx, sdnotify.Watchdog)
		return time.Now(), err
	}
	last, err := ping(interval)
	if err != nil {
		t.Fatalf("no %s within WatchdogSec=%v of READY=1: %v\n%s", sdnotify.Watchdog, interval, err, bridge.Stderr())
	}
	for i := range 2 {
		at, err := ping(interval)
		if err != nil {
			t.Fatalf("ping %d: none within %v: %v", i+2, interval, err)
		}
		if gap := at.Sub(last); gap < interval/4 || gap >= interval {
			t.Errorf("pings %v apart, want about %v (WatchdogSec/2)", gap, interval/2)
		}
		last = at
	}

	// Stopped, it sends nothing: what is queued was sent before.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT) // so that the cleanup's SIGTERM ends it
	waitStopped(t, pid)
	if _, err := l.Drain(sdnotify.Watchdog); err != nil {
		t.Fatal(err)
	}
	if _, err := ping(interval); err == nil {
		t.Fatalf("%s from a stopped bridge", sdnotify.Watchdog)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := ping(interval); err != nil {
		t.Fatalf("no %s after SIGCONT: %v", sdnotify.Watchdog, err)
	}
	bridge.stop()
	if code := bridge.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, bridge.Stderr())
	}
}

// setprivCaps turns a unit's capability list (CAP_NET_BIND_SERVICE ...)
// into setpriv's (+net_bind_service,...).
func setprivCaps(t *testing.T, list string) string {
	t.Helper()
	var out []string
	for _, c := range strings.Fields(list) {
		name, ok := strings.CutPrefix(c, "CAP_")
		if !ok {
			t.Fatalf("capability %q in the unit", c)
		}
		out = append(out, "+"+strings.ToLower(name))
	}
	if len(out) == 0 {
		t.Fatal("the unit grants no capability")
	}
	return strings.Join(out, ",")
}

// waitStopped waits until every thread of pid is stopped (state T).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		stopped := 0
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			if err != nil {
				continue
			}
			// pid (comm) STATE ...: comm may hold spaces, the state follows its ')'.
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'T' || b[i+2] == 't') {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d threads of %d stopped after %v", stopped, len(tasks), pid, patience)
		}
		time.Sleep(time.Millisecond) // a state the kernel reaches within microseconds; no event to wait on
	}
}
