package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nlmcast/nlmcast/internal/sys/sdnotify"
	"github.com/nlmcast/nlmcast/internal/tool/recording"
	"github.com/nlmcast/nlmcast/mcast"
	"github.com/nlmcast/nlmcast/netlinkbridge"
)

// isolatedEnv marks the process --isolate starts in its new namespaces.
const isolatedEnv = "NLMCAST_REPLAY_ISOLATED"

// replaySetup is what nlmcast replay's flags ask for.
type replaySetup struct {
	cfg       *recording.ReplayConfig
	isolate   bool     // --isolate
	waitReady bool     // --wait-ready
	command   []string // after --
	level     slog.Level
	logFormat string
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	setup, err := replayConfig(ctx, args, stderr)
	if err != nil {
		return err
	}
	if setup.isolate && os.Getenv(isolatedEnv) == "" {
		return isolate(ctx, args, stdout, stderr)
	}
	log := newLogger(stderr, setup.logFormat, setup.level)
	cfg := setup.cfg
	cfg.Logger = log
	if os.Getenv(isolatedEnv) != "" {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("--isolate: bringing lo up in the new network namespace: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		cmdDone chan error
		cmdErr  error
	)
	cfg.Ready = func() {
		if err := sdnotify.Notify(sdnotify.Ready); err != nil {
			log.Warn("cannot notify the service manager", "socket", os.Getenv(sdnotify.Socket), "err", err)
		}
		// The bridges are up (their requests answered): the command
		// starts now, and with --wait-ready the events once it is ready.
		if len(setup.command) > 0 {
			if cmdDone, cmdErr = startCommand(ctx, setup, stdout, stderr, cancel); cmdErr != nil {
				cancel()
			}
		}
	}
	st, rerr := recording.Replay(ctx, cfg)
	if cmdErr != nil {
		if cmdDone != nil {
			<-cmdDone
		}
		return cmdErr
	}
	var trunc *recording.TruncatedError
	switch {
	case errors.As(rerr, &trunc):
		fmt.Fprintf(stderr, "nlmcast replay: %v\n", trunc)
	case rerr != nil && ctx.Err() == nil:
		return withFlags(rerr, replayFlagNames)
	}
	fmt.Fprintf(stderr, "nlmcast replay: %d events, %d overruns, %d round(s)\n", st.Events, st.Overruns, st.Rounds)
	if cmdDone != nil {
		if err := <-cmdDone; err != nil {
			return fmt.Errorf("%s: %w", setup.command[0], err)
		}
	}
	if trunc != nil {
		return rerr
	}
	return nil
}

// startCommand starts the command under test and, with --wait-ready,
// waits for its READY=1. The replay is cancelled when it exits.
func startCommand(ctx context.Context, setup *replaySetup, stdout, stderr io.Writer, cancel func()) (chan error, error) {
	c := exec.Command(setup.command[0], setup.command[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, stderr
	c.Env = os.Environ()
	var l *sdnotify.Listener
	if setup.waitReady {
		var err error
		if l, err = sdnotify.Listen(); err != nil {
			return nil, err
		}
		defer l.Close()
		c.Env = append(c.Env, l.Env())
	}
	c.Env = slicesDelete(c.Env, isolatedEnv+"=")
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("starting the command to test: %w", err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := c.Wait()
		close(exited)
		cancel()
		done <- err
	}()
	stop := context.AfterFunc(ctx, func() { _ = c.Process.Signal(syscall.SIGTERM) })
	_ = stop
	if l != nil {
		wctx, wcancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-exited:
				wcancel()
			case <-wctx.Done():
			}
		}()
		_, err := l.Wait(wctx, sdnotify.Ready)
		wcancel()
		if err != nil {
			return done, fmt.Errorf("--wait-ready: %s ended or was stopped before it sent READY=1 to $NOTIFY_SOCKET", setup.command[0])
		}
	}
	return done, nil
}

func slicesDelete(env []string, prefix string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// isolate runs this command again in a new user and network namespace,
// where this user is root: the replay may send from the bridge's
// privileged port, and receivers trust it there as they trust the bridge.
func isolate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := exec.Command(self, append([]string{"replay"}, args...)...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, stderr
	c.Env = append(os.Environ(), isolatedEnv+"=1")
	c.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// Pdeathsig: the namespace goes with us.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("--isolate: cannot make a user and network namespace (%w): this kernel may forbid unprivileged user namespaces "+
			"(sysctl kernel.unprivileged_userns_clone, or an AppArmor restriction); as root, run the replay in a network namespace of "+
			"your own instead (ip netns exec)", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Process.Signal(syscall.SIGTERM) })
	defer stop()
	err = c.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode()}
	}
	return err
}

// exitError passes on the exit status of the isolated replay.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// loopbackUp brings lo up in this (new) network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// replayFlagNames names the flag of each config field, for errors.
var replayFlagNames = map[string]string{
	"Map": "--base/--port", "Interface": "--interface", "Source": "--source-port", "KeyFile": "--key", "Private": "--expose",
	"Heartbeat": "--heartbeat", "Files": "FILE", "Speed": "--speed", "Rate": "--rate", "NoPacing": "--speed 0", "Inject": "--inject",
}

