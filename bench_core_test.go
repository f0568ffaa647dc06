//go:build linux

package main

// Benchmarks of the observer core on real sockets:
//
//	go test -run '^$' -bench 'BenchmarkBeat|BenchmarkStallPrecision' -benchmem .

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"varta-watch/internal/vlpclient"
)

// BenchmarkBeat: one beat sent by this process over a connected socket
// (the sender's write(2) is part of the op), received with its kernel
// credentials, decoded, tracked and appended to the event file buffer,
// then the loop's deadline step (which flushes the file when due).
func BenchmarkBeat(b *testing.B) {
	o := newTestObserver(b, "--export-file", filepath.Join(shortTempDir(b), "e.tsv"))
	fd := dialObserver(b, o)
	pid := uint32(os.Getpid())
	var frame [FrameSize]byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		EncodeFrame(&frame, Frame{Status: StatusOK, Pid: pid, Timestamp: 1, Nonce: uint64(i) + 1})
		unix.Write(fd, frame[:])
		o.drainSocket()
		o.fireDeadlines(monoNow())
	}
	b.StopTimer()
	if o.stats.beatsAccepted != uint64(b.N) {
		b.Fatalf("%d of %d beats accepted", o.stats.beatsAccepted, b.N)
	}
}

// BenchmarkStallPrecision measures how late after its deadline (last
// accepted beat + threshold) a stall is surfaced while many other agents
// keep beating. The observer runs in this process, its loop (o.iterate)
// on the benchmark goroutine; a sender goroutine stands in for the agents
// with SCM_CREDENTIALS naming real pids (`sleep` children; needs root).
// Every few ms one agent goes silent for longer than the threshold, then
// resumes; each op is one surfaced stall. The delays are read back from
// the event file (stall row minus the row of the beat it names) and
// checked against the observer's own histogram.
func BenchmarkStallPrecision(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("sending as other pids needs CAP_SYS_ADMIN")
	}
	for _, agents := range []int{100, 1000} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) { benchStallPrecision(b, agents, 1) })
	}
	// Contract §9: four agent sections of different thresholds, matched
	// by the sleepers' command lines, one deadline list each.
	b.Run("agents=4096/thresholds=4", func(b *testing.B) { benchStallPrecision(b, 4096, 4) })
}

// precisionVictimEvery is how often another agent goes silent: one stall
// per op, after the first.
const precisionVictimEvery = 5 * time.Millisecond

// sleepers starts n `sleep` processes whose pids the sender borrows; with
// classes > 1, sleeper i runs `sleep 60<i%classes>`, so an agent section
// can tell the classes apart by their command lines.
func sleepers(b *testing.B, n, classes int) []uint32 {
	b.Helper()
	pids := make([]uint32, n)
	cmds := make([]*exec.Cmd, n)
	b.Cleanup(func() {
		for _, c := range cmds {
			if c != nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	})
	for i := range cmds {
		c := exec.Command("sleep", "600")
		if classes > 1 {
			c = exec.Command("sleep", "60"+strconv.Itoa(i%classes))
		}
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			b.Fatalf("start sleep %d: %v", i, err)
		}
		cmds[i], pids[i] = c, uint32(c.Process.Pid)
	}
	return pids
}

