package main

// The configuration file of contract §9 as the observer sees it: the main
// section mapped onto the flags (one table: flagSpecs), the agent sections,
// and the merge with the command line.

import (
	"os"
	"strings"
)

// kindMask is a set of event kinds: bit k is eventKind k, so the event
// file's hot path tests a kind with one AND.
type kindMask uint16

const allKinds = ^kindMask(0)

// exportKindNames are the kinds of contract §5 that --export-file-kinds
// accepts, in the contract's order.
var exportKindNames = [...]string{"beat", "stall", "decode", "mismatch", "eviction", "recovery", "missing", "io"}

// exportKindList is exportKindNames for messages.
const exportKindList = "beat,stall,decode,mismatch,eviction,recovery,missing,io"

// kindBit is the bit of the kind named name: 1<<eventKind.
func kindBit(name string) (kindMask, bool) {
	for i, n := range eventKindNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// has reports whether m holds kind k.
func (m kindMask) has(k eventKind) bool { return m&(1<<k) != 0 }

// parseKinds parses a comma-separated list of event kinds.
func parseKinds(name, v string) (kindMask, error) {
	var m kindMask
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return 0, flagErrorf("%s: %q has an empty item (want kinds separated by commas: %s)", name, v, exportKindList)
		}
		bit, ok := kindBit(item)
		if !ok {
			return 0, flagErrorf("%s: %q is not an event kind (want %s)", name, item, exportKindList)
		}
		m |= bit
	}
	return m, nil
}

