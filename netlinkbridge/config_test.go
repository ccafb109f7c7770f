package netlinkbridge

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

func TestConfigValidate(t *testing.T) {
	stream := func(name string) streams.Stream {
		s, ok := streams.Lookup(name)
		if !ok {
			t.Fatalf("no stream %s", name)
		}
		return s
	}
	link, ue, proc := stream("link"), stream("uevent"), stream("proc")
	odd := streams.Stream{Name: "odd", Family: 99, Group: 1}
	high := streams.Stream{Name: "high", Family: streams.FamilyRoute, Group: 256}
	for _, tc := range []struct {
		name  string
		cfg   *Config
		field string // "": valid; "privileged": a *PrivilegedError; "namespace F": a *NamespaceError for F
		text  string
	}{
		{"nil", nil, "", ""},
		{"zero", &Config{}, "", ""},
		{"set", &Config{Streams: []streams.Stream{link}, Encodings: []streams.Encoding{streams.JSON}, ReadBuffer: 1 << 20,
			Batch: 8, Heartbeat: time.Second, ResyncInterval: time.Second, AllNSID: true, Private: cleartext("*"), Sender: &mcast.SenderConfig{TTL: 1}}, "", ""},
		{"no heartbeats", &Config{NoHeartbeats: true}, "", ""},
		{"mixed families", &Config{Streams: []streams.Stream{link, ue}}, "", ""}, // a Set's
		{"exposed", &Config{Streams: []streams.Stream{link, proc}, Private: cleartext("proc")}, "", ""},
		{"sealed", &Config{Streams: []streams.Stream{link, proc}, Private: map[string]Access{"proc": {KeyFile: "/k"}}}, "", ""},
		{"all sealed", &Config{Streams: []streams.Stream{link, proc}, Private: map[string]Access{"*": {KeyFile: "/k"}}}, "", ""},
		{"a clear stream sealed", &Config{Streams: []streams.Stream{link}, Private: map[string]Access{"link": {KeyFile: "/k"}}}, "", ""},
		{"private without access", &Config{Streams: []streams.Stream{proc}, Private: map[string]Access{"proc": {}}}, "Private", "Config.Private proc: needs a KeyFile, or Cleartext"},
		{"private both", &Config{Streams: []streams.Stream{proc}, Private: map[string]Access{"proc": {KeyFile: "/k", Cleartext: true}}}, "Private", "choose one"},
		{"private not bridged", &Config{Streams: []streams.Stream{proc}, Private: map[string]Access{"proc": {KeyFile: "/k"}, "link": {KeyFile: "/k"}}}, "Private", "Config.Private link: is not in Streams"},
		{"sealed json only", &Config{Streams: []streams.Stream{proc}, Encodings: []streams.Encoding{streams.JSON}, Private: map[string]Access{"proc": {KeyFile: "/k"}}}, "Encodings", "stream proc is sealed, and sealed frames are raw: add the raw encoding"},
		{"clear json only", &Config{Streams: []streams.Stream{proc}, Encodings: []streams.Encoding{streams.JSON}, Private: cleartext("proc")}, "", ""},
		{"heartbeat", &Config{Heartbeat: -time.Second}, "Heartbeat", "netlinkbridge: Config.Heartbeat -1s: must not be negative"},
		{"heartbeat and off", &Config{Heartbeat: time.Second, NoHeartbeats: true}, "Heartbeat", "NoHeartbeats"},
		{"resync interval", &Config{ResyncInterval: -time.Millisecond}, "ResyncInterval", "ResyncInterval -1ms: must not be negative"},
		{"request burst", &Config{RequestBurst: -1}, "RequestBurst", "RequestBurst -1: must not be negative"},
		{"request every", &Config{RequestEvery: -time.Second}, "RequestEvery", "RequestEvery -1s: must not be negative"},
		{"total request burst", &Config{TotalRequestBurst: -1}, "TotalRequestBurst", "TotalRequestBurst -1: must not be negative"},
		{"total request every", &Config{TotalRequestEvery: -time.Second}, "TotalRequestEvery", "TotalRequestEvery -1s: must not be negative"},
		{"answer rate", &Config{AnswerRate: -1}, "AnswerRate", "AnswerRate -1: must not be negative"},
		{"read buffer", &Config{ReadBuffer: -1}, "ReadBuffer", "ReadBuffer -1: must not be negative"},
		{"batch", &Config{Batch: -1}, "Batch", "Batch -1: must not be negative"},
		{"socket limit", &Config{MaxSocketsPerUID: 36}, "", ""},
		{"handoff", &Config{HandoffAfter: time.Millisecond}, "", ""},
		{"no handoff", &Config{NoHandoff: true}, "", ""},
		{"negative handoff", &Config{HandoffAfter: -1}, "HandoffAfter", "HandoffAfter -1ns: must not be negative"},
		{"handoff and off", &Config{HandoffAfter: 1, NoHandoff: true}, "HandoffAfter", "NoHandoff"},
		{"no socket limit", &Config{NoSocketLimit: true}, "", ""},
		{"negative socket limit", &Config{MaxSocketsPerUID: -1}, "MaxSocketsPerUID", "MaxSocketsPerUID -1: must not be negative"},
		{"socket limit and off", &Config{MaxSocketsPerUID: 5, NoSocketLimit: true}, "MaxSocketsPerUID", "NoSocketLimit"},
		{"netns", &Config{NetNS: -1}, "NetNS", "NetNS -1: must not be negative"},
		{"netns exposed", &Config{NetNS: 3, Private: cleartext("*")}, "", ""},
		{"netns private", &Config{NetNS: 3}, "namespace NetNS", "Config.NetNS: stream link is private: the events of another network namespace are private"},
		{"netns sealed", &Config{NetNS: 3, Private: map[string]Access{"*": {KeyFile: "/k"}}}, "", ""},
		{"netns one stream sealed", &Config{NetNS: 3, Streams: []streams.Stream{link, ue}, Private: map[string]Access{"link": {KeyFile: "/k"}}}, "namespace NetNS", "stream uevent is private"},
		{"all-nsid private", &Config{Streams: []streams.Stream{link}, AllNSID: true}, "namespace AllNSID", "every local user here can read what is sent in the clear; give it a key file in Config.Private"},
		{"both private", &Config{NetNS: 3, AllNSID: true}, "namespace NetNS", "Config.NetNS"},
		{"all in the clear alone", &Config{Private: cleartext("*")}, "", ""},
		{"encoding", &Config{Encodings: []streams.Encoding{streams.Raw, 9}}, "Encodings", "Encodings 9: must be streams.Raw or streams.JSON"},
		{"map", &Config{Map: streams.Map{Base: netip.MustParseAddr("10.0.0.0")}}, "Map", "netlinkbridge: Config.Map: base 10.0.0.0: not a multicast address"},
		{"family", &Config{Streams: []streams.Stream{odd}}, "Streams", "Streams odd: netlink family 99 is not supported"},
		{"group", &Config{Streams: []streams.Stream{high}}, "Streams", "Streams high: group 256 is out of range"},
		{"all-nsid", &Config{Streams: []streams.Stream{link, ue}, AllNSID: true}, "AllNSID", "Config.AllNSID: applies to rtnetlink streams only, not uevent"},
		{"privileged", &Config{Streams: []streams.Stream{link, proc}}, "privileged", "stream proc is private"},
		{"other exposed", &Config{Streams: []streams.Stream{proc, link}, Private: cleartext("link")}, "privileged", "stream proc is private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConfigError(t, tc.cfg.Validate(), tc.field, tc.text)
		})
	}
	// The sender's config is checked too, and its error is mcast's.
	err := (&Config{Sender: &mcast.SenderConfig{TTL: 300}}).Validate()
	if me := new(mcast.ConfigError); !errors.As(err, &me) || me.Field != "TTL" {
		t.Errorf("Sender.TTL 300: %v, want an *mcast.ConfigError for TTL", err)
	}
}

