package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	exec := unitExec(t, u)
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

// TestServiceSystemCalls runs the bridge as the unit would (as in
// TestServiceUnitContract) under strace, through start, an event and
// SIGTERM, and checks that what it does fits the unit's sandbox, which
// only systemd would enforce: every system call is in the unit's
// SystemCallFilter= (groups expanded by systemd-analyze), every socket of a
// family in RestrictAddressFamilies=, and every destination it sends to
// in IPAddressAllow=.
func TestServiceSystemCalls(t *testing.T) {
	nlmcast, _ := binaries(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	strace := testenv.RequireCommand(t, "strace")
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	u, err := dist.ParseUnit(filepath.Join("..", "dist", "systemd", "nlmcast.service"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := syscallFilter(t, analyze, u["SystemCallFilter"])
	families := map[string]bool{}
	for _, f := range strings.Fields(u.Get("RestrictAddressFamilies")) {
		families[f] = true
	}
	var prefixes []netip.Prefix
	if u.Get("IPAddressDeny") != "any" {
		t.Fatalf("IPAddressDeny=%q, want any", u.Get("IPAddressDeny"))
	}
	for _, a := range strings.Fields(u.Get("IPAddressAllow")) {
		switch a {
		case "localhost":
			prefixes = append(prefixes, netip.MustParsePrefix("127.0.0.0/8"))
		default:
			p, err := netip.ParsePrefix(a)
			if err != nil {
				t.Fatalf("IPAddressAllow entry %q: %v", a, err)
			}
			prefixes = append(prefixes, p)
		}
	}
	exec := unitExec(t, u)
	caps := setprivCaps(t, u.Get("AmbientCapabilities"))

	ns := newNetNS(t)
	trace := filepath.Join(t.TempDir(), "strace")
	argv := append([]string{strace, "-f", "-qq", "-o", trace, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
		"--bounding-set=-all," + setprivCaps(t, u.Get("CapabilityBoundingSet")), "--inh-caps=" + caps, "--ambient-caps=" + caps, nlmcast},
		exec[1:]...)
	tracer := ns.start(t, notified, argv...)
	var r *receiver.Receiver
	ns.do(t, func() (err error) {
		r, err = receiver.New(&receiver.Config{Streams: []streams.Stream{mustStream("link")}, BridgeUID: 65534})
		return err
	})
	log := logFrames(r)
	defer r.Close()
	ns.ip(t, "link", "add", "nlt0", "type", "veth", "peer", "name", "nlt1")
	waitFor(t, &log.changed, "a link event from the traced bridge", func() bool { return log.count("link", frame.KindEvent) >= 1 })
	// A request, answered to this receiver alone (unicast to 127.0.0.1).
	ns.do(t, func() error { return r.RequestResync(mustStream("link")) })
	waitFor(t, &log.changed, "the answer to a resync request", func() bool { return log.count("link", frame.KindResyncEnd) >= 1 })
	// strace's child is the bridge: SIGTERM goes to it, strace follows it out.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tracer.cmd.Process.Pid, tracer.cmd.Process.Pid))
	if err != nil || len(strings.Fields(string(children))) != 1 {
		t.Fatalf("strace's children: %q, %v", children, err)
	}
	bridgePID, _ := strconv.Atoi(strings.Fields(string(children))[0])
	if err := syscall.Kill(bridgePID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &tracer.changed, "the bridge and strace to exit", func() bool {
		select {
		case <-tracer.done:
			return true
		default:
			return false
		}
	})
	out, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	// A call, or the end of one another thread interrupted (strace prints
	// sendmmsg's messages there).
	call := regexp.MustCompile(`^\d+ +(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)`)
	sock := regexp.MustCompile(`socket\((AF_[A-Z0-9]+)`)
	dest := regexp.MustCompile(`sin_addr=inet_addr\("([0-9.]+)"\)`) // a sockaddr_in, not a netlink payload
	started := false
	used, refused := map[string]bool{}, map[string]bool{}
	sentTo := map[bool]bool{} // multicast, unicast destinations seen
	for line := range strings.SplitSeq(string(out), "\n") {
		if !started {
			// What setpriv does before it becomes the bridge, systemd does.
			started = strings.Contains(line, `execve("`+nlmcast+`"`) && strings.HasSuffix(line, "= 0")
			continue
		}
		m := call.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		used[m[1]] = true
		if !allowed[m[1]] && !refused[m[1]] {
			refused[m[1]] = true
			t.Errorf("system call %s is not in the unit's SystemCallFilter: %s", m[1], line)
		}
		if f := sock.FindStringSubmatch(line); f != nil && !families[f[1]] {
			t.Errorf("a socket of family %s, not in RestrictAddressFamilies: %s", f[1], line)
		}
		switch m[1] {
		case "sendto", "sendmsg", "sendmmsg", "connect":
			for _, a := range dest.FindAllStringSubmatch(line, -1) {
				ip := netip.MustParseAddr(a[1])
				sentTo[ip.IsMulticast()] = true
				if !slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(ip) }) {
					t.Errorf("%s to %s, outside IPAddressAllow: %s", m[1], ip, line)
				}
			}
		}
	}
	if !started || !used["sendmmsg"] || !used["recvmmsg"] || !used["capset"] {
		t.Fatalf("the trace lacks the bridge's start, sends, reads or capability drop (started %v, %d system calls)", started, len(used))
	}
	if !sentTo[true] || !sentTo[false] {
		t.Errorf("the trace shows no send to a multicast group (%v) or to a requester (%v)", sentTo[true], sentTo[false])
	}
	t.Logf("%d distinct system calls, all in the unit's filter", len(used))
}

// syscallFilter returns the system calls the unit's SystemCallFilter=
// lines allow, in systemd's way: the first line is an allow list, a line
// starting with ~ removes from it, a later plain line adds to it. Groups
// (@name) are expanded with systemd-analyze syscall-filter.
func syscallFilter(t *testing.T, analyze string, lines []string) map[string]bool {
	t.Helper()
	if len(lines) == 0 || strings.HasPrefix(lines[0], "~") {
		t.Fatalf("SystemCallFilter=%q: want an allow list first", lines)
	}
	var expand func(name string, into map[string]bool)
	expand = func(name string, into map[string]bool) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		out, err := osexec.Command(analyze, "syscall-filter", "--no-pager", name).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", name, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || l == name || strings.HasPrefix(l, "#") {
				continue
			}
			expand(l, into)
		}
	}
	allowed := map[string]bool{}
	for _, line := range lines {
		deny := strings.HasPrefix(line, "~")
		set := map[string]bool{}
		for _, n := range strings.Fields(strings.TrimPrefix(line, "~")) {
			expand(n, set)
		}
		for n := range set {
			if deny {
				delete(allowed, n)
			} else {
				allowed[n] = true
			}
		}
	}
	return allowed
}

// unitExec returns the unit's ExecStart, its config file the reference one
// of the repository (which make install puts at /etc/nlmcast/nlmcast.toml).
func unitExec(t *testing.T, u dist.Unit) []string {
	t.Helper()
	exec := strings.Fields(u.Get("ExecStart"))
	ref, err := filepath.Abs(filepath.Join("..", "dist", "nlmcast.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range exec {
		if a == "/etc/nlmcast/nlmcast.toml" {
			exec[i] = ref
		}
	}
	return exec
}
