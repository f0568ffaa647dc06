package main

// The end-to-end harness: builds the real binaries once, runs the observer
// (startObserver) with real agent processes on real sockets, and reads
// what a user sees of it: its event file, its metrics, its exit status
// and its log. The Linux-only parts (sending with chosen kernel
// credentials) are in e2e_harness_linux_test.go.
//
// The end-to-end tests are grouped by subject, one file per section of
// the contract, and each test's comment names the section it proves:
//
//	e2e_cli_test.go        §2 command line, exit codes, usage
//	e2e_socket_test.go     §3 the socket
//	e2e_frames_test.go     §4 judging datagrams, stalls, retirement, capacity
//	e2e_eventfile_test.go  §5 the event file: rotation, reopen, full disk, links
//	e2e_eventfile_loss_test.go  §5: nothing lost when rotation or a reopen fails
//	e2e_metrics_test.go    §6 the exposition: promtool, a real Prometheus
//	e2e_http_test.go       §6 HTTP: routes, token, limits, hostile clients
//	e2e_recovery_test.go   §7 recovery
//	e2e_lifecycle_test.go  §8 signals, sd_notify, hardware watchdog, logs
//	e2e_signals_test.go    §8: SIGPIPE, closed streams, SIGQUIT
//	e2e_config_test.go     §9 the configuration file: errors, main section
//	e2e_agents_test.go     §9 agents by name: matching, thresholds, missing, escalation, reload
//	e2e_reload_test.go     §9 reload of the socket, listener, tracker, watchdog, lifecycle options
//	e2e_qemu_test.go       the ARM and MIPS builds under qemu-user

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"varta-watch/internal/vlpclient"
)

var (
	buildOnce   sync.Once
	buildErr    error
	binDir      string
	observerBin string
	agentBin    string
)

