package main

// End-to-end tests of the exporters with the real binary, real agents,
// real TCP clients, promtool and a real Prometheus server.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

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

// scrapeE2E GETs /metrics and fails the test unless it is a 200.
func scrapeE2E(t testing.TB, p *observerProc, hdr map[string]string) string {
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

func waitScrape(t testing.TB, p *observerProc, timeout time.Duration, what string, cond func(body string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body := scrapeE2E(t, p, nil)
		if cond(body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last scrape:\n%s", timeout, what, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestE2EPromtoolPassesOnLiveScrape(t *testing.T) {
	p := startObserver(t, "--threshold-ms", "200", "--prom-addr", "127.0.0.1:0")
	a := startAgent(t, p.socket, "--interval-ms", "20", "--status", "degraded")
	body := waitScrape(t, p, 5*time.Second, "the agent's series", func(b string) bool {
		return sampleValue(b, `varta_status{pid="`+a.pid+`"}`) == "1"
	})
	if v := sampleValue(body, `varta_agent_info{pid="`+a.pid+`",comm="varta-agent"}`); v != "1" {
		t.Errorf("varta_agent_info for the agent: %q", v)
	}
	r, err := httpDo(t, "GET", p.promAddr, "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(r.body, "process_open_fds ") && isLinux {
		t.Error("no process_open_fds")
	}
	promtoolCheck(t, r.body)
}

func TestE2EHTTPRoutes(t *testing.T) {
	p := startObserver(t, "--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0")
	cases := []struct {
		method, path string
		code         int
		bodyHas      string
	}{
		{"GET", "/", 200, `href="/metrics"`},
		{"GET", "/metrics", 200, "varta_build_info{"},
		{"GET", "/metrics?x=1", 200, "varta_tracker_pids 0"},
		{"HEAD", "/metrics", 200, ""},
		{"GET", "/nothing", 404, ""},
		{"GET", "/metrics/", 404, ""},
		{"POST", "/metrics", 405, ""},
		{"DELETE", "/", 405, ""},
	}
	for _, c := range cases {
		r, err := httpDo(t, c.method, p.promAddr, c.path, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		if r.code != c.code || !strings.Contains(r.body, c.bodyHas) {
			t.Errorf("%s %s: %d %q, want %d with %q", c.method, c.path, r.code, r.body, c.code, c.bodyHas)
		}
		if c.method == "HEAD" && r.body != "" {
			t.Errorf("HEAD returned a body")
		}
		if c.code == 405 && r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("405 without Allow: GET, HEAD")
		}
	}

	// A client that shuts its write side after the request (nc -N) still
	// gets the whole body.
	hc, err := net.Dial("tcp", p.promAddr)
	if err != nil {
		t.Fatal(err)
	}
	hc.SetDeadline(time.Now().Add(5 * time.Second))
	hc.Write([]byte("GET /metrics HTTP/1.0\r\n\r\n"))
	hc.(*net.TCPConn).CloseWrite()
	resp, _ := io.ReadAll(hc)
	hc.Close()
	if !strings.HasPrefix(string(resp), "HTTP/1.1 200 OK\r\n") || !strings.Contains(string(resp), "\nvarta_prom_connections ") {
		t.Errorf("half-closed client got %q", resp)
	}

	// A request head over 8 KiB is dropped without a response.
	conn, err := net.Dial("tcp", p.promAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	big := "GET /metrics HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 9000) + "\r\n\r\n"
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte(big))
	got, _ := io.ReadAll(conn)
	if len(got) != 0 {
		t.Errorf("oversized request answered: %q", got)
	}
	body := scrapeE2E(t, p, nil)
	if v := sampleValue(body, `varta_prom_requests_dropped_total{reason="too_large"}`); v != "1" {
		t.Errorf("too_large drops %q, want 1", v)
	}
	for code, want := range map[string]string{"404": "2", "405": "2"} {
		if v := sampleValue(body, `varta_prom_requests_total{code="`+code+`"}`); v != want {
			t.Errorf("responses with %s: %q, want %s", code, v, want)
		}
	}
}

func TestE2EBearerToken(t *testing.T) {
	dir := shortTempDir(t)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("\n  correct-horse \n"), 0o600)
	p := startObserver(t, "--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0", "--prom-token-file", tokenFile)
	for hdr, want := range map[string]int{
		"":                      401,
		"Bearer wrong":          401,
		"Bearer correct-horse":  200,
		"bearer correct-horse":  200,
		"Basic correct-horse":   401,
		"Bearer correct-horse2": 401,
	} {
		h := map[string]string{}
		if hdr != "" {
			h["Authorization"] = hdr
		}
		r, err := httpDo(t, "GET", p.promAddr, "/metrics", h)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != want {
			t.Errorf("Authorization %q: %d, want %d", hdr, r.code, want)
		}
		if want == 401 && strings.Contains(r.body, "varta_") {
			t.Errorf("401 leaked metrics")
		}
	}
	body := scrapeE2E(t, p, map[string]string{"Authorization": "Bearer correct-horse"})
	if v := sampleValue(body, `varta_prom_requests_total{code="401"}`); v != "4" {
		t.Errorf("401 count %q, want 4", v)
	}

	// A token file others can read: refuse to start, one line, exit 1.
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("tok"), 0o644)
	os.Chmod(loose, 0o644)
	binaries(t)
	cmd := exec.Command(observerBin, "--socket", filepath.Join(dir, "s2.sock"), "--threshold-ms", "100",
		"--prom-addr", "127.0.0.1:0", "--prom-token-file", loose)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("group/world-readable token file: %v\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], loose) {
		t.Fatalf("want one line naming %s, got:\n%s", loose, out)
	}
}

func TestE2EStartFailuresNameThePath(t *testing.T) {
	binaries(t)
	dir := shortTempDir(t)
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link.tsv")
	os.Symlink(target, link)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, c := range map[string]struct{ args []string }{
		filepath.Join(dir, "no", "such", "events.tsv"): {[]string{"--export-file", filepath.Join(dir, "no", "such", "events.tsv")}},
		link:                 {[]string{"--export-file", link}},
		busy.Addr().String(): {[]string{"--prom-addr", busy.Addr().String()}},
	} {
		args := append([]string{"--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "100"}, c.args...)
		out, err := exec.Command(observerBin, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%v: %v\n%s", c.args, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], name) {
			t.Errorf("%v: want one line naming %s, got:\n%s", c.args, name, out)
		}
	}
	if data, _ := os.ReadFile(target); len(data) != 0 {
		t.Error("the symlink was followed")
	}
}

func TestE2EIPv6Loopback(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	p := startObserver(t, "--threshold-ms", "1000", "--prom-addr", "[::1]:0")
	if !strings.HasPrefix(p.promAddr, "[::1]:") {
		t.Fatalf("printed address %q", p.promAddr)
	}
	scrapeE2E(t, p, nil)
}

func TestE2ERateLimit(t *testing.T) {
	p := startObserver(t, "--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0",
		"--prom-rate-limit-per-sec", "1", "--prom-rate-limit-burst", "2")
	ok, refused := 0, 0
	for i := 0; i < 5; i++ {
		if r, err := httpDo(t, "GET", p.promAddr, "/metrics", nil); err == nil && r.code == 200 {
			ok++
		} else {
			refused++
		}
	}
	if ok != 2 || refused != 3 {
		t.Fatalf("burst of 5 at burst 2: %d served, %d refused", ok, refused)
	}
	time.Sleep(1100 * time.Millisecond)
	body := scrapeE2E(t, p, nil)
	if v := sampleValue(body, `varta_prom_requests_dropped_total{reason="rate_limited"}`); v != "3" {
		t.Errorf("rate_limited %q, want 3", v)
	}
}

// TestE2EIdleConnectionsDelayNothing holds 200 connections that never send
// a request: a stall is still surfaced on time and a scrape is still served.
func TestE2EIdleConnectionsDelayNothing(t *testing.T) {
	const thresholdMs = 100
	p := startObserver(t, "--threshold-ms", strconv.Itoa(thresholdMs), "--prom-addr", "127.0.0.1:0")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", p.promAddr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	a := startAgent(t, p.socket, "--interval-ms", "10", "--hang-after", "10")
	evs := p.waitEvents(5*time.Second, "a stall", func(evs []tsvEvent) bool { return countEvents(evs, "stall", a.pid) == 1 })
	beats := filterEvents(evs, "beat", a.pid)
	stall := filterEvents(evs, "stall", a.pid)[0]
	late := time.Duration(stall.ns - beats[len(beats)-1].ns - thresholdMs*1e6)
	if late < 0 || late > 50*time.Millisecond {
		t.Errorf("stall surfaced %v after its deadline with 200 idle connections", late)
	}
	start := time.Now()
	body := scrapeE2E(t, p, nil)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("scrape took %v with 200 idle connections", d)
	}
	if v := sampleValue(body, `varta_stalls_total{pid="`+a.pid+`"}`); v != "1" {
		t.Errorf("varta_stalls_total %q", v)
	}
	if v := sampleValue(body, `varta_prom_requests_dropped_total{reason="evicted"}`); v == "0" || v == "" {
		t.Errorf("no idle connection was evicted to make room: %q", v)
	}
	if v, _ := strconv.Atoi(sampleValue(body, "varta_prom_connections")); v > promMaxConns {
		t.Errorf("%d connections open, cap %d", v, promMaxConns)
	}
}

func TestE2ERotationKeepsEveryLine(t *testing.T) {
	const maxBytes = 4000
	p := startObserver(t, "--threshold-ms", "5000", "--prom-addr", "127.0.0.1:0",
		"--export-file-max-bytes", strconv.Itoa(maxBytes), "--export-file-keep", "1000")
	a := runAgent(t, p.socket, "--interval-ms", "1", "--count", "600")
	body := scrapeE2E(t, p, nil)
	accepted, _ := strconv.Atoi(sampleValue(body, `varta_beats_total{pid="`+a.pid+`"}`))
	if accepted < 100 {
		t.Fatalf("only %d beats accepted", accepted)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var all []byte
	files := 0
	for i := 1000; i >= 0; i-- {
		path := p.events
		if i > 0 {
			path = fmt.Sprintf("%s.%d", p.events, i)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		files++
		if len(data) > maxBytes {
			t.Errorf("%s: %d bytes, limit %d", path, len(data), maxBytes)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s ends inside a line", path)
		}
		all = append(all, data...)
	}
	evs := parseEvents(t, all)
	beats := filterEvents(evs, "beat", a.pid)
	if len(beats) != accepted {
		t.Fatalf("%d beat lines in %d files, %d beats accepted", len(beats), files, accepted)
	}
	var last uint64
	for _, b := range beats {
		n, _ := strconv.ParseUint(b.nonce, 10, 64)
		if n <= last {
			t.Fatalf("nonce %d after %d: generations out of order", n, last)
		}
		last = n
	}
	if files < 5 {
		t.Fatalf("only %d files: rotation did not happen", files)
	}
}

func TestE2ERetiredAgentLeavesMetrics(t *testing.T) {
	p := startObserver(t, "--threshold-ms", "50", "--prom-addr", "127.0.0.1:0")
	a := startAgent(t, p.socket, "--interval-ms", "10")
	waitScrape(t, p, 5*time.Second, "the agent's series", func(b string) bool {
		return sampleValue(b, `varta_beats_total{pid="`+a.pid+`"}`) != ""
	})
	a.kill()
	p.waitEvents(5*time.Second, "retirement", func(evs []tsvEvent) bool {
		for _, e := range filterEvents(evs, "eviction", a.pid) {
			if e.payload == "retired" {
				return true
			}
		}
		return false
	})
	body := scrapeE2E(t, p, nil)
	if strings.Contains(body, `pid="`+a.pid+`"`) {
		t.Errorf("series of retired pid %s still exported", a.pid)
	}
	if v := sampleValue(body, `varta_tracker_evicted_total{reason="retired"}`); v != "1" {
		t.Errorf("retired evictions %q", v)
	}
	if v := sampleValue(body, "varta_tracker_pids"); v != "0" {
		t.Errorf("varta_tracker_pids %q", v)
	}
}

// TestE2EEventFileOnFullDisk: every write to the event file fails; the
// observer counts, logs once, and goes on surfacing stalls.
func TestE2EEventFileOnFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	p := startObserver(t, "--threshold-ms", "50", "--prom-addr", "127.0.0.1:0", "--export-file", "/dev/full")
	a := startAgent(t, p.socket, "--interval-ms", "5", "--hang-after", "20")
	body := waitScrape(t, p, 5*time.Second, "a stall and write errors", func(b string) bool {
		n, _ := strconv.Atoi(sampleValue(b, "varta_export_write_errors_total"))
		return sampleValue(b, `varta_status{pid="`+a.pid+`"}`) == "3" && n >= 2
	})
	if v := sampleValue(body, `varta_stalls_total{pid="`+a.pid+`"}`); v != "1" {
		t.Errorf("stalls %q", v)
	}
	time.Sleep(300 * time.Millisecond)
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr.String())
	}
	if c := strings.Count(p.stderr.String(), "event file write failed"); c != 1 {
		t.Errorf("write failure logged %d times, want once:\n%s", c, p.stderr.String())
	}
}

func TestE2ESIGHUPReopensEventFile(t *testing.T) {
	p := startObserver(t, "--threshold-ms", "1000")
	a := startAgent(t, p.socket, "--interval-ms", "10")
	p.waitEvents(5*time.Second, "beats", func(evs []tsvEvent) bool { return countEvents(evs, "beat", a.pid) >= 3 })
	if err := os.Rename(p.events, p.events+".1"); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	p.waitEvents(5*time.Second, "beats in the new file", func(evs []tsvEvent) bool { return countEvents(evs, "beat", a.pid) >= 3 })
	a.kill()
	p.stop()
	old, _ := os.ReadFile(p.events + ".1")
	cur, _ := os.ReadFile(p.events)
	oldBeats := filterEvents(parseEvents(t, old), "beat", a.pid)
	newBeats := filterEvents(parseEvents(t, cur), "beat", a.pid)
	// The two files together hold a gap-free run of nonces.
	all := append(oldBeats, newBeats...)
	for i := 1; i < len(all); i++ {
		x, _ := strconv.ParseUint(all[i-1].nonce, 10, 64)
		y, _ := strconv.ParseUint(all[i].nonce, 10, 64)
		if y != x+1 {
			t.Fatalf("nonce %d follows %d across the reopen", y, x)
		}
	}
}

// TestE2EPrometheusIngests runs a real Prometheus server against the
// observer and queries what it stored.
func TestE2EPrometheusIngests(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (Debian package prometheus): ingestion not tested")
	}
	p := startObserver(t, "--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0")
	a := startAgent(t, p.socket, "--interval-ms", "50")

	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	webAddr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: varta\n    static_configs:\n      - targets: ['%s']\n", p.promAddr)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	cmd := exec.Command(prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+webAddr, "--log.level=warn")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	query := func(q string) (string, error) {
		resp, err := testHTTP.Get("http://" + webAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return "", err
		}
		if r.Status != "success" || len(r.Data.Result) == 0 {
			return "", fmt.Errorf("status %q, %d results", r.Status, len(r.Data.Result))
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		return s, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		v, err := query(`varta_beats_total{job="varta",pid="` + a.pid + `"}`)
		if err == nil {
			if n, _ := strconv.ParseFloat(v, 64); n > 0 {
				if up, err := query(`up{job="varta"}`); err != nil || up != "1" {
					t.Errorf("up{job=\"varta\"} = %q (%v)", up, err)
				}
				return
			}
		}
		last = err
		time.Sleep(500 * time.Millisecond)
	}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	var tail []string
	for sc.Scan() {
		tail = append(tail, sc.Text())
	}
	if len(tail) > 20 {
		tail = tail[len(tail)-20:]
	}
	t.Fatalf("Prometheus never stored varta_beats_total for pid %s: %v\n%s", a.pid, last, strings.Join(tail, "\n"))
}

