package sdnotify

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestNotifyReachesListener(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv(Socket, l.Path())
	if err := Notify("STATUS=starting"); err != nil {
		t.Fatal(err)
	}
	if err := Notify(Ready + "\nSTATUS=bridging"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := l.Wait(ctx, Ready)
	if err != nil {
		t.Fatal(err)
	}
	if msg != "READY=1\nSTATUS=bridging" {
		t.Errorf("got %q", msg)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, Ready); err == nil {
		t.Fatal("Wait returned without a notification")
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	t.Setenv(Socket, "")
	if err := Notify(Ready); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Socket, "relative/path")
	if err := Notify(Ready); err == nil {
		t.Fatal("a relative socket path was accepted")
	}
}

// A Notifier's connection, opened once, still reaches the supervisor when
// the socket's path no longer does (as after a privilege drop, when the
// path is no longer the process's to open).
func TestNotifierSendsOverItsConnection(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv(Socket, l.Path())
	n, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	moved := l.Path() + ".moved"
	if err := os.Rename(l.Path(), moved); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(moved, l.Path())
	if err := Notify(Ready); err == nil {
		t.Fatal("the path still reaches the listener: the test cannot tell")
	}
	if err := n.Send(Ready + "\nSTATUS=bridging"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if msg, err := l.Wait(ctx, Ready); err != nil || msg != "READY=1\nSTATUS=bridging" {
		t.Fatalf("got %q, %v", msg, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Socket, "")
	if n, err := Open(); n != nil || err != nil {
		t.Fatalf("without a socket: %v, %v", n, err)
	}
	var none *Notifier
	if err := none.Send(Ready); err != nil {
		t.Fatal(err)
	}
}

// WatchdogInterval reads $WATCHDOG_USEC as sd_watchdog_enabled does:
// only for this process when $WATCHDOG_PID names one.
func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"10000000", "", 10 * time.Second, false},
		{"10000000", "42", 10 * time.Second, false},
		{"10000000", "43", 0, false}, // another process's watchdog
		{"", "42", 0, false},
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"10s", "", 0, true},
		{"10000000", "x", 0, true},
		{"99999999999999999999", "", 0, true},
	} {
		got, err := watchdogInterval(c.usec, c.pid, 42)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("usec %q pid %q: %v, %v; want %v, error %v", c.usec, c.pid, got, err, c.want, c.err)
		}
	}
	t.Setenv(WatchdogUSec, "2500000")
	t.Setenv(WatchdogPID, strconv.Itoa(os.Getpid()))
	if got, err := WatchdogInterval(); got != 2500*time.Millisecond || err != nil {
		t.Errorf("from the environment: %v, %v", got, err)
	}
}

// Drain counts what is queued and returns at once; Wait then sees only
// later notifications.
func TestDrain(t *testing.T) {
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, s := range []string{Watchdog, "STATUS=x", Watchdog + "\nSTATUS=y"} {
		if err := Send(l.Path(), s); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.Drain(Watchdog); n != 2 || err != nil {
		t.Fatalf("Drain: %d, %v; want 2", n, err)
	}
	if n, err := l.Drain(Watchdog); n != 0 || err != nil {
		t.Fatalf("second Drain: %d, %v; want 0", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx, Watchdog); err == nil {
		t.Fatal("Wait found a drained notification")
	}
	if err := Send(l.Path(), Watchdog); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Wait(context.Background(), Watchdog); err != nil {
		t.Fatalf("Wait after Drain: %v", err)
	}
}
