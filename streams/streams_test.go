package streams

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
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
		{nil, names(Default())},
		{[]string{"all"}, names(Default())},
		{[]string{"conntrack,uevent"}, "uevent,conntrack-new,conntrack-update,conntrack-destroy"},
		{[]string{"ETHTOOL:MONITOR", "nlctrl:notify"}, "nlctrl:notify,ethtool:monitor"},
		{[]string{"VFS_DQUOT:events"}, "VFS_DQUOT:events"},
		{[]string{"wireguard:peers"}, "wireguard:peers"},
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
		if seen[s.ID] || s.ID == 0 || s.ID >= genlHashFirst {
			t.Errorf("%s: ID %d duplicate, zero (the control group) or in the hashed range", s.Name, s.ID)
		}
		seen[s.ID] = true
		if s.Family == FamilyGeneric {
			if s.Group != 0 || s.Name != s.GenlFamily+":"+s.GenlGroup {
				t.Errorf("%s: generic netlink streams are named FAMILY:GROUP and resolved at run time", s.Name)
			}
			if g, ok := Lookup(s.Name); !ok || g != s {
				t.Errorf("Lookup(%s) = %v", s.Name, g)
			}
			continue
		}
		if g, ok := ByGroup(s.Family, s.Group); !ok || g != s {
			t.Errorf("ByGroup(%d, %d) = %v", s.Family, s.Group, g)
		}
	}
	if n := len(Default()); n != 18 {
		t.Errorf("%d default streams, want the 18 groups of ip monitor all", n)
	}
	for _, s := range Default() {
		if s.Privileged || s.Family != FamilyRoute {
			t.Errorf("default stream %s is privileged or not rtnetlink", s.Name)
		}
	}
	for _, name := range []string{"proc", "conntrack-new", "conntrack-update", "conntrack-destroy", "mptcp_pm:mptcp_pm_events"} {
		if s, ok := Lookup(name); !ok || !s.Privileged {
			t.Errorf("%s must be privileged", name)
		}
	}
}

func TestGenlNames(t *testing.T) {
	// The hashed index is part of the protocol: PROTOCOL.md gives these.
	for _, tc := range []struct {
		family, group string
		id            uint8
	}{
		{"wireguard", "peers", 250},
		{"myfam", "events", 198},
		{"ovs_vport", "ovs_vport", 229},
	} {
		s := Genl(tc.family, tc.group)
		if s.ID != tc.id || s.ID < 128 || s.ID > 254 || !s.Privileged || s.Family != FamilyGeneric {
			t.Errorf("Genl(%s, %s) = %+v", tc.family, tc.group, s)
		}
	}
	if got := GenlID("a", "b"); got != GenlID("a", "b") {
		t.Error("GenlID is not deterministic")
	}
	// A catalog group keeps its catalog ID and privilege.
	if s := Genl("ethtool", "monitor"); s.ID != 65 || s.Privileged {
		t.Errorf("Genl(ethtool, monitor) = %+v", s)
	}
	for _, bad := range []string{"nocolon", ":group", "family:", "toolongfamilyname16:g", "a:b:c"} {
		if _, err := Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) accepted", bad)
		}
	}
	// Find two names that collide and check Resolve refuses them.
	seen := map[uint8]string{}
	for i := 0; ; i++ {
		g := fmt.Sprintf("g%d", i)
		id := GenlID("fam", g)
		if other, ok := seen[id]; ok {
			_, err := Resolve("fam:"+other, "fam:"+g)
			var ce *CollisionError
			if !errors.As(err, &ce) {
				t.Errorf("colliding fam:%s and fam:%s: %v", other, g, err)
			}
			break
		}
		seen[id] = g
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

// The catalog is ordered by ID, and IDs are unique.
func TestCatalogOrderedByID(t *testing.T) {
	all := All()
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Errorf("%s (ID %d) after %s (ID %d)", all[i].Name, all[i].ID, all[i-1].Name, all[i-1].ID)
		}
	}
}

// PROTOCOL.md's tables give every catalog stream outside generic netlink
// its ID, and nothing else.
func TestProtocolDocIDs(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| ([a-z][a-z0-9-]*) \| (\d+)\b`)
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		id, _ := strconv.Atoi(m[2])
		documented[m[1]] = id
	}
	for _, s := range All() {
		if s.Family == FamilyGeneric {
			continue
		}
		if id, ok := documented[s.Name]; !ok || id != int(s.ID) {
			t.Errorf("PROTOCOL.md gives %s ID %d (listed: %v), the catalog %d", s.Name, id, ok, s.ID)
		}
		delete(documented, s.Name)
	}
	for name, id := range documented {
		if _, ok := Lookup(name); !ok && name != "stream" {
			t.Errorf("PROTOCOL.md lists %s (ID %d), which the catalog does not have", name, id)
		}
	}
}
