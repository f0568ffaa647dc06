package main

import (
	"strconv"
)

// Routing a parsed request to its response: /metrics (rendered while it
// is sent, promrender.go), the landing page, and the fixed error replies.

// respond routes a complete request head and starts the response.
func (p *promServer) respond(c *promConn, head []byte, now int64) {
	method, target, ok := parseRequestLine(head)
	if !ok {
		p.fixed(c, code400, "400 Bad Request", false, "bad request\n", now)
		return
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
