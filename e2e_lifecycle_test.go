//go:build linux

package main

// End-to-end tests of the observer's lifecycle (contract §8): signals and
// --shutdown-after-secs, systemd's notify protocol, the hardware
// watchdog, and the log.

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Contract §8: SIGTERM and SIGINT stop the observer cleanly: what was
// queued before is judged and written, the socket removed, exit 0.
func TestE2ESignalsExitCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "100"}})
			a := runAgent(t, p.socket, "--count", "3", "--interval-ms", "30")
			p.waitKind("beat", a.pid, 3)
			// Queued right before the signal; the agent retries each
			// datagram until the kernel accepts it.
			var args []string
			for i := 0; i < 40; i++ {
				args = append(args, "--hex", wireFrame(0, uint32(1000+i), 1, 1, 0, breakCRC))
			}
			runAgent(t, p.socket, args...)
			p.signal(sig)
			if code := p.wait(15 * time.Second); code != 0 {
				t.Fatalf("exit %d after %v\n%s", code, sig, p.stderr.String())
			}
			if _, err := os.Lstat(p.socket); !os.IsNotExist(err) {
				t.Fatalf("socket not removed after %v: %v", sig, err)
			}
			evs := p.readEvents()
			if n := countEvents(evs, "decode", ""); n != 40 {
				t.Fatalf("%d of 40 datagrams sent before %v in the event file", n, sig)
			}
			if n := countEvents(evs, "beat", a.pid); n != 3 {
				t.Fatalf("%d of 3 beats in the event file", n)
			}
			if s := p.stderr.String(); strings.Contains(s, "goroutine") || strings.Contains(s, "panic") {
				t.Fatalf("stderr: %s", s)
			}
		})
	}
}

// Contract §8 and §3: a signal at the first instant the socket exists is a
// clean stop too.
//
// TestE2ESignalRightAfterBind: whoever sees the socket may stop the
// observer at once; that is still a clean exit that removes the socket.
// (The race is narrow, so it is tried several times.)
func TestE2ESignalRightAfterBind(t *testing.T) {
	binaries(t)
	for i := 0; i < 20; i++ {
		sig := []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}[i%2]
		path := filepath.Join(shortTempDir(t), "s.sock")
		cmd := exec.Command(observerBin, "--socket", path, "--threshold-ms", "100")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Lstat(path); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("socket never appeared")
			}
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if _, serr := os.Lstat(path); err != nil || serr == nil {
			t.Fatalf("run %d: %v right after the socket appeared: %v, socket left behind: %v", i, sig, err, serr == nil)
		}
	}
}

// Contract §8: SIGTERM flushes the event file, under full load too.
//
// TestSIGTERMUnderLoad sends SIGTERM while four senders, each standing in
// for a live process, send beats as fast as the observer takes them. Every
// beat whose send completed before the signal must be in the file, and the
// file must hold, per pid, beats with nonces 1..k without a gap and no
// torn line.
func TestSIGTERMUnderLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		skipBecause(t, "standing in for other pids needs CAP_SYS_ADMIN; run as root")
	}
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000"}})
	const senders = 4
	var sentCount [senders]atomic.Uint64
	pids := make([]int, senders)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range pids {
		pids[i] = liveProcess(t)
		tx := newBlockingSender(t, o.socket)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := uint64(1); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := tx.send(encodeFrame(0, uint32(pids[i]), n, uint32(i)), pids[i]); err != nil {
					return // the observer has gone
				}
				sentCount[i].Store(n)
			}
		}(i)
	}
	time.Sleep(time.Second)
	var before [senders]uint64
	for i := range before {
		before[i] = sentCount[i].Load()
	}
	o.signal(unix.SIGTERM)
	code := o.wait(15 * time.Second)
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	data, err := os.ReadFile(o.events)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("event file does not end with a whole line: ...%q", data[max(0, len(data)-80):])
	}
	evs := parseEvents(t, data)
	for i, pid := range pids {
		ps := strconv.Itoa(pid)
		var nonces []uint64
		for _, e := range filterEvents(evs, "beat", ps) {
			n, err := strconv.ParseUint(e.nonce, 10, 64)
			if err != nil {
				t.Fatalf("bad nonce in %q", e.line)
			}
			nonces = append(nonces, n)
		}
		if !sort.SliceIsSorted(nonces, func(a, b int) bool { return nonces[a] < nonces[b] }) {
			t.Errorf("pid %s: beats out of order in the file", ps)
		}
		for j, n := range nonces {
			if n != uint64(j+1) {
				t.Errorf("pid %s: beat %d has nonce %d: a gap after %d", ps, j+1, n, j)
				break
			}
		}
		k := uint64(len(nonces))
		t.Logf("pid %s: %d sent before SIGTERM, %d in the file, %d sent in all", ps, before[i], k, sentCount[i].Load())
		if k < before[i] {
			t.Errorf("pid %s: %d beats sent before SIGTERM, only %d in the file", ps, before[i], k)
		}
		if k > sentCount[i].Load() {
			t.Errorf("pid %s: %d beats in the file, only %d sent", ps, k, sentCount[i].Load())
		}
	}
}

