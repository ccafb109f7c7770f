package netlinkbridge

import (
	"cmp"
	"sync"
	"time"
)

// The liveness watch (Config.Alive): each bridge counts the turns of its
// event loop (turns, one per step), and the watch calls Alive only when
// every watched loop has taken a turn since its previous check. While it
// runs, arm keeps each loop's read deadline within aliveWake, so that an
// idle loop still comes round.

// setupAlive takes Config.Alive for b.
func (b *Bridge) setupAlive(cfg *Config) {
	if cfg.Alive == nil {
		return
	}
	b.alive = cfg.Alive
	b.aliveEvery = cmp.Or(cfg.AliveEvery, DefaultAliveEvery)
	b.aliveWake = b.aliveEvery / 2
}

// startAlive starts the watch of bridges, calling alive every every; the
// returned function stops it and waits for it. alive nil: nothing runs.
func startAlive(bridges []*Bridge, every time.Duration, alive func()) (stop func()) {
	if alive == nil || len(bridges) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchAlive(done, every, bridges, alive)
	}()
	return func() { close(done); wg.Wait() }
}

// watchAlive calls alive every every, as long as each bridge's loop took
// a turn since the previous check, until done is closed.
func watchAlive(done <-chan struct{}, every time.Duration, bridges []*Bridge, alive func()) {
	seen := make([]uint64, len(bridges))
	for i, b := range bridges {
		seen[i] = b.turns.Load()
	}
	tick(done, every, func() {
		all := true
		for i, b := range bridges {
			n := b.turns.Load()
			if n == seen[i] {
				all = false // this loop has not come round: hung, or too slow
			}
			seen[i] = n
		}
		if all {
			alive()
		}
	})
}

// tick calls fn every d, until done is closed: the loop of each watch
// that runs beside the bridges' event loops.
func tick(done <-chan struct{}, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fn()
		}
	}
}

// aliveDeadline bounds due, the loop's next read deadline, for the watch:
// no later than aliveWake from now. A deadline already armed within that
// reach is kept, so that a busy loop sets no new deadline per read.
func (b *Bridge) aliveDeadline(now, due time.Time) time.Time {
	if b.aliveWake <= 0 {
		return due
	}
	latest := now.Add(b.aliveWake)
	if !due.IsZero() && !due.After(latest) {
		return due
	}
	if b.armed.After(now) && !b.armed.After(latest) {
		return b.armed
	}
	return latest
}