func benchStallPrecision(b *testing.B, agents, classes int) {
	// Each agent beats every 50 ms, or every 100 ms at 1000 agents, to stay
	// near 10 000 beats a second (sender and observer share this process
	// and its cores); the threshold is four beat intervals, and a victim
	// stays silent two intervals longer, so each one stalls once.
	beatEvery := max(50*time.Millisecond, time.Duration(agents)*100*time.Microsecond).Truncate(2 * time.Millisecond)
	threshold := 4 * beatEvery
	// Class k (the sleepers i with i%classes == k) has threshold
	// threshold·(2+k)/2; a victim's silence outlasts its own.
	thresholdOf := func(i int) time.Duration { return threshold * time.Duration(2+i%classes) / 2 }
	if classes == 1 {
		thresholdOf = func(int) time.Duration { return threshold }
	}
	pids := sleepers(b, agents, classes)
	events := filepath.Join(shortTempDir(b), "e.tsv")
	args := []string{"--threshold-ms", strconv.Itoa(int(threshold.Milliseconds())), "--export-file", events,
		"--tracker-capacity", strconv.Itoa(max(4096, agents))}
	var o *observer
	if classes > 1 {
		conf := ""
		for k := 0; k < classes; k++ {
			conf += fmt.Sprintf("config agent 'c%d'\n\toption cmdline 'sleep 60%d'\n\toption threshold_ms '%d'\n",
				k, k, thresholdOf(k).Milliseconds())
		}
		o = newConfObserver(b, conf, args...)
	} else {
		o = newTestObserver(b, args...)
	}
	client, err := vlpclient.Dial(o.cfg.socket)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()

	var (
		stop     atomic.Bool
		victims  atomic.Bool // set once every agent is tracked
		sendErr  error
		wg       sync.WaitGroup
		nextBeat = make([]int64, agents)
		silentTo = make([]int64, agents)
		nonces   = make([]uint64, agents)
	)
	start := monoNow()
	for i := range nextBeat {
		nextBeat[i] = start + int64(i)*int64(beatEvery)/int64(agents)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var frame [vlpclient.FrameSize]byte
		nextVictim, v := int64(0), 0
		for !stop.Load() {
			now := monoNow()
			if victims.Load() {
				if nextVictim == 0 {
					nextVictim = now
				}
				for ; nextVictim <= now; nextVictim += int64(precisionVictimEvery) {
					silentTo[v] = now + int64(thresholdOf(v)+2*beatEvery)
					v = (v + 1) % agents
				}
			}
			for i := range nextBeat {
				if nextBeat[i] > now {
					continue
				}
				nextBeat[i] += int64(beatEvery)
				if now < silentTo[i] {
					continue
				}
				nonces[i]++
				vlpclient.Encode(&frame, vlpclient.StatusOK, pids[i], uint64(now), nonces[i], 0)
				// An agent would drop a beat on a full queue; here a lost
				// beat would be a false stall, so wait for room.
				for !stop.Load() {
					sent, err := client.SendAs(frame[:], pids[i])
					if err != nil {
						sendErr = err
						stop.Store(true)
						return
					}
					if sent {
						break
					}
					// Sleep rather than spin: a spinning sender takes the
					// CPU the observer needs to drain the queue.
					time.Sleep(20 * time.Microsecond)
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for o.tr.n < agents {
		if err := o.iterate(); err != nil {
			b.Fatal(err)
		}
		if time.Now().After(deadline) || stop.Load() {
			b.Fatalf("only %d of %d agents tracked (send error: %v)", o.tr.n, agents, sendErr)
		}
	}
	if o.stats.stallDelay.count != 0 {
		b.Fatalf("%d stalls while the agents were starting", o.stats.stallDelay.count)
	}
	victims.Store(true)
	// surfaced[k] is when the k-th stall was surfaced: the end of the loop
	// turn that surfaced it (a stall row is stamped with the instant the
	// socket was judged up to, which can be earlier than that turn).
	var surfaced []int64
	iterateUntil := func(stalls uint64) {
		for o.stats.stallDelay.count < stalls {
			if err := o.iterate(); err != nil {
				b.Fatal(err)
			}
			for now := monoNow(); uint64(len(surfaced)) < o.stats.stallDelay.count; {
				surfaced = append(surfaced, now)
			}
			if stop.Load() {
				b.Fatalf("sender stopped: %v", sendErr)
			}
		}
	}
	// The first stall comes a threshold after the first victim; from then
	// on one comes every precisionVictimEvery.
	iterateUntil(1)
	b.ResetTimer()
	iterateUntil(1 + uint64(b.N))
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	o.events.flushAll()

	data, err := os.ReadFile(events)
	if err != nil {
		b.Fatal(err)
	}
	evs := parseEvents(b, data)
	beatAt := make(map[string]int64, len(evs))
	victim := make(map[string]bool)
	thresholdOfPid := make(map[string]int64)
	for i, t := range silentTo {
		pid := strconv.FormatUint(uint64(pids[i]), 10)
		thresholdOfPid[pid] = int64(thresholdOf(i))
		if t != 0 {
			victim[pid] = true
		}
	}
	falseStalls := 0
	var delays []int64
	var sum int64
	for _, e := range evs {
		switch e.kind {
		case "beat":
			beatAt[e.pid+" "+e.nonce] = e.ns
		case "stall":
			last, ok := beatAt[e.pid+" "+e.nonce]
			if !ok {
				b.Fatalf("stall %q names no beat", e.line)
			}
			deadline := last + thresholdOfPid[e.pid]
			if e.ns < deadline {
				b.Fatalf("stall row stamped %v before its deadline: %q", time.Duration(deadline-e.ns), e.line)
			}
			k := len(delays)
			if k >= len(surfaced) {
				b.Fatalf("stall row %d of %d surfaced: %q", k+1, len(surfaced), e.line)
			}
			d := surfaced[k] - deadline
			delays = append(delays, d)
			sum += d
			if !victim[e.pid] {
				falseStalls++
			}
		}
	}
	// The histogram measures the same delays from inside the turn, so it
	// can only be the earlier of the two.
	h := &o.stats.stallDelay
	if uint64(len(delays)) != h.count || h.sumNs > sum {
		b.Fatalf("event file: %d stalls, surfaced %d ns after their deadlines in all; histogram: %d, %d ns", len(delays), sum, h.count, h.sumNs)
	}
	slices.Sort(delays)
	q := func(p float64) float64 { return float64(delays[int(p*float64(len(delays)-1))]) / 1e3 }
	within2ms := 0
	for _, d := range delays {
		if d <= 2_000_000 {
			within2ms++
		}
	}
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(delays[len(delays)-1])/1e3, "max-µs")
	b.ReportMetric(100*float64(within2ms)/float64(len(delays)), "%≤2ms")
	b.ReportMetric(float64(o.stats.beatsAccepted)/time.Duration(monoNow()-start).Seconds(), "beats/s")
	// A stall of an agent that was never silenced: the sender (this
	// process) fell a threshold behind, or the observer did.
	b.ReportMetric(float64(falseStalls), "false-stalls")
}
