// Command nlmcast bridges kernel netlink multicast events to loopback IP
// multicast groups, and reads them back.
//
//	nlmcast bridge [flags]           run the bridge (root)
//	nlmcast listen [STREAM...] [flags] print events, like ip monitor
//	nlmcast groups [STREAM...] [flags] print the stream map
//	nlmcast compare [STREAM...] [flags] netlink and multicast side by side
//	nlmcast bench [flags]            measure against direct netlink (root)
//	nlmcast record [STREAM...] -o FILE record the streams to pcapng
//	nlmcast replay FILE... [flags]   replay a recording as a bridge would
//	nlmcast keygen FILE [flags]      make or rotate a key file
//	nlmcast version                  print the version, commit and Go version (also --version)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nlmcast/nlmcast/fleet"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
	"github.com/nlmcast/nlmcast/receiver"
)

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"bridge", "[flags]", "subscribe to kernel netlink groups and send every event to loopback multicast (root)", runBridge},
	{"listen", "[STREAM...] [flags]", "print events from the bridge, one line each, or as JSON (any user)", runListen},
	{"publish", "--nats URL [STREAM...] [flags]", "publish this host's frames to NATS JetStream, for listeners on other hosts (any user)", runPublish},
	{"relay", "--nats URL --host H --base ADDR [STREAM...] [flags]", "send a remote host's frames from NATS JetStream on this host's loopback groups of a block of their own", runRelay},
	{"groups", "[STREAM...] [flags]", "print the streams and their multicast addresses", runGroups},
	{"compare", "[STREAM...] [flags]", "receive events both from netlink and through multicast, side by side, with a summary", runCompare},
	{"bench", "[flags]", "measure loss, latency and cost against direct netlink, in a namespace of its own (root)", runBench},
	{"record", "[STREAM...] -o FILE [flags]", "record the streams to a pcapng file Wireshark reads (any user)", runRecord},
	{"replay", "FILE... [flags] [-- CMD...]", "send a recording to the groups as a bridge would; --isolate: in a namespace of its own, no privilege needed", runReplay},
	{"keygen", "FILE [flags]", "make a key file for authenticated frames or private streams, or rotate its key (--rotate)", runKeygen},
	{"version", "", "print the module version, the VCS commit and the Go version (also: nlmcast --version)", runVersion},
	{"bench-recv", "", "", runBenchRecv},   // a process of bench: not listed
	{"bench-relay", "", "", runBenchRelay}, // the same
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "nlmcast: kernel netlink events on loopback IP multicast\n\nUsage:\n")
	for _, c := range commands {
		if c.summary == "" {
			continue
		}
		fmt.Fprintf(w, "  nlmcast %s %s\n        %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'nlmcast COMMAND --help' for a command's flags.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		logChoice := &logChoice{}
		err := c.run(withLogChoice(ctx, logChoice), args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code // replay --isolate: the isolated replay's status, which it reported
		}
		printError(stderr, logChoice.get(), c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "nlmcast: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// errUsage means a flag error that the flag package has already reported.
var errUsage = errors.New("usage")

// newFlags returns a FlagSet whose --help prints the synopsis and flags.
func newFlags(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: nlmcast %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, flags and positional arguments in any order, and
// returns the positional ones. Flag errors become errUsage (the flag package
// has printed them).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		args = fs.Args()
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// flagError is an error of a library, said in terms of the flags.
type flagError struct {
	msg string
	err error // the library's error
}

func (e *flagError) Error() string { return e.msg }
func (e *flagError) Unwrap() error { return e.err }

// withFlags rewrites a library's config error in terms of the flag that
// sets the field, as "--ttl 300: must be from 0 to 255"; flags maps a
// config field's name to its flag. Other errors are returned as they are.
func withFlags(err error, flags map[string]string) error {
	var (
		ne     *netlinkbridge.ConfigError
		me     *mcast.ConfigError
		re     *receiver.ConfigError
		fe     *fleet.ConfigError
		field  string
		value  any
		reason string
	)
	switch {
	case errors.As(err, &ne):
		field, value, reason = ne.Field, ne.Value, ne.Reason
	case errors.As(err, &me):
		field, value, reason = me.Field, me.Value, me.Reason
	case errors.As(err, &re):
		field, value, reason = re.Field, re.Value, re.Reason
	case errors.As(err, &fe):
		field, value, reason = fe.Field, fe.Value, fe.Reason
	default:
		return err
	}
	name, ok := flags[field]
	switch {
	case !ok:
		return err
	case value == nil:
		return &flagError{fmt.Sprintf("%s: %s", name, reason), err}
	}
	return &flagError{fmt.Sprintf("%s %v: %s", name, value, reason), err}
}
