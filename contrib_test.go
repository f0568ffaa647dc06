//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of the init scripts and the unit under contrib/.

func init() {
	// The sysvinit test starts this test binary, through start-stop-daemon,
	// as a stand-in for varta-watch.
	if record := os.Getenv("VARTA_TEST_FAKE_DAEMON"); record != "" {
		fakeDaemon(record)
	}
}

// fakeDaemon records its arguments and the signals it gets to the file
// record, one line each, and exits 0 on SIGTERM. It notes its pid first, so
// that a failing test can still end it.
func fakeDaemon(record string) {
	note := func(s string) {
		f, err := os.OpenFile(record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			os.Exit(3)
		}
		fmt.Fprintln(f, s)
		f.Close()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	note(fmt.Sprintf("pid %d", os.Getpid()))
	note("args " + strings.Join(os.Args[1:], "|"))
	fmt.Fprintln(os.Stderr, "fake varta-watch: running")
	for s := range sigs {
		note("signal " + s.String())
		if s == syscall.SIGTERM {
			os.Exit(0)
		}
	}
}

var contribShellScripts = []string{
	"contrib/openwrt/varta-watch.init",
	"contrib/sysvinit/varta-watch",
}

func TestContribShellSyntax(t *testing.T) {
	shells := [][]string{{"sh", "-n"}}
	if _, err := exec.LookPath("busybox"); err == nil {
		shells = append(shells, []string{"busybox", "sh", "-n"})
	} else {
		sayNotRun(t, "busybox not installed: checking with sh only")
	}
	for _, script := range contribShellScripts {
		info, err := os.Stat(script)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", script)
		}
		for _, sh := range shells {
			out, err := exec.Command(sh[0], append(sh[1:], script)...).CombinedOutput()
			if err != nil {
				t.Errorf("%s %s: %v\n%s", strings.Join(sh, " "), script, err, out)
			}
		}
	}
}

// openwrtHarness stands in for /etc/rc.common, functions.sh and procd.sh:
// every procd call is printed, one line per call, arguments in brackets.
// config_get and config_get_bool behave as OpenWrt's /lib/functions.sh
// does: config_get takes the default when the option is unset or empty
// (${CONFIG_section_option:-default}), and get_bool maps the true and false
// words and leaves anything else to the default. The options come from
// CONFIG_main_* variables, which the test sets from a UCI file as uci_load
// would (uciOptions).
const openwrtHarness = `
config_load() { echo "config_load $1"; }
config_get() { eval "$1=\${CONFIG_${2}_${3}:-\$4}"; }
config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	case "$_tmp" in
	1 | on | true | yes | enabled) _tmp=1 ;;
	0 | off | false | no | disabled) _tmp=0 ;;
	*) _tmp="$4" ;;
	esac
	eval "$1=\$_tmp"
}
mkdir() { printf 'mkdir'; printf ' [%s]' "$@"; echo; }
procd_open_instance() { echo open_instance; }
procd_close_instance() { echo close_instance; }
procd_set_param() { printf 'set %s' "$1"; shift; printf ' [%s]' "$@"; echo; }
procd_append_param() { printf 'append %s' "$1"; shift; printf ' [%s]' "$@"; echo; }
procd_add_reload_trigger() { echo "reload_trigger $*"; }
. "$1"
start_service
service_triggers
`

// uciOptions reads the options of section 'main' from a UCI file as libuci
// does: values bare or in single or double quotes, '#' starts a comment,
// and an option whose value is empty is not stored at all (libuci's
// uci_set, which the parser calls, returns without creating an option for
// an empty value), so that config_load never sets its variable.
func uciOptions(t *testing.T, text string) map[string]string {
	t.Helper()
	opts := map[string]string{}
	inMain := false
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		var words []string
		for rest != "" && rest[0] != '#' {
			var w string
			switch q := rest[0]; q {
			case '\'', '"':
				end := strings.IndexByte(rest[1:], q)
				if end < 0 {
					t.Fatalf("UCI line %d: unterminated quote: %q", n+1, line)
				}
				w, rest = rest[1:1+end], rest[2+end:]
			default:
				end := strings.IndexAny(rest, " \t")
				if end < 0 {
					end = len(rest)
				}
				w, rest = rest[:end], rest[end:]
			}
			words = append(words, w)
			rest = strings.TrimSpace(rest)
		}
		switch {
		case kw == "config" && len(words) == 2:
			inMain = words[0] == "varta-watch" && words[1] == "main"
		case kw == "option" && len(words) == 2:
			if inMain && words[1] != "" {
				opts[words[0]] = words[1]
			}
		default:
			t.Fatalf("UCI line %d: %q", n+1, line)
		}
	}
	return opts
}

