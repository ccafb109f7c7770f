package decode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// AuditEvent is the JSON object of one audit record, as auditd writes it
// to audit.log. The records of one event share Serial (and EventID); an
// event of several records ends with an EOE record (type 1320).
type AuditEvent struct {
	Type     uint16 `json:"type"`      // the record type, such as 1300
	TypeName string `json:"type_name"` // such as SYSCALL, USER_AVC; UNKNOWN[N] for others
	// EventID is "SECONDS.MILLIS:SERIAL", as in msg=audit(...), the key
	// that links the records of one event; Time the same instant in
	// RFC 3339, Serial the serial number.
	EventID string `json:"event_id,omitempty"`
	Time    string `json:"time,omitempty"`
	Serial  uint64 `json:"serial,omitempty"`
	// Fields are the record's key=value pairs in order (a quoted value
	// without its quotes; msg='...' of user records as one value).
	Fields []AuditField `json:"fields,omitempty"`
	// Text is the record after "audit(...): ", as the kernel wrote it
	// (invalid UTF-8 replaced).
	Text  string `json:"text"`
	Error string `json:"decode_error,omitempty"`
	Raw   string `json:"data_hex,omitempty"`
}

// AuditField is one key=value pair of a record.
type AuditField struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// auditTypes names the record types auditd names (linux/audit.h and
// libaudit's table); others are UNKNOWN[N], as ausearch prints them.
var auditTypes = map[uint16]string{
	1100: "USER_AUTH", 1101: "USER_ACCT", 1102: "USER_MGMT", 1103: "CRED_ACQ", 1104: "CRED_DISP",
	1105: "USER_START", 1106: "USER_END", 1107: "USER_AVC", 1108: "USER_CHAUTHTOK", 1109: "USER_ERR",
	1110: "CRED_REFR", 1111: "USYS_CONFIG", 1112: "USER_LOGIN", 1113: "USER_LOGOUT", 1114: "ADD_USER",
	1115: "DEL_USER", 1116: "ADD_GROUP", 1117: "DEL_GROUP", 1118: "DAC_CHECK", 1119: "CHGRP_ID",
	1120: "TEST", 1121: "TRUSTED_APP", 1122: "USER_SELINUX_ERR", 1123: "USER_CMD", 1124: "USER_TTY",
	1125: "CHUSER_ID", 1126: "GRP_AUTH", 1127: "SYSTEM_BOOT", 1128: "SYSTEM_SHUTDOWN", 1129: "SYSTEM_RUNLEVEL",
	1130: "SERVICE_START", 1131: "SERVICE_STOP", 1132: "GRP_MGMT", 1133: "GRP_CHAUTHTOK", 1134: "MAC_CHECK",
	1135: "ACCT_LOCK", 1136: "ACCT_UNLOCK", 1137: "USER_DEVICE", 1138: "SOFTWARE_UPDATE",
	1005: "USER", 1300: "SYSCALL", 1302: "PATH", 1303: "IPC", 1304: "SOCKETCALL", 1305: "CONFIG_CHANGE",
	1306: "SOCKADDR", 1307: "CWD", 1309: "EXECVE", 1311: "IPC_SET_PERM", 1312: "MQ_OPEN",
	1313: "MQ_SENDRECV", 1314: "MQ_NOTIFY", 1315: "MQ_GETSETATTR", 1316: "KERNEL_OTHER", 1317: "FD_PAIR",
	1318: "OBJ_PID", 1319: "TTY", 1320: "EOE", 1321: "BPRM_FCAPS", 1322: "CAPSET", 1323: "MMAP",
	1324: "NETFILTER_PKT", 1325: "NETFILTER_CFG", 1326: "SECCOMP", 1327: "PROCTITLE", 1328: "FEATURE_CHANGE",
	1329: "REPLACE", 1330: "KERN_MODULE", 1331: "FANOTIFY", 1332: "TIME_INJOFFSET", 1333: "TIME_ADJNTPVAL",
	1334: "BPF", 1335: "EVENT_LISTENER", 1336: "URINGOP", 1337: "OPENAT2", 1338: "DM_CTRL", 1339: "DM_EVENT",
	1400: "AVC", 1401: "SELINUX_ERR", 1402: "AVC_PATH", 1403: "MAC_POLICY_LOAD", 1404: "MAC_STATUS",
	1405: "MAC_CONFIG_CHANGE", 1406: "MAC_UNLBL_ALLOW", 1407: "MAC_CIPSOV4_ADD", 1408: "MAC_CIPSOV4_DEL",
	1409: "MAC_MAP_ADD", 1410: "MAC_MAP_DEL", 1411: "MAC_IPSEC_ADDSA", 1412: "MAC_IPSEC_DELSA",
	1413: "MAC_IPSEC_ADDSPD", 1414: "MAC_IPSEC_DELSPD", 1415: "MAC_IPSEC_EVENT", 1416: "MAC_UNLBL_STCADD",
	1417: "MAC_UNLBL_STCDEL", 1418: "MAC_CALIPSO_ADD", 1419: "MAC_CALIPSO_DEL", 1420: "IPE_ACCESS",
	1421: "IPE_CONFIG_CHANGE", 1422: "IPE_POLICY_LOAD", 1423: "LANDLOCK_ACCESS", 1424: "LANDLOCK_DOMAIN",
	1500: "AA", 1501: "APPARMOR_AUDIT", 1502: "APPARMOR_ALLOWED", 1503: "APPARMOR_DENIED",
	1504: "APPARMOR_HINT", 1505: "APPARMOR_STATUS", 1506: "APPARMOR_ERROR",
	1700: "ANOM_PROMISCUOUS", 1701: "ANOM_ABEND", 1702: "ANOM_LINK", 1703: "ANOM_CREAT",
	1800: "INTEGRITY_DATA", 1801: "INTEGRITY_METADATA", 1802: "INTEGRITY_STATUS", 1803: "INTEGRITY_HASH",
	1804: "INTEGRITY_PCR", 1805: "INTEGRITY_RULE", 1806: "INTEGRITY_EVM_XATTR", 1807: "INTEGRITY_POLICY_RULE",
	2000: "KERNEL",
}

