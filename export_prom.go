package main

import (
	"golang.org/x/sys/unix"
)

// promServer serves the Prometheus endpoint from the event loop: a
// non-blocking listener and up to promMaxConns connections, each advanced a
// bounded step when the poller reports it ready. No goroutine, no net/http:
// a scrape is rendered in slices of promOutChunk bytes, each written before
// the next is rendered, and the loop drains the VLP socket between steps
// (Linux queues only net.unix.max_dgram_qlen datagrams, 10 by default), so
// a big body or a slow reader never delays a frame or a stall.
//
// Every response ends with Connection: close. The /metrics body has no
// Content-Length (it is rendered while it is sent); the end of the
// connection ends it, as HTTP/1.1 allows (RFC 9112 §6.3).
type promServer struct {
	env     partEnv
	view    metricsView
	lfd     int
	bound   string
	token   []byte
	conns   []*promConn // grows to the high-water mark, then reused
	nconns  int
	nextID  uint64
	sa      unix.RawSockaddrAny
	salen   uint32
	limiter rateLimiter
	self    selfProc
	stats   promStats
	written int // bytes written in this loop iteration; reset by newTurn

	acceptPausedUntil int64 // listener interest off until then (EMFILE), 0 when listening
	acceptFailing     bool  // inside an accept-error episode (logged once)
}

const (
	promMaxConns       = 64        // concurrent connections; beyond, idle ones are evicted or the new one is closed
	promMaxRequest     = 8 << 10   // a request head longer than this is dropped
	promReadTimeout    = 5e9       // ns: the whole request head must arrive within
	promWriteTimeout   = 30e9      // ns: the whole response must be taken within
	promLingerTimeout  = 2e9       // ns: after the response, wait this long for the client to close
	promOutChunk       = 16 << 10  // render this much, write it, render the next
	promWriteBudget    = 32 << 10  // most bytes one connection writes per loop step
	promIterBudget     = 128 << 10 // most bytes all connections together write per loop iteration
	promAcceptBudget   = 32        // connections accepted per loop step
	promAcceptPause    = 100e6     // ns: listener paused after accept fails for lack of descriptors
	promListenBacklog  = 128       // listen(2) backlog
	promRateTableSize  = 256       // client IPs remembered by the rate limiter
	promContentType    = "text/plain; version=0.0.4; charset=utf-8"
	promTokenMaxBytes  = 4096    // a longer token file is refused
	promDrainReadBytes = 1 << 10 // read size while lingering
)

// Response codes counted in varta_prom_requests_total{code}.
const (
	code200 = iota
	code400
	code401
	code404
	code405
	codeCount
)

var codeLabels = [codeCount]string{"200", "400", "401", "404", "405"}

// Reasons counted in varta_prom_requests_dropped_total{reason}: connections
// closed without a response.
const (
	dropRateLimited = iota
	dropOverCapacity
	dropEvicted
	dropTimeout
	dropTooLarge
	dropReasonCount
)

var dropLabels = [dropReasonCount]string{"rate_limited", "over_capacity", "evicted", "timeout", "too_large"}

type promStats struct {
	responses [codeCount]uint64
	dropped   [dropReasonCount]uint64
}

type connState uint8

const (
	connFree    connState = iota
	connReading           // waiting for the request head
	connWriting           // sending the response
	connLinger            // response sent, write side shut: waiting for the client to close
)

// promConn is one HTTP connection. Its buffers live as long as the server,
// so serving a scrape allocates nothing once every slot has been used.
type promConn struct {
	fd       int
	state    connState
	id       uint64 // accept order: the oldest idle reader is evicted first
	deadline int64
	inLen    int
	in       [promMaxRequest]byte
	out      []byte
	outOff   int
	render   bool // the body is rendered from cur as it is sent
	cur      renderCursor
}

// metricsView is what a scrape reads of the observer, besides the
// counters in partEnv.stats: the tracker (read only), the start time and
// the socket's queue limit.
type metricsView struct {
	tr          *tracker
	startWallNs int64  // wall-clock Unix ns at start
	queueLen    uint64 // datagrams the kernel queues on the VLP socket, 0 unknown
	noPidSeries bool   // --prom-pid-series off: the per-pid families are left out
	agents      *agentMetrics
}

