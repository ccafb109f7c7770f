package receiver

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testenv"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/streams"
)

// New and NewMirror refuse to start where any user may bind the accepted
// source port, unless Insecure, and then warn; the error says why and what
// to do. The setting is faked here; TestPortTrustInNamespace reads a real one.
func TestPortTrust(t *testing.T) {
	defer func(f func() (int, error)) { portStart = f }(portStart)
	addr, _ := streams.Lookup("ipv4-ifaddr")
	errUnreadable := &fs.PathError{Op: "open", Path: "/proc/sys/net/ipv4/ip_unprivileged_port_start", Err: fs.ErrNotExist}
	for _, tc := range []struct {
		name   string
		start  int
		err    error // of reading the setting
		mc     *mcast.ReceiverConfig
		insec  bool
		refuse *PortTrustError
		warn   string // in the one warning; "": none
	}{
		{name: "default", start: 1024},
		{name: "just above", start: 1022},
		{name: "container", start: 0, refuse: &PortTrustError{Start: 0, Port: 1021}},
		{name: "at the port", start: 1021, refuse: &PortTrustError{Start: 1021, Port: 1021}},
		{name: "unprivileged port", start: 1024, mc: &mcast.ReceiverConfig{Source: netip.MustParseAddrPort("127.0.0.1:2000")},
			refuse: &PortTrustError{Start: 1024, Port: 2000}},
		{name: "privileged port", start: 1024, mc: &mcast.ReceiverConfig{Source: netip.MustParseAddrPort("127.0.0.1:1000")}},
		{name: "unreadable", err: errUnreadable, refuse: &PortTrustError{Start: -1, Port: 1021, Err: errUnreadable}},
		{name: "insecure", start: 0, insec: true,
			warn: "net.ipv4.ip_unprivileged_port_start is 0 in this network namespace, so any user can send from port 1021: " +
				"the source check proves nothing, and frames are not authenticated"},
		{name: "insecure, unreadable", err: errUnreadable, insec: true, warn: "cannot read net.ipv4.ip_unprivileged_port_start"},
		{name: "insecure where safe", start: 1024, insec: true},
		{name: "any source", start: 0, mc: &mcast.ReceiverConfig{AnySource: true}, warn: "from any sender"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			portStart = func() (int, error) { return tc.start, tc.err }
			for _, open := range []struct {
				name string
				new  func() ([]string, func(), error)
			}{
				{"New", func() ([]string, func(), error) {
					r, err := New(&Config{Streams: []streams.Stream{addr}, Map: testMap(), Mcast: tc.mc, Insecure: tc.insec})
					if err != nil {
						return nil, nil, err
					}
					return r.Warnings(), func() { r.Close() }, nil
				}},
				{"NewMirror", func() ([]string, func(), error) {
					m, err := NewMirror(&MirrorConfig{Streams: []streams.Stream{addr}, Map: testMap(), Mcast: tc.mc, Insecure: tc.insec})
					if err != nil {
						return nil, nil, err
					}
					return m.Warnings(), func() { m.Close() }, nil
				}},
			} {
				warnings, closer, err := open.new()
				if tc.refuse != nil {
					var pe *PortTrustError
					if !errors.As(err, &pe) || *pe != *tc.refuse {
						t.Fatalf("%s: %v, want %#v", open.name, err, tc.refuse)
					}
					if tc.err != nil && !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: %v does not wrap the reading's error", open.name, err)
					}
					for _, want := range []string{"the source check proves nothing", "Give the receiver the bridge's key", "set Insecure"} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: %q lacks %q", open.name, err, want)
						}
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", open.name, err)
				}
				closer()
				switch {
				case tc.warn == "" && len(warnings) != 0:
					t.Errorf("%s: warnings %q, want none", open.name, warnings)
				case tc.warn != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warn)):
					t.Errorf("%s: warnings %q, want one with %q", open.name, warnings, tc.warn)
				}
			}
		})
	}
}

// The refusal and the warning read the setting of the network namespace
// New is called in.
func TestPortTrustInNamespace(t *testing.T) {
	addr, _ := streams.Lookup("ipv4-ifaddr")
	cfg := &Config{Streams: []streams.Stream{addr}, Map: testMap()}
	testenv.InNewNetNS(t, func() error {
		for _, c := range []struct {
			start   int
			insec   bool
			refused bool
		}{{1024, false, false}, {1022, false, false}, {1021, false, true}, {0, false, true}, {0, true, false}} {
			if err := testenv.SetPortStart(c.start); err != nil {
				return err
			}
			cfg.Insecure = c.insec
			r, err := New(cfg)
			var pe *PortTrustError
			switch {
			case c.refused && (!errors.As(err, &pe) || pe.Start != c.start || pe.Port != 1021):
				return fmt.Errorf("port start %d: %v, want a refusal", c.start, err)
			case c.refused:
				continue
			case err != nil:
				return fmt.Errorf("port start %d, insecure %v: %v", c.start, c.insec, err)
			}
			r.Close()
			if w := r.Warnings(); (len(w) > 0) != c.insec {
				return fmt.Errorf("port start %d, insecure %v: warnings %q", c.start, c.insec, w)
			}
		}
		return nil
	})
}
