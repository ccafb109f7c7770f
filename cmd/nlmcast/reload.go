package main

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

// A change is a key of the config file whose value a reload changes.
type change struct{ key, old, new string }

// liveKeys are the keys a reload applies to a running bridge. A change of
// any other key is logged and waits for a restart.
var liveKeys = map[string]bool{"log-level": true, "heartbeat": true, "streams": true, "expose": true, "cleartext-to-all-users": true}

// restartWhy says why a change of a key needs a restart; other keys are
// read once, at start.
var restartWhy = map[string]string{}

// planReload compares the running bridge's flag values with those of the
// reloaded file: the changes to apply now and those that need a restart,
// each sorted by key.
func planReload(running, next map[string]string) (apply, restart []change) {
	for key, nv := range next {
		ov, ok := running[key]
		if !ok || ov == nv {
			continue
		}
		c := change{key, ov, nv}
		if liveKeys[key] {
			apply = append(apply, c)
		} else {
			restart = append(restart, c)
		}
	}
	byKey := func(a, b change) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	}
	slices.SortFunc(apply, byKey)
	slices.SortFunc(restart, byKey)
	return apply, restart
}

// liveSetter is what a reload changes of a running netlinkbridge.Set.
type liveSetter interface {
	SetHeartbeat(every time.Duration, off bool) error
	SetStreams(ss []streams.Stream, private map[string]netlinkbridge.Access) error
}

// reloader re-reads the bridge's config (its command line and --config
// file) and applies what can change while it runs.
type reloader struct {
	args    []string          // the command line, after "bridge"
	path    string            // --config
	running map[string]string // flag values in force; updated by reload
	level   *slog.LevelVar    // the logger's
	set     liveSetter
	log     *slog.Logger
}

// reload reads the config again and applies the changes it can, logging
// each change and whether it applied. A file that does not load or
// validate changes nothing.
func (r *reloader) reload() {
	next, err := bridgeConfig(context.Background(), r.args, io.Discard)
	if err != nil {
		r.log.Error("config not reloaded; the running configuration stays", "file", r.path, "err", err)
		return
	}
	apply, restart := planReload(r.running, next.values)
	// The log level last: what the others say is logged at the level
	// in force when the reload began.
	slices.SortStableFunc(apply, func(a, b change) int {
		switch {
		case a.key == "log-level" && b.key != "log-level":
			return 1
		case a.key != "log-level" && b.key == "log-level":
			return -1
		}
		return 0
	})
	applied := 0
	var streamsErr error
	streamsDone := false
	whyNow := map[string]string{} // why a live key needs a restart this time
	for _, c := range apply {
		switch c.key {
		case "streams", "expose", "cleartext-to-all-users":
			// The streams and who may read them: one change, applied
			// once (netlinkbridge.Set.SetStreams).
			if !streamsDone {
				streamsDone = true
				streamsErr = r.set.SetStreams(next.cfg.Streams, next.cfg.Private)
			}
			var ce *netlinkbridge.ConfigError
			if errors.As(streamsErr, &ce) {
				restart = append(restart, c)
				whyNow[c.key] = ce.Error()
				continue
			}
			if streamsErr != nil {
				// Applied but for the streams named: say which.
				r.log.Error("config change applied in part", "key", c.key, "old", c.old, "new", c.new, "err", streamsErr)
				r.running[c.key] = c.new
				applied++
				continue
			}
		case "log-level":
			r.level.Set(next.level)
		case "heartbeat":
			if err := r.set.SetHeartbeat(next.cfg.Heartbeat, next.cfg.NoHeartbeats); err != nil {
				r.log.Error("config change not applied", "key", c.key, "old", c.old, "new", c.new, "err", err)
				continue
			}
		}
		r.running[c.key] = c.new
		applied++
		r.log.Info("config change applied", "key", c.key, "old", c.old, "new", c.new)
	}
	for _, c := range restart {
		why := cmp.Or(whyNow[c.key], restartWhy[c.key], "read once, at start")
		r.log.Warn("config change needs a restart; not applied", "key", c.key, "running", c.old, "new", c.new, "why", why)
	}
	r.log.Info("config reloaded", "file", r.path, "applied", applied, "need_restart", len(restart))
}

// reloadOn calls r.reload on every signal of ch, until the returned
// function is called.
func reloadOn(ch chan os.Signal, r *reloader) (stop func()) { return onSignal(ch, r.reload) }
