package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
)

// How long a child may take to be ready, and to exit once asked.
const (
	readyTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
)

// A group owns the child processes of one phase of the benchmark. Children
// are started only through a group, and whoever makes one closes it
// (defer g.close()): close stops every child started through it and waits
// for each to exit, on every path out of the phase, error or not.
type group struct {
	cs    []*child
	grace time.Duration // from SIGTERM to SIGKILL; zero: stopTimeout
}

// A spec says how to start a child.
type spec struct {
	name string
	argv []string
	// notify: the child tells it is ready with READY=1 on $NOTIFY_SOCKET,
	// and start waits for that.
	notify bool
	// lines, when set, is called for every stdout line instead of keeping
	// it (ip monitor).
	lines func(line []byte)
	// printed: the child is ready once its stderr holds this text (the
	// line nats-server logs when it takes connections), and start waits
	// for that.
	printed string
}

// child is a process of the benchmark: the bridge, a receiver, ip monitor.
type child struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{} // closed once the process has exited and been reaped
	lines  func(line []byte)
	// printed and seen: spec.printed, and closed once stderr holds it.
	printed string
	seen    chan struct{}
}

// start starts a child, and with s.notify waits until it is ready. The
// child belongs to g even when start fails: close stops it.
func (g *group) start(ctx context.Context, s spec) (*child, error) {
	c := &child{name: s.name, cmd: exec.Command(s.argv[0], s.argv[1:]...), done: make(chan struct{}), lines: s.lines,
		printed: s.printed, seen: make(chan struct{})}
	var l *sdnotify.Listener
	if s.notify {
		var err error
		if l, err = sdnotify.Listen(); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", s.name, err)
		}
		defer l.Close()
		c.cmd.Env = append(os.Environ(), l.Env())
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errp, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", s.name, err)
	}
	g.cs = append(g.cs, c)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.copyOut(out) }()
	go func() { defer wg.Done(); c.copyErr(errp) }()
	go func() { wg.Wait(); c.cmd.Wait(); close(c.done) }()
	if s.printed != "" {
		return c, c.awaitPrinted(ctx)
	}
	if l == nil {
		return c, nil
	}
	return c, c.awaitReady(ctx, l)
}

// awaitPrinted waits until the child's stderr holds c.printed, the child
// exits, ctx ends or readyTimeout passes.
func (c *child) awaitPrinted(ctx context.Context) error {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-c.seen:
		return nil
	case <-c.done:
		return fmt.Errorf("bench: %s exited before it printed %q: %s", c.name, c.printed, strings.TrimSpace(c.Stderr()))
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("bench: %s did not print %q in %v: %s", c.name, c.printed, readyTimeout, strings.TrimSpace(c.Stderr()))
	}
}

// awaitReady waits for READY=1 on l, until the child exits, ctx ends or
// readyTimeout passes.
func (c *child) awaitReady(ctx context.Context, l *sdnotify.Listener) error {
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-wctx.Done():
		}
	}()
	_, err := l.Wait(wctx, sdnotify.Ready)
	switch {
	case err == nil:
		return nil
	case c.exited():
		<-c.done // all of its stderr is in
		return fmt.Errorf("bench: %s exited before it was ready: %s", c.name, strings.TrimSpace(c.Stderr()))
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("bench: %s not ready after %v: %s", c.name, readyTimeout, strings.TrimSpace(c.Stderr()))
	}
	return fmt.Errorf("bench: %s: %w", c.name, err)
}

// close stops every child of the group (SIGTERM, then SIGKILL after the
// grace) and waits until each has exited. It may be called again.
func (g *group) close() {
	for _, c := range g.cs {
		if !c.exited() {
			c.signal(syscall.SIGTERM)
		}
	}
	grace := g.grace
	if grace == 0 {
		grace = stopTimeout
	}
	deadline := time.Now().Add(grace)
	for _, c := range g.cs {
		if !c.wait(time.Until(deadline)) {
			c.kill()
		}
	}
}

