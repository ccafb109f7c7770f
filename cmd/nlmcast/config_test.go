package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/internal/metrics"
	"github.com/nlmcast/nlmcast/internal/tool/compare"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

func resolveStreams(t *testing.T, names ...string) []streams.Stream {
	t.Helper()
	ss, err := streams.Resolve(names...)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func anyAddrPort(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }

// defaultBridge is the config of 'nlmcast bridge' with no flags.
func defaultBridge(t *testing.T) netlinkbridge.Config {
	return netlinkbridge.Config{
		Streams:           resolveStreams(t, "all"),
		Map:               streams.Map{Base: streams.DefaultBase, Port: streams.DefaultPort},
		Encodings:         []streams.Encoding{streams.Raw, streams.JSON},
		ReadBuffer:        netlinkbridge.DefaultReadBuffer,
		Batch:             netlinkbridge.DefaultBatch,
		Heartbeat:         netlinkbridge.DefaultHeartbeat,
		ResyncInterval:    netlinkbridge.DefaultResyncInterval,
		RequestBurst:      netlinkbridge.DefaultRequestBurst,
		RequestEvery:      netlinkbridge.DefaultRequestEvery,
		TotalRequestBurst: netlinkbridge.DefaultTotalRequestBurst,
		TotalRequestEvery: netlinkbridge.DefaultTotalRequestEvery,
		AnswerRate:        netlinkbridge.DefaultAnswerRate,
		MaxSocketsPerUID:  netlinkbridge.DefaultMaxSocketsPerUID,
		HandoffAfter:      netlinkbridge.DefaultHandoffAfter,
		Sender:            &mcast.SenderConfig{Interface: "lo", Source: anyAddrPort(mcast.DefaultSourcePort)},
	}
}

func TestBridgeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want func(c *netlinkbridge.Config, s *bridgeSetup)
	}{
		{nil, func(*netlinkbridge.Config, *bridgeSetup) {}},
		{[]string{"--heartbeat", "0"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.Heartbeat, c.NoHeartbeats = 0, true }},
		{[]string{"--key", "/etc/nlmcast/keys"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.KeyFile = "/etc/nlmcast/keys" }},
		{[]string{"--heartbeat", "250ms"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.Heartbeat = 250 * time.Millisecond }},
		{[]string{"--max-sockets-per-uid", "0"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.MaxSocketsPerUID, c.NoSocketLimit = 0, true }},
		{[]string{"--max-sockets-per-uid", "40"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.MaxSocketsPerUID = 40 }},
		{[]string{"--handoff-after", "0"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.HandoffAfter, c.NoHandoff = 0, true }},
		{[]string{"--handoff-after", "5ms"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.HandoffAfter = 5 * time.Millisecond }},
		// Zero is the library's default interval, as it was the flag's.
		{[]string{"--resync-interval", "0"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.ResyncInterval = 0 }},
		{[]string{"--resync-interval", "3s"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.ResyncInterval = 3 * time.Second }},
		{[]string{"--request-burst", "2", "--request-every", "5s", "--total-request-burst", "4", "--total-request-every", "2s"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.RequestBurst, c.RequestEvery, c.TotalRequestBurst, c.TotalRequestEvery = 2, 5*time.Second, 4, 2*time.Second
		}},
		// Zero is the library's default, as for --resync-interval.
		{[]string{"--request-burst", "0", "--total-request-every", "0"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.RequestBurst, c.TotalRequestEvery = 0, 0
		}},
		{[]string{"--answer-rate", "5000"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.AnswerRate = 5000 }},
		{[]string{"--read-buffer", "0", "--batch", "0"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.ReadBuffer, c.Batch = 0, 0 }},
		{[]string{"--read-buffer", "4096", "--batch", "7"}, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.ReadBuffer, c.Batch = 4096, 7 }},
		{[]string{"--streams", "link,addr"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "link", "ipv4-ifaddr", "ipv6-ifaddr")
		}},
		{[]string{"--streams", "uevent", "--expose", "proc,conntrack=/etc/nlmcast/private.key"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "uevent", "proc", "conntrack-new", "conntrack-update", "conntrack-destroy")
			k := netlinkbridge.Access{KeyFile: "/etc/nlmcast/private.key"}
			c.Private = map[string]netlinkbridge.Access{"proc": k, "conntrack-new": k, "conntrack-update": k, "conntrack-destroy": k}
		}},
		{[]string{"--expose", "proc=/k1", "--expose", "all=/k2", "--cleartext-to-all-users", "conntrack-new"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "all", "proc", "conntrack-new")
			c.Private = map[string]netlinkbridge.Access{"proc": {KeyFile: "/k1"}, "*": {KeyFile: "/k2"}, "conntrack-new": {Cleartext: true}}
		}},
		{[]string{"--streams", "link", "--expose", "xfrm=/k", "--xfrm-keys"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "link", "xfrm")
			c.XfrmKeys = true
			c.Private = map[string]netlinkbridge.Access{}
			for _, s := range resolveStreams(t, "xfrm") {
				c.Private[s.Name] = netlinkbridge.Access{KeyFile: "/k"}
			}
		}},
		{[]string{"--streams", "link", "--expose", "link=/k"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "link")
			c.Private = map[string]netlinkbridge.Access{"link": {KeyFile: "/k"}}
		}},
		{[]string{"--encodings", "json"}, func(c *netlinkbridge.Config, s *bridgeSetup) {
			c.Encodings, s.encodings = []streams.Encoding{streams.JSON}, "json"
		}},
		{[]string{"--encodings", "json, raw"}, func(c *netlinkbridge.Config, s *bridgeSetup) {
			c.Encodings, s.encodings = []streams.Encoding{streams.JSON, streams.Raw}, "json, raw"
		}},
		{[]string{"--requests=false", "--json-always", "--all-nsid", "--cleartext-to-all-users", "all"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.NoRequests, c.JSONAlways, c.AllNSID = true, true, true
			c.Private = map[string]netlinkbridge.Access{"*": {Cleartext: true}}
		}},
		{[]string{"--segment=false", "--ttl", "255", "--source-port", "2000", "--interface", "eth9", "--allow-non-loopback"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Sender = &mcast.SenderConfig{Interface: "eth9", AllowNonLoopback: true, Source: anyAddrPort(2000), TTL: 255, NoSegmentation: true}
		}},
		{[]string{"--base", "239.1.2.0", "--port", "30000"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Map = streams.Map{Base: netip.MustParseAddr("239.1.2.0"), Port: 30000}
		}},
		{[]string{"--netns", "blue", "--expose", "all=/etc/nlmcast/blue.key", "--stats", "/run/nlmcast.json", "--log-level", "debug"}, func(c *netlinkbridge.Config, s *bridgeSetup) {
			c.Private = map[string]netlinkbridge.Access{"*": {KeyFile: "/etc/nlmcast/blue.key"}}
			s.netns, s.stats, s.level = "blue", "/run/nlmcast.json", slog.LevelDebug
		}},
		{[]string{"--user", "nlmcast"}, func(_ *netlinkbridge.Config, s *bridgeSetup) {
			s.user = "nlmcast"
		}},
		{[]string{"--metrics", "127.0.0.1:9178"}, func(_ *netlinkbridge.Config, s *bridgeSetup) {
			s.metrics = metrics.Addr{Network: "tcp", Address: "127.0.0.1:9178"}
		}},
		{[]string{"--metrics", "/run/nlmcast/metrics.sock"}, func(_ *netlinkbridge.Config, s *bridgeSetup) {
			s.metrics = metrics.Addr{Network: "unix", Address: "/run/nlmcast/metrics.sock"}
		}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			want := defaultBridge(t)
			wantSetup := bridgeSetup{cfg: &want, encodings: "raw,json", level: slog.LevelInfo, logFormat: "text"}
			tc.want(&want, &wantSetup)
			got, err := bridgeConfig(context.Background(), tc.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.cfg, &want) {
				t.Errorf("config\n got  %+v\n want %+v", *got.cfg, want)
			}
			if *got.cfg.Sender != *want.Sender {
				t.Errorf("sender\n got  %+v\n want %+v", *got.cfg.Sender, *want.Sender)
			}
			if got.values["heartbeat"] == "" || got.values["streams"] == "" {
				t.Errorf("flag values %v: heartbeat and streams missing", got.values)
			}
			got.cfg, wantSetup.cfg, got.values = nil, nil, nil
			if !reflect.DeepEqual(*got, wantSetup) {
				t.Errorf("setup %+v, want %+v", *got, wantSetup)
			}
		})
	}
}

