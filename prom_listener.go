package main

import (
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The metrics endpoint's listener: the listen address, the non-blocking
// listening socket, and accepting connections into the fixed set.

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

// listenTCP returns a non-blocking listening socket bound to addr and the
// address it is bound to; on an error nothing is left open.
func listenTCP(addr string) (fd int, bound string, err error) {
	family, sa, err := resolveListenAddr(addr)
	if err != nil {
		return -1, "", err
	}
	fd, err = newSocket(family, unix.SOCK_STREAM)
	if err != nil && family == unix.AF_INET6 && addr[0] == ':' {
		// No IPv6 on this box: ":PORT" means every IPv4 address then.
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: sa.(*unix.SockaddrInet6).Port}
		fd, err = newSocket(family, unix.SOCK_STREAM)
	}
	if err != nil {
		return -1, "", os.NewSyscallError("socket", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fd, "", os.NewSyscallError("setsockopt SO_REUSEADDR", err)
	}
	if s6, ok := sa.(*unix.SockaddrInet6); ok && s6.Addr == [16]byte{} {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err = unix.Bind(fd, sa); err != nil {
		if err == unix.EADDRINUSE {
			return fd, "", errorf("address already in use")
		}
		return fd, "", os.NewSyscallError("bind", err)
	}
	if err = unix.Listen(fd, promListenBacklog); err != nil {
		return fd, "", os.NewSyscallError("listen", err)
	}
	if bound, err = localAddr(fd); err != nil {
		return fd, "", os.NewSyscallError("getsockname", err)
	}
	return fd, bound, nil
}

// localAddr wraps getsockname(2) and returns the IPv4 or IPv6 address as
// host:port ([v6]:port). It is issued directly because unix.Getsockname
// decodes every address family x/sys knows: linking that decoder cost
// 25 KB of the ARM binary (TestCrossArtifacts holds it to 2.0 MB).
func localAddr(fd int) (string, error) {
	var raw unix.RawSockaddrAny
	salen := uint32(unix.SizeofSockaddrAny)
	if _, _, e := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&raw)),
		uintptr(unsafe.Pointer(&salen))); e != 0 {
		return "", e
	}
	switch raw.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(&raw))
		return formatIPv4(a.Addr) + ":" + strconv.Itoa(networkPort(&a.Port)), nil
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(&raw))
		return "[" + formatIPv6(a.Addr) + "]:" + strconv.Itoa(networkPort(&a.Port)), nil
	}
	return "", nil
}

// networkPort reads a sockaddr's port, which is in network byte order.
func networkPort(p *uint16) int {
	b := (*[2]byte)(unsafe.Pointer(p))
	return int(b[0])<<8 | int(b[1])
}

// addr is the bound address as host:port ([v6]:port), printed at start.
func (p *promServer) addr() string { return p.bound }

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
				p.env.log.info("metrics endpoint accepting connections again")
			}
			if !retryable(e) {
				// EMFILE, ENFILE, ENOBUFS: the pending connection stays
				// queued and the level-triggered listener would report it on
				// every wait. Stop listening for a while instead of spinning.
				p.env.stats.ioErrors++
				if !p.acceptFailing {
					p.acceptFailing = true
					p.env.log.error("metrics endpoint cannot accept connections; pausing accept for 100 ms at a time",
						fStr("err", os.NewSyscallError("accept4", e).Error()))
				}
				if p.env.poll.modify(p.lfd, false, false) == nil {
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
		if err := p.env.poll.add(fd, true, false); err != nil {
			unix.Close(fd)
			p.env.ioError(now, "register connection", err)
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
	p.env.poll.remove(c.fd)
	unix.Close(c.fd)
	c.fd, c.state = -1, connFree
	c.out = c.out[:0]
	p.nconns--
}
