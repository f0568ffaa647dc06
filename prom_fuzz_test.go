package main

import (
	"bytes"
	"net"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzToken is the bearer token of the guarded server in FuzzHTTPRequest.
const fuzzToken = "s3cret-T0ken"

// FuzzHTTPRequest sends arbitrary bytes as one HTTP request over a real
// loopback connection to the metrics server of an in-process observer,
// driving the server's handlers as the loop would, once to an open server
// and once to one that requires a bearer token. Whatever the bytes:
//
//   - nothing panics, and the connection is closed by the server with its
//     slot freed (no connection outlives its request);
//   - a head that does not end within promMaxRequest bytes gets no
//     response; otherwise the response is a well-formed HTTP/1.1 status
//     line with one of the codes the contract names, then headers with
//     Connection: close;
//   - the guarded server serves metrics only to a request that carries
//     the token in an Authorization header.
//
// Its seed corpus lives in testdata/fuzz/FuzzHTTPRequest.
func FuzzHTTPRequest(f *testing.F) {
	open := newLoopObserver(f, 2, 1000)
	guarded := newLoopObserver(f, 2, 1000)
	guarded.prom.token = []byte(fuzzToken)
	f.Add([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + fuzzToken + "\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/1.0\n\n"))
	f.Add([]byte("GET http://x:9100/metrics?a HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, req []byte) {
		for _, o := range []*observer{open, guarded} {
			resp := fuzzExchange(t, o, req)
			checkHTTPResponse(t, o, req, resp)
		}
	})
}

// fuzzExchange connects, sends req, half-closes, and steps the server until
// it closes the connection; it returns everything the server sent.
func fuzzExchange(t *testing.T, o *observer, req []byte) []byte {
	p := o.prom
	host, port, _ := net.SplitHostPort(p.addr())
	var sa unix.SockaddrInet4
	copy(sa.Addr[:], net.ParseIP(host).To4())
	sa.Port, _ = strconv.Atoi(port)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &sa); err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	// Start clean even if an earlier input failed half way.
	for _, c := range p.conns {
		p.closeConn(c)
	}
	step := func() { // one loop iteration, as far as the server sees it
		now := monoNow()
		p.handle(pollEvent{fd: p.lfd, readable: true}, now)
		for _, c := range p.conns {
			if c.state != connFree {
				p.handle(pollEvent{fd: c.fd, readable: true, writable: true}, now)
			}
		}
		p.newTurn() // the loop's next iteration: the write budget is reset
		p.fire(now) // enforces deadlines
	}
	sent, shut := 0, false
	var resp []byte
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		if i > 100_000 {
			t.Fatalf("no end to the exchange of %q: %d bytes sent, %d received", req, sent, len(resp))
		}
		if sent < len(req) {
			n, err := unix.Write(fd, req[sent:])
			if n > 0 {
				sent += n
			}
			if err != nil && !retryable(err) {
				sent = len(req) // reset by the server: it has had enough
			}
		}
		if sent == len(req) && !shut {
			unix.Shutdown(fd, unix.SHUT_WR)
			shut = true
		}
		step()
		n, err := unix.Read(fd, buf)
		if n > 0 {
			resp = append(resp, buf[:n]...)
			continue
		}
		if err == nil || (err != nil && !retryable(err)) {
			break // EOF or reset: the server is done with us
		}
	}
	for i := 0; p.nconns > 0; i++ {
		if i > 100_000 {
			var states []string
			for _, c := range p.conns {
				if c.state != connFree {
					states = append(states, strconv.Itoa(int(c.state))+"/"+strconv.Itoa(c.inLen)+"/"+strconv.FormatUint(c.id, 10))
				}
			}
			t.Fatalf("server kept %d connections after the client went (state/inLen/id: %v; this exchange: %d of %d bytes sent, %d received)", p.nconns, states, sent, len(req), len(resp))
		}
		step()
	}
	return resp
}

var allowedCodes = map[string]bool{"200": true, "400": true, "401": true, "404": true, "405": true}

func checkHTTPResponse(t *testing.T, o *observer, req, resp []byte) {
	t.Helper()
	end := refHeadEnd(req)
	if end < 0 || end > promMaxRequest {
		if len(resp) != 0 {
			t.Fatalf("request %q has no head within %d bytes, yet got %q", trim(req), promMaxRequest, trim(resp))
		}
		return
	}
	if len(resp) == 0 {
		t.Fatalf("complete request %q got no response", trim(req))
	}
	head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("response %q has no end of head", trim(resp))
	}
	if len(head) < 12 || string(head[:9]) != "HTTP/1.1 " || !allowedCodes[string(head[9:12])] {
		t.Fatalf("response %q: bad status line", trim(resp))
	}
	if !bytes.Contains(head, []byte("\r\nConnection: close")) {
		t.Fatalf("response %q lacks Connection: close", trim(resp))
	}
	if o.prom.token != nil && string(head[9:12]) == "200" && bytes.Contains(body, []byte("varta_build_info")) &&
		!carriesToken(req[:end]) {
		t.Fatalf("guarded server served metrics to %q, which carries no token", trim(req))
	}
}

// carriesToken reports whether a request head has an Authorization header
// "Bearer <fuzzToken>" (scheme case-insensitive, RFC 6750: 1*SP between
// scheme and token, which must match exactly).
func carriesToken(head []byte) bool {
	for _, line := range bytes.Split(head, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(name, []byte("authorization")) {
			continue
		}
		value = bytes.TrimSpace(value)
		if len(value) > 7 && bytes.EqualFold(value[:6], []byte("bearer")) && (value[6] == ' ' || value[6] == '\t') &&
			string(bytes.TrimSpace(value[6:])) == fuzzToken {
			return true
		}
	}
	return false
}

// refHeadEnd is where a request head ends (after its first blank line,
// CRLF CRLF or the bare LF LF RFC 9112 tolerates), -1 when it does not.
// Written apart from the server's headEnd so as not to share its mistakes.
func refHeadEnd(b []byte) int {
	end := -1
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		end = i + 2
	}
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (end < 0 || i+3 < end) {
		end = i + 3
	}
	return end
}

func trim(b []byte) []byte { return b[:min(len(b), 300)] }
