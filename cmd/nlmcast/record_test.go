package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRecordConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string // a part of the error; "" for none
	}{
		{args: []string{"-o", "f.pcapng"}},
		{args: []string{"link", "neigh", "-o", "f", "--max-bytes", "1000", "--max-files", "3", "--count", "5"}},
		{args: []string{"proc", "-o", "f", "--private", "proc=/k"}},
		{args: []string{"link"}, err: "-o FILE"},
		{args: []string{"-o", "f", "--max-files", "3"}, err: "--max-files: needs MaxBytes or MaxAge"},
		{args: []string{"-o", "f", "--max-age", "1h", "--max-files", "24"}},
		{args: []string{"-o", "f", "--max-bytes", "-1"}, err: "--max-bytes: must not be negative"},
		{args: []string{"-o", "f", "nosuch"}, err: "nosuch"},
		{args: []string{"-o", "f", "--private", "link"}, err: "STREAMS=KEYFILE"},
		{args: []string{"-o", "f", "--source-port", "0"}, err: "--source-port 0"},
	} {
		cfg, _, _, err := recordConfig(context.Background(), tc.args, io.Discard)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.err)
		case tc.err == "" && cfg.Output == "":
			t.Errorf("%v: no output", tc.args)
		}
	}
	cfg, _, _, err := recordConfig(context.Background(), []string{"link", "proc", "-o", "f", "--private", "proc=/k", "--count", "5"}, io.Discard)
	if err != nil || cfg.Count != 5 || cfg.Receiver.Private["proc"] != "/k" || len(cfg.Receiver.Streams) != 2 {
		t.Errorf("got %+v, %v", cfg, err)
	}
}

func TestReplayConfig(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
		cmd  int // words of the command after --
	}{
		{args: []string{"f.pcapng"}},
		{args: []string{"a", "b", "--speed", "0", "--loop"}},
		{args: []string{"a", "--rate", "100"}},
		{args: []string{"a", "--isolate", "--wait-ready", "--", "nlmcast", "listen", "--count", "3"}, cmd: 4},
		{args: []string{"a", "--inject", "gap,stream=link,after=2", "--inject", "restart,stream=link"}},
		{args: []string{"a", "--expose", "proc=/k"}},
		{args: nil, err: "name the recording"},
		{args: []string{"a", "--speed", "-1"}, err: "--speed -1"},
		{args: []string{"a", "--speed", "2", "--rate", "5"}, err: "not both"},
		{args: []string{"a", "--speed", "0", "--rate", "5"}, err: "leave out --rate"},
		{args: []string{"a", "--wait-ready"}, err: "give it after --"},
		{args: []string{"a", "--inject", "flood,stream=link"}, err: "--inject"},
		{args: []string{"a", "--base", "10.0.0.0"}, err: "--base"},
		{args: []string{"a", "--inject-file", "/nonexistent/script"}, err: "--inject-file"},
	} {
		s, err := replayConfig(context.Background(), tc.args, io.Discard)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.err)
		case tc.err == "" && len(s.command) != tc.cmd:
			t.Errorf("%v: command %v", tc.args, s.command)
		}
	}
	s, err := replayConfig(context.Background(), []string{"a", "b", "--speed", "3", "--heartbeat", "0"}, io.Discard)
	if err != nil || s.cfg.Speed != 3 || len(s.cfg.Files) != 2 || !s.cfg.Bridge.NoHeartbeats || s.cfg.Bridge.Heartbeat != time.Duration(0) {
		t.Errorf("got %+v, %v", s, err)
	}
}
