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

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
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
			{"gcc", "-O2", "-Wall", "-Werror", "-o", bins.crecv, "../examples/c/nlmcast_recv.c", "-lcrypto"},
		} {
			cmd := exec.Command(c[0], c[1:]...)
			if c[0] == "go" { // as make build does: --user needs a program without cgo
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
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

// patience bounds every wait in these tests. It is a deadline for a
// broken run, never a pause: each wait ends as soon as what it waits for
// has happened, however loaded the machine.
const patience = 60 * time.Second

// A signal tells a waiting test that some state changed (a receiver got a
// batch, a program printed a line), so that it checks its condition again
// at once instead of polling.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// next returns a channel that is closed at the next change.
func (s *signal) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// notify wakes every waiter.
func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// await waits until cond holds, checking it again on each change s
// signals; false if max passed first.
func await(s *signal, max time.Duration, cond func() bool) bool {
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		next := s.next() // before cond: a change during cond is not missed
		if cond() {
			return true
		}
		select {
		case <-next:
		case <-timer.C:
			return cond()
		}
	}
}

// waitFor is await that fails the test after patience.
func waitFor(t *testing.T, s *signal, what string, cond func() bool) {
	t.Helper()
	if !await(s, patience, cond) {
		t.Fatalf("after %v: %s", patience, what)
	}
}

// readiness says how a program that start runs tells it is ready.
type readiness struct{ word string }

// notified: the program sends READY=1 to $NOTIFY_SOCKET, as nlmcast bridge
// and listen do once every socket is open and every group joined.
var notified = readiness{}

// printed: the program prints a line containing word on stderr, as the
// example receivers print "ready" once joined.
func printed(word string) readiness { return readiness{word} }

// proc is a program running in a namespace, its output collected.
type proc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	changed signal // a line was added to stdout or stderr
	ready   chan struct{}
	done    chan struct{}
}

// start runs argv in the namespace and waits until it is ready.
func (ns *netns) start(t *testing.T, ready readiness, argv ...string) *proc {
	t.Helper()
	return ns.startNotified(t, ready, nil, nil, argv...)
}

// startNotified is start with a notification socket of the test's own
// (l; nil: one made for the wait), which the program's notifications
// after READY=1 reach, and env added to the program's environment.
func (ns *netns) startNotified(t *testing.T, ready readiness, l *sdnotify.Listener, env []string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, argv...)...)
	if ns.name == "" { // the host's namespace
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Env = append(os.Environ(), env...)
	if ready == notified {
		if l == nil {
			var err error
			if l, err = sdnotify.Listen(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() }) // after stop, which is registered later
		}
		// ip netns exec passes the environment on.
		cmd.Env = append(cmd.Env, l.Env())
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
		p.copy(&p.stderr, errPipe, ready.word, p.ready)
	}()
	go func() {
		wg.Wait()
		cmd.Wait()
		close(p.done)
		p.changed.notify()
	}()
	t.Cleanup(func() { p.stop() })
	if l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		go func() {
			select {
			case <-p.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := l.Wait(ctx, sdnotify.Ready); err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%v exited before it was ready:\n%s", argv, p.Stderr())
		default:
			t.Fatalf("%v sent no %s in %v:\n%s", argv, sdnotify.Ready, patience, p.Stderr())
		}
	}
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%v exited before it was ready:\n%s", argv, p.Stderr())
	case <-time.After(patience):
		t.Fatalf("%v not ready after %v:\n%s", argv, patience, p.Stderr())
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
		p.changed.notify()
		if !signalled && ready != nil && word != "" && strings.Contains(sc.Text(), word) {
			close(ready)
			signalled = true
		}
	}
}

// waitStdout waits until cond holds for what the program has printed on
// stdout so far; it fails the test if the program exits first, or after
// patience.
func (p *proc) waitStdout(t *testing.T, what string, cond func(stdout string) bool) {
	t.Helper()
	exited := false
	ok := await(&p.changed, patience, func() bool {
		if cond(p.Stdout()) {
			return true
		}
		select {
		case <-p.done:
			exited = true
			return true
		default:
			return false
		}
	})
	if !ok || exited {
		out := p.Stdout()
		if len(out) > 4000 {
			out = "..." + out[len(out)-4000:]
		}
		t.Fatalf("%s: %v (exited: %v)\nstderr:\n%s\nstdout:\n%s", what, p.cmd.Args, exited, p.Stderr(), out)
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
	case <-time.After(patience):
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
//
// The kernel queues a multicast message on every member socket when it
// sends it, during the change that causes it: so once a test's last change
// has returned, stop gives the whole record of what the changes caused
// (it reads what is still queued before it closes the sockets). A test
// then waits until each receiver has got that record through the bridge:
// a known count, not a quiet period.
type directSubscriber struct {
	mu       sync.Mutex
	byGrp    map[uint32][][]byte
	total    int
	overruns int // ENOBUFS: the record is incomplete
	changed  signal
	cancel   context.CancelFunc
	wg       sync.WaitGroup
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
			tv := unix.Timeval{Usec: 100_000} // to see ctx end
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			fds[i] = fd
		}
		return nil
	})
	for i, g := range groups {
		d.wg.Add(1)
		go d.read(ctx, fds[i], g, raw)
	}
	t.Cleanup(func() {
		d.stop()
		if d.overruns > 0 {
			t.Logf("the direct subscriber overran %d times: its record is incomplete", d.overruns)
		}
	})
	return d
}

// read records what arrives on fd until ctx ends, and then what is still
// queued.
func (d *directSubscriber) read(ctx context.Context, fd int, group uint32, raw bool) {
	defer d.wg.Done()
	defer unix.Close(fd)
	buf := make([]byte, 1<<20) // whole even for messages above 64 KiB
	for {
		flags := 0
		stopping := ctx.Err() != nil
		if stopping {
			flags = unix.MSG_DONTWAIT
		}
		n, from, err := unix.Recvfrom(fd, buf, flags)
		if err != nil {
			switch {
			case err == unix.ENOBUFS:
				d.mu.Lock()
				d.overruns++
				d.mu.Unlock()
			case stopping && (err == unix.EAGAIN || err == unix.EWOULDBLOCK):
				return // nothing left
			case err != unix.EAGAIN && err != unix.EINTR: // EAGAIN: the timeout, to check ctx
				return
			}
			continue
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
			d.changed.notify()
			continue
		}
		d.mu.Lock()
		for len(b) >= unix.SizeofNlMsghdr {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				break
			}
			d.byGrp[group] = append(d.byGrp[group], append([]byte(nil), b[:l]...))
			d.total++
			b = b[min((l+3)&^3, len(b)):]
		}
		d.mu.Unlock()
		d.changed.notify()
	}
}

func (d *directSubscriber) count() int { d.mu.Lock(); defer d.mu.Unlock(); return d.total }

// messages returns a copy of what arrived on a group.
func (d *directSubscriber) messages(group uint32) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.byGrp[group]...)
}

// counts returns the number of messages on each group.
func (d *directSubscriber) counts() map[uint32]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[uint32]int{}
	for g, msgs := range d.byGrp {
		m[g] = len(msgs)
	}
	return m
}

// stop ends the record: everything the kernel has queued on the sockets so
// far is in it.
func (d *directSubscriber) stop() { d.cancel(); d.wg.Wait() }
