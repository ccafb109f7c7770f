package dist

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

const unit = "systemd/nlmcast.service"

// maxExposure is the highest exposure systemd-analyze security may give
// the unit: "OK" or better.
const maxExposure = 1.5

// TestUnitSecurityScore rates the unit offline with systemd-analyze
// security, prints the table and the score, and fails above maxExposure.
func TestUnitSecurityScore(t *testing.T) {
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for nlmcast\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "✗") {
			t.Log(strings.TrimRight(line, " "))
		}
	}
	t.Logf("systemd-analyze security --offline=true %s: exposure %.1f (at most %.1f)", unit, score, maxExposure)
	fmt.Printf("nlmcast.service exposure: %.1f\n", score)
	if score > maxExposure {
		t.Errorf("exposure %.1f, want %.1f or lower:\n%s", score, maxExposure, out)
	}
}

// TestUnitSettings: the unit is a notify service with a watchdog, run as
// the sysusers.d user, with the capabilities the bridge needs to start in
// its ExecStart's configuration and no more, and /run/nlmcast for a
// metrics socket (the file system is read-only elsewhere);
// systemd-analyze verify finds nothing wrong in it but the missing
// binary.
func TestUnitSettings(t *testing.T) {
	u := parseUnit(t, unit)
	for key, want := range map[string]string{
		"Type": "notify", "Restart": "on-failure", "User": "nlmcast", "Group": "nlmcast",
		"NoNewPrivileges": "yes", "WatchdogSec": "10s", "NotifyAccess": "main",
		"AmbientCapabilities": "CAP_NET_BIND_SERVICE", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"ProtectSystem": "strict", "RuntimeDirectory": "nlmcast", "RuntimeDirectoryMode": "0750",
	} {
		if got := u.Get(key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if got := u.Get("ExecStart"); !strings.HasPrefix(got, "/usr/local/bin/nlmcast bridge") {
		t.Errorf("ExecStart=%q: make install rewrites /usr/local/bin/nlmcast", got)
	}
	users, err := os.ReadFile("sysusers.d/nlmcast.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u nlmcast `).Match(users) {
		t.Errorf("sysusers.d/nlmcast.conf makes no user nlmcast:\n%s", users)
	}
	analyze := testenv.RequireCommand(t, "systemd-analyze")
	out, _ := exec.Command(analyze, "verify", unit).CombinedOutput()
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		// The binary is not installed here, nor is this page.
		if line == "" || strings.Contains(line, "/usr/local/bin/nlmcast is not executable") || strings.Contains(line, "man nlmcast(8)") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
}

// TestSysusers: systemd-sysusers, dry run in an empty root, makes the user
// and its group from the file.
func TestSysusers(t *testing.T) {
	sysusers := testenv.RequireCommand(t, "systemd-sysusers")
	root := t.TempDir()
	conf, err := os.ReadFile("sysusers.d/nlmcast.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "usr/lib/sysusers.d") // where make install puts it, PREFIX=/usr
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nlmcast.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sysusers, "--root="+root, "--dry-run").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	for _, want := range []string{"Creating group 'nlmcast'", "Creating user 'nlmcast'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("systemd-sysusers does not say %q:\n%s", want, out)
		}
	}
}

// TestManPage: the man page renders with neither groff nor man warning.
func TestManPage(t *testing.T) {
	groff := testenv.RequireCommand(t, "groff")
	out, err := exec.Command(groff, "-man", "-ww", "-z", "nlmcast.8").CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("groff -man -ww -z: %v\n%s", err, out)
	}
	man := testenv.RequireCommand(t, "man")
	cmd := exec.Command(man, "-l", "--warnings", "nlmcast.8")
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Errorf("man -l --warnings: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"nlmcast bridge", "nlmcast version", "WATCHDOG=1", "nlmcast.service"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the rendered page does not say %q", want)
		}
	}
}

