package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// A Listener is the supervisor's side: a notification socket that a
// child process is given in $NOTIFY_SOCKET (see Env), and whose messages
// Wait reads. Tests and nlmcast bench use it to know when a process they
// started is ready, instead of reading its log or sleeping.
type Listener struct {
	conn *net.UnixConn
	path string
	dir  string
}

// Listen makes a notification socket in a new temporary directory.
func Listen() (*Listener, error) {
	dir, err := os.MkdirTemp("", "nlmcast-notify-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Let a child that has dropped its privileges send too.
	_ = os.Chmod(dir, 0o755)
	_ = os.Chmod(path, 0o777)
	return &Listener{conn: c, path: path, dir: dir}, nil
}

// Path returns the socket's path.
func (l *Listener) Path() string { return l.path }

// Env returns the environment entry that points a child at the socket.
func (l *Listener) Env() string { return Socket + "=" + l.path }

// Wait reads notifications until one has a line equal to state, and
// returns the whole message. It returns an error when ctx ends first, or
// when the socket is closed.
func (l *Listener) Wait(ctx context.Context, state string) (string, error) {
	_ = l.conn.SetReadDeadline(time.Time{}) // an earlier Wait's ctx may have ended
	stop := context.AfterFunc(ctx, func() { _ = l.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 4096)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("no %s notification: %w", state, ctx.Err())
			}
			return "", err
		}
		msg := string(buf[:n])
		for _, line := range strings.Split(msg, "\n") {
			if line == state {
				return msg, nil
			}
		}
	}
}

// Drain reads every notification already queued, without waiting, and
// returns how many have a line equal to state. A process known to be
// stopped sends nothing more: what Wait reads after Drain was sent later.
func (l *Listener) Drain(state string) (int, error) {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	n := 0
	for {
		var k int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			k, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			return true // never wait
		})
		switch {
		case err != nil:
			return n, err
		case errors.Is(rerr, syscall.EAGAIN):
			return n, nil
		case rerr != nil:
			return n, rerr
		}
		for _, line := range strings.Split(string(buf[:k]), "\n") {
			if line == state {
				n++
			}
		}
	}
}

// Close closes the socket and removes its directory.
func (l *Listener) Close() error {
	err := l.conn.Close()
	os.RemoveAll(l.dir)
	return err
}