func runOpenWrtInit(t *testing.T, uci string) string {
	t.Helper()
	return runOpenWrtInitFile(t, uci, "")
}

// runOpenWrtInitFile is runOpenWrtInit with the UCI text also written to
// the file the script hands the observer (--config), when file is set.
func runOpenWrtInitFile(t *testing.T, uci, file string) string {
	t.Helper()
	shell := []string{"sh"}
	if _, err := exec.LookPath("busybox"); err == nil {
		shell = []string{"busybox", "sh"} // OpenWrt's shell is BusyBox ash
	}
	harness := filepath.Join(t.TempDir(), "rc.common")
	if err := os.WriteFile(harness, []byte(openwrtHarness), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shell[0], append(shell[1:], harness, "contrib/openwrt/varta-watch.init")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "VARTA_CONFIG_FILE=/nonexistent/varta-watch"}
	if file != "" {
		if err := os.WriteFile(file, []byte(uci), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd.Env[1] = "VARTA_CONFIG_FILE=" + file
	}
	for k, v := range uciOptions(t, uci) {
		cmd.Env = append(cmd.Env, "CONFIG_main_"+k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("start_service: %v\n%s", err, out)
	}
	return string(out)
}

// procdCommand joins the command line that start_service handed to procd.
func procdCommand(out string) string {
	var args []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "set command "); ok {
			args = []string{rest}
		} else if rest, ok := strings.CutPrefix(line, "append command "); ok {
			args = append(args, rest)
		}
	}
	return strings.Join(args, " ")
}

func TestOpenWrtInitDefaults(t *testing.T) {
	out := runOpenWrtInit(t, "")
	want := "[/usr/bin/varta-watch] [--socket] [/var/run/varta/varta.sock] [--socket-mode] [0660] [--threshold-ms] [2000]" +
		" [--export-file] [/var/log/varta/events.tsv] [--export-file-max-bytes] [1048576] [--export-file-keep] [2]" +
		" [--prom-addr] [127.0.0.1:9100]"
	if got := procdCommand(out); got != want {
		t.Errorf("command:\n got %s\nwant %s", got, want)
	}
	for _, line := range []string{
		"set respawn [3600] [5] [5]",
		"set stdout [1]",
		"set stderr [1]",
		"set reload_signal [HUP]",
		"mkdir [-p] [/var/run/varta]",
		"reload_trigger varta-watch",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("start_service does not %q; output:\n%s", line, out)
		}
	}
}

func TestOpenWrtInitUCI(t *testing.T) {
	out := runOpenWrtInit(t, `
config varta-watch 'main'
	option socket '/tmp/v.sock'
	option threshold_ms 500
	option tracker_capacity "64"
	option export_file 'off'
	option prom_addr '192.168.1.1:9200'   # the LAN address
	option recovery_cmd 'kill -HUP {pid}'
	option hw_watchdog '/dev/watchdog1'
	option extra_args '--log-format json'
`)
	want := "[/usr/bin/varta-watch] [--socket] [/tmp/v.sock] [--socket-mode] [0660] [--threshold-ms] [500]" +
		" [--tracker-capacity] [64] [--prom-addr] [192.168.1.1:9200] [--recovery-cmd] [kill -HUP {pid}]" +
		" [--hw-watchdog] [/dev/watchdog1] [--log-format] [json]"
	if got := procdCommand(out); got != want {
		t.Errorf("command:\n got %s\nwant %s", got, want)
	}
}

