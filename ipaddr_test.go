package main

import (
	"math/rand/v2"
	"net/netip"
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
		"1:2:3:4:5:6:7:8:9", "1::2::3", ":1", "1:", "12345::", "g::", "::ffff", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", ""} {
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
