package main

import (
	"encoding/binary"
	"hash/crc32"
)

// FrameSize is the only datagram length VLP v0.2 accepts.
const FrameSize = 32

// NonceTerminal is the nonce of the one terminal frame an agent may send,
// with status Critical, from its crash path.
const NonceTerminal = ^uint64(0)

const (
	vlpMagic0  = 0x56 // 'V'
	vlpMagic1  = 0x41 // 'A'
	vlpVersion = 0x02
)

// Status is the agent health carried by a frame. StatusStall is reserved
// for the observer: it is never valid on the wire.
type Status uint8

const (
	StatusOK       Status = 0
	StatusDegraded Status = 1
	StatusCritical Status = 2
	StatusStall    Status = 3
)

var statusNames = [...]string{"ok", "degraded", "critical", "stall"}

// String returns the name used in the event file: ok, degraded, critical, stall.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "invalid"
}

// Frame is a decoded VLP v0.2 heartbeat.
type Frame struct {
	Status    Status
	Pid       uint32
	Timestamp uint64
	Nonce     uint64
	Payload   uint32
}

// DecodeError names the first check of vlp-v0.2.md's decode order that a
// frame failed. The zero value means the frame is valid.
type DecodeError uint8

const (
	DecodeOK DecodeError = iota
	ErrBadMagic
	ErrBadVersion
	ErrBadCrc
	ErrBadStatus
	ErrStallOnWire
	ErrBadPid
	ErrBadTimestamp
	ErrBadNonce
	decodeErrorCount
)

var decodeErrorNames = [decodeErrorCount]string{
	"", "BadMagic", "BadVersion", "BadCrc", "BadStatus", "StallOnWire", "BadPid", "BadTimestamp", "BadNonce",
}

var decodeErrorKinds = [decodeErrorCount]string{
	"", "bad_magic", "bad_version", "bad_crc", "bad_status", "stall_on_wire", "bad_pid", "bad_timestamp", "bad_nonce",
}

// Error returns the spec's error name, e.g. "BadCrc".
func (e DecodeError) Error() string {
	if e < decodeErrorCount {
		return decodeErrorNames[e]
	}
	return "Unknown"
}

// Kind returns the metric label value, e.g. "bad_crc".
func (e DecodeError) Kind() string {
	if e < decodeErrorCount {
		return decodeErrorKinds[e]
	}
	return "unknown"
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DecodeFrame decodes one 32-byte frame, applying the checks in the
// normative order of vlp-v0.2.md so the first failure names the error.
// The caller has already rejected datagrams whose length is not FrameSize.
func DecodeFrame(b *[FrameSize]byte) (Frame, DecodeError) {
	if b[0] != vlpMagic0 || b[1] != vlpMagic1 {
		return Frame{}, ErrBadMagic
	}
	if b[2] != vlpVersion {
		return Frame{}, ErrBadVersion
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:32]) {
		return Frame{}, ErrBadCrc
	}
	f := Frame{
		Status:    Status(b[3]),
		Pid:       binary.LittleEndian.Uint32(b[4:8]),
		Timestamp: binary.LittleEndian.Uint64(b[8:16]),
		Nonce:     binary.LittleEndian.Uint64(b[16:24]),
		Payload:   binary.LittleEndian.Uint32(b[24:28]),
	}
	switch {
	case f.Status > StatusStall:
		return Frame{}, ErrBadStatus
	case f.Status == StatusStall:
		return Frame{}, ErrStallOnWire
	case f.Pid <= 1:
		return Frame{}, ErrBadPid
	case f.Timestamp == ^uint64(0):
		return Frame{}, ErrBadTimestamp
	case f.Nonce == NonceTerminal && f.Status != StatusCritical:
		return Frame{}, ErrBadNonce
	}
	return f, DecodeOK
}
