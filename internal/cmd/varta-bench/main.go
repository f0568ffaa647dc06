//go:build linux

// Command varta-bench is the benchmark suite behind `make bench`. It runs
// the Go benchmarks (b.ReportAllocs) and the end-to-end load scenarios
// against the real observer binary, side by side in one run, and prints
// one table with a line per target of the performance issue:
//
//   - idle: the observer with no agents, its wakeups per second counted
//     from the context switches of all its threads;
//   - steady: 4096 kernel-attested agents × 1 Hz spread evenly, /metrics
//     scraped every second, a quarter of the agents going silent at a known
//     time: CPU, RSS, beats lost to a full socket queue, stall precision,
//     scrape time and size; then the same load into the bare receiver, and
//     into a receiver that reads as the observer does and nothing else
//     (the floor under its CPU);
//   - queue: rounds of 4096 agents × 1 Hz into the bare receiver and the
//     observer with --socket-queue 0 at the same time (every beat sent to
//     both), both on the machine's queue (max_dgram_qlen, 10 by default),
//     the first few of them then into the observer with its own queue, the
//     observers scraped every second: beats lost, the stalls they cause,
//     CPU, and scrape latency with each queue;
//   - flood: one million beats as fast as possible into the bare receiver
//     and into the observer (event file and metrics on, GODEBUG=gctrace=1),
//     alternating, for throughput and garbage collections.
//
// It must run as root (the load generator names other pids in
// SCM_CREDENTIALS). Raw results go to --out; the table goes to stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"varta-watch/internal/loadgen"
)

var (
	observerBin = flag.String("observer", "./varta-watch", "the observer binary to measure")
	outDir      = flag.String("out", "run/bench", "where raw results, logs and the table are written")
	agents      = flag.Int("agents", 4096, "agents in the steady and flood scenarios")
	rounds      = flag.Int("rounds", 3, "rounds of the flood scenario (receivers alternating)")
	queueRounds = flag.Int("queue-rounds", 15, "paired rounds of the queue scenario: the observer and the bare receiver side by side on the machine's queue")
	queueOwn    = flag.Int("queue-own-rounds", 3, "how many of the first queue rounds end with the observer on its own queue (its loss, and the scrape latency of both queues)")
	floodBeats  = flag.Int64("flood-beats", 1_000_000, "beats per flood")
	steadyDur   = flag.Duration("steady", 25*time.Second, "length of the steady 1 Hz scenario")
	idleDur     = flag.Duration("idle", 10*time.Second, "idle window over which wakeups are counted")
	thresholdMs = flag.Int("threshold-ms", 1500, "observer threshold in the steady scenario (beats come every 1000 ms)")
	goBench     = flag.Bool("go-bench", true, "run the Go benchmarks (go test -run '^$' -bench . -benchmem ./...)")
	scenarios   = flag.String("scenarios", "idle,steady,queue,wakeups,flood", "which end-to-end scenarios to run")
	observerB   = flag.String("observer-b", "", "with --scenarios ab: a second binary to compare with --observer at 4096 × 1 Hz, alternating")
	bareRecv    = flag.String("bare-receiver", "", "internal: be the bare receiver on this socket until SIGTERM")
	bareBatched = flag.Bool("bare-batched", false, "internal: the bare receiver reads in batches every 9 ms, with timestamps, as the observer does")
)

func main() {
	flag.Parse()
	if *bareRecv != "" {
		os.Exit(runBareReceiver(*bareRecv))
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "varta-bench: must run as root: the load generator attaches other pids' SCM_CREDENTIALS (CAP_SYS_ADMIN)")
		os.Exit(1)
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigc
		fmt.Fprintln(os.Stderr, "varta-bench: interrupted: killing the observer, the receiver and every child")
		cleanup()
		os.Exit(130)
	}()
	err := run()
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "varta-bench:", err)
		os.Exit(1)
	}
}

// Everything that must not outlive the harness, even on Ctrl-C.
var (
	liveMu    sync.Mutex
	liveProcs = map[*exec.Cmd]bool{}
	liveKids  *loadgen.Children
)

func track(c *exec.Cmd) {
	liveMu.Lock()
	liveProcs[c] = true
	liveMu.Unlock()
}

func untrack(c *exec.Cmd) {
	liveMu.Lock()
	delete(liveProcs, c)
	liveMu.Unlock()
}

func cleanup() {
	liveMu.Lock()
	defer liveMu.Unlock()
	for c := range liveProcs {
		c.Process.Kill()
	}
	if liveKids != nil {
		liveKids.Close()
		liveKids = nil
	}
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "varta-bench: "+format+"\n", a...)
}

// results is everything measured, written as results.json.
type results struct {
	Machine      map[string]string `json:"machine"`
	PromEndpoint bool              `json:"prom_endpoint"`
	GoBench      []goBenchLine     `json:"go_bench"`
	Idle         idleResult        `json:"idle"`
	Steady       steadyResult      `json:"steady"`
	Flood        []floodRound      `json:"flood"`
	BareSteady   liteResult        `json:"bare_steady"`
	// BareBatched: the same load into a receiver that only does what the
	// observer must, reading in batches every 9 ms (the CPU floor).
	BareBatched liteResult     `json:"bare_batched"`
	Queue       []queueRound   `json:"queue"`
	Wakeups     []wakeupResult `json:"wakeups"`
	// ObserverQueue is the socket queue the observer reported at start
	// (its own network namespace's, or the machine's limit).
	ObserverQueue int                `json:"observer_queue"`
	Notes         []string           `json:"notes"`
	Extra         map[string]float64 `json:"extra,omitempty"`
}

