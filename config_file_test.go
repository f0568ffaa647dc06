package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// writeConfig writes text to a fresh file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "varta-watch")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, args ...string) config {
	t.Helper()
	c, err := loadConfig(args)
	if err != nil {
		t.Fatalf("loadConfig(%q): %v", args, err)
	}
	return c
}

func TestAgentDefaults(t *testing.T) {
	path := writeConfig(t, `
config varta-watch 'main'
	option socket '/nonexistent-varta/v.sock'
	option threshold_ms '2000'
	option recovery_exec '/bin/kill -HUP {pid}'
	option recovery_debounce_ms '1500'
	option recovery_timeout_ms '700'

config agent 'plain'
	option comm 'plain'

config agent 'own'
	option comm 'own'
	option threshold_ms '5000'
	option recovery_cmd 'restart own'
	option recovery_debounce_ms '0'
	option recovery_timeout_ms '0'
	option expected 'yes'
	option max_recoveries '0'
	option recovery_window_s '60'
	option give_up_min_uptime_s '0'

config agent 'expected'
	list comm 'hostapd'
	list comm 'wpad'
	option expected '1'
	option grace_ms '30000'
	option missing_exec '/etc/init.d/wpad start'
	option give_up_exec '/sbin/reboot'
`)
	c := mustLoad(t, "--config", path)
	if c.configPath != path || c.agents == nil || len(c.agents.specs) != 3 {
		t.Fatalf("config %q, agents %+v", c.configPath, c.agents)
	}
	plain, own, exp := c.agents.specs[0], c.agents.specs[1], c.agents.specs[2]
	if plain.name != "plain" || plain.thresholdMs != 2000 || plain.recoveryExec != "/bin/kill -HUP {pid}" || plain.recoveryCmd != "" ||
		plain.recoveryDebounceMs != 1500 || plain.recoveryTimeoutMs != 700 || plain.expected || plain.graceMs != 2000 ||
		plain.maxRecoveries != 3 || plain.recoveryWindowS != 600 || plain.giveUpMinUptimeS != 900 || plain.giveUpExec != "" {
		t.Errorf("an agent without policy does not take the globals and defaults: %+v", plain)
	}
	if own.thresholdMs != 5000 || own.recoveryCmd != "restart own" || own.recoveryExec != "" || own.recoveryDebounceMs != 0 ||
		own.recoveryTimeoutMs != 0 || !own.expected || own.graceMs != 5000 || own.maxRecoveries != 0 ||
		own.recoveryWindowS != 60 || own.giveUpMinUptimeS != 0 {
		t.Errorf("an agent's own policy is not kept: %+v", own)
	}
	if !reflect.DeepEqual(exp.comm, []string{"hostapd", "wpad"}) || !exp.expected || exp.graceMs != 30000 ||
		exp.missingExec != "/etc/init.d/wpad start" || exp.giveUpExec != "/sbin/reboot" {
		t.Errorf("expected agent: %+v", exp)
	}
	// The command line changes the globals the agents take.
	c2 := mustLoad(t, "--config", path, "--threshold-ms", "300", "--recovery-cmd", "echo {pid}")
	if p := c2.agents.specs[0]; p.thresholdMs != 300 || p.graceMs != 300 || p.recoveryCmd != "echo {pid}" || p.recoveryExec != "" {
		t.Errorf("after --threshold-ms 300 --recovery-cmd: %+v", p)
	}
	if c2.agents.specs[1].thresholdMs != 5000 {
		t.Errorf("a section's own threshold lost to the command line")
	}
	// Resolution works on copies: the parsed file stays unresolved.
	fc, err := readFileConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if fc.agents[0].thresholdMs != 0 || fc.agents[0].recoveryDebounceMs != -1 {
		t.Errorf("parsed spec was resolved in place: %+v", fc.agents[0])
	}
}

