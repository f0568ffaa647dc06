package main

import "strconv"

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

// parseIPv6 parses an IPv6 address in hex groups with at most one "::".
// Zones and embedded IPv4 are not accepted (not useful to listen on).
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