func run() error {
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	bin, err := filepath.Abs(*observerBin)
	if err != nil {
		return err
	}
	*observerBin = bin
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("observer binary: %v (run make build first)", err)
	}
	var r results
	r.Machine = machine()
	progress("machine: %s, %s cpus, kernel %s, %s, load average %s", r.Machine["cpu"], r.Machine["nproc"], r.Machine["kernel"], r.Machine["go"], r.Machine["loadavg_start"])

	r.PromEndpoint = promAvailable()
	if !r.PromEndpoint {
		r.Notes = append(r.Notes, "the observer binary has no /metrics endpoint yet (--prom-addr fails at start): scrape lines skipped, scenarios run without --prom-addr")
	}

	if *goBench {
		progress("Go benchmarks (go test -run '^$' -bench . -benchmem ./...)")
		if r.GoBench, err = runGoBench(); err != nil {
			return err
		}
	}

	want := func(s string) bool { return slices.Contains(strings.Split(*scenarios, ","), s) }
	if want("idle") {
		progress("idle: observer with no agents, wakeups over %v", *idleDur)
		if r.Idle, err = runIdle(r.PromEndpoint); err != nil {
			return err
		}
	}

	progress("spawning %d sleeping children to stand in for agents", *agents)
	t0 := time.Now()
	kids, err := loadgen.SpawnChildren(*agents)
	if err != nil {
		return err
	}
	liveMu.Lock()
	liveKids = kids
	liveMu.Unlock()
	progress("spawned in %v", time.Since(t0).Round(time.Millisecond))

	if want("steady") {
		progress("steady: %d agents × 1 Hz for %v, /metrics scraped every second, every 4th agent silent from %v", *agents, *steadyDur, steadySilenceAt())
		if r.Steady, err = runSteady(kids.Pids, r.PromEndpoint); err != nil {
			return err
		}
	}

	if want("steady") {
		r.ObserverQueue = observerQueue(filepath.Join(*outDir, "steady.stderr"))
		progress("the same 4096 × 1 Hz load into the bare receiver with the observer's socket queue (%d) (%v): the machine's floor for loss and CPU", r.ObserverQueue, liteDur)
		if r.BareSteady, err = runLite(kids.Pids, "bare", r.ObserverQueue, false); err != nil {
			return err
		}
		progress("the same load into a receiver that reads it in batches every 9 ms, with credentials and timestamps, and does nothing else (socket queue %d) (%v): the floor under the observer's CPU", r.ObserverQueue, liteDur)
		if r.BareBatched, err = runLite(kids.Pids, "bare-batched", r.ObserverQueue, false); err != nil {
			return err
		}
	}

	for i := 0; want("queue") && i < *queueRounds; i++ {
		then := ", then into the observer with its own"
		if i >= *queueOwn {
			then = ""
		}
		progress("queue round %d/%d: %d × 1 Hz for %v into the bare receiver and the observer with the machine's queue (%s) side by side, every beat sent to both%s; the observers scraped every second", i+1, *queueRounds, len(kids.Pids), liteDur, r.Machine["qlen"], then)
		q, err := runQueueRound(kids.Pids, r.PromEndpoint, i < *queueOwn)
		if err != nil {
			return err
		}
		r.Queue = append(r.Queue, q)
	}

	if want("wakeups") {
		progress("wakeups: the observer (own queue, not scraped) at %v agents × 1 Hz, 14 s each; context switches by cause with perf(1)", wakeupAgents)
		if r.Wakeups, err = runWakeups(kids.Pids); err != nil {
			return err
		}
	}

	if want("ab") {
		if err := runAB(kids.Pids); err != nil {
			return err
		}
	}

	if want("flood") && r.ObserverQueue == 0 {
		p, err := startObserver("queue-probe", false, nil, "--threshold-ms", "1000", "--tracker-capacity", strconv.Itoa(*agents))
		if err != nil {
			return err
		}
		p.stop()
		p.remove()
		r.ObserverQueue = observerQueue(filepath.Join(*outDir, "queue-probe.stderr"))
	}
	for i := 0; want("flood") && i < *rounds; i++ {
		progress("flood round %d/%d: %d beats into the bare receiver (socket queue %d, as the observer's)", i+1, *rounds, *floodBeats, r.ObserverQueue)
		bare, err := floodBare(kids.Pids, r.ObserverQueue)
		if err != nil {
			return err
		}
		progress("  bare receiver: %.0f frames/s", bare.Rate)
		progress("flood round %d/%d: %d beats into the observer", i+1, *rounds, *floodBeats)
		obs, err := floodObserver(kids.Pids, r.PromEndpoint)
		if err != nil {
			return err
		}
		progress("  observer: %.0f beats/s, %d GCs during the flood", obs.Rate, obs.GCDuring)
		r.Flood = append(r.Flood, floodRound{Bare: bare, Observer: obs})
	}
	r.Machine["loadavg_end"] = loadavg()

	table := renderTable(&r)
	os.WriteFile(filepath.Join(*outDir, "table.md"), []byte(table), 0o644)
	js, _ := json.MarshalIndent(&r, "", "  ")
	os.WriteFile(filepath.Join(*outDir, "results.json"), js, 0o644)
	fmt.Print(table)
	return nil
}

// ---- machine ----

func machine() map[string]string {
	m := map[string]string{
		"nproc":  strconv.Itoa(runtime.NumCPU()),
		"go":     runtime.Version(),
		"kernel": strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		"cpu":    cpuModel(),
		"qlen":   strings.TrimSpace(readFile("/proc/sys/net/unix/max_dgram_qlen")),
		"date":   time.Now().UTC().Format("2006-01-02 15:04 UTC"),
	}
	m["loadavg_start"] = loadavg()
	return m
}

func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// ---- the observer process ----

type observerProc struct {
	cmd      *exec.Cmd
	dir      string
	sock     string
	events   string
	stderr   string
	promAddr string
	done     chan struct{}
}

