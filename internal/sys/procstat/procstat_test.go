package procstat

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTakeGrows(t *testing.T) {
	a := Take()
	sink := make([][]byte, 0, 1000)
	for i := 0; i < 1000; i++ {
		sink = append(sink, make([]byte, 64))
	}
	deadline := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU
	}
	b := Take()
	if b.Mallocs-a.Mallocs < 1000 {
		t.Errorf("mallocs grew by %d, want at least 1000", b.Mallocs-a.Mallocs)
	}
	if b.CPU() <= a.CPU() {
		t.Errorf("CPU did not grow: %d -> %d", a.CPU(), b.CPU())
	}
	if b.MaxRSS < 1<<20 {
		t.Errorf("max RSS %d bytes: not in bytes?", b.MaxRSS)
	}
	_ = sink
	// The sleep is what is measured, not a wait for something: the clock
	// must move at least as long, and no longer than Go's own clock saw
	// (not a fixed bound, which a loaded machine could pass).
	start := time.Now()
	m1 := Monotonic()
	time.Sleep(time.Millisecond)
	d := Monotonic() - m1
	if el := time.Since(start); d < int64(time.Millisecond) || d > int64(el) {
		t.Errorf("monotonic clock moved %dns over a 1ms sleep that Go's clock saw take %v", d, el)
	}
}

// TestPeakIsThisProgramsOwn: a program started from a large process reports
// its own peak, not the one it inherited across exec (as ru_maxrss does).
func TestPeakIsThisProgramsOwn(t *testing.T) {
	if os.Getenv("PROCSTAT_CHILD") != "" {
		os.Stdout.WriteString(strconv.FormatInt(Take().MaxRSS, 10) + "\n")
		return
	}
	big := make([]byte, 128<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1 // make it resident
	}
	if own := Take().MaxRSS; own < 128<<20 {
		t.Fatalf("after touching 128 MiB, peak RSS %d bytes", own)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakIsThisProgramsOwn$")
	cmd.Env = append(os.Environ(), "PROCSTAT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	child, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		t.Fatalf("child printed %q", out)
	}
	if child <= 0 || child >= 96<<20 {
		t.Errorf("child's peak RSS %d bytes: inherited from its 128 MiB parent?", child)
	}
	big[0] = 2
}
