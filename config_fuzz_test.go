package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseArgs feeds parseArgs arbitrary command lines: one string, the
// arguments separated by NUL bytes (which no real argument can hold).
// parseArgs must not panic; it returns either a *flagError (exit 2 with the
// usage) or a config that passes validate() and keeps every value within
// the range its flag documents; and an accepted config rendered back as
// canonical --flag=value arguments must parse to the same config.
//
// Its seed corpus lives in testdata/fuzz/FuzzParseArgs.
func FuzzParseArgs(f *testing.F) {
	f.Add("--socket\x00/run/varta.sock\x00--threshold-ms\x002000")
	f.Add("--socket=/s\x00--threshold-ms=10\x00--prom-addr=[::1]:0\x00--socket-mode=0o660")
	f.Add("--socket-mode=0o\x00-h")
	f.Add("--socket=/s\x00--threshold-ms=10\x00--socket-queue=0\x00--socket-queue\x0065536")
	f.Add("--prom-addr\x00[::1]:0\x00--recovery-exec\x00 \x00--")
	f.Add("--socket=/s\x00--threshold-ms=10\x00--prom-addr=router1:9100")
	f.Add("--socket=/s\x00--threshold-ms=10\x00--prom-addr=[::ffff:127.0.0.1]:0")
	f.Add("--socket=/s\x00--threshold-ms=10\x00--prom-addr=[1:2:3:4:5:6:1.2.3.4]:65535\x00--prom-addr=localhost:1")
	f.Add("--socket=/s\x00--threshold-ms=10\x00--export-file-kinds=stall, missing,io\x00--prom-pid-series=no\x00--config=/c")
	f.Fuzz(func(t *testing.T, line string) {
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		c, err := parseArgs(args)
		if err != nil {
			if _, ok := err.(*flagError); !ok {
				t.Fatalf("parseArgs(%q) error %T %v, want *flagError", args, err, err)
			}
			if err.Error() == "" {
				t.Fatalf("parseArgs(%q) returned an empty error", args)
			}
			return
		}
		checkConfigRanges(t, args, &c)
		canon := renderArgs(&c)
		c2, err := parseArgs(canon)
		if err != nil {
			t.Fatalf("parseArgs(%q) accepted, but its canonical form %q fails: %v", args, canon, err)
		}
		if c2 != c {
			t.Fatalf("parseArgs(%q) = %+v\ncanonical form %q parses to %+v", args, c, canon, c2)
		}
	})
}

func checkConfigRanges(t *testing.T, args []string, c *config) {
	t.Helper()
	if c.showHelp || c.showVersion {
		return // the observer prints and exits; nothing else is used
	}
	if err := c.validate(); err != nil {
		t.Fatalf("parseArgs(%q) accepted a config that validate() rejects: %v", args, err)
	}
	bad := func(what string, v any) { t.Fatalf("parseArgs(%q) accepted %s = %v", args, what, v) }
	switch {
	case c.socket == "":
		bad("an empty socket", c.socket)
	case c.thresholdMs < 10 || c.thresholdMs > 86_400_000:
		bad("threshold-ms", c.thresholdMs)
	case c.socketMode > 0o777:
		bad("socket-mode", fmt.Sprintf("%#o", c.socketMode))
	case c.trackerCapacity < 1 || c.trackerCapacity > 65536:
		bad("tracker-capacity", c.trackerCapacity)
	case c.socketQueue < -1 || c.socketQueue > 65536:
		bad("socket-queue", c.socketQueue)
	case c.exportMaxBytes < 0:
		bad("export-file-max-bytes", c.exportMaxBytes)
	case c.exportKeep < 0:
		bad("export-file-keep", c.exportKeep)
	case c.promRate < 0 || c.promBurst < 0:
		bad("prom rate limit", [2]int64{c.promRate, c.promBurst})
	case c.recoveryDebounceMs < 0 || c.recoveryTimeoutMs < 0 || c.shutdownGraceMs < 0:
		bad("a negative duration", [3]int64{c.recoveryDebounceMs, c.recoveryTimeoutMs, c.shutdownGraceMs})
	case c.shutdownAfterSecs < 0:
		bad("shutdown-after-secs", c.shutdownAfterSecs)
	case c.recoveryCmd != "" && c.recoveryExec != "":
		bad("both recovery flags", [2]string{c.recoveryCmd, c.recoveryExec})
	case c.promTokenFile != "" && c.promAddr == "":
		bad("a token file without an address", c.promTokenFile)
	}
	if c.promAddr != "" {
		if _, err := parseListenAddr(c.promAddr); err != nil {
			bad("a prom-addr the listener cannot parse", c.promAddr)
		}
	}
}

// renderArgs writes c as the canonical command line: every value flag in
// --flag=value form (so a value may start with a dash), strings only when
// set, numbers always.
func renderArgs(c *config) []string {
	var a []string
	str := func(name, v string) {
		if v != "" {
			a = append(a, "--"+name+"="+v)
		}
	}
	num := func(name string, v int64) { a = append(a, "--"+name+"="+strconv.FormatInt(v, 10)) }
	str("socket", c.socket)
	if c.thresholdMs != 0 {
		num("threshold-ms", c.thresholdMs)
	}
	a = append(a, fmt.Sprintf("--socket-mode=0%o", c.socketMode))
	num("tracker-capacity", int64(c.trackerCapacity))
	if c.socketQueue >= 0 { // -1: not given, the default
		num("socket-queue", int64(c.socketQueue))
	}
	str("export-file", c.exportFile)
	num("export-file-max-bytes", c.exportMaxBytes)
	num("export-file-keep", int64(c.exportKeep))
	str("prom-addr", c.promAddr)
	str("prom-token-file", c.promTokenFile)
	num("prom-rate-limit-per-sec", c.promRate)
	num("prom-rate-limit-burst", c.promBurst)
	str("recovery-cmd", c.recoveryCmd)
	str("recovery-exec", c.recoveryExec)
	num("recovery-debounce-ms", c.recoveryDebounceMs)
	num("recovery-timeout-ms", c.recoveryTimeoutMs)
	num("shutdown-grace-ms", c.shutdownGraceMs)
	str("hw-watchdog", c.hwWatchdog)
	if c.shutdownAfterSecs != 0 {
		num("shutdown-after-secs", c.shutdownAfterSecs)
	}
	if c.logJSON {
		a = append(a, "--log-format=json")
	} else {
		a = append(a, "--log-format=text")
	}
	str("config", c.configPath)
	if c.exportKinds != allKinds {
		a = append(a, "--export-file-kinds="+kindsString(c.exportKinds))
	}
	if !c.promPidSeries {
		a = append(a, "--prom-pid-series=off")
	}
	if c.showVersion {
		a = append(a, "--version")
	}
	if c.showHelp {
		a = append(a, "--help")
	}
	return a
}
