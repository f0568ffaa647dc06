//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	o := startObserver(t, "--threshold-ms", "300", "--prom-addr", "127.0.0.1:0")
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
	body := httpGet(t, o.promAddr, "/metrics") // after the storm: served
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

// metricValue returns the value of one series in a metrics body.
func metricValue(t *testing.T, body, series string) float64 {
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

// observerFds counts the observer's open descriptors.
func observerFds(t *testing.T, o *observerProc) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", o.cmd.Process.Pid))
	if err != nil {
		t.Skipf("cannot list the observer's descriptors: %v", err)
	}
	return len(ents)
}
