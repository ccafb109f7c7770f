package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A config file (bridge --config FILE) is TOML whose keys are the
// command's flags, named without their dashes: every flag of the FlagSet
// is a key, with nothing to list here, so a flag added to the command is
// a key at once. Each value goes through the flag's own Set, so the
// flag's parsing and checks apply as on the command line:
//
//	heartbeat = "1s"              # a flag's text, as a TOML string
//	read-buffer = 33554432        # numbers as TOML numbers (or strings)
//	requests = false              # boolean flags as TOML booleans only
//	streams = ["link", "addr"]    # list flags (listValue) as TOML arrays
//
// Flags given on the command line win over the file: their keys are
// still checked, on a scratch FlagSet, but not applied.

// listValue is a flag.Value that takes a list, which a config file gives
// as a TOML array. A comma-separated flag joins it (listFlag); a flag
// given once per item calls its Set for each, after clearing what it
// held.
type listValue interface {
	flag.Value
	SetList([]string) error
}

// itemsFlag is a flag given once per item, such as --expose
// STREAMS=KEYFILE; a config file gives its items as a TOML array.
type itemsFlag struct{ items []string }

func (f *itemsFlag) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.items, " ")
}

func (f *itemsFlag) Set(s string) error { f.items = append(f.items, s); return nil }

// SetList sets the flag to items, replacing any before.
func (f *itemsFlag) SetList(items []string) error {
	f.items = append([]string(nil), items...)
	return nil
}

// listFlag is a flag of comma-separated names, such as --streams.
type listFlag struct{ s string }

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return l.s
}

func (l *listFlag) Set(s string) error { l.s = s; return nil }

// SetList sets the flag to items, joined by commas.
func (l *listFlag) SetList(items []string) error {
	for _, it := range items {
		if strings.Contains(it, ",") {
			return fmt.Errorf("%q: one name per item of the array", it)
		}
	}
	l.s = strings.Join(items, ",")
	return nil
}

// notInFile are flags with no key: the file itself.
var notInFile = map[string]bool{"config": true}

// applyConfigFile sets the flags of fs from the TOML file at path,
// except those already set (on the command line): their keys are checked
// on scratch(), a FlagSet like fs, and dropped. It returns where each
// applied key is in the file, for later errors (configKeys.wrap). Errors
// name the file, the line and column, the key and what it takes.
func applyConfigFile(fs *flag.FlagSet, path string, scratch func() *flag.FlagSet) (configKeys, error) {
	onCLI := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCLI[f.Name] = true })
	var prims map[string]toml.Primitive
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	md, err := toml.Decode(string(data), &prims)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d:%d: %s", path, pe.Position.Line, pe.Position.Col, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	keys := configKeys{}
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		name := k[0] // a key in a table is the table's key, refused
		if seen[name] {
			continue
		}
		seen[name] = true
		target := fs
		if onCLI[name] {
			target = scratch()
		}
		if err := md.PrimitiveDecode(prims[name], &keySetter{fs: target, name: name}); err != nil {
			return nil, positioned(path, data, name, err)
		}
		if !onCLI[name] {
			keys[name] = where(path, data, name, md, prims[name])
		}
	}
	return keys, nil
}

// configKeys says where in the file each key applied is: "FILE:LINE:COL".
type configKeys map[string]string

// wrap adds the place in the file to an error about a flag that the file
// set: errors of the checks made after parsing ("--encodings: ...") name
// the flag as the command line would.
func (k configKeys) wrap(err error) error {
	msg := err.Error()
	for name, at := range k {
		if rest, ok := strings.CutPrefix(msg, "--"+name); ok && (rest == "" || strings.ContainsAny(rest[:1], " :/=")) {
			return fmt.Errorf("%s: key %s: %w", at, name, err)
		}
	}
	return err
}

// errHere is returned by a probe to learn where a key is.
var errHere = errors.New("here")

type probe struct{}

func (probe) UnmarshalTOML(any) error { return errHere }

