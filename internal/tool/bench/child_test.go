package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
)

// The test binary, run with fakeEnv set, plays nlmcast's bridge and
// bench-recv: it writes its pid in the directory fakeEnv names, says
// READY=1 and waits for SIGTERM. fakeFail in its environment picks a
// failure: "recv2" (the third receiver of a kind exits before it is ready),
// "stats" (the bridge exits when asked for stats), "mute" (the bridge
// never says it is ready), "deaf" (every process ignores SIGTERM).
const (
	fakeEnv  = "NLMCAST_BENCH_FAKE"
	fakeFail = "NLMCAST_BENCH_FAKE_FAIL"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(fakeEnv); dir != "" {
		os.Exit(fake(dir, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fake(dir string, args []string) int {
	if len(args) == 0 {
		return 2
	}
	if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(os.Getpid())), nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fail, bridge := os.Getenv(fakeFail), args[0] == "bridge"
	isThird := func(a string) bool { return strings.HasSuffix(a, "-2.rec") }
	if fail == "recv2" && !bridge && slices.ContainsFunc(args, isThird) {
		fmt.Fprintln(os.Stderr, "fake receiver failed to start")
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	if fail == "deaf" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	if !(fail == "mute" && bridge) {
		if err := sdnotify.Notify(sdnotify.Ready); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	for sig := range sigs {
		if sig == syscall.SIGTERM {
			return 0
		}
		if bridge && fail == "stats" {
			fmt.Fprintln(os.Stderr, "fake bridge: no stats")
			return 1
		}
	}
	return 0
}

// fakeBench returns a bench whose nlmcast is the test binary playing its
// parts, failing as fail says, and the directory its pids go to.
func fakeBench(t *testing.T, fail string) (*bench, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pids := t.TempDir()
	t.Setenv(fakeEnv, pids)
	t.Setenv(fakeFail, fail)
	return &bench{cfg: Config{Self: self, Events: 128, Batch: 64, Log: io.Discard}, dir: t.TempDir(), seq: 1 << 20}, pids
}

// assertGone asserts that want processes wrote their pids to dir and that
// each has exited and been reaped.
func assertGone(t *testing.T, dir string, want int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != want {
		t.Errorf("%d child processes started, want %d", len(ents), want)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("child %d outlived the failed phase (kill 0: %v)", pid, err)
			unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// Every phase that fails after starting children stops and reaps them all.
func TestFailedPhaseLeavesNoChild(t *testing.T) {
	for _, c := range []struct {
		name, fail, wantErr string
		started             int
		phase               func(context.Context, *bench) error
	}{
		{"bridge run, the bridge fails at the first snapshot", "stats", "wrote no stats", 4,
			func(ctx context.Context, b *bench) error {
				_, err := b.bridgeRun(ctx, 2, 128, 0, 64, false, Way{})
				return err
			}},
		{"bridge run, a bridge receiver fails to start", "recv2", "exited before it was ready: fake receiver failed to start", 5,
			func(ctx context.Context, b *bench) error {
				_, err := b.bridgeRun(ctx, 4, 128, 0, 64, false, Way{})
				return err
			}},
		{"ceiling, a receiver fails to start", "recv2", "exited before it was ready", 3,
			func(ctx context.Context, b *bench) error {
				_, err := b.ceiling(ctx, 3, 100)
				return err
			}},
		{"bridge run, the bridge never ready and the run cancelled", "mute", "deadline exceeded", 1,
			func(ctx context.Context, b *bench) error {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				_, err := b.bridgeRun(ctx, 1, 128, 0, 64, false, Way{})
				return err
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, pids := fakeBench(t, c.fail)
			err := c.phase(context.Background(), b)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %v, want one with %q", err, c.wantErr)
			}
			assertGone(t, pids, c.started)
		})
	}
}

// A group's close stops what it started, with SIGKILL what ignores
// SIGTERM, and may be called again.
func TestGroupClose(t *testing.T) {
	b, pids := fakeBench(t, "deaf")
	g := group{grace: 200 * time.Millisecond}
	ctx := context.Background()
	sleeper, err := g.start(ctx, spec{name: "sleep", argv: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	deaf, err := g.start(ctx, spec{name: "deaf", argv: []string{b.cfg.Self, "bench-recv"}, notify: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.start(ctx, spec{name: "nothing", argv: []string{"/nonexistent/nlmcast"}}); err == nil {
		t.Error("started a program that does not exist")
	}
	g.close()
	for _, c := range []*child{sleeper, deaf} {
		if !c.exited() {
			t.Errorf("%s still running after close", c.name)
		}
		if err := unix.Kill(c.cmd.Process.Pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("%s (pid %d) not reaped: %v", c.name, c.cmd.Process.Pid, err)
		}
	}
	if st := deaf.cmd.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the deaf child ended with %v, want SIGKILL", st)
	}
	if st := sleeper.cmd.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("sleep ended with %v, want SIGTERM", st)
	}
	assertGone(t, pids, 1)
	g.close()
}

// A child with spec.printed is ready once its stderr holds the text, even
// in pieces; one that exits first is an error that shows its stderr.
func TestStartPrinted(t *testing.T) {
	g := group{grace: 200 * time.Millisecond}
	defer g.close()
	ctx := context.Background()
	c, err := g.start(ctx, spec{name: "server", printed: fleetReady,
		argv: []string{"sh", "-c", "printf 'starting\\nServer is ' >&2; sleep 0.1; printf 'ready\\n' >&2; exec sleep 60"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Stderr(), fleetReady) || c.exited() {
		t.Errorf("ready with stderr %q, exited %v", c.Stderr(), c.exited())
	}
	if _, _, err := c.cpu(); err != nil {
		t.Errorf("cpu: %v", err)
	}
	_, err = g.start(ctx, spec{name: "quitter", printed: fleetReady, argv: []string{"sh", "-c", "echo no JetStream >&2; exit 1"}})
	if err == nil || !strings.Contains(err.Error(), "quitter exited before it printed") || !strings.Contains(err.Error(), "no JetStream") {
		t.Errorf("a child that exits before it is ready: %v", err)
	}
}

// onCPU reads the child's own CPU time: what /proc/PID/stat says, to the
// tick, and never less on a later read.
func TestOnCPU(t *testing.T) {
	g := group{grace: 200 * time.Millisecond}
	defer g.close()
	c, err := g.start(context.Background(), spec{name: "burner", printed: "done",
		argv: []string{"sh", "-c", "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done; echo done >&2; exec sleep 60"}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.onCPU()
	if err != nil || a <= 0 {
		t.Fatalf("on CPU: %d ns, %v", a, err)
	}
	u, s, err := c.cpu()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("on CPU %v; /proc/PID/stat %v user, %v system", time.Duration(a), time.Duration(u), time.Duration(s))
	if tick := int64(time.Second / userHZ); a < u+s-2*tick || a > u+s+2*tick {
		t.Errorf("on CPU %v, /proc/PID/stat %v: more than two ticks apart, not the child's clock", time.Duration(a), time.Duration(u+s))
	}
	if b, err := c.onCPU(); err != nil || b < a {
		t.Errorf("on CPU went from %d to %d ns (%v): a clock that counts back", a, b, err)
	}
}
