//go:build linux

package main

// Contract §9 reload of the options a running observer is built on: the
// socket, the metrics listener, the tracker capacity, the hardware
// watchdog, shutdown_after_secs and log_format. Each takes effect at a
// SIGHUP; a bad one fails the whole reload and leaves the running
// observer as it was. (The thresholds, recovery, event file and agent
// sections are in e2e_agents_test.go.)

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stdoutLine waits for the n-th line (from 1) the observer printed on
// stdout.
func (p *observerProc) stdoutLine(t *testing.T, n int) string {
	t.Helper()
	var lines []string
	waitFor(t, 10*time.Second, "stdout line "+strconv.Itoa(n), func() bool {
		lines = strings.Split(p.stdout.String(), "\n")
		return len(lines) > n
	})
	return strings.TrimSpace(lines[n-1])
}

// reloaded sends SIGHUP and waits for the n-th reload's log line (from
// 1), success or failure.
func (p *observerProc) reloaded(t *testing.T, n int) string {
	t.Helper()
	p.signal(syscall.SIGHUP)
	log := ""
	waitFor(t, 10*time.Second, "reload "+strconv.Itoa(n), func() bool {
		log = p.stderr.String()
		return strings.Count(log, "configuration reloaded")+strings.Count(log, "configuration reload failed") >= n
	})
	return log
}

// Contract §9 reload, §2 --prom-addr: a changed prom_addr is bound at the
// reload and its address printed on stdout as at start; the old address
// refuses; a tracked agent's beats go on being counted.
func TestE2EReloadMovesTheMetricsListener(t *testing.T) {
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("no 127.0.0.2 on this machine's loopback: %v", err)
	} else {
		l.Close()
	}
	dir := shortTempDir(t)
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption prom_addr '"
	conf := writeConfFile(t, dir, main+"127.0.0.1:0'\n")
	p := startObserver(t, observerOpts{args: []string{"--config", conf}, promInFile: true})
	first := p.promAddr
	a := startAgent(t, p.socket, "--interval-ms", "20")
	series := `varta_beats_total{pid="` + a.pid + `"}`
	before := metricValueOr(waitScrape(t, p, 10*time.Second, "some beats", func(b string) bool {
		return metricValueOr(b, series) >= 5
	}), series)
	writeConfFile(t, dir, main+"127.0.0.2:0'\n")
	p.reloaded(t, 1)
	p.promAddr = p.stdoutLine(t, 2)
	if !strings.HasPrefix(p.promAddr, "127.0.0.2:") {
		t.Fatalf("second stdout line %q, want the new address", p.promAddr)
	}
	body := waitScrape(t, p, 10*time.Second, "more beats on the new address", func(b string) bool {
		return metricValueOr(b, series) > before
	})
	if v := sampleValue(body, "varta_config_last_reload_successful"); v != "1" {
		t.Errorf("varta_config_last_reload_successful = %q", v)
	}
	if c, err := net.DialTimeout("tcp", first, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the old address %s still takes connections", first)
	}
}