// badFlags is a command line that must fail with a message holding every
// one of want.
type badFlags struct {
	args []string
	want []string
}

func TestBridgeFlagErrors(t *testing.T) {
	privileged := "stream proc is private: the kernel shows it only to privileged processes, and every local user can read what is sent in the clear"
	howTo := "to bridge it, seal it under a key file that only its readers can read: --expose proc=/etc/nlmcast/private.key (make one with: nlmcast keygen --group nlmcast-priv /etc/nlmcast/private.key), or send it in the clear, readable by every local user, with --cleartext-to-all-users proc"
	for _, tc := range []badFlags{
		{[]string{"link"}, []string{`unexpected argument "link": streams are chosen with --streams`}},
		{[]string{"--streams", "nosuch"}, []string{`--streams: unknown stream "nosuch"; valid streams: link,`}},
		{[]string{"--expose", "nosuch=/k"}, []string{`--expose: unknown stream "nosuch"`}},
		{[]string{"--cleartext-to-all-users", "nosuch"}, []string{`--cleartext-to-all-users: unknown stream "nosuch"`}},
		{[]string{"--streams", "proc"}, []string{"--streams: " + privileged, "; " + howTo}},
		// The old form, a stream without its readers, says what to add.
		{[]string{"--expose", "proc"}, []string{"--expose proc: say who may read it: --expose proc=KEYFILE", "nlmcast keygen --group nlmcast-priv", "--cleartext-to-all-users proc"}},
		{[]string{"--expose", "proc="}, []string{"--expose proc=: say who may read it"}},
		{[]string{"--expose", "proc=/k1", "--cleartext-to-all-users", "proc"}, []string{"--cleartext-to-all-users: stream proc is given twice, with different readers"}},
		// Exposing one private stream does not let another in by --streams.
		{[]string{"--streams", "link,proc", "--expose", "conntrack=/k"}, []string{"--streams: " + privileged, howTo}},
		{[]string{"--streams", "link,nlmtest:events"}, []string{"--streams: stream nlmtest:events is private", "--expose nlmtest:events=", "--cleartext-to-all-users nlmtest:events"}},
		{[]string{"--streams", "proc", "--encodings", "json", "--expose", "proc=/k"}, []string{"--encodings: stream proc is sealed, and sealed frames are raw: add the raw encoding"}},
		{[]string{"--expose", "xfrm-sa=/k", "--cleartext-to-all-users", "xfrm-policy", "--xfrm-keys"},
			[]string{"--xfrm-keys: keeps IPsec key material, which only a stream sealed under a key file may carry, and xfrm-policy is sent in the clear"}},
		{[]string{"--xfrm-keys"}, []string{"--xfrm-keys: no xfrm stream is bridged; expose one sealed, such as --expose xfrm=KEYFILE"}},
		{[]string{"--encodings", "xml"}, []string{`--encodings: unknown encoding "xml": use raw or json`}},
		{[]string{"--encodings", "raw,"}, []string{`--encodings: unknown encoding "": use raw or json`}},
		{[]string{"--ttl", "300"}, []string{"--ttl 300: must be from 0 to 255"}},
		{[]string{"--ttl", "-1"}, []string{"--ttl -1: must be from 0 to 255"}},
		{[]string{"--source-port", "0"}, []string{"--source-port 0: use a port from 1 to 65535"}},
		{[]string{"--source-port", "65536"}, []string{"--source-port 65536: use a port from 1 to 65535"}},
		{[]string{"--metrics", "0.0.0.0:9178"}, []string{`--metrics "0.0.0.0:9178": metrics are served on loopback only: use 127.0.0.1:9178, [::1]:9178 or a Unix socket path`}},
		{[]string{"--metrics", "metrics.sock"}, []string{`--metrics "metrics.sock": neither host:port`, "starting with / or ./"}},
		{[]string{"--heartbeat", "-1s"}, []string{"--heartbeat -1s: must not be negative"}},
		{[]string{"--resync-interval", "-5ms"}, []string{"--resync-interval -5ms: must not be negative"}},
		{[]string{"--read-buffer", "-1"}, []string{"--read-buffer -1: must not be negative"}},
		{[]string{"--request-burst", "-1"}, []string{"--request-burst -1: must not be negative"}},
		{[]string{"--answer-rate", "-1"}, []string{"--answer-rate -1: must not be negative"}},
		{[]string{"--total-request-every", "-1s"}, []string{"--total-request-every -1s: must not be negative"}},
		{[]string{"--batch", "-2"}, []string{"--batch -2: must not be negative"}},
		{[]string{"--max-sockets-per-uid", "-1"}, []string{"--max-sockets-per-uid -1: must not be negative"}},
		{[]string{"--handoff-after", "-1ms"}, []string{"--handoff-after -1ms: must not be negative"}},
		{[]string{"--all-nsid", "--streams", "link,uevent"}, []string{"--all-nsid: applies to rtnetlink streams only, not uevent"}},
		// Other namespaces' events are private to them.
		{[]string{"--all-nsid"}, []string{"--all-nsid: stream link is private: the events of every network namespace with an id in the bridged one are private",
			"every local user here can read what is sent in the clear; to bridge it, seal it under a key file", "--expose all=/etc/nlmcast/private.key", "--cleartext-to-all-users all"}},
		{[]string{"--netns", "blue"}, []string{"--netns: stream link is private: the events of another network namespace are private", "--expose all="}},
		{[]string{"--netns", "blue", "--all-nsid", "--streams", "link"}, []string{"--netns: ", "--expose all="}},
		{[]string{"--netns", "blue", "--streams", "link,uevent", "--expose", "link=/k"}, []string{"--netns: stream uevent is private"}},
		{[]string{"--log-level", "loud"}, []string{`--log-level "loud": use debug, info, warn or error`}},
		{[]string{"--base", "10.0.0.0"}, []string{"--base/--port: base 10.0.0.0: not a multicast address"}},
		{[]string{"--base", "nowhere"}, []string{`--base "nowhere": not an IPv4 address`}},
		{[]string{"--port", "80"}, []string{"--base/--port: port 80: must be 1024 or above"}},
		{[]string{"--port", "70000"}, []string{"--port 70000: not a port number"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := bridgeConfig(context.Background(), tc.args, &bytes.Buffer{})
			checkFlagError(t, err, tc.want)
		})
	}
}

