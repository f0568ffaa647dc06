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
		t.Log("busybox not installed: checking with sh only")
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
// UCI options come from UCI_<option> variables and every procd call is
// printed, one line per call, arguments in brackets.
const openwrtHarness = `
config_load() { echo "config_load $1"; }
config_get() { eval "v=\${UCI_$3-\$4}"; eval "$1=\$v"; }
config_get_bool() {
	config_get "$@"
	eval "case \$$1 in 1|on|true|yes|enabled) $1=1 ;; *) $1=0 ;; esac"
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

func runOpenWrtInit(t *testing.T, uci map[string]string) string {
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
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range uci {
		cmd.Env = append(cmd.Env, "UCI_"+k+"="+v)
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
	out := runOpenWrtInit(t, nil)
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
	out := runOpenWrtInit(t, map[string]string{
		"socket":           "/tmp/v.sock",
		"threshold_ms":     "500",
		"tracker_capacity": "64",
		"export_file":      "",
		"prom_addr":        "192.168.1.1:9200",
		"recovery_cmd":     "kill -HUP {pid}",
		"hw_watchdog":      "/dev/watchdog1",
		"extra_args":       "--log-format json",
	})
	want := "[/usr/bin/varta-watch] [--socket] [/tmp/v.sock] [--socket-mode] [0660] [--threshold-ms] [500]" +
		" [--tracker-capacity] [64] [--prom-addr] [192.168.1.1:9200] [--recovery-cmd] [kill -HUP {pid}]" +
		" [--hw-watchdog] [/dev/watchdog1] [--log-format] [json]"
	if got := procdCommand(out); got != want {
		t.Errorf("command:\n got %s\nwant %s", got, want)
	}
}

func TestOpenWrtInitDisabled(t *testing.T) {
	out := runOpenWrtInit(t, map[string]string{"enabled": "0"})
	if strings.Contains(out, "open_instance") {
		t.Errorf("enabled=0 still starts an instance:\n%s", out)
	}
}

// TestSysvinitScript drives contrib/sysvinit/varta-watch through start,
// status, reload and stop with each start-stop-daemon available: BusyBox's
// under BusyBox sh, and the system's under sh.
func TestSysvinitScript(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("start-stop-daemon matches processes through Linux /proc")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if reason := notMatchable(self); reason != "" {
		t.Skip(reason)
	}
	type variant struct{ name, shell, ssdDir string }
	var variants []variant
	if busybox, err := exec.LookPath("busybox"); err == nil &&
		exec.Command(busybox, "start-stop-daemon", "--help").Run() == nil {
		dir := t.TempDir()
		if err := os.Symlink(busybox, filepath.Join(dir, "start-stop-daemon")); err != nil {
			t.Fatal(err)
		}
		variants = append(variants, variant{"busybox", "busybox sh", dir})
	}
	for _, p := range []string{"start-stop-daemon", "/sbin/start-stop-daemon", "/usr/sbin/start-stop-daemon"} {
		if ssd, err := exec.LookPath(p); err == nil {
			variants = append(variants, variant{"system", "sh", filepath.Dir(ssd)})
			break
		}
	}
	if len(variants) == 0 {
		t.Skip("no start-stop-daemon (neither BusyBox's nor the system's) installed")
	}
	script, err := filepath.Abs("contrib/sysvinit/varta-watch")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			record := filepath.Join(dir, "record")
			socket := filepath.Join(dir, "run dir", "it's.sock") // quoting must survive
			env := []string{
				"PATH=" + v.ssdDir + ":" + os.Getenv("PATH"),
				"DAEMON=" + self,
				"PIDFILE=" + filepath.Join(dir, "pid", "varta-watch.pid"),
				"LOGFILE=" + filepath.Join(dir, "log", "varta-watch.log"),
				"VARTA_SOCKET=" + socket,
				"VARTA_EXPORT_FILE=" + filepath.Join(dir, "events", "events.tsv"),
				"VARTA_EXTRA_ARGS=--recovery-exec /usr/sbin/restart-agent",
				"STOP_TIMEOUT=5",
				"VARTA_TEST_FAKE_DAEMON=" + record,
			}
			run := func(action string, wantCode int) string {
				t.Helper()
				shell := strings.Fields(v.shell)
				cmd := exec.Command(shell[0], append(shell[1:], script, action)...)
				cmd.Env = env
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
			waitRecord("args --socket|" + socket + "|--socket-mode|0660|--threshold-ms|2000|--export-file|" +
				filepath.Join(dir, "events", "events.tsv") + "|--export-file-max-bytes|1048576|--prom-addr|127.0.0.1:9100|" +
				"--recovery-exec|/usr/sbin/restart-agent\n")
			if _, err := os.Stat(filepath.Dir(socket)); err != nil {
				t.Errorf("start did not create the socket directory: %v", err)
			}
			run("reload", 0)
			waitRecord("signal hangup\n")
			run("stop", 0)
			waitRecord("signal terminated\n")
			run("status", 3)
			if log, _ := os.ReadFile(filepath.Join(dir, "log", "varta-watch.log")); !bytes.Contains(log, []byte("fake varta-watch: running")) {
				t.Errorf("stderr did not reach LOGFILE: %q", log)
			}
		})
	}
}

// notMatchable says why start-stop-daemon -x could not find the fake daemon
// started from exe, or "" if it can: under go test -exec qemu-*, the test
// binary either cannot be executed at all or runs as qemu's process, and
// /proc/PID/exe names qemu.
func notMatchable(exe string) string {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "VARTA_TEST_FAKE_DAEMON="+os.DevNull)
	if err := cmd.Start(); err != nil {
		return fmt.Sprintf("the test binary cannot run natively (go test -exec?): %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	seen, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
	if err != nil {
		return fmt.Sprintf("cannot read /proc/PID/exe: %v", err)
	}
	if seen != exe {
		return fmt.Sprintf("the test binary runs as %s (an emulator?): start-stop-daemon -x cannot match it", seen)
	}
	return ""
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
		t.Skip("systemd-analyze not installed: unit not verified")
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
