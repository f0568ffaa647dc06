package main

// Contract §9 (agents by name) and its rows of §5 and §6, with the real
// binary and real agent processes started under other names: a hard link
// of the test agent gives it another comm (the kernel takes comm from the
// name exec'd) and another exe path.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// agentBinAs makes the test agent available as path (a hard link, or a
// copy where links are refused) and returns path.
func agentBinAs(t *testing.T, path string) string {
	t.Helper()
	binaries(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(agentBin, path); err != nil {
		data, rerr := os.ReadFile(agentBin)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// startAgentBin runs the agent binary at bin (see agentBinAs).
func startAgentBin(t *testing.T, bin, socket string, args ...string) *agentProc {
	t.Helper()
	saved := agentBin
	agentBin = bin
	defer func() { agentBin = saved }()
	return startAgent(t, socket, args...)
}

func writeConfFile(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "varta-watch.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Contract §9 match and policy, §6 agent label: a new pid belongs to the
// first section in file order whose match options all hold (comm, an exe
// glob, a cmdline glob), and stalls at its own section's threshold; a pid
// that matches none keeps the global threshold and an empty agent label.
func TestE2EAgentsMatchedByNameStallAtTheirOwnThreshold(t *testing.T) {
	dir := shortTempDir(t)
	conf := writeConfFile(t, dir, `
config agent 'never'
	# comm holds, cmdline does not: all given options must hold
	option comm 'fastagent'
	option cmdline '* --payload 5'
config agent 'fast'
	option comm 'fastagent'
	option threshold_ms '150'
config agent 'slow'
	option exe '*/opt/slow/bin/*'
	option threshold_ms '900'
config agent 'bycmd'
	# fastagent matches this too, but 'fast' comes first
	option cmdline '*--payload 77*'
	option threshold_ms '450'
`)
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1500", "--prom-addr", "127.0.0.1:0", "--config", conf}})
	before := takeSchedSnapshot(p)
	fast := startAgentBin(t, agentBinAs(t, filepath.Join(dir, "fastagent")), p.socket,
		"--interval-ms", "20", "--hang-after", "3", "--payload", "77")
	slow := startAgentBin(t, agentBinAs(t, filepath.Join(dir, "opt/slow/bin/varta-agent")), p.socket,
		"--interval-ms", "20", "--hang-after", "3")
	bycmd := startAgent(t, p.socket, "--interval-ms", "20", "--hang-after", "3", "--payload", "77")
	plain := startAgent(t, p.socket, "--interval-ms", "20", "--hang-after", "3")
	evs := p.waitEvents(15*time.Second, "four stalls", func(evs []tsvEvent) bool { return countEvents(evs, "stall", "") == 4 })
	slack := stallSlackSince(t, p, before)
	for _, c := range []struct {
		a         *agentProc
		threshold time.Duration
		agent     string
		comm      string
	}{
		{fast, 150 * time.Millisecond, "fast", "fastagent"},
		{slow, 900 * time.Millisecond, "slow", "varta-agent"},
		{bycmd, 450 * time.Millisecond, "bycmd", "varta-agent"},
		{plain, 1500 * time.Millisecond, "", "varta-agent"},
	} {
		if n := checkStallsOnTime(t, evs, c.a.pid, c.threshold, slack); n != 1 {
			t.Errorf("agent %q (pid %s): %d stalls, want 1", c.agent, c.a.pid, n)
		}
		body := scrape(t, p, nil)
		series := fmt.Sprintf(`varta_agent_info{pid="%s",comm="%s",agent="%s"}`, c.a.pid, c.comm, c.agent)
		if v := sampleValue(body, series); v != "1" {
			t.Errorf("%s = %q, want 1", series, v)
		}
	}
	body := scrape(t, p, nil)
	promtoolCheck(t, body)
	for series, want := range map[string]string{
		`varta_agent_threshold_seconds{agent="fast"}`:                  "0.15",
		`varta_agent_threshold_seconds{agent="slow"}`:                  "0.9",
		`varta_agent_stalls_total{agent="fast"}`:                       "1",
		`varta_agent_stalls_total{agent="never"}`:                      "0",
		`varta_agent_pids{agent="bycmd",state="stalled"}`:              "1",
		`varta_agent_pids{agent="bycmd",state="beating"}`:              "0",
		`varta_agent_up{agent="slow"}`:                                 "0",
		`varta_agent_recoveries_total{agent="fast",outcome="spawned"}`: "0",
	} {
		if got := sampleValue(body, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
}

// Contract §6: every configured agent's series are there at 0 from the
// first scrape, before any pid beats; --prom-pid-series off leaves the
// per-pid series out but keeps the per-agent ones.
func TestE2EAgentSeriesPresentFromFirstScrape(t *testing.T) {
	dir := shortTempDir(t)
	conf := writeConfFile(t, dir, "config agent 'dnsmasq'\n\toption comm 'dnsmasq'\n\nconfig agent 'hostapd'\n\toption comm 'hostapd'\n")
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0",
		"--config", conf, "--prom-pid-series", "off"}})
	a := startAgent(t, p.socket, "--interval-ms", "20")
	body := waitScrape(t, p, 10*time.Second, "the agent's beats", func(b string) bool {
		return strings.Contains(b, "varta_beats_accepted_total") && !strings.Contains(b, "varta_beats_accepted_total 0\n")
	})
	promtoolCheck(t, body)
	for _, name := range []string{"dnsmasq", "hostapd"} {
		for _, s := range []string{
			`varta_agent_up{agent="%s"}`, `varta_agent_missing{agent="%s"}`, `varta_agent_stalls_total{agent="%s"}`,
			`varta_agent_gave_up{agent="%s"}`, `varta_agent_pids{agent="%s",state="beating"}`,
			`varta_agent_pids{agent="%s",state="stalled"}`, `varta_agent_recoveries_total{agent="%s",outcome="gave_up"}`,
		} {
			series := fmt.Sprintf(s, name)
			if v := sampleValue(body, series); v != "0" {
				t.Errorf("%s = %q, want 0", series, v)
			}
		}
	}
	if v := sampleValue(body, "varta_config_last_reload_successful"); v != "1" {
		t.Errorf("varta_config_last_reload_successful = %q, want 1", v)
	}
	if strings.Contains(body, `pid="`+a.pid+`"`) {
		t.Errorf("per-pid series with --prom-pid-series off")
	}
}