// TestOpenWrtInitOffSwitch: 'off' (and the other false words) turns the
// event file and the metrics endpoint off, as the script's header says.
// ” cannot: UCI drops the empty option and config_get gives the default,
// which the header says too (before, the header promised that ” turned
// them off).
func TestOpenWrtInitOffSwitch(t *testing.T) {
	base := "[/usr/bin/varta-watch] [--socket] [/var/run/varta/varta.sock] [--socket-mode] [0660] [--threshold-ms] [2000]"
	defaults := base + " [--export-file] [/var/log/varta/events.tsv] [--export-file-max-bytes] [1048576] [--export-file-keep] [2]" +
		" [--prom-addr] [127.0.0.1:9100]"
	for _, tc := range []struct{ export, prom, want string }{
		{"off", "off", base},
		{"0", "no", base},
		{"disabled", "false", base},
		{"off", "[::1]:9101", base + " [--prom-addr] [[::1]:9101]"},
		{"/tmp/e.tsv", "off", base + " [--export-file] [/tmp/e.tsv] [--export-file-max-bytes] [1048576] [--export-file-keep] [2]"},
		{"", "", defaults},
	} {
		out := runOpenWrtInit(t, "config varta-watch 'main'\n\toption export_file '"+tc.export+"'\n\toption prom_addr '"+tc.prom+"'\n")
		if got := procdCommand(out); got != tc.want {
			t.Errorf("export_file %q, prom_addr %q: command\n got %s\nwant %s", tc.export, tc.prom, got, tc.want)
		}
		if tc.export != "" && tc.export[0] != '/' && strings.Contains(out, "/var/log/varta") {
			t.Errorf("export_file %q: the event file's directory is still made:\n%s", tc.export, out)
		}
	}
}

// TestOpenWrtInitHeaderExample runs the script with the configuration its
// own header shows, read from the header: the documented example works.
func TestOpenWrtInitHeaderExample(t *testing.T) {
	b, err := os.ReadFile("contrib/openwrt/varta-watch.init")
	if err != nil {
		t.Fatal(err)
	}
	var uci []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "#   config "); ok {
			uci = append(uci, "config "+rest)
		} else if rest, ok := strings.CutPrefix(line, "#   \toption "); ok && len(uci) > 0 {
			uci = append(uci, "\toption "+rest)
		}
	}
	if len(uci) < 10 {
		t.Fatalf("no example configuration found in the header: %q", uci)
	}
	out := runOpenWrtInit(t, strings.Join(uci, "\n"))
	want := "[/usr/bin/varta-watch] [--socket] [/var/run/varta/varta.sock] [--socket-mode] [0660] [--threshold-ms] [2000]" +
		" [--tracker-capacity] [4096] [--export-file] [/var/log/varta/events.tsv] [--export-file-max-bytes] [1048576]" +
		" [--export-file-keep] [2] [--prom-addr] [192.168.1.1:9100] [--recovery-cmd] [/etc/init.d/myagent restart]"
	if got := procdCommand(out); got != want {
		t.Errorf("command:\n got %s\nwant %s", got, want)
	}
	// And the example's prom_addr is one the observer accepts.
	for _, line := range uci {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "option prom_addr "); ok {
			addr := strings.Trim(strings.Fields(v)[0], "'")
			if _, err := parseListenAddr(addr); err != nil {
				t.Errorf("the header's prom_addr %q: %v", addr, err)
			}
		}
	}
}

