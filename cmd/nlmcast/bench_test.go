package main

import (
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/tool/bench"
)

// nlmcast bench's flags onto bench.Config, and the errors of bad ones.
func TestBenchConfig(t *testing.T) {
	with := func(f func(*bench.Config)) bench.Config {
		c := bench.DefaultConfig()
		f(&c)
		return c
	}
	for _, c := range []struct {
		args    string
		want    bench.Config
		out     benchOutput
		wantErr string
	}{
		{"", bench.DefaultConfig(), benchOutput{}, ""},
		{"--receivers 2,4 --events 500 --rate 1000 --batch 8 --latency-events 0 --burst 0 --no-ip-monitor --no-ceiling " +
			"--receiver-buffer 65536 --bridge-nice -5 --ways 2 --idle-sockets 2000 --no-socket-limit --no-handoff --json",
			with(func(c *bench.Config) {
				c.Receivers, c.Events, c.Rate, c.Batch, c.LatencyEvents, c.Burst = []int{2, 4}, 500, 1000, 8, 0, 0
				c.NoIPMonitor, c.NoCeiling, c.ReceiverBuffer, c.BridgeNice, c.Ways = true, true, 65536, -5, 2
				c.IdleSockets, c.NoSocketLimit, c.NoHandoff = 2000, true, true
			}), benchOutput{json: true}, ""},
		{"--latency-rate 100 --latency-events 9 --plot x.svg",
			with(func(c *bench.Config) { c.LatencyRate, c.LatencyEvents = 100, 9 }), benchOutput{plot: "x.svg"}, ""},
		{"--latency-events 0 --latency-rate 0", with(func(c *bench.Config) { c.LatencyRate, c.LatencyEvents = 0, 0 }), benchOutput{}, ""},
		{"--latency-rates 20,2.5 --latency-rounds 3 --latency-time 4s",
			with(func(c *bench.Config) {
				c.LatencyRates, c.LatencyRounds, c.LatencyTime = []float64{20, 2.5}, 3, 4*time.Second
			}), benchOutput{}, ""},
		{"--latency-receivers 1,8 --latency-json",
			with(func(c *bench.Config) { c.LatencyReceivers, c.LatencyJSON = []int{1, 8}, true }), benchOutput{}, ""},
		{"--latency-receivers 8", with(func(c *bench.Config) { c.LatencyReceivers = []int{8} }), benchOutput{}, ""},
		{"--no-go-relay", with(func(c *bench.Config) { c.NoGoRelay = true }), benchOutput{}, ""},
		{"--no-relay-again", with(func(c *bench.Config) { c.NoRelayAgain = true }), benchOutput{}, ""},
		{"--latency-receivers 0", bench.Config{}, benchOutput{}, `--latency-receivers "0": want counts from 1 to 256, like 1,8`},
		{"--latency-receivers 1,-8", bench.Config{}, benchOutput{}, `--latency-receivers "1,-8": want counts from 1 to 256, like 1,8`},
		{"--latency-receivers 257", bench.Config{}, benchOutput{}, `--latency-receivers "257": want counts from 1 to 256, like 1,8`},
		{"--latency-receivers 1,x", bench.Config{}, benchOutput{}, `--latency-receivers "1,x": want counts from 1 to 256, like 1,8`},
		{"--latency-receivers=", bench.Config{}, benchOutput{}, `--latency-receivers "": want counts from 1 to 256, like 1,8`},
		{"--latency-json=maybe", bench.Config{}, benchOutput{}, errUsage.Error()}, // the flag package says why, on stderr
		// No rows: their receivers are not checked, as their rounds are not.
		{"--latency-rates= --latency-receivers 0", with(func(c *bench.Config) { c.LatencyRates, c.LatencyReceivers = nil, []int{0} }), benchOutput{}, ""},
		{"--no-fleet --nats-server /opt/nats/bin/nats-server",
			with(func(c *bench.Config) { c.NoFleet, c.NATSServer = true, "/opt/nats/bin/nats-server" }), benchOutput{}, ""},
		{"--latency-rates=", with(func(c *bench.Config) { c.LatencyRates = nil }), benchOutput{}, ""},
		{"--latency-rates 20,x", bench.Config{}, benchOutput{}, `--latency-rates "20,x": want rates in events/s, like 20,200,2000`},
		{"--latency-rates 0", bench.Config{}, benchOutput{}, "--latency-rates 0: each must be positive"},
		{"--latency-rounds 0", bench.Config{}, benchOutput{}, "--latency-rounds 0: use 1 to 100"},
		{"--latency-time 0s", bench.Config{}, benchOutput{}, "--latency-time 0s: must be positive"},
		{"--events 0", bench.Config{}, benchOutput{}, "--events 0: must be positive"},
		{"--receivers 0", bench.Config{}, benchOutput{}, `--receivers "0": want counts from 1 to 256, like 1,8,32`},
		{"--receivers 1,x", bench.Config{}, benchOutput{}, `--receivers "1,x": want counts from 1 to 256, like 1,8,32`},
		{"--rate -1", bench.Config{}, benchOutput{}, "--rate -1: must not be negative"},
		{"--latency-rate 0", bench.Config{}, benchOutput{}, "--latency-rate 0: must be positive"},
		{"--batch 5000", bench.Config{}, benchOutput{}, "--batch 5000: use 1 to 4096"},
		{"--bridge-nice 20", bench.Config{}, benchOutput{}, "--bridge-nice 20: use -20 to 19"},
		{"--burst -1", bench.Config{}, benchOutput{}, "--burst -1: must not be negative"},
		{"--latency-events -1", bench.Config{}, benchOutput{}, "--latency-events -1: must not be negative"},
		{"--receiver-buffer -1", bench.Config{}, benchOutput{}, "--receiver-buffer -1: must not be negative"},
		{"--idle-sockets -1", bench.Config{}, benchOutput{}, "--idle-sockets -1: use 0 to 10000"},
		{"--ways 300", bench.Config{}, benchOutput{}, "--ways 300: use 1 to 256 receivers, or 0 to skip the ways runs"},
		{"--plot x.svg --latency-events 0", bench.Config{}, benchOutput{}, "--plot needs the latency run (--latency-events above 0)"},
		{"extra", bench.Config{}, benchOutput{}, `unexpected argument "extra"`},
	} {
		cfg, out, err := benchConfig(strings.Fields(c.args), io.Discard)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%q: error %v, want %q", c.args, err, c.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(cfg, c.want) || out != c.out {
			t.Errorf("%q: %+v %+v %v\nwant %+v %+v", c.args, cfg, out, err, c.want, c.out)
		}
	}
}

// bench-relay takes relay.c's command line, and says what is wrong with a
// bad one before it opens anything.
func TestBenchRelayArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "want BASE PORT GROUP..."},
		{[]string{"239.255.77.0", "17991"}, "want BASE PORT GROUP..."},
		{[]string{"nowhere", "17991", "5"}, "base"},
		{[]string{"239.255.77.0", "70000", "5"}, "port"},
		{[]string{"239.255.77.0", "17991", "five"}, "group"},
		{[]string{"ff02::1", "17991", "5"}, "an IPv4 base"},
	} {
		err := runBenchRelay(context.Background(), c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench-relay %q: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
