package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// logFlags registers --log-level and --log-format on fs. The returned
// function checks them, once fs is parsed. When ctx is a running
// command's (withLogChoice), --log-format is offered to it: its last
// error is printed in that format.
func logFlags(ctx context.Context, fs *flag.FlagSet) func() (slog.Level, string, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format on stderr: text (key=value) or json (one object a line); under journald records carry no time")
	if c, _ := ctx.Value(logChoiceKey{}).(*logChoice); c != nil {
		c.offer(func() string { return *format })
	}
	return func() (slog.Level, string, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return 0, "", fmt.Errorf("--log-level %q: use debug, info, warn or error", *level)
		}
		if *format != "text" && *format != "json" {
			return 0, "", fmt.Errorf("--log-format %q: use text or json", *format)
		}
		return l, *format, nil
	}
}

// newLogger returns a command's logger: lines of format ("text" or
// "json") on w at level. Where w is the stream the journal reads
// (underJournal), records leave out the time, text and JSON alike: the
// journal records it for each line itself.
func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if underJournal(w, os.Getenv("JOURNAL_STREAM")) {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
				return slog.Attr{} // dropped
			}
			return a
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// A command's last error is printed by run once the command returned, in
// the log format the command was given (on its command line or in its
// config file), which only the command's flags know. run gives the
// command a context carrying a logChoice (withLogChoice), and logFlags
// offers it the flag it registers.
type logChoiceKey struct{}

// logChoice is where a running command's --log-format is read.
type logChoice struct {
	mu     sync.Mutex
	format func() string // nil: no --log-format
}

// withLogChoice returns ctx carrying c.
func withLogChoice(ctx context.Context, c *logChoice) context.Context {
	return context.WithValue(ctx, logChoiceKey{}, c)
}

// offer makes format the command's, unless it has one already (a second
// flag set parsed under the same context is not the command's own).
func (c *logChoice) offer(format func() string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.format == nil {
		c.format = format
	}
}

// get returns the command's log format ("text" when it has none).
func (c *logChoice) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.format == nil {
		return "text"
	}
	return c.format()
}

// printError prints a command's last error on stderr: a line "nlmcast
// CMD: ERROR", or, when the command was given --log-format json, a JSON
// record at level ERROR, as its log's. The error may quote what came from
// outside (a name the kernel gave, a file name): it is escaped.
func printError(stderr io.Writer, format, cmd string, err error) {
	msg := safe(err.Error())
	if format == "json" {
		newLogger(stderr, "json", slog.LevelError).Error(msg, "command", cmd)
		return
	}
	fmt.Fprintf(stderr, "nlmcast %s: %s\n", cmd, msg)
}

// underJournal reports whether w is the stream systemd connected to the
// journal: journalStream, the value of $JOURNAL_STREAM, is "DEVICE:INODE"
// of that stream, in decimal (systemd.exec(5)), and w is a file with that
// device and inode. A child process that inherited the variable but
// writes its stderr elsewhere is not under the journal.
func underJournal(w io.Writer, journalStream string) bool {
	f, ok := w.(*os.File)
	if !ok || journalStream == "" {
		return false
	}
	devStr, inoStr, ok := strings.Cut(journalStream, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devStr, 10, 64)
	ino, err2 := strconv.ParseUint(inoStr, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return false
	}
	return st.Dev == dev && st.Ino == ino
}
