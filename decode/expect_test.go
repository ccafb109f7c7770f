package decode

import (
	"encoding/hex"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/testmsg"
)

// capturedExp are the messages this kernel (6.18) sent to
// NFNLGRP_CONNTRACK_EXP_NEW and _DESTROY in a fresh namespace, read with a
// plain netlink socket, as an FTP client on 127.0.0.1 sent "PORT
// 127,0,0,1,19,137" over a connection an nft rule gave the ftp helper
// (ct helper set), and then conntrack -F expect ran. The helper set the
// expectation up twice (as the command passed output, then input on lo),
// the second replacing the first: new, destroy, new, destroy.
var capturedExp = []struct{ name, hex string }{
	{"new", "d8000000000200060000000000000000020000003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200000000000600030013890000340003801400018008000100ffffffff08000200ffffffff1c0002800500010006000000060002000000000006000300ffff00003400018014000180080001007f000001080002007f0000011c000280050001000600000006000200ccb000000600030008490000080004000000012c080005004f42599d080008000000000008000900000000000800060066747000"},
	{"destroy-replaced", "d8000000020200000000000000000000020000003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200000000000600030013890000340003801400018008000100ffffffff08000200ffffffff1c0002800500010006000000060002000000000006000300ffff00003400018014000180080001007f000001080002007f0000011c000280050001000600000006000200ccb000000600030008490000080004000000012c080005004f42599d080008000000000008000900000000000800060066747000"},
	{"new-again", "d8000000000200060000000000000000020000003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200000000000600030013890000340003801400018008000100ffffffff08000200ffffffff1c0002800500010006000000060002000000000006000300ffff00003400018014000180080001007f000001080002007f0000011c000280050001000600000006000200ccb000000600030008490000080004000000012c08000500572230f7080008000000000008000900000000000800060066747000"},
	{"destroy-flush", "d8000000020200000000000073c260d5020000003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200000000000600030013890000340003801400018008000100ffffffff08000200ffffffff1c0002800500010006000000060002000000000006000300ffff00003400018014000180080001007f000001080002007f0000011c000280050001000600000006000200ccb000000600030008490000080004000000012b08000500572230f7080008000000000008000900000000000800060066747000"},
}

// TestConntrackExp compares Netfilter's whole Result for each captured
// expectation with testdata/golden/exp-NAME.json.
func TestConntrackExp(t *testing.T) {
	for _, c := range capturedExp {
		b, err := hex.DecodeString(c.hex)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(c.name, func(t *testing.T) {
			checkGolden[ConntrackExpEvent](t, "exp-"+c.name, Netfilter(b))
		})
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"malformed", []byte{1, 2, 3}},
		{"bad-attributes", testmsg.Nlmsg(nfnlSubsysCtnetlinkExp<<8, []byte{unix.AF_INET, 0, 0, 0, 9, 0, 1, 0, 'x'})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden[ConntrackExpEvent](t, "exp-"+tc.name, ConntrackExp(tc.msg))
		})
	}
}

// TestConntrackExpFields checks the captured expectation field by field,
// as conntrack -L expect printed it.
func TestConntrackExpFields(t *testing.T) {
	b, _ := hex.DecodeString(capturedExp[0].hex)
	ev := decodeInto[ConntrackExpEvent](t, Netfilter(b))
	if ev.Event != "new" || ev.Family != "ipv4" || ev.Protocol != "tcp" || ev.Helper != "ftp" ||
		ev.Tuple == nil || ev.Tuple.Dst != "127.0.0.1" || ev.Tuple.DstPort == nil || *ev.Tuple.DstPort != 5001 ||
		ev.Mask == nil || ev.Mask.DstPort == nil || *ev.Mask.DstPort != 65535 ||
		ev.Master == nil || ev.Master.DstPort == nil || *ev.Master.DstPort != 2121 || ev.Class == nil || *ev.Class != 0 {
		t.Errorf("%+v", ev)
	}
}
