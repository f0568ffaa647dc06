//go:build linux

package main

// Unit tests of the recovery pieces, and in-process tests that drive the
// real event loop (real socket, poller, signals and child processes) with
// stalls injected straight into the recoverer.

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"varta-watch/internal/vlpclient"
)

func TestArgTemplateExpand(t *testing.T) {
	for _, tc := range []struct{ in, pid, want string }{
		{"", "42", ""},
		{"plain", "42", "plain"},
		{"{pid}", "42", "42"},
		{"--pid={pid}", "7", "--pid=7"},
		{"{pid}{pid}", "123", "123123"},
		{"a{pid}b{pid}c", "4194304", "a4194304b4194304c"},
		{"{pi}d{pid", "9", "{pi}d{pid"},
		{"{{pid}}", "5", "{5}"},
		{"{PID}", "5", "{PID}"},
		{"echo {pid}; kill -9 {pid}", "31", "echo 31; kill -9 31"},
	} {
		if got := parseArgTemplate(tc.in).expand(tc.pid); got != tc.want {
			t.Errorf("expand(%q, %s) = %q, want %q", tc.in, tc.pid, got, tc.want)
		}
	}
}

func TestArgTemplateNoPlaceholderDoesNotAllocate(t *testing.T) {
	a := parseArgTemplate("/usr/bin/restart-agent")
	if n := testing.AllocsPerRun(100, func() { _ = a.expand("1234") }); n != 0 {
		t.Fatalf("expand without {pid} allocates %v times", n)
	}
}

func TestSplitExecArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"/bin/true", []string{"/bin/true"}},
		{"  restart   {pid}  ", []string{"restart", "{pid}"}},
		{"a\tb\nc", []string{"a", "b", "c"}},
		{`kill "-9 {pid}"`, []string{"kill", `"-9`, `{pid}"`}}, // no quoting
		{"x ;touch y $(id) | && `id`", []string{"x", ";touch", "y", "$(id)", "|", "&&", "`id`"}},
		{"   ", nil},
	} {
		if got := splitExecArgs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitExecArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestInheritedEnv(t *testing.T) {
	got := inheritedEnv([]string{
		"HOME=/root", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=1000", "WATCHDOG_PID=1",
		"LISTEN_FDS=1", "LISTEN_PID=9", "LISTEN_FDNAMES=x", "VARTA_PID=1", "NOTIFY_SOCKETX=keep",
		"PATH=/bin", "EMPTY=",
	})
	want := []string{"HOME=/root", "NOTIFY_SOCKETX=keep", "PATH=/bin", "EMPTY=", ""}
	if !slices.Equal(got, want) {
		t.Fatalf("inheritedEnv = %q, want %q", got, want)
	}
}

// recoveryObserver is an observer run in-process, its log in a file.
type recoveryObserver struct {
	*observer
	t       *testing.T
	logPath string
}

func newRecoveryObserver(t *testing.T, tweak func(*config)) *recoveryObserver {
	t.Helper()
	dir := shortTempDir(t)
	cfg := defaultConfig()
	cfg.socket = filepath.Join(dir, "s.sock")
	cfg.thresholdMs = 1000
	tweak(&cfg)
	logPath := filepath.Join(dir, "log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	o, err := newObserver(cfg, &logger{out: f, buf: make([]byte, 0, 512)})
	if err != nil {
		t.Fatal(err)
	}
	skipRecoveryUnderQemuUser(t, o)
	to := &recoveryObserver{observer: o, t: t, logPath: logPath}
	o.logStart()
	t.Cleanup(func() {
		if o.poll != nil {
			o.shutdown()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("observer log:\n%s", b)
		}
	})
	return to
}

// loopUntil turns the real event loop until cond holds. The loop must be
// woken by its own fds, signals and deadlines: the 10 s bound on each wait
// is a backstop, and reaching it fails the test.
func (o *recoveryObserver) loopUntil(timeout time.Duration, what string, cond func() bool) {
	o.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			o.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		o.stopAt = monoNow() + int64(10*time.Second)
		if err := o.iterate(); err != nil {
			o.t.Fatal(err)
		}
		if o.stopping {
			o.t.Fatal("the loop waited 10 s: nothing woke it")
		}
	}
}

func (o *recoveryObserver) logText() string {
	b, _ := os.ReadFile(o.logPath)
	return string(b)
}

// stall decides a recovery for agent as a stall would, and runs the spawn
// the loop would run next.
func (o *recoveryObserver) stall(agent uint32) *slot {
	s := &slot{pid: agent}
	o.rec.onStall(s, monoNow())
	o.startRecoveries()
	return s
}

// TestRecoveryReaping runs spawns, exits, a timeout kill and a death by a
// foreign signal through each reaping path: pidfd, and the SIGCHLD
// fallback that kernels before 5.3 depend on.
func TestRecoveryReaping(t *testing.T) {
	for _, mode := range []string{"pidfd", "sigchld"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "pidfd" && !pidfdWorks() {
				t.Skip("this kernel has no pidfd_open (Linux < 5.3)")
			}
			if mode == "sigchld" {
				pidfdAllowed = false
				defer func() { pidfdAllowed = true }()
			}
			o := newRecoveryObserver(t, func(c *config) {
				c.recoveryCmd = `case {pid} in 1001) exit 0;; 1002) exit 3;; 1003) kill -TERM $$;; *) exec sleep 5;; esac`
				c.recoveryTimeoutMs = 200
			})
			if o.rec.usePidfd != (mode == "pidfd") {
				t.Fatalf("usePidfd = %v in mode %s", o.rec.usePidfd, mode)
			}
			// First the quick ones alone: nothing but their exits can wake
			// the loop (loopUntil fails if it sleeps to its backstop).
			for agent := uint32(1001); agent <= 1003; agent++ {
				o.stall(agent)
			}
			if o.rec.n != 3 || o.rec.nextKill == 0 {
				t.Fatalf("%d children running, next kill %d; want 3 and a deadline", o.rec.n, o.rec.nextKill)
			}
			for i := 0; i < o.rec.n; i++ {
				if got := o.rec.children[i].pidfd >= 0; got != (mode == "pidfd") {
					t.Fatalf("child %d has pidfd %d in mode %s", i, o.rec.children[i].pidfd, mode)
				}
				o.rec.children[i].deadline = 0 // no timer may wake the loop either
			}
			o.rec.recomputeNextKill()
			st := &o.stats.recovery
			o.loopUntil(5*time.Second, "three quick children reaped", func() bool {
				return st[recExit0] == 1 && st[recExitNonzero] == 2
			})
			start := time.Now()
			o.stall(1004)
			o.loopUntil(5*time.Second, "the sleeper killed", func() bool { return st[recKilled] == 1 })
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Errorf("killed after %v, before the 200 ms timeout", d)
			}
			if o.rec.n != 0 || o.rec.nextKill != 0 {
				t.Fatalf("after reaping: %d children, nextKill %d", o.rec.n, o.rec.nextKill)
			}
			if st[recSpawned] != 4 {
				t.Fatalf("spawned = %d, want 4", st[recSpawned])
			}
			log := o.logText()
			for _, want := range []string{
				"reaping=" + mode,
				"msg=\"recovery failed\" pid=1002 child_pid=",
				"exit_code=3 ",
				"msg=\"recovery failed\" pid=1003 child_pid=",
				"exit_code=143 signal=terminated ",
				"msg=\"recovery killed\" pid=1004 child_pid=",
				"reason=timeout ",
			} {
				if !strings.Contains(strings.ReplaceAll(log, "SIGCHLD", "sigchld"), want) {
					t.Errorf("log lacks %q", want)
				}
			}
		})
	}
}