// TestMakeInstall installs into a temporary DESTDIR with PREFIX=/usr and
// checks every file and its mode, the unit's ExecStart, that the program
// runs, that the reference configuration is installed when present and
// never over an existing file, and that nothing else is installed; then
// the repository's nlmcast.toml with SYSCONFDIR=/opt/etc: installed as it
// is, where the unit's --config names it.
func TestMakeInstall(t *testing.T) {
	mk := testenv.RequireCommand(t, "make")
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Missing(t, "go")
	}
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "root")
	config := filepath.Join(tmp, "nlmcast.toml")
	if err := os.WriteFile(config, []byte("# reference\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	install := func(cfg string, vars ...string) string {
		t.Helper()
		// BIN: built in the test's directory, not over the tree's bin/.
		cmd := exec.Command(mk, append([]string{"-s", "install", "BIN=" + filepath.Join(tmp, "bin"), "DESTDIR=" + dest, "PREFIX=/usr", "CONFIG=" + cfg}, vars...)...)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	install(config)
	want := map[string]os.FileMode{
		"usr":                                    os.ModeDir | 0o755,
		"usr/bin":                                os.ModeDir | 0o755,
		"usr/bin/nlmcast":                        0o755,
		"usr/lib":                                os.ModeDir | 0o755,
		"usr/lib/systemd":                        os.ModeDir | 0o755,
		"usr/lib/systemd/system":                 os.ModeDir | 0o755,
		"usr/lib/systemd/system/nlmcast.service": 0o644,
		"usr/lib/sysusers.d":                     os.ModeDir | 0o755,
		"usr/lib/sysusers.d/nlmcast.conf":        0o644,
		"usr/share":                              os.ModeDir | 0o755,
		"usr/share/man":                          os.ModeDir | 0o755,
		"usr/share/man/man8":                     os.ModeDir | 0o755,
		"usr/share/man/man8/nlmcast.8":           0o644,
		"etc":                                    os.ModeDir | 0o755,
		"etc/nlmcast":                            os.ModeDir | 0o755,
		"etc/nlmcast/nlmcast.toml":               0o644,
	}
	got := map[string]os.FileMode{}
	err := filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dest {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
		got[rel] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, m := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s not installed", p)
		} else if g != m {
			t.Errorf("%s has mode %v, want %v", p, g, m)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s installed, not expected", p)
		}
	}
	u := parseUnit(t, filepath.Join(dest, "usr/lib/systemd/system/nlmcast.service"))
	if exec := u.Get("ExecStart"); !strings.HasPrefix(exec, "/usr/bin/nlmcast bridge") {
		t.Errorf("installed ExecStart=%q, want the installed /usr/bin/nlmcast", exec)
	}
	for _, f := range []string{"usr/share/man/man8/nlmcast.8", "usr/lib/sysusers.d/nlmcast.conf"} {
		a, _ := os.ReadFile(filepath.Join(dest, f))
		b, _ := os.ReadFile(filepath.Base(f))
		if f == "usr/lib/sysusers.d/nlmcast.conf" {
			b, _ = os.ReadFile("sysusers.d/nlmcast.conf")
		}
		if !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s differs from the repository's", f)
		}
	}
	out, err := exec.Command(filepath.Join(dest, "usr/bin/nlmcast"), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "nlmcast ") || !strings.Contains(string(out), "\ngo:       go") {
		t.Errorf("installed nlmcast --version: %v\n%s", err, out)
	}

	// Again, with the administrator's configuration in place: kept.
	edited := []byte("# edited by the administrator\n")
	if err := os.WriteFile(filepath.Join(dest, "etc/nlmcast/nlmcast.toml"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := install(config); !strings.Contains(out, "exists: left as it is") {
		t.Errorf("a second install does not say it kept the configuration:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/nlmcast/nlmcast.toml")); !bytes.Equal(b, edited) {
		t.Errorf("a second install replaced the administrator's configuration with %q", b)
	}

	// Without a reference configuration, no /etc at all.
	dest = filepath.Join(tmp, "root2")
	install(filepath.Join(tmp, "absent.toml"))
	if _, err := os.Stat(filepath.Join(dest, "etc")); !os.IsNotExist(err) {
		t.Errorf("without a reference configuration, etc was installed (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/bin/nlmcast")); err != nil {
		t.Error(err)
	}

	// The repository's reference configuration, under another SYSCONFDIR:
	// the file as it is, and the unit's --config on it.
	dest = filepath.Join(tmp, "root3")
	install("dist/nlmcast.toml", "SYSCONFDIR=/opt/etc")
	ref, err := os.ReadFile("nlmcast.toml")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "opt/etc/nlmcast/nlmcast.toml")); err != nil || !bytes.Equal(b, ref) {
		t.Errorf("SYSCONFDIR=/opt/etc: opt/etc/nlmcast/nlmcast.toml differs from dist/nlmcast.toml (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "etc")); !os.IsNotExist(err) {
		t.Errorf("SYSCONFDIR=/opt/etc: etc was installed too (%v)", err)
	}
	u = parseUnit(t, filepath.Join(dest, "usr/lib/systemd/system/nlmcast.service"))
	if exec := u.Get("ExecStart"); !strings.Contains(exec, " --config /opt/etc/nlmcast/nlmcast.toml ") {
		t.Errorf("SYSCONFDIR=/opt/etc: installed ExecStart=%q, want --config /opt/etc/nlmcast/nlmcast.toml", exec)
	}
}

// parseUnit is ParseUnit that fails t.
func parseUnit(t testing.TB, path string) Unit {
	t.Helper()
	u, err := ParseUnit(path)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
