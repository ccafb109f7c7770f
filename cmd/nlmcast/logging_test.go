package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// journalOf returns $JOURNAL_STREAM as systemd would set it for f.
func journalOf(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestUnderJournal(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := os.Create(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	js := journalOf(t, f)
	for _, tc := range []struct {
		w    io.Writer
		env  string
		want bool
	}{
		{f, js, true},
		{other, js, false}, // inherited, but stderr goes elsewhere
		{f, "", false},
		{f, "garbage", false},
		{f, strings.Replace(js, ":", ":1", 1), false},
		{&bytes.Buffer{}, js, false},
	} {
		if got := underJournal(tc.w, tc.env); got != tc.want {
			t.Errorf("underJournal(%T, %q) = %v, want %v", tc.w, tc.env, got, tc.want)
		}
	}
}

// Under journald text lines carry no time (the journal stamps each);
// elsewhere they do, and JSON keeps it in both.
func TestLoggerUnderJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	read := func() string {
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(0)
		f.Seek(0, 0)
		return string(data)
	}
	t.Setenv("JOURNAL_STREAM", journalOf(t, f))
	newLogger(f, "text", slog.LevelInfo).Info("hello", "time", "an attribute named time stays")
	if got := read(); got != `level=INFO msg=hello time="an attribute named time stays"`+"\n" {
		t.Errorf("text under journald: %q, want no time", got)
	}
	newLogger(f, "json", slog.LevelInfo).Info("hello")
	var obj map[string]any
	if got := read(); json.Unmarshal([]byte(got), &obj) != nil || obj["time"] == nil || obj["msg"] != "hello" {
		t.Errorf("json under journald: %q, want an object with its time", got)
	}
	t.Setenv("JOURNAL_STREAM", "")
	newLogger(f, "text", slog.LevelInfo).Info("hello")
	if got := read(); !strings.HasPrefix(got, "time=") || !strings.HasSuffix(got, " level=INFO msg=hello\n") {
		t.Errorf("text: %q, want the time first", got)
	}
	newLogger(f, "text", slog.LevelWarn).Info("hidden")
	if got := read(); got != "" {
		t.Errorf("info at level warn: %q", got)
	}
}

func TestLogFlags(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		level  slog.Level
		format string
		err    string
	}{
		{nil, slog.LevelInfo, "text", ""},
		{[]string{"--log-level", "debug", "--log-format", "json"}, slog.LevelDebug, "json", ""},
		{[]string{"--log-level", "error"}, slog.LevelError, "text", ""},
		{[]string{"--log-level", "loud"}, 0, "", `--log-level "loud": use debug, info, warn or error`},
		{[]string{"--log-format", "logfmt"}, 0, "", `--log-format "logfmt": use text or json`},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		get := logFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		level, format, err := get()
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%v: error %v, want %s", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || level != tc.level || format != tc.format {
			t.Errorf("%v: %v %q %v, want %v %q", tc.args, level, format, err, tc.level, tc.format)
		}
	}
}
