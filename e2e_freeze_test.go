package main

// Contract §8 (a frozen observer) and §4 (agents in pid namespaces, reused
// pids): verdicts that stay right whatever the machine does to the
// observer or to the agents' pids.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// observerQueue returns the socket queue limit the observer logged at start.
func observerQueue(t *testing.T, p *observerProc) int {
	t.Helper()
	re := regexp.MustCompile(`msg="socket queue limit".* datagrams=(\d+)`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("no socket queue line in the log:\n%s", p.stderr.String())
	return 0
}

// agentReport parses the "sent N dropped M" line of a --report agent.
func agentReport(t *testing.T, out *lockedBuffer) (sent, dropped int) {
	t.Helper()
	if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "sent %d dropped %d", &sent, &dropped); err != nil {
		t.Fatalf("agent report %q: %v", out.String(), err)
	}
	return sent, dropped
}

// freeze stops every thread of the observer for d, then lets it run again.
func (p *observerProc) freeze(d time.Duration) {
	p.t.Helper()
	p.stopped()
	time.Sleep(d)
	p.signal(syscall.SIGCONT)
}

// checkTimeOrder fails unless the rows of each pid are in time order.
func checkTimeOrder(t *testing.T, evs []tsvEvent) {
	t.Helper()
	last := map[string]tsvEvent{}
	for _, e := range evs {
		if e.pid == "-" {
			continue
		}
		if prev, ok := last[e.pid]; ok && e.ns < prev.ns {
			t.Errorf("pid %s: row %q comes after %q but is earlier", e.pid, strings.TrimSpace(e.line), strings.TrimSpace(prev.line))
		}
		last[e.pid] = e
	}
}

// Contract §8: an observer frozen for 0.5×, 2× and 10× its threshold while
// agents keep beating judges every queued beat by the time the kernel
// queued it: no stall, every beat row present, with the agents' spacing,
// and each pid's rows in time order.
func TestFreezeNoFalseStall(t *testing.T) {
	const (
		thresholdMs = 500
		intervalMs  = 100
		agents      = 2
	)
	for _, factor := range []float64{0.5, 2, 10} {
		t.Run(fmt.Sprintf("%gx", factor), func(t *testing.T) {
			freeze := time.Duration(factor * thresholdMs * float64(time.Millisecond))
			p := startObserver(t, observerOpts{args: []string{"--threshold-ms", strconv.Itoa(thresholdMs), "--socket-queue", "256"}})
			// Every beat sent during the freeze must fit in the queue, or
			// the kernel drops it and the silence is real.
			need := agents * (int(freeze/(intervalMs*time.Millisecond)) + 4)
			if q := observerQueue(t, p); q < need {
				skipBecause(t, "the socket queue holds %d datagrams, this freeze needs %d (root gets its own queue of 256)", q, need)
			}
			beats := int((2*time.Second+freeze)/(intervalMs*time.Millisecond)) + 1
			outs := make([]*lockedBuffer, agents)
			as := make([]*agentProc, agents)
			for i := range as {
				outs[i] = &lockedBuffer{}
				as[i] = startAgentOut(t, outs[i], p.socket, "--interval-ms", strconv.Itoa(intervalMs),
					"--count", strconv.Itoa(beats), "--report")
			}
			p.waitEvents(10*time.Second, "beats of every agent", func(evs []tsvEvent) bool {
				for _, a := range as {
					if countEvents(evs, "beat", a.pid) < 3 {
						return false
					}
				}
				return true
			})
			p.freeze(freeze)
			for _, a := range as {
				a.waitExit(t, 30*time.Second)
			}
			for i, a := range as {
				sent, dropped := agentReport(t, outs[i])
				if dropped != 0 {
					t.Fatalf("agent %s: the kernel dropped %d of its beats: the queue was too small for the test", a.pid, dropped)
				}
				p.waitEvents(10*time.Second, "every beat row of agent "+a.pid, func(evs []tsvEvent) bool {
					return countEvents(evs, "beat", a.pid) >= sent
				})
			}
			evs := p.readEvents()
			if n := countEvents(evs, "stall", ""); n != 0 {
				for _, e := range filterEvents(evs, "stall", "") {
					t.Logf("stall row: %s", strings.TrimSpace(e.line))
				}
				t.Errorf("%d stall rows after a freeze of %v with agents beating every %d ms (threshold %d ms)", n, freeze, intervalMs, thresholdMs)
			}
			checkTimeOrder(t, evs)
			for i, a := range as {
				sent, _ := agentReport(t, outs[i])
				rows := filterEvents(evs, "beat", a.pid)
				if len(rows) != sent {
					t.Errorf("agent %s: %d beat rows, sent %d", a.pid, len(rows), sent)
				}
				// Beats queued during the freeze keep the spacing the
				// agent gave them: stamped at the resume they would
				// bunch up within a millisecond.
				bunched := 0
				for j := 1; j < len(rows); j++ {
					if rows[j].ns-rows[j-1].ns < int64(intervalMs*time.Millisecond/10) {
						bunched++
					}
				}
				if bunched > len(rows)/4 {
					t.Errorf("agent %s: %d of %d beat rows follow the previous one within %d ms: queued beats lost their kernel time",
						a.pid, bunched, len(rows), intervalMs/10)
				}
			}
		})
	}
}

