package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/streams"
)

const referenceConfig = "../../dist/nlmcast.toml"

// writeConfig writes a config file in a test's directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nlmcast.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keyLine is a commented key of the reference file: "#key = default".
var keyLine = regexp.MustCompile(`(?m)^#([a-z0-9-]+) = (.*)$`)

// The reference file loads as it is (every key commented: the defaults),
// and with every key uncommented; then it holds a key for every flag of
// the bridge (a flag added without its key fails here), and each key's
// value is the flag's default.
func TestReferenceConfig(t *testing.T) {
	text, err := os.ReadFile(referenceConfig)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := bridgeConfig(context.Background(), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	asIs, err := bridgeConfig(context.Background(), []string{"--config", referenceConfig}, io.Discard)
	if err != nil {
		t.Fatalf("%s: %v", referenceConfig, err)
	}
	if !reflect.DeepEqual(asIs.values, plain.values) {
		t.Errorf("%s as it is sets\n %v\nwant the defaults\n %v", referenceConfig, asIs.values, plain.values)
	}

	uncommented := keyLine.ReplaceAllString(string(text), "$1 = $2")
	path := writeConfig(t, uncommented)
	all, err := bridgeConfig(context.Background(), []string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatalf("%s uncommented: %v", referenceConfig, err)
	}
	var inFile []string
	for _, m := range keyLine.FindAllStringSubmatch(string(text), -1) {
		if slices.Contains(inFile, m[1]) {
			t.Errorf("%s: key %s twice", referenceConfig, m[1])
		}
		inFile = append(inFile, m[1])
	}
	fs, _ := bridgeFlags(context.Background(), io.Discard)
	for _, key := range fileKeys(fs) {
		if !slices.Contains(inFile, key) {
			t.Errorf("%s has no key %s: add \"#%s = DEFAULT\" with what --%s means", referenceConfig, key, key, key)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if got, ok := all.values[f.Name]; ok && got != f.DefValue {
			t.Errorf("%s: %s = %q, but --%s defaults to %q", referenceConfig, f.Name, got, f.Name, f.DefValue)
		}
	})
	if !reflect.DeepEqual(all.cfg, plain.cfg) {
		t.Errorf("%s uncommented: config\n %+v\nwant the default\n %+v", referenceConfig, *all.cfg, *plain.cfg)
	}
}

// Every key sets its flag through the flag's own parsing; the command line
// wins over the file.
func TestConfigFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		args []string
		want func(c *netlinkbridge.Config, s *bridgeSetup)
	}{
		{"empty", "", nil, func(*netlinkbridge.Config, *bridgeSetup) {}},
		{"duration", `heartbeat = "250ms"`, nil, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.Heartbeat = 250 * time.Millisecond }},
		{"duration off", `heartbeat = "0s"`, nil, func(c *netlinkbridge.Config, _ *bridgeSetup) { c.Heartbeat, c.NoHeartbeats = 0, true }},
		{"list as array", `streams = ["link", "addr"]`, nil, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "link", "ipv4-ifaddr", "ipv6-ifaddr")
		}},
		{"list as string", `streams = "link,addr"`, nil, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "link", "ipv4-ifaddr", "ipv6-ifaddr")
		}},
		{"expose", "streams = [\"uevent\"]\nexpose = [\"proc=/k1\", \"conntrack-new=/k2\"]\ncleartext-to-all-users = [\"conntrack-update\"]", nil, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "uevent", "proc", "conntrack-new", "conntrack-update")
			c.Private = map[string]netlinkbridge.Access{"proc": {KeyFile: "/k1"}, "conntrack-new": {KeyFile: "/k2"}, "conntrack-update": {Cleartext: true}}
		}},
		{"encodings", `encodings = ["json"]`, nil, func(c *netlinkbridge.Config, s *bridgeSetup) {
			c.Encodings, s.encodings = c.Encodings[1:], "json"
		}},
		{"numbers and booleans", "read-buffer = 4096\nbatch = 7\nrequests = false\njson-always = true\nport = 30000\nttl = 1",
			nil, func(c *netlinkbridge.Config, _ *bridgeSetup) {
				c.ReadBuffer, c.Batch, c.NoRequests, c.JSONAlways, c.Map.Port, c.Sender.TTL = 4096, 7, true, true, 30000, 1
			}},
		{"setup keys", "user = \"nlmcast\"\nstats = \"/run/nlmcast/stats.json\"\nlog-level = \"debug\"\nlog-format = \"json\"",
			nil, func(_ *netlinkbridge.Config, s *bridgeSetup) {
				s.user, s.stats, s.level, s.logFormat = "nlmcast", "/run/nlmcast/stats.json", slog.LevelDebug, "json"
			}},
		{"flag wins", "heartbeat = \"2s\"\nstreams = [\"link\"]", []string{"--heartbeat", "3s"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Heartbeat, c.Streams = 3*time.Second, resolveStreams(t, "link")
		}},
		{"flag wins over a list", `streams = ["link"]`, []string{"--streams", "addr"}, func(c *netlinkbridge.Config, _ *bridgeSetup) {
			c.Streams = resolveStreams(t, "ipv4-ifaddr", "ipv6-ifaddr")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			want := defaultBridge(t)
			wantSetup := bridgeSetup{cfg: &want, encodings: "raw,json", level: slog.LevelInfo, logFormat: "text"}
			tc.want(&want, &wantSetup)
			got, err := bridgeConfig(context.Background(), append([]string{"--config", path}, tc.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.cfg, &want) {
				t.Errorf("config\n got  %+v\n want %+v", *got.cfg, want)
			}
			if *got.cfg.Sender != *want.Sender {
				t.Errorf("sender\n got  %+v\n want %+v", *got.cfg.Sender, *want.Sender)
			}
			if got.config != path {
				t.Errorf("config path %q, want %q", got.config, path)
			}
			got.cfg, wantSetup.cfg, got.values, got.config = nil, nil, nil, ""
			if !reflect.DeepEqual(*got, wantSetup) {
				t.Errorf("setup %+v, want %+v", *got, wantSetup)
			}
		})
	}
}