// Contract §2 --shutdown-after-secs and §8: exit 0 after S seconds, the
// socket removed, the beats written.
func TestE2EShutdownAfterSecs(t *testing.T) {
	start := time.Now()
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "100", "--shutdown-after-secs", "2"}})
	a := runAgent(t, p.socket, "--count", "2", "--interval-ms", "30")
	agentInTime := true
	select {
	case <-p.done:
		agentInTime = false // a very slow machine: the beats came too late
	default:
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("exited after %v, before --shutdown-after-secs 2", d)
	}
	if _, err := os.Lstat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket not removed: %v", err)
	}
	if n := countEvents(p.readEvents(), "beat", a.pid); n != 2 && agentInTime {
		t.Fatalf("%d of 2 beats in the event file", n)
	}
}

// notifyListenerE2E is a stand-in for systemd's notify socket.
type notifyListenerE2E struct {
	fd  int
	msg chan string
}

func listenNotifyE2E(t *testing.T, name string) *notifyListenerE2E {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := name
	if strings.HasPrefix(name, "@") {
		addr = "\x00" + name[1:]
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		t.Fatal(err)
	}
	l := &notifyListenerE2E{fd: fd, msg: make(chan string, 1024)}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 { // shut down by the cleanup
				return
			}
			l.msg <- string(buf[:n])
		}
	}()
	// Close the fd only after the reader has left recvfrom: a reader still
	// blocked on a reused fd number would steal another test's messages.
	t.Cleanup(func() { unix.Shutdown(fd, unix.SHUT_RDWR); <-exited; unix.Close(fd) })
	return l
}

// next returns the next message, or "" after timeout.
func (l *notifyListenerE2E) next(timeout time.Duration) string {
	select {
	case m := <-l.msg:
		return m
	case <-time.After(timeout):
		return ""
	}
}

