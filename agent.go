package main

// Agents by name (contract §9): what a `config agent 'NAME'` section holds,
// and which section a pid belongs to.

import "strings"

const (
	maxAgents = 256 // agent sections in one file

	defaultMaxRecoveries    = 3
	defaultRecoveryWindowS  = 600
	defaultGiveUpMinUptimeS = 900

	// maxCommLen: /proc/PID/comm holds at most TASK_COMM_LEN-1 = 15 bytes;
	// a longer comm option could never match.
	maxCommLen = 15
	// maxGlobLen bounds a glob (matching costs len(glob)·len(name) at worst).
	maxGlobLen = 1024
	// maxMatchValues bounds the alternatives one match option may list.
	maxMatchValues = 32
)

// agentSpec is one agent section. Matching: every match option given must
// hold, and one holds when any of its values does (a `list comm` gives
// alternatives, e.g. hostapd and wpad for the same daemon).
//
// As parsed from the file, a policy value that the section leaves to the
// global flag is unset (0 or -1 as noted); effectiveConfig resolves the
// copy it hands out, so every field of a resolved spec is the value in use.
type agentSpec struct {
	name string
	line int // of its `config agent` line

	comm    []string // equal to /proc/PID/comm
	exe     []string // globs on the target of /proc/PID/exe
	cmdline []string // globs on the arguments joined by single spaces

	thresholdMs        int64  // 0: --threshold-ms
	recoveryExec       string // recoveryExec and recoveryCmd both "":
	recoveryCmd        string //   --recovery-exec / --recovery-cmd
	recoveryDebounceMs int64  // -1: --recovery-debounce-ms
	recoveryTimeoutMs  int64  // -1: --recovery-timeout-ms

	expected    bool
	graceMs     int64 // 0: its threshold
	missingExec string

	maxRecoveries    int64 // 0: never gives up
	recoveryWindowS  int64
	giveUpExec       string
	giveUpMinUptimeS int64
}

func newAgentSpec(name string, line int) agentSpec {
	return agentSpec{
		name: name, line: line,
		recoveryDebounceMs: -1, recoveryTimeoutMs: -1,
		maxRecoveries: defaultMaxRecoveries, recoveryWindowS: defaultRecoveryWindowS,
		giveUpMinUptimeS: defaultGiveUpMinUptimeS,
	}
}

// resolved returns a copy of a with every policy value the section left
// unset taken from the global configuration c.
func (a agentSpec) resolved(c *config) agentSpec {
	if a.thresholdMs == 0 {
		a.thresholdMs = c.thresholdMs
	}
	if a.recoveryExec == "" && a.recoveryCmd == "" {
		a.recoveryExec, a.recoveryCmd = c.recoveryExec, c.recoveryCmd
	}
	if a.recoveryDebounceMs < 0 {
		a.recoveryDebounceMs = c.recoveryDebounceMs
	}
	if a.recoveryTimeoutMs < 0 {
		a.recoveryTimeoutMs = c.recoveryTimeoutMs
	}
	if a.graceMs == 0 {
		a.graceMs = a.thresholdMs
	}
	return a // the match lists are shared: nothing changes them after parsing
}

func (a *agentSpec) hasMatch() bool { return len(a.comm)+len(a.exe)+len(a.cmdline) > 0 }

// matches reports whether a pid with this comm, exe target and cmdline
// belongs to a.
func (a *agentSpec) matches(comm, exe, cmdline []byte) bool {
	if len(a.comm) > 0 && !anyEqual(a.comm, comm) {
		return false
	}
	// An exe or cmdline that could not be read is empty, and then no exe
	// or cmdline option holds, not even '*'.
	if len(a.exe) > 0 && (len(exe) == 0 || !anyGlob(a.exe, exe)) {
		return false
	}
	if len(a.cmdline) > 0 && (len(cmdline) == 0 || !anyGlob(a.cmdline, cmdline)) {
		return false
	}
	return a.hasMatch()
}

func anyEqual(vals []string, b []byte) bool {
	for _, v := range vals {
		if v == string(b) {
			return true
		}
	}
	return false
}