func checkFlagError(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nwant it to hold %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "Config.") {
		t.Errorf("error %q names a library's field", err)
	}
}

// The flag's message keeps the library's typed error in the chain.
func TestFlagErrorsWrap(t *testing.T) {
	_, err := bridgeConfig(context.Background(), []string{"--ttl", "300"}, &bytes.Buffer{})
	if me := new(mcast.ConfigError); !errors.As(err, &me) || me.Field != "TTL" {
		t.Errorf("--ttl 300: %v, want an *mcast.ConfigError in the chain", err)
	}
	_, err = bridgeConfig(context.Background(), []string{"--streams", "proc"}, &bytes.Buffer{})
	if !errors.As(err, new(*netlinkbridge.PrivilegedError)) {
		t.Errorf("--streams proc: %v, want a *PrivilegedError in the chain", err)
	}
	_, err = bridgeConfig(context.Background(), []string{"--all-nsid"}, &bytes.Buffer{})
	if ne := new(netlinkbridge.NamespaceError); !errors.As(err, &ne) || ne.Field != "AllNSID" {
		t.Errorf("--all-nsid: %v, want a *NamespaceError in the chain", err)
	}
	_, err = listenConfig(context.Background(), []string{"--silence", "-1s"}, &bytes.Buffer{})
	if re := new(receiver.ConfigError); !errors.As(err, &re) || re.Field != "Silence" {
		t.Errorf("--silence -1s: %v, want a *receiver.ConfigError in the chain", err)
	}
}

