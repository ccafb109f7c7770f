package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// logFlags registers --log-level and --log-format on fs. The returned
// function checks them, once fs is parsed.
func logFlags(fs *flag.FlagSet) func() (slog.Level, string, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format on stderr: text (key=value) or json (one object a line); under journald text lines carry no time")
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
// (underJournal), text lines leave out the time, which the journal
// records for each line itself; JSON objects keep it, as a field.
func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	if underJournal(w, os.Getenv("JOURNAL_STREAM")) {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
				return slog.Attr{} // dropped
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
