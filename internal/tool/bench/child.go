package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process of the benchmark: the bridge, a receiver, ip monitor.
type child struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	ready  chan struct{}
	done   chan struct{}
	// lines, when set, is called for every stdout line instead of keeping
	// it (ip monitor), with the time it was read.
	lines func(line []byte)
}

// spawn starts argv and returns once its stderr has a line containing
// readyWord ("" waits for nothing).
func spawn(name, readyWord string, lines func([]byte), argv ...string) (*child, error) {
	c := &child{name: name, cmd: exec.Command(argv[0], argv[1:]...), ready: make(chan struct{}),
		done: make(chan struct{}), lines: lines}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errp, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.copyOut(out) }()
	go func() { defer wg.Done(); c.copyErr(errp, readyWord) }()
	go func() { wg.Wait(); c.cmd.Wait(); close(c.done) }()
	if readyWord == "" {
		return c, nil
	}
	select {
	case <-c.ready:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("bench: %s exited before it was ready: %s", name, c.Stderr())
	case <-time.After(20 * time.Second):
		c.kill()
		return nil, fmt.Errorf("bench: %s not ready after 20s: %s", name, c.Stderr())
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
}

func (c *child) copyErr(r io.Reader, word string) {
	sc := bufio.NewScanner(r)
	signalled := word == ""
	for sc.Scan() {
		c.mu.Lock()
		c.stderr.Write(sc.Bytes())
		c.stderr.WriteByte('\n')
		c.mu.Unlock()
		if !signalled && strings.Contains(sc.Text(), word) {
			close(c.ready)
			signalled = true
		}
	}
}

func (c *child) Stdout() string { c.mu.Lock(); defer c.mu.Unlock(); return c.stdout.String() }
func (c *child) Stderr() string { c.mu.Lock(); defer c.mu.Unlock(); return c.stderr.String() }

// wait waits up to max for the child to exit by itself.
func (c *child) wait(max time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(max):
		return false
	}
}

// stopAll stops every child of cs.
func stopAll(cs []*child) {
	for _, c := range cs {
		c.stop()
	}
}

// stop asks the child to exit (SIGTERM) and waits.
func (c *child) stop() {
	if c.cmd.Process == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	if !c.wait(10 * time.Second) {
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
	// The command name, field 2, is in parentheses and may hold spaces:
	// count fields after its closing one. Nice is field 19.
	i := bytes.LastIndexByte(data, ')')
	fields := strings.Fields(string(data[i+1:]))
	if i < 0 || len(fields) < 17 {
		return 0, fmt.Errorf("bench: %s: cannot read /proc/%d/stat", c.name, c.cmd.Process.Pid)
	}
	return strconv.Atoi(fields[16])
}

// failed returns an error if the child exited unsuccessfully.
func (c *child) failed() error {
	if st := c.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("bench: %s: %s: %s", c.name, st, strings.TrimSpace(c.Stderr()))
	}
	return nil
}
