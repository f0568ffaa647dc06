package main

import (
	"bytes"
	"crypto/subtle"
	"os"
	"strconv"
	"unsafe"

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
	o       *observer
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
	written int // bytes written in this loop iteration; reset by fire

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

func newPromServer(o *observer) (*promServer, error) {
	p := &promServer{o: o, lfd: -1}
	if o.cfg.promTokenFile != "" {
		tok, err := readTokenFile(o.cfg.promTokenFile)
		if err != nil {
			return nil, err
		}
		p.token = tok
	}
	p.limiter.init(o.cfg.promRate, o.cfg.promBurst)
	if err := p.self.init(); err != nil {
		o.log.warn("process metrics unavailable", fStr("err", err.Error()))
	}
	if err := p.listen(o.cfg.promAddr); err != nil {
		return nil, errorf("--prom-addr %s: %v", o.cfg.promAddr, err)
	}
	if err := o.poll.add(p.lfd, true, false); err != nil {
		p.close()
		return nil, errorf("--prom-addr %s: %v", o.cfg.promAddr, err)
	}
	p.conns = make([]*promConn, 0, promMaxConns)
	return p, nil
}

// readTokenFile reads the bearer token. A file that group or others may
// read is refused: the token would protect nothing.
func readTokenFile(path string) ([]byte, error) {
	fd, err := openFile(path)
	if err != nil {
		return nil, errorf("--prom-token-file %s: %v", path, unwrapPathError(err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, errorf("--prom-token-file %s: %v", path, os.NewSyscallError("fstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errorf("--prom-token-file %s: not a regular file", path)
	}
	if perm := st.Mode & 0o777; perm&0o077 != 0 {
		return nil, errorf("--prom-token-file %s: mode %04o lets group or others read it; chmod 600 it", path, perm)
	}
	buf, err := readAll(fd, path, promTokenMaxBytes)
	if err != nil {
		return nil, errorf("--prom-token-file %s: %v", path, unwrapPathError(err))
	}
	n := len(buf)
	if n > promTokenMaxBytes {
		return nil, errorf("--prom-token-file %s: longer than %d bytes", path, promTokenMaxBytes)
	}
	tok := bytes.TrimSpace(buf[:n])
	if len(tok) == 0 {
		return nil, errorf("--prom-token-file %s: the file is empty", path)
	}
	for _, c := range tok {
		if c <= ' ' || c == 0x7f {
			return nil, errorf("--prom-token-file %s: the token holds whitespace or control characters", path)
		}
	}
	return bytes.Clone(tok), nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// resolveListenAddr turns HOST:PORT (parseListenAddr) into a socket address.
func resolveListenAddr(addr string) (family int, sa unix.Sockaddr, err error) {
	a, err := parseListenAddr(addr)
	if err != nil {
		return 0, nil, err
	}
	if a.v6 {
		return unix.AF_INET6, &unix.SockaddrInet6{Port: a.port, Addr: a.ip6}, nil
	}
	return unix.AF_INET, &unix.SockaddrInet4{Port: a.port, Addr: a.ip4}, nil
}

func (p *promServer) listen(addr string) error {
	family, sa, err := resolveListenAddr(addr)
	if err != nil {
		return err
	}
	fd, err := newSocket(family, unix.SOCK_STREAM)
	if err != nil && family == unix.AF_INET6 && addr[0] == ':' {
		// No IPv6 on this box: ":PORT" means every IPv4 address then.
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: sa.(*unix.SockaddrInet6).Port}
		fd, err = newSocket(family, unix.SOCK_STREAM)
	}
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	p.lfd = fd
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_REUSEADDR", err)
	}
	if s6, ok := sa.(*unix.SockaddrInet6); ok && s6.Addr == [16]byte{} {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err := unix.Bind(fd, sa); err != nil {
		if err == unix.EADDRINUSE {
			return errorf("address already in use")
		}
		return os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, promListenBacklog); err != nil {
		return os.NewSyscallError("listen", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		p.bound = formatIPv4(a.Addr) + ":" + strconv.Itoa(a.Port)
	case *unix.SockaddrInet6:
		p.bound = "[" + formatIPv6(a.Addr) + "]:" + strconv.Itoa(a.Port)
	}
	return nil
}

// addr is the bound address as host:port ([v6]:port), printed at start.
func (p *promServer) addr() string { return p.bound }

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

// acceptSome accepts up to promAcceptBudget connections. Over the rate
// limit, a connection is closed at once; at the connection cap, the oldest
// connection that has not finished sending its request makes room (so idle
// or half-open connections cannot lock out a scraper), and when every
// connection is busy with a response the new one is closed.
func (p *promServer) acceptSome(now int64) {
	for i := 0; i < promAcceptBudget; i++ {
		fd, e := acceptConn(p.lfd, &p.sa, &p.salen)
		if e != 0 {
			if e == unix.EINTR || e == unix.ECONNABORTED {
				continue
			}
			if retryable(e) && p.acceptFailing {
				// The queue of pending connections is drained: the episode
				// is over.
				p.acceptFailing = false
				p.o.log.info("metrics endpoint accepting connections again")
			}
			if !retryable(e) {
				// EMFILE, ENFILE, ENOBUFS: the pending connection stays
				// queued and the level-triggered listener would report it on
				// every wait. Stop listening for a while instead of spinning.
				p.o.stats.ioErrors++
				if !p.acceptFailing {
					p.acceptFailing = true
					p.o.log.error("metrics endpoint cannot accept connections; pausing accept for 100 ms at a time",
						fStr("err", os.NewSyscallError("accept4", e).Error()))
				}
				if p.o.poll.modify(p.lfd, false, false) == nil {
					p.acceptPausedUntil = now + promAcceptPause
				}
			}
			return
		}
		if !p.limiter.allow(&p.sa, now) {
			p.stats.dropped[dropRateLimited]++
			unix.Close(fd)
			continue
		}
		if p.nconns >= promMaxConns && !p.evictIdle() {
			p.stats.dropped[dropOverCapacity]++
			unix.Close(fd)
			continue
		}
		c := p.freeConn()
		if err := p.o.poll.add(fd, true, false); err != nil {
			unix.Close(fd)
			p.o.ioError(now, "register connection", err)
			continue
		}
		p.nextID++
		c.fd, c.state, c.id = fd, connReading, p.nextID
		c.deadline = now + promReadTimeout
		c.inLen, c.outOff, c.render = 0, 0, false
		c.out = c.out[:0]
		p.nconns++
	}
}

// evictIdle closes the oldest connection still reading its request.
func (p *promServer) evictIdle() bool {
	var oldest *promConn
	for _, c := range p.conns {
		if c.state == connReading && (oldest == nil || c.id < oldest.id) {
			oldest = c
		}
	}
	if oldest == nil {
		return false
	}
	p.stats.dropped[dropEvicted]++
	p.closeConn(oldest)
	return true
}

func (p *promServer) freeConn() *promConn {
	for _, c := range p.conns {
		if c.state == connFree {
			return c
		}
	}
	c := &promConn{fd: -1, out: make([]byte, 0, 2*promOutChunk)}
	p.conns = append(p.conns, c)
	return c
}

func (p *promServer) closeConn(c *promConn) {
	if c.state == connFree {
		return
	}
	p.o.poll.remove(c.fd)
	unix.Close(c.fd)
	c.fd, c.state = -1, connFree
	c.out = c.out[:0]
	p.nconns--
}

// readRequest reads what has arrived of the request head and answers once
// it is complete.
func (p *promServer) readRequest(c *promConn, now int64) {
	for {
		if c.inLen == len(c.in) {
			p.stats.dropped[dropTooLarge]++
			p.closeConn(c)
			return
		}
		n, err := unix.Read(c.fd, c.in[c.inLen:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if retryable(err) {
				return
			}
			p.closeConn(c) // ECONNRESET and the like: the client is gone
			return
		}
		if n == 0 {
			p.closeConn(c) // closed before sending a whole request
			return
		}
		from := max(c.inLen-3, 0)
		c.inLen += n
		if end := headEnd(c.in[from:c.inLen]); end >= 0 {
			p.respond(c, c.in[:from+end], now)
			return
		}
	}
}

// headEnd returns the offset of the blank line that ends a request head
// (CRLF CRLF, or bare LF LF as RFC 9112 tolerates), -1 if none yet.
func headEnd(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if b[i+1] == '\n' {
			return i + 2
		}
		if b[i+1] == '\r' && i+2 < len(b) && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// respond routes a complete request head and starts the response.
func (p *promServer) respond(c *promConn, head []byte, now int64) {
	line := head
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		line = head[:i]
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		p.fixed(c, code400, "400 Bad Request", false, "bad request\n", now)
		return
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	get, head1 := string(method) == "GET", string(method) == "HEAD"
	switch string(target) {
	case "/metrics":
		if !get && !head1 {
			p.fixed(c, code405, "405 Method Not Allowed", head1, "method not allowed\n", now)
			return
		}
		if p.token != nil && !p.authorized(head) {
			p.fixed(c, code401, "401 Unauthorized", head1, "unauthorized\n", now)
			return
		}
		p.stats.responses[code200]++
		c.out = append(c.out[:0], "HTTP/1.1 200 OK\r\nContent-Type: "+promContentType+"\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"...)
		c.render = get
		if get {
			p.startRender(&c.cur, now)
		}
		p.startWriting(c, now)
	case "/":
		if !get && !head1 {
			p.fixed(c, code405, "405 Method Not Allowed", head1, "method not allowed\n", now)
			return
		}
		p.stats.responses[code200]++
		p.fixedType(c, "200 OK", "text/html; charset=utf-8", head1, landingPage, now)
	default:
		p.fixed(c, code404, "404 Not Found", head1, "not found\n", now)
	}
}

const landingPage = `<!DOCTYPE html>
<html><head><title>varta-watch</title></head>
<body><h1>varta-watch</h1><p><a href="/metrics">Metrics</a></p></body></html>
`

func (p *promServer) fixed(c *promConn, code int, status string, headOnly bool, body string, now int64) {
	p.stats.responses[code]++
	p.fixedType(c, status, "text/plain; charset=utf-8", headOnly, body, now)
}

func (p *promServer) fixedType(c *promConn, status, ctype string, headOnly bool, body string, now int64) {
	b := append(c.out[:0], "HTTP/1.1 "...)
	b = append(b, status...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if status[0] == '4' && status[2] == '5' {
		b = append(b, "\r\nAllow: GET, HEAD"...)
	}
	if status[0] == '4' && status[2] == '1' {
		b = append(b, "\r\nWWW-Authenticate: Bearer realm=\"varta-watch\""...)
	}
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	if !headOnly {
		b = append(b, body...)
	}
	c.out = b
	c.render = false
	p.startWriting(c, now)
}

// authorized finds the Authorization header and compares its bearer token
// in constant time.
func (p *promServer) authorized(head []byte) bool {
	const name = "authorization:"
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			i = len(head)
		}
		l := bytes.TrimSuffix(head[:i], []byte{'\r'})
		head = head[min(i+1, len(head)):]
		if len(l) < len(name) || !asciiEqualFold(l[:len(name)], name) {
			continue
		}
		v := bytes.TrimSpace(l[len(name):])
		if len(v) < 7 || !asciiEqualFold(v[:7], "bearer ") {
			return false
		}
		v = bytes.TrimSpace(v[7:])
		return subtle.ConstantTimeCompare(v, p.token) == 1
	}
	return false
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func (p *promServer) startWriting(c *promConn, now int64) {
	c.state = connWriting
	c.outOff = 0
	c.deadline = now + promWriteTimeout
	if err := p.o.poll.modify(c.fd, false, true); err != nil {
		p.closeConn(c)
		return
	}
	p.writeStep(c, now)
}

// writeStep writes at most promWriteBudget bytes, rendering the next slice
// of the body whenever the previous one has been taken by the kernel.
//
// All connections together write at most promIterBudget bytes per loop
// iteration: past it a ready connection is left for the next iteration
// (the poller is level-triggered and reports it again), so that many
// busy scrapers cannot stretch one iteration and delay a stall.
func (p *promServer) writeStep(c *promConn, now int64) {
	budget := min(promWriteBudget, promIterBudget-p.written)
	for budget > 0 {
		if c.outOff == len(c.out) {
			c.out, c.outOff = c.out[:0], 0
			if !c.render || c.cur.done() {
				p.finish(c, now)
				return
			}
			c.out = p.renderStep(c.out, &c.cur, now)
			continue
		}
		n, e := sendConn(c.fd, c.out[c.outOff:])
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			if !retryable(e) {
				p.closeConn(c) // EPIPE, ECONNRESET: the reader went away
			}
			return
		}
		c.outOff += n
		budget -= n
		p.written += n
	}
}

// finish shuts the write side and lingers until the client closes, so
// that closing with unread request bytes cannot reset the connection
// before the client has read the response.
func (p *promServer) finish(c *promConn, now int64) {
	unix.Shutdown(c.fd, unix.SHUT_WR)
	c.state = connLinger
	c.deadline = now + promLingerTimeout
	if err := p.o.poll.modify(c.fd, true, false); err != nil {
		p.closeConn(c)
	}
}

func (p *promServer) linger(c *promConn) {
	for i := 0; i < 8; i++ {
		n, err := unix.Read(c.fd, c.in[:promDrainReadBytes])
		if err == unix.EINTR {
			continue
		}
		if err != nil && retryable(err) {
			return
		}
		if err != nil || n == 0 {
			break
		}
	}
	p.closeConn(c)
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

// fire drops connections past their deadline: a request that did not
// arrive in time or a response the client would not take in time.
func (p *promServer) fire(now int64) {
	p.written = 0
	if p.acceptPausedUntil != 0 && now >= p.acceptPausedUntil {
		p.acceptPausedUntil = 0
		if err := p.o.poll.modify(p.lfd, true, false); err != nil {
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
		if p.o.poll != nil {
			p.o.poll.remove(p.lfd)
		}
		unix.Close(p.lfd)
		p.lfd = -1
	}
}

// rateLimiter is a token bucket per client IP, kept as GCRA (a theoretical
// arrival time per IP) in a fixed table. When the table is full, the entry
// whose bucket refills first is reused: one that is already full loses
// nothing by being forgotten.
type rateLimiter struct {
	interval int64 // ns per token; 0 disables
	burst    int64
	table    []rateEntry
}

type rateEntry struct {
	ip   [16]byte
	tat  int64
	used bool
}

func (r *rateLimiter) init(perSec, burst int64) {
	if perSec <= 0 || burst <= 0 {
		return
	}
	r.interval = 1_000_000_000 / perSec
	if r.interval == 0 {
		r.interval = 1
	}
	r.burst = burst
	r.table = make([]rateEntry, promRateTableSize)
}

// allow takes one token for the peer in sa, false when its bucket is empty.
func (r *rateLimiter) allow(sa *unix.RawSockaddrAny, now int64) bool {
	if r.interval == 0 {
		return true
	}
	ip, ok := peerIP(sa)
	if !ok {
		return true
	}
	var e *rateEntry
	for i := range r.table {
		t := &r.table[i]
		if t.used && t.ip == ip {
			e = t
			break
		}
	}
	if e == nil {
		e = &r.table[0]
		for i := range r.table {
			t := &r.table[i]
			if !t.used {
				e = t
				break
			}
			if t.tat < e.tat {
				e = t
			}
		}
		*e = rateEntry{ip: ip, tat: now, used: true}
	}
	tat := max(e.tat, now) + r.interval
	if tat-now > r.burst*r.interval {
		return false
	}
	e.tat = tat
	return true
}

// peerIP returns the peer's address as 16 bytes (IPv4 mapped into IPv6).
func peerIP(sa *unix.RawSockaddrAny) (ip [16]byte, ok bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		ip[10], ip[11] = 0xff, 0xff
		copy(ip[12:], a.Addr[:])
		return ip, true
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return a.Addr, true
	}
	return ip, false
}