// binaries builds ./varta-watch and the test agent once per test run.
func binaries(t testing.TB) {
	t.Helper()
	if os.Getenv("VARTA_E2E") == "0" {
		t.Skip("VARTA_E2E=0: end-to-end tests off (unit tests under qemu run this way)")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "varta-bin")
		if buildErr != nil {
			return
		}
		observerBin = filepath.Join(binDir, "varta-watch")
		agentBin = filepath.Join(binDir, "varta-agent")
		for _, b := range [][2]string{{observerBin, "."}, {agentBin, "./internal/cmd/varta-agent"}} {
			cmd := exec.Command("go", "build", "-o", b[0], b[1])
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// skipBecause skips the test for a reason outside it (a tool not
// installed, no root, a kernel or machine without the feature) and says
// so on stderr as "SKIP: TestName: reason": go test shows t.Skip's message
// only with -v, and whoever runs make test should see what was not run.
func skipBecause(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	printSkip(t, reason)
	t.Skip(reason)
}

// sayNotRun is skipBecause for a part of a test: it prints the same line,
// and the test goes on without that part.
func sayNotRun(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	printSkip(t, reason)
	t.Log(reason)
}

func printSkip(t testing.TB, reason string) {
	if !testing.Verbose() { // with -v, go test prints the t.Skip or t.Log line
		fmt.Fprintf(os.Stderr, "SKIP: %s: %s\n", t.Name(), reason)
	}
}

// shortTempDir returns a fresh directory with a short path: sun_path holds
// only 107 bytes and t.TempDir() embeds the test name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// lockedBuffer collects a child's output safely while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// observerProc is a running varta-watch.
type observerProc struct {
	t        testing.TB
	cmd      *exec.Cmd
	dir      string
	socket   string
	events   string
	promAddr string
	stdout   *lockedBuffer
	stderr   *lockedBuffer
	done     chan struct{}
	waitErr  error
}

// observerOpts says how startObserver runs the observer. The zero value
// runs the host build with the test's environment and no flags beyond the
// defaults below.
type observerOpts struct {
	// args are the flags. --socket and --export-file default to files in
	// a fresh directory unless args name them.
	args []string
	// argv0 is the command prefix instead of the host build: another
	// build, an emulator ({"qemu-arm-static", "/tmp/x/varta-watch"}), or
	// a shell that sets a limit and execs the observer.
	argv0 []string
	// env entries are added to the test's environment.
	env []string
	// stderr, when set, is where the observer's stderr goes instead of
	// p.stderr (which then stays empty).
	stderr *os.File
	// socketInFile is the socket a --config file names: no --socket flag
	// is passed then (a flag wins over the file, also at a reload).
	socketInFile string
	// promInFile: a --config file sets prom_addr; wait for the address
	// line as for --prom-addr.
	promInFile bool
}

// startObserver runs the observer as opts says and returns once its socket
// exists (and, with --prom-addr, once it has printed the address). It is
// killed at the end of the test if still running; its stderr is logged if
// the test failed.
func startObserver(t testing.TB, opts observerOpts) *observerProc {
	t.Helper()
	argv0 := opts.argv0
	args := append([]string(nil), opts.args...) // appended to below
	if len(argv0) == 0 {
		binaries(t)
		argv0 = []string{observerBin}
	}
	p := &observerProc{t: t, dir: shortTempDir(t), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.socket = filepath.Join(p.dir, "s.sock")
	p.events = filepath.Join(p.dir, "events.tsv")
	has := func(name string) (string, bool) {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v, true
			}
		}
		return "", false
	}
	if v, ok := has("--socket"); ok {
		p.socket = v
	} else if opts.socketInFile != "" {
		p.socket = opts.socketInFile
	} else {
		args = append(args, "--socket", p.socket)
	}
	if v, ok := has("--export-file"); ok {
		p.events = v
	} else {
		args = append(args, "--export-file", p.events)
	}
	_, wantProm := has("--prom-addr")
	wantProm = wantProm || opts.promInFile
	p.cmd = exec.Command(argv0[0], append(append([]string{}, argv0[1:]...), args...)...)
	p.cmd.Stderr = p.stderr
	if opts.stderr != nil {
		p.cmd.Stderr = opts.stderr
	}
	p.cmd.Env = append(os.Environ(), opts.env...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	firstLine := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		p.stdout.Write([]byte(line))
		firstLine <- strings.TrimSpace(line)
		io.Copy(p.stdout, r)
	}()
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("observer stderr:\n%s", p.stderr.String())
		}
	})
	if wantProm {
		select {
		case p.promAddr = <-firstLine:
		case <-p.done:
			t.Fatalf("observer exited at start: %v\n%s", p.waitErr, p.stderr.String())
		case <-time.After(10 * time.Second):
			t.Fatal("observer printed no address")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Lstat(p.socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("observer exited at start: %v\n%s", p.waitErr, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s never appeared\n%s", p.socket, p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The socket is bound before the event file is opened: a test that
	// moves or replaces the file at once must wait for the start line,
	// logged once everything is open and the loop is about to turn.
	for opts.stderr == nil && !strings.Contains(p.stderr.String(), "varta-watch started") {
		select {
		case <-p.done:
			t.Fatalf("observer exited at start: %v\n%s", p.waitErr, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("observer never logged its start\n%s", p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return p
}

// runObserverToExit runs the observer binary expecting it to exit by
// itself; it returns the status, stdout and stderr.
func runObserverToExit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runObserverEnvToExit(t, nil, args...)
}

// runObserverEnvToExit is runObserverToExit with env added to the test's
// environment.
func runObserverEnvToExit(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	binaries(t)
	cmd := exec.Command(observerBin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), stdout.String(), stderr.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, stdout.String(), stderr.String()
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("observer %q still running after 10s", args)
		return 0, "", ""
	}
}

// signal sends sig to the observer.
func (p *observerProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// stopped sends SIGSTOP and waits until every thread of the observer has
// stopped (a signal is delivered asynchronously: until then the loop may
// still be reading its socket).
func (p *observerProc) stopped() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	dir := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			p.t.Fatal(err)
		}
		all := true
		for _, task := range tasks {
			b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
			i := bytes.LastIndexByte(b, ')')
			if err == nil && (i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't')) {
				all = false
			}
		}
		if all {
			return
		}
	}
	p.t.Fatal("the observer did not stop within 10 s of SIGSTOP")
}

// wait waits for the observer to exit and returns its exit status.
func (p *observerProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("observer still running after %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		p.t.Fatal(p.waitErr)
	}
	return 0
}

// stop sends SIGTERM and returns the exit status.
func (p *observerProc) stop() int {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	return p.wait(15 * time.Second)
}

// tsvEvent is one parsed line of the event file.
type tsvEvent struct {
	ns                                int64
	kind, pid, nonce, status, payload string
	line                              string
}

func parseEvents(t testing.TB, data []byte) []tsvEvent {
	t.Helper()
	var out []tsvEvent
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			break // a line still being written
		}
		cols := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(cols) != 6 {
			t.Fatalf("event line has %d columns, want 6: %q", len(cols), line)
		}
		var ev tsvEvent
		if _, err := fmt.Sscan(cols[0], &ev.ns); err != nil {
			t.Fatalf("bad observer_ns in %q", line)
		}
		ev.kind, ev.pid, ev.nonce, ev.status, ev.payload = cols[1], cols[2], cols[3], cols[4], cols[5]
		ev.line = line
		out = append(out, ev)
	}
	return out
}