// Contract §9 reload errors, §6: a new prom_addr that cannot be bound, or a
// token file that cannot be used, fails the reload: logged, the old
// listener serves on, varta_config_last_reload_successful 0. A good token
// file is read at the reload and required from then on.
func TestE2EReloadOfBadListenerOptionsKeepsTheListener(t *testing.T) {
	dir := shortTempDir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption prom_addr '127.0.0.1:0'\n"
	conf := writeConfFile(t, dir, main)
	p := startObserver(t, observerOpts{args: []string{"--config", conf}, promInFile: true})
	writeConfFile(t, dir, "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption prom_addr '"+busy.Addr().String()+"'\n")
	if log := p.reloaded(t, 1); !strings.Contains(log, "configuration reload failed") || !strings.Contains(log, "address already in use") {
		t.Fatalf("reload onto a busy address: no failure that names it:\n%s", log)
	}
	if v := sampleValue(scrape(t, p, nil), "varta_config_last_reload_successful"); v != "0" {
		t.Errorf("after a busy address: varta_config_last_reload_successful = %q, want 0", v)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeConfFile(t, dir, main+"\toption prom_token_file '"+token+"'\n")
	if log := p.reloaded(t, 2); strings.Count(log, "configuration reload failed") != 2 || !strings.Contains(log, token) {
		t.Fatalf("reload with a world-readable token file: no failure that names it:\n%s", log)
	}
	if v := sampleValue(scrape(t, p, nil), "varta_config_last_reload_successful"); v != "0" {
		t.Errorf("after a bad token file: varta_config_last_reload_successful = %q, want 0", v)
	}
	os.Chmod(token, 0o600)
	p.reloaded(t, 3)
	waitFor(t, 10*time.Second, "the token required", func() bool {
		r, err := httpDo(t, "GET", p.promAddr, "/metrics", nil)
		return err == nil && r.code == 401
	})
	body := scrape(t, p, map[string]string{"Authorization": "Bearer s3cret"})
	if v := sampleValue(body, "varta_config_last_reload_successful"); v != "1" {
		t.Errorf("after a good token file: varta_config_last_reload_successful = %q, want 1", v)
	}
}

// Contract §9 reload, §3: a changed socket path is bound at the reload,
// with the new socket_mode; beats queued on the old socket while the
// observer could not read them are judged (in the event file), the old
// path is removed, and agents on the new path are tracked.
func TestE2EReloadMovesTheSocket(t *testing.T) {
	dir := shortTempDir(t)
	first, second := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption socket '"
	conf := writeConfFile(t, dir, main+first+"'\n")
	p := startObserver(t, observerOpts{args: []string{"--config", conf, "--prom-addr", "127.0.0.1:0"}, socketInFile: first})
	p.stopped()
	a := runAgent(t, first, "--interval-ms", "5", "--count", "5") // queued while the observer is stopped
	writeConfFile(t, dir, main+second+"'\n\toption socket_mode '0660'\n")
	p.signal(syscall.SIGHUP)
	p.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "the reload", func() bool { return strings.Contains(p.stderr.String(), "configuration reloaded") })
	b := startAgent(t, second, "--interval-ms", "20")
	waitScrape(t, p, 10*time.Second, "the agent on the new socket", func(body string) bool {
		return metricValueOr(body, `varta_beats_total{pid="`+b.pid+`"}`) >= 3
	})
	p.waitEvents(10*time.Second, "the 5 beats sent to the old socket before the reload", func(evs []tsvEvent) bool {
		return countEvents(evs, "beat", a.pid) == 5 && countEvents(evs, "beat", b.pid) >= 3
	})
	if _, err := os.Lstat(first); !os.IsNotExist(err) {
		t.Errorf("the old socket path is still there: %v", err)
	}
	if fi, err := os.Lstat(second); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("the new socket: %v, %v; want mode 0660", fi, err)
	}
	// The path's lock moved with the socket, and the loop answers the new
	// one.
	checkLockAnswered(t, p, second, 2*lockBacklog)
	if fd, h := lockSocketPath(first); h.busy {
		t.Errorf("the old path's lock is still held: %+v", h)
	} else {
		unix.Close(fd)
	}
}

