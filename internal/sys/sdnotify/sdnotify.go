package sdnotify

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Socket is the environment variable that names the supervisor's socket.
const Socket = "NOTIFY_SOCKET"

// States a daemon reports.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notify sends state (one or more NAME=VALUE lines) to the supervisor. It
// does nothing, and returns nil, when $NOTIFY_SOCKET is not set: the
// process runs without one.
func Notify(state string) error {
	path := os.Getenv(Socket)
	if path == "" {
		return nil
	}
	return Send(path, state)
}

// Send sends state to the notification socket at path; a leading '@'
// names an abstract socket.
func Send(path, state string) error {
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	} else if !strings.HasPrefix(path, "/") {
		return errors.New("sdnotify: " + Socket + " must be an absolute path or start with @")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// A Notifier sends states over a connection opened once, so that a
// process may still notify its supervisor after it gave up the
// privileges that opening the socket needed.
type Notifier struct{ c *net.UnixConn }

// Open connects to $NOTIFY_SOCKET now; it returns a nil *Notifier, whose
// Send does nothing, when the variable is not set.
func Open() (*Notifier, error) {
	path := os.Getenv(Socket)
	if path == "" {
		return nil, nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	} else if !strings.HasPrefix(path, "/") {
		return nil, errors.New("sdnotify: " + Socket + " must be an absolute path or start with @")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &Notifier{c: c}, nil
}

// Send sends state (one or more NAME=VALUE lines).
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	_, err := n.c.Write([]byte(state))
	return err
}

// Close closes the connection. It is safe to call more than once.
func (n *Notifier) Close() error {
	if n == nil || n.c == nil {
		return nil
	}
	err := n.c.Close()
	n.c = nil
	return err
}

// Environment variables of the service manager's watchdog.
const (
	WatchdogUSec = "WATCHDOG_USEC"
	WatchdogPID  = "WATCHDOG_PID"
)

// WatchdogInterval returns the watchdog's interval from $WATCHDOG_USEC,
// as sd_watchdog_enabled(3) reads it: zero when the variable is unset, or
// when $WATCHDOG_PID is set to another process's pid (the watchdog is not
// this process's). The process should send Watchdog at least every half
// of it. A malformed or zero value is an error.
func WatchdogInterval() (time.Duration, error) {
	return watchdogInterval(os.Getenv(WatchdogUSec), os.Getenv(WatchdogPID), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("sdnotify: %s=%q: not a pid", WatchdogPID, pid)
		}
		if p != self {
			return 0, nil
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 || u > uint64(math.MaxInt64/int64(time.Microsecond)) {
		return 0, fmt.Errorf("sdnotify: %s=%q: not a positive number of microseconds", WatchdogUSec, usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}
