package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
)

// Events of a peer namespace (a bridge with --all-nsid) carry its id in
// every output of listen: the line, the raw line and --json; the bridged
// namespace's events carry none.
func TestListenPrintsNSID(t *testing.T) {
	link, _ := streams.Lookup("link")
	msg := []byte{0x20, 0, 0, 0, 0x10, 0}
	header := func(flags frame.Flags, nsid int32) frame.Header {
		return frame.Header{Kind: frame.KindEvent, Flags: flags, NSID: nsid, Group: link.Group, Epoch: 5, Seq: 7, Time: time.Now().UnixNano()}
	}
	jsonEvent := func(h frame.Header) *receiver.Event {
		payload := frame.AppendJSON(nil, h, link.Name, "new link 7: eth0", []byte(`{"type":"RTM_NEWLINK"}`))
		f, err := frame.ParseJSON(payload)
		if err != nil {
			t.Fatal(err)
		}
		fh, err := f.Header()
		if err != nil {
			t.Fatal(err)
		}
		return &receiver.Event{Stream: link, Encoding: streams.JSON, Header: fh, Payload: payload, JSON: f}
	}
	rawEvent := func(h frame.Header) *receiver.Event {
		return &receiver.Event{Stream: link, Encoding: streams.Raw, Header: h, Payload: msg}
	}
	print := func(ev *receiver.Event, asJSON bool) string {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		printEvent(w, ev, asJSON, nil)
		w.Flush()
		return out.String()
	}
	for _, tc := range []struct {
		name   string
		ev     *receiver.Event
		asJSON bool
		want   string // "" for no nsid at all
	}{
		{"line", jsonEvent(header(frame.FlagNSID, 42)), false, "#7 nsid 42 new link 7: eth0\n"},
		{"line, state", jsonEvent(header(frame.FlagNSID|frame.FlagDump, -3)), false, "#7 nsid -3 state new link 7: eth0\n"},
		{"line, own", jsonEvent(header(0, 0)), false, ""},
		{"raw", rawEvent(header(frame.FlagNSID, 42)), false, " nsid 42 event len 6 200000001000\n"},
		{"raw, own", rawEvent(header(0, 0)), false, ""},
		{"json", jsonEvent(header(frame.FlagNSID, 42)), true, `"nsid":42`},
		{"json, own", jsonEvent(header(0, 0)), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := print(tc.ev, tc.asJSON)
			switch {
			case tc.want == "" && strings.Contains(got, "nsid"):
				t.Errorf("printed %q, want no nsid", got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("printed %q, want it to hold %q", got, tc.want)
			}
			if tc.asJSON {
				f, err := frame.ParseJSON([]byte(got))
				if err != nil {
					t.Fatalf("printed %q: %v", got, err)
				}
				if has := f.NSID != nil; has != (tc.want != "") || has && *f.NSID != 42 {
					t.Errorf("printed %q: nsid %v", got, f.NSID)
				}
			}
		})
	}
}
