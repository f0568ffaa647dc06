// Package vlpclient is the sending side of VLP v0.2 (the agent's half of
// the protocol): a frame encoder and a datagram client.
//
// It is written from vlp-v0.2.md independently of the observer's codec, so
// that tests which use it as the agent cross-check the observer rather than
// sharing its mistakes.
package vlpclient

import (
	"encoding/binary"
	"hash/crc32"
)

// FrameSize is the length of every VLP v0.2 frame.
const FrameSize = 32

// Status values of the wire format. 3 (stall) is reserved for the observer.
const (
	StatusOK       uint8 = 0
	StatusDegraded uint8 = 1
	StatusCritical uint8 = 2
)

// NonceTerminal, with StatusCritical, marks the one terminal frame an agent
// sends from its crash path. Ordinary nonces wrap from NonceTerminal-1 to 0.
const NonceTerminal = ^uint64(0)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode writes one VLP v0.2 frame into b: magic "VA", version 2, the
// fields little-endian and the CRC-32C of bytes 0..28. It does not check
// the values, so tests and load generators can send invalid frames.
func Encode(b *[FrameSize]byte, status uint8, pid uint32, timestamp, nonce uint64, payload uint32) {
	b[0], b[1], b[2], b[3] = 'V', 'A', 0x02, status
	binary.LittleEndian.PutUint32(b[4:8], pid)
	binary.LittleEndian.PutUint64(b[8:16], timestamp)
	binary.LittleEndian.PutUint64(b[16:24], nonce)
	binary.LittleEndian.PutUint32(b[24:28], payload)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[:28], castagnoli))
}

// NextNonce returns the nonce that follows n after step beats, wrapping as
// vlp-v0.2.md says: from NonceTerminal-1 to 0, so NonceTerminal, reserved
// for the terminal frame, is never produced. This is arithmetic modulo
// 2^64-1.
func NextNonce(n, step uint64) uint64 {
	const m = NonceTerminal // the modulus, 2^64-1
	step %= m
	s := n + step
	if s < n { // carried past 2^64, and 2^64 ≡ 1 (mod 2^64-1)
		s++
	}
	if s == m {
		s = 0
	}
	return s
}