// TestOpenWrtInitHandsTheFileToTheObserver: with /etc/config/varta-watch
// present the script passes --config and a flag only for what the file
// leaves unset (a flag wins over the file, also at a reload, so a flag
// for a value the file sets would pin it); the command line it builds,
// with that file, is one the observer accepts, with the file's values.
func TestOpenWrtInitHandsTheFileToTheObserver(t *testing.T) {
	file := filepath.Join(t.TempDir(), "varta-watch")
	uci := "config varta-watch 'main'\n\toption threshold_ms '500'\n\toption export_file 'off'\n\toption prom_addr '192.168.1.1:9200'\n" +
		"\nconfig agent 'dnsmasq'\n\toption comm 'dnsmasq'\n"
	out := runOpenWrtInitFile(t, uci, file)
	want := "[/usr/bin/varta-watch] [--config] [" + file + "] [--socket] [/var/run/varta/varta.sock] [--socket-mode] [0660]"
	if got := procdCommand(out); got != want {
		t.Errorf("command:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(out, "set file ["+file+"]") {
		t.Errorf("procd does not watch the file:\n%s", out)
	}
	args := strings.Fields(strings.NewReplacer("[", "", "]", "").Replace(procdCommand(out)))[1:]
	c, err := loadConfig(args)
	if err != nil {
		t.Fatalf("the observer refuses the script's command line %q: %v", args, err)
	}
	if c.thresholdMs != 500 || c.exportFile != "" || c.promAddr != "192.168.1.1:9200" || len(c.agents.specs) != 1 {
		t.Errorf("config from the script's command line: threshold %d, export file %q, prom %q, %d agents",
			c.thresholdMs, c.exportFile, c.promAddr, len(c.agents.specs))
	}
	// The shipped file: every option the script would pass is set there,
	// so the command line is --config and the defaults it leaves unset.
	shipped, err := os.ReadFile("contrib/package/openwrt.config")
	if err != nil {
		t.Fatal(err)
	}
	out = runOpenWrtInitFile(t, string(shipped), file)
	if _, err := loadConfig(strings.Fields(strings.NewReplacer("[", "", "]", "").Replace(procdCommand(out)))[1:]); err != nil {
		t.Errorf("with the shipped /etc/config/varta-watch the observer refuses the command line: %v", err)
	}
}

func TestOpenWrtInitDisabled(t *testing.T) {
	for _, v := range []string{"0", "off", "no"} {
		out := runOpenWrtInit(t, "config varta-watch 'main'\n\toption enabled '"+v+"'\n")
		if strings.Contains(out, "open_instance") {
			t.Errorf("enabled=%s still starts an instance:\n%s", v, out)
		}
	}
}

// sysvinitVariant is one way to run contrib/sysvinit/varta-watch: a shell
// and the directory of the start-stop-daemon it finds first in PATH.
type sysvinitVariant struct{ name, shell, ssdDir string }

// sysvinitVariants lists each start-stop-daemon available (BusyBox's under
// BusyBox sh, the system's under sh), or skips the test where the script
// cannot be exercised. daemon is the program the script will start.
func sysvinitVariants(t *testing.T, daemon string) []sysvinitVariant {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("start-stop-daemon matches processes through Linux /proc")
	}
	if reason := notMatchable(daemon); reason != "" {
		skipBecause(t, "%s", reason)
	}
	var variants []sysvinitVariant
	if busybox, err := exec.LookPath("busybox"); err == nil &&
		exec.Command(busybox, "start-stop-daemon", "--help").Run() == nil {
		dir := t.TempDir()
		if err := os.Symlink(busybox, filepath.Join(dir, "start-stop-daemon")); err != nil {
			t.Fatal(err)
		}
		variants = append(variants, sysvinitVariant{"busybox", "busybox sh", dir})
	} else {
		sayNotRun(t, "no BusyBox with start-stop-daemon installed: the script is not tried under BusyBox")
	}
	for _, p := range []string{"start-stop-daemon", "/sbin/start-stop-daemon", "/usr/sbin/start-stop-daemon"} {
		if ssd, err := exec.LookPath(p); err == nil {
			variants = append(variants, sysvinitVariant{"system", "sh", filepath.Dir(ssd)})
			break
		}
	}
	if len(variants) == 0 {
		skipBecause(t, "no start-stop-daemon (neither BusyBox's nor the system's) installed")
	}
	return variants
}

