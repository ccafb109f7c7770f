package fleet

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