// Contract §9 reload, §2 --tracker-capacity: a larger capacity takes more
// pids at once, the tracked ones keep their counts; a capacity below the
// pids tracked fails the reload.
func TestE2EReloadResizesTheTracker(t *testing.T) {
	dir := shortTempDir(t)
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n\toption tracker_capacity '"
	conf := writeConfFile(t, dir, main+"3'\n")
	p := startObserver(t, observerOpts{args: []string{"--config", conf, "--prom-addr", "127.0.0.1:0"}})
	var agents []*agentProc
	for i := 0; i < 3; i++ {
		agents = append(agents, runAgent(t, p.socket, "--interval-ms", "5", "--count", "4"))
	}
	waitScrape(t, p, 10*time.Second, "three pids", func(b string) bool { return sampleValue(b, "varta_tracker_pids") == "3" })
	writeConfFile(t, dir, main+"2'\n")
	if log := p.reloaded(t, 1); !strings.Contains(log, "configuration reload failed") || !strings.Contains(log, "tracker_capacity 2") {
		t.Fatalf("shrinking below the tracked pids: no failure that says so:\n%s", log)
	}
	body := scrape(t, p, nil)
	if sampleValue(body, "varta_config_last_reload_successful") != "0" || sampleValue(body, "varta_tracker_capacity") != "3" {
		t.Fatalf("after a capacity too small: reload_successful %s, capacity %s; want 0 and 3",
			sampleValue(body, "varta_config_last_reload_successful"), sampleValue(body, "varta_tracker_capacity"))
	}
	writeConfFile(t, dir, main+"6'\n")
	p.reloaded(t, 2)
	for i := 0; i < 3; i++ {
		agents = append(agents, runAgent(t, p.socket, "--interval-ms", "5", "--count", "4"))
	}
	body = waitScrape(t, p, 10*time.Second, "six pids", func(b string) bool { return sampleValue(b, "varta_tracker_pids") == "6" })
	if v := sampleValue(body, "varta_tracker_capacity"); v != "6" {
		t.Errorf("varta_tracker_capacity %s, want 6", v)
	}
	for _, a := range agents {
		if v := sampleValue(body, `varta_beats_total{pid="`+a.pid+`"}`); v != "4" {
			t.Errorf("pid %s: %q beats, want its 4", a.pid, v)
		}
	}
	if v := sampleValue(body, "varta_tracker_capacity_exceeded_total"); v != "0" {
		t.Errorf("varta_tracker_capacity_exceeded_total %s", v)
	}
}

