package mcast

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestSenderConfigValidate(t *testing.T) {
	port := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, p) }
	for _, tc := range []struct {
		name  string
		cfg   *SenderConfig
		field string // "": valid
		text  string
	}{
		{"nil", nil, "", ""},
		{"zero", &SenderConfig{}, "", ""},
		{"ttl 255", &SenderConfig{TTL: 255}, "", ""},
		{"ephemeral", &SenderConfig{EphemeralPort: true, Source: netip.MustParseAddrPort("127.0.0.1:0")}, "", ""},
		{"port", &SenderConfig{Source: port(5000), WriteBuffer: 1 << 20}, "", ""},
		{"ttl 256", &SenderConfig{TTL: 256}, "TTL", "mcast: SenderConfig.TTL 256: must be from 0 to 255"},
		{"ttl -1", &SenderConfig{TTL: -1}, "TTL", "TTL -1: must be from 0 to 255"},
		{"write buffer", &SenderConfig{WriteBuffer: -1}, "WriteBuffer", "WriteBuffer -1: must not be negative"},
		{"ipv6 source", &SenderConfig{Source: netip.MustParseAddrPort("[::1]:1021")}, "Source", "must be an IPv4 address"},
		{"ephemeral with port", &SenderConfig{EphemeralPort: true, Source: port(1021)}, "Source", "EphemeralPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConfigError(t, tc.cfg.Validate(), "SenderConfig", tc.field, tc.text)
		})
	}
}

func TestReceiverConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   *ReceiverConfig
		field string
		text  string
	}{
		{"nil", nil, "", ""},
		{"zero", &ReceiverConfig{}, "", ""},
		{"set", &ReceiverConfig{ReadBuffer: 4096, Batch: 1, AnySource: true, Source: netip.MustParseAddrPort("127.0.0.1:1021")}, "", ""},
		{"read buffer", &ReceiverConfig{ReadBuffer: -1}, "ReadBuffer", "mcast: ReceiverConfig.ReadBuffer -1: must not be negative"},
		{"batch", &ReceiverConfig{Batch: -5}, "Batch", "Batch -5: must not be negative"},
		{"ipv6 source", &ReceiverConfig{Source: netip.MustParseAddrPort("[::1]:0")}, "Source", "must be an IPv4 address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConfigError(t, tc.cfg.Validate(), "ReceiverConfig", tc.field, tc.text)
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

// The constructors check the config before they open anything.
func TestNewRefusesInvalidConfig(t *testing.T) {
	if _, err := NewSender(&SenderConfig{TTL: 300}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("NewSender: %v, want a *ConfigError", err)
	}
	if _, err := NewReceiver(&ReceiverConfig{Batch: -1}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("NewReceiver: %v, want a *ConfigError", err)
	}
}
