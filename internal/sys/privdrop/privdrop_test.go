package privdrop

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestCapsString(t *testing.T) {
	for _, c := range []struct {
		caps Caps
		want string
	}{
		{0, "none"},
		{NetAdmin, "CAP_NET_ADMIN"},
		{SysPtrace | NetRaw, "CAP_NET_RAW,CAP_SYS_PTRACE"},
		{1 << 40, "CAP_CHECKPOINT_RESTORE"},
		{1 << 41, "CAP_41"},
	} {
		if got := c.caps.String(); got != c.want {
			t.Errorf("%#x: %q, want %q", uint64(c.caps), got, c.want)
		}
	}
}

const sampleStatus = `Name:	nlmcast
Umask:	0022
State:	S (sleeping)
Uid:	65534	65534	65534	65534
Gid:	65534	65534	65534	65534
Groups:	65534 
NoNewPrivs:	1
CapInh:	0000000000000000
CapPrm:	0000000000082000
CapEff:	0000000000082000
CapBnd:	000001ffffffffff
CapAmb:	0000000000000000
Seccomp:	0
`

func TestParseStatus(t *testing.T) {
	st, err := ParseStatus([]byte(sampleStatus))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{UID: 65534, GID: 65534, Effective: NetRaw | SysPtrace, Permitted: NetRaw | SysPtrace, NoNewPrivs: true}
	if d := st.Diff(want); d != "" {
		t.Fatal(d)
	}
	if len(st.Groups) != 1 || st.Groups[0] != 65534 {
		t.Errorf("groups %v", st.Groups)
	}
	// Mixed ids are no id.
	mixed := strings.Replace(sampleStatus, "Uid:	65534	65534	65534	65534", "Uid:	65534	0	65534	65534", 1)
	if st, err := ParseStatus([]byte(mixed)); err != nil || st.UID != -1 {
		t.Errorf("mixed uids: %d, %v; want -1", st.UID, err)
	}
	if d := st.Diff(Status{UID: 65534, GID: 65534}); !strings.Contains(d, "effective capabilities CAP_NET_RAW,CAP_SYS_PTRACE, want none") ||
		!strings.Contains(d, "no_new_privs true, want false") {
		t.Errorf("diff: %q", d)
	}
	if _, err := ParseStatus([]byte("Name: x\n")); err == nil {
		t.Error("a file without privilege lines parsed")
	}
}

const (
	childEnv = "PRIVDROP_TEST_KEEP"
	trimEnv  = "PRIVDROP_TEST_TRIM" // the child calls Trim, not Drop
)

// childReport is what the child process tells of its drop.
type childReport struct {
	Err     string
	Cgo     bool
	Threads []Status // every thread, after the drop and after more threads started
}

// TestDrop drops privileges in a child process (this test binary run
// again) that has several threads, and checks every thread of it.
func TestDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI=true)")
		}
		t.Skip("needs root")
	}
	for _, c := range []struct {
		trim bool
		keep Caps
	}{{false, 0}, {false, NetRaw | SysPtrace}, {false, NetAdmin}, {true, 0}, {true, NetBindService}} {
		keep := c.keep
		name := "Drop " + keep.String()
		if c.trim {
			name = "Trim " + keep.String()
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestDropChild$", "-test.v")
			cmd.Env = append(os.Environ(), childEnv+"="+strconv.FormatUint(uint64(keep), 16))
			if c.trim {
				cmd.Env = append(cmd.Env, trimEnv+"=1")
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			_, js, ok := strings.Cut(string(out), "REPORT ")
			js, _, _ = strings.Cut(js, "\n")
			var r childReport
			if !ok || json.Unmarshal([]byte(js), &r) != nil {
				t.Fatalf("no report from the child:\n%s", out)
			}
			if len(r.Threads) < 5 {
				t.Fatalf("the child has %d threads, want at least 5", len(r.Threads))
			}
			want := Status{UID: 65534, GID: 65534, Effective: keep, Permitted: keep, NoNewPrivs: true}
			if c.trim {
				want.UID, want.GID = 0, 0 // root, with just keep
			}
			if raceBuild {
				// With cgo, nothing may have changed.
				if !r.Cgo {
					t.Fatalf("with cgo: %q, want ErrCgo", r.Err)
				}
				want = Status{UID: 0, GID: 0, Effective: r.Threads[0].Effective, Permitted: r.Threads[0].Permitted}
				if want.Effective&(SysAdmin|Setuid) != SysAdmin|Setuid {
					t.Fatalf("root's child lost its capabilities: %v", want.Effective)
				}
			} else if r.Err != "" {
				t.Fatal(r.Err)
			}
			for i, st := range r.Threads {
				if d := st.Diff(want); d != "" {
					t.Errorf("thread %d: %s", i, d)
				}
				if !raceBuild && !c.trim && len(st.Groups) != 0 {
					t.Errorf("thread %d: supplementary groups %v, want none", i, st.Groups)
				}
			}
		})
	}
}

// TestDropChild is the child of TestDrop.
func TestDropChild(t *testing.T) {
	hex := os.Getenv(childEnv)
	if hex == "" {
		t.Skip("TestDrop's child")
	}
	keep, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Threads of their own before the drop, and after it.
	stop := make(chan struct{})
	defer close(stop)
	threads := func(n int) {
		started := make(chan struct{})
		for range n {
			go func() {
				runtime.LockOSThread() // never unlocked: the thread is this goroutine's alone
				started <- struct{}{}
				<-stop
			}()
			<-started
		}
	}
	threads(4)
	var r childReport
	drop := func() error { return Drop(User{UID: 65534, GID: 65534}, Caps(keep)) }
	if os.Getenv(trimEnv) != "" {
		drop = func() error { return Trim(Caps(keep)) }
	}
	if err := drop(); err != nil {
		r.Err, r.Cgo = err.Error(), errors.Is(err, ErrCgo)
	}
	threads(2)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", os.Getpid()))
	for _, p := range tasks {
		st, err := ReadStatus(p)
		if err != nil {
			t.Fatal(err)
		}
		r.Threads = append(r.Threads, st)
	}
	js, _ := json.Marshal(r)
	fmt.Printf("REPORT %s\n", js)
}