// readEvents returns every complete line of the event file so far.
func (p *observerProc) readEvents() []tsvEvent {
	p.t.Helper()
	data, err := os.ReadFile(p.events)
	if err != nil && !os.IsNotExist(err) {
		p.t.Fatal(err)
	}
	return parseEvents(p.t, data)
}

// waitEvents polls the event file until cond holds for its events.
func (p *observerProc) waitEvents(timeout time.Duration, what string, cond func([]tsvEvent) bool) []tsvEvent {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := p.readEvents()
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, e := range evs {
				b.WriteString(e.line)
			}
			p.t.Fatalf("timed out after %v waiting for %s; events:\n%s\nstderr:\n%s", timeout, what, b.String(), p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// filterEvents returns the events of kind (and pid, unless empty).
func filterEvents(evs []tsvEvent, kind, pid string) []tsvEvent {
	var out []tsvEvent
	for _, e := range evs {
		if e.kind == kind && (pid == "" || e.pid == pid) {
			out = append(out, e)
		}
	}
	return out
}

// countEvents counts events of kind for pid ("" for any pid).
func countEvents(evs []tsvEvent, kind, pid string) int { return len(filterEvents(evs, kind, pid)) }

func lastOf(evs []tsvEvent, kind, pid string) tsvEvent {
	f := filterEvents(evs, kind, pid)
	if len(f) == 0 {
		return tsvEvent{}
	}
	return f[len(f)-1]
}

func dumpEvents(evs []tsvEvent) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.line)
	}
	return b.String()
}

// syncObserver sends a frame that must become a decode event (32 zero
// bytes: BadMagic) and waits for it: the socket is one FIFO queue, so
// everything sent before has been judged once it shows.
func (p *observerProc) syncObserver(t *testing.T) []tsvEvent {
	t.Helper()
	n := countEvents(p.readEvents(), "decode", "")
	runAgent(t, p.socket, "--hex", strings.Repeat("00", 32))
	return p.waitEvents(10*time.Second, "the sync frame", func(evs []tsvEvent) bool {
		return countEvents(evs, "decode", "") > n
	})
}

