//go:build linux

package main

// Signals and standard streams that must never stop the observer, nor show
// a user a stack trace: SIGPIPE from a stderr or stdout whose reader went
// away (`varta-watch … 2>&1 | head -n 2`), closed standard streams, and
// SIGQUIT (Ctrl-\), which is a clean stop like SIGTERM (contract §8).

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive fails the test if the observer has exited.
func (p *observerProc) alive(what string) {
	p.t.Helper()
	select {
	case <-p.done:
		p.t.Fatalf("observer exited %s: %v", what, p.waitErr)
	default:
	}
}

// TestBrokenStderrPipe: the observer's stderr is a pipe whose reader takes
// two lines and goes away, as `head -n 2` does. The next log line (a
// stall) must not kill it: the stall reaches the event file, the lines
// that could not be written are counted, and SIGTERM still stops it
// cleanly (exit 0, socket removed).
func TestBrokenStderrPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	o := startObserver(t, observerOpts{stderr: w, args: []string{"--threshold-ms", "100", "--prom-addr", "127.0.0.1:0"}})
	w.Close()
	br := bufio.NewReader(r)
	for i := 0; i < 2; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("reading the observer's log: %v", err)
		}
	}
	r.Close() // head has its two lines
	a := startAgent(t, o.socket, "--interval-ms", "10", "--hang-after", "3")
	o.waitEvents(10*time.Second, "the stall after stderr broke", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", a.pid) == 1
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.alive("after its stderr pipe broke")
		if m := samples(t, scrape(t, o, nil)); m["varta_log_lines_dropped_total"] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("varta_log_lines_dropped_total stays 0 with a broken stderr")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// More log lines into the broken pipe, and a stop that logs too.
	b := startAgent(t, o.socket, "--interval-ms", "10", "--hang-after", "3")
	o.waitEvents(10*time.Second, "a second stall", func(evs []tsvEvent) bool { return countEvents(evs, "stall", b.pid) == 1 })
	o.alive("after a second stall")
	if code := o.stop(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM with a broken stderr (141 is death by SIGPIPE)", code)
	}
	if exists(o.socket) {
		t.Error("socket left behind")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBrokenStdoutBeforeAddress: with --prom-addr the first stdout line is
// the bound address; a stdout whose reader is already gone must not kill
// the observer at start. It serves, counts the line it could not write,
// and stops cleanly. The same with stdout and stderr closed outright.
func TestBrokenStdoutBeforeAddress(t *testing.T) {
	binaries(t)
	for _, how := range []string{"broken pipe", "closed"} {
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) {
			dir := shortTempDir(t)
			sock, events := filepath.Join(dir, "s.sock"), filepath.Join(dir, "e.tsv")
			addr := freePort(t)
			args := []string{"--socket", sock, "--threshold-ms", "100", "--export-file", events, "--prom-addr", addr}
			var cmd *exec.Cmd
			stderr := &lockedBuffer{}
			if how == "closed" {
				q := []string{}
				for _, a := range append([]string{observerBin}, args...) {
					q = append(q, "'"+a+"'")
				}
				cmd = exec.Command("/bin/sh", "-c", "exec "+strings.Join(q, " ")+" >&- 2>&-")
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				r.Close()
				defer w.Close()
				cmd = exec.Command(observerBin, args...)
				cmd.Stdout = w
				cmd.Stderr = stderr
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			p := &observerProc{t: t, cmd: cmd, dir: dir, socket: sock, events: events, promAddr: addr, stderr: stderr, done: make(chan struct{})}
			go func() { p.waitErr = cmd.Wait(); close(p.done) }()
			t.Cleanup(func() {
				select {
				case <-p.done:
				default:
					cmd.Process.Kill()
					<-p.done
				}
			})
			deadline := time.Now().Add(10 * time.Second)
			for {
				p.alive("at start with its stdout " + how)
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the observer never served %s\n%s", addr, stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			a := runAgent(t, sock, "--count", "3", "--interval-ms", "1")
			p.waitKind("beat", a.pid, 3)
			m := samples(t, scrape(t, p, nil))
			if how == "broken pipe" && m["varta_log_lines_dropped_total"] < 1 {
				t.Errorf("varta_log_lines_dropped_total %v: the address line that could not be written is not counted", m["varta_log_lines_dropped_total"])
			}
			p.alive("after a scrape")
			if code := p.stop(); code != 0 {
				t.Fatalf("exit status %d\n%s", code, stderr.String())
			}
			if exists(sock) {
				t.Error("socket left behind")
			}
		})
	}
}

// TestSIGQUITIsCleanStop: SIGQUIT (Ctrl-\ in a terminal) stops the
// observer as SIGTERM does: the buffered event lines are flushed, the
// running recovery child is killed and reaped, the socket is removed, the
// exit status is 0, and no goroutine dump reaches stderr. A second SIGQUIT
// during the shutdown changes nothing.
func TestSIGQUITIsCleanStop(t *testing.T) {
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "50", "--shutdown-grace-ms", "2000", "--recovery-exec", "sleep 30"}})
	hung := hungAgent(t, p.socket)
	p.waitEvents(10*time.Second, "the recovery spawned", func(evs []tsvEvent) bool {
		return hasPayload(evs, "recovery", hung.pid, "spawned")
	})
	child := recoveryChildPid(t, p, hung.pid)
	if processDead(child) {
		t.Fatalf("recovery child %d is not running before SIGQUIT", child)
	}
	out := &lockedBuffer{}
	a := startAgentOut(t, out, p.socket, "--count", "40", "--interval-ms", "1", "--report")
	a.waitExit(t, 30*time.Second)
	var sent, dropped int
	if _, err := fmt.Sscanf(out.String(), "sent %d dropped %d", &sent, &dropped); err != nil {
		t.Fatalf("agent report %q: %v", out.String(), err)
	}
	p.signal(syscall.SIGQUIT)
	p.signal(syscall.SIGQUIT)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGQUIT, want 0\n%s", code, p.stderr.String())
	}
	if exists(p.socket) {
		t.Error("socket left behind after SIGQUIT")
	}
	waitDead(t, child, "the recovery child after SIGQUIT")
	if _, ok := readProc(child); ok {
		t.Errorf("recovery child %d was not reaped", child)
	}
	evs := p.readEvents()
	if n := countEvents(evs, "beat", a.pid); n != sent {
		t.Errorf("%d of the %d beats queued before SIGQUIT are in the event file", n, sent)
	}
	if got := recoveryPayloads(evs, hung.pid); !slices.Equal(got, []string{"spawned", "killed"}) {
		t.Errorf("recovery rows %q, want spawned, killed (at shutdown)", got)
	}
	stderr := p.stderr.String()
	for _, bad := range []string{"goroutine", "SIGQUIT:", "panic", "[running]"} {
		if strings.Contains(stderr, bad) {
			t.Fatalf("stderr holds %q:\n%s", bad, stderr)
		}
	}
	if !strings.Contains(stderr, "stopping on signal") || !strings.Contains(stderr, "varta-watch stopped") {
		t.Errorf("the stop is not logged:\n%s", stderr)
	}
}