// Contract §9 reload, §8 --hw-watchdog: a reload that names a device opens
// and feeds it; naming another one or off closes the old one with the
// magic 'V' (disarmed, as at a clean exit); a device that cannot be opened
// fails the reload and the fed one stays fed. (Regular files stand for the
// devices: they record every byte.)
func TestE2EReloadSwitchesTheHardwareWatchdog(t *testing.T) {
	dir := shortTempDir(t)
	dev1, dev2 := filepath.Join(dir, "wd1"), filepath.Join(dir, "wd2")
	for _, d := range []string{dev1, dev2} {
		if err := os.WriteFile(d, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n"
	conf := writeConfFile(t, dir, main)
	p := startObserver(t, observerOpts{args: []string{"--config", conf}})
	fed := func(dev string, n int) {
		t.Helper()
		waitFor(t, 10*time.Second, dev+" fed", func() bool { b, _ := os.ReadFile(dev); return len(b) >= n })
	}
	writeConfFile(t, dir, main+"\toption hw_watchdog '"+dev1+"'\n")
	p.reloaded(t, 1)
	fed(dev1, 2)
	writeConfFile(t, dir, main+"\toption hw_watchdog '"+filepath.Join(dir, "none", "wd")+"'\n")
	if log := p.reloaded(t, 2); !strings.Contains(log, "configuration reload failed") {
		t.Fatalf("a device that cannot be opened did not fail the reload:\n%s", log)
	}
	b, _ := os.ReadFile(dev1)
	fed(dev1, len(b)+1)
	writeConfFile(t, dir, main+"\toption hw_watchdog '"+dev2+"'\n")
	p.reloaded(t, 3)
	fed(dev2, 2)
	if b, _ := os.ReadFile(dev1); !bytes.HasSuffix(b, []byte("V")) || bytes.Count(b, []byte("V")) != 1 {
		t.Errorf("the old device was not closed with the magic byte once: %q", b)
	}
	writeConfFile(t, dir, main+"\toption hw_watchdog 'off'\n")
	p.reloaded(t, 4)
	waitFor(t, 10*time.Second, "the magic close of the second device", func() bool {
		b, _ := os.ReadFile(dev2)
		return bytes.HasSuffix(b, []byte("V"))
	})
	if b, _ := os.ReadFile(dev2); bytes.Count(b, []byte("V")) != 1 {
		t.Errorf("second device: %q, want one V at the end", b)
	}
}

// Contract §9 reload, §2 --shutdown-after-secs: set at a reload, it counts
// from the reload, and the exit is clean.
func TestE2EReloadArmsShutdownAfterSecs(t *testing.T) {
	dir := shortTempDir(t)
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n"
	conf := writeConfFile(t, dir, main)
	p := startObserver(t, observerOpts{args: []string{"--config", conf}})
	writeConfFile(t, dir, main+"\toption shutdown_after_secs '1'\n")
	p.reloaded(t, 1)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(p.stderr.String(), "shutdown-after-secs reached") {
		t.Errorf("no shutdown-after-secs line:\n%s", p.stderr.String())
	}
}

// Contract §9 reload, §2 --log-format: a reload to json makes the next
// lines JSON objects, the reload's own line among them.
func TestE2EReloadSwitchesTheLogFormat(t *testing.T) {
	dir := shortTempDir(t)
	main := "config varta-watch 'main'\n\toption threshold_ms '5000'\n"
	conf := writeConfFile(t, dir, main)
	p := startObserver(t, observerOpts{args: []string{"--config", conf}})
	writeConfFile(t, dir, main+"\toption log_format 'json'\n")
	log := p.reloaded(t, 1)
	var last string
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if strings.Contains(l, "configuration reloaded") {
			last = l
		}
	}
	if !strings.HasPrefix(last, `{"time":"`) || !strings.Contains(last, `"msg":"configuration reloaded"`) {
		t.Errorf("the reload's line is not JSON: %q", last)
	}
	if first := strings.SplitN(log, "\n", 2)[0]; strings.HasPrefix(first, "{") {
		t.Errorf("the start was logged as JSON already: %q", first)
	}
}

// Contract §9 reload, §3: a changed socket_queue needs a new socket at the
// same path; it is renamed over the path while an agent beats every 2 ms,
// and every beat the kernel queued, on the old socket or the new, is
// counted. A queue of the socket's own takes CAP_SYS_ADMIN or user
// namespaces: the test needs the start to have one.
func TestE2EReloadRequeuesTheSocket(t *testing.T) {
	sys, err := maxDgramQlen()
	if err != nil {
		t.Skipf("no net.unix.max_dgram_qlen: %v", err)
	}
	dir := shortTempDir(t)
	main := "config varta-watch 'main'\n\toption threshold_ms '2000'\n"
	conf := writeConfFile(t, dir, main)
	p := startObserver(t, observerOpts{args: []string{"--config", conf, "--prom-addr", "127.0.0.1:0"}})
	waitFor(t, 10*time.Second, "the start-up log", func() bool { return strings.Contains(p.stderr.String(), "socket queue limit") })
	if !strings.Contains(p.stderr.String(), `source="own network namespace"`) && !strings.Contains(p.stderr.String(), `source="own user and network namespace"`) {
		t.Skip("no socket queue of its own here: it takes CAP_SYS_ADMIN or user namespaces, and network namespaces")
	}
	a := startReportingAgent(t, p.socket, "--interval-ms", "2")
	series := `varta_beats_total{pid="` + a.pid + `"}`
	waitScrape(t, p, 10*time.Second, "some beats", func(b string) bool { return metricValueOr(b, series) >= 20 })
	for i, q := range []int{0, sys + 50} {
		writeConfFile(t, dir, main+"\toption socket_queue '"+strconv.Itoa(q)+"'\n")
		p.reloaded(t, i+1)
		want := strconv.Itoa(max(q, sys))
		before := metricValueOr(scrape(t, p, nil), series)
		body := waitScrape(t, p, 10*time.Second, "beats after the new queue", func(b string) bool { return metricValueOr(b, series) >= before+20 })
		if v := sampleValue(body, "varta_socket_queue_datagrams"); v != want {
			t.Fatalf("socket_queue %d: varta_socket_queue_datagrams %s, want %s", q, v, want)
		}
	}
	// The path's lock went over to the new socket, still answered.
	checkLockAnswered(t, p, p.socket, 2*lockBacklog)
	sent, _ := a.stop(t)
	body := waitScrape(t, p, 10*time.Second, "every beat sent", func(b string) bool { return metricValueOr(b, series) >= float64(sent) })
	if v := metricValueOr(body, series); v != float64(sent) {
		t.Errorf("%v beats counted, the agent sent %d", v, sent)
	}
	if n := countEvents(p.readEvents(), "stall", a.pid); n != 0 {
		t.Errorf("%d stalls of an agent that beat through the reloads", n)
	}
	if _, err := os.Lstat(p.socket + ".reload"); !os.IsNotExist(err) {
		t.Errorf("the socket bound beside the path is still there: %v", err)
	}
}