// waitKind waits until pid ("" any) has at least n events of kind.
func (p *observerProc) waitKind(kind, pid string, n int) []tsvEvent {
	p.t.Helper()
	return p.waitEvents(10*time.Second, fmt.Sprintf("%d %s events of pid %q", n, kind, pid), func(evs []tsvEvent) bool {
		return countEvents(evs, kind, pid) >= n
	})
}

// agentProc is a running test agent.
type agentProc struct {
	cmd    *exec.Cmd
	pid    string
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

// startAgent runs internal/cmd/varta-agent against socket; it is killed at
// the end of the test if still running.
func startAgent(t testing.TB, socket string, args ...string) *agentProc {
	t.Helper()
	return startAgentOut(t, nil, socket, args...)
}

// startAgentOut is startAgent with the agent's stdout going to stdout.
func startAgentOut(t testing.TB, stdout io.Writer, socket string, args ...string) *agentProc {
	t.Helper()
	binaries(t)
	a := &agentProc{stderr: &lockedBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(agentBin, append([]string{"--socket", socket}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = stdout, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.pid = fmt.Sprint(a.cmd.Process.Pid)
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	return a
}

// waitExit waits for the agent to finish on its own.
func (a *agentProc) waitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-a.done:
		if a.err != nil {
			t.Fatalf("agent %s: %v\n%s", a.pid, a.err, a.stderr.String())
		}
	case <-time.After(timeout):
		t.Fatalf("agent %s still running after %v", a.pid, timeout)
	}
}

// kill ends the agent abruptly (a crash) and reaps it.
func (a *agentProc) kill() {
	a.cmd.Process.Kill()
	<-a.done
}

// runAgent runs an agent to completion.
func runAgent(t testing.TB, socket string, args ...string) *agentProc {
	t.Helper()
	a := startAgent(t, socket, args...)
	a.waitExit(t, 30*time.Second)
	return a
}

// reportingAgent is a varta-agent run with --report: when it is stopped
// with SIGTERM it says how many beats the kernel queued for the observer
// and how many it dropped because the queue was full, so a test can hold
// the observer to exactly the beats it was given.
type reportingAgent struct {
	*agentProc
	stdout *lockedBuffer
}

func startReportingAgent(t *testing.T, socket string, args ...string) *reportingAgent {
	t.Helper()
	out := &lockedBuffer{}
	return &reportingAgent{agentProc: startAgentOut(t, out, socket, append([]string{"--report"}, args...)...), stdout: out}
}

// stop ends the agent with SIGTERM and returns its report.
func (a *reportingAgent) stop(t *testing.T) (sent, dropped int) {
	t.Helper()
	a.cmd.Process.Signal(unix.SIGTERM)
	return a.report(t)
}

// report waits for the agent to finish and returns its report.
func (a *reportingAgent) report(t *testing.T) (sent, dropped int) {
	t.Helper()
	a.waitExit(t, 10*time.Second)
	if _, err := fmt.Sscanf(a.stdout.String(), "sent %d dropped %d", &sent, &dropped); err != nil {
		t.Fatalf("agent %s report %q: %v", a.pid, a.stdout.String(), err)
	}
	return sent, dropped
}

// liveProcess starts a process that is not an agent (sleep) and returns
// its pid; it is killed at the end of the test.
func liveProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

const maxNonce = "18446744073709551615"

// wireFrame encodes a frame with the agents' own encoder (independent of
// the observer's codec), then applies edits; reCRC recomputes the trailer
// after an edit, so only the edited check fails.
func wireFrame(status uint8, pid uint32, ts, nonce uint64, payload uint32, edits ...func(b *[32]byte)) string {
	var b [vlpclient.FrameSize]byte
	vlpclient.Encode(&b, status, pid, ts, nonce, payload)
	for _, e := range edits {
		e(&b)
	}
	return hex.EncodeToString(b[:])
}

func setByte(i int, v byte) func(b *[32]byte) { return func(b *[32]byte) { b[i] = v } }

func reCRC(b *[32]byte) {
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], crc32.MakeTable(crc32.Castagnoli)))
}

