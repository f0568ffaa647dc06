package main

import (
	"errors"
	"strconv"
	"strings"
)

// config is the validated command line.
type config struct {
	socket          string
	thresholdMs     int64
	socketMode      uint32
	trackerCapacity int
	socketQueue     int // datagrams the socket should queue; -1 auto (recommendedQlen), 0 the machine's

	exportFile     string
	exportMaxBytes int64
	exportKeep     int

	promAddr      string
	promTokenFile string
	promRate      int64
	promBurst     int64

	recoveryCmd        string
	recoveryExec       string
	recoveryDebounceMs int64
	recoveryTimeoutMs  int64

	shutdownGraceMs   int64
	hwWatchdog        string
	shutdownAfterSecs int64
	logJSON           bool

	// Contract §9 and its rows of §2.
	configPath    string    // --config: the file the rest came from
	exportKinds   kindMask  // --export-file-kinds: the kinds written to the event file
	promPidSeries bool      // --prom-pid-series
	agents        *agentSet // the file's agent sections, resolved; nil without --config

	showVersion bool
	showHelp    bool
}

func defaultConfig() config {
	return config{
		socketMode:         0o600,
		trackerCapacity:    4096,
		socketQueue:        -1,
		exportKeep:         5,
		promBurst:          10,
		recoveryDebounceMs: 1000,
		shutdownGraceMs:    5000,
		exportKinds:        allKinds,
		promPidSeries:      true,
	}
}

const usageText = `Usage: varta-watch --socket PATH --threshold-ms MS [flags]

Observer of the Varta Lifeline Protocol (VLP v0.2): receives heartbeat frames
on a Unix datagram socket, tracks every agent pid and surfaces a stall when a
pid stays silent for longer than the threshold.

Required:
  --socket PATH                  where to bind the observer's datagram socket
  --threshold-ms MS              silence before a pid is stalled (at least 10)

Socket and tracker:
  --socket-mode OCTAL            permission bits of the socket file (default 0600)
  --tracker-capacity N           most pids tracked at once, 1..65536 (default 4096)
  --socket-queue N               Linux: datagrams the socket may queue, 0..65536; above
                                 net.unix.max_dgram_qlen it takes root (see README)
                                 (default: tracker capacity / 16, 16..1024; 0: the
                                 machine's net.unix.max_dgram_qlen as it is)

Event file (TSV):
  --export-file PATH             append one line per event
  --export-file-max-bytes N      rotate past N bytes: PATH -> PATH.1 -> ... (default off)
  --export-file-keep N           rotated generations kept (default 5)
  --export-file-kinds LIST       the kinds written, comma-separated, of beat, stall,
                                 decode, mismatch, eviction, recovery, missing, io
                                 (default all; metrics count every event regardless)

Prometheus:
  --prom-addr HOST:PORT          serve GET /metrics (port 0 picks a free port; the
                                 bound address is printed as the first stdout line)
  --prom-token-file PATH         require "Authorization: Bearer <token>"
  --prom-rate-limit-per-sec N    scrapes per second per client IP (default 0 = off)
  --prom-rate-limit-burst N      token bucket size (default 10; 0 = off)
  --prom-pid-series on|off       the per-pid series in /metrics (default on)

Recovery:
  --recovery-cmd TEMPLATE        run /bin/sh -c TEMPLATE on each stall ({pid} replaced)
  --recovery-exec CMD            run CMD without a shell, split on spaces ({pid} replaced)
  --recovery-debounce-ms MS      at most one recovery per pid per window (default 1000)
  --recovery-timeout-ms MS       SIGKILL a recovery child running longer (default off)

Configuration file:
  --config PATH                  agents by name and any flag as an option, in
                                 UCI syntax (README); a flag given here wins;
                                 SIGHUP reloads it

Lifecycle:
  --shutdown-grace-ms MS         wait for killed recovery children at exit (default 5000)
  --hw-watchdog PATH             feed a watchdog device such as /dev/watchdog
  --shutdown-after-secs S        exit cleanly after S seconds
  --log-format text|json         format of the stderr log (default text)
  --version                      print the version and exit
  -h, --help                     print this help and exit
`

// flagError is a bad command line: exit status 2.
type flagError struct{ msg string }