// Contract §8: an agent that really stops while the observer is frozen is
// surfaced, once, at or after its own deadline, and as soon as the
// observer runs again; an agent that kept beating is not.
func TestFreezeRealSilenceIsStalled(t *testing.T) {
	const thresholdMs = 500
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", strconv.Itoa(thresholdMs), "--socket-queue", "256"}})
	if q := observerQueue(t, p); q < 64 {
		skipBecause(t, "the socket queue holds %d datagrams, this test needs 64 (root gets its own queue of 256)", q)
	}
	alive := startAgent(t, p.socket, "--interval-ms", "100")
	dies := startAgent(t, p.socket, "--interval-ms", "100")
	p.waitEvents(10*time.Second, "beats of both agents", func(evs []tsvEvent) bool {
		return countEvents(evs, "beat", alive.pid) >= 3 && countEvents(evs, "beat", dies.pid) >= 3
	})
	p.stopped()
	time.Sleep(thresholdMs * time.Millisecond)
	dies.kill()
	time.Sleep(4 * thresholdMs * time.Millisecond)
	resumed := monoNs(t)
	p.signal(syscall.SIGCONT)
	evs := p.waitEvents(10*time.Second, "the stall of the agent that died", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", dies.pid) >= 1
	})
	time.Sleep(2 * thresholdMs * time.Millisecond) // room for a second, wrong stall
	evs = p.readEvents()
	if n := countEvents(evs, "stall", dies.pid); n != 1 {
		t.Errorf("agent that died: %d stall rows, want 1", n)
	}
	if n := countEvents(evs, "stall", alive.pid); n != 0 {
		t.Errorf("agent that kept beating: %d stall rows, want 0", n)
	}
	beats := filterEvents(evs, "beat", dies.pid)
	stall := filterEvents(evs, "stall", dies.pid)[0]
	last := beats[len(beats)-1]
	if deadline := last.ns + thresholdMs*1_000_000; stall.ns < deadline {
		t.Errorf("stall at %d, before the deadline %d (last beat %d + %d ms)", stall.ns, deadline, last.ns, thresholdMs)
	}
	if stall.ns > resumed+int64(2*time.Second) {
		t.Errorf("stall surfaced %v after the resume", time.Duration(stall.ns-resumed))
	}
	checkTimeOrder(t, evs)
}

// needPidNamespaces skips unless unshare can make pid namespaces here.
func needPidNamespaces(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		skipBecause(t, "unshare (util-linux) not installed")
	}
	if out, err := exec.Command("unshare", "-p", "-f", "-m", "--mount-proc", "true").CombinedOutput(); err != nil {
		skipBecause(t, "cannot make a pid namespace here (needs CAP_SYS_ADMIN): %v %s", err, out)
	}
}