func TestRecoveryDebounce(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) {
		c.recoveryExec = "/bin/sleep 5"
		c.recoveryDebounceMs = 60_000
	})
	s := o.stall(2001)
	st := &o.stats.recovery
	if st[recSpawned] != 1 || s.lastRecov == 0 {
		t.Fatalf("first stall: spawned %d, lastRecov %d", st[recSpawned], s.lastRecov)
	}
	o.rec.onStall(s, monoNow()) // same pid within the window
	if st[recDebounced] != 1 || st[recSpawned] != 1 {
		t.Fatalf("within the window: debounced %d spawned %d", st[recDebounced], st[recSpawned])
	}
	// Past the window but with its recovery still running: still debounced.
	s.lastRecov = monoNow() - 61_000_000_000
	o.rec.onStall(s, monoNow())
	if st[recDebounced] != 2 || st[recSpawned] != 1 {
		t.Fatalf("still running: debounced %d spawned %d", st[recDebounced], st[recSpawned])
	}
	if !strings.Contains(o.logText(), "still running") {
		t.Error("the log does not say why")
	}
	// Another pid is not affected by this one's window.
	o.stall(2002)
	if st[recSpawned] != 2 {
		t.Fatalf("other pid: spawned %d", st[recSpawned])
	}
	o.shutdown()
	if st[recKilled] != 2 {
		t.Fatalf("killed at shutdown = %d, want 2", st[recKilled])
	}
}

func TestRecoveryRefusedBeyondMaxChildren(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) { c.recoveryExec = "sleep 10" })
	var pids []int
	for i := 0; i < maxRecoveryChildren; i++ {
		o.stall(uint32(3000 + i))
		pids = append(pids, o.rec.children[i].pid)
	}
	st := &o.stats.recovery
	o.stall(4000)
	if st[recSpawned] != maxRecoveryChildren || st[recRefused] != 1 {
		t.Fatalf("spawned %d refused %d, want %d and 1", st[recSpawned], st[recRefused], maxRecoveryChildren)
	}
	if !strings.Contains(o.logText(), `msg="recovery refused" pid=4000 reason="too many recovery children running" running=64`) {
		t.Error("the refusal is not logged with its reason")
	}
	start := time.Now()
	o.shutdown()
	t.Logf("shutdown killed and reaped %d children in %v", len(pids), time.Since(start))
	if st[recKilled] != maxRecoveryChildren || o.rec.n != 0 {
		t.Fatalf("after shutdown: killed %d, running %d", st[recKilled], o.rec.n)
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Fatalf("child %d still exists after shutdown", pid)
		}
	}
}

func TestRecoveryRefusedWithoutCredentials(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) { c.recoveryExec = "/bin/true" })
	o.rec.trusted = false // what BSD and macOS get: no per-datagram credentials
	o.rec.logStart()
	s := o.stall(5001)
	st := &o.stats.recovery
	if st[recRefused] != 1 || st[recSpawned] != 0 || o.rec.n != 0 || s.lastRecov != 0 {
		t.Fatalf("refused %d spawned %d running %d", st[recRefused], st[recSpawned], o.rec.n)
	}
	log := o.logText()
	for _, want := range []string{"recovery refused on this system", `msg="recovery refused" pid=5001 reason="no per-datagram credentials`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestRecoverySpawnFailed(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"/nonexistent/restart {pid}", "no-such-command-in-path {pid}", notExec} {
		o := newRecoveryObserver(t, func(c *config) { c.recoveryExec = cmd })
		s := o.stall(6001)
		if st := &o.stats.recovery; st[recSpawnFailed] != 1 || st[recSpawned] != 0 || o.rec.n != 0 {
			t.Fatalf("%s: spawn_failed %d spawned %d", cmd, st[recSpawnFailed], st[recSpawned])
		}
		if s.lastRecov == 0 {
			t.Errorf("%s: a failed spawn must use up the debounce window", cmd)
		}
		log := o.logText()
		if !strings.Contains(log, `msg="recovery spawn failed" pid=6001 err=`) {
			t.Errorf("%s: spawn failure not logged:\n%s", cmd, log)
		}
		if !strings.Contains(log, "recovery command not found") {
			t.Errorf("%s: no warning at start", cmd)
		}
	}
}