// newPromServer listens on cfg.promAddr; a scrape renders view and
// env.stats.
func newPromServer(cfg *config, env partEnv, view metricsView) (*promServer, error) {
	p := &promServer{env: env, view: view, lfd: -1}
	if cfg.promTokenFile != "" {
		tok, err := readTokenFile(cfg.promTokenFile)
		if err != nil {
			return nil, err
		}
		p.token = tok
	}
	p.limiter.init(cfg.promRate, cfg.promBurst)
	if err := p.self.init(); err != nil {
		env.log.warn("process metrics unavailable", fStr("err", err.Error()))
	}
	p.conns = make([]*promConn, 0, promMaxConns)
	fd, bound, err := listenOn(cfg.promAddr, env.poll)
	if err != nil {
		return nil, err
	}
	p.lfd, p.bound = fd, bound
	return p, nil
}

// listenOn is listenTCP with the listener registered with poll; its errors
// name the address.
func listenOn(addr string, poll *poller) (int, string, error) {
	fd, bound, err := listenTCP(addr)
	if err == nil {
		if err = poll.add(fd, true, false); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return -1, "", errorf("--prom-addr %s: %v", addr, err)
	}
	return fd, bound, nil
}

// relisten makes fd, bound to bound, the listener in place of the one
// before, which is closed with every connection it accepted; the counters
// and the rate limiter's memory stay.
func (p *promServer) relisten(fd int, bound string) {
	p.close()
	p.lfd, p.bound = fd, bound
	p.acceptPausedUntil, p.acceptFailing = 0, false
}

// setLimit replaces the rate limit (a reload): every bucket starts full.
func (p *promServer) setLimit(perSec, burst int64) {
	p.limiter = rateLimiter{}
	p.limiter.init(perSec, burst)
}

// writing reports whether a response is being sent: the loop then does not
// pause to let beats gather (coalesce.go), or a scrape of 4096 agents,
// written a step per turn, would take a pause per step.
func (p *promServer) writing() bool {
	if p == nil {
		return false
	}
	for _, c := range p.conns {
		if c.state == connWriting {
			return true
		}
	}
	return false
}

// owns reports whether fd is the listener or one of its connections.
func (p *promServer) owns(fd int) bool {
	return fd == p.lfd || p.connOf(fd) != nil
}

func (p *promServer) connOf(fd int) *promConn {
	for _, c := range p.conns {
		if c.state != connFree && c.fd == fd {
			return c
		}
	}
	return nil
}

// handle advances the listener or one connection by one bounded step.
func (p *promServer) handle(ev pollEvent, now int64) {
	if ev.fd == p.lfd {
		p.acceptSome(now)
		return
	}
	c := p.connOf(ev.fd)
	if c == nil {
		return
	}
	switch c.state {
	case connReading:
		p.readRequest(c, now)
	case connWriting:
		p.writeStep(c, now)
	case connLinger:
		p.linger(c)
	}
}

// nextDeadline is the earliest connection deadline, 0 when none.
func (p *promServer) nextDeadline() int64 {
	next := p.acceptPausedUntil
	for _, c := range p.conns {
		if c.state != connFree && (next == 0 || c.deadline < next) {
			next = c.deadline
		}
	}
	return next
}

// newTurn starts a loop iteration: all connections together may write
// promIterBudget bytes again. Only the loop calls it.
func (p *promServer) newTurn() {
	if p != nil {
		p.written = 0
	}
}

// fire drops connections past their deadline: a request that did not
// arrive in time or a response the client would not take in time.
func (p *promServer) fire(now int64) {
	if p.acceptPausedUntil != 0 && now >= p.acceptPausedUntil {
		p.acceptPausedUntil = 0
		if err := p.env.poll.modify(p.lfd, true, false); err != nil {
			p.acceptPausedUntil = now + promAcceptPause
		}
	}
	for _, c := range p.conns {
		if c.state == connFree || c.deadline > now {
			continue
		}
		if c.state != connLinger {
			p.stats.dropped[dropTimeout]++
		}
		p.closeConn(c)
	}
}

func (p *promServer) close() {
	for _, c := range p.conns {
		p.closeConn(c)
	}
	if p.lfd >= 0 {
		if p.env.poll != nil {
			p.env.poll.remove(p.lfd)
		}
		unix.Close(p.lfd)
		p.lfd = -1
	}
}
