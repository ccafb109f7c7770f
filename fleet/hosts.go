package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultHostsEvery is how often a HostWatcher asks for the stream's
// hosts.
const DefaultHostsEvery = 5 * time.Second

// A FoundHost is a host a HostWatcher reports.
type FoundHost struct {
	// Name is the host's token in the subjects (its publisher's Host).
	Name string
	// Late: the host had no frame in the stream when the watcher
	// started; it was found by a later look. Every frame it has is newer
	// than the watcher's start (see SourceConfig.ForHost).
	Late bool
}

// A HostWatcher reports the hosts that publish to a JetStream stream:
// those with frames in it when Run starts, then each host whose first
// frame is stored later, each host once.
//
// It learns of a new host by asking the server for the stream's subjects
// (stream info with the subject filter nlmcast.>) every Every: a small
// answer, a line per host and stream, however many frames flow. NATS has no event for a subject's first message: a
// subscription to nlmcast.*.> would bring the watcher every frame of
// every host, to see a new host now and then, and a publisher announcing
// itself on a subject of its own would be a change to the publishers,
// missed by the older ones. The cost of asking is a new host's frames
// read up to Every late; none is lost (SourceConfig.ForHost).
type HostWatcher struct {
	// Conn says how to reach NATS. Zero: nats://127.0.0.1:4222.
	Conn Conn
	// Stream is the JetStream stream. Zero: DefaultStream. A stream that
	// does not exist yet has no host: Run waits for a publisher to
	// create it.
	Stream string
	// Every is how often Run looks for new hosts. Zero: DefaultHostsEvery.
	Every time.Duration
	// Found is called, from Run's goroutine, with each host once: those
	// there at the start (an error stops Run and is returned), then each
	// new one, Late (an error is logged, and the host tried again at the
	// next look). Required.
	Found func(h FoundHost) error
	// Listed, if not nil, is called once those there at the start were
	// Found, with their names, sorted (none: Run waits for the first).
	Listed func(hosts []string)
	// Logf logs what goes wrong after the start (the server unreachable,
	// a host that Found refused). Zero: no log.
	Logf func(format string, args ...any)
}

// Run reports the hosts there now, then the new ones, until ctx ends
// (then it returns nil). It fails if NATS or the stream cannot be asked
// at the start (but for a stream that does not exist yet); later, it
// logs the failures and asks again.
func (w *HostWatcher) Run(ctx context.Context) error {
	if w.Found == nil {
		return errors.New("fleet: HostWatcher.Found is nil: what to do with a host")
	}
	stream, every := w.Stream, w.Every
	if stream == "" {
		stream = DefaultStream
	}
	if every <= 0 {
		every = DefaultHostsEvery
	}
	logf := w.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	nc, err := w.Conn.dial("nlmcast hosts")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	hosts, err := streamHosts(ctx, js, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		hosts, err = nil, nil // no publisher yet
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if err := w.Found(FoundHost{Name: h}); err != nil {
			return err
		}
		seen[h] = true
	}
	if w.Listed != nil {
		w.Listed(hosts)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		hosts, err := streamHosts(ctx, js, stream)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrStreamNotFound):
			continue // still no publisher
		case err != nil:
			if !failing {
				logf("fleet: looking for new hosts: %v (asking again every %v)", err, every)
			}
			failing = true
			continue
		case failing:
			logf("fleet: looking for new hosts again")
			failing = false
		}
		for _, h := range hosts {
			if seen[h] {
				continue
			}
			if err := w.Found(FoundHost{Name: h, Late: true}); err != nil {
				logf("fleet: new host %s: %v (trying again in %v)", h, err, every)
				continue
			}
			seen[h] = true
		}
	}
}

// ForHost returns c for one host a HostWatcher found: Host set, Durable
// (if any) suffixed with "_HOST", a durable consumer per host, and, for a
// host found Late with neither StartSeq nor StartTime, All: its frames are
// all newer than the watcher's start, and new frames only would lose
// those stored before its consumer was made (a durable consumer that
// exists goes on where it stopped, as ever).
func (c *SourceConfig) ForHost(h FoundHost) SourceConfig {
	fc := *c
	fc.Host = h.Name
	if fc.Durable != "" {
		fc.Durable += "_" + h.Name
	}
	if h.Late && fc.StartSeq == 0 && fc.StartTime.IsZero() {
		fc.All = true
	}
	return fc
}

// Hosts returns the hosts that have frames in the stream (zero: the
// default one), sorted.
func Hosts(conn *Conn, stream string) ([]string, error) {
	if stream == "" {
		stream = DefaultStream
	}
	nc, err := conn.dial("nlmcast hosts")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return streamHosts(context.Background(), js, stream)
}

// streamHosts returns the hosts that have frames in the stream, sorted:
// the second tokens of its subjects nlmcast.HOST.STREAM.
func streamHosts(ctx context.Context, js jetstream.JetStream, stream string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("fleet: the JetStream stream %s: %w (has a publisher created it?)", stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("fleet: the subjects of %s: %w", stream, err)
	}
	seen := map[string]bool{}
	for sub := range info.State.Subjects {
		parts := strings.SplitN(sub, ".", 3)
		if len(parts) == 3 && CheckHost(parts[1]) == nil {
			seen[parts[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
