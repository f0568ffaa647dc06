// Command varta-demo shows varta-watch at work (make demo): it starts the
// observer with an event file, metrics and a recovery command, runs two
// agents (one healthy, one that hangs), and prints what an operator sees:
// the beats, the stall, the recovery and the metrics. Then it exits.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	observer := flag.String("observer", "./varta-watch", "observer binary")
	agent := flag.String("agent", "./varta-agent", "agent binary")
	flag.Parse()
	if err := run(*observer, *agent); err != nil {
		fmt.Fprintln(os.Stderr, "varta-demo:", err)
		os.Exit(1)
	}
}

func run(observerBin, agentBin string) error {
	dir, err := os.MkdirTemp("", "varta-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "varta.sock")
	events := filepath.Join(dir, "events.tsv")

	obs := exec.Command(observerBin, "--socket", sock, "--threshold-ms", "500",
		"--export-file", events, "--prom-addr", "127.0.0.1:0",
		"--recovery-cmd", "echo 'recovery: would restart agent {pid}' >&2")
	obs.Stderr = os.Stderr
	out, err := obs.StdoutPipe()
	if err != nil {
		return err
	}
	fmt.Println("== starting:", strings.Join(obs.Args, " "))
	if err := obs.Start(); err != nil {
		return err
	}
	defer obs.Process.Kill()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("observer printed no metrics address: %v", err)
	}
	addr = strings.TrimSpace(addr)
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	healthy := exec.Command(agentBin, "--socket", sock, "--interval-ms", "100", "--count", "25", "--payload", "42")
	hung := exec.Command(agentBin, "--socket", sock, "--interval-ms", "100", "--hang-after", "5", "--status", "degraded")
	for _, a := range []*exec.Cmd{healthy, hung} {
		if err := a.Start(); err != nil {
			return err
		}
		defer a.Process.Kill()
	}
	fmt.Printf("== agents: healthy pid %d (25 beats), hung pid %d (5 beats, then silent)\n",
		healthy.Process.Pid, hung.Process.Pid)
	healthy.Wait()
	time.Sleep(300 * time.Millisecond)

	fmt.Println("\n== event file (observer_ns kind pid nonce status payload):")
	data, _ := os.ReadFile(events)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i, l := range lines {
		if strings.Contains(l, "\tbeat\t") && i > 3 && i < len(lines)-8 {
			continue
		}
		fmt.Println("  " + l)
	}

	fmt.Printf("\n== metrics (http://%s/metrics, excerpt):\n", addr)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(body), "\n") {
		for _, p := range []string{"varta_beats_total{", "varta_stalls_total{", "varta_status{", "varta_agent_info{", "varta_recovery_total{outcome=\"spawned\"", "varta_tracker_pids "} {
			if strings.HasPrefix(l, p) {
				fmt.Println("  " + l)
			}
		}
	}

	hung.Process.Kill()
	hung.Wait()
	obs.Process.Signal(syscall.SIGTERM)
	if err := obs.Wait(); err != nil {
		return fmt.Errorf("observer: %v", err)
	}
	fmt.Println("\n== observer stopped cleanly (exit 0)")
	return nil
}
