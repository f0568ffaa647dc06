package main

import (
	"strconv"
	"strings"
)

// Listen addresses are parsed and printed here rather than with net/netip,
// whose interning machinery (package unique) costs a router's flash more
// than these few lines: the ARM build crosses a 64 KiB segment boundary.

// parseIPv4 parses dotted-decimal a.b.c.d.
func parseIPv4(s string) (ip [4]byte, ok bool) {
	part := 0
	for i := 0; i < 4; i++ {
		if i > 0 {
			if part >= len(s) || s[part] != '.' {
				return ip, false
			}
			part++
		}
		n, digits := 0, 0
		for part < len(s) && s[part] >= '0' && s[part] <= '9' && digits < 4 {
			n = n*10 + int(s[part]-'0')
			part++
			digits++
		}
		if digits == 0 || digits > 3 || n > 255 || (digits > 1 && s[part-digits] == '0') {
			return ip, false
		}
		ip[i] = byte(n)
	}
	return ip, part == len(s)
}

// parseIPv6 parses an IPv6 address in hex groups with at most one "::",
// the last 32 bits optionally as dotted IPv4 (RFC 4291 2.2, as in the
// IPv4-mapped ::ffff:192.168.1.1). Zones are not accepted (not useful to
// listen on).
func parseIPv6(s string) (ip [16]byte, ok bool) {
	var groups [8]uint16
	n, gap := 0, -1
	i := 0
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		gap, i = 0, 2
		if i == len(s) {
			return ip, true
		}
	}
	for i < len(s) {
		if n == 8 {
			return ip, false
		}
		if strings.IndexByte(s[i:], '.') >= 0 && strings.IndexByte(s[i:], ':') < 0 {
			// The dotted IPv4 tail: two groups, and the end.
			v4, ok := parseIPv4(s[i:])
			if !ok || n > 6 {
				return ip, false
			}
			groups[n], groups[n+1] = uint16(v4[0])<<8|uint16(v4[1]), uint16(v4[2])<<8|uint16(v4[3])
			n += 2
			break
		}
		v, digits := 0, 0
		for i < len(s) && digits < 5 {
			c := s[i]
			var d int
			switch {
			case c >= '0' && c <= '9':
				d = int(c - '0')
			case c >= 'a' && c <= 'f':
				d = int(c-'a') + 10
			case c >= 'A' && c <= 'F':
				d = int(c-'A') + 10
			default:
				d = -1
			}
			if d < 0 {
				break
			}
			v = v<<4 | d
			digits++
			i++
		}
		if digits == 0 || digits > 4 {
			return ip, false
		}
		groups[n] = uint16(v)
		n++
		if i == len(s) {
			break
		}
		if s[i] != ':' || i+1 == len(s) {
			return ip, false
		}
		i++
		if s[i] == ':' {
			if gap >= 0 {
				return ip, false
			}
			gap = n
			i++
			if i == len(s) {
				break
			}
		}
	}
	if gap < 0 && n != 8 || gap >= 0 && n == 8 {
		return ip, false
	}
	out := 0
	for g := 0; g < n; g++ {
		if g == gap {
			out += 8 - n
		}
		ip[2*out], ip[2*out+1] = byte(groups[g]>>8), byte(groups[g])
		out++
	}
	return ip, true
}

// isIPv4Mapped reports whether ip is ::ffff:a.b.c.d, an IPv4 address
// written as IPv6 (RFC 4291 2.5.5.2).
func isIPv4Mapped(ip [16]byte) bool {
	return ip[10] == 0xff && ip[11] == 0xff && [10]byte(ip[:10]) == [10]byte{}
}

// listenAddr is a parsed --prom-addr: the IPv4 address ip4 unless v6.
type listenAddr struct {
	v6   bool
	ip4  [4]byte
	ip6  [16]byte
	port int
}

// parseListenAddr parses --prom-addr HOST:PORT. HOST is an IPv4 address,
// [IPv6], "localhost" (127.0.0.1) or empty (every address: IPv6 and,
// dual-stack, IPv4). Names are not looked up: the resolver (package net)
// added 0.33 MB to the linux/armv7 binary, and a listen address is a local
// fact the operator knows. An IPv4-mapped [::ffff:a.b.c.d] is the IPv4
// address a.b.c.d, bound as such: an AF_INET6 socket could bind it only
// with IPV6_V6ONLY off (Linux refuses it with EINVAL under
// net.ipv6.bindv6only=1, FreeBSD by default) and not at all on a kernel
// without IPv6, and it would carry only IPv4 traffic anyway.
//
// The command line checks --prom-addr with it, so that a bad address is a
// usage error (exit 2), and the listener binds what it returns.
func parseListenAddr(s string) (a listenAddr, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return a, errorf("%q is not HOST:PORT", s)
	}
	host, port := s[:i], s[i+1:]
	p, perr := strconv.ParseUint(port, 10, 16)
	if perr != nil {
		return a, errorf("%q has no valid port (0..65535)", s)
	}
	a.port = int(p)
	switch {
	case host == "":
		a.v6 = true
	case host == "localhost":
		a.ip4 = [4]byte{127, 0, 0, 1}
	case len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']':
		ip, ok := parseIPv6(host[1 : len(host)-1])
		if !ok {
			return a, errorf("%q is not an IPv6 address", host)
		}
		if isIPv4Mapped(ip) {
			a.ip4 = [4]byte(ip[12:])
		} else {
			a.v6, a.ip6 = true, ip
		}
	case strings.ContainsAny(host, "[]"):
		return a, errorf("%q has an unbalanced [ ]", s)
	case strings.IndexByte(host, ':') >= 0:
		return a, errorf("%q: write an IPv6 host as [addr]:port", s)
	default:
		ip, ok := parseIPv4(host)
		if !ok {
			return a, errorf("host %q is not an IP address (names are not resolved; use an address, [IPv6] or localhost)", host)
		}
		a.ip4 = ip
	}
	return a, nil
}

// formatIPv6 writes ip as RFC 5952 says: lower-case hex, the longest run
// of two or more zero groups (the first if tied) as "::".
func formatIPv6(ip [16]byte) string {
	bestStart, bestLen := -1, 1
	for g := 0; g < 8; {
		if ip[2*g] != 0 || ip[2*g+1] != 0 {
			g++
			continue
		}
		start := g
		for g < 8 && ip[2*g] == 0 && ip[2*g+1] == 0 {
			g++
		}
		if g-start > bestLen {
			bestStart, bestLen = start, g-start
		}
	}
	b := make([]byte, 0, 39)
	for g := 0; g < 8; g++ {
		if g == bestStart {
			b = append(b, ':', ':')
			g += bestLen - 1
			continue
		}
		if len(b) > 0 && b[len(b)-1] != ':' {
			b = append(b, ':')
		}
		b = strconv.AppendUint(b, uint64(ip[2*g])<<8|uint64(ip[2*g+1]), 16)
	}
	return string(b)
}

func formatIPv4(ip [4]byte) string {
	b := make([]byte, 0, 15)
	for i, v := range ip {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return string(b)
}