func (c *child) copyOut(r io.Reader) {
	if c.lines == nil {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			c.mu.Lock()
			c.stdout.Write(buf[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		c.lines(sc.Bytes())
	}
	io.Copy(io.Discard, r) // a line too long: keep the pipe drained
}

func (c *child) copyErr(r io.Reader) {
	buf := make([]byte, 4<<10)
	seen := c.printed == ""
	for {
		n, err := r.Read(buf)
		c.mu.Lock()
		c.stderr.Write(buf[:n])
		if !seen && strings.Contains(c.stderr.String(), c.printed) {
			seen = true
			close(c.seen)
		}
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *child) Stdout() string { c.mu.Lock(); defer c.mu.Unlock(); return c.stdout.String() }
func (c *child) Stderr() string { c.mu.Lock(); defer c.mu.Unlock(); return c.stderr.String() }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits up to max for the child to exit by itself.
func (c *child) wait(max time.Duration) bool {
	if c.exited() {
		return true
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// stop asks the child to exit (SIGTERM) and waits; SIGKILL after
// stopTimeout.
func (c *child) stop() {
	if c.exited() {
		return
	}
	c.signal(syscall.SIGTERM)
	if !c.wait(stopTimeout) {
		c.kill()
	}
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

func (c *child) signal(s os.Signal) error { return c.cmd.Process.Signal(s) }

// nice returns the child's nice value, from /proc/PID/stat.
func (c *child) nice() (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("bench: %s: %w", c.name, err)
	}
	n, err := statNice(data)
	if err != nil {
		return 0, fmt.Errorf("bench: %s: /proc/%d/stat: %w", c.name, c.cmd.Process.Pid, err)
	}
	return n, nil
}

// statNice returns the nice value of a /proc/PID/stat line. The command
// name, field 2, is in parentheses and may hold spaces: fields are counted
// after its closing one. Nice is field 19.
func statNice(stat []byte) (int, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 17 {
		return 0, fmt.Errorf("%d fields after the command name, want 17 or more", len(fields))
	}
	return strconv.Atoi(fields[16])
}

// cpu returns the child's CPU time so far, user and system, from
// /proc/PID/stat: in clock ticks of 10 ms (USER_HZ), as nanoseconds.
func (c *child) cpu() (user, system int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("bench: %s: %w", c.name, err)
	}
	if user, system, err = statCPU(data); err != nil {
		return 0, 0, fmt.Errorf("bench: %s: /proc/%d/stat: %w", c.name, c.cmd.Process.Pid, err)
	}
	return user, system, nil
}

// onCPU returns how long the child's threads have run so far, in
// nanoseconds: its process CPU clock (clock_getcpuclockid(3); the
// scheduler's count, to the nanosecond, of every thread, those that ended
// too). /proc/PID/stat counts in 10 ms ticks, too coarse for a few
// hundred sparse events.
func (c *child) onCPU() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(processCPUClock(c.cmd.Process.Pid), &ts); err != nil {
		return 0, fmt.Errorf("bench: %s: the CPU time of process %d: %w", c.name, c.cmd.Process.Pid, err)
	}
	return ts.Nano(), nil
}

// processCPUClock is the clock id of process pid's CPU time as the
// scheduler counts it: the kernel's MAKE_PROCESS_CPUCLOCK(pid,
// CPUCLOCK_SCHED), which glibc's clock_getcpuclockid returns.
func processCPUClock(pid int) int32 {
	const cpuclockSched = 2
	return int32(^pid<<3 | cpuclockSched)
}

// userHZ is the unit of the times in /proc/PID/stat: fixed at 100 a
// second for every program on Linux, whatever the kernel's own tick.
const userHZ = 100

// statCPU returns the user and system CPU time of a /proc/PID/stat line
// in nanoseconds: fields 14 and 15 (utime, stime), in ticks of 1/userHZ s,
// counted as statNice counts them.
func statCPU(stat []byte) (user, system int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want 13 or more", len(fields))
	}
	u, err1 := strconv.ParseInt(fields[11], 10, 64)
	s, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	return u * (1e9 / userHZ), s * (1e9 / userHZ), nil
}

// failed returns an error if the child exited unsuccessfully.
func (c *child) failed() error {
	if st := c.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("bench: %s: %s: %s", c.name, st, strings.TrimSpace(c.Stderr()))
	}
	return nil
}