func breakCRC(b *[32]byte) { b[28] ^= 0x5a }

func encodeFrame(status uint8, pid uint32, nonce uint64, payload uint32) []byte {
	var b [vlpclient.FrameSize]byte
	vlpclient.Encode(&b, status, pid, uint64(time.Now().UnixNano()), nonce, payload)
	return b[:]
}

// monoNs reads CLOCK_MONOTONIC, the clock of the event file's first column.
func monoNs(t testing.TB) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clockMonotonic, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}

// observerNow reads the observer's clock (CLOCK_MONOTONIC, like monoNow).
func observerNow() int64 { return monoNow() }

// stallSlack is how late after its deadline a stall may be surfaced under
// hostile load before a test calls the loop wedged.
const stallSlack = 50 * time.Millisecond

// checkStallsOnTime checks every stall of pid: surfaced no earlier than
// threshold after the last beat before it, and at most slack later.
func checkStallsOnTime(t *testing.T, evs []tsvEvent, pid string, threshold, slack time.Duration) int {
	t.Helper()
	var last int64 = -1
	n := 0
	for _, e := range evs {
		if e.pid != pid {
			continue
		}
		switch e.kind {
		case "beat":
			last = e.ns
		case "stall":
			n++
			if last < 0 {
				t.Errorf("pid %s stalled with no beat before it", pid)
				continue
			}
			late := time.Duration(e.ns-last) - threshold
			if late < 0 || late > slack {
				t.Errorf("pid %s stalled %v after its deadline (want 0..%v): %s", pid, late, slack, strings.TrimSpace(e.line))
			}
		}
	}
	return n
}

// stallsBefore counts the stalls of pid surfaced up to observer time end.
func stallsBefore(evs []tsvEvent, pid string, end int64) int {
	n := 0
	for _, e := range filterEvents(evs, "stall", pid) {
		if e.ns <= end {
			n++
		}
	}
	return n
}

// maxBeatGap returns the longest silence between consecutive beats of pid
// in [from, to] (observer ns), counting the edges.
func maxBeatGap(evs []tsvEvent, pid string, from, to int64) time.Duration {
	prev := from
	var gap int64
	for _, e := range evs {
		if e.kind != "beat" || e.pid != pid || e.ns < from || e.ns > to {
			continue
		}
		gap = max(gap, e.ns-prev)
		prev = e.ns
	}
	return time.Duration(max(gap, to-prev))
}

// checkHealthyAgent holds the observer to a non-blocking agent's report:
// every beat the kernel queued is recorded, none more, and any stall
// follows a real silence of the threshold and is surfaced on time. Whether
// the agent beat often enough is not the observer's to answer: it may
// have lost beats to a full queue, or not been scheduled on a busy machine.
func checkHealthyAgent(t *testing.T, evs []tsvEvent, a *reportingAgent, sent, dropped int, threshold, slack time.Duration, from, to int64) {
	t.Helper()
	recorded := countEvents(evs, "beat", a.pid)
	gap := maxBeatGap(evs, a.pid, from, to)
	t.Logf("agent %s: %d beats queued, %d dropped by a full queue, %d recorded; longest silence %v, %d stalls",
		a.pid, sent, dropped, recorded, gap, stallsBefore(evs, a.pid, to))
	if recorded != sent {
		t.Errorf("agent %s: the kernel queued %d beats, the observer recorded %d", a.pid, sent, recorded)
	}
	checkStallsOnTime(t, evs, a.pid, threshold, slack)
}

// schedSnapshot is, per thread of the observer, the CPU time and the time
// spent waiting for a CPU so far (/proc/PID/task/*/schedstat, ns).
type schedSnapshot map[string][2]int64

