package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

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
