package streams

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func names(ss []Stream) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return strings.Join(out, ",")
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"link"}, "link"},
		{[]string{"addr,link"}, "link,ipv4-ifaddr,ipv6-ifaddr"},
		{[]string{"route", "ipv4-route"}, "ipv4-route,ipv6-route"},
		{[]string{" LINK "}, "link"},
		{nil, strings.Join(Names(), ",")},
		{[]string{"all"}, strings.Join(Names(), ",")},
	} {
		got, err := Resolve(tc.in...)
		if err != nil || names(got) != tc.want {
			t.Errorf("Resolve(%q) = %s, %v; want %s", tc.in, names(got), err, tc.want)
		}
	}
	_, err := Resolve("link", "bogus")
	var ue *UnknownError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `"bogus"`) || !strings.Contains(err.Error(), "ipv4-ifaddr") {
		t.Errorf("unknown name error does not list the valid names: %v", err)
	}
}

func TestCatalogIsConsistent(t *testing.T) {
	seen := map[uint8]bool{}
	for _, s := range All() {
		if seen[s.ID] {
			t.Errorf("duplicate ID %d", s.ID)
		}
		seen[s.ID] = true
		if g, ok := ByGroup(s.Family, s.Group); !ok || g != s {
			t.Errorf("ByGroup(%d) = %v", s.Group, g)
		}
	}
	if len(All()) != 18 {
		t.Errorf("%d streams, want the 18 groups of ip monitor all", len(All()))
	}
}

func TestMap(t *testing.T) {
	var m Map
	link, _ := Lookup("link")
	if got := m.Addr(link, Raw).String(); got != "239.255.78.1:17802" {
		t.Errorf("link raw at %s", got)
	}
	if got := m.Addr(link, JSON).String(); got != "239.255.79.1:17803" {
		t.Errorf("link json at %s", got)
	}
	seen := map[netip.AddrPort]bool{}
	for _, s := range All() {
		for _, e := range []Encoding{Raw, JSON} {
			a := m.Addr(s, e)
			if seen[a] {
				t.Errorf("%v used twice", a)
			}
			seen[a] = true
			if s2, e2, ok := m.Stream(a); !ok || s2 != s || e2 != e {
				t.Errorf("Stream(%v) = %v %v %v", a, s2, e2, ok)
			}
		}
	}
	for _, a := range []string{"239.255.78.1:17804", "239.255.78.1:17803", "239.255.79.1:17802", "239.255.80.1:17802"} {
		if s, e, ok := m.Stream(netip.MustParseAddrPort(a)); ok {
			t.Errorf("%s maps to %s %s", a, s.Name, e)
		}
	}
	for _, bad := range []Map{
		{Base: netip.MustParseAddr("10.0.0.0")},
		{Base: netip.MustParseAddr("239.1.2.3")},
		{Base: netip.MustParseAddr("224.0.0.0")},
		{Base: netip.MustParseAddr("ff05::")},
		{Base: netip.MustParseAddr("239.1.255.0")},
		{Port: 65500},
		{Port: 80},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (Map{Base: netip.MustParseAddr("239.1.2.0"), Port: 20000}).Validate(); err != nil {
		t.Error(err)
	}
}
