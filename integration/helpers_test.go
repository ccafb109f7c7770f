// Package integration runs nlmcast end to end as root, each test in a
// network namespace it creates and deletes itself. It never touches the
// host's own network configuration.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testenv"
)

var bins struct {
	once     sync.Once
	dir      string
	nlmcast  string
	crecv    string
	gorecv   string
	buildErr error
}

// binaries builds the nlmcast command and the C example once per run.
func binaries(t *testing.T) (nlmcast, crecv string) {
	t.Helper()
	testenv.RequireCommand(t, "gcc")
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "nlmcast-it-bin-")
		if err != nil {
			bins.buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // the unprivileged-user test runs the binary too
		bins.dir = dir
		bins.nlmcast = filepath.Join(dir, "nlmcast")
		bins.crecv = filepath.Join(dir, "nlmcast_recv")
		bins.gorecv = filepath.Join(dir, "recv")
		for _, c := range [][]string{
			{"go", "build", "-o", bins.nlmcast, "../cmd/nlmcast"},
			{"go", "build", "-o", bins.gorecv, "../examples/go/recv"},
			{"gcc", "-O2", "-Wall", "-Werror", "-o", bins.crecv, "../examples/c/nlmcast_recv.c"},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				bins.buildErr = fmt.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
				return
			}
		}
	})
	if bins.buildErr != nil {
		t.Fatal(bins.buildErr)
	}
	return bins.nlmcast, bins.crecv
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// netns is a network namespace made for one test.
type netns struct {
	name string
	fd   int
}

// newNetNS creates a named network namespace with lo up, and deletes it
// when the test ends.
func newNetNS(t *testing.T) *netns {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	var r [4]byte
	rand.Read(r[:])
	name := "nlmcast-it-" + hex.EncodeToString(r[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("network namespaces (ip netns add: %v: %s)", err, out))
	}
	ns := &netns{name: name, fd: -1}
	t.Cleanup(func() {
		if ns.fd >= 0 {
			unix.Close(ns.fd)
		}
		exec.Command("ip", "netns", "del", name).Run()
	})
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open namespace: %v", err)
	}
	ns.fd = fd
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs an ip(8) command in the namespace.
func (ns *netns) ip(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// do runs fn on an OS thread that has entered the namespace, so sockets fn
// opens belong to it. The thread is discarded afterwards, never reused.
func (ns *netns) do(t *testing.T, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if ns.fd < 0 {         // the host's namespace
			errc <- fn()
			return
		}
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// proc is a program running in a namespace, its output collected.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	ready  chan struct{}
	done   chan struct{}
}

// start runs argv in the namespace and waits until its stderr prints a
// line containing readyWord.
func (ns *netns) start(t *testing.T, readyWord string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, argv...)...)
	if ns.name == "" { // the host's namespace
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	p := &proc{cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	outPipe, _ := cmd.StdoutPipe()
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.copy(&p.stdout, outPipe, "", nil)
	}()
	go func() {
		defer wg.Done()
		p.copy(&p.stderr, errPipe, readyWord, p.ready)
	}()
	go func() {
		wg.Wait()
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop() })
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%v exited before it was ready:\n%s", argv, p.Stderr())
	case <-time.After(15 * time.Second):
		t.Fatalf("%v not ready after 15s:\n%s", argv, p.Stderr())
	}
	return p
}

func (p *proc) copy(dst *bytes.Buffer, r io.Reader, word string, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	signalled := false
	for sc.Scan() {
		p.mu.Lock()
		dst.Write(sc.Bytes())
		dst.WriteByte('\n')
		p.mu.Unlock()
		if !signalled && ready != nil && strings.Contains(sc.Text(), word) {
			close(ready)
			signalled = true
		}
	}
}

// stop sends SIGTERM and waits for the program to exit.
func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the program with SIGKILL, giving it no chance to clean up.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) Stdout() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stdout.String() }
func (p *proc) Stderr() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

// directSubscriber reads netlink multicast with plain system calls, one
// socket per group, as an independent record of what the kernel sent.
type directSubscriber struct {
	mu     sync.Mutex
	byGrp  map[uint32][][]byte
	total  int
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (ns *netns) subscribe(t *testing.T, groups []uint32) *directSubscriber {
	t.Helper()
	return ns.subscribeFamily(t, unix.NETLINK_ROUTE, groups, false, nil)
}

// subscribeFamily subscribes to groups of a netlink family. raw: datagrams
// are whole messages without netlink header (uevents). setup, if not nil,
// runs on each socket after the join (the connector's listen request).
func (ns *netns) subscribeFamily(t *testing.T, family int, groups []uint32, raw bool, setup func(fd int) error) *directSubscriber {
	t.Helper()
	d := &directSubscriber{byGrp: make(map[uint32][][]byte)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	fds := make([]int, len(groups))
	ns.do(t, func() error {
		for i, g := range groups {
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, family)
			if err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g)); err != nil {
				return fmt.Errorf("join group %d: %w", g, err)
			}
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
			if setup != nil {
				if err := setup(fd); err != nil {
					return err
				}
			}
			tv := unix.Timeval{Usec: 100_000}
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			fds[i] = fd
		}
		return nil
	})
	for i, g := range groups {
		d.wg.Add(1)
		go d.read(ctx, fds[i], g, raw)
	}
	t.Cleanup(d.stop)
	return d
}

func (d *directSubscriber) read(ctx context.Context, fd int, group uint32, raw bool) {
	defer d.wg.Done()
	defer unix.Close(fd)
	buf := make([]byte, 1<<20) // whole even for messages above 64 KiB
	for ctx.Err() == nil {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout: check ctx
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		b := buf[:n]
		if raw {
			d.mu.Lock()
			d.byGrp[group] = append(d.byGrp[group], append([]byte(nil), b...))
			d.total++
			d.mu.Unlock()
			continue
		}
		for len(b) >= unix.SizeofNlMsghdr {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				break
			}
			d.mu.Lock()
			d.byGrp[group] = append(d.byGrp[group], append([]byte(nil), b[:l]...))
			d.total++
			d.mu.Unlock()
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}

func (d *directSubscriber) count() int { d.mu.Lock(); defer d.mu.Unlock(); return d.total }

// messages returns a copy of what arrived on a group.
func (d *directSubscriber) messages(group uint32) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.byGrp[group]...)
}

func (d *directSubscriber) stop() { d.cancel(); d.wg.Wait() }

// waitQuiet waits until count has not changed for quiet, or fails after max.
func waitQuiet(t *testing.T, count func() int, quiet, max time.Duration) {
	t.Helper()
	deadline := time.Now().Add(max)
	last, since := count(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if c := count(); c != last {
			last, since = c, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
	t.Fatalf("events still arriving after %v", max)
}