// What New says when the request listener cannot be opened gets the flag
// that turns it off.
func TestBridgeErrorRequests(t *testing.T) {
	inUse := errors.New("address already in use")
	err := bridgeError(fmt.Errorf("rtnetlink: %w", &netlinkbridge.RequestsError{Group: netip.MustParseAddrPort("239.255.78.0:17800"), Err: inUse}))
	want := "resync requests on 239.255.78.0:17800: address already in use (turn them off with --requests=false)"
	if err.Error() != want || !errors.Is(err, inUse) {
		t.Errorf("got %q, want %q wrapping the cause", err, want)
	}
	other := errors.New("netlink: joining group 1 needs CAP_NET_ADMIN")
	if err := bridgeError(other); err != other {
		t.Errorf("another error became %v", err)
	}
}

func TestListenFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want func(c *receiver.Config, s *listenSetup)
	}{
		{nil, func(*receiver.Config, *listenSetup) {}},
		{[]string{"--silence", "0"}, func(c *receiver.Config, _ *listenSetup) { c.Silence, c.NoSilentNotices = 0, true }},
		{[]string{"--silence", "10s"}, func(c *receiver.Config, _ *listenSetup) { c.Silence = 10 * time.Second }},
		{[]string{"--raw"}, func(c *receiver.Config, _ *listenSetup) { c.Encoding = streams.Raw }},
		{[]string{"link", "--json", "addr", "--count", "5", "--resync", "--heartbeats"}, func(c *receiver.Config, s *listenSetup) {
			c.Streams = resolveStreams(t, "link", "addr")
			s.json, s.count, s.resync, s.heartbeats = true, 5, true, true
		}},
		{[]string{"--source-port", "1017", "--any-source", "--interface", "eth9", "--allow-non-loopback"}, func(c *receiver.Config, _ *listenSetup) {
			c.Mcast = &mcast.ReceiverConfig{Interface: "eth9", AllowNonLoopback: true, AnySource: true, Source: anyAddrPort(1017)}
		}},
		{[]string{"--insecure"}, func(c *receiver.Config, _ *listenSetup) { c.Insecure = true }},
		{[]string{"--port", "30000"}, func(c *receiver.Config, _ *listenSetup) { c.Map = streams.Map{Base: streams.DefaultBase, Port: 30000} }},
		{[]string{"--key", "/etc/nlmcast/keys"}, func(c *receiver.Config, _ *listenSetup) { c.KeyFile = "/etc/nlmcast/keys" }},
		{[]string{"--bridge-uid", "999"}, func(c *receiver.Config, _ *listenSetup) { c.BridgeUID = 999 }},
		// Private streams: raw, decoded here.
		{[]string{"proc", "link", "--private", "proc=/k"}, func(c *receiver.Config, s *listenSetup) {
			c.Streams, c.Private, c.Encoding, s.decode = resolveStreams(t, "proc", "link"), map[string]string{"proc": "/k"}, streams.Raw, true
		}},
		{[]string{"link", "addr", "--private", "all=/k", "--json"}, func(c *receiver.Config, s *listenSetup) {
			c.Streams, c.Encoding, s.decode, s.json = resolveStreams(t, "link", "addr"), streams.Raw, true, true
			c.Private = map[string]string{"link": "/k", "ipv4-ifaddr": "/k", "ipv6-ifaddr": "/k"}
		}},
		{[]string{"proc", "--private", "proc=/k", "--raw"}, func(c *receiver.Config, _ *listenSetup) {
			c.Streams, c.Private, c.Encoding = resolveStreams(t, "proc"), map[string]string{"proc": "/k"}, streams.Raw
		}},
		{[]string{"--log-level", "warn", "--log-format", "json"}, func(_ *receiver.Config, s *listenSetup) { s.level, s.logFormat = slog.LevelWarn, "json" }},
		{[]string{"--metrics", "[::1]:9179"}, func(_ *receiver.Config, s *listenSetup) {
			s.metrics = metrics.Addr{Network: "tcp", Address: "[::1]:9179"}
		}},
		{[]string{"--metrics", "./listen.sock"}, func(_ *receiver.Config, s *listenSetup) {
			s.metrics = metrics.Addr{Network: "unix", Address: "./listen.sock"}
		}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			want := receiver.Config{Streams: resolveStreams(t, "all"), Encoding: streams.JSON, Silence: receiver.DefaultSilence,
				Map: streams.Map{Base: streams.DefaultBase, Port: streams.DefaultPort}, Mcast: &mcast.ReceiverConfig{Interface: "lo", Source: anyAddrPort(1021)}}
			wantSetup := listenSetup{cfg: &want, logFormat: "text"}
			tc.want(&want, &wantSetup)
			got, err := listenConfig(context.Background(), tc.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.cfg, &want) {
				t.Errorf("config\n got  %+v %+v\n want %+v %+v", *got.cfg, *got.cfg.Mcast, want, *want.Mcast)
			}
			got.cfg, wantSetup.cfg = nil, nil
			if *got != wantSetup {
				t.Errorf("setup %+v, want %+v", *got, wantSetup)
			}
		})
	}
}

