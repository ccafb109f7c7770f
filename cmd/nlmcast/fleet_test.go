package main

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/fleet"
	"github.com/nlmcast/nlmcast/streams"
)

func TestPublishConfig(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		check func(*fleet.PublisherConfig) bool
		err   string // "" for none
	}{
		{[]string{"--nats", "nats://n:4222"}, func(c *fleet.PublisherConfig) bool {
			return c.Conn.URL == "nats://n:4222" && c.Host == "" && c.Stream == fleet.DefaultStream && c.BufferBytes == fleet.DefaultBufferBytes && len(c.Streams) == len(streams.Default())
		}, ""},
		{[]string{"--nats", "n", "--host", "web-1", "--buffer-bytes", "1000", "--replicas", "3", "link"}, func(c *fleet.PublisherConfig) bool {
			return c.Host == "web-1" && c.BufferBytes == 1000 && c.Replicas == 3 && len(c.Streams) == 1 && c.Streams[0].Name == "link"
		}, ""},
		{[]string{"--nats", "n", "--nats-user", "u", "--nats-password", "p", "--nats-creds", "c", "--nats-ca", "ca"}, func(c *fleet.PublisherConfig) bool {
			return c.Conn.User == "u" && c.Conn.Password == "p" && c.Conn.CredsFile == "c" && c.Conn.CAFile == "ca"
		}, ""},
		{[]string{"--host", "a"}, nil, "--nats URL is required"},
		{[]string{"--nats", "n", "--host", "a.b"}, nil, "--host"},
		{[]string{"--nats", "n", "--buffer-bytes", "-1"}, nil, "--buffer-bytes"},
		{[]string{"--nats", "n", "--nats-cert", "c"}, nil, "--nats-cert"},
	} {
		setup, err := publishConfig(context.Background(), tc.args, io.Discard)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err == "" && !tc.check(setup.cfg):
			t.Errorf("%q: config %+v", tc.args, setup.cfg)
		}
	}
}

func TestListenNATSConfig(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		check func(*listenSetup) bool
		err   string
	}{
		{[]string{"--nats", "n", "--host", "a", "link"}, func(s *listenSetup) bool {
			return s.fleet != nil && s.fleet.Host == "a" && s.cfg.Mcast == nil && s.cfg.Encoding == streams.Raw && s.decode &&
				s.fleet.StartSeq == 0 && !s.fleet.All && s.fleet.StartTime.IsZero()
		}, ""},
		{[]string{"--nats", "n", "--host", "a", "--since", "42", "--durable", "ops"}, func(s *listenSetup) bool {
			return s.fleet.StartSeq == 42 && s.fleet.Durable == "ops"
		}, ""},
		{[]string{"--nats", "n", "--host", "a", "--since", "all", "--raw"}, func(s *listenSetup) bool { return s.fleet.All && !s.decode }, ""},
		{[]string{"--nats", "n", "--host", "a", "--since", "2026-01-02T03:04:05Z"}, func(s *listenSetup) bool {
			return s.fleet.StartTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		}, ""},
		{[]string{"--nats", "n", "--host", "a", "--since", "10m"}, func(s *listenSetup) bool {
			return time.Since(s.fleet.StartTime) > 9*time.Minute
		}, ""},
		{[]string{"link"}, func(s *listenSetup) bool { return s.fleet == nil && s.cfg.Mcast != nil }, ""},
		{[]string{"--nats", "n"}, nil, "--host"},
		{[]string{"--host", "a"}, nil, "give --nats URL too"},
		{[]string{"--nats", "n", "--host", "a", "--since", "yesterday"}, nil, "--since"},
		{[]string{"--nats", "n", "--host", "a", "--resync"}, func(s *listenSetup) bool { return s.resync && s.fleet.Host == "a" }, ""},
		{[]string{"--nats", "n", "--host", "all", "--resync"}, func(s *listenSetup) bool { return s.resync && s.fleet.Host == "all" }, ""},
	} {
		setup, err := listenConfig(context.Background(), tc.args, io.Discard)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err == "" && !tc.check(setup):
			t.Errorf("%q: setup %+v, fleet %+v", tc.args, setup, setup.fleet)
		}
	}
}

func TestRelayConfig(t *testing.T) {
	cfg, _, _, err := relayConfig(context.Background(), []string{"--nats", "n", "--host", "a", "--base", "239.255.80.0", "link"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Map.Base != netip.MustParseAddr("239.255.80.0") || cfg.Sender.Source.Port() != 1022 || cfg.Source.Host != "a" || len(cfg.Streams) != 1 {
		t.Errorf("config %+v", cfg)
	}
	for _, args := range [][]string{
		{"--host", "a"},
		{"--nats", "n"},
		{"--nats", "n", "--host", "a", "--source-port", "1021"},
	} {
		if _, _, _, err := relayConfig(context.Background(), args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
