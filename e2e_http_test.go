package main

// End-to-end tests of the metrics endpoint's HTTP side (contract §6):
// routes and methods, the bearer token, the rate limit, and clients that
// hold connections, dribble, flood or exhaust descriptors.

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Contract §6, HTTP: GET and HEAD /metrics 200, / a page linking /metrics,
// other paths 404, other methods 405 with Allow, a request head over 8 KiB
// dropped unanswered; each counted.
func TestE2EHTTPRoutes(t *testing.T) {
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0"}})
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
	body := scrape(t, p, nil)
	if v := sampleValue(body, `varta_prom_requests_dropped_total{reason="too_large"}`); v != "1" {
		t.Errorf("too_large drops %q, want 1", v)
	}
	for code, want := range map[string]string{"404": "2", "405": "2"} {
		if v := sampleValue(body, `varta_prom_requests_total{code="`+code+`"}`); v != want {
			t.Errorf("responses with %s: %q, want %s", code, v, want)
		}
	}
}

// Contract §2 --prom-token-file and §6: a wrong or missing bearer token is
// a 401 that leaks nothing; a token file others can read fails the start
// (one line, exit 1).
func TestE2EBearerToken(t *testing.T) {
	dir := shortTempDir(t)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("\n  correct-horse \n"), 0o600)
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0", "--prom-token-file", tokenFile}})
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
	body := scrape(t, p, map[string]string{"Authorization": "Bearer correct-horse"})
	if v := sampleValue(body, `varta_prom_requests_total{code="401"}`); v != "4" {
		t.Errorf("401 count %q, want 4", v)
	}

	// A token file others can read: refuse to start, one line, exit 1.
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("tok"), 0o644)
	os.Chmod(loose, 0o644)
	code, stdout, stderr := runObserverToExit(t, "--socket", filepath.Join(dir, "s2.sock"), "--threshold-ms", "100",
		"--prom-addr", "127.0.0.1:0", "--prom-token-file", loose)
	out := stdout + stderr
	if code != 1 {
		t.Fatalf("group/world-readable token file: exit %d\n%s", code, out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], loose) {
		t.Fatalf("want one line naming %s, got:\n%s", loose, out)
	}
}

// Contract §2 --prom-addr: an IPv6 address is served, and printed as the
// first line on stdout.
func TestE2EIPv6Loopback(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		skipBecause(t, "no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "[::1]:0"}})
	if !strings.HasPrefix(p.promAddr, "[::1]:") {
		t.Fatalf("printed address %q", p.promAddr)
	}
	scrape(t, p, nil)
}

// Contract §2 --prom-rate-limit-per-sec and -burst: beyond the burst,
// connections are closed unserved and counted.
func TestE2ERateLimit(t *testing.T) {
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0",
		"--prom-rate-limit-per-sec", "1", "--prom-rate-limit-burst", "2"}})
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
	body := scrape(t, p, nil)
	if v := sampleValue(body, `varta_prom_requests_dropped_total{reason="rate_limited"}`); v != "3" {
		t.Errorf("rate_limited %q, want 3", v)
	}
}

