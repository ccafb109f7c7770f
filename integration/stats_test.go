package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// statsSetup makes a directory of the given mode for --stats, a victim
// file elsewhere that only root may write, and, as uid 65534, symbolic
// links to the victim at FILE and at the temporary name the bridge once
// used (.FILE.tmp). It returns FILE and the victim.
func statsSetup(t *testing.T, mode os.FileMode) (file, victim string) {
	t.Helper()
	setpriv := testenv.RequireCommand(t, "setpriv")
	top, err := os.MkdirTemp("", "nlmcast-it-stats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil { // for uid 65534 to reach the directory
		t.Fatal(err)
	}
	victim = filepath.Join(top, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(top, "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // not masked by the umask
		t.Fatal(err)
	}
	file = filepath.Join(dir, "stats.json")
	for _, l := range []string{file, filepath.Join(dir, ".stats.json.tmp")} {
		out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "ln", "-s", victim, l).CombinedOutput()
		if err != nil {
			t.Fatalf("uid 65534: ln -s %s %s: %v: %s", victim, l, err, out)
		}
	}
	return file, victim
}

func checkVictim(t *testing.T, victim string) {
	t.Helper()
	if b, err := os.ReadFile(victim); err != nil || string(b) != "precious\n" {
		t.Errorf("victim %s now holds %q (%v)", victim, b, err)
	}
}

// TestStatsFileIgnoresPlantedLinks: in a world-writable sticky directory
// (as /tmp), where an unprivileged user has put links to a file of root's
// at --stats FILE and at the temporary name the bridge used to write, the
// bridge (root) writes neither through them: the victim is unchanged, FILE
// is the bridge's own file with its stats, and no temporary file is left.
func TestStatsFileIgnoresPlantedLinks(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	file, victim := statsSetup(t, 0o777|os.ModeSticky)
	br := ns.start(t, notified, nlmcast, "bridge", "--streams", "link", "--stats", file)
	br.cmd.Process.Signal(syscall.SIGUSR1) // a snapshot, then one more on exit
	br.stop()

	checkVictim(t, victim)
	fi, err := os.Lstat(file)
	if err != nil || !fi.Mode().IsRegular() || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("%s after the bridge: %v, %v; want a regular file of root's\nbridge:\n%s", file, fi, err, br.Stderr())
	}
	b, _ := os.ReadFile(file)
	var s netlinkbridge.StatsReport
	if err := json.Unmarshal(b, &s); err != nil || s.Snap < 1 {
		t.Errorf("%s holds %q (%v), want the bridge's stats", file, b, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(file))
	for _, e := range ents {
		if n := e.Name(); n != "stats.json" && n != ".stats.json.tmp" {
			t.Errorf("left behind: %s", n)
		}
	}
	if strings.Contains(br.Stderr(), "cannot write --stats") {
		t.Errorf("the bridge could not write its stats:\n%s", br.Stderr())
	}
}

// TestStatsFileRefusesOpenDirectory: a directory every user may write to,
// without the sticky bit, is refused at start with what to do instead.
func TestStatsFileRefusesOpenDirectory(t *testing.T) {
	ns := newNetNS(t)
	nlmcast, _ := binaries(t)
	file, victim := statsSetup(t, 0o777)
	l, err := sdnotify.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command("ip", "netns", "exec", ns.name, nlmcast, "bridge", "--streams", "link", "--stats", file)
	cmd.Env = append(os.Environ(), l.Env())
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	ready := make(chan struct{})
	go func() {
		if _, err := l.Wait(ctx, sdnotify.Ready); err == nil {
			close(ready)
		}
	}()
	select {
	case err = <-exited:
	case <-ready: // started: it did not refuse
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		checkVictim(t, victim)
		t.Fatalf("the bridge started with --stats in a world-writable directory\n%s", errOut.String())
	}
	cancel()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("bridge with --stats in a world-writable directory: %v, want exit 1\n%s", err, errOut.String())
	}
	for _, want := range []string{"--stats", filepath.Dir(file), "not sticky", "only root can write"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("error does not say %q: %s", want, errOut.String())
		}
	}
	checkVictim(t, victim)
}
