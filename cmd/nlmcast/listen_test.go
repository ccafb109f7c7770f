package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/decode"
	"github.com/nlmcast/nlmcast/frame"
	"github.com/nlmcast/nlmcast/internal/testmsg"
	"github.com/nlmcast/nlmcast/receiver"
	"github.com/nlmcast/nlmcast/streams"
	"golang.org/x/sys/unix"
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

// An event of a private stream comes raw (sealed frames are raw) and is
// decoded here: the same line as a JSON frame's, and with --json the very
// JSON frame the bridge would send, the nsid kept and the seal flag not.
func TestListenDecodesPrivateStreams(t *testing.T) {
	link, _ := streams.Lookup("link")
	body := make([]byte, 16) // ifinfomsg of index 7
	body[4] = 7
	msg := testmsg.Nlmsg(unix.RTM_NEWLINK, body)
	want := decode.Route(msg, nil)
	h := frame.Header{Kind: frame.KindEvent, Flags: frame.FlagSealed | frame.FlagNSID, NSID: 3, Group: link.Group, Epoch: 5, Seq: 7, Time: time.Now().UnixNano(), PayloadLen: uint32(len(msg))}
	ev := &receiver.Event{Stream: link, Encoding: streams.Raw, Header: h, Payload: msg}
	print := func(asJSON bool) string {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		printDecoded(w, ev, asJSON, nil)
		w.Flush()
		return out.String()
	}
	line := print(false)
	if !strings.HasSuffix(line, " #7 nsid 3 "+want.Summary+"\n") || !strings.HasPrefix(line, "[link] ") {
		t.Errorf("line %q, want the summary %q with the nsid", line, want.Summary)
	}
	js := print(true)
	f, err := frame.ParseJSON([]byte(js))
	if err != nil {
		t.Fatalf("--json printed %q: %v", js, err)
	}
	if f.Summary != want.Summary || f.Stream != "link" || f.Seq != 7 || f.NSID == nil || *f.NSID != 3 || !bytes.Contains([]byte(js), want.Event) {
		t.Errorf("--json printed %s", js)
	}
}

// A raw goodbye says whether the bridge stopped or only dropped the stream
// (frame.FlagDropped, a reload), and the JSON one has its own summary.
func TestListenPrintsDroppedGoodbye(t *testing.T) {
	link, _ := streams.Lookup("link")
	print := func(flags frame.Flags) string {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		h := frame.Header{Kind: frame.KindGoodbye, Flags: flags, Group: link.Group, Epoch: 5, Seq: 7, Time: time.Now().UnixNano()}
		printEvent(w, &receiver.Event{Stream: link, Encoding: streams.Raw, Header: h}, false, nil)
		w.Flush()
		return out.String()
	}
	if got := print(frame.FlagDropped); !strings.Contains(got, "#7 -- goodbye: stream dropped, the bridge goes on (epoch 0000000000000005)") {
		t.Errorf("dropped stream's goodbye printed %q", got)
	}
	if got := print(0); !strings.Contains(got, "#7 -- goodbye (epoch 0000000000000005)") {
		t.Errorf("goodbye printed %q", got)
	}
}