func TestCommandLineWinsOverFile(t *testing.T) {
	path := writeConfig(t, `config varta-watch 'main'
	option socket '/nonexistent-varta/file.sock'
	option threshold_ms '2000'
	option recovery_exec '/bin/true {pid}'
	option export_file_kinds 'stall,recovery'
	option prom_pid_series 'off'
	option export_file ''
`)
	c := mustLoad(t, "--config", path)
	if c.socket != "/nonexistent-varta/file.sock" || c.thresholdMs != 2000 || c.recoveryExec != "/bin/true {pid}" ||
		c.promPidSeries || c.exportFile != "" || c.exportKinds != mustKinds(t, "stall,recovery") {
		t.Fatalf("file values not applied: %+v", c)
	}
	c = mustLoad(t, "--threshold-ms", "150", "--config", path, "--socket=/nonexistent-varta/cl.sock",
		"--recovery-cmd", "echo {pid}", "--prom-pid-series", "on", "--export-file-kinds", "beat")
	if c.socket != "/nonexistent-varta/cl.sock" || c.thresholdMs != 150 || c.recoveryCmd != "echo {pid}" || c.recoveryExec != "" ||
		!c.promPidSeries || c.exportKinds != mustKinds(t, "beat") {
		t.Fatalf("the command line did not win: %+v", c)
	}
	// Without the file the command line alone must be complete.
	if _, err := loadConfig([]string{"--socket", "/s"}); err == nil {
		t.Fatal("no threshold anywhere, yet accepted")
	}
}

