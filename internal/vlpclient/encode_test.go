package vlpclient

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestEncodeWorkedFrames(t *testing.T) {
	// vlp-v0.2.md's worked frames.
	cases := []struct {
		status    uint8
		pid       uint32
		timestamp uint64
		nonce     uint64
		payload   uint32
		hex       string
	}{
		{StatusOK, 2, 0, 1, 0, `56 41 02 00 02 00 00 00 00 00 00 00 00 00 00 00
		                        01 00 00 00 00 00 00 00 00 00 00 00 e4 11 6b aa`},
		{StatusCritical, 2, 999, NonceTerminal, 0, `56 41 02 02 02 00 00 00 e7 03 00 00 00 00 00 00
		                                            ff ff ff ff ff ff ff ff 00 00 00 00 a2 99 ee ed`},
		{StatusDegraded, 12345, 1234567890, 100, 0xDEADBEEF, `56 41 02 01 39 30 00 00 d2 02 96 49 00 00 00 00
		                                                      64 00 00 00 00 00 00 00 ef be ad de 7b bc 77 5f`},
	}
	for _, c := range cases {
		want, err := hex.DecodeString(strings.Join(strings.Fields(c.hex), ""))
		if err != nil {
			t.Fatal(err)
		}
		var b [FrameSize]byte
		Encode(&b, c.status, c.pid, c.timestamp, c.nonce, c.payload)
		if string(b[:]) != string(want) {
			t.Errorf("Encode(%d, %d, %d, %d, %#x) =\n% x\nwant\n% x", c.status, c.pid, c.timestamp, c.nonce, c.payload, b, want)
		}
	}
}

func TestNextNonce(t *testing.T) {
	const max = NonceTerminal
	cases := []struct{ n, step, want uint64 }{
		{1, 1, 2},
		{max - 2, 1, max - 1},
		{max - 1, 1, 0}, // the spec's wrap
		{max - 1, 2, 1},
		{max - 3, 5, 2},
		{0, 1, 1},
		{5, 0, 5},
		{1, max - 1, 0},
		{2, max - 1, 1},
		{max - 1, max - 1, max - 2},
		{7, max, 7}, // a step of 2^64-1 is a full turn
		{max, 1, 1}, // a start at the terminal nonce continues past it
	}
	for _, c := range cases {
		if got := NextNonce(c.n, c.step); got != c.want {
			t.Errorf("NextNonce(%#x, %#x) = %#x, want %#x", c.n, c.step, got, c.want)
		}
	}
}
