package main

// The end-to-end harness: builds the real binaries once, runs the observer
// with real agent processes on real sockets, and reads its event file.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// startObserver runs the observer with args. --socket and --export-file
// default to files in a fresh directory unless args name them; it returns
// once the socket exists (and, with --prom-addr, the address is printed).
func startObserver(t testing.TB, args ...string) *observerProc {
	t.Helper()
	binaries(t)
	return startObserverCmd(t, []string{observerBin}, nil, args...)
}

// startObserverCmd is startObserver for another build of the observer or
// another environment: argv0 is the command prefix, e.g.
// {"qemu-arm-static", "/tmp/x/varta-watch"}; env entries are added to the
// test's environment.
func startObserverCmd(t testing.TB, argv0, env []string, args ...string) *observerProc {
	t.Helper()
	return startObserverWith(t, argv0, env, nil, args...)
}

// startObserverStderr is startObserver with the observer's stderr going to
// the file stderr (p.stderr stays empty).
func startObserverStderr(t testing.TB, stderr *os.File, args ...string) *observerProc {
	t.Helper()
	binaries(t)
	return startObserverWith(t, []string{observerBin}, nil, stderr, args...)
}

func startObserverWith(t testing.TB, argv0, env []string, stderr *os.File, args ...string) *observerProc {
	t.Helper()
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
	} else {
		args = append(args, "--socket", p.socket)
	}
	if v, ok := has("--export-file"); ok {
		p.events = v
	} else {
		args = append(args, "--export-file", p.events)
	}
	_, wantProm := has("--prom-addr")
	p.cmd = exec.Command(argv0[0], append(append([]string{}, argv0[1:]...), args...)...)
	p.cmd.Stderr = p.stderr
	if stderr != nil {
		p.cmd.Stderr = stderr
	}
	p.cmd.Env = append(os.Environ(), env...)
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
	return p
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
