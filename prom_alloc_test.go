//go:build !race

package main

import (
	"strings"
	"testing"
)

// TestScrapeAllocatesNothing serves whole scrapes of 4096 agents through a
// real loopback connection: accept4, request parsing, rendering in slices,
// send, linger and close allocate nothing once the connection slot and
// its buffers exist.
func TestScrapeAllocatesNothing(t *testing.T) {
	o := newLoopObserver(t, 4096, 10_000)
	c := newScrapeClient(t, o, "GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n")
	var size int
	allocs := testing.AllocsPerRun(20, func() { size = c.scrape(t, o, nil) })
	if allocs != 0 {
		t.Fatalf("a scrape allocates %.1f times", allocs)
	}
	if size < 4096*5*30 {
		t.Fatalf("scrape of %d bytes is too small for 4096 agents", size)
	}
	for _, req := range []string{
		"GET / HTTP/1.1\r\n\r\n", "GET /nope HTTP/1.1\r\n\r\n", "POST /metrics HTTP/1.1\r\n\r\n",
		"HEAD /metrics HTTP/1.1\r\n\r\n", "garbage\r\n\r\n",
		"GET http://x/metrics?a=b HTTP/1.1\r\n\r\n", "GET HTTP://x HTTP/1.1\r\n\r\n",
		"GET https://x/metrics HTTP/1.1\r\n\r\n",
	} {
		c := newScrapeClient(t, o, req)
		if allocs := testing.AllocsPerRun(10, func() { c.scrape(t, o, nil) }); allocs != 0 {
			t.Errorf("%q allocates %.1f times", strings.TrimSpace(req), allocs)
		}
	}
}

// TestScrapeWithTokenAllocatesNothing covers the bearer-token comparison.
func TestScrapeWithTokenAllocatesNothing(t *testing.T) {
	o := newLoopObserver(t, 16, 10_000)
	o.prom.token = []byte("s3cret")
	for _, req := range []string{
		"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n",
	} {
		c := newScrapeClient(t, o, req)
		if allocs := testing.AllocsPerRun(10, func() { c.scrape(t, o, nil) }); allocs != 0 {
			t.Errorf("%q allocates %.1f times", req, allocs)
		}
	}
}