func TestRecoveryExecResolvesInFixedPath(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) { c.recoveryExec = "true" })
	p, err := resolveCommand(o.rec.cmd, "true")
	if err != nil || !strings.HasSuffix(p, "/true") {
		t.Fatalf("resolve(true) = %q, %v", p, err)
	}
	o.stall(7001)
	o.loopUntil(5*time.Second, "exit_0", func() bool { return o.stats.recovery[recExit0] == 1 })
}

// A mass hang: every stall of the turn is surfaced before any spawn, and
// spawns are spread over turns, spawnBudget each, with the loop turning at
// once while some are pending.
func TestRecoveryMassHangSurfacesStallsFirst(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) {
		c.recoveryExec = "/bin/true"
	})
	const agents = 3*spawnBudget + 1
	past := monoNow() - int64(1500*time.Millisecond) // stalled, not yet up for retirement
	for i := 0; i < agents; i++ {
		o.tr.insert(uint32(20000+i), past)
	}
	o.fireDeadlines(monoNow())
	if st := o.tr.stalled.head; st == noSlot {
		t.Fatal("no stall surfaced")
	}
	if got := o.stats.stallDelay.count; got != agents {
		t.Fatalf("%d stalls surfaced in the first turn, want all %d", got, agents)
	}
	if o.rec.n != 0 || o.rec.npending != agents {
		t.Fatalf("after the deadlines: %d spawned, %d pending; want 0 and %d", o.rec.n, o.rec.npending, agents)
	}
	o.startRecoveries() // the rest of the turn, as iterate runs it
	if o.rec.n != spawnBudget || o.rec.npending != agents-spawnBudget {
		t.Fatalf("after one turn: %d spawned, %d pending; want %d and %d", o.rec.n, o.rec.npending, spawnBudget, agents-spawnBudget)
	}
	if to := o.timeout(monoNow()); to != 0 {
		t.Fatalf("loop timeout %d with spawns pending, want 0", to)
	}
	o.loopUntil(5*time.Second, "every recovery spawned and reaped", func() bool {
		return o.stats.recovery[recExit0] == agents
	})
	if o.stats.recovery[recSpawned] != agents || o.rec.npending != 0 {
		t.Fatalf("spawned %d pending %d", o.stats.recovery[recSpawned], o.rec.npending)
	}
}