// kindsString is the canonical --export-file-kinds value of m.
func kindsString(m kindMask) string {
	var names []string
	for _, n := range exportKindNames {
		if bit, _ := kindBit(n); m&bit != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// parseUCIBool accepts the spellings of OpenWrt's config_get_bool
// (/lib/functions.sh): 1 on true yes enabled, and 0 off false no disabled.
func parseUCIBool(name, v string) (bool, error) {
	switch v {
	case "1", "on", "true", "yes", "enabled":
		return true, nil
	case "0", "off", "false", "no", "disabled":
		return false, nil
	}
	return false, flagErrorf("%s: %q is not on or off (also 1/0, true/false, yes/no, enabled/disabled)", name, v)
}

// agentSet is the agent sections of the configuration in file order.
// A pointer in config keeps config comparable.
type agentSet struct {
	specs []agentSpec
}

// fileOption is one option of the main section, validated.
type fileOption struct {
	flag  string // its flagSpecs name, e.g. "threshold-ms"
	key   string // as written, e.g. "threshold_ms"
	value string
	line  int
}

// fileConfig is a parsed and validated configuration file.
type fileConfig struct {
	path     string
	mainLine int          // line of `config varta-watch`, 0 if none
	main     []fileOption // in file order; empty values left out
	agents   []agentSpec  // as written: unset policy values not resolved
}

// exclusiveFlag is the flag of which the command line or the file may
// give one with flag: giving one on the command line overrides the file's
// other.
func exclusiveFlag(flag string) string {
	switch flag {
	case "recovery-cmd":
		return "recovery-exec"
	case "recovery-exec":
		return "recovery-cmd"
	}
	return ""
}

// fileKey is the main-section option of a flag: '-' written '_'.
func fileKey(flag string) string { return swapByte(flag, '-', '_') }

// swapByte is s with every byte from written to.
func swapByte(s string, from, to byte) string {
	b := []byte(s)
	for i := range b {
		if b[i] == from {
			b[i] = to
		}
	}
	return string(b)
}

// readFileConfig reads and parses the file at path. It has no effect
// besides reading the file, so that a reload may call it and keep the
// running configuration when it fails.
func readFileConfig(path string) (*fileConfig, error) {
	buf, err := readFile(path, maxConfigBytes)
	if err != nil {
		return nil, &fileError{path: path, msg: sprintf("cannot read: %v", pathErrCause(err))}
	}
	return parseFileConfig(path, buf)
}

// pathErrCause strips the path an *os.PathError repeats.
func pathErrCause(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// parseFileConfig parses and checks a configuration file: every section
// type, option and value, with the line of the first mistake.
func parseFileConfig(path string, data []byte) (*fileConfig, error) {
	sections, err := parseUCIText(path, data)
	if err != nil {
		return nil, err
	}
	fc := &fileConfig{path: path}
	fail := func(line int, format string, a ...any) error {
		return &fileError{path: path, line: line, msg: sprintf(format, a...)}
	}
	names := map[string]int{}
	for i := range sections {
		s := &sections[i]
		seen := map[string]int{} // option key -> first line
		for _, o := range s.options {
			if first, dup := seen[o.key]; dup && !o.isList {
				return nil, fail(o.line, "option %s given twice in this section (first on line %d)", o.key, first)
			}
			if _, ok := seen[o.key]; !ok {
				seen[o.key] = o.line
			}
		}
		switch s.typ {
		case "varta-watch":
			if fc.mainLine != 0 {
				return nil, fail(s.line, "a second config varta-watch section (the first is on line %d)", fc.mainLine)
			}
			fc.mainLine = s.line
			if err := fc.parseMain(s, fail); err != nil {
				return nil, err
			}
		case "agent":
			if s.name == "" {
				return nil, fail(s.line, "an agent section needs a name: config agent 'NAME'")
			}
			if first, dup := names[s.name]; dup {
				return nil, fail(s.line, "agent %q is defined twice (first on line %d)", s.name, first)
			}
			names[s.name] = s.line
			if len(fc.agents) == maxAgents {
				return nil, fail(s.line, "more than %d agent sections", maxAgents)
			}
			a, err := parseAgent(s, fail)
			if err != nil {
				return nil, err
			}
			fc.agents = append(fc.agents, a)
		default:
			return nil, fail(s.line, "unknown section type %q (want varta-watch or agent)", s.typ)
		}
	}
	return fc, nil
}

type failFunc func(line int, format string, a ...any) error

func (fc *fileConfig) parseMain(s *confSection, fail failFunc) error {
	var scratch config = defaultConfig()
	recovery := 0 // line of recovery_cmd or recovery_exec
	for _, o := range s.options {
		flag := swapByte(o.key, '_', '-')
		spec, isFlag := flagSpecs[flag]
		isFlag = isFlag && flag != "config" && !spec.noValue
		// enabled and extra_args are read by OpenWrt's init script
		// (contrib/openwrt); the observer checks and skips them.
		isInit := o.key == "enabled" || o.key == "extra_args"
		if !isFlag && !isInit {
			return fail(o.line, "unknown option %q in config varta-watch", o.key)
		}
		if o.isList {
			return fail(o.line, "%s takes one value: write option %s, not list", o.key, o.key)
		}
		if o.value == "" {
			continue // UCI: an empty value sets nothing
		}
		if o.key == "export_file" || o.key == "prom_addr" || o.key == "hw_watchdog" {
			// OpenWrt's init script turns these off with a false word.
			if on, err := parseUCIBool(o.key, o.value); err == nil && !on {
				continue
			}
		}
		if isInit {
			if _, err := parseUCIBool(o.key, o.value); err != nil && o.key == "enabled" {
				return fail(o.line, "%s", err.Error())
			}
			continue
		}
		if err := spec.set(&scratch, o.key, o.value); err != nil {
			return fail(o.line, "%s", err.Error())
		}
		if flag == "recovery-cmd" || flag == "recovery-exec" {
			if recovery != 0 {
				return fail(o.line, "recovery_exec and recovery_cmd exclude each other: give one of them (the other is on line %d)", recovery)
			}
			recovery = o.line
		}
		if flag == "recovery-exec" {
			if err := checkExecCommand(o.key, o.value); err != nil {
				return fail(o.line, "%s", err.Error())
			}
		}
		fc.main = append(fc.main, fileOption{flag: flag, key: o.key, value: o.value, line: o.line})
	}
	return nil
}

func parseAgent(s *confSection, fail failFunc) (agentSpec, error) {
	a := newAgentSpec(s.name, s.line)
	lines := map[string]int{}
	for _, o := range s.options {
		if o.value == "" && !o.isList {
			var scratch agentSpec
			if known, _ := setAgentOption(&scratch, o.key, "x", false); !known {
				return a, fail(o.line, "unknown option %q in config agent", o.key)
			}
			continue // UCI: an empty value sets nothing
		}
		known, err := setAgentOption(&a, o.key, o.value, o.isList)
		if !known {
			return a, fail(o.line, "unknown option %q in config agent", o.key)
		}
		if err == nil && o.value == "" {
			err = errorf("list %s needs a value", o.key)
		}
		if err != nil {
			return a, fail(o.line, "%s", err.Error())
		}
		lines[o.key] = o.line
	}
	if a.recoveryExec != "" && a.recoveryCmd != "" {
		l := max(lines["recovery_exec"], lines["recovery_cmd"])
		return a, fail(l, "recovery_exec and recovery_cmd exclude each other: give one of them")
	}
	if !a.hasMatch() {
		return a, fail(s.line, "agent %q has no match option: give comm, exe or cmdline", s.name)
	}
	if !a.expected {
		for _, k := range []string{"grace_ms", "missing_exec"} {
			if l, ok := lines[k]; ok {
				return a, fail(l, "%s applies only to an expected agent: add option expected '1'", k)
			}
		}
	}
	if a.maxRecoveries == 0 {
		if l, ok := lines["give_up_exec"]; ok {
			return a, fail(l, "give_up_exec needs max_recoveries of at least 1 (0 never gives up)")
		}
	}
	return a, nil
}

// effectiveConfig is the configuration in force: the defaults, under the
// file's main section (fc may be nil), under the command line, validated;
// agent sections resolved against the global values. It has no side
// effects: a reload calls it again and gets a new config or an error.
func effectiveConfig(cl *commandLine, fc *fileConfig) (config, error) {
	c := defaultConfig()
	fromFile := map[string]int{} // flag -> line, for values the file decided
	if fc != nil {
		for _, o := range fc.main {
			if cl.given[o.flag] || cl.given[exclusiveFlag(o.flag)] {
				continue // the command line wins
			}
			if err := flagSpecs[o.flag].set(&c, o.key, o.value); err != nil {
				return c, &fileError{path: fc.path, line: o.line, msg: err.Error()} // checked at parse: not reached
			}
			fromFile[o.flag] = o.line
		}
	}
	for _, f := range cl.flags {
		if err := flagSpecs[f.name].set(&c, f.flag, f.value); err != nil {
			return c, err
		}
	}
	if c.showHelp || c.showVersion {
		return c, nil
	}
	if err := c.validate(); err != nil {
		// A rule broken by a value the file gave is the file's mistake.
		if fc != nil {
			if line, ok := fromFile[firstFlagNamed(err.Error())]; ok {
				return c, &fileError{path: fc.path, line: line, msg: err.Error()}
			}
		}
		return c, err
	}
	if fc != nil {
		as := &agentSet{specs: make([]agentSpec, len(fc.agents))}
		for i := range fc.agents {
			as.specs[i] = fc.agents[i].resolved(&c)
		}
		c.agents = as
	}
	return c, nil
}

// firstFlagNamed returns the name of the first --flag a message names.
func firstFlagNamed(msg string) string {
	i := strings.Index(msg, "--")
	if i < 0 {
		return ""
	}
	j := i + 2
	for j < len(msg) && (msg[j] >= 'a' && msg[j] <= 'z' || msg[j] == '-') {
		j++
	}
	return msg[i+2 : j]
}

// loadConfig is the configuration of a command line: parsed, with the
// --config file read and merged under it. A reload calls it again with the
// same arguments.
func loadConfig(args []string) (config, error) {
	cl, err := parseCommandLine(args)
	if err != nil {
		return cl.partial, err
	}
	var fc *fileConfig
	if cl.path != "" && !cl.given["help"] && !cl.given["version"] {
		if fc, err = readFileConfig(cl.path); err != nil {
			c, _ := effectiveConfig(cl, nil)
			return c, err
		}
	}
	return effectiveConfig(cl, fc)
}