// Contract §8, systemd: READY=1 once serving, WATCHDOG=1 every
// WATCHDOG_USEC/2, STOPPING=1 at shutdown, on a path and on an abstract (@)
// notify socket.
func TestSystemdNotifyLifecycle(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := filepath.Join(shortTempDir(t), "notify.sock")
		if abstract {
			name = "@varta-test-notify-" + filepath.Base(filepath.Dir(name))
		}
		t.Run(map[bool]string{false: "path", true: "abstract"}[abstract], func(t *testing.T) {
			l := listenNotifyE2E(t, name)
			p := startObserver(t, observerOpts{
				env:  []string{"NOTIFY_SOCKET=" + name, "WATCHDOG_USEC=200000"},
				args: []string{"--threshold-ms", "1000"},
			})
			if m := l.next(5 * time.Second); m != "READY=1" {
				t.Fatalf("first notify message %q, want READY=1", m)
			}
			// WATCHDOG_USEC=200000 asks for a ping at least every 200 ms;
			// the observer pings every 100 ms from its loop.
			start := time.Now()
			pings := 0
			for time.Since(start) < 800*time.Millisecond {
				if m := l.next(time.Second); m == "WATCHDOG=1" {
					pings++
				} else if m != "" {
					t.Fatalf("unexpected notify message %q", m)
				}
			}
			if pings < 4 {
				t.Fatalf("%d WATCHDOG=1 pings in 800ms, want at least 4 (every 100ms)", pings)
			}
			p.signal(syscall.SIGTERM)
			for {
				m := l.next(5 * time.Second)
				if m == "STOPPING=1" {
					break
				}
				if m != "WATCHDOG=1" {
					t.Fatalf("got %q, want STOPPING=1 at shutdown", m)
				}
			}
			if code := p.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

// Contract §8, systemd: no watchdog pings when WATCHDOG_PID names another
// process.
func TestSystemdWatchdogForAnotherPidIsIgnored(t *testing.T) {
	name := filepath.Join(shortTempDir(t), "notify.sock")
	l := listenNotifyE2E(t, name)
	p := startObserver(t, observerOpts{
		env:  []string{"NOTIFY_SOCKET=" + name, "WATCHDOG_USEC=100000", "WATCHDOG_PID=1"},
		args: []string{"--threshold-ms", "1000"},
	})
	if m := l.next(5 * time.Second); m != "READY=1" {
		t.Fatalf("first notify message %q, want READY=1", m)
	}
	if m := l.next(500 * time.Millisecond); m != "" {
		t.Fatalf("got %q: the watchdog was requested for pid 1, not for the observer", m)
	}
	p.stop()
}

// Contract §8 --hw-watchdog: fed from the loop while it runs; the magic
// close byte V is written only on a clean exit.
func TestHardwareWatchdogFedAndClosedWithMagicOnlyWhenClean(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(map[bool]string{true: "clean", false: "killed"}[clean], func(t *testing.T) {
			dev := filepath.Join(shortTempDir(t), "watchdog")
			if err := os.WriteFile(dev, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--hw-watchdog", dev}})
			// A regular file has no WDIOC_GETTIMEOUT: the feed interval is 1s.
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, _ := os.ReadFile(dev)
				if len(b) >= 2 {
					if bytes.ContainsRune(b, 'V') {
						t.Fatalf("magic close byte written while running: %q", b)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("watchdog fed %d times in 5s, want at least 2", len(b))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if clean {
				if code := p.stop(); code != 0 {
					t.Fatalf("exit %d", code)
				}
			} else {
				p.signal(syscall.SIGKILL)
				p.wait(5 * time.Second)
			}
			b, _ := os.ReadFile(dev)
			if got := bytes.HasSuffix(b, []byte("V")); got != clean {
				t.Fatalf("magic close byte at the end = %v, want %v (file %q)", got, clean, b)
			}
		})
	}
}

// Contract §8, Logs (one line per message, never one per beat; --log-format
// json), and §3 (the socket's queue limit logged at start).
//
// TestLogsJSONQueueLimitAndNoLinePerBeat: --log-format json writes one JSON
// object per line; the start-up log names the socket queue limit and warns
// when it is below what the tracker capacity needs; beats log nothing. The
// limit logged is the one the kernel enforces: with the observer stopped,
// the socket takes exactly one datagram more. By default (as root) the
// observer has a queue of its own of what 4096 pids need; with
// --socket-queue 0 the machine's.
func TestLogsJSONQueueLimitAndNoLinePerBeat(t *testing.T) {
	q, err := maxDgramQlen()
	if err != nil {
		skipBecause(t, "no net.unix.max_dgram_qlen: %v", err)
	}
	for _, queueFlag := range []string{"", "0"} {
		t.Run("socket-queue="+queueFlag, func(t *testing.T) {
			args := []string{"--threshold-ms", "5000", "--log-format", "json", "--tracker-capacity", "4096", "--prom-addr", "127.0.0.1:0"}
			if queueFlag != "" {
				args = append(args, "--socket-queue", queueFlag)
			}
			p := startObserver(t, observerOpts{args: args})
			runAgent(t, p.socket, "--count", "30", "--interval-ms", "5")
			p.waitEvents(10*time.Second, "30 beats", func(evs []tsvEvent) bool { return countEvents(evs, "beat", "") == 30 })
			gauge := metricValue(t, scrape(t, p, nil), "varta_socket_queue_datagrams")
			p.stopped()
			queued := queuedUntilFull(t, p.socket)
			p.signal(syscall.SIGCONT)
			if code := p.stop(); code != 0 {
				t.Fatalf("exit %d", code)
			}
			limit, sawWarn := -1, false
			own := false
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			for _, line := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("log line is not JSON: %q: %v", line, err)
				}
				for _, k := range []string{"time", "level", "msg"} {
					if _, ok := m[k]; !ok {
						t.Fatalf("log line without %q: %q", k, line)
					}
				}
				switch m["msg"] {
				case "socket queue limit":
					d, _ := m["datagrams"].(float64)
					limit = int(d)
					// "own user and network namespace" without root (the helper).
					if src, _ := m["source"].(string); src == "own network namespace" || src == "own user and network namespace" {
						own = true
						if m["machine_max_dgram_qlen"] != float64(q) {
							t.Errorf("machine limit logged as %v, want %d: %s", m["machine_max_dgram_qlen"], q, line)
						}
					} else if m["sysctl"] != "net.unix.max_dgram_qlen" {
						t.Errorf("limit line names no source: %s", line)
					}
				case "socket queue limit is low for the tracker capacity; raise it so bursts of beats are not dropped by the kernel":
					sawWarn = true
					// It says what to write where: the file the packages install.
					fix, _ := m["fix"].(string)
					for _, want := range []string{"net.unix.max_dgram_qlen = " + strconv.Itoa(recommendedQlen(4096)) + " in " + sysctlDropIn, sysctlDropInVendor, "--socket-queue"} {
						if !strings.Contains(fix, want) {
							t.Errorf("the queue warning's fix does not say %q: %s", want, line)
						}
					}
				}
			}
			switch {
			case limit < 0:
				t.Fatalf("no start-up line giving the socket queue limit:\n%s", p.stderr.String())
			case own && (queueFlag == "0" || limit != recommendedQlen(4096)):
				t.Errorf("own queue of %d with --socket-queue %q, want %d and none with 0", limit, queueFlag, recommendedQlen(4096))
			case !own && limit != q:
				t.Errorf("limit logged %d, the machine's is %d", limit, q)
			case queueFlag == "" && os.Geteuid() == 0 && !own && q < recommendedQlen(4096):
				t.Logf("root, yet no queue of its own (no network namespaces here?):\n%s", p.stderr.String())
			}
			if gauge != float64(limit) {
				t.Errorf("varta_socket_queue_datagrams = %v, the log says %d", gauge, limit)
			}
			if queued != limit+1 {
				t.Errorf("the stopped observer's socket took %d datagrams; a limit of %d takes %d", queued, limit, limit+1)
			}
			if want := limit < recommendedQlen(4096); sawWarn != want {
				t.Errorf("queue warning logged = %v, want %v (limit %d, recommended %d)", sawWarn, want, limit, recommendedQlen(4096))
			}
			if len(lines) > 12 {
				t.Errorf("%d log lines for a start, 30 beats and a stop: a line per beat?\n%s", len(lines), p.stderr.String())
			}
		})
	}
}

// Contract §8: a stderr that stopped being read never stops the observer.
//
// TestStderrNotReadDoesNotStopTheLoop: procd's logd, journald or a
// terminal can stop reading the observer's stderr. The loop must go on
// surfacing stalls: log lines wait in a bounded buffer, the surplus is
// dropped and counted, and the exit does not hang on the full pipe. Once
// stderr is read again it holds whole lines and the drop report.
func TestStderrNotReadDoesNotStopTheLoop(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096) // one page: a few dozen lines fill it
	p := startObserver(t, observerOpts{stderr: w, args: []string{"--threshold-ms", "10", "--prom-addr", "127.0.0.1:0"}})
	w.Close()
	// A storm of stalls: every 40-ms gap of every agent is a silence past
	// the 10-ms threshold, and each stall is a log line: ~1500 lines,
	// ~200 KB, far more than the pipe and the logger's buffer hold.
	var storm []*agentProc
	for i := 0; i < 30; i++ {
		storm = append(storm, startAgent(t, p.socket, "--interval-ms", "40", "--count", "50"))
	}
	for _, a := range storm {
		a.waitExit(t, 30*time.Second)
	}
	// stderr has been full for a while: the loop still surfaces a stall.
	last := runAgent(t, p.socket, "--count", "1")
	p.waitEvents(10*time.Second, "the stall of an agent that beat after stderr filled", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", last.pid) == 1
	})
	lost := metricValue(t, scrape(t, p, nil), "varta_log_lines_dropped_total")
	// The reader comes back: everything still queued, and the report of
	// what was dropped, is written before the exit completes.
	outc := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); outc <- b }()
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	stalls := countEvents(p.readEvents(), "stall", "")
	out := <-outc
	var logged, dropped int
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=") {
			t.Fatalf("torn log line %q", line)
		}
		if strings.Contains(line, `msg="agent stalled"`) {
			logged++
		}
		if _, n, ok := strings.Cut(line, `msg="log lines dropped: stderr was not being read" lines=`); ok {
			k, err := strconv.Atoi(n)
			if err != nil || k <= 0 {
				t.Fatalf("bad drop report %q", line)
			}
			dropped += k
		}
	}
	if lost < 1 || float64(dropped) < lost {
		t.Errorf("varta_log_lines_dropped_total = %v during the storm; %d reported dropped at the end", lost, dropped)
	}
	// Every stall is logged or counted as dropped. The count may also hold
	// the two shutdown lines ("stopping on signal", "varta-watch
	// stopped"), when they came before the writer had emptied its buffer.
	if dropped == 0 || logged+dropped < stalls || logged+dropped > stalls+2 {
		t.Fatalf("%d stalls, %d logged, %d reported dropped: want a drop report, and every stall either logged or counted", stalls, logged, dropped)
	}
}

