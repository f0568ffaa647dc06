//go:build linux

package main

// Contract §9 (agents by name) and its rows of §5 and §6, with the real
// binary and real agent processes started under other names: a hard link
// of the test agent gives it another comm (the kernel takes comm from the
// name exec'd) and another exe path.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// writeScript writes an executable shell script that appends its
// arguments as one line to log, and returns its path.
func writeScript(t *testing.T, dir, name, log string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	text := "#!/bin/sh\necho \"$*\" >> " + log + "\n"
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// scriptRuns returns the lines a writeScript script logged so far.
func scriptRuns(log string) []string {
	b, _ := os.ReadFile(log)
	return strings.Fields(strings.ReplaceAll(string(b), "\n", " \n"))
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lineCount(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// Contract §9 expected, §5 missing row, §6 varta_agent_missing: an
// expected agent that never starts gives exactly one missing event after
// its grace and runs missing_exec once (without a pid); it clears when a
// pid of it beats, and is re-armed when that pid stalls.
func TestE2EExpectedAgentMissingOnceThenBack(t *testing.T) {
	dir := shortTempDir(t)
	runs := filepath.Join(dir, "missing.log")
	script := writeScript(t, dir, "start-dnsmasq", runs)
	conf := writeConfFile(t, dir, `
config agent 'dnsmasq'
	option comm 'dnsmasq'
	option threshold_ms '200'
	option expected '1'
	option grace_ms '300'
	option missing_exec '`+script+` started'
`)
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0", "--config", conf}})
	body := scrape(t, p, nil)
	if v := sampleValue(body, `varta_agent_missing{agent="dnsmasq"}`); v != "0" {
		t.Errorf("varta_agent_missing before the grace ran out = %q, want 0", v)
	}
	evs := p.waitEvents(10*time.Second, "the missing event", func(evs []tsvEvent) bool { return countEvents(evs, "missing", "") == 1 })
	if e := filterEvents(evs, "missing", "")[0]; e.pid != "-" || e.nonce != "-" || e.status != "-" || e.payload != "dnsmasq" {
		t.Errorf("missing row %q, want <ns> missing - - - dnsmasq", e.line)
	}
	waitFor(t, 10*time.Second, "missing_exec to run", func() bool { return lineCount(runs) == 1 })
	waitScrape(t, p, 10*time.Second, "varta_agent_missing 1", func(b string) bool {
		return sampleValue(b, `varta_agent_missing{agent="dnsmasq"}`) == "1" && sampleValue(b, `varta_agent_up{agent="dnsmasq"}`) == "0"
	})
	// Several graces later still one event and one run: missing is said once.
	time.Sleep(1200 * time.Millisecond)
	if n := countEvents(p.readEvents(), "missing", ""); n != 1 {
		t.Fatalf("%d missing events while the agent stayed away, want 1", n)
	}
	if b, _ := os.ReadFile(runs); string(b) != "started\n" {
		t.Fatalf("missing_exec ran with %q, want one run with its argument alone", b)
	}

	a := startAgentBin(t, agentBinAs(t, filepath.Join(dir, "dnsmasq")), p.socket, "--interval-ms", "20", "--hang-after", "20")
	waitScrape(t, p, 10*time.Second, "the agent back", func(b string) bool {
		return sampleValue(b, `varta_agent_missing{agent="dnsmasq"}`) == "0" && sampleValue(b, `varta_agent_up{agent="dnsmasq"}`) == "1"
	})
	// It hangs: a stall, and after the grace a second missing event.
	evs = p.waitEvents(10*time.Second, "the stall and a second missing event", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", a.pid) == 1 && countEvents(evs, "missing", "") == 2
	})
	stall, miss := lastOf(evs, "stall", a.pid), lastOf(evs, "missing", "")
	if d := time.Duration(miss.ns - stall.ns); d < 300*time.Millisecond {
		t.Errorf("missing %v after the last pid stalled, want at least grace_ms 300 ms", d)
	}
	waitFor(t, 10*time.Second, "missing_exec to run again", func() bool { return lineCount(runs) == 2 })
}

// Contract §9 escalation: an agent that keeps stalling gets
// max_recoveries recoveries within recovery_window_s, then one gave_up
// event, varta_agent_gave_up 1 and give_up_exec once; no recovery while
// given up; re-armed once a pid of it beat a whole window without a
// stall, after which its stalls are recovered again.
func TestE2EEscalationGivesUpOnceAndRearms(t *testing.T) {
	dir := shortTempDir(t)
	recLog, giveLog := filepath.Join(dir, "recover.log"), filepath.Join(dir, "giveup.log")
	recScript := writeScript(t, dir, "restart-flappy", recLog)
	giveScript := writeScript(t, dir, "reboot", giveLog)
	conf := writeConfFile(t, dir, `
config agent 'flappy'
	option comm 'flappy'
	option threshold_ms '300'
	option recovery_exec '`+recScript+` {pid}'
	option recovery_debounce_ms '0'
	option max_recoveries '2'
	option recovery_window_s '3'
	option give_up_exec '`+giveScript+` {pid}'
	option give_up_min_uptime_s '0'
`)
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0", "--config", conf}})
	bin := agentBinAs(t, filepath.Join(dir, "flappy"))
	var pids []string
	flap := func() {
		a := startAgentBin(t, bin, p.socket, "--interval-ms", "10", "--count", "2")
		a.waitExit(t, 10*time.Second)
		p.waitKind("stall", a.pid, 1)
		pids = append(pids, a.pid)
	}
	for i := 0; i < 4; i++ { // the first three within one 3 s window on any machine that runs this test at all
		flap()
	}
	evs := p.waitEvents(10*time.Second, "the gave_up row", func(evs []tsvEvent) bool { return hasPayload(evs, "recovery", pids[2], "gave_up") })
	waitFor(t, 10*time.Second, "give_up_exec", func() bool { return lineCount(giveLog) == 1 })
	for i, want := range [][]string{{"spawned", "exit_0"}, {"spawned", "exit_0"}, {"gave_up", "spawned", "exit_0"}, nil} {
		evs = p.readEvents()
		if got := recoveryPayloads(evs, pids[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			if i == 2 && len(got) < 3 {
				evs = p.waitEvents(10*time.Second, "give_up_exec's exit", func(evs []tsvEvent) bool { return len(recoveryPayloads(evs, pids[2])) == 3 })
				got = recoveryPayloads(evs, pids[2])
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("stall %d (pid %s): recovery rows %q, want %q", i+1, pids[i], got, want)
			}
		}
	}
	if got := scriptRuns(recLog); strings.Join(got, " ") != pids[0]+" "+pids[1] {
		t.Errorf("recovery_exec ran for %q, want the first two stalled pids %q", got, pids[:2])
	}
	if b, _ := os.ReadFile(giveLog); string(b) != pids[2]+"\n" {
		t.Errorf("give_up_exec ran with %q, want once for pid %s", b, pids[2])
	}
	body := scrape(t, p, nil)
	for series, want := range map[string]string{
		`varta_agent_gave_up{agent="flappy"}`:                            "1",
		`varta_agent_recoveries_total{agent="flappy",outcome="gave_up"}`: "1",
		`varta_agent_recoveries_total{agent="flappy",outcome="spawned"}`: "3",
		`varta_agent_stalls_total{agent="flappy"}`:                       "4",
	} {
		if got := sampleValue(body, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	// A pid that beats for longer than the window re-arms it; its stall is
	// recovered again.
	a := startAgentBin(t, bin, p.socket, "--interval-ms", "20", "--hang-after", "250")
	waitScrape(t, p, 15*time.Second, "the agent re-armed", func(b string) bool {
		return sampleValue(b, `varta_agent_gave_up{agent="flappy"}`) == "0"
	})
	p.waitKind("stall", a.pid, 1)
	p.waitEvents(10*time.Second, "a recovery after the re-arm", func(evs []tsvEvent) bool { return hasPayload(evs, "recovery", a.pid, "spawned") })
	if n := lineCount(giveLog); n != 1 {
		t.Errorf("give_up_exec ran %d times, want once", n)
	}
}

// Contract §9: give_up_exec is refused (recovery … refused, logged) while
// the machine has been up less than give_up_min_uptime_s by
// CLOCK_BOOTTIME; the observer runs in a time namespace whose boot time
// says it has been up 100 s.
func TestE2EGiveUpRefusedAtLowUptime(t *testing.T) {
	binaries(t)
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		skipBecause(t, "no /proc/uptime: %v", err)
	}
	var up float64
	fmt.Sscan(string(b), &up)
	// A time namespace's offsets count from the host's clocks, not from
	// the namespace it is made in: when the test itself runs in one (its
	// uptime shifted by cur), the new one's offset must include cur.
	var cur int64
	if b, err := os.ReadFile("/proc/self/timens_offsets"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "boottime" {
				fmt.Sscan(f[1], &cur)
			}
		}
	}
	offset := fmt.Sprint(cur - (int64(up) - 100))
	prefix := []string{"unshare", "-T", "--boottime", offset}
	if os.Geteuid() != 0 {
		prefix = []string{"unshare", "-U", "-r", "-T", "--boottime", offset}
	}
	probe, err := runCommand(append(prefix, "cat", "/proc/uptime")...)
	if err != nil {
		skipBecause(t, "no time namespace (%s): %v %s", strings.Join(prefix, " "), err, probe)
	}
	dir := shortTempDir(t)
	giveLog := filepath.Join(dir, "giveup.log")
	giveScript := writeScript(t, dir, "reboot", giveLog)
	conf := writeConfFile(t, dir, `
config agent 'flappy'
	option comm 'flappy'
	option threshold_ms '100'
	option recovery_exec '/bin/true'
	option max_recoveries '1'
	option give_up_exec '`+giveScript+`'
`)
	p := startObserver(t, observerOpts{argv0: append(prefix, observerBin), args: []string{"--threshold-ms", "1000", "--config", conf}})
	bin := agentBinAs(t, filepath.Join(dir, "flappy"))
	var last string
	for i := 0; i < 2; i++ {
		a := startAgentBin(t, bin, p.socket, "--interval-ms", "10", "--count", "2")
		a.waitExit(t, 10*time.Second)
		p.waitKind("stall", a.pid, 1)
		last = a.pid
	}
	evs := p.waitEvents(10*time.Second, "gave_up and refused", func(evs []tsvEvent) bool {
		return hasPayload(evs, "recovery", last, "gave_up") && hasPayload(evs, "recovery", last, "refused")
	})
	if got := recoveryPayloads(evs, last); strings.Join(got, " ") != "gave_up refused" {
		t.Errorf("recovery rows of the second stall %q, want gave_up refused", got)
	}
	waitFor(t, 5*time.Second, "the refusal in the log", func() bool { return strings.Contains(p.stderr.String(), "give_up_exec refused") })
	var upS int
	if _, rest, ok := strings.Cut(p.stderr.String(), "give_up_exec refused"); ok {
		if _, v, ok := strings.Cut(rest, "uptime_s="); ok {
			fmt.Sscan(v, &upS)
		}
	}
	if upS < 100 || upS >= 900 {
		t.Errorf("the refusal gives uptime_s=%d, want the namespace's 100 s and a bit:\n%s", upS, p.stderr.String())
	}
	if n := lineCount(giveLog); n != 0 {
		t.Errorf("give_up_exec ran %d times at an uptime of 100 s", n)
	}
}

// runCommand runs argv and returns its combined output.
func runCommand(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// Contract §9 reload: SIGHUP with a changed threshold applies it to a
// tracked pid, which keeps its beat count and nonce (no new agent, no
// reset), and it is matched again to the new sections; §8: the event
// file is still reopened.
func TestE2EReloadAppliesNewThresholdToTrackedPid(t *testing.T) {
	dir := shortTempDir(t)
	conf := writeConfFile(t, dir, "config agent 'worker'\n\toption comm 'worker'\n\toption threshold_ms '5000'\n")
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "5000", "--prom-addr", "127.0.0.1:0", "--config", conf}})
	a := startAgentBin(t, agentBinAs(t, filepath.Join(dir, "worker")), p.socket, "--interval-ms", "20", "--hang-after", "100")
	body := waitScrape(t, p, 10*time.Second, "some beats", func(b string) bool {
		return metricValueOr(b, `varta_beats_total{pid="`+a.pid+`"}`) >= 10
	})
	before := metricValueOr(body, `varta_beats_total{pid="`+a.pid+`"}`)
	writeConfFile(t, dir, "config agent 'renamed'\n\toption comm 'worker'\n\toption threshold_ms '300'\n")
	os.Rename(p.events, p.events+".1") // logrotate
	p.signal(syscall.SIGHUP)
	body = waitScrape(t, p, 10*time.Second, "the new section", func(b string) bool {
		return sampleValue(b, `varta_agent_threshold_seconds{agent="renamed"}`) == "0.3" &&
			sampleValue(b, `varta_agent_info{pid="`+a.pid+`",comm="worker",agent="renamed"}`) == "1"
	})
	if after := metricValueOr(body, `varta_beats_total{pid="`+a.pid+`"}`); after < before {
		t.Errorf("beat count went from %v to %v at the reload", before, after)
	}
	if strings.Contains(body, `agent="worker"`) {
		t.Errorf("the removed section's series are still there")
	}
	waitFor(t, 5*time.Second, "the reload's log line", func() bool { return strings.Contains(p.stderr.String(), "configuration reloaded") })
	// The agent hangs after 100 beats (2 s): the stall comes 300 ms after
	// its last beat, not 5 s; the reopened file has it, and no second beat
	// row with a reset nonce.
	evs := p.waitEvents(15*time.Second, "the stall at the new threshold", func(evs []tsvEvent) bool { return countEvents(evs, "stall", a.pid) == 1 })
	if n := checkStallsOnTime(t, evs, a.pid, 300*time.Millisecond, stallSlack+time.Second); n != 1 {
		t.Errorf("%d stalls", n)
	}
	last := "0"
	for _, e := range filterEvents(evs, "beat", a.pid) {
		if len(e.nonce) < len(last) || len(e.nonce) == len(last) && e.nonce <= last {
			t.Fatalf("nonce %s after %s: the pid was reset at the reload", e.nonce, last)
		}
		last = e.nonce
	}
	if last != "100" {
		t.Errorf("last beat row after the reload has nonce %s, want 100", last)
	}
}

// Contract §9 reload errors: a broken file at SIGHUP is logged as
// PATH:LINE: problem, the running configuration is kept (the old
// threshold still stalls the pid) and varta_config_last_reload_successful
// is 0; a good file afterwards sets it to 1 again.
func TestE2EReloadOfBrokenFileKeepsOldPolicy(t *testing.T) {
	dir := shortTempDir(t)
	good := "config agent 'worker'\n\toption comm 'worker'\n\toption threshold_ms '300'\n"
	conf := writeConfFile(t, dir, good)
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "5000", "--prom-addr", "127.0.0.1:0", "--config", conf}})
	body := scrape(t, p, nil)
	okAt := sampleValue(body, "varta_config_last_reload_success_timestamp_seconds")
	writeConfFile(t, dir, "config agent 'worker'\n\toption comm 'worker'\n\toption threshold_ms 'soon'\n")
	p.signal(syscall.SIGHUP)
	waitScrape(t, p, 10*time.Second, "the failed reload", func(b string) bool {
		return sampleValue(b, "varta_config_last_reload_successful") == "0"
	})
	waitFor(t, 5*time.Second, "the error in the log", func() bool { return strings.Contains(p.stderr.String(), conf+":3: ") })
	body = scrape(t, p, nil)
	if v := sampleValue(body, `varta_agent_threshold_seconds{agent="worker"}`); v != "0.3" {
		t.Errorf("threshold after a failed reload %q, want the old 0.3", v)
	}
	if v := sampleValue(body, "varta_config_last_reload_success_timestamp_seconds"); v != okAt {
		t.Errorf("last success time moved from %s to %s at a failed reload", okAt, v)
	}
	a := startAgentBin(t, agentBinAs(t, filepath.Join(dir, "worker")), p.socket, "--interval-ms", "20", "--hang-after", "5")
	evs := p.waitEvents(10*time.Second, "the stall at the old threshold", func(evs []tsvEvent) bool { return countEvents(evs, "stall", a.pid) == 1 })
	checkStallsOnTime(t, evs, a.pid, 300*time.Millisecond, stallSlack+time.Second)
	writeConfFile(t, dir, good)
	p.signal(syscall.SIGHUP)
	waitScrape(t, p, 10*time.Second, "the good reload", func(b string) bool {
		return sampleValue(b, "varta_config_last_reload_successful") == "1"
	})
}