func TestListenFlagErrors(t *testing.T) {
	for _, tc := range []badFlags{
		{[]string{"--json", "--raw"}, []string{"--json and --raw exclude each other"}},
		{[]string{"--log-format", "xml"}, []string{`--log-format "xml": use text or json`}},
		{[]string{"nosuch"}, []string{`unknown stream "nosuch"`}},
		{[]string{"--silence", "-1s"}, []string{"--silence -1s: must not be negative"}},
		{[]string{"--source-port", "70000"}, []string{"--source-port 70000: use a port from 1 to 65535"}},
		{[]string{"--metrics", "192.0.2.1:9178"}, []string{`--metrics "192.0.2.1:9178": metrics are served on loopback only`}},
		{[]string{"--source-port", "0"}, []string{"--source-port 0: use a port from 1 to 65535"}},
		{[]string{"--base", "239.255.255.0"}, []string{"--base/--port: base 239.255.255.0: JSON groups take the next /24"}},
		{[]string{"proc", "--private", "proc"}, []string{"--private proc: want STREAMS=KEYFILE"}},
		{[]string{"link", "--private", "proc=/k"}, []string{"--private: stream proc is not listened to"}},
		{[]string{"proc", "--private", "proc=/k", "--private", "proc=/j"}, []string{"--private: stream proc is given two key files"}},
		{[]string{"proc", "--private", "nosuch=/k"}, []string{`--private: unknown stream "nosuch"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := listenConfig(context.Background(), tc.args, &bytes.Buffer{})
			checkFlagError(t, err, tc.want)
		})
	}
}

func TestCompareFlags(t *testing.T) {
	got, err := compareConfig([]string{"link", "--wait", "2s", "--duration", "1m", "--count", "9", "--generate",
		"--rounds", "3", "--interval", "0", "--json", "--source-port", "1017", "--interface", "eth9", "--insecure"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := compare.Config{Streams: resolveStreams(t, "link"), Wait: 2 * time.Second,
		Map:   streams.Map{Base: streams.DefaultBase, Port: streams.DefaultPort},
		Mcast: &mcast.ReceiverConfig{Interface: "eth9", Source: anyAddrPort(1017)}, Insecure: true}
	if !reflect.DeepEqual(got.cfg, &want) {
		t.Errorf("config %+v, want %+v", *got.cfg, want)
	}
	got.cfg = nil
	if wantSetup := (compareSetup{json: true, duration: time.Minute, count: 9, generate: true, rounds: 3}); *got != wantSetup {
		t.Errorf("setup %+v, want %+v", *got, wantSetup)
	}
	got, err = compareConfig(nil, &bytes.Buffer{})
	if err != nil || got.cfg.Wait != compare.DefaultWait || got.rounds != 2 || got.interval != 200*time.Millisecond ||
		!reflect.DeepEqual(got.cfg.Streams, resolveStreams(t, "all")) || got.cfg.Mcast.Source != anyAddrPort(1021) || got.cfg.Insecure {
		t.Errorf("defaults: %+v %+v, %v", got, got.cfg, err)
	}
}

func TestCompareFlagErrors(t *testing.T) {
	for _, tc := range []badFlags{
		{[]string{"--wait", "0"}, []string{"--wait 0s: must be positive"}},
		{[]string{"--rounds", "0"}, []string{"--duration, --count and --interval must not be negative, --rounds at least 1"}},
		{[]string{"--duration", "-1s"}, []string{"--duration, --count and --interval must not be negative"}},
		{[]string{"--source-port", "65536"}, []string{"--source-port 65536: use a port from 1 to 65535"}},
		{[]string{"link", "nosuch"}, []string{`unknown stream "nosuch"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := compareConfig(tc.args, &bytes.Buffer{})
			checkFlagError(t, err, tc.want)
		})
	}
}