// Audit decodes one audit record as the kernel multicasts it
// (AUDIT_NLGRP_READLOG): a netlink header whose type is the record type,
// then the text "audit(SECONDS.MILLIS:SERIAL): key=value ...". It never
// fails: what does not decode is described by an error and hex.
func Audit(msg []byte) Result {
	var ev AuditEvent
	if len(msg) < unix.SizeofNlMsghdr {
		ev.TypeName, ev.Error, ev.Raw = "MALFORMED", "shorter than a netlink header", hex.EncodeToString(msg)
		return encodeAny(&ev, "malformed audit record")
	}
	ev.Type = binary.NativeEndian.Uint16(msg[4:])
	ev.TypeName = auditTypes[ev.Type]
	if ev.TypeName == "" {
		ev.TypeName = fmt.Sprintf("UNKNOWN[%d]", ev.Type)
	}
	text := string(xfrmBody(msg))
	text = strings.TrimRight(text, "\x00")
	if !utf8.ValidString(text) {
		ev.Raw = hex.EncodeToString([]byte(text))
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	rest, ok := strings.CutPrefix(text, "audit(")
	head, body, ok2 := strings.Cut(rest, "): ")
	if !ok || !ok2 {
		ev.Text, ev.Error = text, "no audit(SECONDS.MILLIS:SERIAL) header"
		return encodeAny(&ev, ev.summary())
	}
	ev.Text = body
	ev.EventID = head
	stamp, serial, _ := strings.Cut(head, ":")
	sec, milli, _ := strings.Cut(stamp, ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	ms, err2 := strconv.ParseInt(milli, 10, 64)
	n, err3 := strconv.ParseUint(serial, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || ms < 0 || ms > 999 || s < 0 || s > 1<<40 {
		ev.Error = "bad audit(SECONDS.MILLIS:SERIAL) header: " + head
	} else {
		ev.Time = time.Unix(s, ms*int64(time.Millisecond)).UTC().Format(time.RFC3339Nano)
		ev.Serial = n
	}
	ev.Fields = auditFields(body)
	return encodeAny(&ev, ev.summary())
}

// auditFields splits "k=v k2="quoted v" msg='a=b c=d'" into pairs; a word
// without "=" is a pair with an empty key.
func auditFields(s string) []AuditField {
	var out []AuditField
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return out
		}
		var f AuditField
		if i := strings.IndexAny(s, "= "); i >= 0 && s[i] == '=' {
			f.Key, s = s[:i], s[i+1:]
		}
		if s != "" && (s[0] == '"' || s[0] == '\'') {
			if end := strings.IndexByte(s[1:], s[0]); end >= 0 {
				f.Value, s = s[1:1+end], s[2+end:]
				out = append(out, f)
				continue
			}
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		f.Value, s = s[:end], s[end:]
		out = append(out, f)
	}
}

// summary reads like a line of audit.log.
func (ev *AuditEvent) summary() string {
	s := "type=" + ev.TypeName
	if ev.EventID != "" {
		s += " msg=audit(" + ev.EventID + "):"
	}
	if ev.Text != "" {
		s += " " + ev.Text
	}
	if ev.Error != "" {
		s += " (" + ev.Error + ")"
	}
	return s
}