func takeSchedSnapshot(o *observerProc) schedSnapshot {
	dir := fmt.Sprintf("/proc/%d/task", o.cmd.Process.Pid)
	tasks, _ := os.ReadDir(dir)
	snap := schedSnapshot{}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "schedstat"))
		if f := strings.Fields(string(b)); err == nil && len(f) >= 2 {
			cpu, _ := strconv.ParseInt(f[0], 10, 64)
			wait, _ := strconv.ParseInt(f[1], 10, 64)
			snap[task.Name()] = [2]int64{cpu, wait}
		}
	}
	return snap
}

// stallSlackSince is stallSlack plus how long the loop waited for a CPU
// since the snapshot. On a loaded machine (two cores shared by the test,
// its agents and whatever else runs) the scheduler, not the loop, can make
// a stall late. The loop's thread is taken to be the one that used the
// most CPU meanwhile; a late stall still fails the test when that thread
// had the CPU and the loop did not turn.
func stallSlackSince(t *testing.T, o *observerProc, before schedSnapshot) time.Duration {
	t.Helper()
	var busiest string
	var mostCPU, waited int64
	for tid, now := range takeSchedSnapshot(o) {
		if cpu := now[0] - before[tid][0]; cpu > mostCPU {
			busiest, mostCPU, waited = tid, cpu, now[1]-before[tid][1]
		}
	}
	if waited > int64(10*time.Millisecond) {
		t.Logf("the loop's thread (%s, %v of CPU) waited %v for a CPU during the test: stalls may be that much later",
			busiest, time.Duration(mostCPU), time.Duration(waited))
	}
	return stallSlack + time.Duration(max(waited, 0))
}

// The metrics helpers, one set for every test: httpDo is a well-formed
// HTTP client (status, headers, body), rawHTTP sends bytes as they are
// (for malformed and hostile requests); scrape and waitScrape GET
// /metrics, and sampleValue, metricValue, samples and checkMetrics read a
// scraped body.

// httpResult is one response as the test saw it.
type httpResult struct {
	code   int
	header http.Header
	body   string
}

var testHTTP = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// httpDo sends one request on a fresh connection (Connection: close) and
// returns the response.
func httpDo(t testing.TB, method, addr, path string, hdr map[string]string) (httpResult, error) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := testHTTP.Do(req)
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, err
	}
	return httpResult{resp.StatusCode, resp.Header, string(body)}, nil
}

// rawHTTP writes req on a fresh TCP connection and reads until the server
// closes it or timeout passes.
func rawHTTP(addr, req string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// scrape GETs /metrics (the observer must run with --prom-addr), with the
// headers hdr, and fails the test unless the answer is a 200.
func scrape(t testing.TB, p *observerProc, hdr map[string]string) string {
	t.Helper()
	r, err := httpDo(t, "GET", p.promAddr, "/metrics", hdr)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if r.code != 200 {
		t.Fatalf("scrape: status %d: %s", r.code, r.body)
	}
	return r.body
}

// waitScrape scrapes until cond holds for the body.
func waitScrape(t testing.TB, p *observerProc, timeout time.Duration, what string, cond func(body string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body := scrape(t, p, nil)
		if cond(body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last scrape:\n%s", timeout, what, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sampleValue returns the value of the sample whose series is exactly
// series (name plus labels as rendered), or "" when absent.
func sampleValue(body, series string) string {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// metricValue returns the value of one series in a metrics body; the
// series must be there.
func metricValue(t testing.TB, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("bad sample %q", line)
			}
			return f
		}
	}
	t.Fatalf("no series %s in the metrics", series)
	return 0
}

// samples returns every sample of a metrics body by its name and labels
// as written.
func samples(t testing.TB, body string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// checkMetrics scrapes /metrics and compares the given series with their
// exact values.
func (p *observerProc) checkMetrics(t *testing.T, want map[string]string) {
	t.Helper()
	body := scrape(t, p, nil)
	for series, v := range want {
		if got := sampleValue(body, series); got != v {
			t.Errorf("%s = %q, want %q", series, got, v)
		}
	}
}
