package main

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// TestIPAddrAgainstNetip checks the small parsers and printers against
// package netip on fixed and random addresses.
func TestIPAddrAgainstNetip(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "127.0.0.1", "255.255.255.255", "1.2.3", "1.2.3.4.5", "256.1.1.1",
		"01.2.3.4", "1..2.3", "", "a.b.c.d", "1.2.3.4 "} {
		want, err := netip.ParseAddr(s)
		ip, ok := parseIPv4(s)
		if ok != (err == nil && want.Is4()) || ok && ip != want.As4() {
			t.Errorf("parseIPv4(%q) = %v %v, netip says %v %v", s, ip, ok, want, err)
		}
	}
	for _, s := range []string{"::", "::1", "1::", "fe80::1", "2001:db8::8:800:200c:417a", "1:2:3:4:5:6:7:8",
		"1:2:3:4:5:6:7:8:9", "1::2::3", ":1", "1:", "12345::", "g::", "::ffff", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "",
		"::ffff:127.0.0.1", "::FFFF:192.168.1.1", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4",
		"1::6:1.2.3.4", "::ffff:1.2.3", "::ffff:1.2.3.4.5", "::ffff:01.2.3.4", "::ffff:256.1.1.1", "::ffff:1.2.3.4:5",
		"1.2.3.4", "::ffff:.1.2.3", "1.2.3.4::"} {
		want, err := netip.ParseAddr(s)
		ip, ok := parseIPv6(s)
		if ok != (err == nil && want.Is6()) || ok && ip != want.As16() {
			t.Errorf("parseIPv6(%q) = %v %v, netip says %v %v", s, ip, ok, want, err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var b [16]byte
		for j := range b {
			if rng.IntN(3) > 0 { // plenty of zero groups
				b[j] = byte(rng.IntN(256))
			}
		}
		a := netip.AddrFrom16(b)
		if a.Is4In6() {
			continue // netip prints these as ::ffff:1.2.3.4
		}
		if got := formatIPv6(b); got != a.String() {
			t.Fatalf("formatIPv6(%v) = %q, netip %q", b, got, a.String())
		}
		if back, ok := parseIPv6(a.String()); !ok || back != b {
			t.Fatalf("parseIPv6(%q) = %v %v", a.String(), back, ok)
		}
		v4 := [4]byte{b[0], b[1], b[2], b[3]}
		if got := formatIPv4(v4); got != netip.AddrFrom4(v4).String() {
			t.Fatalf("formatIPv4(%v) = %q", v4, got)
		}
	}
}

// TestParseListenAddr checks what --prom-addr accepts and what each
// accepted address binds: an IPv4-mapped IPv6 address binds as IPv4.
func TestParseListenAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want listenAddr
	}{
		{"127.0.0.1:9100", listenAddr{ip4: [4]byte{127, 0, 0, 1}, port: 9100}},
		{"localhost:0", listenAddr{ip4: [4]byte{127, 0, 0, 1}}},
		{"0.0.0.0:65535", listenAddr{port: 65535}},
		{":9100", listenAddr{v6: true, port: 9100}},
		{"[::1]:1", listenAddr{v6: true, ip6: [16]byte{15: 1}, port: 1}},
		{"[::]:2", listenAddr{v6: true, port: 2}},
		{"[::ffff:127.0.0.1]:0", listenAddr{ip4: [4]byte{127, 0, 0, 1}}},
		{"[::ffff:7f00:1]:3", listenAddr{ip4: [4]byte{127, 0, 0, 1}, port: 3}},
		{"[::FFFF:192.168.1.1]:9100", listenAddr{ip4: [4]byte{192, 168, 1, 1}, port: 9100}},
		{"[::1.2.3.4]:4", listenAddr{v6: true, ip6: [16]byte{12: 1, 13: 2, 14: 3, 15: 4}, port: 4}}, // not mapped
	} {
		got, err := parseListenAddr(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseListenAddr(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "9100", "router1:9100", "router1.example.net:9100", "localhost", "127.0.0.1", "127.0.0.1:",
		"127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1:http", "::1:9100", "[::1]", "[::1:9100",
		"::1]:9100", "[[::1]]:9100", "[127.0.0.1]:9100", "[::ffff:1.2.3]:0", "[fe80::1%eth0]:9100", "1.2.3.4.5:1",
		" 127.0.0.1:1", "[]:1", "[router1]:9100",
	} {
		if got, err := parseListenAddr(in); err == nil {
			t.Errorf("parseListenAddr(%q) = %+v, want an error", in, got)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("parseListenAddr(%q): error spans lines: %q", in, err)
		}
	}
}