// runSysvinit runs the script's action with env (PATH is prepended with
// the variant's start-stop-daemon) and checks its exit status.
func runSysvinit(t *testing.T, v sysvinitVariant, env []string, action string, wantCode int) string {
	t.Helper()
	script, err := filepath.Abs("contrib/sysvinit/varta-watch")
	if err != nil {
		t.Fatal(err)
	}
	shell := strings.Fields(v.shell)
	cmd := exec.Command(shell[0], append(shell[1:], script, action)...)
	cmd.Env = append([]string{"PATH=" + v.ssdDir + ":" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	if code != wantCode {
		t.Fatalf("%s: exit %d, want %d\n%s", action, code, wantCode, out)
	}
	return string(out)
}

// TestSysvinitScript drives contrib/sysvinit/varta-watch through start,
// status, reload and stop with each start-stop-daemon available.
func TestSysvinitScript(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range sysvinitVariants(t, self) {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			record := filepath.Join(dir, "record")
			socket := filepath.Join(dir, "run dir", "it's.sock") // quoting must survive
			conf := filepath.Join(dir, "conf dir", "varta-watch.conf")
			os.MkdirAll(filepath.Dir(conf), 0o755)
			if err := os.WriteFile(conf, []byte("config agent 'a'\n\toption comm 'a'\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			env := []string{
				"DAEMON=" + self,
				"PIDFILE=" + filepath.Join(dir, "pid", "varta-watch.pid"),
				"LOGFILE=" + filepath.Join(dir, "log", "varta-watch.log"),
				"VARTA_SOCKET=" + socket,
				"VARTA_EXPORT_FILE=" + filepath.Join(dir, "events", "events.tsv"),
				// One argument each, spaces and quotes and all.
				"VARTA_RECOVERY_EXEC=/usr/sbin/restart-agent --pid {pid} --why=it's  stalled",
				"VARTA_EXTRA_ARGS=--hw-watchdog /dev/null --log-format json",
				"STOP_TIMEOUT=5",
				"VARTA_TEST_FAKE_DAEMON=" + record,
				"VARTA_CONFIG=" + conf, // exists: passed with --config first
			}
			run := func(action string, wantCode int) string {
				t.Helper()
				return runSysvinit(t, v, env, action, wantCode)
			}
			waitRecord := func(want string) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for {
					b, _ := os.ReadFile(record)
					if bytes.Contains(b, []byte(want)) {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("daemon record lacks %q:\n%s", want, b)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}

			t.Cleanup(func() {
				// Whatever the script did, end every fake daemon it started.
				b, _ := os.ReadFile(record)
				for _, line := range strings.Split(string(b), "\n") {
					var pid int
					if _, err := fmt.Sscanf(line, "pid %d", &pid); err == nil && pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			run("status", 3)
			run("start", 0)
			if out := run("start", 0); !strings.Contains(out, "already running") {
				t.Errorf("second start: %q, want already running", out)
			}
			if out := run("status", 0); !strings.Contains(out, "running (pid") {
				t.Errorf("status: %q", out)
			}
			waitRecord("args --config|" + conf + "|--socket|" + socket + "|--socket-mode|0660|--threshold-ms|2000|--export-file|" +
				filepath.Join(dir, "events", "events.tsv") + "|--export-file-max-bytes|1048576|--prom-addr|127.0.0.1:9100|" +
				"--recovery-exec|/usr/sbin/restart-agent --pid {pid} --why=it's  stalled|--hw-watchdog|/dev/null|--log-format|json\n")
			if _, err := os.Stat(filepath.Dir(socket)); err != nil {
				t.Errorf("start did not create the socket directory: %v", err)
			}
			run("reload", 0)
			waitRecord("signal hangup\n")
			run("stop", 0)
			waitRecord("signal terminated\n")
			run("status", 3)
			run("reload", 7) // not running: logrotate's postrotate sees it
			if log, _ := os.ReadFile(filepath.Join(dir, "log", "varta-watch.log")); !bytes.Contains(log, []byte("fake varta-watch: running")) {
				t.Errorf("stderr did not reach LOGFILE: %q", log)
			}
		})
	}
}

// sysvinitRealEnv is the environment for running the real observer through
// the script in dir, with the metrics endpoint on a free port.
func sysvinitRealEnv(dir string, more ...string) []string {
	return append([]string{
		"DAEMON=" + filepath.Join(dir, "bin", "varta-watch"),
		"PIDFILE=" + filepath.Join(dir, "pid", "varta-watch.pid"),
		"LOGFILE=" + filepath.Join(dir, "log", "varta-watch.log"),
		"VARTA_SOCKET=" + filepath.Join(dir, "run", "varta.sock"),
		"VARTA_EXPORT_FILE=" + filepath.Join(dir, "events", "events.tsv"),
		"VARTA_PROM_ADDR=127.0.0.1:0",
		"VARTA_THRESHOLD_MS=200",
		"STOP_TIMEOUT=10",
	}, more...)
}

// sysvinitRealDir returns a directory that every user may traverse (a
// VARTA_USER must reach the binary and the files) holding a copy of the
// real observer in bin/.
func sysvinitRealDir(t *testing.T) string {
	t.Helper()
	binaries(t)
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(observerBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "varta-watch"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// stopSysvinitAtCleanup stops whatever the script started in dir.
func stopSysvinitAtCleanup(t *testing.T, v sysvinitVariant, env []string) {
	t.Cleanup(func() {
		script, _ := filepath.Abs("contrib/sysvinit/varta-watch")
		shell := strings.Fields(v.shell)
		cmd := exec.Command(shell[0], append(shell[1:], script, "stop")...)
		cmd.Env = append([]string{"PATH=" + v.ssdDir + ":" + os.Getenv("PATH")}, env...)
		cmd.Run()
	})
}

// TestSysvinitFailedStartShowsTheError: a start that fails shows the line
// naming the problem, not the log's last lines (for a bad flag, the end of
// the usage), and nothing a previous run logged. The real observer.
func TestSysvinitFailedStartShowsTheError(t *testing.T) {
	dir := sysvinitRealDir(t)
	for _, v := range sysvinitVariants(t, filepath.Join(dir, "bin", "varta-watch")) {
		t.Run(v.name, func(t *testing.T) {
			logfile := filepath.Join(dir, "log", "varta-watch.log")
			os.MkdirAll(filepath.Dir(logfile), 0o755)
			if err := os.WriteFile(logfile, []byte("varta-watch: an old run's error\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				env  []string
				want string
			}{
				{[]string{"VARTA_THRESHOLD_MS=5"}, "varta-watch: --threshold-ms: 5 is out of range"},
				{[]string{"VARTA_PROM_ADDR=router1:9100"}, `varta-watch: --prom-addr: host "router1" is not an IP address`},
				{[]string{"VARTA_RECOVERY_EXEC=/bin/true {pid}", "VARTA_RECOVERY_CMD=true"}, "varta-watch: --recovery-exec excludes --recovery-cmd"},
				{[]string{"VARTA_EXTRA_ARGS=--log-format json --tracker-capacity 0"}, `{"time":`},
				{[]string{"VARTA_SOCKET=" + filepath.Join(dir, "events")}, "varta-watch: socket " + filepath.Join(dir, "events")},
			} {
				env := sysvinitRealEnv(dir, tc.env...)
				stopSysvinitAtCleanup(t, v, env)
				os.MkdirAll(filepath.Join(dir, "events"), 0o755) // a directory where the socket should be
				out := runSysvinit(t, v, env, "start", 1)
				if !strings.Contains(out, "failed to start") || !strings.Contains(out, tc.want) {
					t.Errorf("%q: start output lacks %q:\n%s", tc.env, tc.want, out)
				}
				if strings.Contains(out, "an old run") || strings.Contains(out, "-h, --help") {
					t.Errorf("%q: start output shows another run's line or the end of the usage:\n%s", tc.env, out)
				}
			}
		})
	}
}

// TestSysvinitRecoveryCommand: VARTA_RECOVERY_CMD reaches the real observer
// as one argument and runs on a real stall.
func TestSysvinitRecoveryCommand(t *testing.T) {
	dir := sysvinitRealDir(t)
	for _, v := range sysvinitVariants(t, filepath.Join(dir, "bin", "varta-watch")) {
		t.Run(v.name, func(t *testing.T) {
			mark := filepath.Join(dir, "recovered-"+v.name)
			env := sysvinitRealEnv(dir, "VARTA_RECOVERY_CMD=echo stalled {pid} >> '"+mark+"'; echo done >> '"+mark+"'")
			stopSysvinitAtCleanup(t, v, env)
			runSysvinit(t, v, env, "start", 0)
			a := runAgent(t, filepath.Join(dir, "run", "varta.sock"), "--count", "1")
			deadline := time.Now().Add(20 * time.Second)
			for {
				b, _ := os.ReadFile(mark)
				if string(b) == "stalled "+a.pid+"\ndone\n" {
					break
				}
				if time.Now().After(deadline) {
					log, _ := os.ReadFile(filepath.Join(dir, "log", "varta-watch.log"))
					t.Fatalf("recovery mark %q, want the stalled pid %s\nlog:\n%s", b, a.pid, log)
				}
				time.Sleep(20 * time.Millisecond)
			}
			runSysvinit(t, v, env, "stop", 0)
		})
	}
}

// TestSysvinitUserSwitch: after a run as root, a start with VARTA_USER
// works: the script hands the root-owned event file, its generations, the
// log and the directories to the user, but never through a symbolic link
// and never a file with a second name (a planted hard link). The real
// observer, as nobody.
func TestSysvinitUserSwitch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching VARTA_USER needs root")
	}
	const user, uid = "nobody", 65534
	if b, _ := os.ReadFile("/etc/passwd"); !bytes.Contains(b, []byte("\n"+user+":x:65534:")) {
		t.Skip("no user nobody with uid 65534")
	}
	dir := sysvinitRealDir(t)
	for _, v := range sysvinitVariants(t, filepath.Join(dir, "bin", "varta-watch")) {
		t.Run(v.name, func(t *testing.T) {
			events := filepath.Join(dir, "events", "events.tsv")
			os.RemoveAll(filepath.Dir(events))
			rootEnv := sysvinitRealEnv(dir, "VARTA_USER=")
			stopSysvinitAtCleanup(t, v, rootEnv)
			runSysvinit(t, v, rootEnv, "start", 0)
			a := runAgent(t, filepath.Join(dir, "run", "varta.sock"), "--count", "1")
			waitFileContains(t, events, "\tbeat\t"+a.pid+"\t")
			runSysvinit(t, v, rootEnv, "stop", 0)

			// What a root run leaves, and what someone may plant beside it.
			victim := filepath.Join(dir, "victim")
			if err := os.WriteFile(victim, []byte("secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(events+".1", []byte("an old generation\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(victim, events+".2"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, events+".3"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(events+".notes", []byte("not the observer's\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{events, filepath.Dir(events)} {
				if st := statOwner(t, f); st != 0 {
					t.Fatalf("%s owned by %d after the root run, want 0", f, st)
				}
			}

			userEnv := sysvinitRealEnv(dir, "VARTA_USER="+user)
			stopSysvinitAtCleanup(t, v, userEnv)
			out := runSysvinit(t, v, userEnv, "start", 0)
			if !strings.Contains(out, "has 2 names") {
				t.Errorf("start does not say why it left the hard link alone:\n%s", out)
			}
			b := runAgent(t, filepath.Join(dir, "run", "varta.sock"), "--count", "1")
			waitFileContains(t, events, "\tbeat\t"+b.pid+"\t")
			for f, want := range map[string]int{
				events: uid, events + ".1": uid, filepath.Dir(events): uid, filepath.Join(dir, "run"): uid,
				filepath.Join(dir, "log", "varta-watch.log"): uid,
				victim: 0, events + ".notes": 0,
			} {
				if got := statOwner(t, f); got != want {
					t.Errorf("%s owned by %d, want %d", f, got, want)
				}
			}
			var lst syscall.Stat_t
			if err := syscall.Lstat(events+".3", &lst); err != nil || lst.Uid != 0 {
				t.Errorf("the planted symlink itself was handed over: %v uid %d", err, lst.Uid)
			}
			runSysvinit(t, v, userEnv, "stop", 0)
		})
	}
}

func statOwner(t *testing.T, path string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid)
}

func waitFileContains(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q:\n%s", path, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notMatchable says why start-stop-daemon -x could not find the fake daemon
// started from exe, or "" if it can: under go test -exec qemu-*, the test
// binary either cannot be executed at all or runs as qemu's process, and
// /proc/PID/exe names qemu.
func notMatchable(exe string) string {
	// A probe that finds its child already gone (seen once under two
	// make test side by side) is tried again, and says how the child ended.
	why := ""
	for try := 0; try < 3; try++ {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "VARTA_TEST_FAKE_DAEMON="+os.DevNull)
		if err := cmd.Start(); err != nil {
			return fmt.Sprintf("the test binary cannot run natively (go test -exec?): %v", err)
		}
		seen, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		cmd.Process.Kill()
		status := cmd.Wait()
		if err != nil {
			why = fmt.Sprintf("cannot read /proc/PID/exe: %v (the probe ended: %v)", err, status)
			continue
		}
		if seen != exe {
			return fmt.Sprintf("the test binary runs as %s (an emulator?): start-stop-daemon -x cannot match it", seen)
		}
		return ""
	}
	return why
}

func TestSystemdUnit(t *testing.T) {
	const unit = "contrib/systemd/varta-watch.service"
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, directive := range []string{
		"Type=notify", "NotifyAccess=main", "WatchdogSec=10s", "Restart=on-failure",
		"DynamicUser=yes", "RuntimeDirectory=varta", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "ProtectHome=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "MemoryMax=",
		"--socket /run/varta/varta.sock", "--threshold-ms 2000",
	} {
		if !strings.Contains(text, directive) {
			t.Errorf("%s lacks %q", unit, directive)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		skipBecause(t, "systemd-analyze not installed: unit not verified")
	}
	// verify insists that ExecStart= exists: point it at this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "varta-watch.service")
	text = strings.ReplaceAll(text, "/usr/local/bin/varta-watch", self)
	if err := os.WriteFile(copyPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestReadmeQuickStart: the Quick start's commands create the directories
// its observer command uses (the observer creates none), and the logrotate
// snippet does not signal through pidof, which fails with none or two
// observers.
func TestReadmeQuickStart(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, quick, ok := strings.Cut(readme, "## Quick start\n")
	if !ok {
		t.Fatal("README has no Quick start")
	}
	_, block, _ := strings.Cut(quick, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	made := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimPrefix(line, "sudo "), "mkdir -p "); ok {
			rest, _, _ = strings.Cut(rest, "#")
			for _, d := range strings.Fields(rest) {
				made[d] = true
			}
		}
	}
	words := strings.Fields(strings.ReplaceAll(block, "\\\n", " "))
	checked := 0
	for i, w := range words {
		if (w == "--socket" || w == "--export-file") && i+1 < len(words) {
			checked++
			if dir := filepath.Dir(words[i+1]); !made[dir] {
				t.Errorf("Quick start uses %s %s, but no mkdir -p creates %s:\n%s", w, words[i+1], dir, block)
			}
		}
	}
	if checked != 2 {
		t.Errorf("Quick start: found %d of --socket and --export-file:\n%s", checked, block)
	}
	_, post, ok := strings.Cut(readme, "    postrotate\n")
	post, _, _ = strings.Cut(post, "endscript")
	if !ok || strings.Contains(post, "pidof") || !strings.Contains(post, "/etc/init.d/varta-watch reload") {
		t.Errorf("README's logrotate postrotate does not use the init script's reload:\n%s", post)
	}
}

// TestReadmeRouterSection: the router section does not send a binary by
// scp onto the running /usr/bin/varta-watch (that fails with "Text file
// busy") but to a temporary name that mv puts in place; it does not map
// uname -m to a MIPS byte order (32-bit MIPS kernels print "mips" for both);
// and the Packages section names a board family for exactly the .ipk
// architectures ./package builds.
func TestReadmeRouterSection(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, deploy, ok := strings.Cut(string(b), "## Deploying to a router or single-board computer\n")
	if !ok {
		t.Fatal("README has no router section")
	}
	deploy, packages, _ := strings.Cut(deploy, "\n## Packages\n")
	packages, _, _ = strings.Cut(packages, "\n## ")
	for _, line := range strings.Split(deploy, "\n") {
		if strings.Contains(line, "scp ") && strings.Contains(line, ":/usr/bin/varta-watch") &&
			!strings.Contains(line, ":/usr/bin/varta-watch.new") {
			t.Errorf("router section copies onto the running binary: %q", line)
		}
		if strings.Contains(line, "mipsel") && strings.Contains(line, "→ `mipsle`") {
			t.Errorf("router section maps uname -m to a MIPS byte order: %q", line)
		}
	}
	if !strings.Contains(deploy, "mv /usr/bin/varta-watch.new /usr/bin/varta-watch") {
		t.Error("router section does not mv the copied binary into place")
	}
	for _, s := range []string{"opkg print-architecture", "opkg install", "dpkg -i", "hexdump -s 4 -n 2"} {
		if !strings.Contains(deploy, s) {
			t.Errorf("router section does not mention %q", s)
		}
	}
	script, err := os.ReadFile("package")
	if err != nil {
		t.Fatal(err)
	}
	_, ipks, _ := strings.Cut(string(script), "\nIPKS=(\n")
	ipks, _, _ = strings.Cut(ipks, "\n)")
	built := map[string]string{}
	for _, line := range strings.Split(ipks, "\n") {
		f := strings.Fields(strings.Trim(strings.TrimSpace(line), `"`))
		if len(f) == 2 {
			built[f[1]] = strings.TrimPrefix(f[0], "linux/")
		}
	}
	if len(built) < 10 {
		t.Fatalf("read %d .ipk architectures from ./package", len(built))
	}
	listed := map[string]string{}
	for _, line := range strings.Split(packages, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 {
			continue
		}
		first := strings.TrimSpace(cells[1])
		if arch := strings.Trim(first, "`"); len(first) == len(arch)+2 && arch != "" && !strings.ContainsAny(arch, " `") {
			listed[arch] = strings.TrimSpace(cells[2])
		}
	}
	for arch, bin := range built {
		if got, ok := listed[arch]; !ok {
			t.Errorf("README's Packages table has no row for the .ipk architecture %s", arch)
		} else if got != bin {
			t.Errorf("README says %s takes the %s binary; ./package gives it %s", arch, got, bin)
		}
	}
	for arch := range listed {
		if _, ok := built[arch]; !ok {
			t.Errorf("README's Packages table lists %s, which ./package does not build", arch)
		}
	}
}
