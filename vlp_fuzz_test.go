package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary bytes to DecodeFrame. Its seed corpus
// lives in testdata/fuzz/FuzzDecodeFrame: the worked frames and one frame
// per decode error (TestFuzzDecodeFrameSeedCorpus keeps it that way).
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		// The observer rejects other lengths before decoding; fold every
		// input into a frame so no fuzzing effort is wasted on them.
		var b [FrameSize]byte
		copy(b[:], data)
		checkDecode(t, b)
		// Nearly every mutation breaks the CRC. Decoding the same bytes
		// with a correct trailer lets the fuzzer reach the later checks.
		binary.LittleEndian.PutUint32(b[28:32], crc32cBitwise(b[:28]))
		checkDecode(t, b)
	})
}

func checkDecode(t *testing.T, in [FrameSize]byte) {
	t.Helper()
	b := in
	got, err := DecodeFrame(&b)
	if b != in {
		t.Fatalf("DecodeFrame changed its input:\n% x\nwas\n% x", b, in)
	}
	want, wantErr := specDecode(&in)
	if err != wantErr {
		t.Fatalf("DecodeFrame(% x) error %v, want %v", in, errName(err), errName(wantErr))
	}
	if err != DecodeOK {
		return
	}
	if got != want {
		t.Fatalf("DecodeFrame(% x) = %+v, want %+v", in, got, want)
	}
	if r := ruleError(got); r != DecodeOK {
		t.Fatalf("DecodeFrame accepted %+v, which breaks rule %v", got, r)
	}
	var out [FrameSize]byte
	EncodeFrame(&out, got)
	if out != in {
		t.Fatalf("re-encoding %+v gave\n% x\nwant\n% x", got, out, in)
	}
}

// FuzzEncodeDecode encodes arbitrary field values: frames that satisfy the
// rules must round-trip, the others must fail with the first broken rule.
func FuzzEncodeDecode(f *testing.F) {
	for _, w := range workedFrames {
		fr := w.frame
		f.Add(uint8(fr.Status), fr.Pid, fr.Timestamp, fr.Nonce, fr.Payload)
	}
	f.Add(uint8(0), uint32(2), uint64(0), uint64(0), uint32(0))
	f.Add(uint8(1), maxU32, maxU64-1, maxU64-1, maxU32)
	f.Add(uint8(2), maxU32, maxU64-1, maxU64, maxU32)
	f.Add(uint8(3), uint32(2), uint64(0), uint64(1), uint32(0))
	f.Add(uint8(4), uint32(2), uint64(0), uint64(1), uint32(0))
	f.Add(uint8(255), uint32(0), maxU64, maxU64, uint32(0))
	f.Add(uint8(0), uint32(1), uint64(0), uint64(1), uint32(0))
	f.Add(uint8(0), uint32(2), maxU64, uint64(1), uint32(0))
	f.Add(uint8(1), uint32(2), uint64(0), maxU64, uint32(0))
	f.Fuzz(func(t *testing.T, status uint8, pid uint32, ts, nonce uint64, payload uint32) {
		fr := Frame{Status: Status(status), Pid: pid, Timestamp: ts, Nonce: nonce, Payload: payload}
		var b [FrameSize]byte
		EncodeFrame(&b, fr)
		if want := wireOf(fr).bytes(); b != want {
			t.Fatalf("EncodeFrame(%+v) =\n% x\nwant\n% x", fr, b, want)
		}
		got, err := DecodeFrame(&b)
		want := ruleError(fr)
		if err != want {
			t.Fatalf("DecodeFrame(EncodeFrame(%+v)) error %v, want %v", fr, errName(err), errName(want))
		}
		if want == DecodeOK && got != fr {
			t.Fatalf("round trip of %+v gave %+v", fr, got)
		}
	})
}

// TestFuzzDecodeFrameSeedCorpus checks the checked-in seeds: each file is
// named after what it holds (worked_* decodes, otherwise the error kind),
// and together they cover success and every decode error.
func TestFuzzDecodeFrameSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeFrame")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[DecodeError]int{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data := readCorpusBytes(t, filepath.Join(dir, e.Name()))
		if len(data) != FrameSize {
			t.Errorf("%s: %d bytes, want %d", e.Name(), len(data), FrameSize)
			continue
		}
		_, got := DecodeFrame((*[FrameSize]byte)(data))
		want := "worked"
		if got != DecodeOK {
			want = got.Kind()
		}
		if !strings.HasPrefix(e.Name(), want) {
			t.Errorf("%s decodes as %q: name it %s…", e.Name(), errName(got), want)
		}
		covered[got]++
	}
	if covered[DecodeOK] < len(workedFrames) {
		t.Errorf("%d valid seeds, want the %d worked frames", covered[DecodeOK], len(workedFrames))
	}
	for _, e := range decodeOrder {
		if covered[e] == 0 {
			t.Errorf("no seed for %v", e)
		}
	}
}

// readCorpusBytes parses a one-value file in Go's fuzz corpus format:
//
//	go test fuzz v1
//	[]byte("...")
func readCorpusBytes(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s: not a one-value []byte corpus file: %q", path, raw)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