// metricValueOr is the value of series in body, -1 when absent.
func metricValueOr(body, series string) float64 {
	v := sampleValue(body, series)
	if v == "" {
		return -1
	}
	var f float64
	fmt.Sscan(v, &f)
	return f
}

// Contract §9 reload: a changed export_file takes effect at the reload:
// the old file is flushed and closed, the next rows go to the new one.
// (The harness passes --export-file, which would win over the file: this
// observer is started without it.)
func TestE2EReloadMovesTheEventFile(t *testing.T) {
	binaries(t)
	dir := shortTempDir(t)
	first, second := filepath.Join(dir, "first.tsv"), filepath.Join(dir, "second.tsv")
	conf := writeConfFile(t, dir, "config varta-watch 'main'\n\toption export_file '"+first+"'\n")
	sock := filepath.Join(dir, "s.sock")
	cmd := exec.Command(observerBin, "--socket", sock, "--threshold-ms", "200", "--config", conf)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitFor(t, 10*time.Second, "the socket", func() bool { _, err := os.Stat(sock); return err == nil })
	rows := func(path string) []tsvEvent { b, _ := os.ReadFile(path); return parseEvents(t, b) }
	a := runAgent(t, sock, "--interval-ms", "10", "--count", "3")
	waitFor(t, 10*time.Second, "the first agent's stall in the first file", func() bool { return countEvents(rows(first), "stall", a.pid) == 1 })
	writeConfFile(t, dir, "config varta-watch 'main'\n\toption export_file '"+second+"'\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload", func() bool { return strings.Contains(stderr.String(), "configuration reloaded") })
	b := runAgent(t, sock, "--interval-ms", "10", "--count", "3")
	waitFor(t, 10*time.Second, "the second agent's stall in the second file", func() bool { return countEvents(rows(second), "stall", b.pid) == 1 })
	if n := countEvents(rows(first), "beat", b.pid); n != 0 {
		t.Errorf("%d beat rows of the second agent in the old file", n)
	}
	if n := countEvents(rows(second), "beat", b.pid); n != 3 {
		t.Errorf("%d beat rows of the second agent in the new file, want 3", n)
	}
	waitFor(t, 5*time.Second, "the change's log line", func() bool { return strings.Contains(stderr.String(), "event file changed") })
}