// Each spawn holds the loop for a fork/exec, so the socket is drained after
// each one: a mass hang with a spawn per stall must not let the socket's
// short queue overflow.
func TestRecoverySpawnDrainsSocket(t *testing.T) {
	o := newRecoveryObserver(t, func(c *config) { c.recoveryExec = "/bin/true" })
	c, err := vlpclient.Dial(o.cfg.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var frame [vlpclient.FrameSize]byte
	for nonce := uint64(1); nonce <= 5; nonce++ {
		vlpclient.Encode(&frame, vlpclient.StatusOK, uint32(os.Getpid()), 1, nonce, 0)
		if sent, err := c.Send(frame[:]); !sent || err != nil {
			t.Fatalf("send: %v %v", sent, err)
		}
	}
	o.stall(9001)
	if o.stats.recovery[recSpawned] != 1 || o.stats.beatsAccepted != 5 {
		t.Fatalf("after a spawn: spawned %d, beats read %d, want 1 and 5", o.stats.recovery[recSpawned], o.stats.beatsAccepted)
	}
	o.loopUntil(5*time.Second, "exit_0", func() bool { return o.stats.recovery[recExit0] == 1 })
}

// BenchmarkRecoverySpawn measures what a spawn costs the event loop: the
// time onStall blocks it (fork/exec of the child, clone with CLONE_VFORK),
// which is how late a stall due at the same instant is surfaced.
func BenchmarkRecoverySpawn(b *testing.B) {
	for _, mode := range []struct{ name, flag string }{
		{"exec", "/bin/true"},
		{"shell", "exit 0"},
	} {
		b.Run(mode.name, func(b *testing.B) {
			dir := b.TempDir()
			cfg := defaultConfig()
			cfg.socket = filepath.Join(dir, "s.sock")
			cfg.thresholdMs = 1000
			cfg.recoveryDebounceMs = 0
			if mode.name == "exec" {
				cfg.recoveryExec = mode.flag
			} else {
				cfg.recoveryCmd = mode.flag
			}
			o, err := newObserver(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer o.shutdown()
			var worst time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := slot{pid: uint32(100000 + i)}
				t0 := time.Now()
				o.rec.onStall(&s, monoNow())
				o.startRecoveries()
				if d := time.Since(t0); d > worst {
					worst = d
				}
				if o.rec.n >= maxRecoveryChildren/2 {
					b.StopTimer()
					reapAllRecoveries(o)
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
			if o.stats.recovery[recSpawnFailed] != 0 {
				b.Fatal("spawns failed")
			}
		})
	}
}

// BenchmarkRecoveryMassHang: 64 agents stall at the same instant, each with
// a recovery to spawn. turn-µs is the loop turn that surfaces all 64 stalls
// (and starts the first spawnBudget children): how late anything else
// waiting on the loop is. all-spawned-ms is how long until the 64th child
// has started.
func BenchmarkRecoveryMassHang(b *testing.B) {
	dir := b.TempDir()
	cfg := defaultConfig()
	cfg.socket = filepath.Join(dir, "s.sock")
	cfg.thresholdMs = 1000
	cfg.recoveryExec = "/bin/true"
	o, err := newObserver(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer o.shutdown()
	var turn, all time.Duration
	for i := 0; i < b.N; i++ {
		past := monoNow() - int64(1500*time.Millisecond)
		for a := 0; a < maxRecoveryChildren; a++ {
			o.tr.insert(uint32(30000+a), past)
		}
		t0 := time.Now()
		o.fireDeadlines(monoNow())
		o.startRecoveries()
		turn += time.Since(t0)
		for o.rec.npending > 0 {
			o.fireDeadlines(monoNow())
			o.startRecoveries()
		}
		all += time.Since(t0)
		b.StopTimer()
		reapAllRecoveries(o)
		for a := 0; a < maxRecoveryChildren; a++ {
			if s := o.tr.lookup(uint32(30000 + a)); s != noSlot {
				o.tr.remove(s)
			}
		}
		b.StartTimer()
	}
	if got := o.stats.recovery[recSpawned]; got != uint64(b.N*maxRecoveryChildren) {
		b.Fatalf("spawned %d, want %d", got, b.N*maxRecoveryChildren)
	}
	b.ReportMetric(float64(turn.Microseconds())/float64(b.N), "turn-µs")
	b.ReportMetric(float64(all.Milliseconds())/float64(b.N), "all-spawned-ms")
}

// TestCloseInheritedOnExec: a descriptor above stderr that the observer
// got without close-on-exec (as from a careless parent) has the flag once
// recovery is set up, so recovery children do not inherit it; stdin,
// stdout and stderr are left alone.
func TestCloseInheritedOnExec(t *testing.T) {
	leaked, err := unix.Open(os.DevNull, unix.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(leaked)
	stderrFlags, err := unix.FcntlInt(2, unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags, _ := unix.FcntlInt(uintptr(leaked), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
		t.Fatal("test setup: descriptor already close-on-exec")
	}
	if err := closeInheritedOnExec(); err != nil {
		t.Fatal(err)
	}
	if flags, _ := unix.FcntlInt(uintptr(leaked), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("descriptor %d still inherited by children", leaked)
	}
	if flags, _ := unix.FcntlInt(2, unix.F_GETFD, 0); flags != stderrFlags {
		t.Fatalf("stderr flags %#x, were %#x", flags, stderrFlags)
	}
}

// reapAllRecoveries waits until every recovery child has exited and has
// been reaped, as the loop would on their exit notifications.
func reapAllRecoveries(o *observer) {
	for o.rec.n > 0 {
		for j := 0; j < o.rec.n; {
			if !o.rec.reap(j, monoNow()) {
				j++
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
}