// nsAgent runs the test agent inside a new pid namespace as pid 2 (a shell
// is pid 1: the VLP decoder rejects pid 1) and returns the pid the
// observer's namespace sees for it.
func nsAgent(t *testing.T, socket string, args ...string) (outer string, inner string) {
	t.Helper()
	binaries(t)
	script := "exec 3>&1; " + agentBin + ` "$@" & echo "$!" >&3; wait`
	cmd := exec.Command("unshare", append([]string{"-p", "-f", "-m", "--mount-proc", "sh", "-c", script, "sh",
		"--socket", socket}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Process.Kill()
		if outer != "" {
			if n, err := strconv.Atoi(outer); err == nil {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
		<-done
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("agent in a pid namespace printed no pid: %v", err)
	}
	inner = strings.TrimSpace(line)
	// Find the process whose innermost pid is inner among unshare's
	// descendants: its NSpid line is "NSpid: outer inner".
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if outer = findNSpid(cmd.Process.Pid, inner); outer != "" {
			return outer, inner
		}
	}
	t.Fatalf("no process with innermost pid %s under %d", inner, cmd.Process.Pid)
	return "", ""
}

// findNSpid returns the pid of a descendant of root whose innermost
// namespace pid is inner, or "".
func findNSpid(root int, inner string) string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var nspid []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				nspid = strings.Fields(v)
			}
		}
		if len(nspid) >= 2 && nspid[len(nspid)-1] == inner && nspid[0] == e.Name() && descends(e.Name(), root) {
			return e.Name()
		}
	}
	return ""
}

func descends(pid string, root int) bool {
	for i := 0; i < 64 && pid != "" && pid != "0"; i++ {
		if pid == strconv.Itoa(root) {
			return true
		}
		b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			return false
		}
		s := string(b)
		j := strings.LastIndexByte(s, ')')
		if j < 0 {
			return false
		}
		f := strings.Fields(s[j+1:])
		if len(f) < 2 {
			return false
		}
		pid = f[1]
	}
	return false
}

// Contract §4 step 3: an agent in a descendant pid namespace sends its own
// namespace's pid; the observer accepts it when it is the innermost pid of
// the kernel-attested sender and tracks, reports and stalls it under the
// pid its own namespace sees. A spoof from inside the namespace is still a
// mismatch.
func TestPidNamespaceAgent(t *testing.T) {
	needPidNamespaces(t)
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "300", "--prom-addr", "127.0.0.1:0"}})
	// The agents stay alive after their beats (--hang-after, killed at the
	// end): nsAgent finds them in /proc, which an agent that had already
	// exited would have left on a loaded machine.
	outer, inner := nsAgent(t, p.socket, "--interval-ms", "50", "--hang-after", "10")
	if outer == inner {
		t.Fatalf("outer pid %s equals the namespace pid", outer)
	}
	evs := p.waitEvents(10*time.Second, "the stall of the agent in the namespace", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", outer) == 1
	})
	if n := countEvents(evs, "beat", outer); n != 10 {
		t.Errorf("agent %s (pid %s in its namespace): %d beat rows, want 10", outer, inner, n)
	}
	if n := countEvents(evs, "mismatch", ""); n != 0 {
		t.Errorf("%d mismatch rows for an agent in a pid namespace", n)
	}
	if n := countEvents(evs, "beat", inner); n != 0 {
		t.Errorf("%d beat rows under the namespace pid %s", n, inner)
	}
	body := scrape(t, p, nil)
	if want := fmt.Sprintf(`varta_beats_total{pid="%s"} 10`, outer); !strings.Contains(body, want) {
		t.Errorf("metrics lack %s", want)
	}
	if want := fmt.Sprintf(`varta_agent_info{pid="%s",comm="varta-agent"`, outer); !strings.Contains(body, want) {
		t.Errorf("metrics lack %s…", want)
	}

	// A spoof from inside a namespace: a pid that is neither the sender's
	// innermost nor its outer pid.
	spoofOuter, _ := nsAgent(t, p.socket, "--interval-ms", "10", "--hang-after", "3", "--pid", "4242")
	evs = p.waitEvents(10*time.Second, "three mismatch rows for the spoof", func(evs []tsvEvent) bool {
		return countEvents(evs, "mismatch", "4242") == 3
	})
	if n := countEvents(evs, "beat", spoofOuter) + countEvents(evs, "beat", "4242"); n != 0 {
		t.Errorf("spoofed frames gave %d beat rows", n)
	}
}