// Unknown keys and bad values stop the bridge with the file, line and
// column, the key, and what it takes.
func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
		want []string
	}{
		{"# comment\nnosuch = 1", nil, []string{":2:10: key nosuch: unknown key", "the keys are the flags", "heartbeat, "}},
		{"config = \"other.toml\"", nil, []string{":1:11: key config: unknown key"}},
		{"a.b = 1", nil, []string{":1:1: key a: unknown key"}},
		{"[heartbeat]\nx = 1", nil, []string{":1:1: key heartbeat: a table"}},
		{"\n\nheartbeat = \"soon\"", nil, []string{`:3:14: key heartbeat: "soon": not a duration; takes a duration: heartbeat interval on idle streams; 0 turns heartbeats off (default "1s")`}},
		{"heartbeat = 5", nil, []string{`:1:13: key heartbeat: "5": `, "takes a duration"}},
		{"heartbeat = \"-1s\"", nil, []string{`:1:14: key heartbeat: --heartbeat -1s: must not be negative`}},
		{"requests = \"false\"", nil, []string{":1:13: key requests: a string; takes a boolean (true or false, unquoted)"}},
		{"segment = 1", nil, []string{"key segment: a number; takes a boolean"}},
		{"ttl = [1]", nil, []string{"key ttl: an array; takes an int: multicast TTL"}},
		{"ttl = \"many\"", nil, []string{`key ttl: "many": not an int`}},
		{"streams = [1]", nil, []string{"key streams: item 1 is not a string"}},
		{"streams = [\"link,addr\"]", nil, []string{`key streams: "link,addr": one name per item`}},
		{"streams = [\"link\", \"nosuch\"]", nil, []string{`:1:12: key streams: --streams: unknown stream "nosuch"`}},
		{"encodings = [\"xml\"]", nil, []string{`:1:14: key encodings: --encodings: unknown encoding "xml"`}},
		{"streams = [\"proc\"]", nil, []string{`key streams: --streams: `, "--expose proc"}},
		{"log-level = \"loud\"", nil, []string{`key log-level: --log-level "loud": use debug, info, warn or error`}},
		{"log-format = \"xml\"", nil, []string{`key log-format: --log-format "xml": use text or json`}},
		{"heartbeat = ", nil, []string{":1:12: ", "expected value"}},
		// A key the command line overrides is still checked.
		{"heartbeat = \"soon\"", []string{"--heartbeat", "2s"}, []string{`key heartbeat: "soon": not a duration`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			_, err := bridgeConfig(context.Background(), append([]string{"--config", path}, tc.args...), io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("%v: does not start with the file's name", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nwant it to hold %q", err, w)
				}
			}
		})
	}
	if _, err := bridgeConfig(context.Background(), []string{"--config", filepath.Join(t.TempDir(), "none.toml")}, io.Discard); err == nil || !strings.Contains(err.Error(), "--config: ") {
		t.Errorf("a missing file: %v", err)
	}
}