// replayConfig parses nlmcast replay's arguments into a valid config. It
// opens nothing.
func replayConfig(ctx context.Context, args []string, stderr io.Writer) (*replaySetup, error) {
	fs := newFlags("replay", "FILE... [flags] [-- CMD [ARG...]]",
		"Sends the events of recordings (nlmcast record's pcapng, or tcpdump -i nlmon0 / Wireshark\n"+
			"LINKTYPE_NETLINK pcap and pcapng) to the streams' multicast groups through a real bridge,\n"+
			"one per netlink family: every receiver sees what a live bridge sends (a fresh epoch,\n"+
			"heartbeats, fragments, a goodbye at the end), at the recorded pace scaled by --speed.\n"+
			"Sending from the bridge's port 1021 needs root or CAP_NET_BIND_SERVICE, as the bridge\n"+
			"does; --isolate needs neither: it makes a user and network namespace of its own, replays\n"+
			"there, and runs CMD (the program under test) in it, exiting with its status.\n"+
			"Synthetic events: --inject gap,stream=link,after=10,count=3 (also overrun, restart, goodbye, fragment).", stderr)
	cfg := &netlinkbridge.Config{Sender: &mcast.SenderConfig{}}
	rc := &recording.ReplayConfig{Bridge: cfg}
	setup := &replaySetup{cfg: rc}
	speed := fs.Float64("speed", 1, "scale the recorded pacing: 2 is twice as fast; 0 sends as fast as possible")
	fs.Float64Var(&rc.Rate, "rate", 0, "send this many events a second, evenly, instead of the recorded pacing")
	fs.BoolVar(&rc.Loop, "loop", false, "replay the files again and again until interrupted (or CMD exits)")
	fs.BoolVar(&setup.isolate, "isolate", false, "replay in a new user and network namespace (no privilege needed) and run CMD there")
	fs.BoolVar(&setup.waitReady, "wait-ready", false, "start the replay once CMD sent READY=1 to $NOTIFY_SOCKET (nlmcast listen and record do, once joined)")
	var injects []string
	fs.Func("inject", "KIND,stream=NAME[,after=N][,count=N]: a synthetic gap, overrun, restart, goodbye or fragment after N recorded events;\n"+
		"may be repeated", func(v string) error {
		injects = append(injects, v)
		return nil
	})
	script := fs.String("inject-file", "", "read injections from this file, one --inject SPEC a line (# starts a comment)")
	fs.StringVar(&cfg.Sender.Interface, "interface", mcast.DefaultInterface, "interface to send multicast on")
	srcPort := fs.Uint("source-port", mcast.DefaultSourcePort, "UDP source port, the one receivers accept (their --source-port)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", netlinkbridge.DefaultHeartbeat, "heartbeat interval on idle streams; 0 turns heartbeats off")
	fs.StringVar(&cfg.KeyFile, "key", "", "key file (nlmcast keygen): authenticate every frame, as the bridge's --key")
	expose := &itemsFlag{}
	fs.Var(expose, "expose", "`STREAMS=KEYFILE`: seal these streams under this key file, as the bridge's --expose\n"+
		"(private streams without one are replayed in the clear: the recording is yours)")
	getLog := logFlags(ctx, fs)
	getMap := mapFlags(fs)
	// What follows "--" is the command to run, flags and all.
	if i := slices.Index(args, "--"); i >= 0 {
		args, setup.command = args[:i], args[i+1:]
	}
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if setup.level, setup.logFormat, err = getLog(); err != nil {
		return nil, err
	}
	if len(pos) == 0 {
		return nil, errors.New("name the recording to replay: nlmcast replay FILE")
	}
	if setup.waitReady && len(setup.command) == 0 {
		return nil, errors.New("--wait-ready waits for CMD: give it after --")
	}
	rc.Files = pos
	switch {
	case *speed < 0:
		return nil, fmt.Errorf("--speed %v: must not be negative", *speed)
	case *speed == 0:
		rc.NoPacing = true
		if rc.Rate > 0 {
			return nil, errors.New("--speed 0 sends as fast as possible: leave out --rate")
		}
	case rc.Rate == 0:
		rc.Speed = *speed
	case *speed != 1:
		return nil, errors.New("--rate replaces the recorded pacing: give --speed or --rate, not both")
	}
	for _, in := range injects {
		inj, err := recording.ParseInjection(in)
		if err != nil {
			return nil, fmt.Errorf("--inject: %w", err)
		}
		rc.Inject = append(rc.Inject, inj)
	}
	if *script != "" {
		b, err := os.ReadFile(*script)
		if err != nil {
			return nil, fmt.Errorf("--inject-file: %w", err)
		}
		more, err := recording.ParseScript(string(b))
		if err != nil {
			return nil, fmt.Errorf("--inject-file %s: %w", *script, err)
		}
		rc.Inject = append(rc.Inject, more...)
	}
	if cfg.Map, err = getMap(); err != nil {
		return nil, err
	}
	if err := privateFlags(cfg, expose.items, ""); err != nil {
		return nil, err
	}
	cfg.Streams = nil // the recording's
	if *srcPort == 0 || *srcPort > 65535 {
		return nil, fmt.Errorf("--source-port %d: use a port from 1 to 65535", *srcPort)
	}
	cfg.Sender.Source = netip.AddrPortFrom(netip.Addr{}, uint16(*srcPort))
	cfg.NoHeartbeats = cfg.Heartbeat == 0
	if err := rc.Validate(); err != nil {
		return nil, recordError(err, replayFlagNames)
	}
	if err := cfg.Sender.Validate(); err != nil {
		return nil, withFlags(err, replayFlagNames)
	}
	return setup, nil
}
