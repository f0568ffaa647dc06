// Package loadgen stands in for thousands of VLP agents from one process,
// kernel-attested: as root, SCM_CREDENTIALS may name any existing pid, so it
// spawns N sleeping children and sends VLP v0.2 frames on behalf of each. It
// also holds the bare receiver, a plain recvmsg(2) loop that measures what
// this machine can deliver to one reader, for comparison with the observer.
package loadgen

import (
	"encoding/binary"
	"hash/crc32"
)

// FrameSize is the length of a VLP v0.2 frame.
const FrameSize = 32

// Status values of the wire format.
const (
	StatusOK       = 0
	StatusDegraded = 1
	StatusCritical = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeFrame writes a VLP v0.2 frame (vlp-v0.2.md) into b: magic "VA",
// version 2, the fields little-endian and the CRC-32C of bytes 0..28.
func EncodeFrame(b *[FrameSize]byte, status uint8, pid uint32, timestamp, nonce uint64, payload uint32) {
	b[0], b[1], b[2], b[3] = 0x56, 0x41, 0x02, status
	binary.LittleEndian.PutUint32(b[4:8], pid)
	binary.LittleEndian.PutUint64(b[8:16], timestamp)
	binary.LittleEndian.PutUint64(b[16:24], nonce)
	binary.LittleEndian.PutUint32(b[24:28], payload)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[:28], castagnoli))
}
