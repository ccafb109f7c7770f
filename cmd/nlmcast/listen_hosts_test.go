package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/fleet"
)

// TestListenHostsEvery: --hosts-every, how often --host all looks for new
// hosts, and only there.
func TestListenHostsEvery(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
		err  string
	}{
		{[]string{"--nats", "n", "--host", "all"}, fleet.DefaultHostsEvery, ""},
		{[]string{"--nats", "n", "--host", "all", "--hosts-every", "500ms"}, 500 * time.Millisecond, ""},
		{[]string{"--nats", "n", "--host", "a"}, 0, ""},
		{[]string{"--nats", "n", "--host", "all", "--hosts-every", "0s"}, 0, "--hosts-every"},
		{[]string{"--nats", "n", "--host", "a", "--hosts-every", "1s"}, 0, "--host all"},
		{[]string{"--hosts-every", "5s"}, 0, "--host all"},
	} {
		setup, err := listenConfig(context.Background(), tc.args, io.Discard)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err == "" && setup.hostsEvery != tc.want:
			t.Errorf("%q: --hosts-every %v, want %v", tc.args, setup.hostsEvery, tc.want)
		}
	}
}