func (e *flagError) Error() string { return e.msg }

func flagErrorf(format string, a ...any) error {
	return &flagError{msg: sprintf(format, a...)}
}

type flagSpec struct {
	noValue bool
	set     func(c *config, name, v string) error
}

func parseIntFlag(name, v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return 0, flagErrorf("%s: %q is out of range (%d..%d)", name, v, lo, hi)
		}
		return 0, flagErrorf("%s: %q is not a whole number (%d..%d)", name, v, lo, hi)
	}
	if n < lo || n > hi {
		return 0, flagErrorf("%s: %d is out of range (%d..%d)", name, n, lo, hi)
	}
	return n, nil
}

// parseMode accepts 600, 0600 and 0o600.
func parseMode(name, v string) (uint32, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(v, "0o"), "0O")
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil { // also "" and a bare "0o"
		return 0, flagErrorf("%s: %q is not an octal mode such as 0600", name, v)
	}
	if n > 0o777 {
		return 0, flagErrorf("%s: %q has bits beyond 0777", name, v)
	}
	return uint32(n), nil
}

func nonEmpty(name, v string) error {
	if v == "" {
		return flagErrorf("%s: must not be empty", name)
	}
	return nil
}

const maxInt = int64(^uint64(0) >> 1)

var flagSpecs = map[string]flagSpec{
	"socket": {set: func(c *config, n, v string) error { c.socket = v; return nonEmpty(n, v) }},
	"threshold-ms": {set: func(c *config, n, v string) (err error) {
		c.thresholdMs, err = parseIntFlag(n, v, 10, 86_400_000)
		return
	}},
	"socket-mode": {set: func(c *config, n, v string) (err error) { c.socketMode, err = parseMode(n, v); return }},
	"tracker-capacity": {set: func(c *config, n, v string) error {
		x, err := parseIntFlag(n, v, 1, 65536)
		c.trackerCapacity = int(x)
		return err
	}},
	"socket-queue": {set: func(c *config, n, v string) error {
		x, err := parseIntFlag(n, v, 0, 65536)
		c.socketQueue = int(x)
		return err
	}},
	"export-file": {set: func(c *config, n, v string) error { c.exportFile = v; return nonEmpty(n, v) }},
	"export-file-max-bytes": {set: func(c *config, n, v string) (err error) {
		c.exportMaxBytes, err = parseIntFlag(n, v, 0, maxInt)
		return
	}},
	"export-file-keep": {set: func(c *config, n, v string) error {
		x, err := parseIntFlag(n, v, 0, 1000)
		c.exportKeep = int(x)
		return err
	}},
	"prom-addr": {set: func(c *config, n, v string) error {
		c.promAddr = v
		if _, err := parseListenAddr(v); err != nil {
			return flagErrorf("%s: %v", n, err)
		}
		return nil
	}},
	"prom-token-file": {set: func(c *config, n, v string) error { c.promTokenFile = v; return nonEmpty(n, v) }},
	"prom-rate-limit-per-sec": {set: func(c *config, n, v string) (err error) {
		c.promRate, err = parseIntFlag(n, v, 0, 1_000_000)
		return
	}},
	"prom-rate-limit-burst": {set: func(c *config, n, v string) (err error) {
		c.promBurst, err = parseIntFlag(n, v, 0, 1_000_000)
		return
	}},
	"recovery-cmd":  {set: func(c *config, n, v string) error { c.recoveryCmd = v; return nonEmpty(n, v) }},
	"recovery-exec": {set: func(c *config, n, v string) error { c.recoveryExec = v; return nonEmpty(n, v) }},
	"recovery-debounce-ms": {set: func(c *config, n, v string) (err error) {
		c.recoveryDebounceMs, err = parseIntFlag(n, v, 0, 86_400_000)
		return
	}},
	"recovery-timeout-ms": {set: func(c *config, n, v string) (err error) {
		c.recoveryTimeoutMs, err = parseIntFlag(n, v, 0, 86_400_000)
		return
	}},
	"shutdown-grace-ms": {set: func(c *config, n, v string) (err error) {
		c.shutdownGraceMs, err = parseIntFlag(n, v, 0, 3_600_000)
		return
	}},
	"hw-watchdog": {set: func(c *config, n, v string) error { c.hwWatchdog = v; return nonEmpty(n, v) }},
	"shutdown-after-secs": {set: func(c *config, n, v string) (err error) {
		c.shutdownAfterSecs, err = parseIntFlag(n, v, 1, 100*365*86400)
		return
	}},
	"log-format": {set: func(c *config, n, v string) error {
		switch v {
		case "text":
			c.logJSON = false
		case "json":
			c.logJSON = true
		default:
			return flagErrorf("%s: %q is not text or json", n, v)
		}
		return nil
	}},
	"config": {set: func(c *config, n, v string) error { c.configPath = v; return nonEmpty(n, v) }},
	"export-file-kinds": {set: func(c *config, n, v string) (err error) {
		c.exportKinds, err = parseKinds(n, v)
		return
	}},
	"prom-pid-series": {set: func(c *config, n, v string) (err error) {
		c.promPidSeries, err = parseUCIBool(n, v)
		return
	}},
	"version": {noValue: true, set: func(c *config, n, v string) error { c.showVersion = true; return nil }},
	"help":    {noValue: true, set: func(c *config, n, v string) error { c.showHelp = true; return nil }},
}

