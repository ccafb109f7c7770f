package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Missing skips t, or fails it under CI, because something is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI=true but missing: %s", what)
	}
	t.Skipf("skipped: %s (required under CI=true)", what)
}

// RequireRoot skips (or, under CI, fails) t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root (run the tests with sudo)")
	}
}

// RequireCommand returns the path of a program, or skips (fails under CI).
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "command "+name+" (install it; see .ci/run)")
	}
	return p
}

// SkipUnderRace skips allocation-count tests under -race; make test runs
// them again without it (see the Makefile's allocs target).
func SkipUnderRace(t testing.TB) {
	t.Helper()
	if Race {
		t.Skip("allocation counts are not meaningful under -race; run: make allocs")
	}
}