// startObserver runs the observer in a fresh directory. With prom it
// passes --prom-addr 127.0.0.1:0 and reads the bound address from the
// first stdout line.
func startObserver(name string, prom bool, env []string, args ...string) (*observerProc, error) {
	dir, err := os.MkdirTemp("", "vwbench")
	if err != nil {
		return nil, err
	}
	p := &observerProc{dir: dir, sock: filepath.Join(dir, "s.sock"), events: filepath.Join(dir, "events.tsv"),
		stderr: filepath.Join(*outDir, name+".stderr"), done: make(chan struct{})}
	args = append([]string{"--socket", p.sock, "--export-file", p.events}, args...)
	if prom {
		args = append(args, "--prom-addr", "127.0.0.1:0")
	}
	p.cmd = exec.Command(*observerBin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	errf, err := os.Create(p.stderr)
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = errf
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		errf.Close()
		return nil, err
	}
	errf.Close()
	track(p.cmd)
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		l, _ := br.ReadString('\n')
		lines <- strings.TrimSpace(l)
		io.Copy(io.Discard, br)
	}()
	go func() { p.cmd.Wait(); untrack(p.cmd); close(p.done) }()
	if prom {
		select {
		case p.promAddr = <-lines:
		case <-p.done:
			return nil, fmt.Errorf("observer exited at start: %s", strings.TrimSpace(readFile(p.stderr)))
		case <-time.After(10 * time.Second):
			p.kill()
			return nil, errors.New("observer printed no address in 10 s")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if fi, err := os.Lstat(p.sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("observer exited at start: %s", strings.TrimSpace(readFile(p.stderr)))
		default:
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, errors.New("observer socket never appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p, nil
}

func (p *observerProc) pid() int { return p.cmd.Process.Pid }

// stop ends the observer with SIGTERM (it flushes the event file).
func (p *observerProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
		return errors.New("observer did not stop within 20 s of SIGTERM")
	}
	return nil
}

func (p *observerProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *observerProc) remove() { os.RemoveAll(p.dir) }

// observerQueue reads the socket queue the observer logged at start
// ("socket queue limit … datagrams=N"); 0 when it logged none.
func observerQueue(stderrPath string) int {
	for _, line := range strings.Split(readFile(stderrPath), "\n") {
		if !strings.Contains(line, `msg="socket queue limit"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "datagrams="); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return 0
}

// bareReceiverCmd runs this program as the bare receiver on sock. With a
// qlen above the machine's, it runs in a network namespace of its own whose
// net.unix.max_dgram_qlen is qlen (as the observer creates its socket), so
// both receivers are measured with the same queue; the machine's setting
// stays as it is. unshare and sh exec, so the pid is the receiver's.
func bareReceiverCmd(sock string, qlen int, batched bool) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"--bare-receiver", sock}
	if batched {
		args = append(args, "--bare-batched")
	}
	machineQ, _ := strconv.Atoi(strings.TrimSpace(readFile("/proc/sys/net/unix/max_dgram_qlen")))
	if qlen <= machineQ {
		return exec.Command(self, args...), nil
	}
	script := fmt.Sprintf(`echo %d > /proc/sys/net/unix/max_dgram_qlen && exec "$0" "$@"`, qlen)
	return exec.Command("unshare", append([]string{"-n", "sh", "-c", script, self}, args...)...), nil
}

// promAvailable reports whether the observer binary serves /metrics.
func promAvailable() bool {
	p, err := startObserver("probe", true, nil, "--threshold-ms", "1000")
	if err != nil {
		progress("no /metrics: %v", err)
		return false
	}
	p.stop()
	p.remove()
	return true
}

// ---- /proc sampling ----

// cpuTicks returns utime+stime of pid (all threads) in clock ticks.
func cpuTicks(pid int) int64 {
	s := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// cpuNs sums the first field of /proc/PID/task/*/schedstat: time on a CPU
// in ns, of every thread (finer than the clock ticks of /proc/PID/stat).
func cpuNs(pid int) int64 {
	var sum int64
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		f := strings.Fields(readFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name())))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}

// threadUse is one thread's share of a window: CPU (schedstat) and
// context switches, voluntary (it slept and was woken) and involuntary.
type threadUse struct {
	Tid        string  `json:"tid"`
	CPUPercent float64 `json:"cpu_percent"`
	VolPerS    float64 `json:"voluntary_per_s"`
	InvolPerS  float64 `json:"involuntary_per_s"`
}

type threadSample struct{ cpuNs, vol, invol int64 }

// threadSamples reads, per thread of pid, schedstat's time on a CPU and
// the voluntary and involuntary context switches of status.
func threadSamples(pid int) map[string]threadSample {
	out := map[string]threadSample{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		var ts threadSample
		if f := strings.Fields(readFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))); len(f) > 0 {
			ts.cpuNs, _ = strconv.ParseInt(f[0], 10, 64)
		}
		for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name())), "\n") {
			k, v, _ := strings.Cut(l, ":")
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				ts.vol = x
			case "nonvoluntary_ctxt_switches":
				ts.invol = x
			}
		}
		out[t.Name()] = ts
	}
	return out
}

// threadUses turns two samples d seconds apart into per-thread rates, the
// busiest thread first (the loop's; the Go runtime's threads follow).
func threadUses(a, b map[string]threadSample, d float64) []threadUse {
	var out []threadUse
	for tid, y := range b {
		x := a[tid]
		out = append(out, threadUse{Tid: tid, CPUPercent: 100 * float64(y.cpuNs-x.cpuNs) / 1e9 / d,
			VolPerS: float64(y.vol-x.vol) / d, InvolPerS: float64(y.invol-x.invol) / d})
	}
	slices.SortFunc(out, func(p, q threadUse) int { return int(1e6 * (q.CPUPercent - p.CPUPercent)) })
	return out
}

func fmtThreads(ts []threadUse) string {
	var parts []string
	for _, t := range ts {
		if t.CPUPercent < 0.005 && t.VolPerS+t.InvolPerS < 0.5 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%.2f%% %.0f+%.0f/s", t.CPUPercent, t.VolPerS, t.InvolPerS))
	}
	return strings.Join(parts, ", ")
}

// clockTicks is USER_HZ, 100 on every Linux architecture that matters.
const clockTicks = 100

// taskSwitches returns, per thread of pid, voluntary + involuntary context
// switches: each voluntary one is a sleep that ended in a wakeup.
func taskSwitches(pid int) map[string]int64 {
	out := map[string]int64{}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		st := readFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		var n int64
		for _, l := range strings.Split(st, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
		out[t.Name()] = n
	}
	return out
}

func sumSwitchDelta(a, b map[string]int64) (total int64, perThread map[string]int64) {
	perThread = map[string]int64{}
	for tid, n := range b {
		d := n - a[tid] // a thread born in between counts from 0
		perThread[tid] = d
		total += d
	}
	return
}

// statusKB returns a "Vm…:  N kB" field of /proc/PID/status.
func statusKB(pid int, key string) int64 {
	for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			x, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return x
		}
	}
	return -1
}

// ---- scraping ----

type scrape struct {
	DurMs float64
	Bytes int
	Err   string
	Body  []byte `json:"-"`
}

// scrapeOnce does GET /metrics over a fresh connection and times it from
// the request to the last byte of the body.
func scrapeOnce(addr string) scrape {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return scrape{Err: err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t := time.Now()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"); err != nil {
		return scrape{Err: err.Error()}
	}
	resp, err := io.ReadAll(c)
	d := time.Since(t)
	if err != nil && len(resp) == 0 {
		return scrape{Err: err.Error()}
	}
	head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		return scrape{Err: fmt.Sprintf("bad response: %.60q", resp)}
	}
	return scrape{DurMs: float64(d) / 1e6, Bytes: len(body), Body: body}
}

// scraper scrapes every second until stopped.
type scraper struct {
	addr string
	mu   sync.Mutex
	all  []scrape
	stop chan struct{}
	done chan struct{}
}

func startScraper(addr string) *scraper {
	s := &scraper{addr: addr, stop: make(chan struct{}), done: make(chan struct{})}
	if addr == "" {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				r := scrapeOnce(s.addr)
				r.Body = nil
				s.mu.Lock()
				s.all = append(s.all, r)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *scraper) finish() []scrape {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all
}

// ---- the event file ----

// eachEvent calls fn for every complete line: ns, kind, pid, nonce.
func eachEvent(path string, fn func(ns int64, kind, pid string, nonce uint64)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		cols := strings.SplitN(sc.Text(), "\t", 5)
		if len(cols) < 5 {
			continue
		}
		ns, err := strconv.ParseInt(cols[0], 10, 64)
		if err != nil {
			continue
		}
		nonce, _ := strconv.ParseUint(cols[3], 10, 64)
		fn(ns, cols[1], cols[2], nonce)
	}
	return sc.Err()
}

// ---- Go benchmarks ----

type goBenchLine struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_op"`
	BytesPerOp  float64 `json:"b_op"`
	AllocsPerOp float64 `json:"allocs_op"`
}

var (
	benchLineRE   = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op`)
	benchBytesRE  = regexp.MustCompile(`\s([\d.]+) B/op`)
	benchAllocsRE = regexp.MustCompile(`\s([\d.]+) allocs/op`)
)

func runGoBench() ([]goBenchLine, error) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "test", "-run", "^$", "-bench", ".", "-benchmem", "-count=1", "./...")
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(*outDir, "gobench.txt"), out, 0o644)
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	var lines []goBenchLine
	for _, l := range strings.Split(string(out), "\n") {
		m := benchLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		g := goBenchLine{Name: m[1], BytesPerOp: -1, AllocsPerOp: -1}
		g.NsPerOp, _ = strconv.ParseFloat(m[2], 64)
		if b := benchBytesRE.FindStringSubmatch(l); b != nil {
			g.BytesPerOp, _ = strconv.ParseFloat(b[1], 64)
		}
		if a := benchAllocsRE.FindStringSubmatch(l); a != nil {
			g.AllocsPerOp, _ = strconv.ParseFloat(a[1], 64)
		}
		lines = append(lines, g)
	}
	return lines, nil
}

// ---- idle ----

type idleResult struct {
	Seconds      float64          `json:"seconds"`
	Switches     int64            `json:"switches"`
	WakeupsPerS  float64          `json:"wakeups_per_s"`
	PerThread    map[string]int64 `json:"per_thread"`
	Threads      int              `json:"threads"`
	CPUTicks     int64            `json:"cpu_ticks"`
	RSSKB, HWMKB int64
}

func runIdle(prom bool) (idleResult, error) {
	var r idleResult
	p, err := startObserver("idle", prom, nil, "--threshold-ms", strconv.Itoa(*thresholdMs))
	if err != nil {
		return r, err
	}
	defer p.remove()
	time.Sleep(2 * time.Second) // let start-up settle
	pid := p.pid()
	a, c0 := taskSwitches(pid), cpuTicks(pid)
	t := time.Now()
	time.Sleep(*idleDur)
	b, c1 := taskSwitches(pid), cpuTicks(pid)
	r.Seconds = time.Since(t).Seconds()
	r.Switches, r.PerThread = sumSwitchDelta(a, b)
	r.WakeupsPerS = float64(r.Switches) / r.Seconds
	r.Threads = len(b)
	r.CPUTicks = c1 - c0
	r.RSSKB, r.HWMKB = statusKB(pid, "VmRSS"), statusKB(pid, "VmHWM")
	progress("  idle: %d context switches in %.1f s over %d threads (%v)", r.Switches, r.Seconds, r.Threads, r.PerThread)
	return r, p.stop()
}

// ---- steady 1 Hz with silence ----

type steadyResult struct {
	Load          loadgen.Result `json:"load"`
	CPUWindowS    float64        `json:"cpu_window_s"`
	CPUTicks      int64          `json:"cpu_ticks"`
	CPUPercent    float64        `json:"cpu_percent"`
	CPUSchedPct   float64        `json:"cpu_schedstat_percent"`
	SwitchesPerS  float64        `json:"switches_per_s"`
	RSSKB         int64          `json:"rss_kb"`
	HWMKB         int64          `json:"hwm_kb"`
	RssAnonKB     int64          `json:"rss_anon_kb"`
	RssFileKB     int64          `json:"rss_file_kb"`
	Stalls        int            `json:"stalls_of_silenced"`
	OtherStalls   int            `json:"stalls_of_others"`
	DelayP50Ms    float64        `json:"delay_p50_ms"`
	DelayP99Ms    float64        `json:"delay_p99_ms"`
	DelayMaxMs    float64        `json:"delay_max_ms"`
	DelayMinMs    float64        `json:"delay_min_ms"`
	Scrapes       []scrape       `json:"scrapes"`
	ScrapeP50Ms   float64        `json:"scrape_p50_ms"`
	ScrapeMaxMs   float64        `json:"scrape_max_ms"`
	ScrapeBytes   int            `json:"scrape_bytes"`
	ScrapeErrors  int            `json:"scrape_errors"`
	HistogramLine string         `json:"histogram"`
	TrackedPids   string         `json:"tracked_pids"`
}

func steadySilenceAt() time.Duration { return *steadyDur - 6*time.Second }

func runSteady(pids []uint32, prom bool) (steadyResult, error) {
	var r steadyResult
	threshold := int64(*thresholdMs) * 1_000_000
	p, err := startObserver("steady", prom, nil, "--threshold-ms", strconv.Itoa(*thresholdMs),
		"--tracker-capacity", strconv.Itoa(len(pids)))
	if err != nil {
		return r, err
	}
	defer p.remove()
	pid := p.pid()
	sc := startScraper(p.promAddr)

	// CPU and memory are sampled in a window after every agent is known
	// and before the silence: 4096 agents tracked, all beating at 1 Hz.
	cpuFrom, cpuTo := 5*time.Second, steadySilenceAt()-time.Second
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		time.Sleep(cpuFrom)
		c0, n0, s0, t0 := cpuTicks(pid), cpuNs(pid), taskSwitches(pid), time.Now()
		time.Sleep(cpuTo - cpuFrom)
		c1, n1, s1 := cpuTicks(pid), cpuNs(pid), taskSwitches(pid)
		r.CPUWindowS = time.Since(t0).Seconds()
		r.CPUSchedPct = 100 * float64(n1-n0) / 1e9 / r.CPUWindowS
		r.CPUTicks = c1 - c0
		r.CPUPercent = 100 * float64(r.CPUTicks) / clockTicks / r.CPUWindowS
		sw, _ := sumSwitchDelta(s0, s1)
		r.SwitchesPerS = float64(sw) / r.CPUWindowS
		r.RSSKB, r.HWMKB = statusKB(pid, "VmRSS"), statusKB(pid, "VmHWM")
		r.RssAnonKB, r.RssFileKB = statusKB(pid, "RssAnon"), statusKB(pid, "RssFile")
	}()
	load, err := loadgen.Run(loadgen.Config{Socket: p.sock, Pids: pids, RateHz: 1, Duration: *steadyDur,
		SilenceEvery: 4, SilenceAt: steadySilenceAt()})
	loadEnd := loadgen.Mono()
	<-sampled
	r.Load = load
	if err != nil {
		p.kill()
		return r, err
	}
	r.Scrapes = sc.finish()
	if p.promAddr != "" {
		last := scrapeOnce(p.promAddr)
		for _, l := range strings.Split(string(last.Body), "\n") {
			if strings.HasPrefix(l, "varta_stall_detection_delay_seconds_count") || strings.HasPrefix(l, "varta_stall_detection_delay_seconds_sum") ||
				strings.HasPrefix(l, `varta_stall_detection_delay_seconds_bucket{le="0.002"}`) {
				r.HistogramLine += strings.TrimSpace(l) + "; "
			}
			if strings.HasPrefix(l, "varta_tracker_pids ") {
				r.TrackedPids = strings.TrimPrefix(l, "varta_tracker_pids ")
			}
		}
	}
	if err := p.stop(); err != nil {
		return r, err
	}

	var durs []float64
	for _, s := range r.Scrapes {
		if s.Err != "" {
			r.ScrapeErrors++
			continue
		}
		durs = append(durs, s.DurMs)
		r.ScrapeBytes = max(r.ScrapeBytes, s.Bytes)
	}
	if len(durs) > 0 {
		r.ScrapeP50Ms, r.ScrapeMaxMs = percentile(durs, 50), percentile(durs, 100)
	}

	// Stall precision from the event file: surfaced − deadline, where the
	// deadline is the pid's last beat row + threshold.
	silenced := map[string]bool{}
	for _, pid := range load.SilencedPids {
		silenced[strconv.FormatUint(uint64(pid), 10)] = true
	}
	lastBeat := map[string]int64{}
	var delays []float64
	err = eachEvent(p.events, func(ns int64, kind, pid string, _ uint64) {
		switch kind {
		case "beat":
			lastBeat[pid] = ns
		case "stall":
			if ns > loadEnd {
				return // after the load stopped: not "while the rest beat"
			}
			if !silenced[pid] {
				r.OtherStalls++
			}
			if lb, ok := lastBeat[pid]; ok {
				delays = append(delays, float64(ns-(lb+threshold))/1e6)
			}
			if silenced[pid] {
				r.Stalls++
			}
		}
	})
	if err != nil {
		return r, err
	}
	if len(delays) > 0 {
		r.DelayP50Ms, r.DelayP99Ms, r.DelayMaxMs, r.DelayMinMs = percentile(delays, 50), percentile(delays, 99), percentile(delays, 100), percentile(delays, 0)
	}
	progress("  steady: lost per second %v", load.LostPerSecond)
	progress("  steady: %d beats sent > 1 ms late, %d of the lost ones", load.Late, load.LostLate)
	progress("  steady: sent %d lost %d (max sender lag %.0f µs); CPU %.2f%% (%d ticks in %.1f s), %.0f switches/s; RSS %d kB, HWM %d kB",
		load.Sent, load.Lost, load.MaxLagUs, r.CPUPercent, r.CPUTicks, r.CPUWindowS, r.SwitchesPerS, r.RSSKB, r.HWMKB)
	progress("  stalls: %d of %d silenced agents, %d others; delay p50 %.3f p99 %.3f max %.3f min %.3f ms; scrapes %d (errors %d) p50 %.2f ms max %.2f ms, %d bytes",
		r.Stalls, load.Silenced, r.OtherStalls, r.DelayP50Ms, r.DelayP99Ms, r.DelayMaxMs, r.DelayMinMs, len(r.Scrapes), r.ScrapeErrors, r.ScrapeP50Ms, r.ScrapeMaxMs, r.ScrapeBytes)
	return r, nil
}

// percentile returns the p-th percentile (nearest rank) of xs.
func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ---- floods ----

type floodRound struct {
	Bare     loadgen.ReceiverResult `json:"bare"`
	Observer observerFlood          `json:"observer"`
}

type observerFlood struct {
	Load     loadgen.Result `json:"load"`
	Beats    int64          `json:"beats"`
	Rate     float64        `json:"beats_per_s"`
	GCBefore int            `json:"gc_before"`
	GCDuring int            `json:"gc_during"`
	GCTotal  int            `json:"gc_total"`
	HWMKB    int64          `json:"hwm_kb"`
	Scrapes  int            `json:"scrapes"`
}

func runBareReceiver(sock string) int {
	r, err := loadgen.Listen(sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer r.Close()
	stop := make(chan struct{})
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigc; close(stop) }()
	var res loadgen.ReceiverResult
	if *bareBatched {
		runtime.GOMAXPROCS(1) // as the observer runs on Linux
		res, err = r.RunBatched(stop, 9*time.Millisecond, true)
	} else {
		res, err = r.Run(stop)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// floodBare floods a bare receiver running as its own process, like the
// observer, so both compete with the sender for the same two cores.
func floodBare(pids []uint32, qlen int) (loadgen.ReceiverResult, error) {
	b, err := startBareReceiver(qlen, false)
	if err != nil {
		return loadgen.ReceiverResult{}, err
	}
	nonces := make([]uint64, len(pids))
	// Warm-up as for the observer: one beat per agent, then the flood.
	if _, err := loadgen.Run(loadgen.Config{Socket: b.sock, Pids: pids, RateHz: 2, Duration: 500 * time.Millisecond, Nonces: nonces}); err != nil {
		b.kill()
		return loadgen.ReceiverResult{}, err
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := loadgen.Run(loadgen.Config{Socket: b.sock, Pids: pids, Flood: true, Beats: *floodBeats, Nonces: nonces}); err != nil {
		b.kill()
		return loadgen.ReceiverResult{}, err
	}
	time.Sleep(200 * time.Millisecond)
	return b.stop()
}

// bareProc is a bare receiver running as its own process.
type bareProc struct {
	cmd  *exec.Cmd
	dir  string
	sock string
	out  bytes.Buffer
}

// startBareReceiver runs the bare receiver with a socket queue of qlen (see
// bareReceiverCmd) and returns once its socket exists.
func startBareReceiver(qlen int, batched bool) (*bareProc, error) {
	dir, err := os.MkdirTemp("", "vwbare")
	if err != nil {
		return nil, err
	}
	b := &bareProc{dir: dir, sock: filepath.Join(dir, "bare.sock")}
	if b.cmd, err = bareReceiverCmd(b.sock, qlen, batched); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b.cmd.Stdout, b.cmd.Stderr = &b.out, os.Stderr
	if err := b.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	track(b.cmd)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Lstat(b.sock); err == nil {
			return b, nil
		}
		if time.Now().After(deadline) {
			b.kill()
			return nil, errors.New("bare receiver socket never appeared")
		}
	}
}

// kill ends the receiver without a result.
func (b *bareProc) kill() {
	b.cmd.Process.Kill()
	b.cmd.Wait()
	untrack(b.cmd)
	os.RemoveAll(b.dir)
}

// stop ends the receiver with SIGTERM and returns what it counted.
func (b *bareProc) stop() (loadgen.ReceiverResult, error) {
	var res loadgen.ReceiverResult
	b.cmd.Process.Signal(syscall.SIGTERM)
	err := b.cmd.Wait()
	untrack(b.cmd)
	os.RemoveAll(b.dir)
	if err != nil {
		return res, fmt.Errorf("bare receiver: %v", err)
	}
	if err := json.Unmarshal(b.out.Bytes(), &res); err != nil {
		return res, fmt.Errorf("bare receiver output %q: %v", b.out.String(), err)
	}
	return res, nil
}

// floodObserver floods the observer with the event file and metrics on
// (scraped every second) under GODEBUG=gctrace=1.
func floodObserver(pids []uint32, prom bool) (observerFlood, error) {
	var r observerFlood
	p, err := startObserver("flood", prom, []string{"GODEBUG=gctrace=1"},
		"--threshold-ms", "60000", "--tracker-capacity", strconv.Itoa(len(pids)))
	if err != nil {
		return r, err
	}
	defer p.remove()
	nonces := make([]uint64, len(pids))
	if _, err := loadgen.Run(loadgen.Config{Socket: p.sock, Pids: pids, RateHz: 2, Duration: 500 * time.Millisecond, Nonces: nonces}); err != nil {
		p.kill()
		return r, err
	}
	time.Sleep(200 * time.Millisecond)
	r.GCBefore = countGC(p.stderr)
	sc := startScraper(p.promAddr)
	r.Load, err = loadgen.Run(loadgen.Config{Socket: p.sock, Pids: pids, Flood: true, Beats: *floodBeats, Nonces: nonces})
	if err != nil {
		p.kill()
		return r, err
	}
	time.Sleep(300 * time.Millisecond)
	r.Scrapes = len(sc.finish())
	r.GCDuring = countGC(p.stderr) - r.GCBefore
	r.HWMKB = statusKB(p.pid(), "VmHWM")
	if err := p.stop(); err != nil {
		return r, err
	}
	r.GCTotal = countGC(p.stderr)
	// Throughput from the event file: the flood's beat rows (nonce > 1;
	// the warm-up sent nonce 1), first to last.
	var first, last int64
	err = eachEvent(p.events, func(ns int64, kind, _ string, nonce uint64) {
		if kind != "beat" || nonce < 2 {
			return
		}
		if r.Beats == 0 {
			first = ns
		}
		r.Beats++
		last = ns
	})
	if err != nil {
		return r, err
	}
	if r.Beats > 1 && last > first {
		r.Rate = float64(r.Beats-1) / (float64(last-first) / 1e9)
	}
	return r, nil
}

// countGC counts gctrace lines ("gc N @…") in the observer's stderr.
func countGC(path string) int {
	n := 0
	for _, l := range strings.Split(readFile(path), "\n") {
		if strings.HasPrefix(l, "gc ") {
			n++
		}
	}
	return n
}

// ---- the table ----

func median(xs []float64) float64 { return percentile(xs, 50) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func renderTable(r *results) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("\nvarta-watch benchmarks — %s; %s cpus %s; kernel %s; %s; max_dgram_qlen %s; load average %s at start, %s at end\n\n",
		r.Machine["date"], r.Machine["nproc"], r.Machine["cpu"], r.Machine["kernel"], r.Machine["go"], r.Machine["qlen"], r.Machine["loadavg_start"], r.Machine["loadavg_end"])
	w("| target | goal | measured | verdict |\n|---|---|---|---|\n")

	// Throughput.
	var bare, obs, gcs []float64
	var sent, beats int64
	for _, f := range r.Flood {
		bare = append(bare, f.Bare.Rate)
		obs = append(obs, f.Observer.Rate)
		gcs = append(gcs, float64(f.Observer.GCDuring))
		sent += f.Observer.Load.Sent
		beats += f.Observer.Beats
	}
	if len(r.Flood) > 0 {
		mb, mo := median(bare), median(obs)
		metrics := "metrics on, scraped every second"
		if !r.PromEndpoint {
			metrics = "no /metrics in this build"
		}
		var per []string
		for _, f := range r.Flood {
			per = append(per, fmt.Sprintf("%.0fk/%.0fk", f.Observer.Rate/1e3, f.Bare.Rate/1e3))
		}
		w("| throughput, observer vs bare receiver (%d agents, %d-beat flood, event file on, %s; both with a socket queue of %d; median of %d rounds) | ≥ 90 %% | %.1f %% (%.0f vs %.0f beats/s; rounds, observer/bare: %s; observer accepted %d of %d frames sent) | %s |\n",
			*agents, *floodBeats, metrics, r.ObserverQueue, len(r.Flood), 100*mo/mb, mo, mb, strings.Join(per, ", "), beats, sent, verdict(mo >= 0.9*mb))
	}
	s := r.Steady
	steadyRan := s.Load.Sent > 0 // rows of scenarios not run are left out
	if steadyRan {
		w("| stall precision, surfaced − deadline (%d agents × 1 Hz, %d silenced, the rest beating; threshold %d ms) | p99 ≤ 2 ms | p50 %.3f ms, p99 %.3f ms, max %.3f ms (%d stalls; %d of other agents) | %s |\n",
			*agents, s.Load.Silenced, *thresholdMs, s.DelayP50Ms, s.DelayP99Ms, s.DelayMaxMs, s.Stalls+s.OtherStalls, s.OtherStalls, verdict(s.Stalls > 0 && s.DelayP99Ms <= 2))
		scraped := "/metrics scraped every second"
		if !r.PromEndpoint {
			scraped = "**not scraped: no /metrics in this build**"
		}
		w("| beats lost to a full socket queue (%d agents × 1 Hz, %s; the machine's max_dgram_qlen %s left as it is, the observer's socket queue %d) | 0 | %d of %d (%d of them sent > 1 ms late by a descheduled sender, in catch-up bursts; %d beats late in all, max lag %.1f ms) | %s |\n",
			*agents, scraped, r.Machine["qlen"], r.ObserverQueue, s.Load.Lost, s.Load.Sent+s.Load.Lost, s.Load.LostLate, s.Load.Late, s.Load.MaxLagUs/1000, verdict(s.Load.Lost == 0 && r.PromEndpoint))
		w("| CPU at %d agents × 1 Hz (utime+stime of /proc/PID/stat over %.0f s%s) | ≤ 1 %% of one core | %.2f %% (schedstat: %.2f %%; %.0f context switches/s) | %s |\n",
			*agents, s.CPUWindowS, map[bool]string{true: ", scraped every second", false: ""}[r.PromEndpoint], s.CPUPercent, s.CPUSchedPct, s.SwitchesPerS, verdict(s.CPUPercent <= 1))
		if b := r.BareSteady; b.Load.Sent > 0 {
			w("| … the same load into the bare receiver with the same socket queue (%d), same run (the machine's floor) | | lost %d of %d (%d sent late); CPU %.2f %% (schedstat %.2f %%), %.0f context switches/s; %d gaps over 2 ms between frames, longest %.1f ms | |\n",
				b.Qlen, b.Load.Lost, b.Load.Sent+b.Load.Lost, b.Load.LostLate, b.CPUPercent, b.CPUSchedPc, b.Switches, b.Gaps2ms, b.MaxGapMs)
		}
		if b := r.BareBatched; b.Load.Sent > 0 {
			w("| … into a receiver that only takes the beats off the queue as the observer does (every 9 ms, recvmmsg of 16 with SO_PASSCRED and SO_TIMESTAMPNS; socket queue %d), same run: the floor under the CPU row | | CPU %.2f %% (schedstat %.2f %%; threads: %s), %.0f context switches/s; lost %d of %d | |\n",
				b.Qlen, b.CPUPercent, b.CPUSchedPc, fmtThreads(b.Threads), b.Switches, b.Load.Lost, b.Load.Sent+b.Load.Lost)
		}
	}
	if len(r.Queue) > 0 {
		renderQueueRows(w, r)
	}
	if r.Idle.Seconds > 0 {
		w("| idle wakeups, no agents (context switches of all %d threads over %.0f s) | 0 /s | %.2f /s (%d in %.0f s) | %s |\n",
			r.Idle.Threads, r.Idle.Seconds, r.Idle.WakeupsPerS, r.Idle.Switches, r.Idle.Seconds, verdict(r.Idle.Switches == 0))
	}
	for _, x := range r.Wakeups {
		how := "by cause (perf, sched:sched_switch over " + strconv.FormatFloat(x.PerfSecs, 'f', 0, 64) + " s, per s): " + fmtCauses(x)
		if x.Causes == nil {
			how = x.PerfNote
		}
		w("| context switches at %d agents × 1 Hz (own queue, not scraped; 9 s) | reported | %.0f /s, CPU %.2f %% (schedstat), lost %d; %s | reported |\n",
			x.Agents, x.Switches, x.CPUSchedPc, x.Lost, how)
	}
	if steadyRan {
		w("| RSS with %d agents tracked | ≤ 4 MB | VmRSS %.2f MiB (anonymous %.2f, file-backed %.2f: the binary's pages in use), VmHWM %.2f MiB; idle, no agents: %.2f MiB | %s |\n",
			*agents, float64(s.RSSKB)/1024, float64(s.RssAnonKB)/1024, float64(s.RssFileKB)/1024, float64(s.HWMKB)/1024, float64(r.Idle.RSSKB)/1024, verdict(s.HWMKB <= 4096))
	}
	allocs := func(name string) string {
		for _, g := range r.GoBench {
			if g.Name == name {
				return strconv.FormatFloat(g.AllocsPerOp, 'f', -1, 64)
			}
		}
		return "n/a"
	}
	scrapeBench, renderNs := "n/a", -1.0
	for _, g := range r.GoBench {
		if g.Name == "BenchmarkScrapeRender4096" {
			renderNs = g.NsPerOp
		}
		if strings.Contains(g.Name, "Scrape") && g.AllocsPerOp >= 0 && (scrapeBench == "n/a" || g.Name == "BenchmarkScrapeRender4096") {
			scrapeBench = strconv.FormatFloat(g.AllocsPerOp, 'f', -1, 64) + " (" + g.Name + ")"
		}
	}
	allZero := allocs("BenchmarkLoopBeat") == "0" && allocs("BenchmarkLoopRecvBeat") == "0" && allocs("BenchmarkLoopStall") == "0" && strings.HasPrefix(scrapeBench, "0 ")
	if len(r.GoBench) > 0 {
		w("| allocations after warm-up (Go benchmarks) | 0 per beat, stall, scrape | beat %s, beat via socket %s, stall %s, scrape %s | %s |\n",
			allocs("BenchmarkLoopBeat"), allocs("BenchmarkLoopRecvBeat"), allocs("BenchmarkLoopStall"), scrapeBench, verdict(allZero))
	}
	if len(gcs) > 0 {
		w("| garbage collections during a %d-beat flood (GODEBUG=gctrace=1) | 0 | %v per round (%d in the whole runs) | %s |\n",
			*floodBeats, gcs, sumGC(r.Flood), verdict(slices.Max(gcs) == 0))
	}
	scrapeRan := steadyRan || len(r.GoBench) > 0
	if scrapeRan && r.PromEndpoint {
		render := "render n/a"
		if renderNs >= 0 {
			render = fmt.Sprintf("render %.2f ms (BenchmarkScrapeRender4096)", renderNs/1e6)
		}
		w("| scrape of %d agents | reported | %s; GET /metrics during the steady run, request to last byte: p50 %.2f ms, max %.2f ms; %d bytes (%d scrapes, %d failed) | reported |\n",
			*agents, render, s.ScrapeP50Ms, s.ScrapeMaxMs, s.ScrapeBytes, len(s.Scrapes), s.ScrapeErrors)
	} else if scrapeRan {
		w("| scrape of %d agents | reported | skipped: no /metrics in this build | **missing** |\n", *agents)
	}
	w("\nGo benchmarks (go test -run '^$' -bench . -benchmem ./...):\n\n| benchmark | ns/op | B/op | allocs/op |\n|---|---|---|---|\n")
	for _, g := range r.GoBench {
		w("| %s | %.1f | %s | %s |\n", g.Name, g.NsPerOp, fmtNum(g.BytesPerOp), fmtNum(g.AllocsPerOp))
	}
	for _, n := range r.Notes {
		w("\nNote: %s\n", n)
	}
	return b.String()
}

// renderQueueRows writes the rows of the queue scenario: medians over its
// rounds, each round's value in parentheses.
func renderQueueRows(w func(string, ...any), r *results) {
	var bare, mach, own []liteResult
	for _, q := range r.Queue {
		bare, mach = append(bare, q.Bare), append(mach, q.Machine)
		if q.Own != nil {
			own = append(own, *q.Own)
		}
	}
	med := func(rs []liteResult, f func(liteResult) float64) (float64, string) {
		var xs []float64
		var per []string
		for _, x := range rs {
			xs = append(xs, f(x))
			per = append(per, strconv.FormatFloat(f(x), 'f', -1, 64))
		}
		return median(xs), strings.Join(per, "/")
	}
	lost := func(x liteResult) float64 { return float64(x.Load.Lost) }
	late := func(x liteResult) float64 { return float64(x.Load.LostLate) }
	runs := func(x liteResult) float64 { return float64(x.Load.LostRuns) }
	both := func(x liteResult) float64 { return float64(x.Load.LostBoth) }
	stalls := func(x liteResult) float64 { return float64(x.Stalls) }
	cpu := func(x liteResult) float64 { return math.Round(x.CPUSchedPc*100) / 100 }
	sw := func(x liteResult) float64 { return math.Round(x.Switches) }
	sent := func(rs []liteResult) int64 { return rs[0].Load.Sent + rs[0].Load.Lost }
	bl, blr := med(bare, lost)
	ml, mlr := med(mach, lost)
	ratio, more, less, mSum, bSum := pairedLoss(mach, bare)
	p := signTail(more, more+less)
	_, bLate := med(bare, late)
	_, mLate := med(mach, late)
	_, mBoth := med(mach, both)
	bu, bur := med(bare, runs)
	mu, mur := med(mach, runs)
	ms, msr := med(mach, stalls)
	bc, bcr := med(bare, cpu)
	mc, mcr := med(mach, cpu)
	bs, _ := med(bare, sw)
	msw, _ := med(mach, sw)
	lossVerdict := queueVerdict(more, less, mc < bc)
	scraped := "scraped every second"
	if !r.PromEndpoint {
		scraped = "not scraped: no /metrics in this build"
	}
	w("| beats lost at the machine's queue (%d): the observer with --socket-queue 0 (%s) against the bare receiver on the same queue, %d agents × 1 Hz for %v, side by side (every beat sent to both, back to back, which first alternating), %d rounds; medians (rounds) | lost no more than the bare receiver (not more in so many rounds that a sign test gives p < 0.05), CPU below it | observer lost more in %d rounds, fewer in %d, of %d (one-sided sign test p = %.3f); observer ÷ bare, median of the rounds %.2f; in all %d / %d; observer lost %.0f of %d (%s; of them sent > 1 ms late by the sender: %s; lost by the bare receiver too: %s), stalls those losses cause %.0f (%s; its event file: %.0f stalls, %s), CPU %.2f %% (%s; schedstat), %.0f switches/s; bare receiver lost %.0f (%s; sent late: %s), stalls they would cause %.0f (%s), CPU %.2f %% (%s), %.0f switches/s | %s |\n",
		mach[0].Qlen, scraped, *agents, liteDur, len(r.Queue), more, less, len(r.Queue), p, ratio, mSum, bSum, ml, sent(mach), mlr, mLate, mBoth, mu, mur, ms, msr, mc, mcr, msw, bl, blr, bLate, bu, bur, bc, bcr, bs, lossVerdict)
	if len(own) == 0 {
		return
	}
	ol, olr := med(own, lost)
	os_, osr := med(own, stalls)
	oc, ocr := med(own, cpu)
	osw, _ := med(own, sw)
	first := fmt.Sprintf("the first %d rounds", len(own))
	if len(own) == 1 {
		first = "the first round"
	}
	w("| … the observer with its own queue (%d), %s, %s | | lost %.0f (%s), %.0f stalls (%s), CPU %.2f %% (%s; schedstat), %.0f switches/s | |\n",
		own[0].Qlen, first, scraped, ol, olr, os_, osr, oc, ocr, osw)
	if !r.PromEndpoint {
		return
	}
	var ownS, machS []scrape
	for _, q := range r.Queue {
		if q.Own != nil { // the same rounds for both
			ownS, machS = append(ownS, q.Own.Scrapes...), append(machS, q.Machine.Scrapes...)
		}
	}
	o50, o99 := scrapePercentiles(ownS)
	m50, m99 := scrapePercentiles(machS)
	w("| GET /metrics of %d agents, request to last byte, with the observer's own queue (%d) and with the machine's (%d), same rounds | own queue p50 ≤ 1.5 × the machine queue's | own queue p50 %.2f ms, p99 %.2f ms (%d scrapes); machine's queue p50 %.2f ms, p99 %.2f ms (%d scrapes): %.2f × | %s |\n",
		*agents, own[0].Qlen, mach[0].Qlen, o50, o99, len(ownS), m50, m99, len(machS), o50/m50, verdict(o50 <= 1.5*m50))
}

// pairedLoss compares the beats two receivers lost in the same rounds,
// side by side: the median over the rounds of a's losses ÷ b's (a round in
// which neither lost any counts as 1, one in which only a lost as +Inf),
// in how many rounds a lost more and in how many fewer, and the totals.
// The losses of one receiver move 10× between rounds with the machine; a
// round, in which both saw the same beats at the same moments, is what
// tells the two apart.
func pairedLoss(a, b []liteResult) (ratio float64, more, less int, aSum, bSum int64) {
	var rs []float64
	for i := range a {
		x, y := a[i].Load.Lost, b[i].Load.Lost
		aSum, bSum = aSum+x, bSum+y
		switch {
		case x > y:
			more++
		case x < y:
			less++
		}
		switch {
		case y > 0:
			rs = append(rs, float64(x)/float64(y))
		case x == 0:
			rs = append(rs, 1)
		default:
			rs = append(rs, math.Inf(1))
		}
	}
	return median(rs), more, less, aSum, bSum
}

// signMinRounds is the fewest decided rounds (ties left out) in which the
// sign test can say p < 0.05: 2⁻⁵ = 0.031, while 2⁻⁴ = 0.0625.
const signMinRounds = 5

// queueVerdict judges the queue-10 row: met unless the observer lost more
// in so many rounds (more, against less) that the sign test gives p < 0.05,
// or its CPU was not below the bare receiver's. Below signMinRounds
// decided rounds not even an observer that lost more in every one could
// miss: a verdict that cannot fail is none, so there is none.
func queueVerdict(more, less int, cpuBelow bool) string {
	if more+less < signMinRounds {
		return fmt.Sprintf("not judged: %d rounds decided, the sign test needs %d", more+less, signMinRounds)
	}
	return verdict(signTail(more, more+less) >= 0.05 && cpuBelow)
}

// signTail is the one-sided sign test: the chance that a fair coin shows
// heads at least k times in n throws. Two receivers that lose alike lose
// more than the other each in about half of the rounds (ties left out); a
// small value says one loses more. Side by side, two bare receivers lost
// 16–28 % apart in each of three rounds (BENCHMARKS.md, session 9): one
// round's ratio says little, and "never more" is no bar a receiver can be
// held to, not even the bare receiver against itself.
func signTail(k, n int) float64 {
	if n == 0 {
		return 1
	}
	p, c := 0.0, 1.0 // c: n choose i
	for i := 0; i <= n; i++ {
		if i >= k {
			p += c
		}
		c = c * float64(n-i) / float64(i+1)
	}
	return p / math.Pow(2, float64(n))
}

func sumGC(fs []floodRound) int {
	n := 0
	for _, f := range fs {
		n += f.Observer.GCTotal
	}
	return n
}

func fmtNum(x float64) string {
	if x < 0 {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// runAB alternates two observer binaries under the same 1 Hz load and
// reports each one's CPU, context switches and lost beats per round.
func runAB(pids []uint32) error {
	if *observerB == "" {
		return errors.New("--scenarios ab needs --observer-b")
	}
	bins := []string{*observerBin, *observerB}
	for i := range bins {
		if abs, err := filepath.Abs(bins[i]); err == nil {
			bins[i] = abs
		}
	}
	saved := *observerBin
	defer func() { *observerBin = saved }()
	for round := 0; round < *rounds; round++ {
		for i, bin := range bins {
			*observerBin = bin
			p, err := startObserver("ab", false, nil, "--threshold-ms", "60000", "--tracker-capacity", strconv.Itoa(len(pids)))
			if err != nil {
				return err
			}
			var cpu, cpuS, sw float64
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(4 * time.Second)
				c0, n0, s0, t0 := cpuTicks(p.pid()), cpuNs(p.pid()), taskSwitches(p.pid()), time.Now()
				time.Sleep(7 * time.Second)
				c1, n1, s1 := cpuTicks(p.pid()), cpuNs(p.pid()), taskSwitches(p.pid())
				d := time.Since(t0).Seconds()
				cpuS = 100 * float64(n1-n0) / 1e9 / d
				cpu = 100 * float64(c1-c0) / clockTicks / d
				n, _ := sumSwitchDelta(s0, s1)
				sw = float64(n) / d
			}()
			load, err := loadgen.Run(loadgen.Config{Socket: p.sock, Pids: pids, RateHz: 1, Duration: 12 * time.Second})
			<-done
			p.stop()
			p.remove()
			if err != nil {
				return err
			}
			progress("  ab round %d %s: CPU %.2f%% (schedstat %.2f%%), %.0f switches/s, lost %d of %d (%d sent late by the sender), load average %s", round+1, string("AB"[i]), cpu, cpuS, sw, load.Lost, load.Sent+load.Lost, load.LostLate, loadavg())
		}
	}
	return nil
}

const liteDur = 15 * time.Second

// recommendedQlenFor mirrors the observer's start-up advice: a sixteenth
// of the tracker, at least 16, at most 1024.
func recommendedQlenFor(capacity int) int { return min(max(capacity/16, 16), 1024) }

type liteResult struct {
	Qlen       int            `json:"qlen"`
	Load       loadgen.Result `json:"load"`
	CPUPercent float64        `json:"cpu_percent"`
	CPUSchedPc float64        `json:"cpu_schedstat_percent"`
	Switches   float64        `json:"switches_per_s"`
	Received   int64          `json:"received"`
	Gaps2ms    int64          `json:"gaps_over_2ms"`
	MaxGapMs   float64        `json:"max_gap_ms"`
	// The observer's: stall rows of its event file while the load ran (no
	// agent was silenced: every one came from lost beats or the loop), and
	// its scrapes when scraped.
	Stalls  int      `json:"stalls"`
	Scrapes []scrape `json:"scrapes,omitempty"`
	// Threads: each thread's CPU and context switches in the window.
	Threads []threadUse `json:"threads"`
}

// runLite runs 4096 × 1 Hz for liteDur into the bare receiver with a
// socket queue of qlen ("bare"), into the observer with the machine's
// queue ("observer-machine-queue", --socket-queue 0) or with the queue it
// gives its socket by itself ("observer-own-queue"), scraped every second
// when scraped, and measures the receiver's CPU from 4 s to 13 s.
func runLite(pids []uint32, kind string, qlen int, scraped bool) (liteResult, error) {
	rs, err := runSide(pids, []string{kind}, qlen, scraped)
	return rs[0], err
}

// liteReceiver is one receiver of runSide.
type liteReceiver struct {
	kind   string
	pid    int
	sock   string
	finish func() error
}

// runSide is runLite for one receiver, or for two side by side: the
// sender sends each beat to both, back to back (loadgen.Config.Also), so
// that both are measured under the same load at the same moments.
func runSide(pids []uint32, kinds []string, qlen int, scraped bool) ([]liteResult, error) {
	rs := make([]liteResult, len(kinds))
	recv := make([]liteReceiver, len(kinds))
	loadEnd := int64(math.MaxInt64)
	defer func() {
		for _, x := range recv {
			if x.finish != nil { // not finished: an error on the way
				x.finish()
			}
		}
	}()
	for i, kind := range kinds {
		r := &rs[i]
		x := &recv[i]
		x.kind = kind
		switch kind {
		case "bare", "bare-batched":
			b, err := startBareReceiver(qlen, kind == "bare-batched")
			if err != nil {
				return rs, err
			}
			q, _ := strconv.Atoi(strings.TrimSpace(readFile("/proc/sys/net/unix/max_dgram_qlen")))
			r.Qlen = max(q, qlen)
			x.pid, x.sock = b.cmd.Process.Pid, b.sock
			x.finish = func() error {
				rr, err := b.stop()
				r.Received, r.Gaps2ms, r.MaxGapMs = rr.Frames, rr.Gaps2ms, rr.MaxGapUs/1000
				return err
			}
		default:
			args := []string{"--threshold-ms", strconv.Itoa(*thresholdMs), "--tracker-capacity", strconv.Itoa(len(pids))}
			if kind == "observer-machine-queue" {
				args = append(args, "--socket-queue", "0")
			}
			p, err := startObserver(kind, scraped, nil, args...)
			if err != nil {
				return rs, err
			}
			x.pid, x.sock = p.pid(), p.sock
			sc := startScraper(p.promAddr)
			x.finish = func() error {
				defer p.remove()
				r.Scrapes = sc.finish()
				if err := p.stop(); err != nil {
					return err
				}
				r.Qlen = observerQueue(p.stderr) // logged by then: the logger writes asynchronously
				return eachEvent(p.events, func(ns int64, kind, _ string, _ uint64) {
					if kind == "stall" && ns <= loadEnd {
						r.Stalls++
					}
				})
			}
		}
	}
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sleep := func(d time.Duration) bool { // false: the load failed, stop sampling
			select {
			case <-time.After(d):
				return true
			case <-quit:
				return false
			}
		}
		if !sleep(4 * time.Second) {
			return
		}
		type sample struct {
			ticks, ns int64
			sw        map[string]int64
			th        map[string]threadSample
		}
		take := func() []sample {
			ss := make([]sample, len(recv))
			for i, x := range recv {
				ss[i] = sample{cpuTicks(x.pid), cpuNs(x.pid), taskSwitches(x.pid), threadSamples(x.pid)}
			}
			return ss
		}
		s0, t0 := take(), time.Now()
		if !sleep(9 * time.Second) {
			return
		}
		s1 := take()
		d := time.Since(t0).Seconds()
		for i := range rs {
			rs[i].CPUPercent = 100 * float64(s1[i].ticks-s0[i].ticks) / clockTicks / d
			rs[i].CPUSchedPc = 100 * float64(s1[i].ns-s0[i].ns) / 1e9 / d
			sw, _ := sumSwitchDelta(s0[i].sw, s1[i].sw)
			rs[i].Switches = float64(sw) / d
			rs[i].Threads = threadUses(s0[i].th, s1[i].th, d)
		}
	}()
	cfg := loadgen.Config{Socket: recv[0].sock, Pids: pids, RateHz: 1, Duration: liteDur}
	if len(recv) > 1 {
		cfg.Also = recv[1].sock
	}
	load, err := loadgen.Run(cfg)
	loadEnd = loadgen.Mono()
	if err != nil {
		close(quit) // no CPU figures from a load that did not run its course
	}
	<-done
	for i := range rs {
		rs[i].Load = load
		if i == 1 && load.Also != nil {
			rs[i].Load.Tally = *load.Also
			rs[i].Load.SendRate = float64(load.Also.Sent) / load.DurationSec // Late, MaxLagUs: the sender's, the same for both
		}
		rs[i].Load.Also = nil
		if ferr := recv[i].finish(); err == nil {
			err = ferr
		}
		recv[i].finish = nil
		r := &rs[i]
		p50, p99 := scrapePercentiles(r.Scrapes)
		both := ""
		if len(recv) > 1 {
			both = fmt.Sprintf("; %d lost by both receivers", load.LostBoth)
		}
		progress("  %s (qlen %d): lost %d of %d (%d sent late; %d runs of an agent's lost beats%s), %d stalls; CPU %.2f%% (schedstat %.2f%%), %.0f switches/s; %d scrapes, p50 %.2f ms, p99 %.2f ms", recv[i].kind, r.Qlen,
			r.Load.Lost, r.Load.Sent+r.Load.Lost, r.Load.LostLate, r.Load.LostRuns, both, r.Stalls, r.CPUPercent, r.CPUSchedPc, r.Switches, len(r.Scrapes), p50, p99)
		progress("    threads, busiest first (CPU, voluntary+involuntary switches/s): %s", fmtThreads(r.Threads))
	}
	return rs, err
}

// scrapePercentiles returns p50 and p99 of the successful scrapes' times
// (NaN without any).
func scrapePercentiles(ss []scrape) (p50, p99 float64) {
	var durs []float64
	for _, s := range ss {
		if s.Err == "" {
			durs = append(durs, s.DurMs)
		}
	}
	return percentile(durs, 50), percentile(durs, 99)
}

// ---- the socket queue: the machine's and the observer's own ----

// queueRound is one round of the queue scenario: the same 4096 × 1 Hz load
// into the bare receiver and the observer on the machine's queue at the
// same time, then, in the first --queue-own-rounds, into the observer with
// its own queue (Own, nil in the other rounds).
type queueRound struct {
	Bare    liteResult  `json:"bare_machine_queue"`
	Machine liteResult  `json:"observer_machine_queue"`
	Own     *liteResult `json:"observer_own_queue,omitempty"`
}

// runQueueRound measures what the machine's queue (net.unix.max_dgram_qlen,
// 10 by default) costs the observer against the bare receiver on the same
// queue, and what a scrape costs with each queue: the bare receiver and
// the observer with --socket-queue 0 side by side, every beat sent to
// both (runSide), then, when own is set, the observer with its own queue;
// the observers scraped every second.
func runQueueRound(pids []uint32, prom, own bool) (queueRound, error) {
	var q queueRound
	pair, err := runSide(pids, []string{"observer-machine-queue", "bare"}, 0, prom)
	q.Machine, q.Bare = pair[0], pair[1]
	if err != nil || !own {
		return q, err
	}
	o, err := runLite(pids, "observer-own-queue", 0, prom)
	q.Own = &o
	return q, err
}
