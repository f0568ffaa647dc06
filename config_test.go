package main

import (
	"bytes"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// req is the smallest valid command line.
// A directory that does not exist: should a bad case be accepted, the
// observer fails at bind instead of running.
var req = []string{"--socket", "/nonexistent-varta/v.sock", "--threshold-ms", "100"}

func withReq(args ...string) []string { return append(append([]string{}, req...), args...) }

func TestParseArgsGood(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(c config) bool
	}{
		{"defaults", req, func(c config) bool {
			return c.socket == "/nonexistent-varta/v.sock" && c.thresholdMs == 100 && c.socketMode == 0o600 &&
				c.trackerCapacity == 4096 && c.exportKeep == 5 && c.promBurst == 10 &&
				c.recoveryDebounceMs == 1000 && c.shutdownGraceMs == 5000 && !c.logJSON &&
				c.exportFile == "" && c.promAddr == "" && c.shutdownAfterSecs == 0
		}},
		{"equals form", []string{"--socket=/a b/s", "--threshold-ms=250"}, func(c config) bool {
			return c.socket == "/a b/s" && c.thresholdMs == 250
		}},
		{"value may contain =", []string{"--socket=/x=y", "--threshold-ms", "10"}, func(c config) bool {
			return c.socket == "/x=y" && c.thresholdMs == 10
		}},
		{"single dash", []string{"-socket", "/s", "-threshold-ms=20"}, func(c config) bool {
			return c.socket == "/s" && c.thresholdMs == 20
		}},
		{"threshold upper bound", []string{"--socket", "/s", "--threshold-ms", "86400000"}, func(c config) bool {
			return c.thresholdMs == 86_400_000
		}},
		{"mode 600", withReq("--socket-mode", "600"), func(c config) bool { return c.socketMode == 0o600 }},
		{"mode 0600", withReq("--socket-mode", "0600"), func(c config) bool { return c.socketMode == 0o600 }},
		{"mode 0o600", withReq("--socket-mode=0o600"), func(c config) bool { return c.socketMode == 0o600 }},
		{"mode 0O660", withReq("--socket-mode=0O660"), func(c config) bool { return c.socketMode == 0o660 }},
		{"mode 0777", withReq("--socket-mode", "0777"), func(c config) bool { return c.socketMode == 0o777 }},
		{"mode 0", withReq("--socket-mode", "0"), func(c config) bool { return c.socketMode == 0 }},
		{"capacity 1", withReq("--tracker-capacity", "1"), func(c config) bool { return c.trackerCapacity == 1 }},
		{"capacity 65536", withReq("--tracker-capacity", "65536"), func(c config) bool { return c.trackerCapacity == 65536 }},
		{"export", withReq("--export-file", "/tmp/e.tsv", "--export-file-max-bytes", "1048576", "--export-file-keep", "0"),
			func(c config) bool {
				return c.exportFile == "/tmp/e.tsv" && c.exportMaxBytes == 1<<20 && c.exportKeep == 0
			}},
		{"prom", withReq("--prom-addr", "127.0.0.1:0", "--prom-token-file", "/t", "--prom-rate-limit-per-sec", "5", "--prom-rate-limit-burst", "0"),
			func(c config) bool {
				return c.promAddr == "127.0.0.1:0" && c.promTokenFile == "/t" && c.promRate == 5 && c.promBurst == 0
			}},
		{"prom ipv6", withReq("--prom-addr", "[::1]:9100"), func(c config) bool { return c.promAddr == "[::1]:9100" }},
		{"prom any host", withReq("--prom-addr", ":9100"), func(c config) bool { return c.promAddr == ":9100" }},
		{"prom localhost", withReq("--prom-addr", "localhost:9100"), func(c config) bool { return c.promAddr == "localhost:9100" }},
		{"prom ipv4-mapped", withReq("--prom-addr", "[::ffff:127.0.0.1]:0"), func(c config) bool {
			return c.promAddr == "[::ffff:127.0.0.1]:0"
		}},
		{"prom last wins", withReq("--prom-addr", "127.0.0.1:1", "--prom-addr", "[::1]:2"), func(c config) bool {
			return c.promAddr == "[::1]:2"
		}},
		{"recovery cmd", withReq("--recovery-cmd", "kill -HUP {pid}", "--recovery-debounce-ms", "0", "--recovery-timeout-ms", "500"),
			func(c config) bool {
				return c.recoveryCmd == "kill -HUP {pid}" && c.recoveryDebounceMs == 0 && c.recoveryTimeoutMs == 500
			}},
		{"recovery exec", withReq("--recovery-exec", "/bin/kill -HUP {pid}"), func(c config) bool {
			return c.recoveryExec == "/bin/kill -HUP {pid}"
		}},
		{"lifecycle", withReq("--shutdown-grace-ms", "0", "--hw-watchdog", "/dev/watchdog", "--shutdown-after-secs", "3", "--log-format", "json"),
			func(c config) bool {
				return c.shutdownGraceMs == 0 && c.hwWatchdog == "/dev/watchdog" && c.shutdownAfterSecs == 3 && c.logJSON
			}},
		{"log text", withReq("--log-format=text"), func(c config) bool { return !c.logJSON }},
		{"last one wins", withReq("--threshold-ms", "300"), func(c config) bool { return c.thresholdMs == 300 }},
		{"help alone", []string{"--help"}, func(c config) bool { return c.showHelp }},
		{"-h alone", []string{"-h"}, func(c config) bool { return c.showHelp }},
		{"version alone", []string{"--version"}, func(c config) bool { return c.showVersion }},
		{"help skips required", []string{"--socket", "/s", "-h"}, func(c config) bool { return c.showHelp }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseArgs(tc.args)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			if !tc.check(c) {
				t.Fatalf("parseArgs(%q) = %+v", tc.args, c)
			}
		})
	}
}

