//go:build !race

// The race detector's instrumentation allocates, so allocation counts are
// only meaningful without it.

package main

import "testing"

var (
	sinkFrame Frame
	sinkErr   DecodeError
)

func TestDecodeFrameDoesNotAllocate(t *testing.T) {
	valid := mustFrameHex(t, workedFrames[2].hex)
	badStatus := validWire()
	badStatus.status = 4
	for _, c := range []struct {
		name string
		b    [FrameSize]byte
		want DecodeError
	}{
		{"valid", valid, DecodeOK},
		{"bad crc", func() [FrameSize]byte { b := valid; b[31] ^= 1; return b }(), ErrBadCrc},
		{"bad status", badStatus.bytes(), ErrBadStatus},
	} {
		b := c.b
		allocs := testing.AllocsPerRun(1000, func() {
			sinkFrame, sinkErr = DecodeFrame(&b)
		})
		if sinkErr != c.want {
			t.Fatalf("%s: measured the wrong path: error %v, want %v", c.name, errName(sinkErr), errName(c.want))
		}
		if allocs != 0 {
			t.Errorf("%s: DecodeFrame allocates %v times per call, want 0", c.name, allocs)
		}
	}
}

func TestEncodeFrameDoesNotAllocate(t *testing.T) {
	var b [FrameSize]byte
	f := workedFrames[2].frame
	allocs := testing.AllocsPerRun(1000, func() {
		EncodeFrame(&b, f)
	})
	if want := mustFrameHex(t, workedFrames[2].hex); b != want {
		t.Fatalf("measured a broken encoder: % x", b)
	}
	if allocs != 0 {
		t.Errorf("EncodeFrame allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	frame := mustFrameHex(b, workedFrames[2].hex)
	b.ReportAllocs()
	b.SetBytes(FrameSize)
	for b.Loop() {
		sinkFrame, sinkErr = DecodeFrame(&frame)
	}
	if sinkErr != DecodeOK {
		b.Fatalf("decode error %v", sinkErr)
	}
}

func BenchmarkEncodeFrame(b *testing.B) {
	var buf [FrameSize]byte
	f := workedFrames[2].frame
	b.ReportAllocs()
	b.SetBytes(FrameSize)
	for b.Loop() {
		EncodeFrame(&buf, f)
	}
}
