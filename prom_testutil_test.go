package main

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const isLinux = runtime.GOOS == "linux"

func unsafePtr[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }

func fmtSscan(s string, v any) (int, error) { return fmt.Sscan(s, v) }

// newLoopObserver builds a real observer (VLP socket, poller, metrics
// listener on a free loopback port) with capacity agents already tracked,
// as if each had beaten once: enough to drive scrapes in-process.
func newLoopObserver(tb testing.TB, capacity int, thresholdMs int64) *observer {
	tb.Helper()
	cfg := defaultConfig()
	cfg.socket = filepath.Join(shortTempDir(tb), "s.sock")
	cfg.thresholdMs = thresholdMs
	cfg.trackerCapacity = capacity
	cfg.promAddr = "127.0.0.1:0"
	o, err := newObserver(cfg, quietLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(o.closeAll)
	now := monoNow()
	for i := 0; i < capacity; i++ {
		s := o.tr.insert(uint32(100_000+i), now)
		sl := &o.tr.slots[s]
		sl.beats, sl.nonce, sl.status = uint64(1000+i), uint64(1000+i), Status(i%3)
		sl.commLen = uint8(copy(sl.comm[:], fmt.Sprintf("agent-%d", i)))
	}
	return o
}

// scrapeClient is a blocking-connect, non-blocking-read loopback client
// whose buffers live in the struct, so a scrape through it allocates
// nothing on the client side either.
type scrapeClient struct {
	sa  unix.SockaddrInet4
	buf [64 << 10]byte
	req []byte
}

func newScrapeClient(tb testing.TB, o *observer, req string) *scrapeClient {
	tb.Helper()
	host, port, err := net.SplitHostPort(o.prom.addr())
	if err != nil {
		tb.Fatal(err)
	}
	c := &scrapeClient{req: []byte(req)}
	copy(c.sa.Addr[:], net.ParseIP(host).To4())
	c.sa.Port, _ = strconv.Atoi(port)
	return c
}

// scrape runs one request through the server by calling its handlers
// directly (as the loop would on readiness), reading the response as it
// comes. onStep, if set, runs after every server step. It returns the
// response size in bytes.
func (c *scrapeClient) scrape(tb testing.TB, o *observer, onStep func()) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.Connect(fd, &c.sa); err != nil {
		tb.Fatal(err)
	}
	if _, err := unix.Write(fd, c.req); err != nil {
		tb.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	p := o.prom
	total := 0
	step := func() {
		now := monoNow()
		p.handle(pollEvent{fd: p.lfd, readable: true}, now)
		for _, pc := range p.conns {
			if pc.state != connFree {
				p.handle(pollEvent{fd: pc.fd, readable: true, writable: true}, now)
			}
		}
		p.fire(now) // the end of a loop iteration: deadlines
		p.newTurn() // and the next one begins with a fresh write budget
		if onStep != nil {
			onStep()
		}
	}
	for {
		step()
		n, err := unix.Read(fd, c.buf[:])
		if n > 0 {
			total += n
			continue
		}
		if err == nil {
			break // EOF: the response is complete
		}
		if !retryable(err) {
			tb.Fatal(err)
		}
	}
	unix.Close(fd)
	for i := 0; p.nconns > 0; i++ {
		if i > 1_000_000 {
			tb.Fatal("server never closed the connection")
		}
		step()
	}
	return total
}