// TestE2EOutOfDescriptors runs the observer with a descriptor limit that
// idle connections exhaust: accept fails with EMFILE, and the loop must
// neither spin on the still-readable listener nor stop serving once
// descriptors are free again.
func TestE2EOutOfDescriptors(t *testing.T) {
	if !isLinux {
		t.Skip("reads /proc/PID/stat")
	}
	binaries(t)
	dir := shortTempDir(t)
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 32 && exec "$0" "$@"`, observerBin,
		"--socket", filepath.Join(dir, "s.sock"), "--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no address: %v\n%s", err, stderr.String())
	}
	p := &observerProc{t: t, promAddr: strings.TrimSpace(line)}
	var conns []net.Conn
	for i := 0; i < 60; i++ {
		c, err := net.Dial("tcp", p.promAddr)
		if err != nil {
			break // the backlog is full: enough
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	cpu := func() float64 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		return (u + s) / 100
	}
	before := cpu()
	time.Sleep(time.Second)
	if used := cpu() - before; used > 0.3 {
		t.Errorf("observer used %.2f s of CPU in 1 s while out of descriptors: spinning", used)
	}
	for _, c := range conns {
		c.Close()
	}
	body := waitScrape(t, p, 10*time.Second, "a scrape after descriptors are free", func(string) bool { return true })
	if v, _ := strconv.Atoi(sampleValue(body, "varta_io_errors_total")); v == 0 {
		t.Errorf("accept failures not counted")
	}
	if c := strings.Count(stderr.String(), "cannot accept connections"); c != 1 {
		t.Errorf("accept failure logged %d times, want once:\n%s", c, stderr.String())
	}
}
