//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"varta-watch/internal/loadgen"
)

// ---- wakeups: what the observer's context switches are, by cause ----

// wakeupAgents are the loads of the wakeups scenario: a few agents (a
// router), a few dozen, a hundred and more, and the full 4096.
var wakeupAgents = []int{10, 40, 150, 4096}

// wakeupResult is one load of the wakeups scenario: CPU and context
// switches of the observer (own queue, not scraped) at n agents × 1 Hz,
// and, where perf(1) can record sched:sched_switch, what each switch was.
type wakeupResult struct {
	Agents     int     `json:"agents"`
	CPUSchedPc float64 `json:"cpu_schedstat_percent"`
	Switches   float64 `json:"switches_per_s"`
	Lost       int64   `json:"lost"`
	// Causes: switches/s by what the thread that left the CPU was doing
	// (classifySwitch), from perf over PerfSecs; empty without perf.
	Causes   map[string]float64 `json:"causes_per_s,omitempty"`
	PerfSecs float64            `json:"perf_secs,omitempty"`
	PerfNote string             `json:"perf_note,omitempty"`
}

// runWakeups runs each load of wakeupAgents for 14 s into a fresh
// observer and measures from 4 s to 13 s; perf records the switches from
// 5 s to 11 s.
func runWakeups(pids []uint32) ([]wakeupResult, error) {
	var out []wakeupResult
	for _, n := range wakeupAgents {
		if n > len(pids) {
			continue
		}
		r := wakeupResult{Agents: n}
		p, err := startObserver(fmt.Sprintf("wakeups-%d", n), false, nil, "--threshold-ms", strconv.Itoa(*thresholdMs), "--tracker-capacity", strconv.Itoa(len(pids)))
		if err != nil {
			return out, err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(4 * time.Second)
			n0, s0, t0 := cpuNs(p.pid()), taskSwitches(p.pid()), time.Now()
			perfDone := make(chan struct{})
			go func() {
				defer close(perfDone)
				time.Sleep(time.Second)
				r.Causes, r.PerfSecs, r.PerfNote = perfSwitches(p.pid(), 6*time.Second, filepath.Join(*outDir, fmt.Sprintf("wakeups-%d.perf", n)))
			}()
			time.Sleep(9 * time.Second)
			n1, s1 := cpuNs(p.pid()), taskSwitches(p.pid())
			d := time.Since(t0).Seconds()
			r.CPUSchedPc = 100 * float64(n1-n0) / 1e9 / d
			sw, _ := sumSwitchDelta(s0, s1)
			r.Switches = float64(sw) / d
			<-perfDone
		}()
		load, err := loadgen.Run(loadgen.Config{Socket: p.sock, Pids: pids[:n], RateHz: 1, Duration: 14 * time.Second})
		<-done
		p.stop()
		p.remove()
		if err != nil {
			return out, err
		}
		r.Lost = load.Lost
		progress("  wakeups, %d agents × 1 Hz: CPU %.2f%% (schedstat), %.0f switches/s, lost %d; by cause: %s", n, r.CPUSchedPc, r.Switches, r.Lost, fmtCauses(r))
		out = append(out, r)
	}
	return out, nil
}

func fmtCauses(r wakeupResult) string {
	if r.Causes == nil {
		return r.PerfNote
	}
	type kv struct {
		k string
		v float64
	}
	var kvs []kv
	for k, v := range r.Causes {
		kvs = append(kvs, kv{k, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return int(1000 * (b.v - a.v)) })
	var parts []string
	for _, x := range kvs {
		if x.v >= 0.5 {
			parts = append(parts, fmt.Sprintf("%s %.0f", x.k, x.v))
		}
	}
	return strings.Join(parts, ", ")
}

// perfSwitches records every sched:sched_switch of pid's threads for d
// with kernel call chains and sorts them by cause (classifySwitch).
// Without perf, or where it may not trace, it says why instead.
func perfSwitches(pid int, d time.Duration, file string) (map[string]float64, float64, string) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, 0, "perf(1) not installed: causes not measured"
	}
	rec := exec.Command(perf, "record", "-q", "-e", "sched:sched_switch", "-g", "-p", strconv.Itoa(pid), "-o", file, "--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', -1, 64))
	if b, err := rec.CombinedOutput(); err != nil {
		return nil, 0, fmt.Sprintf("perf record: %v: %s", err, strings.TrimSpace(string(b)))
	}
	defer os.Remove(file)
	script := exec.Command(perf, "script", "-i", file, "-F", "tid,trace,ip,sym")
	outp, err := script.StdoutPipe()
	if err != nil {
		return nil, 0, err.Error()
	}
	if err := script.Start(); err != nil {
		return nil, 0, "perf script: " + err.Error()
	}
	var sws []switchSample
	sc := bufio.NewScanner(outp)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur *switchSample
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		switch {
		case t == "":
			cur = nil
		case cur == nil:
			f := strings.Fields(t)
			sws = append(sws, switchSample{tid: f[0]})
			cur = &sws[len(sws)-1]
			if i := strings.Index(t, "prev_state="); i >= 0 {
				cur.state, _, _ = strings.Cut(t[i+len("prev_state="):], " ")
			}
		default:
			if f := strings.Fields(t); len(f) >= 2 {
				cur.frames = append(cur.frames, f[1])
			}
		}
	}
	if err := script.Wait(); err != nil {
		return nil, 0, "perf script: " + err.Error()
	}
	causes := classifySwitches(sws)
	secs := d.Seconds()
	for k := range causes {
		causes[k] /= secs
	}
	return causes, secs, ""
}

type switchSample struct {
	tid    string
	state  string   // prev_state: R (preempted) or a sleep
	frames []string // innermost first: kernel, then user (unnamed in a stripped binary)
}

// classifySwitches names each switch by the kernel function its thread
// went to sleep in, which a stripped binary still shows, and by whose
// thread it was: in the observer's process only the Go runtime's sysmon
// sleeps in nanosleep(2) (usleep), only the loop in epoll_wait, and
// futex(2) is a runtime thread with nothing to run (or sysmon's long
// sleep, on sysmon's thread).
func classifySwitches(sws []switchSample) map[string]float64 {
	has := func(s switchSample, fn string) bool {
		return slices.ContainsFunc(s.frames, func(f string) bool { return strings.Contains(f, fn) })
	}
	sysmon := map[string]bool{}
	for _, s := range sws {
		if has(s, "do_nanosleep") {
			sysmon[s.tid] = true
		}
	}
	out := map[string]float64{}
	for _, s := range sws {
		var k string
		switch {
		case strings.HasPrefix(s.state, "R"):
			k = "preempted"
		case has(s, "do_epoll_wait"):
			k = "loop: epoll wait"
		case has(s, "do_nanosleep"):
			k = "sysmon: tick (usleep)"
		case has(s, "futex") && sysmon[s.tid]:
			k = "sysmon: long sleep (futex)"
		case has(s, "futex"):
			k = "runtime thread parked (futex)"
		default:
			k = "other"
			for _, f := range s.frames {
				if !strings.Contains(f, "schedule") {
					k = "other: " + f
					break
				}
			}
		}
		out[k]++
	}
	return out
}
