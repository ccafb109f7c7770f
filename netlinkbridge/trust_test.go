package netlinkbridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/streams"
)

// Where any user may bind the bridge's source port, a Set and a lone
// Bridge warn at start, and the Set's stats report says so; elsewhere,
// nothing. Each reads the setting of the namespace it sends from.
func TestPortTrustWarning(t *testing.T) {
	link, _ := streams.Lookup("link")
	for _, c := range []struct {
		start int
		warn  string // "": none
	}{
		{1024, ""},
		{1022, ""},
		{1021, "net.ipv4.ip_unprivileged_port_start is 1021 in this network namespace, so any user can send from the bridge's source port 1021"},
		{0, "net.ipv4.ip_unprivileged_port_start is 0 in this network namespace, so any user can send from the bridge's source port 1021"},
	} {
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
		var set *Set
		var b *Bridge
		testenv.InNewNetNS(t, func() (err error) {
			if err := testenv.SetPortStart(c.start); err != nil {
				return err
			}
			cfg := &Config{Streams: []streams.Stream{link}, NoHeartbeats: true, NoRequests: true, Logger: log}
			if set, err = NewSet(cfg); err != nil {
				return err
			}
			defer set.Close()
			if err := set.Close(); err != nil { // frees the port for the lone bridge
				return err
			}
			if b, err = New(cfg); err != nil {
				return err
			}
			return b.Close()
		})
		report, err := json.Marshal(set.StatsReport())
		if err != nil {
			t.Fatal(err)
		}
		if c.warn == "" {
			if logged.Len() != 0 || len(set.Warnings())+len(b.Warnings()) != 0 || bytes.Contains(report, []byte(`"warnings"`)) {
				t.Errorf("port start %d: warned %q, %q; logged %s; report %s", c.start, set.Warnings(), b.Warnings(), logged.String(), report)
			}
			continue
		}
		for what, ws := range map[string][]string{"set": set.Warnings(), "bridge": b.Warnings()} {
			if len(ws) != 1 || !strings.Contains(ws[0], c.warn) || !strings.Contains(ws[0], "receivers' source check proves nothing") {
				t.Errorf("port start %d: %s warnings %q, want one with %q", c.start, what, ws, c.warn)
			}
		}
		if n := strings.Count(logged.String(), "level=WARN msg=\""+c.warn); n != 2 { // the set's and the bridge's
			t.Errorf("port start %d: logged %d warnings, want 2:\n%s", c.start, n, logged.String())
		}
		var got struct{ Warnings []string }
		if err := json.Unmarshal(report, &got); err != nil || fmt.Sprint(got.Warnings) != fmt.Sprint(set.Warnings()) {
			t.Errorf("port start %d: the report's warnings %q, want %q (%v)", c.start, got.Warnings, set.Warnings(), err)
		}
	}
}