func TestPlanReload(t *testing.T) {
	running := map[string]string{"heartbeat": "1s", "log-level": "info", "streams": "all", "ttl": "0", "expose": ""}
	next := map[string]string{"heartbeat": "200ms", "log-level": "info", "streams": "link", "ttl": "1", "expose": "proc=/k"}
	apply, restart := planReload(running, next)
	if want := []change{{"expose", "", "proc=/k"}, {"heartbeat", "1s", "200ms"}, {"streams", "all", "link"}}; !reflect.DeepEqual(apply, want) {
		t.Errorf("apply %v, want %v", apply, want)
	}
	if want := []change{{"ttl", "0", "1"}}; !reflect.DeepEqual(restart, want) {
		t.Errorf("restart %v, want %v", restart, want)
	}
	if a, r := planReload(running, running); a != nil || r != nil {
		t.Errorf("no change: apply %v, restart %v", a, r)
	}
}

type fakeHeartbeat struct {
	every   []time.Duration
	off     []bool
	streams [][]string
	private []map[string]netlinkbridge.Access
	err     error // SetStreams's
}

func (f *fakeHeartbeat) SetHeartbeat(every time.Duration, off bool) error {
	f.every, f.off = append(f.every, every), append(f.off, off)
	return nil
}

func (f *fakeHeartbeat) SetStreams(ss []streams.Stream, private map[string]netlinkbridge.Access) error {
	f.streams, f.private = append(f.streams, names(ss)), append(f.private, private)
	return f.err
}