// where returns "FILE:LINE:COL" of key name, whose value is p.
func where(path string, data []byte, name string, md toml.MetaData, p toml.Primitive) string {
	var pe toml.ParseError
	if err := md.PrimitiveDecode(p, probe{}); errors.As(err, &pe) {
		return at(path, data, name, pe.Position)
	}
	return path
}

// at returns "FILE:LINE:COL" of a position of key name. The parser knows
// no position for a table made by a dotted key (a.b = 1): the line is then
// the first that starts with the name.
func at(path string, data []byte, name string, pos toml.Position) string {
	if pos.Line > 0 {
		return fmt.Sprintf("%s:%d:%d", path, pos.Line, pos.Col)
	}
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " \t[")
		if rest, ok := strings.CutPrefix(trimmed, name); ok && rest != "" && strings.ContainsRune(" \t.=]", rune(rest[0])) {
			return fmt.Sprintf("%s:%d:%d", path, i+1, len(line)-len(trimmed)+1)
		}
	}
	return path
}

// positioned turns the ParseError made of a keySetter's error about key
// name into "FILE:LINE:COL: key NAME: ...".
func positioned(path string, data []byte, name string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: key %s: %w", path, name, err)
	}
	return fmt.Errorf("%s: key %s: %s", at(path, data, name, pe.Position), name, pe.Message)
}

// keySetter applies one key's TOML value to its flag.
type keySetter struct {
	fs   *flag.FlagSet
	name string
}

func (k *keySetter) UnmarshalTOML(v any) error {
	f := k.fs.Lookup(k.name)
	if f == nil || notInFile[k.name] {
		return fmt.Errorf("unknown key; the keys are the flags of 'nlmcast %s --help' without their dashes: %s",
			k.fs.Name(), strings.Join(fileKeys(k.fs), ", "))
	}
	kind, usage := flag.UnquoteUsage(f)
	isBool := false
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		isBool, kind = true, "boolean (true or false, unquoted)"
	}
	lv, isList := f.Value.(listValue)
	if isList {
		kind = "array of strings, such as [\"a\", \"b\"], or a string \"a,b\""
	}
	takes := fmt.Sprintf("takes %s %s: %s (default %q)", article(kind), kind, usage, f.DefValue)
	var s string
	switch v := v.(type) {
	case bool:
		if !isBool {
			return fmt.Errorf("a boolean; %s", takes)
		}
		s = strconv.FormatBool(v)
	case string:
		if isBool {
			return fmt.Errorf("a string; %s", takes)
		}
		s = v
	case int64:
		if isBool {
			return fmt.Errorf("a number; %s", takes)
		}
		s = strconv.FormatInt(v, 10)
	case float64:
		if isBool {
			return fmt.Errorf("a number; %s", takes)
		}
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		if !isList {
			return fmt.Errorf("an array; %s", takes)
		}
		items := make([]string, len(v))
		for i, it := range v {
			str, ok := it.(string)
			if !ok {
				return fmt.Errorf("item %d is not a string; %s", i+1, takes)
			}
			items[i] = str
		}
		if err := lv.SetList(items); err != nil {
			return fmt.Errorf("%v; %s", err, takes)
		}
		return nil
	case map[string]any:
		return fmt.Errorf("a table; the file has no tables, every key is at the top; %s", takes)
	default:
		return fmt.Errorf("a %T; %s", v, takes)
	}
	if err := k.fs.Set(k.name, s); err != nil {
		if err.Error() == "parse error" { // the flag package's word for any number or duration
			err = fmt.Errorf("not %s %s", article(kind), kind)
		}
		return fmt.Errorf("%q: %v; %s", s, err, takes)
	}
	return nil
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

// fileKeys returns the keys a config file may hold for fs, sorted.
func fileKeys(fs *flag.FlagSet) []string {
	var keys []string
	fs.VisitAll(func(f *flag.Flag) {
		if !notInFile[f.Name] {
			keys = append(keys, f.Name)
		}
	})
	slices.Sort(keys)
	return keys
}

// flagValues returns the value of every flag of fs but those with no
// key, as its String.
func flagValues(fs *flag.FlagSet) map[string]string {
	vals := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if !notInFile[f.Name] {
			vals[f.Name] = f.Value.String()
		}
	})
	return vals
}
