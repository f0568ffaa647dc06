package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
)

// EncodeFrame writes f in wire order with its CRC-32C trailer, as an agent
// does (the observer only decodes). It does not validate f: tests use it
// to build frames that must fail decoding.
func EncodeFrame(b *[FrameSize]byte, f Frame) {
	b[0], b[1], b[2], b[3] = vlpMagic0, vlpMagic1, vlpVersion, byte(f.Status)
	binary.LittleEndian.PutUint32(b[4:8], f.Pid)
	binary.LittleEndian.PutUint64(b[8:16], f.Timestamp)
	binary.LittleEndian.PutUint64(b[16:24], f.Nonce)
	binary.LittleEndian.PutUint32(b[24:28], f.Payload)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[:28], castagnoli))
}

// The conformance table of vlp-v0.2.md. Expected frames are built by a
// spec-literal builder (wire) and checked by a spec-literal decoder
// (specDecode), both written here independently of vlp.go, so a mistake in
// the codec cannot hide behind the same mistake in the test.

const (
	maxU32 = ^uint32(0)
	maxU64 = ^uint64(0)
)

// crc32cBitwise computes CRC-32C straight from the parameters in
// vlp-v0.2.md (reflected polynomial 0x82F63B78, init and final XOR
// 0xFFFFFFFF), without hash/crc32's tables.
func crc32cBitwise(p []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range p {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82F63B78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// wire lays out a frame byte by byte as the spec's table says, including
// frames no correct encoder would produce.
type wire struct {
	magic   [2]byte
	version byte
	status  byte
	pid     uint32
	ts      uint64
	nonce   uint64
	payload uint32

	crcXor       uint32 // XORed into the correct CRC: non-zero corrupts the trailer
	crcBigEndian bool   // store the trailer in the wrong byte order
}

// validWire is the first worked frame: Ok, pid 2, timestamp 0, nonce 1.
func validWire() wire {
	return wire{magic: [2]byte{0x56, 0x41}, version: 0x02, status: 0, pid: 2, ts: 0, nonce: 1}
}

func wireOf(f Frame) wire {
	w := validWire()
	w.status, w.pid, w.ts, w.nonce, w.payload = byte(f.Status), f.Pid, f.Timestamp, f.Nonce, f.Payload
	return w
}

func (w wire) bytes() [FrameSize]byte {
	var b [FrameSize]byte
	b[0], b[1], b[2], b[3] = w.magic[0], w.magic[1], w.version, w.status
	binary.LittleEndian.PutUint32(b[4:8], w.pid)
	binary.LittleEndian.PutUint64(b[8:16], w.ts)
	binary.LittleEndian.PutUint64(b[16:24], w.nonce)
	binary.LittleEndian.PutUint32(b[24:28], w.payload)
	crc := crc32cBitwise(b[:28]) ^ w.crcXor
	if w.crcBigEndian {
		binary.BigEndian.PutUint32(b[28:32], crc)
	} else {
		binary.LittleEndian.PutUint32(b[28:32], crc)
	}
	return b
}

// ruleError applies the field rules (checks 4 to 8 of the decode order) to
// a frame whose magic, version and CRC are correct.
func ruleError(f Frame) DecodeError {
	switch {
	case f.Status > 3:
		return ErrBadStatus
	case f.Status == 3:
		return ErrStallOnWire
	case f.Pid == 0 || f.Pid == 1:
		return ErrBadPid
	case f.Timestamp == maxU64:
		return ErrBadTimestamp
	case f.Nonce == maxU64 && f.Status != StatusCritical:
		return ErrBadNonce
	}
	return DecodeOK
}

// specDecode is the reference decoder: the decode order of vlp-v0.2.md,
// one numbered check after another.
func specDecode(b *[FrameSize]byte) (Frame, DecodeError) {
	if b[0] != 0x56 || b[1] != 0x41 {
		return Frame{}, ErrBadMagic
	}
	if b[2] != 0x02 {
		return Frame{}, ErrBadVersion
	}
	if crc32cBitwise(b[:28]) != binary.LittleEndian.Uint32(b[28:32]) {
		return Frame{}, ErrBadCrc
	}
	f := Frame{
		Status:    Status(b[3]),
		Pid:       binary.LittleEndian.Uint32(b[4:8]),
		Timestamp: binary.LittleEndian.Uint64(b[8:16]),
		Nonce:     binary.LittleEndian.Uint64(b[16:24]),
		Payload:   binary.LittleEndian.Uint32(b[24:28]),
	}
	if err := ruleError(f); err != DecodeOK {
		return Frame{}, err
	}
	return f, DecodeOK
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustFrameHex(t testing.TB, s string) [FrameSize]byte {
	t.Helper()
	b := mustHex(t, s)
	if len(b) != FrameSize {
		t.Fatalf("worked frame has %d bytes, want %d", len(b), FrameSize)
	}
	return [FrameSize]byte(b)
}

// workedFrames are copied verbatim from vlp-v0.2.md.
var workedFrames = []struct {
	name  string
	hex   string
	frame Frame
}{
	{
		name: "ok pid 2 nonce 1",
		hex: `56 41 02 00 02 00 00 00 00 00 00 00 00 00 00 00
		      01 00 00 00 00 00 00 00 00 00 00 00 e4 11 6b aa`,
		frame: Frame{Status: StatusOK, Pid: 2, Timestamp: 0, Nonce: 1, Payload: 0},
	},
	{
		name: "critical terminal",
		hex: `56 41 02 02 02 00 00 00 e7 03 00 00 00 00 00 00
		      ff ff ff ff ff ff ff ff 00 00 00 00 a2 99 ee ed`,
		frame: Frame{Status: StatusCritical, Pid: 2, Timestamp: 999, Nonce: 0xFFFFFFFFFFFFFFFF, Payload: 0},
	},
	{
		name: "degraded pid 12345",
		hex: `56 41 02 01 39 30 00 00 d2 02 96 49 00 00 00 00
		      64 00 00 00 00 00 00 00 ef be ad de 7b bc 77 5f`,
		frame: Frame{Status: StatusDegraded, Pid: 12345, Timestamp: 1234567890, Nonce: 100, Payload: 0xDEADBEEF},
	},
}

func TestCRC32CReferenceValues(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want uint32
	}{
		{"empty", nil, 0x00000000},
		{"a", []byte("a"), 0xc1d04330},
		{"123456789", []byte("123456789"), 0xe3069283},
		{"32 zero bytes", make([]byte, 32), 0x8a9136aa},
		{"32 0xFF bytes", bytes.Repeat([]byte{0xFF}, 32), 0x62a8ab43},
	}
	for _, c := range cases {
		// castagnoli is the table DecodeFrame and EncodeFrame use.
		if got := crc32.Checksum(c.in, castagnoli); got != c.want {
			t.Errorf("codec CRC-32C(%s) = %#08x, want %#08x", c.name, got, c.want)
		}
		if got := crc32cBitwise(c.in); got != c.want {
			t.Errorf("reference CRC-32C(%s) = %#08x, want %#08x", c.name, got, c.want)
		}
	}
}

func TestWorkedFramesEncode(t *testing.T) {
	for _, w := range workedFrames {
		want := mustFrameHex(t, w.hex)
		var got [FrameSize]byte
		EncodeFrame(&got, w.frame)
		if got != want {
			t.Errorf("%s: EncodeFrame =\n% x\nwant\n% x", w.name, got, want)
		}
		// The test's own builder must agree with the spec too, or the
		// rest of this file proves nothing.
		if b := wireOf(w.frame).bytes(); b != want {
			t.Errorf("%s: test builder =\n% x\nwant\n% x", w.name, b, want)
		}
	}
}

func TestWorkedFramesDecode(t *testing.T) {
	for _, w := range workedFrames {
		b := mustFrameHex(t, w.hex)
		got, err := DecodeFrame(&b)
		if err != DecodeOK {
			t.Errorf("%s: DecodeFrame error %v, want none", w.name, err)
			continue
		}
		if got != w.frame {
			t.Errorf("%s: DecodeFrame = %+v, want %+v", w.name, got, w.frame)
		}
	}
}

// TestDecodeBoundaries puts every error at the boundary where it first
// applies, and next to the nearest value that is still valid.
func TestDecodeBoundaries(t *testing.T) {
	type tc struct {
		name string
		w    func(*wire)
		want DecodeError
	}
	cases := []tc{
		{"worked frame", func(w *wire) {}, DecodeOK},

		{"magic 57 41", func(w *wire) { w.magic[0] = 0x57 }, ErrBadMagic},
		{"magic 56 42", func(w *wire) { w.magic[1] = 0x42 }, ErrBadMagic},
		{"magic swapped 41 56", func(w *wire) { w.magic = [2]byte{0x41, 0x56} }, ErrBadMagic},
		{"magic 00 00", func(w *wire) { w.magic = [2]byte{} }, ErrBadMagic},
		{"bad magic and version 01", func(w *wire) { w.magic[0] = 0; w.version = 0x01 }, ErrBadMagic},
		{"bad magic, bad version, bad CRC, bad status, bad pid", func(w *wire) {
			w.magic[1] = 0xFF
			w.version = 0xFF
			w.crcXor = 1
			w.status = 0xFF
			w.pid = 0
		}, ErrBadMagic},

		{"version 01", func(w *wire) { w.version = 0x01 }, ErrBadVersion},
		{"version 00", func(w *wire) { w.version = 0x00 }, ErrBadVersion},
		{"version 03", func(w *wire) { w.version = 0x03 }, ErrBadVersion},
		{"version ff", func(w *wire) { w.version = 0xFF }, ErrBadVersion},
		{"version 01 and bad CRC", func(w *wire) { w.version = 0x01; w.crcXor = 0xFFFFFFFF }, ErrBadVersion},
		{"version 01 and status 3", func(w *wire) { w.version = 0x01; w.status = 3 }, ErrBadVersion},
		{"version 01 and pid 0", func(w *wire) { w.version = 0x01; w.pid = 0 }, ErrBadVersion},

		{"CRC lowest bit flipped", func(w *wire) { w.crcXor = 1 }, ErrBadCrc},
		{"CRC highest bit flipped", func(w *wire) { w.crcXor = 0x80000000 }, ErrBadCrc},
		{"CRC stored big-endian", func(w *wire) { w.crcBigEndian = true }, ErrBadCrc},
		{"bad CRC and status 4", func(w *wire) { w.crcXor = 1; w.status = 4 }, ErrBadCrc},
		{"bad CRC and status 255", func(w *wire) { w.crcXor = 1; w.status = 255 }, ErrBadCrc},
		{"bad CRC and status 3", func(w *wire) { w.crcXor = 1; w.status = 3 }, ErrBadCrc},
		{"bad CRC and pid 0", func(w *wire) { w.crcXor = 1; w.pid = 0 }, ErrBadCrc},
		{"bad CRC and timestamp max", func(w *wire) { w.crcXor = 1; w.ts = maxU64 }, ErrBadCrc},
		{"bad CRC and nonce max", func(w *wire) { w.crcXor = 1; w.nonce = maxU64 }, ErrBadCrc},

		{"status 2 critical", func(w *wire) { w.status = 2 }, DecodeOK},
		{"status 4", func(w *wire) { w.status = 4 }, ErrBadStatus},
		{"status 255", func(w *wire) { w.status = 255 }, ErrBadStatus},
		{"status 4, pid 0, timestamp max, nonce max", func(w *wire) {
			w.status, w.pid, w.ts, w.nonce = 4, 0, maxU64, maxU64
		}, ErrBadStatus},

		{"status 3", func(w *wire) { w.status = 3 }, ErrStallOnWire},
		{"status 3, pid 1, timestamp max, nonce max", func(w *wire) {
			w.status, w.pid, w.ts, w.nonce = 3, 1, maxU64, maxU64
		}, ErrStallOnWire},

		{"pid 0", func(w *wire) { w.pid = 0 }, ErrBadPid},
		{"pid 1", func(w *wire) { w.pid = 1 }, ErrBadPid},
		{"pid 2", func(w *wire) { w.pid = 2 }, DecodeOK},
		{"pid 1 in the terminal frame", func(w *wire) { w.status, w.pid, w.nonce = 2, 1, maxU64 }, ErrBadPid},
		{"pid 0, timestamp max, nonce max", func(w *wire) { w.pid, w.ts, w.nonce = 0, maxU64, maxU64 }, ErrBadPid},

		{"timestamp max", func(w *wire) { w.ts = maxU64 }, ErrBadTimestamp},
		{"timestamp max-1", func(w *wire) { w.ts = maxU64 - 1 }, DecodeOK},
		{"timestamp max in the terminal frame", func(w *wire) { w.status, w.ts, w.nonce = 2, maxU64, maxU64 }, ErrBadTimestamp},
		{"timestamp max, nonce max", func(w *wire) { w.ts, w.nonce = maxU64, maxU64 }, ErrBadTimestamp},

		{"nonce max with ok", func(w *wire) { w.status, w.nonce = 0, maxU64 }, ErrBadNonce},
		{"nonce max with degraded", func(w *wire) { w.status, w.nonce = 1, maxU64 }, ErrBadNonce},
		{"nonce max with critical (terminal)", func(w *wire) { w.status, w.nonce = 2, maxU64 }, DecodeOK},
		{"nonce max-1 with ok", func(w *wire) { w.status, w.nonce = 0, maxU64-1 }, DecodeOK},
		{"nonce 0 with ok", func(w *wire) { w.nonce = 0 }, DecodeOK},
	}
	for _, c := range cases {
		w := validWire()
		c.w(&w)
		b := w.bytes()
		got, err := DecodeFrame(&b)
		if err != c.want {
			t.Errorf("%s: DecodeFrame error %v, want %v\n% x", c.name, errName(err), errName(c.want), b)
			continue
		}
		if err == DecodeOK {
			want := Frame{Status(w.status), w.pid, w.ts, w.nonce, w.payload}
			if got != want {
				t.Errorf("%s: DecodeFrame = %+v, want %+v", c.name, got, want)
			}
		}
	}
}

func errName(e DecodeError) string {
	if e == DecodeOK {
		return "none"
	}
	return e.Error()
}

// decodeOrder is the normative order of vlp-v0.2.md; the test does not rely
// on the numeric values of the constants.
var decodeOrder = []DecodeError{
	ErrBadMagic, ErrBadVersion, ErrBadCrc, ErrBadStatus, ErrStallOnWire, ErrBadPid, ErrBadTimestamp, ErrBadNonce,
}

// TestDecodeOrderEveryCombination breaks every subset of the eight rules at
// once; the first rule in the spec's order must name the error.
func TestDecodeOrderEveryCombination(t *testing.T) {
	breakers := map[DecodeError]func(*wire){
		ErrBadMagic:     func(w *wire) { w.magic[0] = 0x00 },
		ErrBadVersion:   func(w *wire) { w.version = 0x01 },
		ErrBadCrc:       func(w *wire) { w.crcXor = 0x00010000 },
		ErrBadStatus:    func(w *wire) { w.status = 4 },
		ErrStallOnWire:  func(w *wire) { w.status = 3 },
		ErrBadPid:       func(w *wire) { w.pid = 1 },
		ErrBadTimestamp: func(w *wire) { w.ts = maxU64 },
		ErrBadNonce:     func(w *wire) { w.nonce = maxU64 }, // base status is Ok
	}
	tested := 0
	for mask := range 1 << len(decodeOrder) {
		has := func(e DecodeError) bool {
			for i, o := range decodeOrder {
				if o == e {
					return mask&(1<<i) != 0
				}
			}
			panic("unknown error")
		}
		if has(ErrBadStatus) && has(ErrStallOnWire) {
			continue // both live in the status byte
		}
		w := validWire()
		want := DecodeOK
		var names []string
		for i, e := range decodeOrder {
			if mask&(1<<i) == 0 {
				continue
			}
			breakers[e](&w)
			names = append(names, e.Error())
			if want == DecodeOK {
				want = e
			}
		}
		b := w.bytes()
		if _, err := DecodeFrame(&b); err != want {
			t.Errorf("broken rules %v: DecodeFrame error %v, want %v", names, errName(err), errName(want))
		}
		tested++
	}
	if tested != 192 {
		t.Fatalf("tested %d combinations, want 192", tested)
	}
}

// TestDecodeSingleBitFlips: CRC-32C catches every single-bit error, and
// the magic and version checks come before it.
func TestDecodeSingleBitFlips(t *testing.T) {
	for _, wf := range workedFrames {
		orig := mustFrameHex(t, wf.hex)
		for i := range FrameSize * 8 {
			b := orig
			b[i/8] ^= 1 << (i % 8)
			want := ErrBadCrc
			switch i / 8 {
			case 0, 1:
				want = ErrBadMagic
			case 2:
				want = ErrBadVersion
			}
			if _, err := DecodeFrame(&b); err != want {
				t.Errorf("%s, bit %d flipped: error %v, want %v", wf.name, i, errName(err), errName(want))
			}
		}
	}
}

func TestDecodeDoesNotModifyInput(t *testing.T) {
	w := validWire()
	w.status = 4
	for _, b := range [][FrameSize]byte{validWire().bytes(), w.bytes()} {
		orig := b
		DecodeFrame(&b)
		if b != orig {
			t.Errorf("DecodeFrame changed its input:\n% x\nwas\n% x", b, orig)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	var frames []Frame
	for _, s := range []Status{StatusOK, StatusDegraded, StatusCritical} {
		for _, nonce := range []uint64{1, 2, 100, 0 /* after a wrap */, maxU64 - 1} {
			frames = append(frames, Frame{Status: s, Pid: 2, Timestamp: 7, Nonce: nonce, Payload: 1})
		}
	}
	frames = append(frames,
		Frame{Status: StatusOK, Pid: maxU32, Timestamp: 1, Nonce: 1},
		Frame{Status: StatusOK, Pid: 2, Timestamp: 1, Nonce: 1, Payload: maxU32},
		Frame{Status: StatusOK, Pid: 2, Timestamp: maxU64 - 1, Nonce: 1},
		Frame{Status: StatusOK, Pid: 2, Timestamp: 0, Nonce: 0},
		// every field at its largest legal value at once
		Frame{Status: StatusDegraded, Pid: maxU32, Timestamp: maxU64 - 1, Nonce: maxU64 - 1, Payload: maxU32},
		Frame{Status: StatusCritical, Pid: maxU32, Timestamp: maxU64 - 1, Nonce: maxU64, Payload: maxU32},
		// distinct bytes everywhere catch swapped or misplaced fields
		Frame{Status: StatusDegraded, Pid: 0x04030201, Timestamp: 0x1211100f0e0d0c0b, Nonce: 0x2221201f1e1d1c1b, Payload: 0x28272625},
	)
	for _, f := range frames {
		var b [FrameSize]byte
		EncodeFrame(&b, f)
		if want := wireOf(f).bytes(); b != want {
			t.Errorf("EncodeFrame(%+v) =\n% x\nwant\n% x", f, b, want)
			continue
		}
		got, err := DecodeFrame(&b)
		if err != DecodeOK || got != f {
			t.Errorf("round trip of %+v: got %+v, error %v", f, got, errName(err))
		}
	}
}

// TestEncodeFrameDoesNotValidate: EncodeFrame writes whatever it is given
// with a correct CRC, so the decoder reports the field rule, not BadCrc.
func TestEncodeFrameDoesNotValidate(t *testing.T) {
	for _, f := range []Frame{
		{Status: 4, Pid: 2, Nonce: 1},
		{Status: 255, Pid: 2, Nonce: 1},
		{Status: StatusStall, Pid: 2, Nonce: 1},
		{Status: StatusOK, Pid: 0, Nonce: 1},
		{Status: StatusOK, Pid: 1, Nonce: 1},
		{Status: StatusOK, Pid: 2, Timestamp: maxU64, Nonce: 1},
		{Status: StatusOK, Pid: 2, Nonce: maxU64},
		{Status: StatusDegraded, Pid: 2, Nonce: maxU64},
	} {
		var b [FrameSize]byte
		EncodeFrame(&b, f)
		if want := wireOf(f).bytes(); b != want {
			t.Errorf("EncodeFrame(%+v) =\n% x\nwant\n% x", f, b, want)
		}
		want := ruleError(f)
		if want == DecodeOK {
			t.Fatalf("case %+v is valid; it belongs in TestRoundTrip", f)
		}
		if _, err := DecodeFrame(&b); err != want {
			t.Errorf("DecodeFrame(EncodeFrame(%+v)) error %v, want %v", f, errName(err), errName(want))
		}
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{
		StatusOK:       "ok",
		StatusDegraded: "degraded",
		StatusCritical: "critical",
		StatusStall:    "stall",
		4:              "invalid",
		255:            "invalid",
	} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	if StatusOK != 0 || StatusDegraded != 1 || StatusCritical != 2 || StatusStall != 3 {
		t.Errorf("status values differ from the wire: %d %d %d %d", StatusOK, StatusDegraded, StatusCritical, StatusStall)
	}
}

func TestDecodeErrorNames(t *testing.T) {
	// Error() is the spec's name (event file), Kind() the metric label of
	// contract.md's varta_decode_errors_total.
	cases := []struct {
		e          DecodeError
		name, kind string
	}{
		{DecodeOK, "", ""},
		{ErrBadMagic, "BadMagic", "bad_magic"},
		{ErrBadVersion, "BadVersion", "bad_version"},
		{ErrBadCrc, "BadCrc", "bad_crc"},
		{ErrBadStatus, "BadStatus", "bad_status"},
		{ErrStallOnWire, "StallOnWire", "stall_on_wire"},
		{ErrBadPid, "BadPid", "bad_pid"},
		{ErrBadTimestamp, "BadTimestamp", "bad_timestamp"},
		{ErrBadNonce, "BadNonce", "bad_nonce"},
		{decodeErrorCount, "Unknown", "unknown"},
		{255, "Unknown", "unknown"},
	}
	seen := map[DecodeError]bool{}
	for _, c := range cases {
		if got := c.e.Error(); got != c.name {
			t.Errorf("DecodeError(%d).Error() = %q, want %q", uint8(c.e), got, c.name)
		}
		if got := c.e.Kind(); got != c.kind {
			t.Errorf("DecodeError(%d).Kind() = %q, want %q", uint8(c.e), got, c.kind)
		}
		seen[c.e] = true
	}
	for e := range decodeErrorCount {
		if !seen[e] {
			t.Errorf("DecodeError(%d) (%q) is not in this table", uint8(e), e.Error())
		}
	}
	// DecodeError must satisfy error so the observer can log it directly.
	var _ error = ErrBadCrc
	if got := fmt.Sprint(error(ErrBadCrc)); got != "BadCrc" {
		t.Errorf("fmt of ErrBadCrc = %q", got)
	}
}