func anyGlob(globs []string, b []byte) bool {
	for _, g := range globs {
		if globMatch(g, b) {
			return true
		}
	}
	return false
}

// matchAgent returns the index of the first spec, in file order, that a
// pid with this comm, exe and cmdline matches, or -1 for none. It is judged
// once per new pid (and again at a reload), never per beat; it allocates
// nothing.
//
// What the /proc side must pass: comm as /proc/PID/comm without its
// trailing newline; exe as the readlink(2) target of /proc/PID/exe as the
// kernel gives it (a binary replaced on disk reads "/usr/sbin/x (deleted)":
// an exe glob ending in '*' still matches it; empty when it cannot be read,
// e.g. another user's process for a non-root observer, or a kernel thread,
// and then no exe option holds); cmdline as /proc/PID/cmdline with the
// trailing NUL dropped and every other NUL turned into one space.
func matchAgent(specs []agentSpec, comm, exe, cmdline []byte) int {
	for i := range specs {
		if specs[i].matches(comm, exe, cmdline) {
			return i
		}
	}
	return -1
}

func matchValue(dst *[]string, key, v string, maxLen int) error {
	if len(v) > maxLen {
		return errorf("%s: %d bytes, at most %d", key, len(v), maxLen)
	}
	if len(*dst) >= maxMatchValues {
		return errorf("%s: more than %d values", key, maxMatchValues)
	}
	*dst = append(*dst, v)
	return nil
}

// checkExecCommand is the rule of --recovery-exec for every *_exec option:
// split on spaces, it must name a command.
func checkExecCommand(key, v string) error {
	if len(strings.Fields(v)) == 0 {
		return errorf("%s: %q names no command", key, v)
	}
	return nil
}

// setAgentOption parses option k (isList: a `list` line) of an agent
// section into a; known is false for an option agent sections do not have.
func setAgentOption(a *agentSpec, k, v string, isList bool) (known bool, err error) {
	intOpt := func(dst *int64, lo, hi int64) { *dst, err = parseIntFlag(k, v, lo, hi) }
	exec := func(dst *string) { *dst, err = v, checkExecCommand(k, v) }
	switch k {
	case "comm":
		if len(v) > maxCommLen {
			return true, errorf("%s: %q is longer than %d bytes, the most /proc/PID/comm holds (match it with exe or cmdline)", k, v, maxCommLen)
		}
		return true, matchValue(&a.comm, k, v, maxCommLen)
	case "exe":
		return true, matchValue(&a.exe, k, v, maxGlobLen)
	case "cmdline":
		return true, matchValue(&a.cmdline, k, v, maxGlobLen)
	}
	if isList {
		return true, errorf("%s takes one value: write option %s, not list", k, k)
	}
	switch k {
	case "threshold_ms":
		intOpt(&a.thresholdMs, 10, 86_400_000)
	case "recovery_exec":
		exec(&a.recoveryExec)
	case "recovery_cmd":
		a.recoveryCmd = v
	case "recovery_debounce_ms":
		intOpt(&a.recoveryDebounceMs, 0, 86_400_000)
	case "recovery_timeout_ms":
		intOpt(&a.recoveryTimeoutMs, 0, 86_400_000)
	case "expected":
		a.expected, err = parseUCIBool(k, v)
	case "grace_ms":
		intOpt(&a.graceMs, 10, 86_400_000)
	case "missing_exec":
		if strings.Contains(v, pidPlaceholder) {
			return true, errorf("%s: there is no pid when an agent is missing: {pid} cannot be used", k)
		}
		exec(&a.missingExec)
	case "max_recoveries":
		intOpt(&a.maxRecoveries, 0, 1000)
	case "recovery_window_s":
		intOpt(&a.recoveryWindowS, 1, 7*86400)
	case "give_up_exec":
		exec(&a.giveUpExec)
	case "give_up_min_uptime_s":
		intOpt(&a.giveUpMinUptimeS, 0, 365*86400)
	default:
		return false, nil
	}
	return true, err
}