func mustKinds(t *testing.T, v string) kindMask {
	t.Helper()
	m, err := parseKinds("k", v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fileOptionSamples holds a valid value, different from the default, for
// the main-section option of every flag. TestFileOptionsMapOntoFlags fails
// for a flag missing here, so a new flag cannot be forgotten.
var fileOptionSamples = map[string]string{
	"socket":                  "/nonexistent-varta/sample.sock",
	"threshold-ms":            "1234",
	"socket-mode":             "0660",
	"tracker-capacity":        "77",
	"socket-queue":            "33",
	"export-file":             "/nonexistent-varta/e.tsv",
	"export-file-max-bytes":   "4096",
	"export-file-keep":        "2",
	"export-file-kinds":       "stall,missing,io",
	"prom-addr":               "127.0.0.1:0",
	"prom-token-file":         "/nonexistent-varta/token",
	"prom-rate-limit-per-sec": "3",
	"prom-rate-limit-burst":   "4",
	"prom-pid-series":         "off",
	"recovery-cmd":            "echo {pid}",
	"recovery-exec":           "/bin/kill -HUP {pid}",
	"recovery-debounce-ms":    "11",
	"recovery-timeout-ms":     "12",
	"shutdown-grace-ms":       "13",
	"hw-watchdog":             "/dev/null",
	"shutdown-after-secs":     "14",
	"log-format":              "json",
}

// TestFileOptionsMapOntoFlags: for every flag of the command line, its
// option in the main section gives the same configuration as the flag.
func TestFileOptionsMapOntoFlags(t *testing.T) {
	var flags []string
	for name, spec := range flagSpecs {
		if !spec.noValue && name != "config" {
			flags = append(flags, name)
		}
	}
	sort.Strings(flags)
	if len(flags) < 20 {
		t.Fatalf("only %d flags found", len(flags))
	}
	for _, name := range flags {
		v, ok := fileOptionSamples[name]
		if !ok {
			t.Errorf("--%s has no sample in fileOptionSamples: add one (and check its option %s works)", name, fileKey(name))
			continue
		}
		base := []string{"--socket", "/nonexistent-varta/v.sock", "--threshold-ms", "100"}
		extra := []string{}
		if name == "prom-token-file" {
			extra = []string{"--prom-addr", "127.0.0.1:0"} // it needs one
		}
		viaFlag, err := parseArgs(append(append(append([]string{}, base...), extra...), "--"+name, v))
		if err != nil {
			t.Errorf("--%s %s: %v", name, v, err)
			continue
		}
		if viaFlag == mustLoadQuiet(t, append(append([]string{}, base...), extra...)) {
			t.Errorf("sample %q of --%s is its default: the test would prove nothing", v, name)
		}
		var lines []string
		if name != "socket" && name != "threshold-ms" {
			lines = []string{"socket '/nonexistent-varta/v.sock'", "threshold_ms '100'"}
		}
		lines = append(lines, fileKey(name)+" '"+v+"'")
		text := "config varta-watch 'main'\n"
		for _, l := range lines {
			text += "\toption " + l + "\n"
		}
		path := writeConfig(t, text)
		var args []string
		if name == "socket" {
			args = []string{"--threshold-ms", "100"}
		} else if name == "threshold-ms" {
			args = []string{"--socket", "/nonexistent-varta/v.sock"}
		}
		viaFile, err := loadConfig(append(append(args, extra...), "--config", path))
		if err != nil {
			t.Errorf("option %s '%s': %v", fileKey(name), v, err)
			continue
		}
		viaFile.configPath, viaFile.agents = "", nil
		if viaFile != viaFlag {
			t.Errorf("option %s '%s' gives\n%+v\n--%s %s gives\n%+v", fileKey(name), v, viaFile, name, v, viaFlag)
		}
	}
}

func mustLoadQuiet(t *testing.T, args []string) config {
	c, err := parseArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFileErrorAfterMerge: a rule between options broken by a value from
// the file is reported at that value's line; the same rule broken on the
// command line stays a flag error.
func TestFileErrorAfterMerge(t *testing.T) {
	path := writeConfig(t, "config varta-watch 'main'\n\toption threshold_ms '100'\n\toption prom_token_file '/t'\n")
	_, err := loadConfig([]string{"--socket", "/s", "--config", path})
	var fe *fileError
	if !errors.As(err, &fe) || err.Error() != path+":3: --prom-token-file needs --prom-addr" {
		t.Fatalf("got %v", err)
	}
	if _, err := loadConfig([]string{"--socket", "/s", "--config", path, "--prom-addr", "127.0.0.1:0"}); err != nil {
		t.Fatalf("--prom-addr on the command line satisfies the file's token file: %v", err)
	}
	_, err = loadConfig([]string{"--socket", "/s", "--config", path, "--prom-token-file", "/u"})
	var flagErr *flagError
	if !errors.As(err, &flagErr) {
		t.Fatalf("a command-line token file without an address: %v, want a flag error", err)
	}
	_, err = loadConfig([]string{"--socket", "/s", "--threshold-ms", "100", "--config", filepath.Join(t.TempDir(), "none")})
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "none: cannot read: no such file or directory") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParseKinds(t *testing.T) {
	all, err := parseKinds("--export-file-kinds", strings.Join(exportKindNames[:], ","))
	if err != nil {
		t.Fatal(err)
	}
	seen := kindMask(0)
	for _, n := range exportKindNames {
		bit, ok := kindBit(n)
		if !ok || bit == 0 || seen&bit != 0 {
			t.Fatalf("kind %s: bit %b (ok %v), bits so far %b", n, bit, ok, seen)
		}
		seen |= bit
	}
	if all != seen {
		t.Fatalf("all kinds %b, want %b", all, seen)
	}
	// Every kind the observer emits is a kind of the contract, with the
	// bit the event file tests.
	for k, n := range eventKindNames {
		if bit, ok := kindBit(n); !ok || bit != 1<<k || !allKinds.has(eventKind(k)) {
			t.Fatalf("eventKind %d (%s): bit %b", k, n, bit)
		}
	}
	m := mustKinds(t, " stall , recovery,stall")
	if !m.has(evStall) || !m.has(evRecovery) || m.has(evBeat) || m.has(evIO) || kindsString(m) != "stall,recovery" {
		t.Fatalf("stall,recovery: %b %q", m, kindsString(m))
	}
	for _, bad := range []string{"", "stall,", "beats", "stall,,io", "Stall"} {
		_, err := parseKinds("--export-file-kinds", bad)
		var fe *flagError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--export-file-kinds") {
			t.Errorf("parseKinds(%q) = %v", bad, err)
		}
	}
	if _, err := parseArgs(withReq("--export-file-kinds", "stall,bogus")); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("a bad kind is not named: %v", err)
	}
}

func TestParseUCIBool(t *testing.T) {
	for _, v := range []string{"1", "on", "true", "yes", "enabled"} {
		if b, err := parseUCIBool("x", v); err != nil || !b {
			t.Errorf("%q: %v %v", v, b, err)
		}
	}
	for _, v := range []string{"0", "off", "false", "no", "disabled"} {
		if b, err := parseUCIBool("x", v); err != nil || b {
			t.Errorf("%q: %v %v", v, b, err)
		}
	}
	for _, v := range []string{"", "2", "On", "y", "enable"} {
		if _, err := parseUCIBool("x", v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

func TestMatchAgent(t *testing.T) {
	fc, err := parseFileConfig("f", []byte(`
config agent 'dnsmasq'
	option comm 'dnsmasq'
config agent 'wifi'
	list comm 'hostapd'
	list comm 'wpad'
	option exe '/usr/sbin/*'
config agent 'cron_job'
	option cmdline '/bin/sh /usr/bin/backup.sh *'
config agent 'any_dnsmasq'
	option exe '*/dnsmasq*'
config agent 'anything'
	option cmdline '*'
`))
	if err != nil {
		t.Fatal(err)
	}
	specs := fc.agents
	for _, tc := range []struct {
		comm, exe, cmdline string
		want               int
	}{
		{"dnsmasq", "/usr/sbin/dnsmasq", "/usr/sbin/dnsmasq -C /var/etc/dnsmasq.conf", 0},
		{"dnsmasq2", "/usr/sbin/dnsmasq", "", 3},           // first match wins, in file order
		{"dnsmasq2", "/usr/sbin/dnsmasq (deleted)", "", 3}, // a replaced binary
		{"hostapd", "/usr/sbin/hostapd", "", 1},
		{"wpad", "/usr/sbin/wpad", "", 1},
		{"wpad", "/tmp/wpad", "", -1}, // all match options must hold
		{"wpad", "", "", -1},          // exe unreadable: no exe option holds
		{"sh", "/bin/busybox", "/bin/sh /usr/bin/backup.sh --daily", 2},
		{"sh", "/bin/busybox", "/bin/sh /usr/bin/backup.sh", 4}, // not cron_job: falls through to anything
		{"", "", "", -1},        // cmdline unreadable: not even '*' holds
		{"x", "", "/bin/x", 4},  // '*' holds for any readable cmdline
		{"x", "/bin/x", "", -1}, // a kernel thread's empty cmdline
	} {
		if got := matchAgent(specs, []byte(tc.comm), []byte(tc.exe), []byte(tc.cmdline)); got != tc.want {
			t.Errorf("matchAgent(%q, %q, %q) = %d, want %d", tc.comm, tc.exe, tc.cmdline, got, tc.want)
		}
	}
	if matchAgent(nil, []byte("x"), nil, nil) != -1 {
		t.Error("no specs, yet a match")
	}
}

// TestRealMainBadConfigFile: a bad file at start is one line PATH:LINE:
// problem on stderr and exit 2, without the usage.
func TestRealMainBadConfigFile(t *testing.T) {
	path := writeConfig(t, "config agent 'a'\n\toption comm 'x'\n\toption threshold_ms '1'\n")
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"--config", path}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	want := path + ":3: threshold_ms: 1 is out of range (10..86400000)\n"
	if stderr.String() != want || stdout.Len() != 0 {
		t.Fatalf("stderr %q, want %q (stdout %q)", stderr.String(), want, stdout.String())
	}
}

// TestContribConfigsParse: the example files that ship with the packages
// parse, and hold what their comments promise.
func TestContribConfigsParse(t *testing.T) {
	for _, tc := range []struct {
		path   string
		agents []string // names, after uncommenting the examples
	}{
		{"contrib/package/openwrt.config", []string{"dnsmasq", "hostapd", "backup"}},
		{"contrib/package/varta-watch.conf", []string{"sshd", "backup", "myapp"}},
	} {
		data, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		fc, err := parseFileConfig(tc.path, data)
		if err != nil {
			t.Fatalf("as shipped: %v", err)
		}
		if fc.mainLine == 0 {
			t.Errorf("%s: no config varta-watch section", tc.path)
		}
		// The agent examples are commented out: uncommented they must
		// parse too, with the names the README describes.
		var b strings.Builder
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "#config agent"); ok {
				line = "config agent" + rest
			} else if rest, ok := strings.CutPrefix(line, "#\t"); ok {
				line = "\t" + rest
			}
			b.WriteString(line)
		}
		fc, err = parseFileConfig(tc.path+" (examples on)", []byte(b.String()))
		if err != nil {
			t.Fatalf("with the examples uncommented: %v", err)
		}
		var names []string
		for _, a := range fc.agents {
			names = append(names, a.name)
			if !validOptionName(a.name) {
				t.Errorf("%s: agent name %q is not a name uci accepts ([A-Za-z0-9_])", tc.path, a.name)
			}
		}
		if !reflect.DeepEqual(names, tc.agents) {
			t.Errorf("%s: agents %q, want %q", tc.path, names, tc.agents)
		}
	}
}