// parseArgs parses the command line alone (without the program name) into
// a validated config, reading no file: loadConfig is parseArgs with the
// --config file.
func parseArgs(args []string) (config, error) {
	cl, err := parseCommandLine(args)
	if err != nil {
		return cl.partial, err
	}
	return effectiveConfig(cl, nil)
}

// cmdFlag is one flag as given on the command line.
type cmdFlag struct{ name, flag, value string }

// commandLine is the parsed command line, kept so that the configuration
// file can be merged under it again at every reload.
type commandLine struct {
	flags []cmdFlag
	given map[string]bool // flag names given
	path  string          // --config

	partial config // the flags up to a mistake (--log-format for its message)
}

// parseCommandLine checks the syntax and every value of the command line.
// Flags take "--flag value" or "--flag=value"; a single dash is accepted as
// well.
func parseCommandLine(args []string) (*commandLine, error) {
	cl := &commandLine{given: map[string]bool{}}
	c := defaultConfig()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" {
			cl.flags = append(cl.flags, cmdFlag{name: "help", flag: "--help"})
			cl.given["help"] = true
			continue
		}
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return cl.fail(&c, flagErrorf("unexpected argument %q (flags start with --)", a))
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, value, hasValue = name[:eq], name[eq+1:], true
		}
		spec, ok := flagSpecs[name]
		if !ok {
			return cl.fail(&c, flagErrorf("unknown flag --%s", name))
		}
		flag := "--" + name
		if spec.noValue {
			if hasValue {
				return cl.fail(&c, flagErrorf("%s takes no value", flag))
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return cl.fail(&c, flagErrorf("%s needs a value", flag))
			}
			i++
			value = args[i]
		}
		if err := spec.set(&c, flag, value); err != nil {
			return cl.fail(&c, err)
		}
		cl.flags = append(cl.flags, cmdFlag{name: name, flag: flag, value: value})
		cl.given[name] = true
	}
	cl.path = c.configPath
	return cl, nil
}

func (cl *commandLine) fail(c *config, err error) (*commandLine, error) {
	cl.partial = *c
	return cl, err
}

func (c *config) validate() error {
	if c.socket == "" {
		return flagErrorf("--socket is required")
	}
	if c.thresholdMs == 0 {
		return flagErrorf("--threshold-ms is required")
	}
	if c.recoveryCmd != "" && c.recoveryExec != "" {
		return flagErrorf("--recovery-exec excludes --recovery-cmd: give one of them")
	}
	if c.recoveryExec != "" && len(strings.Fields(c.recoveryExec)) == 0 {
		return flagErrorf("--recovery-exec: %q names no command", c.recoveryExec)
	}
	if c.promTokenFile != "" && c.promAddr == "" {
		return flagErrorf("--prom-token-file needs --prom-addr")
	}
	return nil
}

// wantQueue is the socket queue to ask for: --socket-queue, or by default
// what the tracker capacity needs.
func (c *config) wantQueue() int {
	if c.socketQueue < 0 {
		return recommendedQlen(c.trackerCapacity)
	}
	return c.socketQueue
}
