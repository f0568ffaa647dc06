//go:build linux

package main

// The release builds for ARM and MIPS, run for real under qemu-user: the
// same beat, stall and scrape scenario as on the host.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

type qemuTarget struct {
	name   string // release arch name
	goarch string
	env    []string
	qemu   string
}

var qemuTargets = []qemuTarget{
	{"armv7", "arm", []string{"GOARM=7"}, "qemu-arm-static"},
	{"armv5", "arm", []string{"GOARM=5"}, "qemu-arm-static"},
	{"arm64", "arm64", nil, "qemu-aarch64-static"},
	{"mipsle", "mipsle", []string{"GOMIPS=softfloat"}, "qemu-mipsel-static"},
	{"mips", "mips", []string{"GOMIPS=softfloat"}, "qemu-mips-static"},
}

var (
	qemuBuildMu sync.Mutex
	qemuBuilt   = map[string][2]string{}
)

// qemuBinaries cross-builds the observer and the agent for target once.
func qemuBinaries(t *testing.T, tg qemuTarget) (observer, agent string) {
	t.Helper()
	binaries(t) // for binDir, and the VARTA_E2E switch
	qemuBuildMu.Lock()
	defer qemuBuildMu.Unlock()
	if b, ok := qemuBuilt[tg.name]; ok {
		return b[0], b[1]
	}
	dir := filepath.Join(binDir, tg.name)
	observer, agent = filepath.Join(dir, "varta-watch"), filepath.Join(dir, "varta-agent")
	for _, b := range [][2]string{{observer, "."}, {agent, "./internal/cmd/varta-agent"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", b[0], b[1])
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tg.goarch), tg.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cross build %s for %s: %v\n%s", b[1], tg.name, err, out)
		}
	}
	qemuBuilt[tg.name] = [2]string{observer, agent}
	return observer, agent
}

// Contract §4 (beats; a stall on time), §6 (a scrape) and §3 (the socket
// removed at exit) for the ARM and MIPS release builds, run under
// qemu-user.
func TestQemuBeatStallScrape(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("qemu-user end-to-end runs are set up for a linux/amd64 host")
	}
	for _, tg := range qemuTargets {
		t.Run(tg.name, func(t *testing.T) {
			qemu, err := exec.LookPath(tg.qemu)
			if err != nil {
				skipBecause(t, "%s not installed (apt-get install qemu-user-static; .ci/run does): skipping the %s run", tg.qemu, tg.name)
			}
			observerPath, agentPath := qemuBinaries(t, tg)
			const threshold = 400
			p := startObserver(t, observerOpts{
				argv0: []string{qemu, observerPath},
				args:  []string{"--threshold-ms", fmt.Sprint(threshold), "--prom-addr", "127.0.0.1:0"},
			})

			cmd := exec.Command(qemu, agentPath, "--socket", p.socket, "--count", "6", "--interval-ms", "50", "--payload", "7", "--status", "degraded")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("agent under %s: %v\n%s", tg.qemu, err, out)
			}
			pid := fmt.Sprint(cmd.Process.Pid)
			evs := p.waitEvents(10*time.Second, "6 beats and a stall", func(evs []tsvEvent) bool {
				return countEvents(evs, "beat", pid) == 6 && countEvents(evs, "stall", pid) == 1
			})
			beats := filterEvents(evs, "beat", pid)
			for i, b := range beats {
				if b.nonce != fmt.Sprint(i+1) || b.status != "degraded" || b.payload != "7" {
					t.Fatalf("beat %d = %q, want nonce %d degraded payload 7", i, b.line, i+1)
				}
			}
			stall := filterEvents(evs, "stall", pid)[0]
			if late := stall.ns - (beats[5].ns + threshold*1e6); late < 0 || late > 200e6 {
				t.Errorf("stall surfaced %v after its deadline under qemu; want 0..200ms", time.Duration(late))
			}

			text := scrape(t, p, nil)
			for _, want := range []string{
				`varta_beats_total{pid="` + pid + `"} 6`,
				`varta_stalls_total{pid="` + pid + `"} 1`,
				`varta_status{pid="` + pid + `"} 3`,
			} {
				if !strings.Contains(text, want+"\n") {
					t.Errorf("scrape lacks %q", want)
				}
			}
			if !regexp.MustCompile(`varta_build_info\{[^}]*goarch="` + tg.goarch + `"[^}]*\} 1`).MatchString(text) {
				t.Errorf("varta_build_info does not say goarch=%q", tg.goarch)
			}
			if code := p.stop(); code != 0 {
				t.Fatalf("observer under qemu exited %d", code)
			}
			if _, err := os.Lstat(p.socket); !os.IsNotExist(err) {
				t.Errorf("socket not removed at exit under qemu: %v", err)
			}
		})
	}
}
