package main

// Contract §9 (the configuration file) and the §2 flags --config,
// --export-file-kinds and --prom-pid-series, with the real binary.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Contract §9 Errors: a bad file at start is one line PATH:LINE: problem on
// stderr and exit 2, for every kind of mistake the parser knows.
func TestE2EConfigBadFile(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "s.sock")
	for i, bc := range badConfigs {
		path := filepath.Join(dir, "bad.conf")
		if err := os.WriteFile(path, []byte(bc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runObserverToExit(t, "--socket", sock, "--threshold-ms", "100", "--config", path)
		want := path + ":" + strconv.Itoa(bc.line) + ": "
		if code != 2 || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("case %s (%q): exit %d, stderr %q; want 2 and one line starting %q", bc.name, bc.text, code, stderr, want)
		}
		if _, err := os.Lstat(sock); err == nil {
			t.Fatalf("case %d: a socket was bound for a bad configuration", i)
		}
	}
}

// Contract §9: the main section maps onto the flags and the command line
// wins; --export-file-kinds leaves the beat rows out of the file while the
// metrics still count them (§2); --prom-pid-series off leaves the per-pid
// families out of /metrics (§2, §6).
func TestE2EConfigMainSectionKindsAndPidSeries(t *testing.T) {
	dir := shortTempDir(t)
	conf := filepath.Join(dir, "varta-watch.conf")
	text := "config varta-watch 'main'\n" +
		"\toption threshold_ms '5000'\n" +
		"\toption export_file_kinds 'stall,eviction'\n" +
		"\toption prom_pid_series 'off'\n" +
		"\nconfig agent 'demo'\n\toption comm 'varta-agent'\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startObserver(t, observerOpts{args: []string{"--config", conf, "--threshold-ms", "200", "--prom-addr", "127.0.0.1:0"}})
	a := runAgent(t, p.socket, "--interval-ms", "20", "--count", "5")
	// The command line's 200 ms, not the file's 5 s: the stall comes soon.
	evs := p.waitEvents(10*time.Second, "the stall", func(evs []tsvEvent) bool { return countEvents(evs, "stall", a.pid) == 1 })
	if n := countEvents(evs, "beat", ""); n != 0 {
		t.Errorf("%d beat rows written with export_file_kinds 'stall,eviction'", n)
	}
	body := waitScrape(t, p, 10*time.Second, "the beats counted", func(b string) bool {
		return strings.Contains(b, "varta_beats_accepted_total 5") || strings.Contains(b, "varta_frames_received_total 5")
	})
	for _, fam := range []string{"varta_beats_total{", "varta_stalls_total{", "varta_status{", "varta_agent_info{", "varta_last_beat_timestamp_seconds{"} {
		if strings.Contains(body, fam) {
			t.Errorf("per-pid family %s… in /metrics with prom_pid_series 'off'", fam)
		}
	}
	if !strings.Contains(p.stderr.String(), "threshold_ms=200") {
		t.Errorf("start-up line does not show the command line's threshold:\n%s", p.stderr.String())
	}
}