// badCommandLines are rejected with exit 2; flag is what the message must
// name.
var badCommandLines = []struct {
	args []string
	flag string
}{
	{[]string{"--threshold-ms", "100"}, "--socket"},
	{[]string{"--socket", "/s"}, "--threshold-ms"},
	{[]string{}, "--socket"},
	{[]string{"--socket", "", "--threshold-ms", "100"}, "--socket"},
	{[]string{"--socket"}, "--socket"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms"}, "--threshold-ms"},
	{withReq("--bogus"), "--bogus"},
	{withReq("--bogus=1"), "--bogus"},
	{withReq("stray"), "stray"},
	{withReq("--"), "--"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "9"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "0"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "-100"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "1.5"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "100ms"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "86400001"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms", "99999999999999999999"}, "--threshold-ms"},
	{[]string{"--socket", "/nonexistent-varta/s", "--threshold-ms="}, "--threshold-ms"},
	{withReq("--socket-mode", "0800"), "--socket-mode"},
	{withReq("--socket-mode", "1777"), "--socket-mode"},
	{withReq("--socket-mode", "0x1ff"), "--socket-mode"},
	{withReq("--socket-mode", "rw-------"), "--socket-mode"},
	{withReq("--socket-mode", "-600"), "--socket-mode"},
	{withReq("--socket-mode", ""), "--socket-mode"},
	{withReq("--socket-mode", "0o"), "--socket-mode"},
	{withReq("--tracker-capacity", "0"), "--tracker-capacity"},
	{withReq("--tracker-capacity", "65537"), "--tracker-capacity"},
	{withReq("--tracker-capacity", "many"), "--tracker-capacity"},
	{withReq("--export-file", ""), "--export-file"},
	{withReq("--export-file-max-bytes", "-1"), "--export-file-max-bytes"},
	{withReq("--export-file-keep", "x"), "--export-file-keep"},
	{withReq("--prom-addr", "localhost"), "--prom-addr"},
	{withReq("--prom-addr", "127.0.0.1:65536"), "--prom-addr"},
	{withReq("--prom-addr", "127.0.0.1:"), "--prom-addr"},
	{withReq("--prom-addr", "::1:9100"), "--prom-addr"},
	{withReq("--prom-addr", "router1:9100"), "--prom-addr"}, // names are not resolved
	{withReq("--prom-addr", "router1.example.net:9100"), "--prom-addr"},
	{withReq("--prom-addr", "[::ffff:127.0.0.1:0"), "--prom-addr"},
	{withReq("--prom-addr", "[fe80::1%eth0]:9100"), "--prom-addr"},
	{withReq("--prom-addr", "300.1.1.1:9100"), "--prom-addr"},
	{withReq("--prom-addr", ""), "--prom-addr"},
	{withReq("--prom-addr", "router1:9100", "--prom-addr", "127.0.0.1:0"), "--prom-addr"}, // a bad value is not hidden by a later one
	{withReq("--prom-token-file", "/t"), "--prom-token-file"},
	{withReq("--prom-rate-limit-per-sec", "-1"), "--prom-rate-limit-per-sec"},
	{withReq("--prom-rate-limit-burst", "b"), "--prom-rate-limit-burst"},
	{withReq("--recovery-cmd", "a", "--recovery-exec", "b"), "--recovery-exec"},
	{withReq("--recovery-exec", "   "), "--recovery-exec"},
	{withReq("--recovery-debounce-ms", "-5"), "--recovery-debounce-ms"},
	{withReq("--recovery-timeout-ms", "soon"), "--recovery-timeout-ms"},
	{withReq("--shutdown-grace-ms", "3600001"), "--shutdown-grace-ms"},
	{withReq("--hw-watchdog="), "--hw-watchdog"},
	{withReq("--shutdown-after-secs", "0"), "--shutdown-after-secs"},
	{withReq("--log-format", "xml"), "--log-format"},
	{withReq("--version=yes"), "--version"},
	{withReq("--help=1"), "--help"},
}

func TestParseArgsBad(t *testing.T) {
	for _, tc := range badCommandLines {
		_, err := parseArgs(tc.args)
		var fe *flagError
		if !errors.As(err, &fe) {
			t.Errorf("parseArgs(%q) = %v, want a flagError", tc.args, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("parseArgs(%q): %q does not name %s", tc.args, err, tc.flag)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("parseArgs(%q): message spans lines: %q", tc.args, err)
		}
	}
}

// TestRealMainBadFlags checks the whole answer to a bad command line: exit
// 2, one line naming the flag, then the usage, all on stderr.
func TestRealMainBadFlags(t *testing.T) {
	for _, tc := range badCommandLines {
		var stdout, stderr bytes.Buffer
		if code := realMain(tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("realMain(%q) = %d, want 2", tc.args, code)
		}
		if stdout.Len() != 0 {
			t.Errorf("realMain(%q) wrote to stdout: %q", tc.args, stdout.String())
		}
		first, rest, _ := strings.Cut(stderr.String(), "\n")
		if !strings.HasPrefix(first, "varta-watch: ") || !strings.Contains(first, tc.flag) {
			t.Errorf("realMain(%q): first stderr line %q does not name %s", tc.args, first, tc.flag)
		}
		if !strings.Contains(rest, usageText) {
			t.Errorf("realMain(%q): usage does not follow the message:\n%s", tc.args, stderr.String())
		}
	}
}

func TestRealMainHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, withReq("-h")} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != 0 {
			t.Errorf("realMain(%q) = %d, want 0", args, code)
		}
		if stdout.String() != usageText || stderr.Len() != 0 {
			t.Errorf("realMain(%q): stdout %q, stderr %q", args, stdout.String(), stderr.String())
		}
	}
	// Every flag the parser knows is documented in the usage.
	for name := range flagSpecs {
		if !strings.Contains(usageText, "--"+name+" ") && !strings.Contains(usageText, "--"+name+"\n") &&
			!strings.Contains(usageText, ", --"+name) {
			t.Errorf("usage does not mention --%s", name)
		}
	}
}

func TestRealMainVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"--version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	re := regexp.MustCompile(`^varta-watch \S+ \(\S+, go\d[^,]*, ` + runtime.GOOS + `/\S+\)\n$`)
	if !re.MatchString(stdout.String()) || stderr.Len() != 0 {
		t.Fatalf("--version printed %q (stderr %q)", stdout.String(), stderr.String())
	}
}