func checkConfigError(t *testing.T, err error, field, text string) {
	t.Helper()
	switch field {
	case "":
		if err != nil {
			t.Fatalf("Validate: %v, want nil", err)
		}
		return
	case "privileged":
		if !errors.As(err, new(*PrivilegedError)) {
			t.Fatalf("Validate: %v, want a *PrivilegedError", err)
		}
	case "namespace NetNS", "namespace AllNSID":
		var ne *NamespaceError
		if !errors.As(err, &ne) {
			t.Fatalf("Validate: %v, want a *NamespaceError", err)
		}
		if want := strings.TrimPrefix(field, "namespace "); ne.Field != want {
			t.Errorf("Validate: NamespaceError.Field %s, want %s", ne.Field, want)
		}
	default:
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("Validate: %v, want a *ConfigError", err)
		}
		if ce.Field != field {
			t.Errorf("Validate: field %s, want %s", ce.Field, field)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, text) || strings.Contains(msg, "--") {
		t.Errorf("Validate: %q, want %q and no command-line flag", msg, text)
	}
}

// Each constructor checks the config first; a Bridge also needs one family.
func TestConstructorsValidate(t *testing.T) {
	link, _ := streams.Lookup("link")
	ue, _ := streams.Lookup("uevent")
	bad := &Config{Heartbeat: -1, Logger: quiet}
	mixed := &Config{Streams: []streams.Stream{link, ue}, Logger: quiet}
	for name, err := range map[string]error{
		"New":           second(New(bad)),
		"NewSet":        second(NewSet(bad)),
		"NewWithSource": second(NewWithSource(bad, newFakeSource(), nil, &fakeSink{})),
	} {
		if ce := new(ConfigError); !errors.As(err, &ce) || ce.Field != "Heartbeat" {
			t.Errorf("%s: %v, want a *ConfigError for Heartbeat", name, err)
		}
	}
	for name, err := range map[string]error{
		"New":           second(New(mixed)),
		"NewWithSource": second(NewWithSource(mixed, newFakeSource(), nil, &fakeSink{})),
	} {
		if ce := new(ConfigError); !errors.As(err, &ce) || ce.Field != "Streams" || !strings.Contains(err.Error(), "bridge them with a Set") {
			t.Errorf("%s, mixed families: %v", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// Heartbeat zero means the default; NoHeartbeats means none.
func TestHeartbeatDefaults(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, DefaultHeartbeat},
		{Config{Heartbeat: 20 * time.Millisecond}, 20 * time.Millisecond},
		{Config{NoHeartbeats: true}, 0},
	} {
		tc.cfg.Logger = quiet
		b, err := NewWithSource(&tc.cfg, newFakeSource(), nil, &fakeSink{})
		if err != nil {
			t.Fatal(err)
		}
		if b.heartbeat != tc.want || b.resyncInterval != DefaultResyncInterval {
			t.Errorf("%+v: heartbeat %v, resync interval %v; want %v, %v", tc.cfg, b.heartbeat, b.resyncInterval, tc.want, DefaultResyncInterval)
		}
	}
}

// cleartext is a Config.Private that sends the named streams ("*": every
// private stream) in the clear.
func cleartext(names ...string) map[string]Access {
	m := map[string]Access{}
	for _, n := range names {
		m[n] = Access{Cleartext: true}
	}
	return m
}
