package receiver

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
	badMap := streams.Map{Base: netip.MustParseAddr("10.0.0.0")}
	for _, tc := range []struct {
		name  string
		cfg   *Config
		field string // "": valid
		text  string
	}{
		{"nil", nil, "", ""},
		{"zero", &Config{}, "", ""},
		{"set", &Config{Encoding: streams.JSON, Silence: time.Second, MaxMessage: 1 << 20, FragmentTimeout: time.Second}, "", ""},
		{"no silent notices", &Config{NoSilentNotices: true}, "", ""},
		{"silence", &Config{Silence: -time.Second}, "Silence", "receiver: Config.Silence -1s: must not be negative"},
		{"silence and off", &Config{Silence: time.Second, NoSilentNotices: true}, "Silence", "NoSilentNotices"},
		{"encoding", &Config{Encoding: 7}, "Encoding", "Encoding 7: must be streams.Raw or streams.JSON"},
		{"max message", &Config{MaxMessage: -1}, "MaxMessage", "MaxMessage -1: must not be negative"},
		{"fragment timeout", &Config{FragmentTimeout: -time.Millisecond}, "FragmentTimeout", "FragmentTimeout -1ms: must not be negative"},
		{"map", &Config{Map: badMap}, "Map", "receiver: Config.Map: base 10.0.0.0: not a multicast address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConfigError(t, tc.cfg.Validate(), "Config", tc.field, tc.text)
		})
	}
	// The socket config is checked too, and its error is mcast's.
	err := (&Config{Mcast: &mcast.ReceiverConfig{Batch: -1}}).Validate()
	var me *mcast.ConfigError
	if !errors.As(err, &me) || me.Field != "Batch" {
		t.Errorf("Mcast.Batch -1: %v, want an *mcast.ConfigError for Batch", err)
	}
}

func TestMirrorConfigValidate(t *testing.T) {
	link, _ := streams.Lookup("link")
	uevent, _ := streams.Lookup("uevent")
	for _, tc := range []struct {
		name  string
		cfg   *MirrorConfig
		field string
		text  string
	}{
		{"nil", nil, "", ""},
		{"zero", &MirrorConfig{}, "", ""},
		{"link", &MirrorConfig{Streams: []streams.Stream{link}, RequestEvery: time.Second}, "", ""},
		{"no resync", &MirrorConfig{Streams: []streams.Stream{link, uevent}}, "Streams", "MirrorConfig.Streams uevent: the bridge cannot dump"},
		{"request every", &MirrorConfig{RequestEvery: -time.Second}, "RequestEvery", "RequestEvery -1s: must not be negative"},
		{"max entries", &MirrorConfig{MaxEntries: -1}, "MaxEntries", "MaxEntries -1: must not be negative"},
		{"max bytes", &MirrorConfig{MaxBytes: -1}, "MaxBytes", "MaxBytes -1: must not be negative"},
		{"map", &MirrorConfig{Map: streams.Map{Port: 80}}, "Map", "port 80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConfigError(t, tc.cfg.Validate(), "MirrorConfig", tc.field, tc.text)
		})
	}
}

func checkConfigError(t *testing.T, err error, config, field, text string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("Validate: %v, want nil", err)
		}
		return
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Validate: %v, want a *ConfigError", err)
	}
	if ce.Config != config || ce.Field != field || !strings.Contains(err.Error(), text) {
		t.Errorf("Validate: %s.%s %q, want %s.%s and %q", ce.Config, ce.Field, err, config, field, text)
	}
}

// New and NewMirror check their config before they open anything.
func TestNewRefusesInvalidConfig(t *testing.T) {
	if _, err := New(&Config{Silence: -1}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("New: %v, want a *ConfigError", err)
	}
	uevent, _ := streams.Lookup("uevent")
	if _, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{uevent}}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("NewMirror: %v, want a *ConfigError", err)
	}
}
