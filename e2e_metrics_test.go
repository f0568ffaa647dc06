package main

// End-to-end tests of the metrics exposition (contract §6): a live scrape
// through promtool, escaping of what agents control, a real Prometheus
// server storing it, and the shipped alert rules.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Contract §6: a live scrape has the agent's series, text format 0.0.4's
// Content-Type, the process_* series on Linux, and passes promtool check
// metrics.
func TestE2EPromtoolPassesOnLiveScrape(t *testing.T) {
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "200", "--prom-addr", "127.0.0.1:0"}})
	a := startAgent(t, p.socket, "--interval-ms", "20", "--status", "degraded")
	body := waitScrape(t, p, 5*time.Second, "the agent's series", func(b string) bool {
		return sampleValue(b, `varta_status{pid="`+a.pid+`"}`) == "1"
	})
	if v := sampleValue(body, `varta_agent_info{pid="`+a.pid+`",comm="varta-agent",agent=""}`); v != "1" {
		t.Errorf("varta_agent_info for the agent: %q", v)
	}
	r, err := httpDo(t, "GET", p.promAddr, "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(r.body, "process_open_fds ") && isLinux {
		t.Error("no process_open_fds")
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		skipBecause(t, "promtool not installed (Debian package prometheus): the live scrape is not checked by it")
	}
	promtoolCheck(t, r.body)
}

// Contract §6 (the comm label of varta_agent_info) and §8 (one log line per
// message): a process name, which agents choose, is escaped.
//
// TestHostileProcessName runs an agent whose executable name (hence its
// /proc/PID/comm, which the observer logs and exports as a label) holds a
// quote, a backslash, a newline, an equals sign and a space. The log must
// stay one line per message and, once the metrics endpoint exists, the
// label must be escaped as the exposition format says.
func TestHostileProcessName(t *testing.T) {
	binaries(t)
	const name = "a\"b\\c\nd=e f{}" // 14 bytes: comm keeps 15
	dir := shortTempDir(t)
	exe := filepath.Join(dir, name)
	data, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "100", "--prom-addr", "127.0.0.1:0"}})
	cmd := exec.Command(exe, "--socket", o.socket, "--interval-ms", "5", "--hang-after", "3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := strconv.Itoa(cmd.Process.Pid)
	comm, err := os.ReadFile("/proc/" + pid + "/comm")
	if err != nil || strings.TrimSuffix(string(comm), "\n") != name {
		skipBecause(t, "comm of the renamed agent is %q (%v), not %q", comm, err, name)
	}
	o.waitEvents(5*time.Second, "the agent's stall", func(evs []tsvEvent) bool { return countEvents(evs, "stall", pid) == 1 })
	body := scrape(t, o, nil)
	want := `comm="a\"b\\c\nd=e f{}"`
	found := false
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "varta_agent_info{") && strings.Contains(line, `pid="`+pid+`"`) {
			found = strings.Contains(line, want)
			if !found {
				t.Errorf("agent info %q, want the label %s", line, want)
			}
		}
	}
	if !found {
		t.Errorf("no varta_agent_info series for pid %s", pid)
	}
	if code := o.stop(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	stalled := false
	for _, line := range strings.Split(strings.TrimSuffix(o.stderr.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "time=") {
			t.Errorf("log line %q does not start a message: a field broke the line", line)
		}
		if strings.Contains(line, `msg="agent stalled"`) && strings.Contains(line, "pid="+pid) {
			stalled = true
			if !strings.Contains(line, `comm="a\"b\\c\nd=e f{}"`) {
				t.Errorf("stall log line %q: comm not quoted and escaped", line)
			}
		}
	}
	if !stalled {
		t.Errorf("no stall logged for pid %s", pid)
	}
}

// Contract §6: a real Prometheus server scrapes and stores the series.
//
// TestE2EPrometheusIngests runs a real Prometheus server against the
// observer and queries what it stored.
func TestE2EPrometheusIngests(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		skipBecause(t, "prometheus not installed (Debian package prometheus): ingestion not tested")
	}
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0"}})
	a := startAgent(t, p.socket, "--interval-ms", "50")
	prom := startPrometheus(t, fmt.Sprintf("  - job_name: varta\n    static_configs:\n      - targets: ['%s']\n", p.promAddr))
	prom.waitFor(60*time.Second, "storing varta_beats_total of pid "+a.pid, func() (bool, string) {
		s, err := prom.query(`varta_beats_total{job="varta",pid="` + a.pid + `"} > 0`)
		if err != nil || len(s) != 1 {
			return false, fmt.Sprintf("%v %v", s, err)
		}
		up, err := prom.query(`up{job="varta"}`)
		if err != nil || len(up) != 1 || up[0].value != "1" {
			return false, fmt.Sprintf("up{job=\"varta\"} = %v (%v)", up, err)
		}
		return true, ""
	})
}

// Contract §6, as the shipped alerting reads it: the rules under
// contrib/prometheus.
//
// TestPrometheusContrib checks the shipped alert rules and example
// configuration with promtool: the rules parse, their unit tests
// (alerts_test.yml) pass, the recording rules parse and pass theirs
// (rules_test.yml), and the example prometheus.yml is valid.
func TestPrometheusContrib(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		skipBecause(t, "promtool not installed (Debian package prometheus): contrib/prometheus not checked")
	}
	dir := filepath.Join("contrib", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "rules", "rules.yml"},
		{"test", "rules", "rules_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