// startAgentAtPid starts the test agent (as a program named comm) so that
// it gets pid want, through /proc/sys/kernel/ns_last_pid; it retries while
// other processes of the machine take the pid first.
func startAgentAtPid(t *testing.T, want int, comm, socket string, args ...string) *agentProc {
	t.Helper()
	binaries(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, comm)
	if err := os.Symlink(agentBin, exe); err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 200; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(want-1)), 0); err != nil {
			skipBecause(t, "cannot set ns_last_pid (needs root): %v", err)
		}
		a := &agentProc{stderr: &lockedBuffer{}, done: make(chan struct{})}
		a.cmd = exec.Command(exe, append([]string{"--socket", socket}, args...)...)
		a.cmd.Stderr = a.stderr
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { a.err = a.cmd.Wait(); close(a.done) }()
		if a.cmd.Process.Pid != want {
			a.kill()
			continue
		}
		a.pid = strconv.Itoa(want)
		t.Cleanup(func() {
			select {
			case <-a.done:
			default:
				a.kill()
			}
		})
		return a
	}
	t.Fatalf("could not get pid %d for a new agent in 200 tries", want)
	return nil
}

// Contract §4 tracker: a pid that comes back, after its stall, as a new
// process whose first frame carries a higher nonce than the old agent's
// last is recognised by its start time: the slot starts afresh (beats
// counted from zero, the new comm).
func TestReusedPidAfterStallIsANewAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		skipBecause(t, "reusing a pid on purpose needs root (ns_last_pid)")
	}
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "200", "--prom-addr", "127.0.0.1:0"}})
	first := startAgent(t, p.socket, "--interval-ms", "20", "--count", "8")
	first.waitExit(t, 10*time.Second)
	pid, _ := strconv.Atoi(first.pid)
	p.waitEvents(10*time.Second, "the first agent's stall", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", first.pid) == 1
	})
	second := startAgentAtPid(t, pid, "second-agent", p.socket, "--interval-ms", "20", "--count", "3", "--start-nonce", "1000")
	second.waitExit(t, 10*time.Second)
	p.waitEvents(10*time.Second, "the second agent's beats", func(evs []tsvEvent) bool {
		return countEvents(evs, "beat", first.pid) == 11
	})
	body := scrape(t, p, nil)
	if want := fmt.Sprintf(`varta_beats_total{pid="%d"} 3`, pid); !strings.Contains(body, want) {
		t.Errorf("metrics lack %s (the reused pid kept the old agent's count):\n%s", want, grepLines(body, first.pid))
	}
	if want := fmt.Sprintf(`varta_agent_info{pid="%d",comm="second-agent"`, pid); !strings.Contains(body, want) {
		t.Errorf("metrics lack %s… (the reused pid kept the old agent's comm):\n%s", want, grepLines(body, first.pid))
	}
	if want := fmt.Sprintf(`varta_stalls_total{pid="%d"} 0`, pid); !strings.Contains(body, want) {
		t.Errorf("metrics lack %s:\n%s", want, grepLines(body, first.pid))
	}
}

// grepLines returns the lines of body that contain s.
func grepLines(body, s string) string {
	var b strings.Builder
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