func TestGroupsFlags(t *testing.T) {
	got, err := groupsConfig([]string{"addr", "--json", "--base", "239.9.9.0"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := groupsSetup{m: streams.Map{Base: netip.MustParseAddr("239.9.9.0"), Port: streams.DefaultPort},
		streams: resolveStreams(t, "addr"), json: true}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got %+v, want %+v", *got, want)
	}
	if got, err := groupsConfig(nil, &bytes.Buffer{}); err != nil || got.streams != nil || got.json {
		t.Errorf("no arguments: %+v, %v; want every stream the kernel has", got, err)
	}
	_, err = groupsConfig([]string{"nosuch"}, &bytes.Buffer{})
	checkFlagError(t, err, []string{`unknown stream "nosuch"`})
}

// Flag errors the flag package reports itself, and --help.
func TestFlagUsage(t *testing.T) {
	configs := map[string]func([]string, *bytes.Buffer) error{
		"bridge": func(a []string, w *bytes.Buffer) error {
			_, err := bridgeConfig(context.Background(), a, w)
			return err
		},
		"listen": func(a []string, w *bytes.Buffer) error {
			_, err := listenConfig(context.Background(), a, w)
			return err
		},
		"compare": func(a []string, w *bytes.Buffer) error { _, err := compareConfig(a, w); return err },
		"groups":  func(a []string, w *bytes.Buffer) error { _, err := groupsConfig(a, w); return err },
	}
	for name, parse := range configs {
		var out bytes.Buffer
		if err := parse([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "Usage: nlmcast "+name+" ") {
			t.Errorf("%s --help: %v, printed %q", name, err, out.String())
		}
		out.Reset()
		if err := parse([]string{"--bogus"}, &out); !errors.Is(err, errUsage) || !strings.Contains(out.String(), "flag provided but not defined: -bogus") {
			t.Errorf("%s --bogus: %v, printed %q", name, err, out.String())
		}
		out.Reset()
		if err := parse([]string{"--port", "x"}, &out); !errors.Is(err, errUsage) || !strings.Contains(out.String(), `invalid value "x" for flag -port`) {
			t.Errorf("%s --port x: %v, printed %q", name, err, out.String())
		}
	}
}

func TestKeygenFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want keygenSetup
		err  string
	}{
		{[]string{"/k"}, keygenSetup{path: "/k", group: "nlmcast"}, ""},
		{[]string{"--group", "wheel", "/k"}, keygenSetup{path: "/k", group: "wheel", groupSet: true}, ""},
		{[]string{"/k", "--rotate"}, keygenSetup{path: "/k", group: "nlmcast", rotate: true}, ""},
		{nil, keygenSetup{}, "exactly one FILE"},
		{[]string{"/a", "/b"}, keygenSetup{}, "exactly one FILE"},
		{[]string{"--rotate", "--group", "x", "/k"}, keygenSetup{}, "chgrp"},
	} {
		got, err := keygenConfig(tc.args, &bytes.Buffer{})
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.err)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case *got != tc.want:
			t.Errorf("%v: %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

// A receiver's refusal to trust its source port says which flag accepts
// the risk; a warning is printed as it is, escaped.
func TestReceiverErrorPortTrust(t *testing.T) {
	pe := &receiver.PortTrustError{Start: 0, Port: 1021}
	err := receiverError(fmt.Errorf("wrapped: %w", pe), listenFlagNames)
	want := "net.ipv4.ip_unprivileged_port_start is 0 in this network namespace, so any user can send from port 1021: " +
		"the source check proves nothing. Give the receiver the bridge's key (frames are then authenticated) or, knowing the risk, use --insecure"
	if err.Error() != want || !errors.As(err, new(*receiver.PortTrustError)) {
		t.Errorf("got %q, want %q wrapping the *PortTrustError", err, want)
	}
	if me := (&mcast.ConfigError{Field: "Source", Value: 1, Reason: "bad"}); receiverError(me, listenFlagNames).Error() != "--source-port 1: bad" {
		t.Errorf("a config error: %v", receiverError(me, listenFlagNames))
	}
	var out bytes.Buffer
	warn(&out, "listen", []string{"one", "two\x1b"})
	if got := out.String(); got != "nlmcast listen: warning: one\nnlmcast listen: warning: two\\x1b\n" {
		t.Errorf("warnings printed as %q", got)
	}
}

func TestMissingCapabilitiesError(t *testing.T) {
	if err := missingError(nil); err != nil {
		t.Fatalf("nothing missing: %v", err)
	}
	cfg := &netlinkbridge.Config{} // every rtnetlink stream, the socket limit on
	needs := cfg.Needs(1024).Start
	err := missingError(netlinkbridge.Missing(needs, netlinkbridge.CapNetRaw))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"missing capabilities CAP_DAC_READ_SEARCH,CAP_NET_BIND_SERVICE,CAP_SYS_PTRACE",
		"AmbientCapabilities=CAP_DAC_READ_SEARCH CAP_NET_BIND_SERVICE CAP_SYS_PTRACE",
		"CAP_NET_BIND_SERVICE: sending from the privileged source port 1021 (or --source-port 1024 or above)",
		"CAP_DAC_READ_SEARCH,CAP_SYS_PTRACE: detaching other users' sockets beyond the socket limit (reading their /proc/PID/fd, pidfd_getfd, SO_BINDTOIFINDEX) (or --max-sockets-per-uid 0)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q\nlacks %q", err, want)
		}
	}
}
