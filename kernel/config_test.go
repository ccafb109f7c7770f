package kernel

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   *Config
		field string // "" when valid
	}{
		{"nil", nil, ""},
		{"zero", &Config{}, ""},
		{"uevents", &Config{Family: unix.NETLINK_KOBJECT_UEVENT, Groups: []uint32{1}, Raw: true, UserGroups: []uint32{2}}, ""},
		{"all nsid", &Config{AllNSID: true, ReadBuffer: 1 << 20, Batch: 8}, ""},
		{"family", &Config{Family: 32}, "Family"},
		{"negative family", &Config{Family: -1}, "Family"},
		{"netns", &Config{NetNS: -1}, "NetNS"},
		{"read buffer", &Config{ReadBuffer: -1}, "ReadBuffer"},
		{"batch", &Config{Batch: -5}, "Batch"},
		{"all nsid elsewhere", &Config{Family: unix.NETLINK_GENERIC, AllNSID: true}, "AllNSID"},
		{"group 0", &Config{Groups: []uint32{1, 0}}, "Groups"},
	} {
		err := tc.cfg.Validate()
		var ce *ConfigError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field):
			t.Errorf("%s: got %v, want a *ConfigError for %s", tc.name, err, tc.field)
		}
	}
	if _, err := Open(&Config{Batch: -1}); !errors.As(err, new(*ConfigError)) {
		t.Errorf("Open took a bad config: %v", err)
	}
}
