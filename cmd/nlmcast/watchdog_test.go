package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// watchdog turns $WATCHDOG_USEC into Config.Alive at half the interval,
// sending WATCHDOG=1; it leaves the config alone without a watchdog for
// this process, and refuses a malformed one.
func TestWatchdogConfig(t *testing.T) {
	l, err := sdnotify.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv(sdnotify.Socket, l.Path())
	n, err := sdnotify.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	self := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		usec, pid string
		every     time.Duration // 0: no Alive
		err       bool
	}{
		{"", "", 0, false},
		{"10000000", "", 5 * time.Second, false},
		{"10000000", self, 5 * time.Second, false},
		{"10000000", "1", 0, false}, // another process's
		{"ten", "", 0, true},
	} {
		t.Setenv(sdnotify.WatchdogUSec, c.usec)
		t.Setenv(sdnotify.WatchdogPID, c.pid)
		cfg := &netlinkbridge.Config{}
		err := watchdog(cfg, n, quiet)
		if (err != nil) != c.err || (cfg.Alive != nil) != (c.every != 0) || cfg.AliveEvery != c.every {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: err %v, Alive set %v, every %v; want error %v, every %v",
				c.usec, c.pid, err, cfg.Alive != nil, cfg.AliveEvery, c.err, c.every)
			continue
		}
		if cfg.Alive == nil {
			continue
		}
		cfg.Alive()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := l.Wait(ctx, sdnotify.Watchdog); err != nil {
			t.Errorf("Alive sent no %s: %v", sdnotify.Watchdog, err)
		}
		cancel()
	}
}