// A reload applies the log level, the heartbeat and the streams, logs
// every change, and leaves the rest, saying it needs a restart; a file
// that does not load changes nothing.
func TestReload(t *testing.T) {
	path := writeConfig(t, "heartbeat = \"1s\"\nstreams = [\"link\"]\n")
	args := []string{"--config", path, "--ttl", "1"}
	start, err := bridgeConfig(context.Background(), args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	level := new(slog.LevelVar)
	hb := &fakeHeartbeat{}
	r := &reloader{args: args, path: path, running: start.values, level: level, set: hb, log: newLogger(&out, "text", level)}

	if err := os.WriteFile(path, []byte("heartbeat = \"200ms\"\nstreams = [\"link\", \"addr\"]\nlog-level = \"warn\"\nttl = 2\nexpose = [\"proc=/k\"]\nread-buffer = 4096\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reload()
	if !reflect.DeepEqual(hb.every, []time.Duration{200 * time.Millisecond}) || hb.off[0] {
		t.Errorf("SetHeartbeat calls %v %v, want 200ms on", hb.every, hb.off)
	}
	// streams and expose: one SetStreams, with both.
	if want := [][]string{{"link", "ipv4-ifaddr", "ipv6-ifaddr", "proc"}}; !reflect.DeepEqual(hb.streams, want) || hb.private[0]["proc"].KeyFile != "/k" {
		t.Errorf("SetStreams calls %v %v, want %v with proc sealed under /k", hb.streams, hb.private, want)
	}
	if level.Level() != slog.LevelWarn {
		t.Errorf("level %v, want WARN", level.Level())
	}
	log := out.String()
	for _, want := range []string{
		// Applied at info, before the level went up to warn.
		`level=INFO msg="config change applied" key=heartbeat old=1s new=200ms`,
		`level=INFO msg="config change applied" key=streams old=link new=link,addr`,
		`level=INFO msg="config change applied" key=expose old="" new="proc=/k"`,
		`level=WARN msg="config change needs a restart; not applied" key=read-buffer running=8388608 new=4096 why="read once, at start"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log\n%s\nwant it to hold %s", log, want)
		}
	}
	// ttl: the command line's, which the file does not override.
	if strings.Contains(log, "key=ttl") {
		t.Errorf("log\n%s\nreports ttl, which the command line sets", log)
	}
	if r.running["heartbeat"] != "200ms" || r.running["streams"] != "link,addr" || r.running["read-buffer"] != "8388608" {
		t.Errorf("running %v: want heartbeat 200ms, streams link,addr, read-buffer still 8388608", r.running)
	}

	// Again with no change: the restart is still reported, nothing applied.
	out.Reset()
	r.reload()
	if len(hb.every) != 1 || len(hb.streams) != 1 || !strings.Contains(out.String(), "key=read-buffer running=8388608 new=4096") {
		t.Errorf("second reload: %d SetHeartbeat and %d SetStreams calls, log\n%s", len(hb.every), len(hb.streams), out.String())
	}

	// A change of streams the bridge cannot take up live (a new family)
	// waits for a restart, saying why.
	out.Reset()
	hb.err = &netlinkbridge.ConfigError{Field: "Streams", Value: "uevent", Reason: "is of netlink family uevent, which this bridge does not read: a new family needs a restart"}
	if err := os.WriteFile(path, []byte("heartbeat = \"200ms\"\nstreams = [\"link\", \"uevent\"]\nlog-level = \"warn\"\nttl = 2\nexpose = [\"proc=/k\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reload()
	if !strings.Contains(out.String(), "key=streams running=link,addr new=link,uevent why=") || !strings.Contains(out.String(), "a new family needs a restart") ||
		r.running["streams"] != "link,addr" {
		t.Errorf("a new family: running %v, log\n%s", r.running, out.String())
	}
	hb.err = nil

	out.Reset()
	if err := os.WriteFile(path, []byte("heartbeat = \"soon\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reload()
	if len(hb.every) != 1 || !strings.Contains(out.String(), `level=ERROR msg="config not reloaded; the running configuration stays"`) ||
		!strings.Contains(out.String(), path+":1:14: key heartbeat") {
		t.Errorf("a bad file: %d SetHeartbeat calls, log\n%s", len(hb.every), out.String())
	}
}

// repeatFlag is a flag given once per item (--expose A=K --expose B=L), as
// a listValue: SetList clears it, then calls Set for each item.
type repeatFlag struct{ items []string }

func (r *repeatFlag) String() string {
	if r == nil {
		return ""
	}
	return strings.Join(r.items, " ")
}
func (r *repeatFlag) Set(s string) error {
	if !strings.Contains(s, "=") {
		return errors.New("want NAMES=KEYFILE")
	}
	r.items = append(r.items, s)
	return nil
}
func (r *repeatFlag) SetList(items []string) error {
	r.items = nil
	for _, it := range items {
		if err := r.Set(it); err != nil {
			return err
		}
	}
	return nil
}

// A flag given once per item takes a TOML array through its own Set, item
// by item, when it is a listValue; the command line's items replace the
// file's.
func TestConfigFileRepeatableFlag(t *testing.T) {
	newFS := func() (*flag.FlagSet, *repeatFlag) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		r := &repeatFlag{}
		fs.Var(r, "expose", "`NAMES=KEYFILE`, once per key")
		fs.Int("ttl", 0, "a number")
		return fs, r
	}
	path := writeConfig(t, `expose = ["proc=/etc/a.key", "conntrack=/etc/b.key"]`)
	fs, r := newFS()
	if _, err := applyConfigFile(fs, path, func() *flag.FlagSet { fs, _ := newFS(); return fs }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"proc=/etc/a.key", "conntrack=/etc/b.key"}; !slices.Equal(r.items, want) {
		t.Errorf("items %q, want %q", r.items, want)
	}

	fs, r = newFS()
	if err := fs.Parse([]string{"--expose", "link=/etc/c.key"}); err != nil {
		t.Fatal(err)
	}
	if _, err := applyConfigFile(fs, path, func() *flag.FlagSet { fs, _ := newFS(); return fs }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"link=/etc/c.key"}; !slices.Equal(r.items, want) {
		t.Errorf("with --expose on the command line: items %q, want %q", r.items, want)
	}

	path = writeConfig(t, "\nexpose = [\"proc\"]")
	fs, _ = newFS()
	_, err := applyConfigFile(fs, path, func() *flag.FlagSet { fs, _ := newFS(); return fs })
	if err == nil || !strings.HasPrefix(err.Error(), path+":2:") || !strings.Contains(err.Error(), "key expose: want NAMES=KEYFILE; takes an array of strings") {
		t.Errorf("a bad item: %v", err)
	}
}
