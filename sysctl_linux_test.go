package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestMaxDgramQlen(t *testing.T) {
	raw, err := os.ReadFile(maxDgramQlenPath)
	if err != nil {
		t.Skipf("no %s here: %v", maxDgramQlenPath, err)
	}
	want, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := maxDgramQlen()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("maxDgramQlen() = %d, want %d", got, want)
	}
}

func TestReadMaxDgramQlen(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		want    int
		wantErr bool
	}{
		{"10\n", 10, false},
		{"512", 512, false},
		{"0\n", 0, false},
		{"", 0, true},
		{"ten\n", 0, true},
		{"-1\n", 0, true},
	} {
		path := filepath.Join(dir, "max_dgram_qlen")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readMaxDgramQlen(path)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: got %d, want an error", tc.content, got)
			} else if !strings.Contains(err.Error(), path) {
				t.Errorf("%q: error %q does not name the file", tc.content, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.content, got, err, tc.want)
		}
	}
	if _, err := readMaxDgramQlen(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