// Contract §3 (the queue limit logged at start), README "The socket":
// TestUnprivilegedObserverGetsItsOwnQueue: the real binary, run as nobody
// (no CAP_SYS_ADMIN), gets the queue its tracker needs from its socket
// helper where nobody may create user namespaces: the start-up line says
// so, agents' beats arrive with their pids, and the stopped observer's
// socket takes exactly limit + 1 datagrams.
func TestUnprivilegedObserverGetsItsOwnQueue(t *testing.T) {
	if os.Geteuid() != 0 {
		skipBecause(t, "needs root to run the observer as nobody")
	}
	for _, tool := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipBecause(t, "no %s(1)", tool)
		}
	}
	if q, err := maxDgramQlen(); err != nil || q >= 256 {
		skipBecause(t, "net.unix.max_dgram_qlen %d (%v): nothing to raise", q, err)
	}
	if err := usernsAsNobody(); err != nil {
		skipBecause(t, "nobody may not create a user namespace here: %v", err)
	}
	binaries(t)
	dir := shortTempDir(t)
	os.Chmod(dir, 0o777)
	bin := copyExecutable(t, observerBin, filepath.Join(dir, "varta-watch"))
	p := startObserver(t, observerOpts{
		argv0: []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin},
		args:  []string{"--socket", filepath.Join(dir, "s.sock"), "--socket-mode", "0666", "--export-file", filepath.Join(dir, "events.tsv"), "--threshold-ms", "5000"},
	})
	waitFor(t, 10*time.Second, "the start-up log", func() bool { return strings.Contains(p.stderr.String(), "socket queue limit") })
	if !regexp.MustCompile(`msg="socket queue limit" source="own user and network namespace" datagrams=256 machine_max_dgram_qlen=\d+`).MatchString(p.stderr.String()) {
		t.Fatalf("no queue of its own from the helper:\n%s", p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), "level=WARN") {
		t.Errorf("a warning with the queue it wanted:\n%s", p.stderr.String())
	}
	runAgent(t, p.socket, "--count", "5", "--interval-ms", "5")
	p.waitEvents(10*time.Second, "5 beats", func(evs []tsvEvent) bool { return countEvents(evs, "beat", "") == 5 })
	p.stopped()
	if got := queuedUntilFull(t, p.socket); got != 257 {
		t.Errorf("the stopped observer's socket took %d datagrams, want 257", got)
	}
	p.signal(syscall.SIGCONT)
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
