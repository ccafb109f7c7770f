package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"

	"github.com/jsimonetti/rtnetlink/v2"
	"golang.org/x/sys/unix"
)

// loopbackUp brings lo up in the bench's namespace.
func loopbackUp() error {
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer c.Close()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return c.Link.Set(&rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Index: uint32(lo.Index), Flags: unix.IFF_UP, Change: unix.IFF_UP})
}

// namespaceEnv marks the process EnterNamespace started.
const namespaceEnv = "NLMCAST_BENCH_NETNS"

// EnterNamespace runs this program again, with the same arguments, in a new
// network namespace (CLONE_NEWNET), unless this process is that copy. It
// returns done=true with the copy's result when it ran it; done=false means
// the caller is in the new namespace and should run the benchmark.
func EnterNamespace() (done bool, err error) {
	if os.Getenv(namespaceEnv) == "1" {
		return false, nil
	}
	if os.Geteuid() != 0 {
		return true, fmt.Errorf("needs root: it makes a network namespace of its own and runs the bridge there (run it with sudo)")
	}
	self, err := os.Executable()
	if err != nil {
		return true, err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), namespaceEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return true, &ExitError{Code: ee.ExitCode()}
		}
		return true, fmt.Errorf("cannot start in a new network namespace: %w", err)
	}
	return true, nil
}

// ExitError is the exit status of the benchmark's own process, which has
// reported its error already.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }
