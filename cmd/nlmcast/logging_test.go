package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// Under journald records carry no time, text and JSON alike (the journal
// stamps each line); elsewhere they do.
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
	if got := read(); json.Unmarshal([]byte(got), &obj) != nil || obj["time"] != nil || obj["msg"] != "hello" || obj["level"] != "INFO" {
		t.Errorf("json under journald: %q, want an object without time", got)
	}
	t.Setenv("JOURNAL_STREAM", "")
	newLogger(f, "json", slog.LevelInfo).Info("hello")
	obj = nil
	if got := read(); json.Unmarshal([]byte(got), &obj) != nil || obj["time"] == nil || obj["msg"] != "hello" {
		t.Errorf("json: %q, want an object with its time", got)
	}
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
		get := logFlags(context.Background(), fs)
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

// TestErrorInLogFormat: under --log-format json (a flag, or a key of the
// config file), everything a failing command writes on stderr is JSON,
// its last error a record at level ERROR; under text it is the line
// "nlmcast CMD: ERROR".
func TestErrorInLogFormat(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("log-level = \"info\"\nnosuch = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "json.toml")
	if err := os.WriteFile(jsonFile, []byte("log-format = \"json\"\nttl = 300\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		json bool
		want string // in the error
	}{
		{[]string{"bridge", "--log-format", "json", "--config", bad}, true, "unknown key"},
		{[]string{"bridge", "--config", jsonFile}, true, "--ttl 300"},
		{[]string{"bridge", "--log-format", "text", "--config", jsonFile}, false, "--ttl 300"}, // the flag wins
		{[]string{"bridge", "--config", bad}, false, "unknown key"},
		{[]string{"listen", "--log-format", "json", "--silence", "-2s"}, true, "--silence -2s"},
		{[]string{"record", "--log-format", "json"}, true, "-o"},
		{[]string{"groups", "nosuch"}, false, "unknown stream"}, // no --log-format
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 1 {
				t.Fatalf("exit code %d, want 1; stderr %q", code, stderr.String())
			}
			out := stderr.String()
			if !tc.json {
				if want := "nlmcast " + tc.args[0] + ": "; !strings.HasPrefix(out, want) || !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 1 {
					t.Errorf("stderr %q, want one line %q... holding %q", out, want, tc.want)
				}
				return
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			for _, l := range lines {
				var obj map[string]any
				if err := json.Unmarshal([]byte(l), &obj); err != nil {
					t.Errorf("stderr line %q is not JSON: %v", l, err)
				}
			}
			var last map[string]any
			json.Unmarshal([]byte(lines[len(lines)-1]), &last)
			if msg, _ := last["msg"].(string); last["level"] != "ERROR" || last["command"] != tc.args[0] || !strings.Contains(msg, tc.want) {
				t.Errorf("last record %q, want level ERROR, command %s and a msg holding %q", lines[len(lines)-1], tc.args[0], tc.want)
			}
		})
	}
}

// unhashableWriter is a writer that cannot be a map key (a value holding a
// slice), as a program embedding nlmcast's commands might pass.
type unhashableWriter struct {
	buf  *bytes.Buffer
	tags []string
}

func (w unhashableWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

// TestErrorInLogFormatConcurrent: commands run at once, each with its own
// stderr and format, print their last errors each in its own format,
// whatever the writer's type.
func TestErrorInLogFormatConcurrent(t *testing.T) {
	const n = 8
	outs := make([]bytes.Buffer, n)
	var wg sync.WaitGroup
	for i := range n {
		format := []string{"text", "json"}[i%2]
		var stderr io.Writer = &outs[i]
		if i%4 < 2 {
			stderr = unhashableWriter{buf: &outs[i], tags: []string{format}}
		}
		wg.Go(func() {
			run([]string{"listen", "--log-format", format, "--silence", "-2s"}, io.Discard, stderr)
		})
	}
	wg.Wait()
	for i := range outs {
		out := outs[i].String()
		var obj map[string]any
		isJSON := json.Unmarshal([]byte(out), &obj) == nil && obj["level"] == "ERROR" && obj["command"] == "listen"
		if wantJSON := i%2 == 1; isJSON != wantJSON || !strings.Contains(out, "--silence -2s") {
			t.Errorf("command %d (json %v, writer hashable %v): stderr %q", i, wantJSON, i%4 >= 2, out)
		}
	}
}

// TestListenWarningsInLogFormat: listen's start warnings (here: frames
// not authenticated, --insecure) go through its logger, as JSON under
// --log-format json.
func TestListenWarningsInLogFormat(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // listen stops as soon as it has started
	var stdout, stderr bytes.Buffer
	// A port of its own: nobody else's frames.
	args := []string{"--log-format", "json", "--insecure", "--source-port", "65535", "--port", "47300", "link"}
	if err := runListen(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("listen: %v\n%s", err, stderr.String())
	}
	warned := false
	for l := range strings.SplitSeq(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Errorf("stderr line %q is not JSON: %v", l, err)
		}
		if msg, _ := obj["msg"].(string); obj["level"] == "WARN" && strings.Contains(msg, "not authenticated") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no JSON warning that frames are not authenticated in:\n%s", stderr.String())
	}
}
