package main

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// One metrics connection's HTTP/1.1 exchange: the request head is read
// and parsed, the response written a bounded step at a time, then the
// connection lingers until the client closes.

// parseRequestLine splits the request line that starts head into its
// method and the path of its target (the query dropped); false when it is
// not METHOD SP TARGET SP HTTP/1.x.
//
// The target may be in origin-form ("/metrics") or, as RFC 9112 §3.2.2
// requires servers to accept, in absolute-form ("http://host/metrics"):
// the path is what follows the authority, "/" when nothing does. Only the
// http scheme (any case) is served; any other scheme ("https://" from a
// scraper configured for TLS by mistake) is not ours and is false, so a
// 400, as is an absolute target without a host.
func parseRequestLine(head []byte) (method, path []byte, ok bool) {
	line := head
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		line = head[:i]
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return nil, nil, false
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	if target[0] != '/' {
		abs, isHTTP := absolutePath(target)
		if !isHTTP {
			return nil, nil, false
		}
		target = abs
	}
	return method, target, true
}

// absolutePath returns the path of an absolute-form target whose query is
// already dropped: "http://host:9100/metrics" → "/metrics", "http://host"
// → "/". False for another scheme or an empty authority. A target that is
// no URI at all (no scheme before a ':') is returned as it is, to be
// answered 404 as before.
func absolutePath(target []byte) ([]byte, bool) {
	const scheme = "http://"
	if len(target) >= len(scheme) && bytes.EqualFold(target[:len(scheme)], []byte(scheme)) {
		rest := target[len(scheme):]
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			i = len(rest)
		}
		if i == 0 {
			return nil, false // "http:///metrics": no host
		}
		if i == len(rest) {
			return rootPath, true
		}
		return rest[i:], true
	}
	if hasScheme(target) {
		return nil, false
	}
	return target, true
}

var rootPath = []byte("/")

// hasScheme reports whether target starts with a URI scheme and its ':'
// (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":").
func hasScheme(target []byte) bool {
	for i, c := range target {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return true
		default:
			return false
		}
	}
	return false
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

func (p *promServer) startWriting(c *promConn, now int64) {
	c.state = connWriting
	c.outOff = 0
	c.deadline = now + promWriteTimeout
	if err := p.env.poll.modify(c.fd, false, true); err != nil {
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
	if err := p.env.poll.modify(c.fd, true, false); err != nil {
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
