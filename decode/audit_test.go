package decode

import (
	"encoding/hex"
	"testing"

	"github.com/nlmcast/nlmcast/internal/testmsg"
)

// capturedAudit is the record this kernel (6.18, audit disabled, no
// auditd) multicast to AUDIT_NLGRP_READLOG when root sent it an
// AUDIT_USER_AVC message "nlmcast-audit-test 1234".
const capturedAudit = "75000000530400000000000000000000617564697428313739363032313836382e3637353a32293a207069643d3232343435207569643d3020617569643d34323934393637323935207365733d34323934393637323935206d73673d276e6c6d636173742d61756469742d74657374203132333427"

// TestAudit compares Audit's whole Result for each record with
// testdata/golden/audit-NAME.json. Records other than the captured one
// are as auditd's audit.log shows them.
func TestAudit(t *testing.T) {
	user, err := hex.DecodeString(capturedAudit)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(typ uint16, text string) []byte { return testmsg.Nlmsg(typ, []byte(text)) }
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"user-avc", user},
		{"syscall", rec(1300, `audit(1700000000.123:4567): arch=c000003e syscall=59 success=yes exit=0 a0=55d0 items=2 ppid=1 pid=42 auid=1000 uid=0 comm="sh" exe="/usr/bin/dash" key=(null)`+"\x00")},
		{"proctitle", rec(1327, "audit(1700000000.123:4567): proctitle=2F62696E2F7368")},
		{"eoe", rec(1320, "audit(1700000000.123:4567): ")},
		{"unknown-type", rec(2999, "audit(1700000000.001:1): x=1 lonely")},
		{"no-header", rec(1305, "op=set audit_enabled=1")},
		{"bad-header", rec(1305, "audit(17x.1:2): op=set")},
		{"unclosed-quote", rec(1107, `audit(1700000000.000:9): msg='half a=b`)},
		{"not-utf8", rec(1107, "audit(1700000000.000:9): comm=\xff\xfe")},
		{"malformed", []byte{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[AuditEvent](t, "audit-"+tc.name, Audit(tc.msg))
		})
	}
}

// TestAuditFields checks the captured record field by field.
func TestAuditFields(t *testing.T) {
	user, _ := hex.DecodeString(capturedAudit)
	ev := decodeInto[AuditEvent](t, Audit(user))
	want := []AuditField{{"pid", "22445"}, {"uid", "0"}, {"auid", "4294967295"}, {"ses", "4294967295"}, {"msg", "nlmcast-audit-test 1234"}}
	if ev.Type != 1107 || ev.TypeName != "USER_AVC" || ev.Serial != 2 || ev.EventID != "1796021868.675:2" ||
		ev.Time != "2026-11-30T06:57:48.675Z" || len(ev.Fields) != len(want) {
		t.Fatalf("%+v", ev)
	}
	for i := range want {
		if ev.Fields[i] != want[i] {
			t.Errorf("field %d: %+v, want %+v", i, ev.Fields[i], want[i])
		}
	}
}