// Contract §6, HTTP: connections are capped, and idle ones delay neither a
// stall nor a scrape.
//
// TestE2EIdleConnectionsDelayNothing holds 200 connections that never send
// a request: a stall is still surfaced on time and a scrape is still served.
func TestE2EIdleConnectionsDelayNothing(t *testing.T) {
	const thresholdMs = 100
	p := startObserver(t, observerOpts{args: []string{"--threshold-ms", strconv.Itoa(thresholdMs), "--prom-addr", "127.0.0.1:0"}})
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
	body := scrape(t, p, nil)
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

// Contract §6, HTTP: served from the loop without blocking it, whatever the
// clients do.
//
// TestHostileScrapers opens 1000 connections to the metrics port at once:
// idle ones, slowloris ones that dribble a header that never ends, ones
// that send a header over the 8 KiB limit, and ones that send binary
// garbage. Meanwhile an agent hangs and a scraper keeps scraping. The loop
// must stay responsive (the stall on time, every scrape served within 2 s),
// the server must hold at most promMaxConns connections and close every
// hostile one (none is left open after the read timeout), and the drops
// must be counted.
func TestHostileScrapers(t *testing.T) {
	const threshold = 300 * time.Millisecond
	o := startObserver(t, observerOpts{args: []string{"--threshold-ms", "300", "--prom-addr", "127.0.0.1:0"}})
	fdsBefore := observerFds(t, o)
	schedBefore := takeSchedSnapshot(o)
	healthyFrom := observerNow()
	healthy := startReportingAgent(t, o.socket, "--interval-ms", "20")

	const conns = 1000
	kinds := []string{"idle", "slowloris", "oversized", "garbage"}
	var (
		wg        sync.WaitGroup
		stop      = make(chan struct{})
		dialFails atomic.Int64
		closedBy  = map[string]*atomic.Int64{}
		answered  = map[string]*atomic.Int64{}
		leftOpen  atomic.Int64
	)
	for _, k := range kinds {
		closedBy[k], answered[k] = &atomic.Int64{}, &atomic.Int64{}
	}
	for i := 0; i < conns; i++ {
		kind := kinds[i%len(kinds)]
		if i%100 == 99 {
			// In waves of 100: all at once overflows the listen backlog,
			// and a connection the kernel completed but could not queue
			// never reaches the server (until a SYN-ACK retransmit, seconds
			// later), so the server cannot be held to closing it.
			time.Sleep(20 * time.Millisecond)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", o.promAddr, 3*time.Second)
			if err != nil {
				dialFails.Add(1)
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			switch kind {
			case "slowloris":
				go func() {
					io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
					for {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
						}
						if _, err := io.WriteString(c, "X-a: b\r\n"[:1+rng.IntN(8)]); err != nil {
							return
						}
					}
				}()
			case "oversized":
				var b strings.Builder
				b.WriteString("GET /metrics HTTP/1.1\r\n")
				for b.Len() < promMaxRequest+1024 {
					b.WriteString("X-Padding: " + strings.Repeat("a", 100) + "\r\n")
				}
				if i%8 == 3 {
					b.WriteString("\r\n") // complete, but too late
				}
				io.WriteString(c, b.String())
			case "garbage":
				b := make([]byte, 1+rng.IntN(2000))
				for j := range b {
					b[j] = byte(rng.Uint32())
				}
				if i%8 == 3 {
					b = append(b, "\r\n\r\n"...) // a head the parser must reject
				}
				c.Write(b)
			}
			// Wait for the server to answer or close; the read timeout
			// (promReadTimeout, 5 s) bounds how long it may take.
			c.SetReadDeadline(time.Now().Add(promReadTimeout*time.Nanosecond + 3*time.Second))
			resp, err := io.ReadAll(c)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				leftOpen.Add(1)
			case len(resp) > 0:
				answered[kind].Add(1)
				if !strings.HasPrefix(string(resp), "HTTP/1.1 4") {
					t.Errorf("%s connection got %q", kind, resp[:min(len(resp), 60)])
				}
			default:
				closedBy[kind].Add(1)
			}
		}(i)
	}

	// While the storm goes on: an agent hangs, and scrapes are served.
	hung := startAgent(t, o.socket, "--interval-ms", "10", "--hang-after", "5")
	var scrapes []time.Duration
	var failed []string
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		resp, err := rawHTTP(o.promAddr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
		took := time.Since(start)
		if took > 2*time.Second {
			t.Errorf("a scrape took %v to be served or closed during the storm", took)
		}
		_, body, _ := strings.Cut(resp, "\r\n\r\n")
		if err != nil || !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(body, "varta_prom_connections") {
			failed = append(failed, fmt.Sprintf("after %v: %q, %v", took, resp[:min(len(resp), 40)], err))
			continue
		}
		scrapes = append(scrapes, took)
		if n := metricValue(t, body, "varta_prom_connections"); n > promMaxConns {
			t.Errorf("%v metrics connections open, cap %d", n, promMaxConns)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range scrapes {
		if d > 2*time.Second {
			t.Errorf("a scrape took %v during the storm", d)
		}
	}
	// Under a connection flood a scraper's connection can be taken for an
	// idle one and evicted before its request arrives (the server evicts
	// the oldest connection still reading: the price of not letting idle
	// clients lock scrapers out). It is closed at once, and Prometheus
	// scrapes again at its next interval; most scrapes must be served.
	t.Logf("%d scrapes served during the storm, slowest %v; %d closed unserved: %q", len(scrapes), maxDuration(scrapes), len(failed), failed)
	if len(scrapes) == 0 || len(failed)*5 > len(scrapes) {
		t.Errorf("%d of %d scrapes were not served during the storm", len(failed), len(failed)+len(scrapes))
	}
	if fds := observerFds(t, o); fds > fdsBefore+promMaxConns+8 {
		t.Errorf("observer holds %d descriptors during the storm, %d before: connections are not capped", fds, fdsBefore)
	}
	evs := o.waitEvents(5*time.Second, "the hung agent's stall", func(evs []tsvEvent) bool {
		return countEvents(evs, "stall", hung.pid) == 1
	})
	slack := stallSlackSince(t, o, schedBefore)
	checkStallsOnTime(t, evs, hung.pid, threshold, slack)
	beatsSent, beatsDropped := healthy.stop(t)
	evs = o.waitEvents(5*time.Second, "every beat the healthy agent sent", func(evs []tsvEvent) bool {
		return countEvents(evs, "beat", healthy.pid) >= beatsSent
	})
	checkHealthyAgent(t, evs, healthy, beatsSent, beatsDropped, threshold, slack, healthyFrom, observerNow())

	wg.Wait() // every hostile connection answered, closed or timed out
	close(stop)
	var summary []string
	for _, k := range kinds {
		summary = append(summary, fmt.Sprintf("%s: %d closed, %d answered", k, closedBy[k].Load(), answered[k].Load()))
	}
	t.Logf("%d connections: %d failed to connect; %s; %d left open", conns, dialFails.Load(), strings.Join(summary, "; "), leftOpen.Load())
	if n := leftOpen.Load(); n != 0 {
		t.Errorf("%d hostile connections still open %v after the read timeout", n, promReadTimeout*time.Nanosecond+3*time.Second)
	}
	if n := answered["idle"].Load() + answered["slowloris"].Load(); n != 0 {
		t.Errorf("%d idle or slowloris connections got a response", n)
	}
	if n := answered["oversized"].Load(); n != 0 {
		t.Errorf("%d oversized requests got a response", n)
	}
	body := scrape(t, o, nil) // after the storm: served
	dropped := 0.0
	for _, r := range []string{"over_capacity", "evicted", "timeout", "too_large"} {
		v := metricValue(t, body, `varta_prom_requests_dropped_total{reason="`+r+`"}`)
		dropped += v
		t.Logf("dropped (%s): %v", r, v)
	}
	// Every connection either got a response or was dropped and counted;
	// the scrapes were all answered.
	if want := float64(conns - int(dialFails.Load()) - int(answered["garbage"].Load()) + len(failed)); dropped != want {
		t.Errorf("%v connections counted as dropped, want %v", dropped, want)
	}
	if n := metricValue(t, body, "varta_prom_connections"); n != 1 {
		t.Errorf("%v metrics connections open after the storm, want 1 (this scrape)", n)
	}
	if fds := observerFds(t, o); fds > fdsBefore+2 {
		t.Errorf("observer holds %d descriptors after the storm, %d before", fds, fdsBefore)
	}
}

func maxDuration(ds []time.Duration) (m time.Duration) {
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// observerFds counts the observer's open descriptors.
func observerFds(t *testing.T, o *observerProc) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", o.cmd.Process.Pid))
	if err != nil {
		skipBecause(t, "cannot list the observer's descriptors: %v", err)
	}
	return len(ents)
}

// Contract §6, HTTP: running out of descriptors neither spins the loop nor
// ends the service; it is counted (varta_io_errors_total) and logged once.
//
// TestE2EOutOfDescriptors runs the observer with a descriptor limit that
// idle connections exhaust: accept fails with EMFILE, and the loop must
// neither spin on the still-readable listener nor stop serving once
// descriptors are free again.
func TestE2EOutOfDescriptors(t *testing.T) {
	if !isLinux {
		t.Skip("reads /proc/PID/stat")
	}
	binaries(t)
	p := startObserver(t, observerOpts{
		argv0: []string{"/bin/sh", "-c", `ulimit -n 32 && exec "$0" "$@"`, observerBin},
		args:  []string{"--threshold-ms", "1000", "--prom-addr", "127.0.0.1:0"},
	})
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
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
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
	if c := strings.Count(p.stderr.String(), "cannot accept connections"); c != 1 {
		t.Errorf("accept failure logged %d times, want once:\n%s", c, p.stderr.String())
	}
}
