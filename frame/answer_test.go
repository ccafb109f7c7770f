package frame

import (
	"encoding/binary"
	"testing"
)

func TestAnswerFramesRoundTrip(t *testing.T) {
	h := Header{Kind: KindEvent, Flags: FlagDump | FlagAnswer, Family: 0, Group: 7, Epoch: 0x0123456789abcdef, Seq: 42, Time: 1e18}
	got, _, err := Parse(Append(nil, h, []byte{1, 2, 3}))
	if err != nil || got.Flags != FlagDump|FlagAnswer || got.Seq != 42 {
		t.Fatalf("raw: %+v %v", got, err)
	}
	f, err := ParseJSON(AppendJSON(nil, h, "ipv4-route", "s", []byte(`{}`)))
	if err != nil {
		t.Fatal(err)
	}
	if jh, _ := f.Header(); jh.Flags != FlagDump|FlagAnswer || !f.Answer || f.Count != nil {
		t.Fatalf("JSON event: %+v %+v", jh, f)
	}
	end := AppendJSONAnswerEnd(nil, Header{Kind: KindResyncEnd, Group: 7, Epoch: 1, Seq: 42, Time: 1e18}, "ipv4-route", "done", 100000)
	f, err = ParseJSON(end)
	if err != nil {
		t.Fatalf("%s: %v", end, err)
	}
	if jh, _ := f.Header(); jh.Kind != KindResyncEnd || jh.Flags != FlagAnswer || f.Count == nil || *f.Count != 100000 || jh.Seq != 42 {
		t.Fatalf("JSON end: %+v %+v", jh, f)
	}
	// The raw resync-end of an answer carries the count as its payload.
	var count [AnswerEndLen]byte
	binary.BigEndian.PutUint64(count[:], 100000)
	got, p, err := Parse(Append(nil, Header{Kind: KindResyncEnd, Flags: FlagAnswer}, count[:]))
	if err != nil || got.PayloadLen != AnswerEndLen || binary.BigEndian.Uint64(p) != 100000 {
		t.Fatalf("raw end: %+v %x %v", got, p, err)
	}
}
